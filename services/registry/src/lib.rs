//! The model registry: which model versions exist, what each was trained on and how it scored,
//! and which one each deployment serves.
//!
//! A model version is an ensemble bundle's version (`ens-...`): that bundle names the CNN
//! bundle whose outputs it learned, so one version pins everything a prediction needs. The
//! registry is a folder (the bundles already live there, `cnn/<version>/` and
//! `ensemble/<version>/`, with the monitor's references in `monitor/`):
//!
//! - `entries/<version>.json`: an [`Entry`]: its CNN bundle, how it was retrained, the champion
//!   it was compared with, the data manifest (every lesion it trained or was evaluated on, with
//!   revision, label and content hash) and its metrics;
//! - `promoted/<deployment>.json`: a [`Pointer`], the version a deployment serves and the ones
//!   it served before (for rollback). It is written under a temporary name and renamed, so a
//!   reader sees the old pointer or the new one, never half of one; a move names the version it
//!   expects to replace, and is refused when another writer moved it first;
//! - `events.jsonl`: every change as a `ModelEventV1` (the message `renal.models` carries),
//!   one per line, and the same as a row of the Parquet table `models` in the store
//!   (`schemas/tables/models.md`).
//!
//! A pointer moves before its event is recorded: a crash between the two leaves the pointer
//! right and the event missing (workers that start read the pointer), never an event that
//! names a version nobody promoted.

pub mod follow;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use renal_messages::{BlobRef, ModelEventV1, Provenance};
use renal_store::TableWriter;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The deployment a registry serves when nobody names one.
pub const DEFAULT_DEPLOYMENT: &str = "default";

/// The table of registry changes in the store.
pub const MODELS_TABLE: &str = "models";

/// One lesion of a model's data manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRow {
    /// Lesion id.
    pub case_id: String,
    /// Revision of the lesion used.
    pub revision: u32,
    /// `benign` or `malignant`, as the label said when the model was trained.
    pub label: String,
    /// SHA-256 of the `renal.lesions` message used (its composites' hashes are inside).
    pub lesion_sha256: String,
}

/// What the registry knows of a model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The ensemble bundle's version (`ens-...`): the model version.
    pub version: String,
    /// The CNN bundle it was fitted on (`cnn-...`).
    pub cnn_version: String,
    /// RFC 3339 UTC time it entered the registry.
    pub created_at: String,
    /// Code version that trained it.
    pub code_version: String,
    /// `initial` (the first model of a site), `full` (networks, clinical model, ensemble and
    /// calibrator retrained), `ensemble` (the champion's networks kept, the rest refitted) or
    /// `recalibration` (only the calibrator refitted).
    pub retrain: String,
    /// The promoted version it was compared with, if any.
    pub champion: Option<String>,
    /// Lesions it was fitted, chose or calibrated on.
    pub training: Vec<ManifestRow>,
    /// Lesions it was evaluated on and never saw.
    pub held_out: Vec<ManifestRow>,
    /// Patient pseudonyms of the held-out lesions: a later challenger is evaluated on them and
    /// never trains on any lesion of theirs.
    pub held_out_patients: Vec<String>,
    /// Metrics on the held-out lesions and, for a challenger, the comparison with its
    /// champion.
    pub metrics: serde_json::Value,
}

/// The version a deployment serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pointer {
    /// Deployment name.
    pub deployment: String,
    /// Model version served.
    pub version: String,
    /// Its CNN bundle.
    pub cnn_version: String,
    /// RFC 3339 UTC time it was promoted (or rolled back to).
    pub since: String,
    /// Versions served before, oldest first; a rollback returns to the last.
    pub history: Vec<String>,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// File-system failure.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A registry file that cannot be read.
    #[error("{path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
    /// No such version.
    #[error("model version {version:?} is not in the registry {registry} (registered: {known})")]
    Unknown { version: String, registry: PathBuf, known: String },
    /// A name that cannot be a file name.
    #[error("{what} {value:?}: use letters, digits, '-', '_' or '.'")]
    BadName { what: &'static str, value: String },
    /// Another writer moved the pointer since it was read.
    #[error("deployment {deployment}: expected {expected} to be promoted, found {found}; someone else moved it")]
    Conflict { deployment: String, expected: String, found: String },
    /// Nothing to roll back to.
    #[error("deployment {deployment}: {reason}")]
    NoRollback { deployment: String, reason: String },
    /// The models table could not be written.
    #[error(transparent)]
    Table(#[from] renal_store::TableError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io { path: path.to_path_buf(), source }
}

fn safe(what: &'static str, value: &str) -> Result<(), RegistryError> {
    let ok = !value.is_empty()
        && !value.starts_with('.')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then_some(()).ok_or_else(|| RegistryError::BadName { what, value: value.into() })
}

/// Write `bytes` to `path` through a temporary file and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    let dir = path.parent().expect("registry files live in a folder");
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RegistryError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| RegistryError::Malformed { path: path.into(), reason: e.to_string() })
}

/// A registry folder and the store its `models` table goes to.
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
    tables: TableWriter,
}

impl Registry {
    /// The registry in `root`, writing its table under `table_root` (an embedded run's
    /// `OUT/store`; a standalone registry's own `store/`).
    pub fn new(root: &Path, table_root: &Path) -> Registry {
        Registry { root: root.into(), tables: TableWriter::new(table_root) }
    }

    /// Its folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn entry_path(&self, version: &str) -> PathBuf {
        self.root.join("entries").join(format!("{version}.json"))
    }

    fn pointer_path(&self, deployment: &str) -> PathBuf {
        self.root.join("promoted").join(format!("{deployment}.json"))
    }

    /// Every registered entry, oldest first.
    pub fn entries(&self) -> Result<Vec<Entry>, RegistryError> {
        let mut entries: Vec<Entry> = read_folder(&self.root.join("entries"))?;
        entries.sort_by(|a, b| (&a.created_at, &a.version).cmp(&(&b.created_at, &b.version)));
        Ok(entries)
    }

    /// One entry.
    pub fn entry(&self, version: &str) -> Result<Entry, RegistryError> {
        safe("model version", version)?;
        let path = self.entry_path(version);
        if !path.exists() {
            let known: Vec<String> = self.entries()?.into_iter().map(|e| e.version).collect();
            let known = if known.is_empty() { "none".into() } else { known.join(", ") };
            return Err(RegistryError::Unknown { version: version.into(), registry: self.root.clone(), known });
        }
        read_json(&path)
    }

    /// The pointer of `deployment`, if it has one.
    pub fn promoted(&self, deployment: &str) -> Result<Option<Pointer>, RegistryError> {
        safe("deployment", deployment)?;
        let path = self.pointer_path(deployment);
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    /// Every deployment's pointer, by name.
    pub fn deployments(&self) -> Result<Vec<Pointer>, RegistryError> {
        let mut out: Vec<Pointer> = read_folder(&self.root.join("promoted"))?;
        out.sort_by(|a, b| a.deployment.cmp(&b.deployment));
        Ok(out)
    }

    /// Record a new version (its bundles must be in the registry already); `trained`.
    pub fn register(&self, entry: &Entry) -> Result<ModelEventV1, RegistryError> {
        safe("model version", &entry.version)?;
        let bundle = self.bundle_ref(&entry.version)?;
        let json = serde_json::to_vec_pretty(entry).expect("entries serialise");
        write_atomically(&self.entry_path(&entry.version), &json)?;
        self.record(event("trained", &entry.version, bundle, None, None))
    }

    /// Record a challenger that was compared with `deployment`'s champion and not promoted,
    /// with the reason; `rejected`.
    pub fn reject(&self, deployment: &str, version: &str, reason: &str) -> Result<ModelEventV1, RegistryError> {
        safe("deployment", deployment)?;
        self.entry(version)?;
        let bundle = self.bundle_ref(version)?;
        self.record(event("rejected", version, bundle, Some(deployment), Some(reason)))
    }

    /// Point `deployment` at `version`, provided it still serves `expected` (`None`: it serves
    /// nothing yet); `promoted`. Promoting the version already served changes nothing and
    /// returns `None`.
    pub fn promote(
        &self,
        deployment: &str,
        version: &str,
        expected: Option<&str>,
        reason: &str,
    ) -> Result<Option<ModelEventV1>, RegistryError> {
        let entry = self.entry(version)?;
        let current = self.promoted(deployment)?;
        let found = current.as_ref().map(|p| p.version.as_str());
        if found == Some(version) {
            return Ok(None);
        }
        if found != expected {
            return Err(RegistryError::Conflict {
                deployment: deployment.into(),
                expected: expected.unwrap_or("nothing").into(),
                found: found.unwrap_or("nothing").into(),
            });
        }
        let history = current
            .map(|p| {
                let mut h = p.history;
                h.push(p.version);
                h
            })
            .unwrap_or_default();
        let pointer = Pointer {
            deployment: deployment.into(),
            version: version.into(),
            cnn_version: entry.cnn_version,
            since: renal_base::now_rfc3339(),
            history,
        };
        write_atomically(&self.pointer_path(deployment), &serde_json::to_vec_pretty(&pointer).expect("serialises"))?;
        let bundle = self.bundle_ref(version)?;
        self.record(event("promoted", version, bundle, Some(deployment), Some(reason))).map(Some)
    }

    /// Point `deployment` back at the version it served before; `rolled_back`, naming the
    /// version returned to.
    pub fn rollback(&self, deployment: &str, reason: &str) -> Result<ModelEventV1, RegistryError> {
        let no = |why: &str| RegistryError::NoRollback { deployment: deployment.into(), reason: why.into() };
        let current = self.promoted(deployment)?.ok_or_else(|| no("nothing is promoted"))?;
        let mut history = current.history.clone();
        let back = history.pop().ok_or_else(|| no(&format!("{} is the first version it served", current.version)))?;
        let entry = self.entry(&back)?;
        let pointer = Pointer {
            deployment: deployment.into(),
            version: back.clone(),
            cnn_version: entry.cnn_version,
            since: renal_base::now_rfc3339(),
            history,
        };
        write_atomically(&self.pointer_path(deployment), &serde_json::to_vec_pretty(&pointer).expect("serialises"))?;
        let why = format!("from {}: {reason}", current.version);
        let bundle = self.bundle_ref(&back)?;
        self.record(event("rolled_back", &back, bundle, Some(deployment), Some(&why)))
    }

    /// Every recorded event, in order.
    pub fn events(&self) -> Result<Vec<ModelEventV1>, RegistryError> {
        let path = self.root.join("events.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&path)(e)),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(n, l)| {
                serde_json::from_str(l).map_err(|e| RegistryError::Malformed {
                    path: path.clone(),
                    reason: format!("line {}: {e}", n + 1),
                })
            })
            .collect()
    }

    /// The ensemble bundle file of `version` as a blob reference (registry-relative key).
    fn bundle_ref(&self, version: &str) -> Result<BlobRef, RegistryError> {
        let key = format!("ensemble/{version}/bundle.json");
        let path = self.root.join(&key);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        Ok(BlobRef { key, sha256: renal_store::sha256_hex(&bytes), bytes: bytes.len() as u64 })
    }

    /// Append the event to `events.jsonl` and write its row of the models table.
    fn record(&self, e: ModelEventV1) -> Result<ModelEventV1, RegistryError> {
        let seq = self.events()?.len();
        let path = self.root.join("events.jsonl");
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let mut line = serde_json::to_vec(&e).expect("events serialise");
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
        f.write_all(&line).and_then(|()| f.sync_all()).map_err(io(&path))?;
        let deployment = e.deployment.as_deref().unwrap_or("registry");
        let date = e.provenance.produced_at.get(..10).unwrap_or("1970-01-01");
        let key = format!("{seq:06}-{}-{}", e.event, e.model_version);
        self.tables.write(MODELS_TABLE, deployment, date, &key, &table_row(&e))?;
        Ok(e)
    }
}

/// Every JSON file of a registry folder (leaving out hidden and staged ones), read as `T`; none
/// when the folder does not exist yet.
fn read_folder<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<Vec<T>, RegistryError> {
    let listing = match std::fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut out = Vec::new();
    for item in listing {
        let path = item.map_err(io(dir))?.path();
        if path.extension().is_some_and(|e| e == "json")
            && !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            out.push(read_json::<T>(&path)?);
        }
    }
    Ok(out)
}

fn event(kind: &str, version: &str, bundle: BlobRef, deployment: Option<&str>, reason: Option<&str>) -> ModelEventV1 {
    ModelEventV1 {
        version: 1,
        event: kind.into(),
        model_version: version.into(),
        provenance: Provenance::now(bundle.sha256.clone()),
        bundle,
        deployment: deployment.map(String::from),
        reason: reason.map(String::from),
    }
}

/// One event as a row of the models table.
pub fn table_row(e: &ModelEventV1) -> RecordBatch {
    let text = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v.to_string()])) };
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("event", text(&e.event)),
        ("model_version", text(&e.model_version)),
        ("deployment", Arc::new(StringArray::from(vec![e.deployment.clone()]))),
        ("reason", Arc::new(StringArray::from(vec![e.reason.clone()]))),
        ("bundle_key", text(&e.bundle.key)),
        ("at", text(&e.provenance.produced_at)),
        ("code_version", text(&e.provenance.code_version)),
        ("settings_sha256", text("")),
        ("input_sha256", text(&e.provenance.input_sha256)),
    ];
    RecordBatch::try_from_iter(cols).expect("columns of one length")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A registry with an ensemble bundle file for each of `versions` (the registry only
    /// hashes the file; its content is the ensemble crate's business).
    pub(crate) fn registry(dir: &Path, versions: &[&str]) -> Registry {
        let reg = Registry::new(&dir.join("models"), &dir.join("store"));
        for (n, v) in versions.iter().enumerate() {
            let folder = dir.join("models").join("ensemble").join(v);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join("bundle.json"), format!("{{\"n\":{n}}}")).unwrap();
            let entry = Entry {
                version: v.to_string(),
                cnn_version: format!("cnn-{n}"),
                created_at: format!("2026-12-07T00:00:0{n}Z"),
                code_version: "test".into(),
                retrain: if n == 0 { "initial".into() } else { "full".into() },
                champion: None,
                training: vec![ManifestRow {
                    case_id: "HUP-0001".into(),
                    revision: 1,
                    label: "benign".into(),
                    lesion_sha256: "ab".repeat(32),
                }],
                held_out: Vec::new(),
                held_out_patients: Vec::new(),
                metrics: serde_json::json!({"roc_auc": 0.8}),
            };
            assert_eq!(reg.register(&entry).unwrap().event, "trained");
        }
        reg
    }

    #[test]
    fn promotion_moves_the_pointer_once_and_rollback_returns_to_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry(dir.path(), &["ens-a", "ens-b", "ens-c"]);
        assert_eq!(
            reg.entries().unwrap().iter().map(|e| e.version.as_str()).collect::<Vec<_>>(),
            ["ens-a", "ens-b", "ens-c"]
        );
        assert_eq!(reg.promoted("default").unwrap(), None);
        let e = reg.promote("default", "ens-a", None, "first model").unwrap().unwrap();
        assert_eq!((e.event.as_str(), e.deployment.as_deref()), ("promoted", Some("default")));
        assert_eq!(e.bundle.key, "ensemble/ens-a/bundle.json");
        // Promoting what is served is not an event; a stale expectation is refused.
        assert_eq!(reg.promote("default", "ens-a", None, "again").unwrap(), None);
        let stale = reg.promote("default", "ens-b", None, "late").unwrap_err();
        assert!(matches!(stale, RegistryError::Conflict { .. }), "{stale}");
        reg.promote("default", "ens-b", Some("ens-a"), "better").unwrap().unwrap();
        reg.promote("default", "ens-c", Some("ens-b"), "better still").unwrap().unwrap();
        let p = reg.promoted("default").unwrap().unwrap();
        assert_eq!(
            (p.version.as_str(), p.cnn_version.as_str(), p.history.clone()),
            ("ens-c", "cnn-2", vec!["ens-a".to_string(), "ens-b".to_string()])
        );
        let back = reg.rollback("default", "alert").unwrap();
        assert_eq!(back.model_version, "ens-b");
        assert_eq!(back.reason.as_deref(), Some("from ens-c: alert"));
        assert_eq!(reg.rollback("default", "again").unwrap().model_version, "ens-a");
        let none = reg.rollback("default", "once more").unwrap_err();
        assert!(none.to_string().contains("first version it served"), "{none}");
        // A second deployment has its own pointer.
        reg.promote("HUP", "ens-c", None, "site pilot").unwrap().unwrap();
        assert_eq!(
            reg.deployments().unwrap().iter().map(|p| p.version.as_str()).collect::<Vec<_>>(),
            ["ens-c", "ens-a"]
        );
        let kinds: Vec<String> = reg.events().unwrap().into_iter().map(|e| e.event).collect();
        assert_eq!(
            kinds,
            [
                "trained",
                "trained",
                "trained",
                "promoted",
                "promoted",
                "promoted",
                "rolled_back",
                "rolled_back",
                "promoted"
            ]
        );
    }

    #[test]
    fn unknown_versions_and_unsafe_names_are_refused_and_every_event_is_a_table_row() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry(dir.path(), &["ens-a"]);
        let unknown = reg.promote("default", "ens-zz", None, "x").unwrap_err();
        assert!(unknown.to_string().contains("registered: ens-a"), "{unknown}");
        assert!(matches!(reg.promote("../x", "ens-a", None, "x"), Err(RegistryError::BadName { .. })));
        assert!(matches!(reg.entry("../../etc"), Err(RegistryError::BadName { .. })));
        let r = reg.reject("default", "ens-a", "ROC AUC worse").unwrap();
        assert_eq!(r.reason.as_deref(), Some("ROC AUC worse"));
        // A pointer file that is not a pointer is an error, not a silent default.
        std::fs::create_dir_all(dir.path().join("models/promoted")).unwrap();
        std::fs::write(dir.path().join("models/promoted/broken.json"), "{").unwrap();
        assert!(matches!(reg.promoted("broken"), Err(RegistryError::Malformed { .. })));
        // Two events, two rows, each in its own atomically written file.
        let mut rows = 0;
        let mut events = Vec::new();
        for part in ["site=registry", "site=default"] {
            let folder = dir.path().join("store/models").join(part);
            for date in std::fs::read_dir(&folder).unwrap() {
                for file in std::fs::read_dir(date.unwrap().path()).unwrap() {
                    let f = std::fs::File::open(file.unwrap().path()).unwrap();
                    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                        .unwrap()
                        .build()
                        .unwrap();
                    for batch in reader {
                        let batch = batch.unwrap();
                        rows += batch.num_rows();
                        let col = batch.column_by_name("event").unwrap();
                        let col = col.as_any().downcast_ref::<StringArray>().unwrap();
                        events.push(col.value(0).to_string());
                    }
                }
            }
        }
        events.sort();
        assert_eq!((rows, events), (2, vec!["rejected".to_string(), "trained".to_string()]));
    }
}
