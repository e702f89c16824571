//! `[inference]`: where composites and bundles are, which bundle to serve, on which device,
//! and how lesions are batched.

use renal_cnn::device::Want;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[inference]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceConfig {
    /// Blob store shared with preprocess: a folder or `s3://bucket[/prefix]`.
    pub blob_store: String,
    /// `auto` (CUDA when a GPU is usable), `cpu` or `cuda`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Model registry folder (holds `cnn/<version>/`).
    pub registry: PathBuf,
    /// Bundle version to serve, e.g. `cnn-1a2b3c4d5e6f`; `newest` (the bundle written last); or
    /// `promoted`: the CNN bundle of `deployment`'s promoted model, followed on `renal.models`
    /// (a new promotion is loaded and served from the next batch on, without a restart).
    pub model_version: String,
    /// Deployment whose promoted model `model_version = "promoted"` serves (default `default`).
    #[serde(default = "default_deployment")]
    pub deployment: String,
    /// Largest batch of lesions per forward pass (default 16).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Longest wait for a batch to fill after its first lesion, ms (default 50).
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
    /// libtorch's threads for one forward pass on the CPU (default 0: libtorch's choice, one per
    /// core unless `OMP_NUM_THREADS` says otherwise). Where other stages share the cores, 1 is
    /// cheaper: a second thread mostly spins at each layer's barrier while its core is taken.
    #[serde(default)]
    pub cpu_threads: usize,
}

fn default_device() -> String {
    "auto".into()
}
fn default_deployment() -> String {
    "default".into()
}
fn default_max_batch() -> usize {
    16
}
fn default_max_wait_ms() -> u64 {
    50
}

/// Settings that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("inference config: {0}")]
pub struct ConfigError(pub String);

impl InferenceConfig {
    /// Settings with every default, serving `model_version` from `registry`.
    pub fn new(blob_store: impl Into<String>, registry: PathBuf, model_version: &str) -> InferenceConfig {
        InferenceConfig {
            blob_store: blob_store.into(),
            device: default_device(),
            registry,
            model_version: model_version.into(),
            deployment: default_deployment(),
            max_batch: default_max_batch(),
            max_wait_ms: default_max_wait_ms(),
            cpu_threads: 0,
        }
    }

    /// The device asked for; checking it is part of start-up.
    pub fn device(&self) -> Result<Want, ConfigError> {
        self.device.parse().map_err(|e| ConfigError(format!("device {e}")))
    }

    /// Check settings at start-up.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.device()?;
        if self.max_batch == 0 || self.max_batch > 1024 {
            return Err(ConfigError(format!("max_batch {} must be 1 to 1024", self.max_batch)));
        }
        if self.cpu_threads > 256 {
            return Err(ConfigError(format!("cpu_threads {} must be 0 (libtorch's choice) to 256", self.cpu_threads)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused_at_start_up() {
        let ok = InferenceConfig::new("/blobs", PathBuf::from("/models"), "newest");
        assert!(ok.validate().is_ok());
        assert_eq!(ok.cpu_threads, 0, "libtorch chooses unless told");
        let one = InferenceConfig { cpu_threads: 1, ..ok.clone() };
        assert!(one.validate().is_ok());
        let many = InferenceConfig { cpu_threads: 257, ..ok.clone() };
        assert!(many.validate().unwrap_err().to_string().contains("cpu_threads 257"));
        let empty = InferenceConfig { max_batch: 0, ..ok.clone() };
        assert!(empty.validate().unwrap_err().to_string().contains("max_batch 0"));
        let gpu = InferenceConfig { device: "tpu".into(), ..ok };
        assert!(gpu.validate().is_err());
    }
}
