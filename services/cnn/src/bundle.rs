//! Model bundles: the T2 and T1C networks with their configuration and training manifest,
//! saved and loaded by version.
//!
//! Layout under a registry folder: `cnn/<version>/bundle.json`, `cnn/<version>/t2.safetensors`,
//! `cnn/<version>/t1c.safetensors`. The version is `cnn-` and the first 12 hex digits of the
//! SHA-256 over both weight files, so the same weights always have the same version and two
//! different ones never share it. A bundle is written into a hidden folder and renamed into
//! place, so a reader never sees half a bundle; loading checks each weight file's hash.

use crate::net::{Net, NetConfig};
use crate::train::{EpochLog, TrainConfig};
use crate::weights;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::Device;

/// The series a network reads, in bundle order.
pub const ROLES: [&str; 2] = ["t2", "t1c"];

/// Data a network was trained on: lesion ids with the SHA-256 of the composite used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataManifest {
    /// Training lesions: (case id, composite SHA-256).
    pub train: Vec<(String, String)>,
    /// Validation lesions (early stopping and trial choice).
    pub validation: Vec<(String, String)>,
    /// Malignant lesions in the training part.
    pub train_malignant: usize,
    /// Malignant lesions in the validation part.
    pub validation_malignant: usize,
}

/// One series' network in a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesModel {
    /// `t2` or `t1c`.
    pub role: String,
    /// Weight file name within the bundle folder.
    pub weights: String,
    /// Its SHA-256.
    pub weights_sha256: String,
    /// The epoch that was kept.
    pub best: EpochLog,
    /// Every epoch of every trial.
    pub history: Vec<EpochLog>,
    /// What it was trained on.
    pub data: DataManifest,
}

/// `bundle.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Bundle format (1).
    pub format: u32,
    /// Content version, `cnn-<12 hex>`.
    pub version: String,
    /// RFC 3339 UTC creation time.
    pub created_at: String,
    /// Version of the code that trained it.
    pub code_version: String,
    /// Network shape (both series).
    pub net: NetConfig,
    /// Training settings.
    pub training: TrainConfig,
    /// T2 then T1C.
    pub series: Vec<SeriesModel>,
}

/// A loaded network.
#[derive(Debug)]
pub struct Model {
    /// Variables.
    pub vs: VarStore,
    /// The network.
    pub net: Net,
}

/// Why a bundle could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// No such version in the registry.
    #[error("model version {version:?} is not in {registry} (available: {})", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NotFound {
        /// Asked for.
        version: String,
        /// Registry folder.
        registry: String,
        /// Versions that exist.
        available: Vec<String>,
    },
    /// A file is unreadable, altered or inconsistent.
    #[error("bundle {version}: {reason}")]
    Invalid {
        /// The bundle.
        version: String,
        /// What is wrong.
        reason: String,
    },
    /// Weight file problem.
    #[error(transparent)]
    Weights(#[from] weights::WeightsError),
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io { path: path.display().to_string(), source }
}

fn sha256_file(path: &Path) -> Result<String, BundleError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    Ok(renal_store::sha256_hex(&bytes))
}

/// The `cnn` folder of a registry.
pub fn folder(registry: &Path) -> PathBuf {
    registry.join("cnn")
}

/// Versions present, sorted.
pub fn versions(registry: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(folder(registry))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("bundle.json").is_file())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect();
    out.sort();
    out
}

/// What to save for one series.
pub struct SeriesToSave<'a> {
    /// Trained variables.
    pub vs: &'a VarStore,
    /// Best epoch.
    pub best: EpochLog,
    /// All epochs.
    pub history: Vec<EpochLog>,
    /// Training data.
    pub data: DataManifest,
}

/// Save a T2 and a T1C network as one bundle; returns its manifest. Saving the same weights
/// again finds the bundle already there and returns it.
pub fn save(
    registry: &Path,
    net: NetConfig,
    training: &TrainConfig,
    series: [SeriesToSave<'_>; 2],
    code_version: &str,
    created_at: &str,
) -> Result<Manifest, BundleError> {
    let root = folder(registry);
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    let staging = root.join(format!(".staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let mut hashes = String::new();
    let mut models = Vec::new();
    for (role, s) in ROLES.iter().zip(series) {
        let file = format!("{role}.safetensors");
        let path = staging.join(&file);
        weights::save(s.vs, &path)?;
        let sha = sha256_file(&path)?;
        hashes.push_str(&sha);
        models.push(SeriesModel {
            role: role.to_string(),
            weights: file,
            weights_sha256: sha,
            best: s.best,
            history: s.history,
            data: s.data,
        });
    }
    let version = format!("cnn-{}", &renal_store::sha256_hex(hashes.as_bytes())[..12]);
    let manifest = Manifest {
        format: 1,
        version: version.clone(),
        created_at: created_at.into(),
        code_version: code_version.into(),
        net,
        training: training.clone(),
        series: models,
    };
    let json = staging.join("bundle.json");
    std::fs::write(&json, serde_json::to_vec_pretty(&manifest).expect("serialisable")).map_err(io(&json))?;
    let dest = root.join(&version);
    if dest.join("bundle.json").is_file() {
        let _ = std::fs::remove_dir_all(&staging);
        return read_manifest(registry, &version);
    }
    std::fs::rename(&staging, &dest).map_err(io(&dest))?;
    Ok(manifest)
}

/// Read a bundle's manifest.
pub fn read_manifest(registry: &Path, version: &str) -> Result<Manifest, BundleError> {
    let dir = folder(registry).join(version);
    let json = dir.join("bundle.json");
    if version.contains('/') || version.starts_with('.') || !json.is_file() {
        return Err(BundleError::NotFound {
            version: version.into(),
            registry: registry.display().to_string(),
            available: versions(registry),
        });
    }
    let bytes = std::fs::read(&json).map_err(io(&json))?;
    let m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| BundleError::Invalid { version: version.into(), reason: format!("bundle.json: {e}") })?;
    if m.format != 1 || m.version != version || m.series.len() != 2 {
        return Err(BundleError::Invalid {
            version: version.into(),
            reason: format!(
                "bundle.json says format {} version {} with {} series",
                m.format,
                m.version,
                m.series.len()
            ),
        });
    }
    Ok(m)
}

/// What `model_version = "newest"` asks for: the bundle written last.
pub const NEWEST: &str = "newest";

/// `requested`, or for [`NEWEST`] the version of the bundle with the latest `created_at` (a
/// deployment serving whatever its last training run made).
pub fn resolve(registry: &Path, requested: &str) -> Result<String, BundleError> {
    if requested != NEWEST {
        return Ok(requested.into());
    }
    let mut newest: Option<(String, String)> = None;
    for version in versions(registry) {
        let created = read_manifest(registry, &version)?.created_at;
        if newest.as_ref().is_none_or(|(c, v)| (&created, &version) > (c, v)) {
            newest = Some((created, version));
        }
    }
    newest.map(|(_, v)| v).ok_or_else(|| BundleError::NotFound {
        version: requested.into(),
        registry: registry.display().to_string(),
        available: Vec::new(),
    })
}

/// Load both networks of a bundle onto `device`, verifying the weight files' hashes.
pub fn load(registry: &Path, version: &str, device: Device) -> Result<(Manifest, [Model; 2]), BundleError> {
    let m = read_manifest(registry, version)?;
    let dir = folder(registry).join(version);
    let mut models = Vec::new();
    for (role, s) in ROLES.iter().zip(&m.series) {
        if s.role != *role {
            return Err(BundleError::Invalid {
                version: version.into(),
                reason: format!("series {} where {role} belongs", s.role),
            });
        }
        let path = dir.join(&s.weights);
        let sha = sha256_file(&path)?;
        if sha != s.weights_sha256 {
            return Err(BundleError::Invalid {
                version: version.into(),
                reason: format!("{} has SHA-256 {sha}, the manifest says {}", s.weights, s.weights_sha256),
            });
        }
        let mut vs = VarStore::new(device);
        let net = Net::new(&vs.root(), m.net);
        let loaded = weights::load(&mut vs, &path, m.net.backbone.name())?;
        if loaded.head == 0 {
            return Err(BundleError::Invalid { version: version.into(), reason: format!("{} has no head", s.weights) });
        }
        models.push(Model { vs, net });
    }
    let [t2, t1c]: [Model; 2] = models.try_into().expect("two roles");
    Ok((m, [t2, t1c]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Backbone, Head};
    use crate::train::{predict, TrainConfig};
    use tch::{Kind, Tensor};

    fn log() -> EpochLog {
        EpochLog {
            trial: 0,
            epoch: 3,
            train_loss: 0.5,
            validation_loss: 0.6,
            validation_auc: 0.7,
            validation_accuracy: 0.6,
            seconds: 1.0,
        }
    }

    #[test]
    fn bundles_round_trip_by_version_and_refuse_tampering_and_unknown_versions() {
        let _rng = crate::torch_rng_lock();
        let dir = tempfile::tempdir().unwrap();
        let net = NetConfig { backbone: Backbone::Resnet18, head: Head::Plain, input_px: 32 };
        let training = TrainConfig { net, ..TrainConfig::cpu_quick() };
        tch::manual_seed(5);
        let (vs2, vs1) = (VarStore::new(Device::Cpu), VarStore::new(Device::Cpu));
        let (n2, _n1) = (Net::new(&vs2.root(), net), Net::new(&vs1.root(), net));
        let data = DataManifest {
            train: vec![("A".into(), "0".repeat(64))],
            validation: vec![],
            train_malignant: 1,
            validation_malignant: 0,
        };
        let series = |vs| SeriesToSave { vs, best: log(), history: vec![log()], data: data.clone() };
        let m = save(dir.path(), net, &training, [series(&vs2), series(&vs1)], "test", "2026-11-29T00:00:00Z").unwrap();
        assert!(m.version.starts_with("cnn-") && m.version.len() == 16, "{}", m.version);
        assert_eq!(versions(dir.path()), vec![m.version.clone()]);
        // Same weights, same version; the second save finds the first.
        let again = save(dir.path(), net, &training, [series(&vs2), series(&vs1)], "test", "later").unwrap();
        assert_eq!(again, m);

        let (read, [t2, _t1c]) = load(dir.path(), &m.version, Device::Cpu).unwrap();
        assert_eq!(read, m);
        let x = Tensor::rand([3, 3, 200, 200], (Kind::Float, Device::Cpu));
        // Same weights; batch sizes 2 and 3 may round differently (1e-7 observed).
        let (a, b) = (predict(&n2, &x, Device::Cpu, 3).0, predict(&t2.net, &x, Device::Cpu, 3).0);
        assert_eq!(a, b, "reloaded weights, same batching: identical");
        let c = predict(&t2.net, &x, Device::Cpu, 2).0;
        assert!(a.iter().zip(&c).all(|(p, q)| (p - q).abs() < 1e-6));

        let err = load(dir.path(), "cnn-000000000000", Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("\"cnn-000000000000\" is not in") && err.contains(&m.version), "{err}");
        let err = load(dir.path(), "../etc", Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("is not in"), "{err}");

        let w = folder(dir.path()).join(&m.version).join("t1c.safetensors");
        let mut bytes = std::fs::read(&w).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&w, bytes).unwrap();
        let err = load(dir.path(), &m.version, Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("t1c.safetensors has SHA-256"), "{err}");
    }
}
