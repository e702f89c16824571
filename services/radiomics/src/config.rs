//! `[radiomics]`: where the stage reads volumes and writes features, and under which settings.

use crate::settings::{self, Setting, SettingsError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[radiomics]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiomicsConfig {
    /// Blob store shared with preprocess: a folder or `s3://bucket[/prefix]`.
    pub blob_store: String,
    /// Root of the feature store (the `features` table goes under it).
    pub table_root: PathBuf,
    /// A settings file (JSON, see [`crate::settings`]); absent: the study's 32 settings.
    #[serde(default)]
    pub settings: Option<PathBuf>,
}

impl RadiomicsConfig {
    /// Settings with every default, for these stores.
    pub fn new(blob_store: impl Into<String>, table_root: PathBuf) -> RadiomicsConfig {
        RadiomicsConfig { blob_store: blob_store.into(), table_root, settings: None }
    }

    /// The settings to extract under; reading them is the start-up check.
    pub fn load_settings(&self) -> Result<Vec<Setting>, SettingsError> {
        match &self.settings {
            Some(path) => settings::read(path),
            None => Ok(settings::study_grid()),
        }
    }
}
