//! Reading through the hot tier: a pull-based stream that walks the chunks of a range,
//! serving hot files block by block (each checked against its CRC before it is sent),
//! joining or starting fills for missing chunks, and prefetching the next chunks so a cold
//! miss on a large object runs several ranged GETs at once.
//!
//! A block that fails its checksum is never sent: its file is discarded and the rest of
//! the chunk comes from a fresh fill, so the client sees correct bytes and no error.

use super::fill::{Fill, OpenFn, Progress};
use super::format::ChunkHeader;
use super::index::{ChunkKey, Found, chunk_path};
use super::mem::ITEM_MAX;
use super::{FillMode, HotInner, MissReason, Version};
use crate::backend::ByteStream;
use crate::error::{Error, ErrorKind, Result};
use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::watch;

/// One checksummed block: the unit of a hot-file read.
const STEP: u64 = super::format::BLOCK_SIZE as u64;
/// While at most this many reads run, each step reads 4 blocks: fewer trips to the
/// blocking pool. Beyond it, one block, so memory stays bounded under many streams.
const FEW_READERS: usize = 64;

/// Holds a pin on one chunk file; dropping it releases the pin.
struct Pin {
    hot: Arc<HotInner>,
    k: ChunkKey,
    id: u64,
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.hot.lock().unpin(self.k, self.id);
        self.hot.sweep();
    }
}

enum Source {
    Mem { data: Bytes },
    Hot { file: Arc<File>, hdr: Arc<ChunkHeader>, hdr_len: u64, head: Bytes },
    Fill { fill: Arc<Fill>, rx: watch::Receiver<Progress> },
    Passthrough { stream: ByteStream },
}

struct Cursor {
    idx: u32,
    src: Source,
    pin: Option<Pin>,
}

/// Counts a read as active while it lives.
struct Active(Arc<HotInner>);

impl Active {
    fn new(hot: &Arc<HotInner>) -> Self {
        hot.active.fetch_add(1, Relaxed);
        Active(hot.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
    }
}

struct ReadState {
    _active: Active,
    hot: Arc<HotInner>,
    v: Version,
    vh: u128,
    open: OpenFn,
    pos: u64,
    end: u64,
    cur: Option<Cursor>,
    held: HashMap<u32, Cursor>,
    done: bool,
}

/// See [`super::Hot::read`].
pub(super) async fn stream(
    hot: Arc<HotInner>,
    v: Version,
    range: Range<u64>,
    mode: FillMode,
    open: OpenFn,
) -> Result<ByteStream> {
    let vh = v.hash();
    let _active = Active::new(&hot);
    let (pos, end) = (range.start, range.end);
    let mut st = ReadState { _active, hot, v, vh, open, pos, end, cur: None, held: HashMap::new(), done: false };
    if range.is_empty() {
        return Ok(futures::stream::empty().boxed());
    }
    if mode == FillMode::StoreAndForward {
        st.preload(true).await?;
    }
    // The first piece is read here, so a failure to start (a stale version, a store that
    // is down) is an error status rather than an aborted 200.
    let first = match st.next().await {
        Some(Err(e)) => return Err(e),
        first => first,
    };
    let rest = futures::stream::unfold(st, |mut st| async move {
        let item = st.next().await?;
        if item.is_err() {
            st.done = true;
        }
        Some((item, st))
    });
    Ok(futures::stream::iter(first).chain(rest).boxed())
}

/// See [`super::Hot::warm`].
pub(super) async fn warm(hot: Arc<HotInner>, v: Version, range: Range<u64>, open: OpenFn) -> Result<u64> {
    let vh = v.hash();
    let (pos, end) = (range.start, range.end.min(v.size));
    if pos >= end {
        return Ok(0);
    }
    let _active = Active::new(&hot);
    let mut st = ReadState { _active, hot, v, vh, open, pos, end, cur: None, held: HashMap::new(), done: false };
    st.preload(false).await?;
    let fetched = st
        .held
        .iter()
        .filter(|(_, c)| !matches!(c.src, Source::Hot { .. }))
        .map(|(i, _)| st.hot.chunk_range(&st.v, *i))
        .map(|r| r.end - r.start)
        .sum();
    Ok(fetched)
}

impl ReadState {
    fn idx(&self, pos: u64) -> u32 {
        u32::try_from(pos / self.hot.s.chunk_size).unwrap_or(u32::MAX)
    }

    fn last_idx(&self) -> u32 {
        self.idx(self.end.saturating_sub(1))
    }

    /// The next piece of the range, or `None` at its end.
    async fn next(&mut self) -> Option<Result<Bytes>> {
        if self.done || self.pos >= self.end {
            return None;
        }
        loop {
            if let Err(e) = self.cursor().await {
                return Some(Err(e));
            }
            match self.read_cursor().await {
                Ok(Some(b)) => {
                    self.pos += b.len() as u64;
                    return Some(Ok(b));
                }
                // The hot file was bad and is gone: read this chunk again, from a fill.
                Ok(None) => self.cur = None,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Makes `cur` the cursor of the chunk holding `pos`, and prefetches the next ones.
    async fn cursor(&mut self) -> Result<()> {
        let idx = self.idx(self.pos);
        if self.cur.as_ref().is_some_and(|c| c.idx == idx) {
            return Ok(());
        }
        self.cur = None;
        let c = match self.held.remove(&idx) {
            Some(c) => c,
            None => self.open_cursor(idx).await?,
        };
        self.cur = Some(c);
        let ahead = u32::try_from(self.hot.s.fill_concurrency.saturating_sub(1)).unwrap_or(0);
        for i in idx.saturating_add(1)..=idx.saturating_add(ahead).min(self.last_idx()) {
            let k = (self.vh, i);
            let present = self.hot.lock().contains(k);
            if !present && let Ok(Some((found, _))) = self.hot.acquire(&self.v, k, &self.open) {
                // Prefetch only: let go of the pin at once. A filling entry cannot be
                // evicted until it completes anyway.
                drop(self.pin_of(k, &found));
            }
        }
        Ok(())
    }

    fn pin_of(&self, k: ChunkKey, found: &Found) -> Pin {
        let id = match found {
            Found::Ready(_, id) | Found::Filling(_, id) => *id,
        };
        Pin { hot: self.hot.clone(), k, id }
    }

    /// A cursor for chunk `idx`: its hot file, a fill, or a passthrough cold read (not cached).
    async fn open_cursor(&mut self, idx: u32) -> Result<Cursor> {
        let k = (self.vh, idx);
        if let Some(data) = self.hot.mem().get(k) {
            self.count_hit();
            return Ok(Cursor { idx, src: Source::Mem { data }, pin: None });
        }
        loop {
            let Some((found, started)) = self.hot.acquire(&self.v, k, &self.open)? else {
                let r = self.hot.chunk_range(&self.v, idx);
                let from = self.pos.max(r.start);
                let stream = (self.open)(from..r.end.min(self.end)).await?;
                return Ok(Cursor { idx, src: Source::Passthrough { stream }, pin: None });
            };
            let pin = self.pin_of(k, &found);
            match found {
                Found::Filling(fill, _) => {
                    if !started {
                        self.hot.counters.coalesced.fetch_add(1, Relaxed);
                    }
                    let rx = fill.subscribe();
                    return Ok(Cursor { idx, src: Source::Fill { fill, rx }, pin: Some(pin) });
                }
                Found::Ready(path, id) => match open_hot(path, k, id).await {
                    Some((_, hdr, _, head)) if head.len() as u64 == hdr.chunk_len && hdr.chunk_len <= ITEM_MAX => {
                        // The whole chunk is in hand: check it once, then keep it in memory.
                        if !blocks_ok(&hdr.crcs, 0, &head) {
                            self.corrupt(k, id);
                            continue;
                        }
                        self.count_hit();
                        self.hot.mem().put(k, (&self.v.bucket, &self.v.key), head.clone());
                        return Ok(Cursor { idx, src: Source::Mem { data: head }, pin: None });
                    }
                    Some((file, hdr, hdr_len, head)) => {
                        if self.hot.mem().begin_load(k, hdr.chunk_len) {
                            let loaded = load_checked(file.clone(), hdr_len, &hdr).await;
                            let mut mem = self.hot.mem();
                            mem.end_load(k);
                            match loaded {
                                Some(data) => {
                                    mem.put(k, (&self.v.bucket, &self.v.key), data.clone());
                                    drop(mem);
                                    self.count_hit();
                                    return Ok(Cursor { idx, src: Source::Mem { data }, pin: None });
                                }
                                None => {
                                    drop(mem);
                                    self.corrupt(k, id);
                                    continue;
                                }
                            }
                        }
                        self.count_hit();
                        let hdr = Arc::new(hdr);
                        return Ok(Cursor { idx, src: Source::Hot { file, hdr, hdr_len, head }, pin: Some(pin) });
                    }
                    None => self.corrupt(k, id),
                },
            }
        }
    }

    fn count_hit(&self) {
        self.hot.counters.hits.fetch_add(1, Relaxed);
        super::hit_metrics().hits.increment(1);
    }

    fn corrupt(&self, k: ChunkKey, id: u64) {
        tracing::warn!(bucket = %self.v.bucket, key = %self.v.key, chunk = k.1, "hot file damaged; discarding it");
        self.hot.counters.corrupt.fetch_add(1, Relaxed);
        ::metrics::counter!("strata_hot_corrupt_total").increment(1);
        self.hot.lock().discard(k, id);
        self.hot.sweep();
        self.hot.misses.record(&self.v.bucket, &self.v.key, self.v.size, MissReason::Corrupt);
    }

    /// Reads from the current cursor. `Ok(None)`: the hot file failed its check and is
    /// discarded; the caller opens a new cursor.
    async fn read_cursor(&mut self) -> Result<Option<Bytes>> {
        let r = self.hot.chunk_range(&self.v, self.idx(self.pos));
        let (off, stop) = (self.pos - r.start, self.end.min(r.end) - r.start);
        let Some(cur) = self.cur.as_mut() else { return Ok(None) };
        let counters = &self.hot.counters;
        match &mut cur.src {
            Source::Mem { data } => {
                let piece = data.slice(off as usize..stop as usize);
                counters.bytes_hot.fetch_add(piece.len() as u64, Relaxed);
                super::hit_metrics().bytes_hot.increment(piece.len() as u64);
                Ok(Some(piece))
            }
            Source::Hot { file, hdr, hdr_len, head } => {
                let bstart = off / STEP * STEP;
                let blocks = if self.hot.active.load(Relaxed) <= FEW_READERS { 4 } else { 1 };
                let blen = (blocks * STEP).min(hdr.chunk_len - bstart);
                let from_head = bstart + blen <= head.len() as u64;
                let data = if from_head {
                    head.slice(bstart as usize..(bstart + blen) as usize)
                } else {
                    read_at(file.clone(), *hdr_len + bstart, blen).await?
                };
                // The head buffer serves the first step at most; holding it longer would
                // cost its size for every open stream.
                if !from_head || bstart + blen >= head.len() as u64 {
                    *head = Bytes::new();
                }
                if data.len() as u64 != blen || !blocks_ok(&hdr.crcs, bstart, &data) {
                    let (k, id) = ((self.vh, cur.idx), cur.pin.as_ref().map_or(0, |p| p.id));
                    self.cur = None;
                    self.corrupt(k, id);
                    return Ok(None);
                }
                let piece = data.slice((off - bstart) as usize..(stop.min(bstart + blen) - bstart) as usize);
                counters.bytes_hot.fetch_add(piece.len() as u64, Relaxed);
                super::hit_metrics().bytes_hot.increment(piece.len() as u64);
                Ok(Some(piece))
            }
            Source::Fill { fill, rx } => {
                let step = if self.hot.active.load(Relaxed) <= FEW_READERS { 4 * STEP } else { STEP };
                let max = usize::try_from((stop - off).min(step)).unwrap_or(usize::MAX);
                let piece = fill.read(rx, off, max).await?;
                if piece.is_empty() {
                    return Err(Error::new(ErrorKind::Internal, "hot fill ended early"));
                }
                counters.bytes_cold.fetch_add(piece.len() as u64, Relaxed);
                ::metrics::counter!("strata_hot_bytes_total", "source" => "cold").increment(piece.len() as u64);
                Ok(Some(piece))
            }
            Source::Passthrough { stream } => {
                let piece = match stream.next().await {
                    Some(p) => p?,
                    None => return Err(Error::new(ErrorKind::Unavailable, "cold store ended the object early")),
                };
                let piece = piece.slice(..piece.len().min((stop - off) as usize));
                counters.bytes_cold.fetch_add(piece.len() as u64, Relaxed);
                ::metrics::counter!("strata_hot_bytes_total", "source" => "cold").increment(piece.len() as u64);
                Ok(Some(piece))
            }
        }
    }

    /// Store-and-forward (and warm): brings every chunk of the range into the tier, at most
    /// `fill_concurrency` fills at a time, and holds them pinned. With `verify`, a whole
    /// object whose ETag is an MD5 is hashed and compared before anything is sent.
    async fn preload(&mut self, verify: bool) -> Result<()> {
        let (first, last) = (self.idx(self.pos), self.last_idx());
        let mut filling: Vec<Arc<Fill>> = Vec::new();
        for idx in first..=last {
            let c = self.open_cursor(idx).await?;
            if let Source::Fill { fill, .. } = &c.src {
                filling.push(fill.clone());
            }
            self.held.insert(idx, c);
            if filling.len() >= self.hot.s.fill_concurrency.max(1) {
                filling.remove(0).wait().await?;
            }
        }
        for f in filling {
            f.wait().await?;
        }
        let whole = self.pos == 0 && self.end == self.v.size;
        if verify && whole && self.v.etag.len() == 32 && self.v.etag.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.verify_md5().await?;
        }
        Ok(())
    }

    async fn verify_md5(&mut self) -> Result<()> {
        let mut h = Md5::new();
        for idx in 0..=self.last_idx() {
            let Some(c) = self.held.get(&idx) else { return Ok(()) };
            let (file, at) = match &c.src {
                Source::Hot { file, hdr_len, .. } => (file.clone(), *hdr_len),
                Source::Fill { fill, .. } => (fill.file.clone(), fill.hdr_len),
                Source::Passthrough { .. } | Source::Mem { .. } => return Ok(()),
            };
            let len = self.hot.chunk_range(&self.v, idx);
            let mut off = 0;
            while off < len.end - len.start {
                let n = (1 << 20).min(len.end - len.start - off);
                h.update(read_at(file.clone(), at + off, n).await?);
                off += n;
            }
        }
        if hex::encode(h.finalize()) != self.v.etag {
            for (idx, c) in std::mem::take(&mut self.held) {
                if let Some(p) = &c.pin {
                    self.hot.lock().discard((self.vh, idx), p.id);
                }
            }
            return Err(Error::new(ErrorKind::Unavailable, "the cold store returned bytes that do not match the ETag"));
        }
        Ok(())
    }
}

/// Whether `data`, starting at data offset `start` (a block boundary), matches the CRC
/// (from its chunk's header) of every block it covers.
fn blocks_ok(crcs: &[u32], start: u64, data: &[u8]) -> bool {
    let first = usize::try_from(start / STEP).unwrap_or(usize::MAX);
    data.chunks(STEP as usize).enumerate().all(|(i, b)| crcs.get(first + i) == Some(&crc32fast::hash(b)))
}

/// The whole data of a hot chunk file whose data starts at `at`, read in one go and
/// checked block by block on the blocking pool; `None` if it cannot be read or a block
/// fails its check.
async fn load_checked(file: Arc<File>, at: u64, hdr: &ChunkHeader) -> Option<Bytes> {
    let (len, crcs) = (hdr.chunk_len, hdr.crcs.clone());
    tokio::task::spawn_blocking(move || {
        let data = pread_exact(&file, at, len).ok()?;
        (data.len() as u64 == len && blocks_ok(&crcs, 0, &data)).then_some(data)
    })
    .await
    .ok()
    .flatten()
}

async fn read_at(file: Arc<File>, at: u64, len: u64) -> Result<Bytes> {
    tokio::task::spawn_blocking(move || pread_exact(&file, at, len))
        .await
        .map_err(|e| Error::internal("hot read task", e))?
        .map_err(Error::from)
}

/// Reads exactly `len` bytes at `at` into a fresh buffer that is never zero-filled first
/// (rustix reads into the vector's spare capacity), which saves a memset per read.
pub(super) fn pread_exact(file: &File, at: u64, len: u64) -> std::io::Result<Bytes> {
    let len = usize::try_from(len).map_err(|_| std::io::Error::other("read too large"))?;
    let mut buf = Vec::with_capacity(len.max(1));
    while buf.len() < len {
        let off = at + buf.len() as u64;
        let n = rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), off).map_err(std::io::Error::from)?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
    }
    // The capacity may exceed `len`, and then so may the bytes read.
    buf.truncate(len);
    Ok(Bytes::from(buf))
}

/// Opens a hot file and reads its header and first block in one go. `None` when the file
/// is missing, its header is damaged or names another chunk, or its length is wrong.
async fn open_hot(path: PathBuf, k: ChunkKey, id: u64) -> Option<(Arc<File>, ChunkHeader, u64, Bytes)> {
    tokio::task::spawn_blocking(move || {
        let (file, hdr, head) = read_head(&path)?;
        let named = parse_name(&path)?;
        (named == (k, id) && version_hash(&hdr) == k.0).then_some(())?;
        let hdr_len = hdr.encoded_len();
        Some((Arc::new(file), hdr, hdr_len, head))
    })
    .await
    .ok()
    .flatten()
}

fn version_hash(h: &ChunkHeader) -> u128 {
    Version {
        bucket: h.bucket.clone(),
        key: h.key.clone(),
        etag: h.etag.clone(),
        size: h.obj_size,
        mtime_ms: h.mtime_ms,
    }
    .hash()
}

/// Reads the header and up to one block of data; checks the file's length.
fn read_head(path: &Path) -> Option<(File, ChunkHeader, Bytes)> {
    let file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    // Small files are read whole (they go to the memory tier); others up to one block.
    let want = if len <= 8192 + ITEM_MAX { len } else { 8192 + STEP };
    let mut buf = vec![0u8; usize::try_from(want).ok()?];
    file.read_exact_at(&mut buf, 0).ok()?;
    let hlen = ChunkHeader::peek_len(&buf)?;
    let hdr = if hlen <= buf.len() {
        ChunkHeader::decode(&buf[..hlen])?
    } else {
        let mut h = vec![0u8; hlen];
        file.read_exact_at(&mut h, 0).ok()?;
        ChunkHeader::decode(&h)?
    };
    if hdr.encoded_len() + hdr.chunk_len != len {
        return None;
    }
    let head = Bytes::from(buf).slice(hlen.min(usize::try_from(len).ok()?)..);
    Some((file, hdr, head))
}

/// `<hash>-<idx>.<id>` → the chunk key and file id.
fn parse_name(path: &Path) -> Option<(ChunkKey, u64)> {
    let name = path.file_name()?.to_str()?;
    let (stem, id) = name.split_once('.')?;
    let (hash, idx) = stem.split_once('-')?;
    let k = (u128::from_str_radix(hash, 16).ok()?, idx.parse().ok()?);
    Some((k, u64::from_str_radix(id, 16).ok()?))
}

/// At start: a chunk file's key, id, header and mtime, if it is a valid chunk file
/// stored at its own name.
pub(super) fn check_file(path: &Path) -> Option<(ChunkKey, u64, ChunkHeader, std::time::SystemTime)> {
    let (k, id) = parse_name(path)?;
    let (file, hdr, _) = read_head(path)?;
    let mtime = file.metadata().ok()?.modified().ok()?;
    (version_hash(&hdr) == k.0 && hdr.chunk_idx == k.1 && chunk_path(path.parent()?.parent()?, k, id) == path)
        .then_some((k, id, hdr, mtime))
}
