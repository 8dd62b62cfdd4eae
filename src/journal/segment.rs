//! Segment files: small writes appended to a shared file, many per fsync.
//!
//! A write whose body fits in `journal.segment_threshold` is not given a file of its own:
//! its record (`record.rs`) is appended to the current segment by one flusher task, which
//! writes every record queued meanwhile, then calls `fdatasync` once and answers them all
//! (group commit). A record's id names its segment and offset; only after the fsync is it
//! returned, so a catalog row never names a record that a crash could lose. A new segment
//! is created with its directory fsynced before its first record is answered.
//!
//! A segment stays while any row or entry names one of its records: each segment counts
//! its live records; [`Segments::release`] (the journal's `remove`) lowers the count, and
//! a segment that counts none is deleted (the current one too: the next record starts a
//! new segment). After a restart every
//! segment is sealed (new records go to a new one), and the counts come from the ids the
//! catalog still names. A crash mid-batch leaves a torn tail after the last acknowledged
//! record; the replay cuts it off ([`Segments::recover`]).

use super::record;
use crate::error::{Error, ErrorKind, Result};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// A segment is sealed and a new one started once it holds this many bytes.
pub const SEGMENT_SIZE: u64 = 64 << 20;

type Waiter = oneshot::Sender<Result<String>>;

/// The segment files of one journal directory.
pub(super) struct Segments {
    dir: PathBuf,
    state: Mutex<State>,
    /// Records waiting for the flusher, and whether one runs.
    queue: Mutex<(Vec<(Bytes, Waiter)>, bool)>,
}

#[derive(Default)]
struct State {
    current: Option<Current>,
    /// Live records per segment.
    live: HashMap<u64, u64>,
}

struct Current {
    id: u64,
    file: std::fs::File,
    len: u64,
}

impl Segments {
    pub(super) fn new(dir: &Path) -> Arc<Self> {
        Arc::new(Self { dir: dir.to_owned(), state: Mutex::default(), queue: Mutex::new((Vec::new(), false)) })
    }

    fn path(&self, segment: u64) -> PathBuf {
        self.dir.join(record::file_name(segment))
    }

    /// Appends `body` and returns its record id once it is on disk (fsynced).
    pub(super) async fn append(self: &Arc<Self>, body: Bytes) -> Result<String> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.0.push((body, tx));
            !std::mem::replace(&mut q.1, true)
        };
        if start {
            let me = self.clone();
            tokio::spawn(async move { me.flush_loop().await });
        }
        rx.await.map_err(|_| Error::new(ErrorKind::Internal, "the journal's segment flusher stopped"))?
    }

    /// Writes batches until the queue is empty: each batch is every record queued while
    /// the previous one was written and synced.
    async fn flush_loop(self: Arc<Self>) {
        loop {
            let batch = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if q.0.is_empty() {
                    q.1 = false;
                    return;
                }
                std::mem::take(&mut q.0)
            };
            let (bodies, waiters): (Vec<Bytes>, Vec<Waiter>) = batch.into_iter().unzip();
            let me = self.clone();
            let done = tokio::task::spawn_blocking(move || me.write_batch(&bodies)).await;
            let results = match done {
                Ok(Ok(ids)) => ids.into_iter().map(Ok).collect(),
                Ok(Err(e)) => waiters.iter().map(|_| Err(Error::new(e.kind(), e.context().to_owned()))).collect(),
                Err(e) => waiters
                    .iter()
                    .map(|_| Err(Error::internal("segment write", std::io::Error::other(e.to_string()))))
                    .collect::<Vec<_>>(),
            };
            ::metrics::histogram!("strata_journal_batch_records").record(waiters.len() as f64);
            for (w, r) in waiters.into_iter().zip(results) {
                let _ = w.send(r);
            }
        }
    }

    /// Appends every body to the current segment (starting new ones as they fill), then
    /// syncs each segment written. On an error the current segment is dropped (a new one
    /// is started next time) and no id is returned.
    fn write_batch(&self, bodies: &[Bytes]) -> Result<Vec<String>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut ids = Vec::with_capacity(bodies.len());
        let mut touched: Vec<std::fs::File> = Vec::new();
        let r = (|| -> Result<()> {
            for body in bodies {
                if st.current.as_ref().is_none_or(|c| c.len >= SEGMENT_SIZE)
                    && let Some(old) = self.rotate(&mut st)?
                {
                    touched.push(old);
                }
                let cur = st.current.as_mut().ok_or_else(|| Error::new(ErrorKind::Internal, "no current segment"))?;
                let rec = record::encode(body);
                cur.file.write_all_at(&rec, cur.len)?;
                ids.push((cur.id, record::id(cur.id, cur.len)));
                cur.len += rec.len() as u64;
            }
            if let Some(c) = &st.current {
                c.file.sync_data()?;
            }
            for f in &touched {
                f.sync_data()?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            // What this batch wrote is not acknowledged; the segment may hold part of it.
            if let Some(c) = st.current.take() {
                self.seal(&mut st, c.id);
            }
            return Err(e);
        }
        for (seg, _) in &ids {
            *st.live.entry(*seg).or_insert(0) += 1;
        }
        Ok(ids.into_iter().map(|(_, id)| id).collect())
    }

    /// Starts a new current segment (its directory entry made durable first); returns the
    /// old one's file, still to be synced with this batch.
    fn rotate(&self, st: &mut State) -> Result<Option<std::fs::File>> {
        let id: u64 = rand::random();
        let file = std::fs::OpenOptions::new().create_new(true).read(true).write(true).open(self.path(id))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        st.live.entry(id).or_insert(0);
        let old = st.current.replace(Current { id, file, len: 0 });
        Ok(old.map(|o| {
            self.seal(st, o.id);
            o.file
        }))
    }

    /// A segment stops being current: deleted at once when it holds no live record.
    fn seal(&self, st: &mut State, segment: u64) {
        if st.live.get(&segment).copied().unwrap_or(0) == 0 {
            st.live.remove(&segment);
            let _ = std::fs::remove_file(self.path(segment));
        }
    }

    /// Whether `segment` is one of this journal's live segments (a record id of another
    /// node's names none of them: its copy is a file).
    pub(super) fn holds(&self, segment: u64) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).live.contains_key(&segment)
    }

    /// A record of `segment` is no longer needed; returns the bytes freed on disk (a
    /// segment deleted). The current segment goes too when it holds nothing live: the next
    /// record starts a new one, and a reader that opens the old one learns the version
    /// moved to the stores.
    pub(super) fn release(&self, segment: u64) -> u64 {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(n) = st.live.get_mut(&segment) else { return 0 };
        *n = n.saturating_sub(1);
        if *n > 0 {
            return 0;
        }
        if st.current.as_ref().is_some_and(|c| c.id == segment) {
            st.current = None;
        }
        st.live.remove(&segment);
        let path = self.path(segment);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if std::fs::remove_file(&path).is_ok() { len } else { 0 }
    }

    /// The body of record `(segment, offset)`, checked against its checksum; `NotFound`
    /// when its segment is gone (every store holds its writes by then).
    pub(super) async fn read(&self, segment: u64, offset: u64) -> Result<Bytes> {
        let path = self.path(segment);
        tokio::task::spawn_blocking(move || read_record(&path, offset))
            .await
            .map_err(|e| Error::internal("segment read", std::io::Error::other(e.to_string())))?
    }

    /// The replay at a server's start: every segment is sealed; one whose records no row
    /// or entry names (`in_use`) is deleted, the others count their live records, and a
    /// torn tail after the last record in use is cut off. Returns the bytes freed.
    pub(super) fn recover(&self, in_use: &HashSet<String>) -> Result<u64> {
        let mut named: HashMap<u64, (u64, u64)> = HashMap::new();
        for (seg, off) in in_use.iter().filter_map(|id| record::parse_id(id)) {
            let e = named.entry(seg).or_insert((0, 0));
            e.0 += 1;
            e.1 = e.1.max(off);
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.current = None;
        st.live.clear();
        let mut freed = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(seg) = record::segment_of(&entry.file_name().to_string_lossy()) else { continue };
            let len = entry.metadata()?.len();
            let Some(&(count, last)) = named.get(&seg) else {
                if std::fs::remove_file(entry.path()).is_ok() {
                    freed += len;
                }
                continue;
            };
            st.live.insert(seg, count);
            freed += cut_torn_tail(&entry.path(), last, len)?;
        }
        Ok(freed)
    }
}

fn read_record(path: &Path, offset: u64) -> Result<Bytes> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::new(ErrorKind::NotFound, "the staged version moved to the stores"));
        }
        Err(e) => return Err(e.into()),
    };
    let mut buf = vec![0u8; record::HEADER];
    file.read_exact_at(&mut buf, offset)?;
    let n = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    buf.resize(record::HEADER + n, 0);
    file.read_exact_at(&mut buf[record::HEADER..], offset + record::HEADER as u64)?;
    match record::parse(&buf) {
        record::Parsed::Whole(body, _) => Ok(Bytes::copy_from_slice(body)),
        _ => {
            Err(Error::new(ErrorKind::Internal, format!("journal record at {offset} of {} is damaged", path.display())))
        }
    }
}

/// Cuts the bytes after the last whole record of a sealed segment, when they start after
/// `last` (the last offset a row names), so no record in use is ever cut. Returns the
/// bytes cut.
fn cut_torn_tail(path: &Path, last: u64, len: u64) -> Result<u64> {
    let buf = std::fs::read(path)?;
    let valid = record::valid_prefix(&buf) as u64;
    if valid >= len || valid <= last {
        return Ok(0);
    }
    tracing::warn!(segment = %path.display(), at = valid, cut = len - valid, "cutting a torn record off a journal segment");
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.set_len(valid)?;
    f.sync_all()?;
    Ok(len - valid)
}
