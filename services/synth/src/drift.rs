//! Drift you can see: from a given lesion of a site on, the site's lesions are acquired
//! differently, as when a hospital replaces a scanner or changes its contrast timing.
//!
//! - [`DriftKind::Vendor`]: another vendor's scanner at another field strength: its
//!   manufacturer, model, software, both series' protocols (matrix, pixel size, slices),
//!   intensity scale, noise, bias field and stored bits, taken from the first of the five
//!   site profiles whose vendor and field strength both differ;
//! - [`DriftKind::Contrast`]: a shifted contrast phase: lesions enhance less on the
//!   post-contrast series (their solid T1C intensity times [`CONTRAST_PHASE_GAIN`]), as in a
//!   later phase after washout.
//!
//! Lesions keep their site code, patients and labels: only the images change.

use crate::cohort::LesionSpec;
use crate::sites::{SiteProfile, SITES};

/// The T1C enhancement of lesions after a contrast-phase drift, relative to before.
pub const CONTRAST_PHASE_GAIN: f64 = 0.6;

/// What changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// Another vendor's scanner at another field strength.
    Vendor,
    /// A later contrast phase.
    Contrast,
}

/// `SITE:FROM_LESION:KIND`: from the site's lesion number `from_lesion` on (0-based, in the
/// order the cohort lists the site's lesions), images change by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DriftSpec {
    /// Site code.
    pub site: String,
    /// First changed lesion of the site, 0-based.
    pub from_lesion: usize,
    /// What changes.
    pub kind: DriftKind,
}

impl std::str::FromStr for DriftSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<DriftSpec, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let [site, from, kind] = parts[..] else {
            return Err(format!("drift {s:?}: expected SITE:FROM_LESION:KIND, e.g. MAY:0:vendor"));
        };
        let site = site.trim().to_uppercase();
        if crate::sites::site(&site).is_none() {
            return Err(format!("drift {s:?}: unknown site {site:?} (sites: HUP, MAY, TCIA, SXH, PHH)"));
        }
        let from_lesion =
            from.trim().parse().map_err(|_| format!("drift {s:?}: FROM_LESION {from:?} is not a lesion number"))?;
        let kind = match kind.trim() {
            "vendor" => DriftKind::Vendor,
            "contrast" => DriftKind::Contrast,
            other => return Err(format!("drift {s:?}: unknown kind {other:?} (kinds: vendor, contrast)")),
        };
        Ok(DriftSpec { site, from_lesion, kind })
    }
}

/// The profile a site's drifted lesions are acquired with.
pub fn drifted_profile(site: &SiteProfile, kind: DriftKind) -> SiteProfile {
    match kind {
        DriftKind::Contrast => {
            SiteProfile { t1c_enhancement: site.t1c_enhancement * CONTRAST_PHASE_GAIN, ..site.clone() }
        }
        DriftKind::Vendor => {
            let donor = SITES
                .iter()
                .find(|d| d.manufacturer != site.manufacturer && d.field_t != site.field_t)
                .or_else(|| SITES.iter().find(|d| d.manufacturer != site.manufacturer))
                .expect("the five profiles have more than one vendor");
            SiteProfile {
                manufacturer: donor.manufacturer,
                model: donor.model,
                field_t: donor.field_t,
                software: donor.software,
                t2: donor.t2.clone(),
                t1c: donor.t1c.clone(),
                intensity_scale: donor.intensity_scale,
                noise_sigma: donor.noise_sigma,
                bias_strength: donor.bias_strength,
                rescale: donor.rescale,
                bits_stored: donor.bits_stored,
                ..site.clone()
            }
        }
    }
}

/// Apply `drifts` to the cohort's lesions; returns how many lesions each drift changed.
pub fn apply(specs: &mut [LesionSpec], drifts: &[DriftSpec]) -> Vec<usize> {
    let mut changed = vec![0; drifts.len()];
    for (k, d) in drifts.iter().enumerate() {
        // One profile per drift, for the generator's lifetime (a cohort holds `&'static`
        // profiles, as the five sites are).
        let mut profile: Option<&'static SiteProfile> = None;
        for spec in specs.iter_mut().filter(|s| s.site.code == d.site).skip(d.from_lesion) {
            let p = *profile.get_or_insert_with(|| Box::leak(Box::new(drifted_profile(spec.site, d.kind))));
            spec.site = p;
            changed[k] += 1;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_clear_errors() {
        let d: DriftSpec = "may:30:vendor".parse().unwrap();
        assert_eq!(d, DriftSpec { site: "MAY".into(), from_lesion: 30, kind: DriftKind::Vendor });
        for (bad, says) in [
            ("MAY:0", "SITE:FROM_LESION:KIND"),
            ("XYZ:0:vendor", "unknown site"),
            ("MAY:x:vendor", "not a lesion number"),
            ("MAY:0:gradient", "unknown kind"),
        ] {
            let e = bad.parse::<DriftSpec>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_vendor_drift_changes_vendor_and_field_and_keeps_the_site() {
        let may = crate::sites::site("MAY").unwrap();
        let p = drifted_profile(may, DriftKind::Vendor);
        assert_eq!((p.code, p.institution), (may.code, may.institution));
        assert!(p.manufacturer != may.manufacturer && p.field_t != may.field_t);
        let c = drifted_profile(may, DriftKind::Contrast);
        assert_eq!((c.manufacturer, c.field_t), (may.manufacturer, may.field_t));
        assert!((c.t1c_enhancement - may.t1c_enhancement * CONTRAST_PHASE_GAIN).abs() < 1e-12);
    }

    #[test]
    fn a_planned_cohort_changes_the_site_from_the_named_lesion_on() {
        let config = crate::SynthConfig {
            lesions: 60,
            sites: vec!["MAY".into(), "HUP".into()],
            drift: vec!["MAY:3:vendor".parse().unwrap()],
            ..crate::SynthConfig::default()
        };
        let specs = crate::plan(&config).unwrap();
        let may: Vec<&LesionSpec> = specs.iter().filter(|s| s.site.code == "MAY").collect();
        let original = crate::sites::site("MAY").unwrap().manufacturer;
        assert!(may.len() > 5);
        assert!(may[..3].iter().all(|s| s.site.manufacturer == original));
        assert!(may[3..].iter().all(|s| s.site.manufacturer != original));
        assert!(specs.iter().filter(|s| s.site.code == "HUP").all(|s| s.site.manufacturer == "SIEMENS"));
        // The same cohort otherwise: labels and patients as without drift.
        let plain = crate::plan(&crate::SynthConfig { drift: Vec::new(), ..config }).unwrap();
        let key = |s: &LesionSpec| (s.case_id.clone(), s.malignant, s.patient_id.clone());
        assert_eq!(specs.iter().map(key).collect::<Vec<_>>(), plain.iter().map(key).collect::<Vec<_>>());
    }
}
