//! The checkpoint of a bulk transfer: a SQLite file naming every source key seen and
//! whether it is done, so an interrupted run resumes without touching finished objects,
//! and `sync` finds the destination's extras without holding a listing in memory.
//!
//! Writes are batched (one transaction per 500 keys or per second) by a background task;
//! a crash loses at most the last batch, whose objects the next run re-checks with a stat
//! (and skips, since they are already at the destination).

use crate::backend::Backend;
use crate::error::{Error, ErrorKind, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

fn db_err(what: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |e| Error::new(ErrorKind::Unavailable, format!("checkpoint: {what}")).with_source(e)
}

/// One destination listing entry: key, size, ETag, mtime (ms).
pub type DstRow = (String, Option<u64>, Option<String>, Option<i64>);

/// What to record about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Listed in the source; not done yet.
    Seen,
    /// Copied, skipped as unchanged, or verified.
    Done,
}

/// An open checkpoint.
pub struct Checkpoint {
    pool: SqlitePool,
    path: PathBuf,
    tx: Option<mpsc::Sender<(String, Mark)>>,
    writer: Option<tokio::task::JoinHandle<Result<()>>>,
    /// Synced before each batch of marks commits.
    dst: Arc<dyn Backend>,
    /// No earlier run finished a key: [`Checkpoint::is_done`] needs no lookup (a key is
    /// listed once per run), which spares a first run a query per object.
    fresh: bool,
}

impl Checkpoint {
    /// Opens (or creates) the checkpoint at `path` for the run named `run`. A file made
    /// for another run is an error, so two transfers never share progress by mistake.
    ///
    /// `in_flight` is the most lookups that may be pending at once. The pool gets a
    /// connection for each: a lookup future that its stream has stopped polling keeps its
    /// connection, and with fewer connections than such futures the others would wait for
    /// ever (they did, until the 30 s acquire timeout, before this bound).
    ///
    /// Before each batch of marks commits, `dst` is synced (`Backend::sync`), so a key is
    /// never recorded as done before its copy is durable, also with `--sync batch`.
    pub async fn open(path: &Path, run: &str, in_flight: usize, dst: Arc<dyn Backend>) -> Result<Checkpoint> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(db_err("path"))?
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
        let conns = u32::try_from(in_flight + 2).unwrap_or(u32::MAX);
        let pool = SqlitePoolOptions::new().max_connections(conns).connect_with(opts).await.map_err(db_err("open"))?;
        for ddl in [
            "CREATE TABLE IF NOT EXISTS run (name TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, done INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS dst (key TEXT PRIMARY KEY, size INTEGER, etag TEXT, mtime INTEGER)",
        ] {
            sqlx::query(ddl).execute(&pool).await.map_err(db_err("schema"))?;
        }
        let existing: Option<(String,)> =
            sqlx::query_as("SELECT name FROM run LIMIT 1").fetch_optional(&pool).await.map_err(db_err("run"))?;
        match existing {
            Some((name,)) if name != run => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("checkpoint {} belongs to another run ({name}); pass another --checkpoint", path.display()),
                ));
            }
            Some(_) => {}
            None => {
                sqlx::query("INSERT INTO run (name) VALUES (?)")
                    .bind(run)
                    .execute(&pool)
                    .await
                    .map_err(db_err("run"))?;
            }
        }
        let done: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM keys WHERE done = 1 LIMIT 1")
            .fetch_optional(&pool)
            .await
            .map_err(db_err("keys"))?;
        let (tx, rx) = mpsc::channel(4096);
        let writer = tokio::spawn(write_batches(pool.clone(), rx, dst.clone()));
        let fresh = done.is_none();
        Ok(Checkpoint { pool, path: path.to_owned(), tx: Some(tx), writer: Some(writer), dst, fresh })
    }

    /// Whether `key` was finished by an earlier run.
    pub async fn is_done(&self, key: &str) -> Result<bool> {
        if self.fresh {
            return Ok(false);
        }
        Ok(self.lookup(key).await? == Some(true))
    }

    /// Whether `key` was seen in the source (after [`Checkpoint::flush`]).
    pub async fn was_seen(&self, key: &str) -> Result<bool> {
        Ok(self.lookup(key).await?.is_some())
    }

    /// `None` when never seen, else whether done.
    async fn lookup(&self, key: &str) -> Result<Option<bool>> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT done FROM keys WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("lookup"))?;
        Ok(row.map(|(d,)| d == 1))
    }

    /// Forgets the destination index (it is rebuilt at the start of every run).
    pub async fn reset_dst(&self) -> Result<()> {
        sqlx::query("DELETE FROM dst").execute(&self.pool).await.map_err(db_err("reset"))?;
        Ok(())
    }

    /// Adds a page of destination listing entries: (key, size, ETag, mtime).
    pub async fn add_dst(&self, rows: &[DstRow]) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err("begin"))?;
        for (key, size, etag, mtime) in rows {
            sqlx::query("INSERT OR REPLACE INTO dst (key, size, etag, mtime) VALUES (?, ?, ?, ?)")
                .bind(key)
                .bind(size.and_then(|s| i64::try_from(s).ok()))
                .bind(etag)
                .bind(mtime)
                .execute(&mut *tx)
                .await
                .map_err(db_err("index destination"))?;
        }
        tx.commit().await.map_err(db_err("commit"))
    }

    /// The destination listing's entry for `key`: `None` when the listing had no such key.
    pub async fn dst(&self, key: &str) -> Result<Option<(Option<u64>, Option<String>, Option<i64>)>> {
        let row: Option<(Option<i64>, Option<String>, Option<i64>)> =
            sqlx::query_as("SELECT size, etag, mtime FROM dst WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("lookup"))?;
        Ok(row.map(|(s, e, m)| (s.and_then(|s| u64::try_from(s).ok()), e, m)))
    }

    /// Records `key` (batched).
    pub async fn mark(&self, key: &str, mark: Mark) -> Result<()> {
        let tx = self.tx.as_ref().ok_or_else(|| Error::new(ErrorKind::Internal, "checkpoint closed"))?;
        tx.send((key.to_owned(), mark)).await.map_err(|_| Error::new(ErrorKind::Internal, "checkpoint writer stopped"))
    }

    /// Writes every pending mark.
    pub async fn flush(&mut self) -> Result<()> {
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            w.await.map_err(|e| Error::internal("checkpoint writer", e))??;
        }
        let (tx, rx) = mpsc::channel(4096);
        self.writer = Some(tokio::spawn(write_batches(self.pool.clone(), rx, self.dst.clone())));
        self.tx = Some(tx);
        Ok(())
    }

    /// A finished run's checkpoint is removed, so the next run starts afresh.
    pub async fn finish(mut self) -> Result<()> {
        self.flush().await?;
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            w.await.map_err(|e| Error::internal("checkpoint writer", e))??;
        }
        self.pool.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }
}

async fn write_batches(pool: SqlitePool, mut rx: mpsc::Receiver<(String, Mark)>, dst: Arc<dyn Backend>) -> Result<()> {
    let mut batch = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
        let closed = matches!(next, Ok(None));
        if let Ok(Some(item)) = next {
            batch.push(item);
            if batch.len() < 500 {
                continue;
            }
        }
        if !batch.is_empty() {
            dst.sync().await?;
            let mut tx = pool.begin().await.map_err(db_err("begin"))?;
            for (key, mark) in batch.drain(..) {
                let sql = match mark {
                    Mark::Seen => "INSERT INTO keys (key, done) VALUES (?, 0) ON CONFLICT (key) DO NOTHING",
                    Mark::Done => "INSERT INTO keys (key, done) VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET done = 1",
                };
                sqlx::query(sql).bind(key).execute(&mut *tx).await.map_err(db_err("write"))?;
            }
            tx.commit().await.map_err(db_err("commit"))?;
        }
        if closed {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> Arc<dyn Backend> {
        let cfg =
            crate::config::BackendConfig::Fs(crate::config::FsBackend { root: dir.join("d"), deferred_sync: true });
        let breaker = crate::backend::BreakerSettings::from_config(&crate::config::Config::parse("").unwrap());
        crate::backend::stack("d", &cfg, &Default::default(), &breaker).unwrap().backend
    }

    #[tokio::test]
    async fn marks_survive_reopening_and_runs_do_not_mix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let mut c = Checkpoint::open(&path, "copy a b", 2, store(dir.path())).await.unwrap();
        c.mark("x", Mark::Seen).await.unwrap();
        c.mark("y", Mark::Seen).await.unwrap();
        c.mark("y", Mark::Done).await.unwrap();
        c.flush().await.unwrap();
        drop(c);
        let c = Checkpoint::open(&path, "copy a b", 2, store(dir.path())).await.unwrap();
        assert!(!c.is_done("x").await.unwrap() && c.was_seen("x").await.unwrap());
        assert!(c.is_done("y").await.unwrap());
        assert!(!c.was_seen("z").await.unwrap());
        drop(c);
        let other = Checkpoint::open(&path, "copy a c", 2, store(dir.path())).await;
        assert!(other.is_err());
    }
}
