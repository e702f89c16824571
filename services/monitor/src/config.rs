//! `[monitor]`: where the reference and the state live, how windows slide. What is watched is
//! what the reference holds ([`crate::reference`]).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[monitor]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// The reference file the serving bundle's training wrote (`models/monitor/<ensemble
    /// version>.json` in a registry), or a folder of them: its newest `.json`.
    pub reference: PathBuf,
    /// Root of the Parquet store: the `features` table is read from it, the `drift` and
    /// `calibration` tables are written to it.
    pub table_root: PathBuf,
    /// Folder of the monitor's state (journal and snapshot); keep it on a persistent volume.
    pub state_dir: PathBuf,
    /// Most recent lesions per (site, scanner, signal) window (default 50).
    #[serde(default = "default_window_lesions")]
    pub window_lesions: usize,
    /// Values older than this leave a window, seconds; 0: windows are count-based only
    /// (default 0).
    #[serde(default)]
    pub window_max_age_s: u64,
    /// A window is compared with its reference after this many new lesions (default 10).
    #[serde(default = "default_stride_lesions")]
    pub stride_lesions: usize,
    /// Fewest lesions in a window before it is compared (default 20).
    #[serde(default = "default_min_lesions")]
    pub min_lesions: usize,
    /// Scanners told apart per site; beyond these a site's new scanners count as `other`, so
    /// metric labels stay bounded (default 4).
    #[serde(default = "default_max_scanners_per_site")]
    pub max_scanners_per_site: usize,
    /// Most recent labelled lesions per site that calibration and performance are computed on
    /// (default 200).
    #[serde(default = "default_calibration_window")]
    pub calibration_window_lesions: usize,
    /// Fewest labelled lesions of a site before its calibration is reported (default 20).
    #[serde(default = "default_min_lesions")]
    pub min_labelled_lesions: usize,
    /// Bins of the expected calibration error and the reliability diagram (default 10).
    #[serde(default = "default_ece_bins")]
    pub ece_bins: usize,
    /// Journal entries before the state is compacted into one snapshot (default 1,000).
    #[serde(default = "default_compact_every")]
    pub compact_every_entries: usize,
}

fn default_window_lesions() -> usize {
    50
}
fn default_stride_lesions() -> usize {
    10
}
fn default_min_lesions() -> usize {
    20
}
fn default_max_scanners_per_site() -> usize {
    4
}
fn default_calibration_window() -> usize {
    200
}
fn default_ece_bins() -> usize {
    10
}
fn default_compact_every() -> usize {
    1_000
}

/// Why the settings cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("[monitor] {field}: {reason}")]
pub struct ConfigError {
    /// The setting.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl MonitorConfig {
    /// Settings with every default.
    pub fn new(reference: PathBuf, table_root: PathBuf, state_dir: PathBuf) -> MonitorConfig {
        MonitorConfig {
            reference,
            table_root,
            state_dir,
            window_lesions: default_window_lesions(),
            window_max_age_s: 0,
            stride_lesions: default_stride_lesions(),
            min_lesions: default_min_lesions(),
            max_scanners_per_site: default_max_scanners_per_site(),
            calibration_window_lesions: default_calibration_window(),
            min_labelled_lesions: default_min_lesions(),
            ece_bins: default_ece_bins(),
            compact_every_entries: default_compact_every(),
        }
    }

    /// Check the settings together.
    pub fn validate(self) -> Result<MonitorConfig, ConfigError> {
        let bad = |field, reason: String| Err(ConfigError { field, reason });
        if self.window_lesions < 2 {
            return bad("window_lesions", format!("{} is below 2", self.window_lesions));
        }
        if self.min_lesions < 2 || self.min_lesions > self.window_lesions {
            return bad("min_lesions", format!("{} is not in 2..={}", self.min_lesions, self.window_lesions));
        }
        if self.stride_lesions == 0 {
            return bad("stride_lesions", "0: no window would ever be compared".into());
        }
        if self.max_scanners_per_site == 0 {
            return bad("max_scanners_per_site", "0: every scanner would be `other`".into());
        }
        if self.min_labelled_lesions < 2 || self.min_labelled_lesions > self.calibration_window_lesions {
            return bad(
                "min_labelled_lesions",
                format!("{} is not in 2..={}", self.min_labelled_lesions, self.calibration_window_lesions),
            );
        }
        if self.ece_bins == 0 {
            return bad("ece_bins", "0".into());
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_windows_do_not() {
        let c = MonitorConfig::new("r.json".into(), "store".into(), "state".into());
        assert!(c.clone().validate().is_ok());
        let e = MonitorConfig { min_lesions: 80, ..c.clone() }.validate().unwrap_err();
        assert_eq!(e.field, "min_lesions");
        let parsed: MonitorConfig =
            toml::from_str("reference = \"r.json\"\ntable_root = \"s\"\nstate_dir = \"t\"\nwindow_lesions = 30\n")
                .unwrap();
        assert_eq!((parsed.window_lesions, parsed.stride_lesions), (30, 10));
    }
}
