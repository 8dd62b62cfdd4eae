//! One chunk fill: fetch a byte range from the cold store into a temporary file, publish
//! progress to every reader waiting on it, then move the file to its final path.
//!
//! A fill runs as its own task, so a client that disconnects does not cancel a fetch
//! other readers share. A stream that breaks midway is resumed from the last byte written
//! (up to `retries` times); a fill that still fails leaves no file behind and tells its
//! readers, who abort their responses. This file must not decide what is cached: the index
//! has already reserved the bytes.

use super::format::{BLOCK_SIZE, BlockHasher, ChunkHeader};
use crate::backend::ByteStream;
use crate::error::{Error, ErrorKind, Result};
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Opens a ranged read of one object version in the cold store. It fails with `NotFound`
/// when the catalog no longer names that version.
pub type OpenFn = Arc<dyn Fn(Range<u64>) -> BoxFuture<'static, Result<ByteStream>> + Send + Sync>;

/// How far a fill got.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Data bytes written so far (readable at `hdr_len + offset`).
    pub written: u64,
    /// `Some` once finished: `Ok` when the chunk is complete.
    pub outcome: Option<std::result::Result<(), (ErrorKind, String)>>,
}

/// A fill in progress, shared by every reader of the chunk.
pub struct Fill {
    /// The file id (see `index::chunk_path`).
    pub id: u64,
    /// The temporary file, shared: readers `read_at` it while it grows.
    pub file: Arc<std::fs::File>,
    /// Where the data starts in the file.
    pub hdr_len: u64,
    /// Data bytes the chunk will hold.
    pub len: u64,
    progress: watch::Sender<Progress>,
}

/// What a fill needs to run.
pub struct Job {
    /// The chunk's header, CRCs still empty.
    pub header: ChunkHeader,
    /// The object byte range of this chunk.
    pub range: Range<u64>,
    /// Opens cold reads.
    pub open: OpenFn,
    /// Temporary path of the file.
    pub tmp: PathBuf,
    /// Final path of the file.
    pub dest: PathBuf,
    /// Resumptions allowed after a broken stream.
    pub retries: u32,
    /// The MD5 the chunk's bytes must have, when the chunk is the whole object and its
    /// ETag is an MD5: bytes that do not match are refused, not cached.
    pub md5: Option<[u8; 16]>,
}

impl Job {
    /// The MD5 a chunk of `range` must have: the object's ETag, when the chunk is the
    /// whole object of `size` bytes and the ETag is a plain MD5 (not a multipart one).
    pub fn md5_of(etag: &str, range: &Range<u64>, size: u64) -> Option<[u8; 16]> {
        let mut out = [0u8; 16];
        let whole = range.start == 0 && range.end == size;
        (whole && hex::decode_to_slice(etag, &mut out).is_ok()).then_some(out)
    }
}

/// What a fill has seen of its bytes.
struct Seen {
    crcs: BlockHasher,
    md5: Option<md5::Md5>,
}

/// Largest write handed to the blocking pool at once.
const FLUSH: usize = 1 << 20;

impl Fill {
    /// Creates the temporary file for a chunk of `len` bytes after a header of `hdr_len`.
    pub fn create(id: u64, tmp: &std::path::Path, hdr_len: u64, len: u64) -> Result<Arc<Fill>> {
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(tmp)?;
        let (progress, _) = watch::channel(Progress::default());
        Ok(Arc::new(Fill { id, file: Arc::new(file), hdr_len, len, progress }))
    }

    /// Watches this fill's progress.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Runs the fill to its end; returns the outcome (also published to readers).
    pub async fn run(self: &Arc<Self>, job: Job) -> Result<()> {
        let started = Instant::now();
        let res = self.fetch(&job).await;
        let res = match res {
            Ok(crcs) => self.finish(&job, crcs).await,
            Err(e) => Err(e),
        };
        ::metrics::histogram!("strata_hot_fill_seconds").record(started.elapsed().as_secs_f64());
        let outcome = match &res {
            Ok(()) => Ok(()),
            Err(e) => {
                ::metrics::counter!("strata_hot_fill_errors_total").increment(1);
                let _ = std::fs::remove_file(&job.tmp);
                Err((e.kind(), e.to_string()))
            }
        };
        // A verified fill held its last byte back until now.
        let len = self.len;
        self.progress.send_modify(|p| {
            if outcome.is_ok() {
                p.written = len;
            }
            p.outcome = Some(outcome);
        });
        res
    }

    /// Copies the range into the file, resuming after broken streams. Returns the CRCs.
    async fn fetch(&self, job: &Job) -> Result<Vec<u32>> {
        use md5::Digest;
        let mut hasher = Seen { crcs: BlockHasher::new(BLOCK_SIZE), md5: job.md5.map(|_| md5::Md5::new()) };
        let mut written = 0u64;
        let mut attempt = 0u32;
        loop {
            let from = job.range.start + written;
            let res = match (job.open)(from..job.range.end).await {
                Ok(stream) => self.copy(stream, &mut written, &mut hasher).await,
                Err(e) => Err(e),
            };
            let err = match res {
                Ok(()) if written == self.len => return verified(hasher, job.md5),
                Ok(()) => {
                    Error::new(ErrorKind::Unavailable, format!("cold store sent {written} of {} bytes", self.len))
                }
                Err(e) => e,
            };
            // NotFound means the version is gone (deleted or replaced): nothing to resume.
            let resumable = !matches!(err.kind(), ErrorKind::NotFound | ErrorKind::Internal);
            if attempt >= job.retries || !resumable {
                return Err(err);
            }
            attempt += 1;
            tracing::warn!(error = %err, attempt, written, "cold read broke; resuming");
            tokio::time::sleep(Duration::from_millis(50 << attempt.min(6))).await;
        }
    }

    /// Copies one stream, batching ready pieces into writes of up to 1 MiB. Bytes that
    /// arrived before an error are written (and hashed) before the error is returned, so
    /// a resumed read starts exactly after them.
    async fn copy(&self, mut stream: ByteStream, written: &mut u64, hasher: &mut Seen) -> Result<()> {
        let mut buf = BytesMut::new();
        let res = loop {
            let next = match stream.next().now_or_never() {
                Some(item) => item,
                None if !buf.is_empty() => {
                    self.write(buf.split().freeze(), written, hasher).await?;
                    continue;
                }
                None => stream.next().await,
            };
            let piece = match next {
                None => break Ok(()),
                Some(Err(e)) => break Err(e),
                Some(Ok(p)) => p,
            };
            if *written + (buf.len() + piece.len()) as u64 > self.len {
                break Err(Error::new(ErrorKind::Unavailable, "cold store sent more bytes than the object has"));
            }
            buf.extend_from_slice(&piece);
            if buf.len() >= FLUSH {
                self.write(buf.split().freeze(), written, hasher).await?;
            }
        };
        if !buf.is_empty() {
            self.write(buf.freeze(), written, hasher).await?;
        }
        res
    }

    async fn write(&self, data: Bytes, written: &mut u64, hasher: &mut Seen) -> Result<()> {
        use md5::Digest;
        hasher.crcs.update(&data);
        if let Some(m) = &mut hasher.md5 {
            m.update(&data);
        }
        let (file, off) = (self.file.clone(), self.hdr_len + *written);
        let n = data.len() as u64;
        tokio::task::spawn_blocking(move || file.write_all_at(&data, off))
            .await
            .map_err(|e| Error::internal("hot write task", e))??;
        *written += n;
        // Readers of a fill that is checked against an MD5 get every byte but the last
        // until the check passed: a mismatch then breaks their body short of its length,
        // so no client takes wrong bytes for a complete object.
        let w = if hasher.md5.is_some() { (*written).min(self.len.saturating_sub(1)) } else { *written };
        self.progress.send_modify(|p| p.written = w);
        Ok(())
    }

    /// Writes the header and moves the file into place.
    async fn finish(&self, job: &Job, crcs: Vec<u32>) -> Result<()> {
        let mut header = job.header.clone();
        header.crcs = crcs;
        let bytes = header.encode();
        if bytes.len() as u64 != self.hdr_len {
            return Err(Error::new(ErrorKind::Internal, "hot chunk header changed length while filling"));
        }
        let (file, tmp, dest) = (self.file.clone(), job.tmp.clone(), job.dest.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            file.write_all_at(&bytes, 0)?;
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(&tmp, &dest)
        })
        .await
        .map_err(|e| Error::internal("hot finish task", e))??;
        Ok(())
    }

    /// Reads up to `max` data bytes at `off`, waiting until the fill has written them.
    /// Fails when the fill failed; returns empty at the chunk's end.
    pub async fn read(&self, rx: &mut watch::Receiver<Progress>, off: u64, max: usize) -> Result<Bytes> {
        let avail = loop {
            let p = rx.borrow_and_update().clone();
            if p.written > off {
                break p.written;
            }
            match p.outcome {
                Some(Err((kind, msg))) => return Err(Error::new(kind, msg)),
                Some(Ok(())) => return Ok(Bytes::new()),
                None => {}
            }
            if rx.changed().await.is_err() {
                return Err(Error::new(ErrorKind::Internal, "hot fill vanished"));
            }
        };
        let n = usize::try_from(avail - off).unwrap_or(usize::MAX).min(max);
        let (file, at) = (self.file.clone(), self.hdr_len + off);
        let bytes = tokio::task::spawn_blocking(move || super::read::pread_exact(&file, at, n as u64))
            .await
            .map_err(|e| Error::internal("hot read task", e))??;
        Ok(bytes)
    }

    /// Waits for the fill to end.
    pub async fn wait(&self) -> Result<()> {
        let mut rx = self.subscribe();
        loop {
            if let Some(o) = rx.borrow_and_update().outcome.clone() {
                return o.map_err(|(kind, msg)| Error::new(kind, msg));
            }
            if rx.changed().await.is_err() {
                return Err(Error::new(ErrorKind::Internal, "hot fill vanished"));
            }
        }
    }
}

/// The CRCs of a fetched chunk, once its MD5 (when it has one to match) matched.
fn verified(seen: Seen, want: Option<[u8; 16]>) -> Result<Vec<u32>> {
    use md5::Digest;
    if let (Some(m), Some(want)) = (seen.md5, want) {
        let got: [u8; 16] = m.finalize().into();
        if got != want {
            // Most likely the store holds another version of the key by now: like a
            // version that is gone, nothing to resume.
            ::metrics::counter!("strata_hot_fill_mismatch_total").increment(1);
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "the store sent bytes whose MD5 {} is not the version's ETag {}",
                    hex::encode(got),
                    hex::encode(want)
                ),
            ));
        }
    }
    Ok(seen.crcs.finish())
}
