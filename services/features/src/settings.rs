//! Extraction settings: the grid spacing and the discretisation of one feature set.
//!
//! The study's "texture optimisation" grid crosses isotropic spacings 1, 2, 3 and 4 mm with a
//! fixed bin number of 8, 16, 32 or 64 grey levels, without and with histogram equalisation:
//! 32 settings ([`study_grid`]). A settings file (`--settings`, or `settings` in the worker's
//! config) is JSON: `{"settings": [{"spacing_mm": 2.0, "discretisation": {"method":
//! "fixed_bin_number", "bins": 32}}, ...]}`; `spacing_mm` null or absent keeps the native grid.

use renal_radiomics::roi::Discretisation;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// One extraction setting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    /// Isotropic voxel spacing to resample to, mm; `None` keeps the acquired grid.
    #[serde(default)]
    pub spacing_mm: Option<f64>,
    /// How intensities become grey levels.
    pub discretisation: Discretisation,
}

impl Setting {
    /// A short name for tables and logs, e.g. `2mm_fbn32`, `1mm_fbneq64`, `native_fbs25`.
    pub fn label(&self) -> String {
        let grid = match self.spacing_mm {
            Some(s) => format!("{s}mm"),
            None => "native".into(),
        };
        let disc = match self.discretisation {
            Discretisation::None => "levels".into(),
            Discretisation::FixedBinNumber { bins } => format!("fbn{bins}"),
            Discretisation::EqualisedBinNumber { bins } => format!("fbneq{bins}"),
            Discretisation::FixedBinSize { width, lower } => format!("fbs{width}from{lower}"),
        };
        format!("{grid}_{disc}")
    }

    /// Why the setting cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), SettingsError> {
        if let Some(s) = self.spacing_mm {
            if !(s.is_finite() && (0.1..=20.0).contains(&s)) {
                return Err(SettingsError::Invalid(format!("spacing {s} mm is outside 0.1-20 mm")));
            }
        }
        match self.discretisation {
            Discretisation::FixedBinNumber { bins } | Discretisation::EqualisedBinNumber { bins }
                if !(1..=1024).contains(&bins) =>
            {
                Err(SettingsError::Invalid(format!("{bins} bins is outside 1-1024")))
            }
            Discretisation::FixedBinSize { width, lower }
                if !(width > 0.0 && width.is_finite() && lower.is_finite()) =>
            {
                Err(SettingsError::Invalid(format!("bin width {width} from {lower}")))
            }
            _ => Ok(()),
        }
    }
}

/// Why settings cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file cannot be read.
    #[error("settings file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// Not the documented JSON.
    #[error("settings file {path}: {source}")]
    Parse { path: String, source: serde_json::Error },
    /// A setting out of range, or none at all.
    #[error("settings: {0}")]
    Invalid(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    settings: Vec<Setting>,
}

/// The study's 32 settings: spacing 1, 2, 3, 4 mm x (fixed bin number, fixed bin number after
/// equalisation) x 8, 16, 32, 64 grey levels, in that nesting order.
pub fn study_grid() -> Vec<Setting> {
    let mut out = Vec::with_capacity(32);
    for spacing in [1.0, 2.0, 3.0, 4.0] {
        for equalise in [false, true] {
            for bins in [8, 16, 32, 64] {
                let discretisation = if equalise {
                    Discretisation::EqualisedBinNumber { bins }
                } else {
                    Discretisation::FixedBinNumber { bins }
                };
                out.push(Setting { spacing_mm: Some(spacing), discretisation });
            }
        }
    }
    out
}

/// Settings from a file (see the module documentation), checked.
pub fn read(path: &Path) -> Result<Vec<Setting>, SettingsError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read { path: name.clone(), source })?;
    let file: SettingsFile =
        serde_json::from_str(&text).map_err(|source| SettingsError::Parse { path: name, source })?;
    if file.settings.is_empty() {
        return Err(SettingsError::Invalid("the file lists no setting".into()));
    }
    for s in &file.settings {
        s.check()?;
    }
    Ok(file.settings)
}

/// SHA-256 (hex) of the settings' canonical JSON, the provenance column `settings_sha256`.
pub fn sha256(settings: &[Setting]) -> String {
    let json = serde_json::to_vec(&SettingsFile { settings: settings.to_vec() }).expect("settings serialise");
    renal_messages::lower_hex(&Sha256::digest(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_study_grid_has_32_distinct_settings() {
        let grid = study_grid();
        assert_eq!(grid.len(), 32);
        let labels: std::collections::BTreeSet<String> = grid.iter().map(Setting::label).collect();
        assert_eq!(labels.len(), 32);
        assert!(labels.contains("1mm_fbn8") && labels.contains("4mm_fbneq64"), "{labels:?}");
        assert!(grid.iter().all(|s| s.check().is_ok()));
    }

    #[test]
    fn files_round_trip_and_the_hash_follows_the_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(
            &path,
            r#"{"settings": [{"spacing_mm": 2.0, "discretisation": {"method": "fixed_bin_number", "bins": 16}},
                {"discretisation": {"method": "fixed_bin_size", "width": 25.0, "lower": 0.0}}]}"#,
        )
        .unwrap();
        let s = read(&path).unwrap();
        assert_eq!(s[0].label(), "2mm_fbn16");
        assert_eq!(s[1].label(), "native_fbs25from0");
        assert_eq!(sha256(&s), sha256(&s.clone()));
        assert_ne!(sha256(&s), sha256(&s[..1]));
        assert_eq!(sha256(&s).len(), 64);

        for (text, want) in [
            (r#"{"settings": []}"#, "no setting"),
            (r#"{"settings": [{"spacing_mm": -1, "discretisation": {"method": "none"}}]}"#, "spacing -1"),
            (r#"{"settings": [{"discretisation": {"method": "fixed_bin_number", "bins": 0}}]}"#, "0 bins"),
            (
                r#"{"settings": [{"discretisation": {"method": "fixed_bin_number", "bins": 8}, "x": 1}]}"#,
                "unknown field",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = read(&path).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
