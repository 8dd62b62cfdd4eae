//! The read and write paths between clients and the cold stores.
//!
//! Owns object atomicity: bytes become visible in the store and in the catalog together,
//! under a per-key lock, and a failed write leaves neither. It also owns multipart staging.
//! It must not speak any protocol (no S3 types here) and must not parse configuration.
//! Reads of buckets that use the hot tier go through [`hot`]; writes are journaled first
//! (`write.rs`, `crate::journal`). A through-mode write is also written *inline*: to
//! every store during the request, before it is acknowledged. The serving mode called
//! "direct" is the only other use of that word: `presign.rs` hands out its URLs.

mod derived;
mod failover;
pub mod hot;
mod import;
mod locks;
mod migrate;
mod multipart;
mod near;
mod presign;
mod read;
mod shared;
mod status;
mod write;

pub use import::ImportStats;
pub use migrate::MigrateStats;
pub use multipart::{CombineChecksums, CompletedPart, MAX_PART_NUMBER};
pub use read::version_of;
pub use status::JournalStatus;
pub use write::WriteCondition;

use crate::backend::{Backend, Backends, ByteStream, ObjectWriter};
use crate::catalog::{BucketRecord, Catalog, ListPage, ListQuery, ObjectDetails, ObjectHeaders, ObjectRecord};
use crate::clock::now_ms;
use crate::error::{Error, ErrorKind, Result};
use crate::journal::Journal;
use crate::names::{valid_bucket_name, validate_key};
use crate::plan::{BucketPlan, Plans};
use futures::StreamExt;
use hot::Hot;
use locks::KeyLocks;
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How a read uses the hot tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HotUse {
    /// Through it: hot chunks are read, missing ones fetched once and kept (every client
    /// read).
    Fill,
    /// Only when it holds the whole range already (or is filling it now); otherwise the
    /// store is read directly and nothing is kept. For one-off readers that must not evict
    /// the working set: warming derivatives reads every original once.
    IfHot,
}

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
    /// What the replaced object must be (`If-Match`, `If-None-Match`).
    pub condition: WriteCondition,
    /// Where the front end leaves the body's verified checksum once the body has ended.
    pub checksum: Option<ChecksumSlot>,
}

/// A verified checksum, known only when a body has been read to its end (a trailer may
/// carry it): the front end fills it, the tier stores it with the object or part.
pub type ChecksumSlot = Arc<std::sync::Mutex<Option<crate::catalog::Checksum>>>;

fn take_checksum(slot: &ChecksumSlot) -> Option<crate::catalog::Checksum> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Headers and user metadata that replace a copied object's (`x-amz-metadata-directive:
/// REPLACE`).
pub type NewMeta = (ObjectHeaders, BTreeMap<String, String>);

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
    hot: Option<Hot>,
    revalidate_after: Option<Duration>,
    validated: read::Validated,
    journal: Journal,
    closer: crate::journal::Closer,
    plans: Plans,
    read_only: std::sync::atomic::AtomicBool,
    /// Reads of versions staged on other nodes (set once the server knows its keys).
    peers: std::sync::OnceLock<crate::cluster::Peers>,
    /// Peers that get a copy of a write acknowledged from the journal.
    peer_copies: usize,
    /// Hot chunks owned across the nodes (`cluster.shared_hot`).
    shared_hot: bool,
    /// Chunks read through their owners, kept near (`cluster.near_cache`).
    near: Option<near::Near>,
    /// The store that keeps derivatives (`images.store`; see `derived.rs`).
    derived_store: std::sync::OnceLock<String>,
}

/// What a tier is built from: the handles the server opened, and the settings it resolved.
pub struct TierParts {
    /// The catalog.
    pub catalog: Catalog,
    /// Every configured store, each behind its layers.
    pub backends: Backends,
    /// Where buckets created over S3 live.
    pub default_backend: String,
    /// The directory of multipart parts.
    pub staging: PathBuf,
    /// Body limits.
    pub limits: TierLimits,
    /// The hot tier; `None` turns it off everywhere.
    pub hot: Option<Hot>,
    /// Revalidate cached objects against their store after this long.
    pub revalidate_after: Option<Duration>,
    /// This node's journal.
    pub journal: Journal,
    /// Every bucket's plan.
    pub plans: Plans,
    /// Start read-only.
    pub read_only: bool,
    /// `journal.peer_copies`.
    pub peer_copies: usize,
    /// `cluster.shared_hot`.
    pub shared_hot: bool,
    /// `cluster.near_cache`, in bytes.
    pub near_cache: u64,
}

impl Tier {
    /// A tier over `parts`; multipart parts are staged under `parts.staging`.
    pub async fn new(parts: TierParts) -> Result<Tier> {
        let p = parts;
        if p.backends.get(&p.default_backend).is_none() {
            return Err(Error::new(ErrorKind::Config, format!("no backend named {:?}", p.default_backend)));
        }
        tokio::fs::create_dir_all(&p.staging).await?;
        let closer = crate::journal::Closer::spawn(p.catalog.clone(), p.journal.clone());
        let chunk_size = p.hot.as_ref().map_or(1, |h| h.settings().chunk_size);
        let near = if p.shared_hot { near::Near::new(p.near_cache, chunk_size) } else { None };
        let tier = Tier {
            inner: Arc::new(Inner {
                catalog: p.catalog,
                backends: p.backends,
                default_backend: p.default_backend,
                locks: KeyLocks::new(),
                staging: p.staging,
                limits: p.limits,
                hot: p.hot,
                revalidate_after: p.revalidate_after,
                validated: read::Validated::default(),
                closer,
                journal: p.journal,
                plans: p.plans,
                read_only: p.read_only.into(),
                peers: std::sync::OnceLock::new(),
                peer_copies: p.peer_copies,
                shared_hot: p.shared_hot,
                near,
                derived_store: std::sync::OnceLock::new(),
            }),
        };
        tier.remove_orphan_staging().await?;
        Ok(tier)
    }

    fn backend(&self, name: &str) -> Result<Arc<dyn Backend>> {
        self.inner
            .backends
            .get(name)
            .ok_or_else(|| Error::new(ErrorKind::Internal, format!("catalog names unknown backend {name:?}")))
    }

    /// The plan of bucket `name`, or `BucketNotFound`.
    pub(crate) async fn plan(&self, name: &str) -> Result<Arc<BucketPlan>> {
        Ok(self.inner.plans.of(&self.bucket(name).await?))
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
        self.record(bucket, key, false).await
    }

    /// The row of `bucket`/`key` (from the row cache, or with `fresh` from the database),
    /// else what copy-on-read migration brings in, else `NotFound`.
    async fn record(&self, bucket: &str, key: &str, fresh: bool) -> Result<ObjectRecord> {
        let c = &self.inner.catalog;
        let row = if fresh { c.get_object_fresh(bucket, key).await? } else { c.get_object(bucket, key).await? };
        if let Some(rec) = row {
            return Ok(rec);
        }
        if let Some(rec) = self.migrate(bucket, key).await? {
            return Ok(rec);
        }
        Err(Error::new(ErrorKind::NotFound, format!("no key {key:?} in {bucket}")))
    }

    /// Stores an object. It becomes visible, with the row naming its staging file, once it
    /// is journaled; any failure before that leaves the previous version (see `write.rs`).
    pub async fn put(&self, bucket: &str, key: &str, input: PutInput) -> Result<ObjectRecord> {
        validate_key(key)?;
        self.writable()?;
        let place = self.plan(bucket).await?;
        self.precheck(bucket, key, &input.condition).await?;
        let path = place.path_of(key);
        let opts = crate::journal::write_options(&input.headers, &input.user_meta);
        let mut staged = self.begin_write(&place, &path, &opts).await?;
        let (size, md5) = match self.pump(input.body, &mut staged, input.content_length).await {
            Ok(v) => v,
            Err(e) => {
                abort_quietly(Box::new(staged)).await;
                return Err(e);
            }
        };
        if input.content_md5.is_some_and(|want| want != md5) {
            abort_quietly(Box::new(staged)).await;
            return Err(Error::new(ErrorKind::BadDigest, "Content-MD5 does not match the body"));
        }
        let rec = ObjectRecord {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size,
            etag: hex::encode(md5),
            last_modified_ms: now_ms(),
            backend: place.stores[0].clone(),
            headers: input.headers,
            user_meta: input.user_meta,
            details: ObjectDetails { checksum: input.checksum.as_ref().and_then(take_checksum), ..Default::default() },
            ..Default::default()
        };
        self.commit_write(staged, rec, &place, (None, &input.condition)).await
    }

    /// Whether writes are refused (maintenance).
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Turns the read-only switch on or off.
    pub fn set_read_only(&self, on: bool) {
        self.inner.read_only.store(on, std::sync::atomic::Ordering::SeqCst);
        ::metrics::gauge!("strata_read_only").set(if on { 1.0 } else { 0.0 });
        tracing::info!(read_only = on, "read-only switch");
    }

    /// Waits until the entries of finished inline writes are closed (`close` at shutdown).
    pub(super) async fn flush_journal(&self) {
        self.inner.closer.flush().await;
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
        self.get_as(bucket, key, HotUse::Fill, plan).await
    }

    /// [`Tier::get`], with the hot tier used as `using` says.
    pub async fn get_as(
        &self,
        bucket: &str,
        key: &str,
        using: HotUse,
        plan: impl Fn(&ObjectRecord) -> Result<Option<Range<u64>>>,
    ) -> Result<(ObjectRecord, Option<Range<u64>>, ByteStream)> {
        let b = self.plan(bucket).await?;
        let hot = self.hot_for(&b);
        let fill = using == HotUse::Fill;
        // A write that commits between reading the row and the first byte makes a hot fill
        // refuse the stale version, and a staged version may move to the stores meanwhile
        // (NotFound in both cases): read the new row and go again.
        let mut attempt = 0;
        loop {
            // Without the hot tier, the read lock keeps writers out until the store has
            // started answering: from then on the version being read is fixed.
            // So does a read that may go past the hot tier.
            let guard = match hot {
                Some(_) if fill => None,
                _ => Some(self.inner.locks.read(bucket, key).await),
            };
            // A retry reads the committed row: the cached one led to a version that is gone.
            let rec = self.record(bucket, key, attempt > 0).await?;
            let rec = if hot.is_some() { self.revalidate(&b, rec).await? } else { rec };
            let range = plan(&rec)?;
            let hot = if fill {
                hot
            } else {
                hot.filter(|_| !self.inner.shared_hot)
                    .filter(|(h, _)| h.holds(&version_of(&rec), range.clone().unwrap_or(0..rec.size)))
            };
            let res = match (&rec.staging, hot) {
                (Some(id), _) => self.read_staged_or_stored(&b, &rec, id, range.clone()).await,
                (None, Some(hot)) => self.read_hot(&b, &rec, range.clone().unwrap_or(0..rec.size), hot).await,
                (None, None) => self.read_fixed(&b, &rec, range.clone()).await,
            };
            drop(guard);
            // On a shared catalog the version may move on between the reads of one attempt
            // (a write on another node closes, the next one lands): retry a little longer,
            // with short pauses, before answering 503.
            let shared = self.inner.catalog.is_shared();
            let tries = if shared { 8 } else { 3 };
            match res {
                Ok(stream) => return Ok((rec, range, stream)),
                Err(e) if e.kind() == ErrorKind::NotFound && attempt < tries => {
                    if shared && rec.staging.is_some() {
                        tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
                    }
                    attempt += 1;
                }
                Err(e) if e.kind() == ErrorKind::NotFound && rec.staging.is_some() => {
                    return Err(self.staged_elsewhere(&rec).await);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Copies an object, keeping its metadata or replacing it with `replace`; `plan`
    /// checks the source, `condition` the destination.
    pub async fn copy(
        &self,
        (src_bucket, src_key): (&str, &str),
        (dst_bucket, dst_key): (&str, &str),
        (replace, condition): (Option<NewMeta>, WriteCondition),
        plan: impl Fn(&ObjectRecord) -> Result<()>,
    ) -> Result<ObjectRecord> {
        self.plan(dst_bucket).await?;
        self.precheck(dst_bucket, dst_key, &condition).await?;
        let (src, _, body) = self.get(src_bucket, src_key, |r| plan(r).map(|()| None)).await?;
        let (headers, user_meta) = replace.unwrap_or((src.headers.clone(), src.user_meta.clone()));
        let content_length = Some(src.size);
        // The same bytes have the same checksum; a composite one (of parts) does not carry
        // over to a copy made in one piece.
        let kept = src.details.checksum.clone().filter(|c| !c.composite);
        let checksum = Some(Arc::new(std::sync::Mutex::new(kept)));
        let input = PutInput { headers, user_meta, body, content_length, content_md5: None, condition, checksum };
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
