//! Image derivatives made at the origin: thumbnails and web formats of an original,
//! rendered on first request, cached in the hot tier beside the original, one render per
//! derivative however many clients ask at once (`docs/design/images.md`).
//!
//! Owns the option grammar and its signature (`options.rs`), the render itself
//! (`render.rs`), the render pool (`pool.rs`), single flight, the index of derivative
//! sizes that lets a hit skip the render, copies in `images.store` read back before a
//! render, and warming ahead of requests (`warm.rs`). It reads originals and keeps
//! derivatives only through `tier`. It must not decide who may read an original: the web
//! front end checks the original's access rules before it asks for a derivative.

pub mod options;
mod pool;
pub mod render;
mod warm;

pub use warm::{WarmPlan, WarmStats};

use crate::catalog::ObjectRecord;
use crate::config::ImagesConfig;
use crate::error::{Error, ErrorKind};
use crate::tier::{HotUse, Tier};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use options::Resolved;
use render::{Limits, RenderError};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// Why a derivative could not be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageError {
    /// The original is not a usable image (415 or 422).
    Render(RenderError),
    /// The original is larger than `images.max_source_bytes` (422).
    SourceTooLarge(u64),
    /// The render pool's queue is full (503).
    Busy,
    /// The render took longer than `images.render_timeout` (503).
    Timeout,
    /// Reading the original failed: its status comes from the tier's error kind.
    Read(ErrorKind, String),
}

impl ImageError {
    /// The label of `strata_image_rejections_total` for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Render(RenderError::NotAnImage(_)) => "not-an-image",
            Self::Render(RenderError::Unreadable(_)) => "unreadable",
            Self::Render(RenderError::TooLarge(_)) | Self::SourceTooLarge(_) => "too-large",
            Self::Busy => "busy",
            Self::Timeout => "timeout",
            Self::Read(..) => "read-failed",
        }
    }
}

impl std::fmt::Display for ImageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Render(e) => write!(f, "{e}"),
            Self::SourceTooLarge(n) => write!(f, "the original has {n} bytes, more than images.max_source_bytes"),
            Self::Busy => f.write_str("too many renders are waiting; try again"),
            Self::Timeout => f.write_str("the render took too long; try again"),
            Self::Read(_, m) => f.write_str(m),
        }
    }
}

/// A derivative ready to send.
#[derive(Debug, Clone)]
pub struct Derivative {
    /// Its bytes.
    pub bytes: Bytes,
    /// It came from the hot tier (no render).
    pub hit: bool,
}

/// One derivative of one version: bucket, key, ETag, mtime and tag, joined by NUL (which
/// no key or ETag strata stores contains).
type Name = String;

/// The [`Name`] of derivative `tag` of `rec`.
fn name_of(rec: &ObjectRecord, tag: &str) -> Name {
    [rec.bucket.as_str(), &rec.key, &rec.etag, &rec.last_modified_ms.to_string(), tag].join("\0")
}

type Flight = Arc<OnceCell<Result<Bytes, ImageError>>>;

/// An original read once for several renders (a warm's presets of one image), with the
/// row it was read at.
type SharedOriginal = OnceCell<Result<(ObjectRecord, Bytes), ImageError>>;

/// How a render gets its original.
#[derive(Clone, Copy)]
enum Original<'a> {
    /// Read for this render, using the hot tier so.
    Read(HotUse),
    /// From the cell, read into it (so) by the first render that needs it.
    Shared(&'a SharedOriginal, HotUse),
}

/// The derivative service.
#[derive(Clone)]
pub struct Images {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ImagesConfig,
    tier: Tier,
    pool: pool::Pool,
    /// Threads of the pool.
    threads: usize,
    /// Renders under way, by derivative: every request for one joins its flight.
    flights: Mutex<HashMap<Name, Flight>>,
    /// Sizes of derivatives kept in the hot tier (a hit needs the size to name them).
    sizes: quick_cache::sync::Cache<Name, u64>,
    counts: Counts,
}

/// This process's counters, for the status page (the same as the metrics).
#[derive(Default)]
struct Counts {
    renders: AtomicU64,
    render_micros: AtomicU64,
    hits: AtomicU64,
    ready: AtomicU64,
    stored: AtomicU64,
    saved: AtomicU64,
    rejections: Mutex<BTreeMap<&'static str, u64>>,
}

/// What the status page shows of derivatives since the process started.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ImagesStats {
    /// Derivatives rendered.
    pub renders: u64,
    /// Mean render time, milliseconds.
    pub mean_render_ms: f64,
    /// Derivatives served from the hot tier.
    pub hits: u64,
    /// Of those, the ones answered ready: from the memory tier with heads made before,
    /// not through the render path (`api::web`'s fast path).
    pub ready_hits: u64,
    /// Derivatives found in `images.store` instead of being rendered again.
    pub store_hits: u64,
    /// Bytes of originals not sent.
    pub bytes_saved: u64,
    /// Refused requests by reason.
    pub rejections: BTreeMap<String, u64>,
}

impl Images {
    /// The service for `cfg`, reading through `tier`; starts the render pool.
    pub fn new(cfg: ImagesConfig, tier: Tier) -> crate::error::Result<Images> {
        let threads = cfg.concurrency.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let pool = pool::Pool::new(threads, cfg.queue).map_err(|e| Error::internal("starting the render pool", e))?;
        let sizes = quick_cache::sync::Cache::new(cfg.index_entries.max(16));
        let counts = Counts::default();
        if let Some(store) = &cfg.store {
            tier.keep_derived_in(store);
        }
        let inner = Inner { cfg, tier, pool, threads, flights: Mutex::default(), sizes, counts };
        Ok(Images { inner: Arc::new(inner) })
    }

    /// The settings.
    pub fn config(&self) -> &ImagesConfig {
        &self.inner.cfg
    }

    /// Renders that run at once (the pool's threads).
    pub fn threads(&self) -> usize {
        self.inner.threads
    }

    /// Counts a refused derivative request (`strata_image_rejections_total`).
    pub fn reject(&self, reason: &'static str) {
        ::metrics::counter!("strata_image_rejections_total", "reason" => reason).increment(1);
        *self.inner.counts.rejections.lock().unwrap_or_else(|p| p.into_inner()).entry(reason).or_default() += 1;
    }

    /// The counters since the process started.
    pub fn stats(&self) -> ImagesStats {
        let c = &self.inner.counts;
        let renders = c.renders.load(Relaxed);
        let rejections = c.rejections.lock().unwrap_or_else(|p| p.into_inner());
        ImagesStats {
            renders,
            mean_render_ms: c.render_micros.load(Relaxed) as f64 / 1000.0 / renders.max(1) as f64,
            hits: c.hits.load(Relaxed),
            ready_hits: c.ready.load(Relaxed),
            store_hits: c.stored.load(Relaxed),
            bytes_saved: c.saved.load(Relaxed),
            rejections: rejections.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        }
    }

    /// Derivative `r` (whose [`Resolved::tag`] is `tag`) of the version `rec` names: from
    /// the hot tier, or rendered once for every request that asks meanwhile.
    pub async fn derivative(&self, rec: &ObjectRecord, r: &Resolved, tag: &str) -> Result<Derivative, ImageError> {
        self.derivative_as(rec, r, tag, Original::Read(HotUse::Fill)).await
    }

    /// [`Images::derivative`], reading the original (when it must be rendered) as
    /// `original` says. A request that joins a render under way gets that render's bytes,
    /// however it read its original.
    async fn derivative_as(
        &self,
        rec: &ObjectRecord,
        r: &Resolved,
        tag: &str,
        original: Original<'_>,
    ) -> Result<Derivative, ImageError> {
        let name = name_of(rec, tag);
        if let Some(bytes) = self.cached(rec, tag, &name).await {
            self.hit(rec.size, bytes.len(), false);
            return Ok(Derivative { bytes, hit: true });
        }
        let flight = {
            let mut f = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            f.entry(name.clone()).or_default().clone()
        };
        let out = flight.get_or_init(|| self.produce(rec, r, (tag, &name), original)).await.clone();
        {
            let mut f = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            if f.get(&name).is_some_and(|g| Arc::ptr_eq(g, &flight)) {
                f.remove(&name);
            }
        }
        let bytes = out?;
        self.saved(rec.size, bytes.len());
        Ok(Derivative { bytes, hit: false })
    }

    /// The length of derivative `tag` of the version `rec` names, when this node has kept
    /// it in the hot tier (it may have been evicted since): what a ready answer needs to
    /// name its bytes (`Tier::derived_hash`).
    pub fn kept_len(&self, rec: &ObjectRecord, tag: &str) -> Option<u64> {
        self.inner.sizes.get(&name_of(rec, tag))
    }

    /// Counts a derivative of `len` bytes, of an original of `original` bytes, served from
    /// the hot tier (`ready`: by the fast path): the metrics and the status page's hits
    /// and bytes saved.
    pub fn hit(&self, original: u64, len: usize, ready: bool) {
        static HITS: std::sync::OnceLock<::metrics::Counter> = std::sync::OnceLock::new();
        HITS.get_or_init(|| ::metrics::counter!("strata_image_hits_total")).increment(1);
        self.inner.counts.hits.fetch_add(1, Relaxed);
        if ready {
            self.inner.counts.ready.fetch_add(1, Relaxed);
        }
        self.saved(original, len);
    }

    /// The derivative from the hot tier, if its size is known and it is all there.
    async fn cached(&self, rec: &ObjectRecord, tag: &str, name: &Name) -> Option<Bytes> {
        let len = self.inner.sizes.get(name)?;
        self.inner.tier.derived(rec, tag, len).await
    }

    /// Reads the original, renders it on the pool, keeps the result: the flight's work.
    async fn produce(
        &self,
        rec: &ObjectRecord,
        r: &Resolved,
        (tag, name): (&str, &Name),
        original: Original<'_>,
    ) -> Result<Bytes, ImageError> {
        // A request that joined just after the last flight ended finds the bytes kept.
        if let Some(bytes) = self.cached(rec, tag, name).await {
            return Ok(bytes);
        }
        if let Some(bytes) = self.stored_copy(rec, tag, name).await {
            return Ok(bytes);
        }
        let cfg = &self.inner.cfg;
        let (now, src) = match original {
            Original::Read(using) => self.read_original(rec, using).await?,
            Original::Shared(cell, using) => cell.get_or_init(|| self.read_original(rec, using)).await.clone()?,
        };
        let limits = Limits { max_source_pixels: cfg.max_source_pixels, max_output_side: cfg.max_output_side };
        let started = Instant::now();
        let deadline = started + cfg.render_timeout.0;
        let job = {
            let r = r.clone();
            move || render::render(&src, &r, &limits)
        };
        let rx = self.inner.pool.submit(deadline, job).map_err(|_| ImageError::Busy)?;
        let out = match tokio::time::timeout(cfg.render_timeout.0, rx).await {
            Err(_) | Ok(Err(_)) | Ok(Ok(Err(pool::Lost::Late))) => return Err(ImageError::Timeout),
            Ok(Ok(Err(pool::Lost::Panicked(m)))) => {
                tracing::warn!(bucket = %rec.bucket, key = %rec.key, panic = %m, "a render panicked");
                return Err(ImageError::Render(RenderError::Unreadable(format!("the image cannot be decoded: {m}"))));
            }
            Ok(Ok(Ok(out))) => out.map_err(ImageError::Render)?,
        };
        let took = started.elapsed();
        ::metrics::counter!("strata_image_renders_total").increment(1);
        ::metrics::histogram!("strata_image_render_seconds").record(took.as_secs_f64());
        self.inner.counts.renders.fetch_add(1, Relaxed);
        self.inner.counts.render_micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
        let bytes = Bytes::from(out.bytes);
        if now.etag != rec.etag || now.last_modified_ms != rec.last_modified_ms {
            // A write landed since the row was read: these bytes are of the newer version,
            // served to this request, never kept under the older one's name.
            return Ok(bytes);
        }
        self.keep(rec, tag, name, &bytes).await;
        if let Some(store) = &cfg.store {
            // A copy that outlives the hot tier, written before the answer goes out; a
            // store that fails costs this copy, never the request.
            if let Err(e) = self.inner.tier.write_derived_stored(store, rec, tag, bytes.clone()).await {
                ::metrics::counter!("strata_image_store_errors_total").increment(1);
                let (bucket, key) = (&rec.bucket, &rec.key);
                tracing::warn!(%store, %bucket, %key, error = %e, "derivative not written to images.store");
            }
        }
        Ok(bytes)
    }

    /// Keeps `bytes` in the hot tier as derivative `tag` of `rec`, and its size.
    async fn keep(&self, rec: &ObjectRecord, tag: &str, name: &Name, bytes: &Bytes) {
        match self.inner.tier.keep_derived(rec, tag, bytes.clone()).await {
            Ok(true) => self.inner.sizes.insert(name.clone(), bytes.len() as u64),
            Ok(false) => {}
            // Not kept (the tier is full of pinned chunks, say): served all the same.
            Err(e) => tracing::debug!(error = %e, "derivative not kept in the hot tier"),
        }
    }

    /// The derivative from `images.store`, when one is set and holds it (then it is kept
    /// in the hot tier too, so the next request is a hit). A store that fails is logged
    /// and the derivative rendered again.
    async fn stored_copy(&self, rec: &ObjectRecord, tag: &str, name: &Name) -> Option<Bytes> {
        let store = self.inner.cfg.store.as_ref()?;
        match self.inner.tier.read_derived_stored(store, rec, tag).await {
            Ok(Some(bytes)) if !bytes.is_empty() => {
                ::metrics::counter!("strata_image_store_hits_total").increment(1);
                self.inner.counts.stored.fetch_add(1, Relaxed);
                self.keep(rec, tag, name, &bytes).await;
                Some(bytes)
            }
            Ok(_) => None,
            Err(e) => {
                ::metrics::counter!("strata_image_store_errors_total").increment(1);
                let (bucket, key) = (&rec.bucket, &rec.key);
                tracing::warn!(%store, %bucket, %key, error = %e, "images.store unreadable; rendering");
                None
            }
        }
    }

    /// The whole original, at most `max_source_bytes`, with the row it read: `rec`'s, or a
    /// newer one when a write landed meanwhile.
    async fn read_original(&self, rec: &ObjectRecord, using: HotUse) -> Result<(ObjectRecord, Bytes), ImageError> {
        let max = self.inner.cfg.max_source_bytes.0;
        if rec.size > max {
            return Err(ImageError::SourceTooLarge(rec.size));
        }
        let read = |e: Error| ImageError::Read(e.kind(), e.to_string());
        let (now, _, mut stream) = self
            .inner
            .tier
            .get_as(&rec.bucket, &rec.key, using, |now| {
                if now.size > max {
                    return Err(Error::new(ErrorKind::InvalidInput, "the original grew past images.max_source_bytes"));
                }
                Ok(None)
            })
            .await
            .map_err(read)?;
        let mut buf = BytesMut::with_capacity(usize::try_from(now.size).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk.map_err(read)?);
            if buf.len() as u64 > max {
                return Err(ImageError::SourceTooLarge(buf.len() as u64));
            }
        }
        Ok((now, buf.freeze()))
    }

    /// How long a client should wait before asking again after `Busy` or `Timeout`.
    pub fn retry_after(&self) -> Duration {
        self.inner.cfg.render_timeout.0.min(Duration::from_secs(5))
    }
}

impl Images {
    /// Counts the bytes a derivative saved against sending the original.
    fn saved(&self, original: u64, len: usize) {
        static SAVED: std::sync::OnceLock<::metrics::Counter> = std::sync::OnceLock::new();
        let n = original.saturating_sub(len as u64);
        SAVED.get_or_init(|| ::metrics::counter!("strata_image_bytes_saved_total")).increment(n);
        self.inner.counts.saved.fetch_add(n, Relaxed);
    }
}
