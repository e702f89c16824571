//! What the monitor compares windows with: per signal, the reference distribution of the
//! serving bundle's reference population, saved next to the bundle as
//! `<registry>/monitor/<ensemble version>.json`.
//!
//! Signals are named `ensemble` (the calibrated probability), `t2` and `t1c` (the networks'
//! probabilities) and `<series>/<setting>/<tag>` for radiomics features (e.g.
//! `T2/2mm_fbn32/stat_mean`). The monitor watches exactly the signals its reference holds, so
//! which features are watched is chosen when the reference is built ([`ReferenceSettings`]).

use renal_stats::drift::{DriftError, Reference};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The calibrated ensemble probability.
pub const ENSEMBLE: &str = "ensemble";
/// The T2 network's probability.
pub const T2: &str = "t2";
/// The T1C network's probability.
pub const T1C: &str = "t1c";
/// The signals with a Prometheus gauge of their own; features are summarised per (site,
/// scanner) instead, so that labels stay bounded.
pub const SCORE_SIGNALS: [&str; 3] = [ENSEMBLE, T2, T1C];

/// How a reference is built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSettings {
    /// Quantile bins of the PSI (default 5). PSI grows with empty and sparse bins: on windows
    /// of 50 drawn from the reference itself, 10 bins give a median PSI of 0.19 (95th
    /// percentile 0.74, above the usual 0.25 "shift"), 5 bins 0.075 (0.21); measured over 2,000
    /// draws against a 1,000-value reference.
    #[serde(default = "default_bins")]
    pub psi_bins: usize,
    /// Reference values kept per signal; beyond, evenly spaced quantiles (default 1,000).
    #[serde(default = "default_cap")]
    pub sample_cap: usize,
    /// Prefixes of the radiomics feature tags watched (default: first-order statistics `stat_`
    /// and morphology `morph_`).
    #[serde(default = "default_tags")]
    pub feature_tags: Vec<String>,
    /// Settings labels whose features are watched; empty: the first setting of each lesion's
    /// file (the table's order, the study's first setting).
    #[serde(default)]
    pub feature_settings: Vec<String>,
}

fn default_bins() -> usize {
    5
}
fn default_cap() -> usize {
    1_000
}
fn default_tags() -> Vec<String> {
    vec!["stat_".into(), "morph_".into()]
}

impl Default for ReferenceSettings {
    fn default() -> Self {
        ReferenceSettings {
            psi_bins: default_bins(),
            sample_cap: default_cap(),
            feature_tags: default_tags(),
            feature_settings: Vec::new(),
        }
    }
}

/// The monitor's reference for one served ensemble bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorReference {
    /// Always 1.
    pub version: u32,
    /// The ensemble bundle it describes.
    pub ensemble_version: String,
    /// That bundle's decision threshold (CBPE's expected accuracy is taken at it).
    pub threshold: f64,
    /// Lesions of the reference population.
    pub lesions: u64,
    /// How it was built.
    pub settings: ReferenceSettings,
    /// Per signal.
    pub signals: BTreeMap<String, Reference>,
}

/// Why a reference cannot be built, read or written.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// A signal's values cannot make a reference.
    #[error("reference of signal {signal}: {source}")]
    Signal { signal: String, source: DriftError },
    /// File system failure.
    #[error("monitor reference {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// Not a reference file.
    #[error("monitor reference {path}: {source}")]
    Format { path: PathBuf, source: serde_json::Error },
    /// The features of a reference lesion cannot be read.
    #[error("monitor reference: {0}")]
    Features(#[from] renal_radiomics::table::ReadError),
}

/// Where the reference of `ensemble_version` lives in `registry`.
pub fn path(registry: &Path, ensemble_version: &str) -> PathBuf {
    registry.join("monitor").join(format!("{ensemble_version}.json"))
}

impl MonitorReference {
    /// Build from each signal's values over the reference population (signals without a finite
    /// value are left out).
    pub fn build(
        ensemble_version: &str,
        threshold: f64,
        lesions: u64,
        settings: ReferenceSettings,
        values: &BTreeMap<String, Vec<f64>>,
    ) -> Result<MonitorReference, ReferenceError> {
        let mut signals = BTreeMap::new();
        for (signal, v) in values {
            match Reference::new(v, settings.psi_bins, settings.sample_cap) {
                Ok(r) => {
                    signals.insert(signal.clone(), r);
                }
                Err(DriftError::Empty) => {}
                Err(source) => return Err(ReferenceError::Signal { signal: signal.clone(), source }),
            }
        }
        Ok(MonitorReference {
            version: 1,
            ensemble_version: ensemble_version.into(),
            threshold,
            lesions,
            settings,
            signals,
        })
    }

    /// Write it (atomically: a temporary file renamed) to `path`.
    pub fn save(&self, path: &Path) -> Result<(), ReferenceError> {
        let io = |source| ReferenceError::Io { path: path.into(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec(self).map_err(|source| ReferenceError::Format { path: path.into(), source })?;
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Read one back; `path` may also be a folder of references (the newest `.json` in it,
    /// by modification time, is read).
    pub fn load(path: &Path) -> Result<MonitorReference, ReferenceError> {
        let io = |source| ReferenceError::Io { path: path.into(), source };
        let path = &if path.is_dir() {
            let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
            for entry in std::fs::read_dir(path).map_err(io)? {
                let entry = entry.map_err(io)?;
                let p = entry.path();
                if p.extension().is_some_and(|e| e == "json") {
                    let t = entry.metadata().and_then(|m| m.modified()).map_err(io)?;
                    if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                        newest = Some((t, p));
                    }
                }
            }
            let none = std::io::Error::new(std::io::ErrorKind::NotFound, "no .json reference in the folder");
            newest.ok_or_else(|| io(none))?.1
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read(path).map_err(|source| ReferenceError::Io { path: path.into(), source })?;
        serde_json::from_slice(&text).map_err(|source| ReferenceError::Format { path: path.into(), source })
    }
}

/// The watched radiomics features of one lesion revision's file in the `features` table, as
/// `(signal, value)`; null values are left out.
pub fn feature_values(file: &Path, settings: &ReferenceSettings) -> Result<Vec<(String, f64)>, ReferenceError> {
    let tags: Vec<&str> = renal_radiomics::table::feature_tags()
        .iter()
        .filter(|t| settings.feature_tags.iter().any(|p| t.starts_with(p.as_str())))
        .map(String::as_str)
        .collect();
    let rows = renal_radiomics::table::read(file, &tags)?;
    let mut out = Vec::new();
    let mut first_setting: BTreeMap<&str, &str> = BTreeMap::new();
    for row in &rows {
        first_setting.entry(row.series.as_str()).or_insert(row.setting.as_str());
    }
    for row in &rows {
        let watched = if settings.feature_settings.is_empty() {
            first_setting.get(row.series.as_str()) == Some(&row.setting.as_str())
        } else {
            settings.feature_settings.iter().any(|s| s == &row.setting)
        };
        if !watched {
            continue;
        }
        for (tag, value) in tags.iter().zip(&row.values) {
            if let Some(v) = value.filter(|v| v.is_finite()) {
                out.push((format!("{}/{}/{tag}", row.series, row.setting), v));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_round_trips_and_leaves_out_signals_without_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut values = BTreeMap::new();
        values.insert(ENSEMBLE.to_string(), (0..100).map(|i| f64::from(i) / 100.0).collect::<Vec<_>>());
        values.insert("T2/x/stat_mean".to_string(), vec![f64::NAN]);
        let r = MonitorReference::build("ens-1", 0.4, 100, ReferenceSettings::default(), &values).unwrap();
        assert_eq!(r.signals.keys().collect::<Vec<_>>(), [ENSEMBLE]);
        let p = path(dir.path(), "ens-1");
        r.save(&p).unwrap();
        assert_eq!(MonitorReference::load(&p).unwrap(), r);
        assert_eq!(MonitorReference::load(p.parent().unwrap()).unwrap(), r, "the newest in the folder");
        assert!(matches!(MonitorReference::load(&dir.path().join("none.json")), Err(ReferenceError::Io { .. })));
    }
}
