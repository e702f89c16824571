//! Blobs in an S3-compatible object store, through the `object_store` crate.
//!
//! Same keys and guarantees as [`crate::LocalBlobStore`]: the key is the content's SHA-256, a
//! repeated put is a no-op (a HEAD first, then a single-request PUT, which S3 makes visible
//! atomically), and every get is verified against the reference. The trait is synchronous, as
//! stages call it between messages; requests run on a small runtime of the store's own, on its
//! own thread, so the store works from plain threads and from inside other tokio runtimes alike.
//!
//! Connection settings come from the usual AWS environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT` for S3-compatible servers,
//! `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint), the bucket and prefix from the URL
//! `s3://bucket[/prefix]`.

use crate::{BlobError, BlobStore};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use renal_messages::BlobRef;
use std::future::Future;
use std::sync::Arc;

/// A blob store on S3 or an S3-compatible server.
pub struct ObjectBlobStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    runtime: tokio::runtime::Handle,
    /// Dropping the sender ends the runtime's thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for ObjectBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectBlobStore({}, prefix {:?})", self.store, self.prefix)
    }
}

fn other(key: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{key}: {e}"))
}

impl ObjectBlobStore {
    /// Open `s3://bucket[/prefix]` with settings from the environment.
    pub fn from_url(url: &str) -> Result<ObjectBlobStore, BlobError> {
        let root_err = |e: String| BlobError::Root { path: url.into(), source: std::io::Error::other(e) };
        let rest = url.strip_prefix("s3://").ok_or_else(|| root_err("expected s3://bucket[/prefix]".into()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(root_err("the URL names no bucket".into()));
        }
        let store =
            AmazonS3Builder::from_env().with_bucket_name(bucket).build().map_err(|e| root_err(e.to_string()))?;
        Self::new(Arc::new(store), prefix)
    }

    /// Wrap any `object_store` implementation; keys go under `prefix`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<ObjectBlobStore, BlobError> {
        let root_err = |source| BlobError::Root { path: format!("{store} {prefix}").into(), source };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("renal-object-store")
            .enable_all()
            .build()
            .map_err(root_err)?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("renal-object-store".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                })
            })
            .map_err(root_err)?;
        Ok(ObjectBlobStore { store, prefix: prefix.trim_matches('/').to_string(), runtime: handle, _stop: stop })
    }

    fn path_of(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    /// Run a request on the store's runtime and wait for it on this thread.
    fn block<T: Send + 'static>(&self, request: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime.spawn(async move {
            let _ = tx.send(request.await);
        });
        rx.recv().expect("the object-store runtime outlives its store")
    }
}

impl BlobStore for ObjectBlobStore {
    fn put(&self, bytes: &[u8]) -> Result<BlobRef, BlobError> {
        let blob = crate::blob_ref(bytes);
        let path = self.path_of(&blob.key);
        let store = self.store.clone();
        let payload = PutPayload::from(bytes.to_vec());
        let result = self.block(async move {
            match store.head(&path).await {
                Ok(_) => Ok(()),
                Err(object_store::Error::NotFound { .. }) => store.put(&path, payload).await.map(|_| ()),
                Err(e) => Err(e),
            }
        });
        result.map_err(|e| BlobError::Write { key: blob.key.clone(), source: other(&blob.key, e) })?;
        Ok(blob)
    }

    fn get(&self, blob: &BlobRef) -> Result<Vec<u8>, BlobError> {
        crate::check_key(&blob.key)?;
        let path = self.path_of(&blob.key);
        let store = self.store.clone();
        let bytes = self.block(async move { store.get(&path).await?.bytes().await }).map_err(|e| match e {
            object_store::Error::NotFound { .. } => BlobError::Missing { key: blob.key.clone() },
            e => BlobError::Read { key: blob.key.clone(), source: other(&blob.key, e) },
        })?;
        crate::verified(blob, bytes.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[test]
    fn same_contract_as_the_local_store_on_an_in_memory_backend() {
        let backend = Arc::new(InMemory::new());
        let store = ObjectBlobStore::new(backend.clone(), "site/blobs").unwrap();
        let a = store.put(b"volume bytes").unwrap();
        assert_eq!(store.put(b"volume bytes").unwrap(), a);
        assert_eq!(store.get(&a).unwrap(), b"volume bytes");
        // Tamper with the object behind the store's back: the get must notice.
        let path = ObjectPath::from(format!("site/blobs/{}", a.key));
        store.block({
            let b = backend.clone();
            async move { b.put(&path, PutPayload::from_static(b"tampered")).await.unwrap() }
        });
        assert!(matches!(store.get(&a), Err(BlobError::Corrupt { .. })));
        let missing = BlobRef { key: format!("sha256/00/{}", "0".repeat(64)), sha256: "0".repeat(64), bytes: 0 };
        assert!(matches!(store.get(&missing), Err(BlobError::Missing { .. })));
        let escape = BlobRef { key: "../../etc/passwd".into(), sha256: String::new(), bytes: 0 };
        assert!(matches!(store.get(&escape), Err(BlobError::BadKey(_))));
    }

    #[test]
    fn works_from_inside_another_runtime() {
        let store = ObjectBlobStore::new(Arc::new(InMemory::new()), "").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let r = rt.block_on(async { store.put(b"from async code").unwrap() });
        assert_eq!(store.get(&r).unwrap(), b"from async code");
    }

    #[test]
    fn refuses_urls_without_a_bucket() {
        assert!(matches!(ObjectBlobStore::from_url("file:///tmp"), Err(BlobError::Root { .. })));
        assert!(matches!(ObjectBlobStore::from_url("s3:///prefix"), Err(BlobError::Root { .. })));
    }
}
