//! The ensemble's model bundle: everything the stage needs besides the CNNs, in one file.
//!
//! `<registry>/ensemble/<version>/bundle.json` holds the clinical model (with the values that
//! fill a missing age or sex), the meta-classifier (bagged trees over the raw T2, T1C and
//! clinical outputs), its Platt calibrator, the decision threshold, and the version of the CNN
//! bundle whose raw outputs the trees learned. The version is `ens-` followed by the first 12
//! hex digits of the SHA-256 of that content (the same fit gives the same version); loading
//! recomputes it, so an edited or damaged file is refused.

use renal_learn::clinical::{ClinicalModel, Features, Fill};
use renal_learn::ensemble::{Ensemble, Meta};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Default decision threshold on the calibrated probability: a calibrated 0.5 is the point
/// where malignant and benign are equally likely.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// What the bundle's version is computed over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Content {
    /// Version of the CNN bundle (`cnn-...`) whose raw T2 and T1C outputs the meta-classifier
    /// was fitted on; scores from any other bundle are refused.
    pub cnn_version: String,
    /// The clinical model (raw output, uncalibrated: the meta-classifier's third input).
    pub clinical: ClinicalModel,
    /// Stand-ins for a missing age or sex.
    pub fill: Fill,
    /// Meta-classifier and calibrator.
    pub ensemble: Ensemble,
    /// A lesion is called malignant when its calibrated probability is at least this.
    pub threshold: f64,
    /// How it was fitted (protocol, rows, seeds), for people; not read by the stage.
    pub fitted: serde_json::Value,
}

/// A bundle as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// `ens-` + 12 hex digits of SHA-256 over [`Content`] as compact JSON.
    pub version: String,
    /// Code version that wrote it.
    pub code_version: String,
    /// RFC 3339 UTC time it was written (not part of the version).
    pub created_at: String,
    /// The model.
    #[serde(flatten)]
    pub content: Content,
}

/// What a prediction came to, before it is put in a message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Call {
    /// Base outputs: T2, T1C, clinical (raw).
    pub inputs: [f64; 3],
    /// Calibrated probability of malignancy.
    pub probability: f64,
    /// `probability >= threshold`.
    pub malignant: bool,
}

/// Why a bundle could not be stored or loaded.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// File-system failure.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// Not a bundle.
    #[error("{path}: not an ensemble bundle: {reason}")]
    Malformed { path: PathBuf, reason: String },
    /// The registry does not have it.
    #[error("model version {version:?} is not in {registry} (available: {available})")]
    Unknown { version: String, registry: PathBuf, available: String },
    /// The content does not hash to the version.
    #[error("{path}: content hashes to {actual}, not to its version {expected}; the bundle was changed after it was written")]
    Tampered { path: PathBuf, expected: String, actual: String },
    /// A value the stage cannot use.
    #[error("ensemble bundle: {0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io { path: path.to_path_buf(), source }
}

/// The version of some content.
pub fn version_of(content: &Content) -> String {
    let json = serde_json::to_vec(content).expect("bundle content serialises");
    let hex: String = Sha256::digest(&json).iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("ens-{hex}")
}

impl Content {
    /// Check what the stage relies on.
    pub fn validate(&self) -> Result<(), BundleError> {
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(BundleError::Invalid(format!("threshold {} is not in [0, 1]", self.threshold)));
        }
        match &self.ensemble.meta {
            Meta::Bagging(b) if b.trees.is_empty() => {
                return Err(BundleError::Invalid("the meta-classifier has no trees".into()));
            }
            Meta::Logistic(m) if m.coef.len() != 4 || m.mean.len() != 3 || m.scale.len() != 3 => {
                return Err(BundleError::Invalid("the logistic stacker does not take three inputs".into()));
            }
            Meta::Input { index, .. } if *index >= 3 => {
                return Err(BundleError::Invalid(format!("the stacker passes input {index} of three through")));
            }
            _ => {}
        }
        let p = &self.ensemble.platt;
        if !(p.a.is_finite() && p.b.is_finite()) {
            return Err(BundleError::Invalid("the calibrator's parameters are not finite".into()));
        }
        Ok(())
    }

    /// The clinical model's raw output for features already filled.
    pub fn clinical_output(&self, x: &Features) -> f64 {
        self.clinical.probability(x)
    }

    /// The calibrated call from the two raw CNN outputs and the clinical features.
    pub fn call(&self, t2: f64, t1c: f64, clinical: &Features) -> Call {
        let inputs = [t2, t1c, self.clinical_output(clinical)];
        let probability = self.ensemble.probability(&inputs);
        Call { inputs, probability, malignant: probability >= self.threshold }
    }
}

/// Write a bundle to `<registry>/ensemble/<version>/bundle.json` (staged, then renamed, so a
/// reader never sees half a bundle). Writing the same content again is a no-op.
pub fn save(registry: &Path, content: Content, code_version: &str, created_at: &str) -> Result<Bundle, BundleError> {
    content.validate()?;
    let bundle = Bundle {
        version: version_of(&content),
        code_version: code_version.into(),
        created_at: created_at.into(),
        content,
    };
    let root = registry.join("ensemble");
    let dir = root.join(&bundle.version);
    if dir.join("bundle.json").exists() {
        return Ok(bundle);
    }
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    let staging = root.join(format!(".{}.partial", bundle.version));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let file = staging.join("bundle.json");
    let text = serde_json::to_string_pretty(&bundle).expect("bundle serialises");
    std::fs::write(&file, text).map_err(io(&file))?;
    std::fs::rename(&staging, &dir).map_err(io(&dir))?;
    Ok(bundle)
}

/// Versions in a registry, sorted.
pub fn list(registry: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(registry.join("ensemble"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("ens-"))
        .collect();
    out.sort();
    out
}

/// What `model_version = "newest"` asks for: the bundle written last.
pub const NEWEST: &str = "newest";

/// `requested`, or for [`NEWEST`] the version of the bundle with the latest `created_at`.
pub fn resolve(registry: &Path, requested: &str) -> Result<String, BundleError> {
    if requested != NEWEST {
        return Ok(requested.into());
    }
    let mut newest: Option<(String, String)> = None;
    for version in list(registry) {
        let created = load(registry, &version)?.created_at;
        if newest.as_ref().is_none_or(|(c, v)| (&created, &version) > (c, v)) {
            newest = Some((created, version));
        }
    }
    newest.map(|(_, v)| v).ok_or_else(|| BundleError::Unknown {
        version: requested.into(),
        registry: registry.to_path_buf(),
        available: "none".into(),
    })
}

/// Load and check a bundle.
pub fn load(registry: &Path, version: &str) -> Result<Bundle, BundleError> {
    let path = registry.join("ensemble").join(version).join("bundle.json");
    if !path.exists() {
        let available = list(registry);
        return Err(BundleError::Unknown {
            version: version.into(),
            registry: registry.to_path_buf(),
            available: if available.is_empty() { "none".into() } else { available.join(", ") },
        });
    }
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let bundle: Bundle = serde_json::from_str(&text)
        .map_err(|e| BundleError::Malformed { path: path.clone(), reason: e.to_string() })?;
    let actual = version_of(&bundle.content);
    if actual != version || bundle.version != version {
        return Err(BundleError::Tampered { path, expected: version.into(), actual });
    }
    bundle.content.validate()?;
    Ok(bundle)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use renal_learn::bagging::BaggingSettings;
    use renal_learn::clinical::ClinicalSettings;

    #[test]
    fn newest_names_the_bundle_written_last() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(resolve(dir.path(), NEWEST), Err(BundleError::Unknown { .. })), "an empty registry");
        let later = save(dir.path(), content("cnn-aaaaaaaaaaaa"), "t", "2026-12-02T00:00:00Z").unwrap();
        let earlier = save(dir.path(), content("cnn-bbbbbbbbbbbb"), "t", "2026-12-01T00:00:00Z").unwrap();
        assert_ne!(later.version, earlier.version);
        assert_eq!(resolve(dir.path(), NEWEST).unwrap(), later.version);
        assert_eq!(resolve(dir.path(), &earlier.version).unwrap(), earlier.version, "a version is itself");
    }

    /// A small fitted bundle content: three base outputs that carry the label with noise.
    pub fn content(cnn_version: &str) -> Content {
        let mut x = Vec::new();
        let mut y = Vec::new();
        let mut clinical_x = Vec::new();
        for i in 0..60u32 {
            let malignant = (i * 7) % 10 < 6;
            let jitter = f64::from((i * 37) % 100) / 250.0;
            let base = if malignant { 0.45 } else { 0.15 };
            x.push(vec![base + jitter, base + 0.2 - jitter / 2.0, 0.5]);
            y.push(malignant);
            clinical_x.push([
                40.0 + f64::from((i * 13) % 30) + if malignant { 10.0 } else { 0.0 },
                f64::from(i % 2),
                20.0,
            ]);
        }
        let clinical =
            ClinicalModel::fit(&clinical_x[..40], &y[..40], &clinical_x[40..], &y[40..], &ClinicalSettings::default())
                .unwrap();
        let ensemble = Ensemble::fit(&x[..40], &y[..40], &x[40..], &y[40..], &BaggingSettings::default()).unwrap();
        Content {
            cnn_version: cnn_version.into(),
            clinical,
            fill: Fill { age_years: 55.0, sex_male: 1.0 },
            ensemble,
            threshold: DEFAULT_THRESHOLD,
            fitted: serde_json::json!({"rows": 60}),
        }
    }

    #[test]
    fn saved_bundles_load_by_content_version_and_edits_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = content("cnn-0123456789ab");
        let saved = save(dir.path(), c.clone(), "test", "2026-11-29T00:00:00Z").unwrap();
        assert!(saved.version.starts_with("ens-") && saved.version.len() == 16, "{}", saved.version);
        // Same content, another time: the same version, nothing rewritten.
        assert_eq!(save(dir.path(), c.clone(), "test", "2026-11-30T00:00:00Z").unwrap().version, saved.version);
        let loaded = load(dir.path(), &saved.version).unwrap();
        assert_eq!(loaded.content, c);
        assert_eq!(list(dir.path()), vec![saved.version.clone()]);

        let err = load(dir.path(), "ens-000000000000").unwrap_err().to_string();
        assert!(err.contains("is not in") && err.contains(&saved.version), "{err}");

        let file = dir.path().join("ensemble").join(&saved.version).join("bundle.json");
        let text = std::fs::read_to_string(&file).unwrap().replace("\"threshold\": 0.5", "\"threshold\": 0.3");
        std::fs::write(&file, text).unwrap();
        assert!(matches!(load(dir.path(), &saved.version), Err(BundleError::Tampered { .. })));

        let mut bad = c.clone();
        bad.threshold = 1.5;
        assert!(matches!(save(dir.path(), bad, "t", "t"), Err(BundleError::Invalid(_))));
        let mut bad = c;
        bad.ensemble.meta = Meta::Input { index: 3, name: "fourth".into() };
        assert!(matches!(save(dir.path(), bad, "t", "t"), Err(BundleError::Invalid(_))));
    }

    #[test]
    fn a_call_is_the_calibrated_meta_score_of_the_three_raw_outputs() {
        let c = content("cnn-0123456789ab");
        let x = [61.0, 0.0, 12.5];
        let call = c.call(0.8, 0.7, &x);
        let clinical = c.clinical.probability(&x);
        assert_eq!(call.inputs, [0.8, 0.7, clinical]);
        // Independently: mean tree vote, then the logistic calibrator 1 / (1 + exp(a s + b)).
        let Meta::Bagging(meta) = &c.ensemble.meta else { panic!("Ensemble::fit fits trees") };
        let votes: f64 = meta.trees.iter().map(|t| t.probability(&call.inputs)).sum::<f64>() / meta.trees.len() as f64;
        let want = 1.0 / (1.0 + (c.ensemble.platt.a * votes + c.ensemble.platt.b).exp());
        assert!((call.probability - want).abs() < 1e-12, "{} vs {want}", call.probability);
        assert_eq!(call.malignant, want >= 0.5);
    }
}
