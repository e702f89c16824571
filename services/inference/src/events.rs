//! What the inference stage reports besides the stage loop's events ([`renal_bus::events`]).

use renal_telemetry::{pipeline_metrics, InternalEvent};

/// The bundle is loaded onto its device.
pub struct InferenceStarted<'a> {
    /// Bundle version.
    pub version: &'a str,
    /// Backbone name.
    pub backbone: &'a str,
    /// Input side, px.
    pub input_px: i64,
    /// `cpu` or `cuda`.
    pub device: &'a str,
    /// Why that device (what was asked, what was found).
    pub why: &'a str,
    /// libtorch's threads per forward pass on the CPU.
    pub cpu_threads: i32,
}

impl InternalEvent for InferenceStarted<'_> {
    fn emit(self) {
        pipeline_metrics().batch_size.with_label_values(&[self.device]);
        tracing::info!(
            stage = "inference",
            device = self.device,
            cpu_threads = self.cpu_threads,
            "cnn device: {}",
            self.why
        );
        tracing::info!(
            stage = "inference",
            "inference: serving {} ({}, {}x{} input)",
            self.version,
            self.backbone,
            self.input_px,
            self.input_px
        );
    }
}

/// The networks scored a batch of lesions.
pub struct BatchScored<'a> {
    /// `cpu` or `cuda`.
    pub device: &'a str,
    /// Lesions in the batch.
    pub size: usize,
}

impl InternalEvent for BatchScored<'_> {
    fn emit(self) {
        pipeline_metrics().batch_size.with_label_values(&[self.device]).observe(self.size as f64);
        tracing::debug!(stage = "inference", device = self.device, size = self.size, "batch scored");
    }
}

/// The label value of a device: its kind, never an index that could grow the label set.
pub fn device_label(device: tch::Device) -> &'static str {
    match device {
        tch::Device::Cpu => "cpu",
        tch::Device::Cuda(_) => "cuda",
        tch::Device::Mps => "mps",
        tch::Device::Vulkan => "vulkan",
    }
}
