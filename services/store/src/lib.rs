//! Large data by reference: a content-addressed blob store.
//!
//! Volumes, DICOM instances and composites never ride on the bus; they are put here and
//! messages carry a [`BlobRef`] (key, SHA-256, size). Keys are derived from the content, so a
//! redelivered write is a no-op and a reader can verify what it got. [`LocalBlobStore`] keeps
//! blobs under a folder and commits each file atomically (write, fsync, rename);
//! [`ObjectBlobStore`] keeps them in S3 or an S3-compatible server. [`open`] picks one from a
//! setting: a folder path, or `s3://bucket[/prefix]`.
//!
//! ```
//! use renal_store::{BlobStore, LocalBlobStore};
//! let dir = tempfile::tempdir().unwrap();
//! let store = LocalBlobStore::new(dir.path()).unwrap();
//! let r = store.put(b"hello").unwrap();
//! assert_eq!(store.get(&r).unwrap(), b"hello");
//! assert_eq!(r.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
//! ```

#[cfg(feature = "s3")]
pub mod object;
pub mod table;

#[cfg(feature = "s3")]
pub use object::ObjectBlobStore;
pub use table::{TableError, TableWriter, PROVENANCE_COLUMNS};

use renal_messages::BlobRef;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The store's folder cannot be used.
    #[error("blob store at {path}: {source}")]
    Root { path: PathBuf, source: std::io::Error },
    /// Writing a blob failed.
    #[error("writing blob {key}: {source}")]
    Write { key: String, source: std::io::Error },
    /// The store has no blob under this key (it will not appear by retrying).
    #[error("blob {key} does not exist")]
    Missing { key: String },
    /// Reading a blob failed (unreadable now; may succeed later).
    #[error("reading blob {key}: {source}")]
    Read { key: String, source: std::io::Error },
    /// The bytes read do not hash to the reference.
    #[error("blob {key} is corrupt: expected sha256 {expected}, found {found}")]
    Corrupt { key: String, expected: String, found: String },
    /// A key outside the store's layout.
    #[error("invalid blob key {0:?}")]
    BadKey(String),
}

impl BlobError {
    /// The dead-letter reason this failure means for the input that referenced the blob:
    /// `missing_blob` and `corrupt_blob` will never heal by retrying; every other failure (a
    /// store that cannot be read or written just now) is transient, `None`. The one place that
    /// sorts blob failures; stages' own errors delegate here.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            BlobError::Missing { .. } => Some("missing_blob"),
            BlobError::Corrupt { .. } => Some("corrupt_blob"),
            BlobError::Root { .. } | BlobError::Write { .. } | BlobError::Read { .. } | BlobError::BadKey(_) => None,
        }
    }
}

/// Where large data lives.
pub trait BlobStore: Send + Sync {
    /// Store bytes; idempotent for identical content.
    fn put(&self, bytes: &[u8]) -> Result<BlobRef, BlobError>;
    /// Fetch and verify bytes.
    fn get(&self, blob: &BlobRef) -> Result<Vec<u8>, BlobError>;
}

/// Open the blob store a setting names: `s3://bucket[/prefix]` (settings from the AWS
/// environment variables; `object`, with the `s3` feature) or a local folder.
/// Bytes read and written through it are counted (`renal_blob_bytes_total`).
pub fn open(spec: &str) -> Result<std::sync::Arc<dyn BlobStore>, BlobError> {
    Ok(std::sync::Arc::new(Counted(open_uncounted(spec)?)))
}

fn open_uncounted(spec: &str) -> Result<Box<dyn BlobStore>, BlobError> {
    if spec.contains("://") {
        #[cfg(feature = "s3")]
        return Ok(Box::new(ObjectBlobStore::from_url(spec)?));
        #[cfg(not(feature = "s3"))]
        return Err(BlobError::Root {
            path: spec.into(),
            source: std::io::Error::other("this build has no object-store support (build with the `s3` feature)"),
        });
    } else {
        Ok(Box::new(LocalBlobStore::new(Path::new(spec))?))
    }
}

/// A blob store whose traffic is counted.
struct Counted(Box<dyn BlobStore>);

impl BlobStore for Counted {
    fn put(&self, bytes: &[u8]) -> Result<BlobRef, BlobError> {
        let blob = reachable(self.0.put(bytes))?;
        renal_telemetry::emit(BlobTransferred { operation: "write", bytes: bytes.len() });
        Ok(blob)
    }

    fn get(&self, blob: &BlobRef) -> Result<Vec<u8>, BlobError> {
        let bytes = reachable(self.0.get(blob))?;
        renal_telemetry::emit(BlobTransferred { operation: "read", bytes: bytes.len() });
        Ok(bytes)
    }
}

/// Report the store ready unless the call failed in a way that is the store's, not the blob's
/// (an unwritable root, a read or write that failed): then `/readyz` says `blob_store` until a
/// call succeeds again. A missing or corrupt blob is the input's problem, not the store's.
fn reachable<T>(result: Result<T, BlobError>) -> Result<T, BlobError> {
    let store_fault = matches!(&result, Err(e) if e.code().is_none() && !matches!(e, BlobError::BadKey(_)));
    renal_telemetry::set_ready("blob_store", !store_fault);
    result
}

/// Bytes moved to or from the blob store.
pub struct BlobTransferred {
    /// `read` or `write`.
    pub operation: &'static str,
    /// How many.
    pub bytes: usize,
}

impl renal_telemetry::InternalEvent for BlobTransferred {
    fn emit(self) {
        renal_telemetry::pipeline_metrics().blob_bytes.with_label_values(&[self.operation]).inc_by(self.bytes as u64);
    }
}

/// Refuse keys outside the layout `sha256/<first two hex>/<64 hex>`.
fn check_key(key: &str) -> Result<(), BlobError> {
    let ok = key.len() == 7 + 3 + 64
        && key.starts_with("sha256/")
        && key[7..9].chars().all(|c| c.is_ascii_hexdigit())
        && &key[9..10] == "/"
        && key[10..].chars().all(|c| c.is_ascii_hexdigit());
    if ok {
        Ok(())
    } else {
        Err(BlobError::BadKey(key.into()))
    }
}

/// The reference `bytes` get in any blob store: key `sha256/<first two hex>/<hash>`, their
/// SHA-256 and size. Computing it stores nothing.
pub fn blob_ref(bytes: &[u8]) -> BlobRef {
    let sha = sha256_hex(bytes);
    BlobRef { key: format!("sha256/{}/{}", &sha[..2], sha), sha256: sha, bytes: bytes.len() as u64 }
}

/// `bytes` if they hash to `blob`'s SHA-256, else [`BlobError::Corrupt`].
fn verified(blob: &BlobRef, bytes: Vec<u8>) -> Result<Vec<u8>, BlobError> {
    let found = sha256_hex(&bytes);
    if found != blob.sha256 {
        return Err(BlobError::Corrupt { key: blob.key.clone(), expected: blob.sha256.clone(), found });
    }
    Ok(bytes)
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    renal_base::hex::encode(Sha256::digest(bytes))
}

/// Blobs as files: `<root>/sha256/<first two hex>/<hash>`.
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
}

impl LocalBlobStore {
    /// Use (and create) `root`.
    pub fn new(root: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(root.join("sha256")).map_err(|source| BlobError::Root { path: root.into(), source })?;
        Ok(LocalBlobStore { root: root.into() })
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, BlobError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

impl BlobStore for LocalBlobStore {
    fn put(&self, bytes: &[u8]) -> Result<BlobRef, BlobError> {
        let blob = blob_ref(bytes);
        let path = self.path_of(&blob.key)?;
        if !path.exists() {
            let err = |source| BlobError::Write { key: blob.key.clone(), source };
            std::fs::create_dir_all(path.parent().expect("key has a folder")).map_err(err)?;
            let tmp = path.with_extension(format!("tmp-{}-{:?}", std::process::id(), std::thread::current().id()));
            let mut f = std::fs::File::create(&tmp).map_err(err)?;
            f.write_all(bytes).map_err(err)?;
            f.sync_all().map_err(err)?;
            std::fs::rename(&tmp, &path).map_err(err)?;
        }
        Ok(blob)
    }

    fn get(&self, blob: &BlobRef) -> Result<Vec<u8>, BlobError> {
        let path = self.path_of(&blob.key)?;
        let bytes = std::fs::read(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => BlobError::Missing { key: blob.key.clone() },
            _ => BlobError::Read { key: blob.key.clone(), source },
        })?;
        verified(blob, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_is_idempotent_and_get_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::new(dir.path()).unwrap();
        let a = store.put(b"volume bytes").unwrap();
        let b = store.put(b"volume bytes").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.bytes, 12);
        std::fs::write(dir.path().join(&a.key), b"tampered").unwrap();
        assert!(matches!(store.get(&a), Err(BlobError::Corrupt { .. })));
        let missing = BlobRef { key: format!("sha256/00/{}", "0".repeat(64)), sha256: "0".repeat(64), bytes: 0 };
        assert!(matches!(store.get(&missing), Err(BlobError::Missing { .. })));
        let escape = BlobRef { key: "../../etc/passwd".into(), sha256: String::new(), bytes: 0 };
        assert!(matches!(store.get(&escape), Err(BlobError::BadKey(_))));
    }

    #[test]
    fn an_opened_store_counts_its_traffic() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().display().to_string()).unwrap();
        let bytes = renal_telemetry::pipeline_metrics().blob_bytes.clone();
        let (read0, written0) = (bytes.with_label_values(&["read"]).get(), bytes.with_label_values(&["write"]).get());
        let blob = store.put(b"twelve bytes").unwrap();
        store.get(&blob).unwrap();
        store.get(&blob).unwrap();
        assert_eq!(bytes.with_label_values(&["write"]).get() - written0, 12);
        assert_eq!(bytes.with_label_values(&["read"]).get() - read0, 24);
        assert_eq!(renal_telemetry::ready(), Ok(()));
        // A store whose folder is gone (a file in its place) is not ready until a call succeeds
        // again; a missing blob is the input's fault and leaves it ready.
        let missing = BlobRef { key: format!("sha256/00/{}", "0".repeat(64)), sha256: "0".repeat(64), bytes: 0 };
        assert!(matches!(store.get(&missing), Err(BlobError::Missing { .. })));
        assert_eq!(renal_telemetry::ready(), Ok(()));
        std::fs::remove_dir_all(dir.path()).unwrap();
        std::fs::write(dir.path(), b"not a folder").unwrap();
        assert!(matches!(store.put(b"more"), Err(BlobError::Write { .. })));
        assert_eq!(renal_telemetry::ready(), Err("not ready: blob_store".into()));
        std::fs::remove_file(dir.path()).unwrap();
        store.put(b"more").unwrap();
        assert_eq!(renal_telemetry::ready(), Ok(()));
    }
}
