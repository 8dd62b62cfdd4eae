//! One staged write: the bytes of a write, kept until every store holds them.
//!
//! A body that stays within `journal.segment_threshold` is kept in memory and, at
//! [`StagingFile::persist`], appended to a segment as one record with other writes' records
//! (one fsync for the group: `segment.rs`); its id is the record's. A larger body spills
//! to a file of its own, written as `<id>.tmp`; persisting fsyncs it, renames it to `<id>`
//! and fsyncs the directory. Either way the bytes are counted against `journal.max_size`
//! as they arrive, and only a persisted write may be named by a journal entry. Dropped
//! unpersisted, nothing stays; a crash leaves a `.tmp` that the next start removes.

use super::Journal;
use crate::error::Result;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

/// Bytes written between two free-space checks.
const DISK_CHECK_EVERY: u64 = 8 << 20;

/// A staged write being received.
pub struct StagingFile {
    journal: Journal,
    id: String,
    tmp: PathBuf,
    /// The body while it fits in a record.
    memory: Option<Vec<u8>>,
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    reserved: u64,
    unchecked: u64,
    kept: bool,
}

impl StagingFile {
    /// A new write: in memory while small enough for a segment record.
    pub(super) async fn create(journal: Journal) -> Result<Self> {
        let small = journal.inner.settings.segment_threshold > 0;
        Self::start(journal, uuid::Uuid::new_v4().simple().to_string(), small).await
    }

    /// A staging file named `id` (another node's copy keeps its owner's id), always a
    /// file of its own.
    pub(super) async fn create_as(journal: Journal, id: String) -> Result<Self> {
        Self::start(journal, id, false).await
    }

    async fn start(journal: Journal, id: String, in_memory: bool) -> Result<Self> {
        journal.reserve(0, true)?;
        let tmp = journal.path(&format!("{id}.tmp"));
        let memory = in_memory.then(Vec::new);
        let mut me = Self { journal, id, tmp, memory, file: None, reserved: 0, unchecked: 0, kept: false };
        if !in_memory {
            me.spill().await?;
        }
        Ok(me)
    }

    /// Moves the body to a file of its own (it outgrew a record).
    async fn spill(&mut self) -> Result<()> {
        let file = tokio::fs::File::create(&self.tmp).await?;
        let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
        if let Some(buf) = self.memory.take() {
            file.write_all(&buf).await?;
        }
        self.file = Some(file);
        Ok(())
    }

    /// The id an entry or row uses to name this file once it is persisted.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Appends bytes; `SlowDown` when the journal is full.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        let n = chunk.len() as u64;
        self.unchecked += n;
        let check = self.unchecked >= DISK_CHECK_EVERY;
        if check {
            self.unchecked = 0;
        }
        self.journal.reserve(n, check)?;
        self.reserved += n;
        let threshold = self.journal.inner.settings.segment_threshold;
        if let Some(buf) = self.memory.as_mut() {
            if buf.len() as u64 + n <= threshold {
                buf.extend_from_slice(chunk);
                return Ok(());
            }
            self.spill().await?;
        }
        let Some(f) = self.file.as_mut() else { return Ok(()) };
        f.write_all(chunk).await?;
        Ok(())
    }

    /// Makes the write durable under its id: a segment record (group fsync), or the file
    /// fsynced, renamed and its directory fsynced. Afterwards a crash keeps it, so a
    /// journal entry may name it.
    pub async fn persist(mut self) -> Result<String> {
        if let Some(buf) = self.memory.take() {
            let header = super::record::HEADER as u64;
            self.journal.reserve(header, false)?;
            self.reserved += header;
            let id = self.journal.inner.segments.append(bytes::Bytes::from(buf)).await?;
            self.kept = true;
            return Ok(id);
        }
        if let Some(mut f) = self.file.take() {
            f.flush().await?;
            f.into_inner().sync_all().await?;
        }
        let dst = self.journal.path(&self.id);
        tokio::fs::rename(&self.tmp, &dst).await?;
        let dir = self.journal.inner.settings.dir.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
            .await
            .map_err(|e| crate::error::Error::internal("fsync of the journal directory", e))??;
        self.kept = true;
        Ok(self.id.clone())
    }
}

impl Drop for StagingFile {
    fn drop(&mut self) {
        if !self.kept {
            // A body that never left memory has no file: the removal finds none.
            let _ = std::fs::remove_file(&self.tmp);
            self.journal.release(self.reserved);
        }
    }
}
