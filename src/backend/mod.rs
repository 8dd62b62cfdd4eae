//! Cold stores behind one narrow trait.
//!
//! Owns the [`Backend`] contract and its construction from config. The OpenDAL-based
//! implementation lives in `opendal.rs`; OpenDAL types never leave this module. Retries and
//! timeouts are layers wrapped around a store at construction, not code inside callers.
//! This module knows nothing of buckets, the catalog or S3 requests: it sees paths.

mod breaker;
mod metered;
mod opendal;
mod s3copy;

pub use breaker::{Breaker, BreakerSettings, BreakerState};
pub use metered::{BackendStats, Metered};
pub use s3copy::S3Place;

use crate::config::{BackendConfig, Limits};
use crate::error::Result;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// A stream of body bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// Headers stored natively with an object, so the store stays readable without strata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// User metadata (`x-amz-meta-*` on S3), names without the prefix.
    pub user_metadata: BTreeMap<String, String>,
}

/// What a store knows about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStat {
    /// Length in bytes.
    pub size: u64,
    /// The store's ETag, unquoted, when it keeps one (S3-like stores do, disks do not).
    pub etag: Option<String>,
    /// Last modification, in milliseconds since the Unix epoch, when known.
    pub last_modified_ms: Option<i64>,
    /// Content type, when the store keeps one.
    pub content_type: Option<String>,
    /// The other native headers and user metadata, as a writer takes them back.
    pub headers: WriteOptions,
}

/// One object found by [`Backend::list`].
#[derive(Debug, Clone)]
pub struct ListEntry {
    /// Path relative to the backend root.
    pub path: String,
    /// Size, when the listing carries it.
    pub size: Option<u64>,
    /// ETag, when the listing carries it.
    pub etag: Option<String>,
    /// Last modification (ms since the Unix epoch), when the listing carries it.
    pub last_modified_ms: Option<i64>,
}

/// An object being written. Nothing becomes visible at its path before [`ObjectWriter::commit`]
/// returns `Ok`; after `abort`, or when dropped uncommitted, the path keeps its previous
/// content (or stays absent).
#[async_trait]
pub trait ObjectWriter: Send {
    /// Appends bytes. May upload parts in the background; errors surface here or at commit.
    async fn write(&mut self, chunk: Bytes) -> Result<()>;
    /// Makes the whole object visible atomically. Consumes the writer.
    async fn commit(self: Box<Self>) -> Result<()>;
    /// Discards everything written. Idempotent with respect to the store's state.
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// A cold object store.
///
/// Paths are `/`-separated, relative to the store's root, never start with `/` and never
/// contain empty, `.` or `..` segments (callers validate keys before they reach here).
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The configured name, for logs and metrics.
    fn name(&self) -> &str;

    /// Starts writing `path` with its native headers. See [`ObjectWriter`] for visibility.
    async fn writer(&self, path: &str, opts: &WriteOptions) -> Result<Box<dyn ObjectWriter>>;

    /// Streams `path`, or the byte `range` of it. A missing path is `ErrorKind::NotFound`,
    /// either here or as the stream's first item. Dropping the stream cancels the read.
    async fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<ByteStream>;

    /// Size and ETag of `path`; `Ok(None)` when it does not exist.
    async fn stat(&self, path: &str) -> Result<Option<ObjectStat>>;

    /// Removes `path`. Idempotent: deleting a missing path succeeds.
    async fn delete(&self, path: &str) -> Result<()>;

    /// Every object under `prefix`, recursively, page by page from the store. Directories
    /// (paths ending in `/`) and the store's own scratch files are not returned.
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ListEntry>>;

    /// Where this store lives when it is an S3 bucket reachable with known keys, so that
    /// [`copy_inside`] can copy between two such stores without moving the bytes.
    /// Layers forward it; `None` (the default) means "stream copies".
    fn s3_place(&self) -> Option<&S3Place> {
        None
    }

    /// A URL that lets anyone GET `path` for `expires`, answered with `disposition` as its
    /// Content-Disposition when given. `Ok(None)` when the store cannot presign (a disk).
    /// Makes no request to the store, so it says nothing about whether `path` exists.
    /// Layers forward it.
    async fn presign_read(&self, path: &str, expires: Duration, disposition: Option<&str>) -> Result<Option<String>> {
        let _ = (path, expires, disposition);
        Ok(None)
    }
}

/// Copies `src_path` of `src` to `dst_path` of `dst` inside the store service (an S3
/// CopyObject keeping headers and metadata) when both are S3 stores on one endpoint with
/// the same keys and the object is at most 5 GiB. `Ok(false)` when they cannot: the
/// caller streams the copy instead. Atomic like a writer's commit.
pub async fn copy_inside(
    src: &dyn Backend,
    src_path: &str,
    dst: &dyn Backend,
    dst_path: &str,
    size: u64,
) -> Result<bool> {
    match (src.s3_place(), dst.s3_place()) {
        (Some(s), Some(d)) if d.can_copy_from(s) && size <= s3copy::MAX_COPY => {
            s3copy::copy_object(s, src_path, d, dst_path).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Builds the backend `name` from its config, wrapped in retry, timeout and metrics layers.
pub fn build(name: &str, cfg: &BackendConfig, limits: &Limits) -> Result<(Arc<dyn Backend>, Arc<BackendStats>)> {
    Ok(Metered::wrap(opendal::build(name, cfg, limits)?))
}

/// The named backends of one process.
#[derive(Clone, Default)]
pub struct Backends {
    map: BTreeMap<String, Arc<dyn Backend>>,
    stats: BTreeMap<String, Arc<BackendStats>>,
    breakers: BTreeMap<String, Arc<BreakerState>>,
    settings: Option<BreakerSettings>,
}

impl Backends {
    /// Builds every backend in the config, each behind a circuit breaker.
    pub fn from_config(
        backends: &BTreeMap<String, BackendConfig>,
        limits: &Limits,
        breaker: &BreakerSettings,
    ) -> Result<Self> {
        let mut me = Self { settings: Some(breaker.clone()), ..Self::default() };
        for (name, cfg) in backends {
            let (inner, stats) = Metered::wrap(opendal::build(name, cfg, limits)?);
            let (b, state) = Breaker::wrap(inner, breaker);
            me.map.insert(name.clone(), b);
            me.stats.insert(name.clone(), stats);
            me.breakers.insert(name.clone(), state);
        }
        Ok(me)
    }

    /// The running totals of backend `name`, when it was built here.
    pub fn stats(&self, name: &str) -> Option<&Arc<BackendStats>> {
        self.stats.get(name)
    }

    /// Whether backend `name` is taking calls (its circuit breaker is closed or cooling
    /// down). Unknown names are up.
    pub fn is_up(&self, name: &str) -> bool {
        self.breakers.get(name).is_none_or(|b| b.is_up())
    }

    /// Adds or replaces a backend (tests wrap backends to count or inject faults). It gets
    /// a circuit breaker of its own when the others have one.
    pub fn insert(&mut self, backend: Arc<dyn Backend>) {
        let name = backend.name().to_owned();
        match &self.settings {
            Some(s) => {
                let (b, state) = Breaker::wrap(backend, s);
                self.map.insert(name.clone(), b);
                self.breakers.insert(name, state);
            }
            None => {
                self.map.insert(name, backend);
            }
        }
    }

    /// The backend called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Backend>> {
        self.map.get(name)
    }

    /// Names of all backends.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }
}
