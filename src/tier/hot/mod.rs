//! The hot tier: chunks of recently read objects on local disk, in front of every backend.
//!
//! Owns the chunk files under `hot.dir`, their index, eviction, fills from the cold store
//! (one per chunk however many readers wait), checksums, the miss log and the operator's
//! pins. It must not know the catalog or how a version is checked: callers hand it an
//! [`OpenFn`] that opens cold reads of exactly one object version. Design and guarantees:
//! `docs/design/hot-tier.md`.
//!
//! A chunk is named by a hash of (bucket, key, ETag, size, last-modified) plus its index,
//! so bytes of one version can never be served for another, on this node or any other.

pub mod eviction;
mod fill;
mod format;
mod index;
mod mem;
mod misslog;
mod read;
pub mod sim;

pub use eviction::EvictionKind;
pub use fill::OpenFn;
pub use misslog::MissReason;

use crate::error::{Error, ErrorKind, Result};
use fill::{Fill, Job};
use format::ChunkHeader;
use index::{ChunkKey, Found, Index, Reserve};
use misslog::MissLog;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

/// Resolved hot-tier settings (see `config::HotConfig` for defaults and units).
#[derive(Debug, Clone)]
pub struct HotSettings {
    /// Directory of chunk files, temporary files, pins and the miss log.
    pub dir: PathBuf,
    /// Hard bound on bytes of chunk files.
    pub max_size: u64,
    /// Free disk space the tier always leaves.
    pub min_free: u64,
    /// Bytes per chunk.
    pub chunk_size: u64,
    /// Chunks of one read fetched in parallel.
    pub fill_concurrency: usize,
    /// Resumptions of a broken cold stream per chunk.
    pub fill_retries: u32,
    /// Eviction policy.
    pub policy: EvictionKind,
    /// Size at which the miss log rotates (0: no miss log).
    pub miss_log_max: u64,
    /// Bytes of small chunks also kept in memory (0: none).
    pub memory_size: u64,
    /// Larger chunks are kept in that memory too, from their second read on.
    pub memory_large: bool,
}

pub use crate::config::FillMode;

/// One version of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Bucket name.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// ETag (unquoted).
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// Last-modified, ms since the Unix epoch.
    pub mtime_ms: i64,
}

impl Version {
    /// The 128-bit name of this version.
    pub fn hash(&self) -> u128 {
        let mut h = Sha256::new();
        for s in [&self.bucket, &self.key, &self.etag] {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        h.update(self.size.to_le_bytes());
        h.update(self.mtime_ms.to_le_bytes());
        let d = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        u128::from_le_bytes(b)
    }
}

/// Metric handles of the hit path, resolved once: a lookup by name and label on every
/// hit showed in the hit path's profile (issue 22). Resolved at the first hit, which comes
/// after the server installed its recorder.
pub(crate) struct HitMetrics {
    /// `strata_hot_hits_total`.
    pub hits: ::metrics::Counter,
    /// `strata_hot_bytes_total{source="hot"}`.
    pub bytes_hot: ::metrics::Counter,
}

pub(crate) fn hit_metrics() -> &'static HitMetrics {
    static M: std::sync::OnceLock<HitMetrics> = std::sync::OnceLock::new();
    M.get_or_init(|| HitMetrics {
        hits: ::metrics::counter!("strata_hot_hits_total"),
        bytes_hot: ::metrics::counter!("strata_hot_bytes_total", "source" => "hot"),
    })
}

/// Counters for `strata cache stats` and the status page.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct HotStats {
    /// Bytes of chunk files, counted against `max_size`.
    pub used_bytes: u64,
    /// The bound.
    pub max_bytes: u64,
    /// Complete chunks.
    pub chunks: u64,
    /// Chunk reads served from a hot file.
    pub hits: u64,
    /// Chunk reads that started a fill (or went uncached).
    pub misses: u64,
    /// Chunk reads that joined a fill another reader started.
    pub coalesced: u64,
    /// Bytes sent from hot files.
    pub bytes_hot: u64,
    /// Bytes sent as they arrived from the cold store.
    pub bytes_cold: u64,
    /// Chunks evicted by the policy.
    pub evictions: u64,
    /// Bytes evicted by the policy.
    pub evicted_bytes: u64,
    /// Hot files that failed a checksum or vanished.
    pub corrupt: u64,
    /// Operator pins, as "bucket/prefix".
    pub pins: Vec<String>,
    /// Bytes of small chunks held in memory.
    pub memory_bytes: u64,
    /// Of `hits`, the reads of a whole small object served from memory without a stream
    /// (the web front end's ready answers and derivatives).
    pub whole_hits: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
    bytes_hot: AtomicU64,
    bytes_cold: AtomicU64,
    corrupt: AtomicU64,
    whole_hits: AtomicU64,
}

/// The hot tier of one process.
#[derive(Clone)]
pub struct Hot {
    inner: Arc<HotInner>,
}

struct HotInner {
    /// The settings at open; `max_size` and `min_free` in force are `index.max()` and
    /// `min_free` (a reload changes them).
    s: HotSettings,
    min_free: AtomicU64,
    tmp: PathBuf,
    index: Mutex<Index>,
    mem: Mutex<mem::Mem>,
    /// Reads in progress (they read bigger steps when few run).
    active: std::sync::atomic::AtomicUsize,
    misses: MissLog,
    counters: Counters,
    pins: Mutex<Vec<(String, String)>>,
}

impl Hot {
    /// Opens the tier under `s.dir`: removes temporary files left by a crash and rebuilds
    /// the index from the chunk files, dropping any whose header is damaged or whose
    /// length is wrong.
    pub async fn open(s: HotSettings) -> Result<Hot> {
        let (data, tmp) = (s.dir.join("data"), s.dir.join("tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        std::fs::create_dir_all(&data)?;
        let pins = load_pins(&s.dir)?;
        let mut index = Index::new(data.clone(), s.max_size, s.policy);
        index.set_pins(pins.clone());
        let found = tokio::task::spawn_blocking(move || scan(&data)).await.map_err(|e| Error::internal("scan", e))?;
        let (mut adopted, mut dropped) = (0u64, 0u64);
        for (path, k, id, header) in found {
            if index.adopt(k, id, &header.bucket, &header.key, file_len(&header)) {
                adopted += 1;
            } else {
                let _ = std::fs::remove_file(path);
                dropped += 1;
            }
        }
        tracing::info!(adopted, dropped, used = index.used(), "hot tier index rebuilt");
        let misses = MissLog::new(s.dir.join("misses.log"), s.miss_log_max);
        let mem = Mutex::new(mem::Mem::new(s.memory_size).with_large(s.memory_large));
        let inner = HotInner {
            min_free: AtomicU64::new(s.min_free),
            s,
            tmp,
            index: Mutex::new(index),
            mem,
            active: Default::default(),
            misses,
            counters: Counters::default(),
            pins: Mutex::new(pins),
        };
        let hot = Hot { inner: Arc::new(inner) };
        hot.inner.gauges();
        Ok(hot)
    }

    /// The settings in force.
    pub fn settings(&self) -> &HotSettings {
        &self.inner.s
    }

    /// Streams `range` of version `v`, from hot files where present and through fills
    /// where not. Errors that happen before the first byte (a failed store-and-forward
    /// fill, an unreachable store) are returned here; later ones abort the stream.
    pub async fn read(
        &self,
        v: Version,
        range: Range<u64>,
        mode: FillMode,
        open: OpenFn,
    ) -> Result<crate::backend::ByteStream> {
        read::stream(self.inner.clone(), v, range, mode, open).await
    }

    /// Fetches every chunk of `range` of `v` that is not hot yet; returns the bytes
    /// fetched.
    pub async fn warm(&self, v: Version, range: Range<u64>, open: OpenFn) -> Result<u64> {
        read::warm(self.inner.clone(), v, range, open).await
    }

    /// Whether an object of `size` bytes is one chunk the memory tier can hold whole.
    pub fn fits_in_memory(&self, size: u64) -> bool {
        size > 0 && size <= self.inner.s.chunk_size.min(mem::ITEM_MAX)
    }

    /// The whole of `v`, a version of one chunk, when the memory tier holds it: the shared
    /// bytes, no file opened and nothing copied (small derivatives are served so). Counted
    /// as a hit.
    pub fn whole_in_memory(&self, v: &Version) -> Option<bytes::Bytes> {
        if !self.fits_in_memory(v.size) {
            return None;
        }
        self.whole_in_memory_hashed(v.hash(), v.size)
    }

    /// As [`Hot::whole_in_memory`], for the version whose [`Version::hash`] is `vh` and
    /// whose size is `size`: a caller that keeps something per version (the ready heads)
    /// works the hash out once instead of per request.
    pub fn whole_in_memory_hashed(&self, vh: u128, size: u64) -> Option<bytes::Bytes> {
        let data = self.inner.mem().get((vh, 0)).filter(|d| d.len() as u64 == size)?;
        self.inner.counters.hits.fetch_add(1, Relaxed);
        self.inner.counters.whole_hits.fetch_add(1, Relaxed);
        self.inner.counters.bytes_hot.fetch_add(size, Relaxed);
        let m = hit_metrics();
        m.hits.increment(1);
        m.bytes_hot.increment(size);
        Some(data)
    }

    /// Whether every chunk of `range` of `v` is hot or being filled right now (a request
    /// would not start a fill): the access log's HIT. A hint, not a promise.
    pub fn holds(&self, v: &Version, range: Range<u64>) -> bool {
        if range.is_empty() {
            return true;
        }
        let cs = self.inner.s.chunk_size;
        let (first, last) = (range.start / cs, (range.end - 1) / cs);
        let h = v.hash();
        let index = self.inner.lock();
        (first..=last).all(|c| u32::try_from(c).is_ok_and(|c| index.contains((h, c))))
    }

    /// Takes new bounds (`hot.max_size`, `hot.min_free`; a config reload). A lower
    /// `max_size` evicts down to it now, except chunks that are pinned or being read.
    pub fn set_limits(&self, max_size: u64, min_free: u64) {
        self.inner.min_free.store(min_free, Relaxed);
        let victims = self.inner.lock().set_max(max_size);
        self.inner.unlink(victims);
        self.inner.sweep();
        self.inner.gauges();
    }

    /// Drops every chunk of `bucket`/`key` that is not of version `keep`.
    pub fn invalidate(&self, bucket: &str, key: &str, keep: Option<&Version>) {
        let keep = keep.map(Version::hash);
        self.inner.mem().invalidate(bucket, key, keep);
        self.inner.lock().invalidate(bucket, key, keep);
        self.inner.sweep();
    }

    /// Drops the chunks of every object in `bucket` under `prefix`: (chunks, bytes).
    pub fn evict_prefix(&self, bucket: &str, prefix: &str) -> (u64, u64) {
        self.inner.mem().evict_prefix(bucket, prefix);
        let r = self.inner.lock().evict_prefix(bucket, prefix);
        self.inner.sweep();
        r
    }

    /// Keeps chunks of objects under `bucket`/`prefix` from eviction (persisted).
    pub fn pin(&self, bucket: &str, prefix: &str) -> Result<()> {
        self.edit_pins(|p| {
            if !p.iter().any(|(b, x)| b == bucket && x == prefix) {
                p.push((bucket.to_owned(), prefix.to_owned()));
            }
        })
    }

    /// Removes a pin; returns whether it existed.
    pub fn unpin(&self, bucket: &str, prefix: &str) -> Result<bool> {
        let mut existed = false;
        self.edit_pins(|p| {
            let before = p.len();
            p.retain(|(b, x)| !(b == bucket && x == prefix));
            existed = p.len() != before;
        })?;
        Ok(existed)
    }

    fn edit_pins(&self, f: impl FnOnce(&mut Vec<(String, String)>)) -> Result<()> {
        let mut pins = self.inner.pins.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut pins);
        save_pins(&self.inner.s.dir, &pins)?;
        self.inner.lock().set_pins(pins.clone());
        Ok(())
    }

    /// Current counters.
    pub fn stats(&self) -> HotStats {
        let c = &self.inner.counters;
        let ix = self.inner.lock();
        let pins = self.inner.pins.lock().unwrap_or_else(|p| p.into_inner());
        HotStats {
            used_bytes: ix.used(),
            max_bytes: ix.max(),
            chunks: ix.ready_count() as u64,
            hits: c.hits.load(Relaxed),
            misses: c.misses.load(Relaxed),
            coalesced: c.coalesced.load(Relaxed),
            bytes_hot: c.bytes_hot.load(Relaxed),
            bytes_cold: c.bytes_cold.load(Relaxed),
            evictions: ix.evictions,
            evicted_bytes: ix.evicted_bytes,
            corrupt: c.corrupt.load(Relaxed),
            pins: pins.iter().map(|(b, p)| format!("{b}/{p}")).collect(),
            memory_bytes: self.inner.mem().used(),
            whole_hits: c.whole_hits.load(Relaxed),
        }
    }

    /// The miss log's path.
    pub fn miss_log(&self) -> &Path {
        self.inner.misses.path()
    }
}

fn file_len(h: &ChunkHeader) -> u64 {
    h.encoded_len() + h.chunk_len
}

impl HotInner {
    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mem(&self) -> MutexGuard<'_, mem::Mem> {
        self.mem.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Unlinks files that left the index and that nobody reads any more.
    fn sweep(&self) {
        let gone = self.lock().take_unlinkable();
        self.remove_files(gone);
    }

    /// Unlinks files (an empty path: already gone), then frees their bytes from the
    /// bound. Returns the bytes.
    fn remove_files(&self, files: Vec<(PathBuf, u64)>) -> u64 {
        if files.is_empty() {
            return 0;
        }
        let mut bytes = 0;
        for (path, n) in files {
            if !path.as_os_str().is_empty() {
                let _ = std::fs::remove_file(&path);
            }
            bytes += n;
        }
        self.lock().freed(bytes);
        self.gauges();
        bytes
    }

    fn gauges(&self) {
        let ix = self.lock();
        ::metrics::gauge!("strata_hot_used_bytes").set(ix.used() as f64);
        ::metrics::gauge!("strata_hot_max_bytes").set(ix.max() as f64);
        ::metrics::gauge!("strata_hot_evictions").set(ix.evictions as f64);
    }

    /// Whether the disk holding the tier can take `bytes` more and keep `min_free`.
    fn disk_ok(&self, bytes: u64) -> bool {
        match rustix::fs::statvfs(&self.s.dir) {
            Ok(st) => st.f_bavail.saturating_mul(st.f_frsize) >= self.min_free.load(Relaxed).saturating_add(bytes),
            Err(e) => {
                tracing::warn!(error = %e, "statvfs of the hot tier failed; not caching");
                false
            }
        }
    }

    fn record_miss(&self, v: &Version, reason: MissReason) {
        self.counters.misses.fetch_add(1, Relaxed);
        ::metrics::counter!("strata_hot_misses_total", "reason" => reason_label(reason)).increment(1);
        self.misses.record(&v.bucket, &v.key, v.size, reason);
    }

    /// Chunk `idx` of `v`: its byte range within the object.
    fn chunk_range(&self, v: &Version, idx: u32) -> Range<u64> {
        let start = u64::from(idx) * self.s.chunk_size;
        start..(start + self.s.chunk_size).min(v.size)
    }

    /// Looks chunk `k` up, or starts its fill (then the flag is true), pinned for the
    /// caller. `None` when the tier cannot make room: the caller reads around it.
    fn acquire(self: &Arc<Self>, v: &Version, k: ChunkKey, open: &OpenFn) -> Result<Option<(Found, bool)>> {
        if let Some(found) = self.lock().lookup(k) {
            return Ok(Some((found, false)));
        }
        let range = self.chunk_range(v, k.1);
        let header = ChunkHeader {
            bucket: v.bucket.clone(),
            key: v.key.clone(),
            etag: v.etag.clone(),
            mtime_ms: v.mtime_ms,
            obj_size: v.size,
            chunk_idx: k.1,
            chunk_size: u32::try_from(self.s.chunk_size).unwrap_or(u32::MAX),
            chunk_len: range.end - range.start,
            block_size: format::BLOCK_SIZE,
            crcs: Vec::new(),
        };
        let id = rand::random::<u64>();
        let tmp = self.tmp.join(format!("{id:016x}"));
        let fill = Fill::create(id, &tmp, header.encoded_len(), header.chunk_len)?;
        let reserved = {
            let mut ix = self.lock();
            let mut disk_ok = |n| self.disk_ok(n);
            ix.reserve(k, (&v.bucket, &v.key), file_len(&header), fill.clone(), &mut disk_ok)
        };
        let victims = match reserved {
            Reserve::Granted(victims) => victims,
            Reserve::Found(found) => {
                let _ = std::fs::remove_file(&tmp);
                return Ok(Some((found, false)));
            }
            Reserve::NoSpace(victims) => {
                let _ = std::fs::remove_file(&tmp);
                self.unlink(victims);
                self.record_miss(v, MissReason::NoSpace);
                return Ok(None);
            }
        };
        self.unlink(victims);
        self.record_miss(v, MissReason::Absent);
        let dest = self.lock().path(k, id);
        let md5 = Job::md5_of(&v.etag, &range, v.size);
        let job = Job { header, range, open: open.clone(), tmp, dest, retries: self.s.fill_retries, md5 };
        let (me, f) = (self.clone(), fill.clone());
        tokio::spawn(async move {
            let ok = f.run(job).await.is_ok();
            {
                let mut ix = me.lock();
                if ok {
                    ix.complete(k, id);
                } else {
                    ix.fail(k, id);
                }
            }
            me.sweep();
        });
        Ok(Some((Found::Filling(fill, id), true)))
    }

    fn unlink(&self, victims: Vec<(PathBuf, u64)>) {
        ::metrics::counter!("strata_hot_evictions_total").increment(victims.len() as u64);
        let bytes = self.remove_files(victims);
        ::metrics::counter!("strata_hot_evicted_bytes_total").increment(bytes);
    }
}

fn reason_label(r: MissReason) -> &'static str {
    match r {
        MissReason::Absent => "absent",
        MissReason::Corrupt => "corrupt",
        MissReason::NoSpace => "no-space",
    }
}

/// Reads every chunk file's header under `data`, deleting files that are not valid chunks.
/// Returns them oldest first, so the rebuilt policy evicts the oldest first.
fn scan(data: &Path) -> Vec<(PathBuf, ChunkKey, u64, ChunkHeader)> {
    let mut out: Vec<(std::time::SystemTime, PathBuf, ChunkKey, u64, ChunkHeader)> = Vec::new();
    let Ok(dirs) = std::fs::read_dir(data) else { return Vec::new() };
    for d in dirs.flatten() {
        let Ok(files) = std::fs::read_dir(d.path()) else { continue };
        for f in files.flatten() {
            let path = f.path();
            match read::check_file(&path) {
                Some((k, id, h, mtime)) => out.push((mtime, path, k, id, h)),
                None => {
                    tracing::warn!(path = %path.display(), "dropping a damaged hot file");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
    out.sort_by_key(|e| e.0);
    out.into_iter().map(|(_, p, k, id, h)| (p, k, id, h)).collect()
}

fn load_pins(dir: &Path) -> Result<Vec<(String, String)>> {
    match std::fs::read(dir.join("pins.json")) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| Error::new(ErrorKind::Config, format!("{}/pins.json is damaged: {e}", dir.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

fn save_pins(dir: &Path, pins: &[(String, String)]) -> Result<()> {
    let tmp = dir.join("pins.json.tmp");
    let body = serde_json::to_vec_pretty(pins).map_err(|e| Error::internal("pins", e))?;
    std::fs::write(&tmp, body)?;
    std::fs::rename(tmp, dir.join("pins.json"))?;
    Ok(())
}
