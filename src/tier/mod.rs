//! The read and write paths between clients and the cold stores.
//!
//! Owns object atomicity: bytes become visible in the store and in the catalog together,
//! under a per-key lock, and a failed write leaves neither. It also owns multipart staging.
//! It must not speak any protocol (no S3 types here) and must not parse configuration.
//! Reads of buckets that use the hot tier go through [`hot`]; the journal (issue 4) will
//! plug in here.

pub mod hot;
mod import;
mod keys;
mod locks;
mod migrate;
mod multipart;
mod read;

pub use import::ImportStats;
pub use keys::{MAX_KEY_LEN, validate_key};
pub use multipart::CompletedPart;
pub use read::{ReadOptions, version_of};

use crate::backend::{Backend, Backends, ByteStream, ObjectWriter, WriteOptions};
use crate::catalog::{BucketRecord, Catalog, ListPage, ListQuery, ObjectHeaders, ObjectRecord};
use crate::config::valid_bucket_name;
use crate::error::{Error, ErrorKind, Result};
use futures::StreamExt;
use locks::KeyLocks;
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Limits the tier enforces on bodies.
#[derive(Debug, Clone)]
pub struct TierLimits {
    /// Largest single PUT or part, in bytes.
    pub max_object_size: u64,
    /// Longest pause between two body chunks.
    pub body_idle_timeout: Duration,
}

/// A new object's bytes and metadata.
pub struct PutInput {
    /// Standard headers.
    pub headers: ObjectHeaders,
    /// User metadata.
    pub user_meta: BTreeMap<String, String>,
    /// The bytes.
    pub body: ByteStream,
    /// Declared length, when the client sent one; the body must match it exactly.
    pub content_length: Option<u64>,
    /// Expected MD5 (from `Content-MD5`), checked before the object becomes visible.
    pub content_md5: Option<[u8; 16]>,
}

/// The read and write paths, shared by every request.
#[derive(Clone)]
pub struct Tier {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Catalog,
    backends: Backends,
    default_backend: String,
    locks: KeyLocks,
    staging: PathBuf,
    limits: TierLimits,
    hot: ReadOptions,
    validated: read::Validated,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Tier {
    /// A tier over `catalog` and `backends`; multipart parts are staged under `staging`.
    pub async fn new(
        catalog: Catalog,
        backends: Backends,
        default_backend: &str,
        staging: PathBuf,
        limits: TierLimits,
        hot: ReadOptions,
    ) -> Result<Tier> {
        if backends.get(default_backend).is_none() {
            return Err(Error::new(ErrorKind::Config, format!("no backend named {default_backend:?}")));
        }
        tokio::fs::create_dir_all(&staging).await?;
        let tier = Tier {
            inner: Arc::new(Inner {
                catalog,
                backends,
                default_backend: default_backend.to_owned(),
                locks: KeyLocks::new(),
                staging,
                limits,
                hot,
                validated: read::Validated::default(),
            }),
        };
        tier.remove_orphan_staging().await?;
        Ok(tier)
    }

    /// The backends (for health probes and their running totals).
    pub fn backends(&self) -> &Backends {
        &self.inner.backends
    }

    /// The catalog (for listings and readiness checks).
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    fn backend(&self, name: &str) -> Result<&Arc<dyn Backend>> {
        self.inner
            .backends
            .get(name)
            .ok_or_else(|| Error::new(ErrorKind::Internal, format!("catalog names unknown backend {name:?}")))
    }

    /// The bucket `name`, or `BucketNotFound`.
    pub async fn bucket(&self, name: &str) -> Result<BucketRecord> {
        self.inner
            .catalog
            .get_bucket(name)
            .await?
            .ok_or_else(|| Error::new(ErrorKind::BucketNotFound, format!("no bucket {name}")))
    }

    /// Creates a bucket on the default backend under the prefix `<name>/`.
    pub async fn create_bucket(&self, name: &str) -> Result<BucketRecord> {
        if !valid_bucket_name(name) {
            return Err(Error::new(ErrorKind::InvalidBucketName, format!("invalid bucket name {name:?}")));
        }
        let rec = BucketRecord {
            name: name.to_owned(),
            backend: self.inner.default_backend.clone(),
            prefix: format!("{name}/"),
            created_ms: now_ms(),
        };
        self.inner.catalog.create_bucket(&rec).await?;
        Ok(rec)
    }

    /// Deletes an empty bucket. The bytes in the store are not touched (there are none).
    pub async fn delete_bucket(&self, name: &str) -> Result<()> {
        self.inner.catalog.delete_bucket(name).await
    }

    /// Lists a bucket from the catalog.
    pub async fn list(&self, bucket: &str, q: &ListQuery) -> Result<ListPage> {
        self.bucket(bucket).await?;
        self.inner.catalog.list(bucket, q).await
    }

    /// The metadata of `bucket`/`key`, or `NotFound`.
    pub async fn head(&self, bucket: &str, key: &str) -> Result<ObjectRecord> {
        self.bucket(bucket).await?;
        self.record(bucket, key).await
    }

    async fn record(&self, bucket: &str, key: &str) -> Result<ObjectRecord> {
        if let Some(rec) = self.inner.catalog.get_object(bucket, key).await? {
            return Ok(rec);
        }
        if let Some(rec) = self.migrate(bucket, key).await? {
            return Ok(rec);
        }
        Err(Error::new(ErrorKind::NotFound, format!("no key {key:?} in {bucket}")))
    }

    /// Stores an object. It becomes visible, in the store and the catalog together, only
    /// once all its bytes are durable in the store; any failure leaves the previous version.
    pub async fn put(&self, bucket: &str, key: &str, input: PutInput) -> Result<ObjectRecord> {
        validate_key(key)?;
        let b = self.bucket(bucket).await?;
        let backend = self.backend(&b.backend)?.clone();
        let path = keys::store_path(&b.prefix, key);
        let mut w = backend.writer(&path, &write_options(&input.headers, &input.user_meta)).await?;
        let (size, md5) = match self.pump(input.body, w.as_mut(), input.content_length).await {
            Ok(v) => v,
            Err(e) => {
                abort_quietly(w).await;
                return Err(e);
            }
        };
        if input.content_md5.is_some_and(|want| want != md5) {
            abort_quietly(w).await;
            return Err(Error::new(ErrorKind::BadDigest, "Content-MD5 does not match the body"));
        }
        let rec = ObjectRecord {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size,
            etag: hex::encode(md5),
            last_modified_ms: now_ms(),
            backend: b.backend.clone(),
            headers: input.headers,
            user_meta: input.user_meta,
        };
        self.publish(w, &rec).await?;
        Ok(rec)
    }

    /// Commits the store write and the catalog row under the key's write lock, so readers
    /// (who open the store under the read lock) never pair one version's row with another's
    /// bytes, and of two concurrent writers the one that commits last wins in both places.
    async fn publish(&self, w: Box<dyn ObjectWriter>, rec: &ObjectRecord) -> Result<()> {
        let _guard = self.inner.locks.write(&rec.bucket, &rec.key).await;
        w.commit().await?;
        let mut last = None;
        for attempt in 0..3u32 {
            match self.inner.catalog.put_object(rec).await {
                Ok(()) => {
                    self.invalidate_hot(&rec.bucket, &rec.key, Some(rec));
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "catalog write failed after store commit");
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
            }
        }
        // The store now holds bytes the row does not describe: drop the row rather than
        // serve a mismatched pair. The write was not acknowledged.
        let _ = self.inner.catalog.delete_object(&rec.bucket, &rec.key).await;
        self.invalidate_hot(&rec.bucket, &rec.key, None);
        Err(last.unwrap_or_else(|| Error::new(ErrorKind::Internal, "catalog write failed")))
    }

    /// Copies a body into `w`, enforcing the size limit, the declared length and the idle
    /// timeout. Returns the length and MD5.
    async fn pump(
        &self,
        mut body: ByteStream,
        w: &mut dyn ObjectWriter,
        expected: Option<u64>,
    ) -> Result<(u64, [u8; 16])> {
        let limits = &self.inner.limits;
        if expected.is_some_and(|n| n > limits.max_object_size) {
            return Err(too_large(limits.max_object_size));
        }
        let (mut size, mut md5) = (0u64, Md5::new());
        loop {
            let next = tokio::time::timeout(limits.body_idle_timeout, body.next())
                .await
                .map_err(|_| Error::new(ErrorKind::Timeout, "client sent no body data within the idle timeout"))?;
            let Some(chunk) = next else { break };
            let chunk = chunk?;
            size += chunk.len() as u64;
            if size > limits.max_object_size {
                return Err(too_large(limits.max_object_size));
            }
            if expected.is_some_and(|n| size > n) {
                return Err(Error::new(ErrorKind::InvalidInput, "body is longer than Content-Length"));
            }
            md5.update(&chunk);
            w.write(chunk).await?;
        }
        if expected.is_some_and(|n| size != n) {
            return Err(Error::new(ErrorKind::IncompleteBody, "body is shorter than Content-Length"));
        }
        Ok((size, md5.finalize().into()))
    }

    /// Reads an object. `plan` sees the current record before any byte is read: it checks
    /// preconditions and picks the byte range (`None` for all of it). It may be called
    /// again with a newer record when a write lands while the read starts.
    pub async fn get(
        &self,
        bucket: &str,
        key: &str,
        plan: impl Fn(&ObjectRecord) -> Result<Option<Range<u64>>>,
    ) -> Result<(ObjectRecord, Option<Range<u64>>, ByteStream)> {
        let b = self.bucket(bucket).await?;
        if let Some(hot) = self.hot_for(bucket) {
            // A write that commits between reading the row and the first cold read makes
            // the fill refuse the stale version (NotFound); read the new row and go again.
            let mut attempt = 0;
            loop {
                let rec = self.record(bucket, key).await?;
                let rec = self.revalidate(&b, rec).await?;
                let range = plan(&rec)?;
                match self.read_hot(&b, &rec, range.clone().unwrap_or(0..rec.size), hot).await {
                    Ok(stream) => return Ok((rec, range, stream)),
                    Err(e) if e.kind() == ErrorKind::NotFound && attempt < 3 => attempt += 1,
                    Err(e) => return Err(e),
                }
            }
        }
        let guard = self.inner.locks.read(bucket, key).await;
        let rec = self.record(bucket, key).await?;
        let range = plan(&rec)?;
        let path = keys::store_path(&b.prefix, key);
        let mut stream = self.backend(&rec.backend)?.read(&path, range.clone()).await?;
        // Pull the first chunk while the read lock is held: once the store has started
        // answering, the version being read is fixed (an open file, an HTTP response), so a
        // writer committing after this cannot mix its bytes into this read.
        let first = stream.next().await;
        drop(guard);
        let stream = futures::stream::iter(first).chain(stream).boxed();
        Ok((rec, range, stream))
    }

    /// Deletes an object. Idempotent: deleting a missing key succeeds.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        let b = self.bucket(bucket).await?;
        if validate_key(key).is_err() {
            // No such key can exist, so there is nothing to delete.
            return Ok(());
        }
        let _guard = self.inner.locks.write(bucket, key).await;
        let backend_name = match self.inner.catalog.get_object(bucket, key).await? {
            Some(rec) => rec.backend,
            None => b.backend.clone(),
        };
        // Row first: a failure between the two steps leaves unreferenced bytes (harmless,
        // and removed by a retried DELETE), never a row pointing at nothing.
        self.inner.catalog.delete_object(bucket, key).await?;
        self.invalidate_hot(bucket, key, None);
        self.backend(&backend_name)?.delete(&keys::store_path(&b.prefix, key)).await
    }

    /// Copies an object, keeping its metadata or replacing it with `replace`.
    pub async fn copy(
        &self,
        (src_bucket, src_key): (&str, &str),
        (dst_bucket, dst_key): (&str, &str),
        replace: Option<(ObjectHeaders, BTreeMap<String, String>)>,
        plan: impl Fn(&ObjectRecord) -> Result<()>,
    ) -> Result<ObjectRecord> {
        let (src, _, body) = self.get(src_bucket, src_key, |r| plan(r).map(|()| None)).await?;
        let (headers, user_meta) = replace.unwrap_or((src.headers.clone(), src.user_meta.clone()));
        let input = PutInput { headers, user_meta, body, content_length: Some(src.size), content_md5: None };
        self.put(dst_bucket, dst_key, input).await
    }

    async fn remove_orphan_staging(&self) -> Result<()> {
        let mut dir = tokio::fs::read_dir(&self.inner.staging).await?;
        while let Some(entry) = dir.next_entry().await? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if self.inner.catalog.get_upload(&name).await?.is_none() {
                tracing::info!(upload = %name, "removing staging files of a finished upload");
                let _ = tokio::fs::remove_dir_all(entry.path()).await;
            }
        }
        Ok(())
    }
}

fn too_large(limit: u64) -> Error {
    Error::new(ErrorKind::EntityTooLarge, format!("body exceeds the {limit}-byte limit"))
}

async fn abort_quietly(w: Box<dyn ObjectWriter>) {
    if let Err(e) = w.abort().await {
        tracing::warn!(error = %e, "aborting a failed write");
    }
}

fn write_options(h: &ObjectHeaders, meta: &BTreeMap<String, String>) -> WriteOptions {
    WriteOptions {
        content_type: h.content_type.clone(),
        cache_control: h.cache_control.clone(),
        content_disposition: h.content_disposition.clone(),
        content_encoding: h.content_encoding.clone(),
        user_metadata: meta.clone(),
    }
}
