//! The join table: each lesion's clinical values, by lesion id and revision, as they arrived on
//! `renal.lesions`.
//!
//! A score names its lesion; the clinical values come from that lesion's own message, never
//! from the order messages arrive in. The table is a folder with one small JSON file per lesion
//! revision (`<dir>/<case_id>/r<revision>.json`), written to a temporary name and renamed, so a
//! crash leaves either the old state or the new one. The lesion's offset is committed only
//! after its row is written, so a restarted worker has every row whose message it moved past.

use renal_messages::{Clinical, LesionV1, Sex};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the ensemble keeps of a lesion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClinicalRow {
    /// Lesion id.
    pub case_id: String,
    /// Case revision.
    pub revision: u32,
    /// Site code.
    pub site: String,
    /// Age and sex as recorded.
    pub clinical: Clinical,
    /// Tumour volume from the T1C mask, mL.
    pub tumour_volume_ml: f64,
    /// When the lesion's first instance reached ingest (carried to its prediction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_instance_at: Option<String>,
}

impl ClinicalRow {
    /// The row of a lesion message.
    pub fn of(l: &LesionV1) -> ClinicalRow {
        ClinicalRow {
            case_id: l.case_id.clone(),
            first_instance_at: l.first_instance_at.clone(),
            revision: l.revision,
            site: l.site.clone(),
            clinical: l.clinical.clone(),
            tumour_volume_ml: l.tumour_volume_ml,
        }
    }
}

/// `(age_years, sex_male)` as recorded: male 1, female 0, other or unknown sex missing.
pub fn recorded(c: &Clinical) -> (Option<f64>, Option<f64>) {
    let sex = match c.sex {
        Some(Sex::M) => Some(1.0),
        Some(Sex::F) => Some(0.0),
        Some(Sex::O) | None => None,
    };
    (c.age_years.map(f64::from), sex)
}

/// Why a row could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The lesion id cannot name a file (it is checked, not escaped).
    #[error(
        "lesion id {0:?} is not a safe file name (letters, digits, '.', '_', '-'; at most 128; not starting with '.')"
    )]
    BadId(String),
    /// File-system failure (worth retrying).
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A stored row is not readable (the table was damaged).
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Whether a lesion id can be used as a folder name as it is.
pub fn safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// The table in a folder.
#[derive(Debug, Clone)]
pub struct ClinicalTable {
    dir: PathBuf,
}

impl ClinicalTable {
    /// Open (and create) the table under `dir`.
    pub fn open(dir: &Path) -> Result<ClinicalTable, JoinError> {
        std::fs::create_dir_all(dir).map_err(|source| JoinError::Io { path: dir.to_path_buf(), source })?;
        Ok(ClinicalTable { dir: dir.to_path_buf() })
    }

    fn path(&self, case_id: &str, revision: u32) -> Result<PathBuf, JoinError> {
        if !safe_id(case_id) {
            return Err(JoinError::BadId(case_id.into()));
        }
        Ok(self.dir.join(case_id).join(format!("r{revision}.json")))
    }

    fn write(&self, case_id: &str, revision: u32, bytes: &[u8]) -> Result<(), JoinError> {
        let path = self.path(case_id, revision)?;
        let folder = path.parent().expect("a file under the table");
        let io = |source| JoinError::Io { path: path.clone(), source };
        std::fs::create_dir_all(folder).map_err(io)?;
        let tmp = folder.join(format!(".r{revision}.json.partial"));
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    fn read<T: serde::de::DeserializeOwned>(&self, case_id: &str, revision: u32) -> Result<Option<T>, JoinError> {
        let path = self.path(case_id, revision)?;
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map(Some).map_err(|e| JoinError::Corrupt { path, reason: e.to_string() })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(JoinError::Io { path, source }),
        }
    }

    /// Store a row (replacing the same lesion revision's).
    pub fn put(&self, row: &ClinicalRow) -> Result<(), JoinError> {
        self.write(&row.case_id, row.revision, &serde_json::to_vec(row).expect("row serialises"))
    }

    /// The row of a lesion revision, if it has arrived.
    pub fn get(&self, case_id: &str, revision: u32) -> Result<Option<ClinicalRow>, JoinError> {
        self.read(case_id, revision)
    }
}

/// A score that lacks one series' probability, parked until a score with the other one arrives
/// for the same lesion revision, or until the wait ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialScore {
    /// Lesion id.
    pub case_id: String,
    /// Case revision.
    pub revision: u32,
    /// Site code.
    pub site: String,
    /// CNN bundle version.
    pub model_version: String,
    /// T2 probability, when some message carried it.
    pub t2_probability: Option<f64>,
    /// T1C probability, when some message carried it.
    pub t1c_probability: Option<f64>,
    /// When the first part arrived, ms since the Unix epoch.
    pub first_seen_ms: u64,
    /// The first part's message, for the dead letter.
    pub source: renal_messages::DeadLetterSource,
    /// SHA-256 of the first part's bytes.
    pub input_sha256: String,
}

/// Parked partial scores, one file per lesion revision (`<dir>/<case_id>/r<revision>.json`),
/// written by rename like [`ClinicalTable`].
#[derive(Debug, Clone)]
pub struct PartialTable {
    rows: ClinicalTable,
}

impl PartialTable {
    /// Open (and create) the table under `dir`.
    pub fn open(dir: &Path) -> Result<PartialTable, JoinError> {
        Ok(PartialTable { rows: ClinicalTable::open(dir)? })
    }

    /// Park (or replace) a partial score.
    pub fn put(&self, p: &PartialScore) -> Result<(), JoinError> {
        self.rows.write(&p.case_id, p.revision, &serde_json::to_vec(p).expect("partial serialises"))
    }

    /// The parked partial score of a lesion revision.
    pub fn get(&self, case_id: &str, revision: u32) -> Result<Option<PartialScore>, JoinError> {
        self.rows.read(case_id, revision)
    }

    /// Forget a parked score (completed, or dead-lettered).
    pub fn remove(&self, case_id: &str, revision: u32) -> Result<(), JoinError> {
        let path = self.rows.path(case_id, revision)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(JoinError::Io { path, source }),
        }
    }

    /// Every parked score; an unreadable file is an error in its place.
    pub fn all(&self) -> Vec<Result<PartialScore, JoinError>> {
        let mut out = Vec::new();
        for case in std::fs::read_dir(&self.rows.dir).into_iter().flatten().flatten() {
            for file in std::fs::read_dir(case.path()).into_iter().flatten().flatten() {
                let path = file.path();
                let name = file.file_name().to_string_lossy().to_string();
                if name.starts_with('r') && name.ends_with(".json") {
                    out.push(match std::fs::read(&path) {
                        Ok(b) => {
                            serde_json::from_slice(&b).map_err(|e| JoinError::Corrupt { path, reason: e.to_string() })
                        }
                        Err(source) => Err(JoinError::Io { path, source }),
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(case_id: &str, revision: u32, age: u32) -> ClinicalRow {
        ClinicalRow {
            case_id: case_id.into(),
            first_instance_at: None,
            revision,
            site: "HUP".into(),
            clinical: Clinical { age_years: Some(age), sex: Some(Sex::F) },
            tumour_volume_ml: 4.5,
        }
    }

    #[test]
    fn rows_are_found_by_id_and_revision_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let table = ClinicalTable::open(dir.path()).unwrap();
        table.put(&row("HUP-0001", 1, 50)).unwrap();
        table.put(&row("HUP-0001", 2, 51)).unwrap();
        table.put(&row("HUP-0002", 1, 70)).unwrap();
        let again = ClinicalTable::open(dir.path()).unwrap();
        assert_eq!(again.get("HUP-0001", 2).unwrap(), Some(row("HUP-0001", 2, 51)));
        assert_eq!(again.get("HUP-0001", 1).unwrap(), Some(row("HUP-0001", 1, 50)));
        assert_eq!(again.get("HUP-0001", 3).unwrap(), None);
        assert_eq!(again.get("HUP-0003", 1).unwrap(), None);
        for bad in ["../x", "", ".hidden", "a/b", "é"] {
            assert!(matches!(again.get(bad, 1), Err(JoinError::BadId(_))), "{bad:?}");
        }
        std::fs::write(dir.path().join("HUP-0002/r1.json"), b"{").unwrap();
        assert!(matches!(again.get("HUP-0002", 1), Err(JoinError::Corrupt { .. })));
        assert_eq!(recorded(&Clinical { age_years: Some(7), sex: Some(Sex::O) }), (Some(7.0), None));
        assert_eq!(recorded(&Clinical { age_years: None, sex: Some(Sex::M) }), (None, Some(1.0)));
    }
}
