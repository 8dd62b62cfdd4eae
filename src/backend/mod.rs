//! Cold stores behind one narrow trait.
//!
//! Owns the [`Backend`] contract, what a store can do beyond it ([`Capability`]), and the
//! one place a store's stack is built from config ([`stack`]): the store (the disk store
//! of `fs.rs`, or OpenDAL with its retry and timeout layers inside), then the [`Metered`]
//! layer, then the [`Breaker`]. Layers implement [`Layer`] and forward what they do not
//! change. How a path is named inside a store is [`keymap`]'s. OpenDAL types never leave
//! this module. It knows nothing of buckets, the catalog or S3 requests: it sees paths.

mod breaker;
#[cfg(test)]
pub(crate) mod conformance;
mod fs;
pub mod keymap;
mod layer;
mod metered;
mod opendal;
mod s3copy;

pub use breaker::{Breaker, BreakerSettings, BreakerState};
pub use layer::Layer;
pub use metered::{BackendStats, Metered};
pub use s3copy::S3Place;

use crate::config::{BackendConfig, Config, Limits};
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

/// What a store can do beyond the core calls; layers pass their store's on unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capability {
    /// [`Backend::presign_read`] gives URLs (S3, GCS, Azure); a disk cannot.
    pub presign: bool,
    /// The store is an S3 bucket reachable with known keys, so [`copy_inside`] can copy
    /// between two such stores without moving the bytes.
    pub server_side_copy: Option<S3Place>,
    /// Native headers and user metadata are kept with each object (a disk keeps none).
    pub native_headers: bool,
}

/// A cold object store.
///
/// Paths are a bucket's prefix followed by a key: any key S3 accepts, with empty, `.` and
/// `..` segments, whitespace and a trailing `/` (a folder). Each store names them as
/// [`keymap`] says, so every path has its own object and listings give the paths back.
/// `backend::conformance` checks every implementation against these contracts.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The configured name, for logs and metrics.
    fn name(&self) -> &str;

    /// What this store can do beyond the calls below.
    fn capability(&self) -> &Capability;

    /// Whether this store can ever hold an object at `path`: `Err` with a permanent kind
    /// (`KeyTooLong`) when its name would pass the store's limits. Makes no request, so a
    /// write can be refused before it is acknowledged.
    fn check_path(&self, path: &str) -> Result<()>;

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

    /// A URL that lets anyone GET `path` for `expires`, answered with `disposition` as its
    /// Content-Disposition when given. `Ok(None)` exactly when `capability().presign` is
    /// false. Makes no request to the store, so it says nothing about whether `path` exists.
    async fn presign_read(&self, path: &str, expires: Duration, disposition: Option<&str>) -> Result<Option<String>>;

    /// Makes every write committed so far durable. A no-op for stores whose commits are
    /// durable already (every store but a disk store opened with `deferred_sync`).
    /// Idempotent; dropping it leaves the writes as durable as they were.
    async fn sync(&self) -> Result<()> {
        Ok(())
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
    match (&src.capability().server_side_copy, &dst.capability().server_side_copy) {
        (Some(s), Some(d)) if d.can_copy_from(s) && size <= s3copy::MAX_COPY => {
            s3copy::copy_object(s, &keymap::flat_name(src_path), d, &keymap::flat_name(dst_path)).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// One store's stack, and the handles of its layers.
pub struct Stack {
    /// The store behind all its layers.
    pub backend: Arc<dyn Backend>,
    /// Its running totals (the `Metered` layer's).
    pub stats: Arc<BackendStats>,
    /// Its circuit breaker.
    pub breaker: Arc<BreakerState>,
}

/// Builds the store `name` from its config, the one way every caller gets a store: the
/// disk store or OpenDAL (retry and timeout inside), then metrics, then the circuit breaker.
pub fn stack(name: &str, cfg: &BackendConfig, limits: &Limits, breaker: &BreakerSettings) -> Result<Stack> {
    let store: Arc<dyn Backend> = match cfg {
        BackendConfig::Fs(f) => Arc::new(fs::FsStore::open(name, &f.root, f.deferred_sync)?),
        _ => opendal::build(name, cfg, limits)?,
    };
    Ok(wrap(store, breaker))
}

/// Puts `store` under the metrics and breaker layers (tests wrap their own stores so).
pub fn wrap(store: Arc<dyn Backend>, breaker: &BreakerSettings) -> Stack {
    let (inner, stats) = Metered::wrap(store);
    let (backend, breaker) = Breaker::wrap(inner, breaker);
    Stack { backend, stats, breaker }
}

impl BreakerSettings {
    /// The circuit-breaker settings of a config (`[failover]`, `journal.store_timeout`).
    pub fn from_config(config: &Config) -> Self {
        let f = &config.failover;
        BreakerSettings {
            latency_budget: f.latency_budget.0,
            io_budget: config.journal.store_timeout.0,
            failures: f.failures,
            cooldown: f.cooldown.0,
        }
    }
}

/// The named backends of one process: a live handle, cheap to clone; every clone sees the
/// stores a config reload adds ([`Backends::add_new`]).
#[derive(Clone, Default)]
pub struct Backends {
    set: Arc<arc_swap::ArcSwap<BackendSet>>,
}

/// The stores of one moment.
#[derive(Clone, Default)]
struct BackendSet {
    map: BTreeMap<String, Arc<dyn Backend>>,
    stats: BTreeMap<String, Arc<BackendStats>>,
    breakers: BTreeMap<String, Arc<BreakerState>>,
    settings: Option<BreakerSettings>,
}

impl Backends {
    /// Builds every backend of `config`, each as a full [`stack`].
    pub fn from_config(config: &Config) -> Result<Self> {
        let breaker = BreakerSettings::from_config(config);
        let mut set = BackendSet { settings: Some(breaker.clone()), ..BackendSet::default() };
        for (name, cfg) in &config.backends {
            set.add(name, cfg, config, &breaker)?;
        }
        Ok(Self { set: Arc::new(arc_swap::ArcSwap::from_pointee(set)) })
    }

    /// Builds the backends of a reloaded `config` that are not here yet and adds them,
    /// all or none; returns their names. Existing stores are left as they are (changing
    /// one needs a restart: the reload refuses that before it gets here).
    pub fn add_new(&self, config: &Config) -> Result<Vec<String>> {
        let current = self.set.load_full();
        let mut set = (*current).clone();
        let breaker = set.settings.clone().unwrap_or_else(|| BreakerSettings::from_config(config));
        let mut added = Vec::new();
        for (name, cfg) in config.backends.iter().filter(|(n, _)| !current.map.contains_key(*n)) {
            set.add(name, cfg, config, &breaker)?;
            added.push(name.clone());
        }
        if !added.is_empty() {
            self.set.store(Arc::new(set));
        }
        Ok(added)
    }

    /// The running totals of backend `name`, when it was built here.
    pub fn stats(&self, name: &str) -> Option<Arc<BackendStats>> {
        self.set.load().stats.get(name).cloned()
    }

    /// Whether backend `name` is taking calls (its circuit breaker is closed or cooling
    /// down). Unknown names are up.
    pub fn is_up(&self, name: &str) -> bool {
        self.set.load().breakers.get(name).is_none_or(|b| b.is_up())
    }

    /// Adds or replaces a backend (tests wrap backends to count or inject faults). It gets
    /// a circuit breaker of its own when the others have one.
    pub fn insert(&self, backend: Arc<dyn Backend>) {
        let mut set = (*self.set.load_full()).clone();
        let name = backend.name().to_owned();
        match &set.settings {
            Some(s) => {
                let (b, state) = Breaker::wrap(backend, s);
                set.map.insert(name.clone(), b);
                set.breakers.insert(name, state);
            }
            None => {
                set.map.insert(name, backend);
            }
        }
        self.set.store(Arc::new(set));
    }

    /// The backend called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Backend>> {
        self.set.load().map.get(name).cloned()
    }

    /// Names of all backends.
    pub fn names(&self) -> Vec<String> {
        self.set.load().map.keys().cloned().collect()
    }
}

impl BackendSet {
    fn add(&mut self, name: &str, cfg: &BackendConfig, config: &Config, breaker: &BreakerSettings) -> Result<()> {
        let s = stack(name, cfg, &config.limits, breaker)?;
        self.map.insert(name.to_owned(), s.backend);
        self.stats.insert(name.to_owned(), s.stats);
        self.breakers.insert(name.to_owned(), s.breaker);
        Ok(())
    }
}
