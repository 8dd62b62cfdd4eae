//! One staging file: the bytes of a write, kept until every store holds them.
//!
//! A file is written as `<id>.tmp`, counted against `journal.max_size` as it grows, and
//! only [`StagingFile::persist`] (fsync the file, rename to `<id>`, fsync the directory)
//! makes it one that a journal entry may name. Dropped unpersisted, it is removed; a crash
//! leaves a `.tmp` that the next start removes.

use super::Journal;
use crate::error::Result;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

/// Bytes written between two free-space checks.
const DISK_CHECK_EVERY: u64 = 8 << 20;

/// A staging file being written.
pub struct StagingFile {
    journal: Journal,
    id: String,
    tmp: PathBuf,
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    reserved: u64,
    unchecked: u64,
    kept: bool,
}

impl StagingFile {
    pub(super) async fn create(journal: Journal) -> Result<Self> {
        Self::create_as(journal, uuid::Uuid::new_v4().simple().to_string()).await
    }

    /// A staging file named `id` (another node's copy keeps its owner's id).
    pub(super) async fn create_as(journal: Journal, id: String) -> Result<Self> {
        journal.reserve(0, true)?;
        let tmp = journal.path(&format!("{id}.tmp"));
        let file = tokio::fs::File::create(&tmp).await?;
        let file = Some(tokio::io::BufWriter::with_capacity(1 << 20, file));
        Ok(Self { journal, id, tmp, file, reserved: 0, unchecked: 0, kept: false })
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
        let Some(f) = self.file.as_mut() else { return Ok(()) };
        f.write_all(chunk).await?;
        Ok(())
    }

    /// Makes the file durable under its final name: fsync, rename, fsync the directory.
    /// Afterwards a crash keeps it, so a journal entry may name it.
    pub async fn persist(mut self) -> Result<String> {
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
            let _ = std::fs::remove_file(&self.tmp);
            self.journal.release(self.reserved);
        }
    }
}
