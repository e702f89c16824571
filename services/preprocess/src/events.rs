//! What preprocessing reports besides the stage loop's events ([`renal_bus::events`]).

use renal_telemetry::InternalEvent;

/// The worker is about to connect: the settings it runs with.
pub struct PreprocessStarted {
    /// Side of the 2.5D composites, px.
    pub composite_size: usize,
}

impl InternalEvent for PreprocessStarted {
    fn emit(self) {
        tracing::info!(stage = "preprocess", composite_size = self.composite_size, "preprocess starting");
    }
}
