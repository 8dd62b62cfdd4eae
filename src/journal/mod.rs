//! The local journal: writes acknowledged before every cold store holds them.
//!
//! Owns the staging directory (one file per journaled version, fsynced before its catalog
//! row and journal entries commit), its size accounting and free-space floor, the node id
//! that marks this node's entries in a shared catalog, the [`Closer`] that ends the
//! entries of finished inline writes (made to the stores during the request) off the
//! request path, and the [`Uploader`] worker
//! that drains entries to the stores with backoff. Where entries go is the buckets'
//! plans' (`crate::plan`). It must not speak any protocol, and must not
//! decide when a write is acknowledged: that is the tier's (see
//! `docs/design/journal.md`).

mod closer;
mod record;
mod segment;
mod staging;
mod uploader;

pub use closer::Closer;
pub use staging::StagingFile;
pub use uploader::{ClusterRole, Uploader};

use crate::backend::{ByteStream, WriteOptions};
use crate::catalog::{Catalog, ObjectHeaders};
use crate::error::{Error, ErrorKind, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// Limits of the staging directory.
#[derive(Debug, Clone)]
pub struct JournalSettings {
    /// The directory.
    pub dir: PathBuf,
    /// Most bytes staged at once.
    pub max_size: u64,
    /// Free space to leave on the filesystem.
    pub min_free: u64,
    /// Bodies up to this size become records in shared segment files (one fsync per
    /// group of writes); larger ones get files of their own. 0: every write a file.
    pub segment_threshold: u64,
}

/// The staging directory of this node.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    settings: JournalSettings,
    /// `max_size` and `min_free` in force: a config reload changes them
    /// ([`Journal::set_limits`]).
    limits: (AtomicU64, AtomicU64),
    node: String,
    used: AtomicU64,
    segments: Arc<segment::Segments>,
}

impl Journal {
    /// Opens the directory: creates it and the node id, and counts the staged bytes.
    /// Safe beside a running server (it changes nothing another process uses).
    pub async fn open(settings: JournalSettings) -> Result<Journal> {
        tokio::fs::create_dir_all(&settings.dir).await?;
        let node = node_id(&settings.dir).await?;
        let mut used = 0u64;
        let mut dir = tokio::fs::read_dir(&settings.dir).await?;
        while let Some(entry) = dir.next_entry().await? {
            if entry.file_name() != NODE_FILE {
                used += entry.metadata().await.map(|m| m.len()).unwrap_or(0);
            }
        }
        let limits = (AtomicU64::new(settings.max_size), AtomicU64::new(settings.min_free));
        let segments = segment::Segments::new(&settings.dir);
        let inner = Inner { settings, limits, node, used: AtomicU64::new(used), segments };
        Ok(Journal { inner: Arc::new(inner) })
    }

    /// The replay at a server's start: removes staging files of writes that were never
    /// journaled (no entry or row names them; a crash between the staging file and the
    /// transaction leaves these) and returns entries left `uploading` by a stop to
    /// `pending`, so the uploader applies them again. Only the server may call this.
    pub async fn recover(&self, catalog: &Catalog) -> Result<()> {
        let in_use = catalog.staging_in_use(self.node()).await?;
        let segments = self.inner.segments.clone();
        let (freed, in_use) = tokio::task::spawn_blocking(move || (segments.recover(&in_use), in_use))
            .await
            .map_err(|e| Error::internal("journal segments replay", std::io::Error::other(e.to_string())))?;
        self.release(freed?);
        let mut dir = tokio::fs::read_dir(&self.inner.settings.dir).await?;
        while let Some(entry) = dir.next_entry().await? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == NODE_FILE || in_use.contains(&name) || record::segment_of(&name).is_some() {
                continue;
            }
            tracing::info!(file = %name, "removing a staging file no journaled write names");
            let len = entry.metadata().await.map(|m| m.len()).unwrap_or(0);
            if tokio::fs::remove_file(entry.path()).await.is_ok() {
                self.release(len);
            }
        }
        let back = catalog.journal_recover(self.node(), false).await?;
        if back > 0 {
            tracing::info!(entries = back, "journal entries interrupted by a stop are pending again");
        }
        Ok(())
    }

    /// This node's id (names its entries in the catalog).
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Bytes staged now.
    pub fn used(&self) -> u64 {
        self.inner.used.load(SeqCst)
    }

    /// The bound on staged bytes.
    pub fn max_size(&self) -> u64 {
        self.inner.limits.0.load(SeqCst)
    }

    /// Takes new bounds (a config reload): later writes are checked against them; bytes
    /// already staged stay, even above a lowered bound, and drain as they upload.
    pub fn set_limits(&self, max_size: u64, min_free: u64) {
        self.inner.limits.0.store(max_size, SeqCst);
        self.inner.limits.1.store(min_free, SeqCst);
    }

    /// Starts a staging file for a new write.
    pub async fn stage(&self) -> Result<StagingFile> {
        StagingFile::create(self.clone()).await
    }

    /// Keeps a copy of another node's staged version `id` (`journal.peer_copies`), read
    /// from `body`, under the same name and durable like a staging file of this node's.
    /// Returns its length. `id` must be a staging id (32 hex digits) or a record id.
    pub async fn receive(&self, id: &str, mut body: ByteStream) -> Result<u64> {
        use futures::StreamExt;
        if !is_staged_id(id) {
            return Err(Error::new(ErrorKind::InvalidInput, "not a staging id"));
        }
        let mut file = StagingFile::create_as(self.clone(), id.to_owned()).await?;
        let mut n = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            n += chunk.len() as u64;
            file.write(&chunk).await?;
        }
        file.persist().await?;
        Ok(n)
    }

    /// The path of a staging file (or a copy of another node's staged version).
    fn path(&self, id: &str) -> PathBuf {
        self.inner.settings.dir.join(id)
    }

    /// This node's segment holding record `id`, when `id` names one (else `id` names a
    /// file: a staging file, or a copy of another node's staged version).
    fn own_record(&self, id: &str) -> Option<(u64, u64)> {
        record::parse_id(id).filter(|(seg, _)| self.inner.segments.holds(*seg))
    }

    /// Streams `range` of staged version `id`: a record of this node's segments, else a
    /// file of its own (also a copy of another node's record). `NotFound` once it is gone
    /// (every store holds the version by then: read the row again).
    pub async fn open_staged(&self, id: &str, range: Option<std::ops::Range<u64>>) -> Result<ByteStream> {
        use futures::StreamExt;
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        if let Some((seg, off)) = self.own_record(id) {
            let body = self.inner.segments.read(seg, off).await?;
            let len = body.len() as u64;
            let body = match range {
                Some(r) => body.slice(r.start.min(len) as usize..r.end.min(len) as usize),
                None => body,
            };
            return Ok(futures::stream::once(async move { Ok(body) }).boxed());
        }
        match tokio::fs::File::open(self.path(id)).await {
            Ok(mut f) => {
                let reader = match range {
                    Some(r) => {
                        f.seek(std::io::SeekFrom::Start(r.start)).await?;
                        f.take(r.end.saturating_sub(r.start))
                    }
                    None => f.take(u64::MAX),
                };
                let s = tokio_util::io::ReaderStream::with_capacity(reader, 256 << 10);
                Ok(s.map(|r| r.map_err(Error::from)).boxed())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::new(ErrorKind::NotFound, "the staged version moved to the stores"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes staged version `id` once nothing needs it: its file, or its record (the
    /// segment goes with its last live record).
    pub async fn remove(&self, id: &str) {
        if let Some((seg, _)) = self.own_record(id) {
            let freed = self.inner.segments.release(seg);
            self.release(freed);
            return;
        }
        let path = self.path(id);
        if let Ok(m) = tokio::fs::metadata(&path).await
            && tokio::fs::remove_file(&path).await.is_ok()
        {
            self.release(m.len());
        }
    }

    /// Counts `n` more staged bytes, or refuses with `SlowDown` when the journal is full
    /// or its filesystem is below the free-space floor.
    fn reserve(&self, n: u64, check_disk: bool) -> Result<()> {
        let (max_size, min_free) = (self.max_size(), self.inner.limits.1.load(SeqCst));
        let before = self.inner.used.fetch_add(n, SeqCst);
        let full = before + n > max_size;
        let low = check_disk && free_space(&self.inner.settings.dir).is_some_and(|free| free < min_free + n);
        if full || low {
            self.release(n);
            let why = if full { "journal.max_size" } else { "journal.min_free" };
            return Err(Error::new(ErrorKind::SlowDown, format!("the journal is full ({why}); retry later")));
        }
        Ok(())
    }

    fn release(&self, n: u64) {
        let _ = self.inner.used.fetch_update(SeqCst, SeqCst, |u| Some(u.saturating_sub(n)));
    }
}

const NODE_FILE: &str = "node-id";

/// Whether `id` names a staged version: a staging file's (32 hex digits) or a record's.
pub fn is_staged_id(id: &str) -> bool {
    let file = id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    file || record::parse_id(id).is_some()
}

/// The node id kept in the journal directory (made once, at random).
async fn node_id(dir: &Path) -> Result<String> {
    let path = dir.join(NODE_FILE);
    match tokio::fs::read_to_string(&path).await {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => {
            let id = format!("node-{}", hex::encode(rand::random::<[u8; 8]>()));
            tokio::fs::write(&path, &id).await?;
            Ok(id)
        }
    }
}

fn free_space(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The native headers an object is written with.
pub fn write_options(h: &ObjectHeaders, meta: &BTreeMap<String, String>) -> WriteOptions {
    WriteOptions {
        content_type: h.content_type.clone(),
        cache_control: h.cache_control.clone(),
        content_disposition: h.content_disposition.clone(),
        content_encoding: h.content_encoding.clone(),
        user_metadata: meta.clone(),
    }
}
