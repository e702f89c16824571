//! What the radiomics stage reports besides the stage loop's events ([`renal_bus::events`]).

use renal_telemetry::InternalEvent;

/// The worker is about to connect: the settings it extracts with.
pub struct RadiomicsStarted<'a> {
    /// Extraction settings.
    pub settings: usize,
    /// SHA-256 of the settings (what each feature file records).
    pub settings_sha256: &'a str,
}

impl InternalEvent for RadiomicsStarted<'_> {
    fn emit(self) {
        tracing::info!(
            stage = "radiomics",
            settings = self.settings,
            settings_sha256 = self.settings_sha256,
            "radiomics starting"
        );
    }
}
