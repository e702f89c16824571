//! `[ensemble]`: which bundle to serve, where the join state lives, and how long to wait for
//! the other half of a join.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[ensemble]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleConfig {
    /// Model registry folder (holds `ensemble/<version>/`).
    pub registry: PathBuf,
    /// Ensemble bundle to serve, e.g. `ens-1a2b3c4d5e6f`; `newest` (the bundle written last); or
    /// `promoted`: `deployment`'s promoted model, followed on `renal.models` (a new promotion is
    /// served from the next score on, without a restart).
    pub model_version: String,
    /// Deployment whose promoted model `model_version = "promoted"` serves (default `default`).
    #[serde(default = "default_deployment")]
    pub deployment: String,
    /// Folder of the join tables (`lesions/`: clinical values by lesion id; `partial-scores/`:
    /// parked half scores); keep it on a persistent volume.
    pub state_dir: PathBuf,
    /// Longest wait for a scored lesion's clinical values, ms (default 30,000).
    #[serde(default = "default_wait_ms")]
    pub lesion_wait_ms: u64,
    /// Longest wait for the other half of a score that lacks one series' probability, ms
    /// (default 30,000).
    #[serde(default = "default_wait_ms")]
    pub modality_wait_ms: u64,
}

fn default_deployment() -> String {
    "default".into()
}
fn default_wait_ms() -> u64 {
    30_000
}

impl EnsembleConfig {
    /// Settings with every default, serving `model_version` from `registry`.
    pub fn new(registry: PathBuf, model_version: &str, state_dir: PathBuf) -> EnsembleConfig {
        EnsembleConfig {
            registry,
            model_version: model_version.into(),
            deployment: default_deployment(),
            state_dir,
            lesion_wait_ms: default_wait_ms(),
            modality_wait_ms: default_wait_ms(),
        }
    }
}
