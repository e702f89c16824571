//! Extraction settings: the grid spacing and the discretisation of one feature set.
//!
//! The study's "texture optimisation" grid crosses isotropic spacings 1, 2, 3 and 4 mm with a
//! fixed bin number of 8, 16, 32 or 64 grey levels, without and with histogram equalisation:
//! 32 settings ([`study_grid`]). A settings file (`--settings`, or `settings` in the worker's
//! config) is JSON: `{"settings": [{"spacing_mm": 2.0, "discretisation": {"method":
//! "fixed_bin_number", "bins": 32}}, ...]}`; `spacing_mm` null or absent keeps the native grid;
//! an optional `"resegmentation": {"range_min": 0, "range_max": 800, "outlier_sigma": 3}`
//! (every field optional) re-segments the intensity mask ([`Resegmentation`]);
//! `"round_intensities": true` rounds interpolated intensities to whole numbers (IBSI, for
//! images in whole-number units such as CT's HU); `"mask_threshold"` (default 0.5) is the
//! interpolated mask value kept; `"ivh"` discretises the intensity-volume histogram on its own,
//! for example `{"method": "fixed_bin_size", "width": 2.5, "lower": -1000}`,
//! `{"method": "fixed_bin_number", "bins": 1000}` or `{"method": "none"}` (the intensities
//! themselves), by default IBSI's recommendation: the intensities when they are whole numbers,
//! else 1,000 bins.
//!
//! A fixed bin size's `lower` bound is explicit: IBSI takes it from the re-segmentation range
//! when there is one (`renal radiomics --bin-width` does), else the ROI's minimum.

use renal_ibsi::intensity::IvhDiscretisation;
use renal_ibsi::roi::{Discretisation, MAX_GREY_LEVELS};
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
    /// Re-segmentation of the intensity mask after resampling; none by default (the study's
    /// MRI settings use none: MR intensities have no physical scale to cut at).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resegmentation: Option<Resegmentation>,
    /// Round intensities to whole numbers after interpolation (IBSI, for images whose units are
    /// whole numbers); ties go to the even number, as NumPy and MIRP round.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub round_intensities: bool,
    /// Interpolated mask values kept: at least this; 0.5 when absent (IBSI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_threshold: Option<f64>,
    /// The intensity-volume histogram's discretisation; IBSI's recommendation when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ivh: Option<IvhDiscretisation>,
}

/// The mask threshold when a setting names none (IBSI 1, §2.4).
pub const DEFAULT_MASK_THRESHOLD: f64 = 0.5;

/// IBSI re-segmentation (IBSI 1, §2.5): the intensity mask keeps the morphological mask's voxels
/// inside `[range_min, range_max]` (either bound optional) and, with `outlier_sigma` = k,
/// within `μ ± kσ`, the mean and (population) standard deviation of the whole morphological
/// mask: combined, the intersection of both ranges (as MIRP does). Morphology keeps the mask as
/// it was.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resegmentation {
    /// Lowest intensity kept, intensity units.
    #[serde(default)]
    pub range_min: Option<f64>,
    /// Highest intensity kept, intensity units.
    #[serde(default)]
    pub range_max: Option<f64>,
    /// Outlier filter width k, in standard deviations (IBSI's usual 3).
    #[serde(default)]
    pub outlier_sigma: Option<f64>,
}

impl Resegmentation {
    /// The intensity mask: `mask` re-segmented on `image`.
    pub fn apply(&self, image: &[f32], mask: &[u8]) -> Vec<bool> {
        let (mut lo, mut hi) = (self.range_min.unwrap_or(f64::NEG_INFINITY), self.range_max.unwrap_or(f64::INFINITY));
        if let Some(k) = self.outlier_sigma {
            let roi: Vec<f64> = image.iter().zip(mask).filter(|(_, &m)| m != 0).map(|(&v, _)| f64::from(v)).collect();
            if !roi.is_empty() {
                let n = roi.len() as f64;
                let mu = roi.iter().sum::<f64>() / n;
                let sigma = (roi.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / n).sqrt();
                (lo, hi) = (lo.max(mu - k * sigma), hi.min(mu + k * sigma));
            }
        }
        image.iter().zip(mask).map(|(&v, &m)| m != 0 && (lo..=hi).contains(&f64::from(v))).collect()
    }
}

impl Setting {
    /// A setting of this grid and discretisation, everything else as IBSI recommends (no
    /// re-segmentation, no rounding, mask threshold 0.5, the default IVH).
    pub fn new(spacing_mm: Option<f64>, discretisation: Discretisation) -> Setting {
        Setting {
            spacing_mm,
            discretisation,
            resegmentation: None,
            round_intensities: false,
            mask_threshold: None,
            ivh: None,
        }
    }

    /// The interpolated mask value kept.
    pub fn mask_threshold(&self) -> f64 {
        self.mask_threshold.unwrap_or(DEFAULT_MASK_THRESHOLD)
    }

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
        let mut label = format!("{grid}_{disc}");
        if let Some(r) = self.resegmentation {
            let bound = |b: Option<f64>| b.map_or(String::new(), |v| v.to_string());
            if r.range_min.is_some() || r.range_max.is_some() {
                label.push_str(&format!("_range{}to{}", bound(r.range_min), bound(r.range_max)));
            }
            if let Some(k) = r.outlier_sigma {
                label.push_str(&format!("_outlier{k}sd"));
            }
        }
        if self.round_intensities {
            label.push_str("_rounded");
        }
        if let Some(t) = self.mask_threshold {
            label.push_str(&format!("_mask{t}"));
        }
        match self.ivh {
            None => {}
            Some(IvhDiscretisation::None) => label.push_str("_ivhraw"),
            Some(IvhDiscretisation::FixedBinNumber { bins }) => label.push_str(&format!("_ivhfbn{bins}")),
            Some(IvhDiscretisation::FixedBinSize { width, lower }) => {
                label.push_str(&format!("_ivhfbs{width}"));
                if let Some(l) = lower {
                    label.push_str(&format!("from{l}"));
                }
            }
        }
        label
    }

    /// Why the setting cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), SettingsError> {
        if let Some(s) = self.spacing_mm {
            if !(s.is_finite() && (0.1..=20.0).contains(&s)) {
                return Err(SettingsError::Invalid(format!("spacing {s} mm is outside 0.1-20 mm")));
            }
        }
        if let Some(r) = self.resegmentation {
            let finite = |b: Option<f64>| b.is_none_or(f64::is_finite);
            if !finite(r.range_min) || !finite(r.range_max) {
                return Err(SettingsError::Invalid("re-segmentation bounds must be finite".into()));
            }
            if let (Some(lo), Some(hi)) = (r.range_min, r.range_max) {
                if lo > hi {
                    return Err(SettingsError::Invalid(format!("re-segmentation range {lo} to {hi} is empty")));
                }
            }
            if r.outlier_sigma.is_some_and(|k| !(k > 0.0 && k.is_finite())) {
                return Err(SettingsError::Invalid("outlier_sigma must be positive".into()));
            }
        }
        if let Some(t) = self.mask_threshold {
            if !(t > 0.0 && t <= 1.0) {
                return Err(SettingsError::Invalid(format!("mask_threshold {t} is outside (0, 1]")));
            }
        }
        match self.ivh {
            Some(IvhDiscretisation::FixedBinNumber { bins }) if bins < 2 => {
                return Err(SettingsError::Invalid(format!("{bins} IVH bins (at least 2)")));
            }
            Some(IvhDiscretisation::FixedBinSize { width, lower })
                if !(width > 0.0 && width.is_finite() && lower.is_none_or(f64::is_finite)) =>
            {
                return Err(SettingsError::Invalid(format!("IVH bin width {width}")));
            }
            _ => {}
        }
        match self.discretisation {
            Discretisation::FixedBinNumber { bins } | Discretisation::EqualisedBinNumber { bins }
                if !(1..=MAX_GREY_LEVELS).contains(&bins) =>
            {
                Err(SettingsError::Invalid(format!("{bins} bins is outside 1-{MAX_GREY_LEVELS}")))
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
                out.push(Setting::new(Some(spacing), discretisation));
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
    renal_base::hex::encode(Sha256::digest(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resegmentation_cuts_the_range_then_the_outliers() {
        let image = [0.0f32, 10.0, 11.0, 12.0, 13.0, 14.0, 50.0, 500.0];
        let mask = [1u8, 1, 1, 1, 1, 1, 1, 0];
        let range = Resegmentation { range_min: Some(5.0), range_max: None, outlier_sigma: None };
        assert_eq!(range.apply(&image, &mask), [false, true, true, true, true, true, true, false]);
        // Mean and sd of the whole mask (0..50): 15.71 and 14.64; within half an sd: 8.4 to
        // 23.0, so 10..14 stay. (Taken after the range cut they would be 20 and 14.28, and only
        // 13 and 14 would stay.)
        let both = Resegmentation { outlier_sigma: Some(0.5), ..range };
        assert_eq!(both.apply(&image, &mask), [false, true, true, true, true, true, false, false]);
        let s = Setting {
            resegmentation: Some(both),
            ..Setting::new(Some(1.0), Discretisation::FixedBinNumber { bins: 8 })
        };
        assert_eq!(s.label(), "1mm_fbn8_range5to_outlier0.5sd");
        let s = Setting {
            round_intensities: true,
            ivh: Some(IvhDiscretisation::FixedBinSize { width: 2.5, lower: Some(-1000.0) }),
            ..s
        };
        assert_eq!(s.label(), "1mm_fbn8_range5to_outlier0.5sd_rounded_ivhfbs2.5from-1000");
    }

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
        assert_eq!(s[0].resegmentation, None);
        assert!(!s[0].round_intensities && s[0].ivh.is_none());
        // The study's grid keeps the hash it had before these keys existed: absent keys are not
        // written.
        assert_eq!(
            serde_json::to_string(&s[0]).unwrap(),
            r#"{"spacing_mm":2.0,"discretisation":{"method":"fixed_bin_number","bins":16}}"#
        );
        std::fs::write(
            &path,
            r#"{"settings": [{"spacing_mm": 2.0, "discretisation": {"method": "fixed_bin_size", "width": 25.0, "lower": -1000.0},
                "round_intensities": true, "mask_threshold": 0.5, "ivh": {"method": "none"}}]}"#,
        )
        .unwrap();
        let r = read(&path).unwrap();
        assert!(r[0].round_intensities);
        assert_eq!(r[0].ivh, Some(IvhDiscretisation::None));
        assert_eq!(r[0].label(), "2mm_fbs25from-1000_rounded_mask0.5_ivhraw");
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
            (r#"{"settings": [{"discretisation": {"method": "none"}, "mask_threshold": 1.5}]}"#, "mask_threshold 1.5"),
            (
                r#"{"settings": [{"discretisation": {"method": "none"}, "ivh": {"method": "fixed_bin_size", "width": 0}}]}"#,
                "IVH bin width 0",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = read(&path).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
