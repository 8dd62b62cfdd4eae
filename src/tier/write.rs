//! The write path: every PUT, copy, multipart completion and DELETE is journaled before it
//! touches a store, then applied to the stores directly (through mode) or left to the
//! uploader (back mode, or a store that failed).
//!
//! The sequence of a put (see `docs/design/journal.md`):
//! 1. the body streams into a staging file and, in through mode, into a writer per store;
//! 2. under the key's write lock: the staging file is fsynced, then the row (naming the
//!    staging file, every store `behind`) and one journal entry per store commit in one
//!    transaction, which takes the key's cluster-wide lock and checks the precondition
//!    (`catalog/writes.rs`). From here the write survives a crash;
//! 3. the inline writers commit; each success ends its entry and takes its store off
//!    `behind`. A store with older unfinished entries for this key (on any node) gets this
//!    write only in its turn: the writer waits up to [`QUEUE_WAIT`] for the earlier entries
//!    to finish, else the uploader applies it. So every store sees the key's writes in
//!    the order of their transactions.
//! 4. the acknowledgement: through mode once `min_durable` stores hold it, else (not
//!    strict) from the journal; back mode after step 2.

use super::Tier;
use crate::backend::{ObjectWriter, WriteOptions};
use crate::catalog::{EntryState, JournalOp, JournalWrite, Journaled, NewEntry, ObjectRecord};
use crate::config::WriteMode;
use crate::error::{Error, ErrorKind, Result};
use crate::journal::StagingFile;
use crate::names::validate_key;
use crate::plan::BucketPlan;
use bytes::Bytes;
use futures::FutureExt;
use std::time::Duration;

/// How long a through-mode write queued behind earlier writes of its key waits for its
/// turn to write a store during the request; after that the uploader applies it.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// A precondition on the key a write replaces (S3's conditional writes), checked under
/// the key's write lock, so that no other write of the key on this node comes between the
/// check and the write. Across nodes it holds once writes of a key are serialised
/// cluster-wide (issue 15).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteCondition {
    /// `If-Match`: the ETag the current object must have (unquoted), or `*` for any.
    pub if_match: Option<String>,
    /// `If-None-Match: *`: the key must not exist.
    pub if_none_match: bool,
}

impl WriteCondition {
    /// Whether a write may replace `current` (the acknowledged object, if any).
    pub fn check(&self, current: Option<&ObjectRecord>) -> Result<()> {
        if self.if_none_match && current.is_some() {
            return Err(Error::new(ErrorKind::PreconditionFailed, "If-None-Match: the key exists"));
        }
        match (&self.if_match, current) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(Error::new(ErrorKind::NotFound, "If-Match: the key does not exist")),
            (Some(want), Some(cur)) if want == "*" || *want == cur.etag => Ok(()),
            (Some(_), Some(_)) => Err(Error::new(ErrorKind::PreconditionFailed, "If-Match: the ETag differs")),
        }
    }

    fn is_set(&self) -> bool {
        self.if_match.is_some() || self.if_none_match
    }
}

/// A write in progress: its staging file and the inline writers still alive.
pub(super) struct Staged {
    file: StagingFile,
    writers: Vec<(String, Box<dyn ObjectWriter>)>,
}

#[async_trait::async_trait]
impl ObjectWriter for Staged {
    /// Appends to the staging file (whose errors fail the write) and to every live store
    /// writer (a store that fails here is dropped and gets the write from the journal).
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        // The local write and the stores' writes overlap: none waits for another.
        let stores = futures::future::join_all(self.writers.iter_mut().map(|(_, w)| w.write(chunk.clone())));
        let (local, results) = futures::join!(self.file.write(&chunk), stores);
        // Results come in writer order: drop each store that failed.
        let mut i = 0;
        for r in results {
            match r {
                Ok(()) => i += 1,
                Err(e) => {
                    let (store, w) = self.writers.remove(i);
                    tracing::warn!(store, error = %e, "a store failed during a write; it will get it from the journal");
                    let _ = w.abort().await;
                }
            }
        }
        local
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        Err(Error::new(ErrorKind::Internal, "a staged write is committed through Tier::commit_write"))
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        for (_, w) in self.writers {
            let _ = w.abort().await;
        }
        Ok(())
    }
}

impl Tier {
    /// Refuses writes while the server is read-only.
    pub(super) fn writable(&self) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::new(ErrorKind::ReadOnly, "the server is read-only for maintenance"));
        }
        Ok(())
    }

    /// Starts a write of `bucket`/`key`: a staging file, plus a writer per store in
    /// through mode (a store that cannot start one is left to the journal).
    pub(super) async fn begin_write(&self, place: &BucketPlan, path: &str, opts: &WriteOptions) -> Result<Staged> {
        // A path some store can never hold is refused now, before anything is journaled:
        // its entry would otherwise fail for ever after the 200.
        for s in &place.stores {
            self.backend(s)?.check_path(path)?;
        }
        let file = self.inner.journal.stage().await?;
        let mut writers = Vec::new();
        if place.write_mode == WriteMode::Through {
            let opened = futures::future::join_all(place.stores.iter().map(|s| async move {
                let b = self.backend(s)?;
                b.writer(path, opts).await.map(|w| (s.clone(), w))
            }))
            .await;
            for (store, w) in place.stores.iter().zip(opened) {
                match w {
                    Ok(w) => writers.push(w),
                    Err(e) => tracing::warn!(store, error = %e, "cannot start a write; it will come from the journal"),
                }
            }
        }
        Ok(Staged { file, writers })
    }

    /// Fails fast when `cond` already fails, before a body is read (it is checked again,
    /// atomically, at the commit).
    pub(super) async fn precheck(&self, bucket: &str, key: &str, cond: &WriteCondition) -> Result<()> {
        if cond.is_set() {
            cond.check(self.inner.catalog.get_object_fresh(bucket, key).await?.as_ref())?;
        }
        Ok(())
    }

    /// Journals `rec` (steps 2 to 4 above) and returns it as acknowledged, once `cond`
    /// holds under the key's lock. With `upload`, that multipart upload is removed in the
    /// same transaction.
    pub(super) async fn commit_write(
        &self,
        staged: Staged,
        mut rec: ObjectRecord,
        place: &BucketPlan,
        (upload, cond): (Option<&str>, &WriteCondition),
    ) -> Result<ObjectRecord> {
        let Staged { file, writers } = staged;
        let guard = self.inner.locks.write(&rec.bucket, &rec.key).await;
        let id = match file.persist().await {
            Ok(id) => id,
            Err(e) => return Err(abort_all(writers, e).await),
        };
        rec.staging = Some(id.clone());
        rec.behind = place.stores.clone();
        rec.backend = place.stores[0].clone();
        let entries = place
            .stores
            .iter()
            .map(|s| NewEntry {
                store: s.clone(),
                op: JournalOp::Put,
                etag: rec.etag.clone(),
                size: rec.size,
                staging: Some(id.clone()),
                state: if writers.iter().any(|(d, _)| d == s) { EntryState::Uploading } else { EntryState::Pending },
            })
            .collect();
        let node = self.inner.journal.node().to_owned();
        let check = |current: Option<&ObjectRecord>| cond.check(current);
        let w = JournalWrite { node: &node, entries, upload, check: &check };
        let Journaled { entries, seqs, old } = match self.inner.catalog.put_object_journaled(&rec, w).await {
            Ok(j) => j,
            Err(e) => {
                self.inner.journal.remove(&id).await;
                return Err(abort_all(writers, e).await);
            }
        };
        self.invalidate_hot(&rec.bucket, &rec.key, Some(&rec), old.is_some());
        drop(guard);
        // A store with older unfinished entries of this key (on any node) has this write
        // queued behind them: its writer commits only once the entry's turn has come.
        let commits = writers.into_iter().map(|(s, w)| {
            let i = place.stores.iter().position(|p| *p == s).unwrap_or(0);
            let (seq, now) = (seqs[i], entries[i].state == EntryState::Uploading);
            async move {
                let r = if now { Some(w.commit().await) } else { self.commit_in_turn(seq, w).await };
                (s, r)
            }
        });
        let results = futures::future::join_all(commits).await;
        let mut durable = 0;
        for (store, r) in results {
            let Some(r) = r else { continue };
            let i = place.stores.iter().position(|s| *s == store).unwrap_or(0);
            let entry = self.entry_of(&rec, &entries[i], seqs[i], &node);
            if self.settle_inline(entry, r).await {
                durable += 1;
                rec.behind.retain(|s| *s != store);
            }
        }
        if rec.behind.is_empty() {
            rec.staging = None;
        } else {
            self.copy_to_peers(&id).await?;
        }
        self.acknowledge(place, durable, "put")?;
        Ok(rec)
    }

    /// Commits the writer of queued entry `seq` once no earlier entry of its key and store
    /// is unfinished (another node's inline write, usually): `Some` with the outcome when
    /// it was applied here, `None` when it was left to the uploader (the wait passed
    /// [`QUEUE_WAIT`], or the uploader claimed the entry first).
    async fn commit_in_turn(&self, seq: i64, w: Box<dyn ObjectWriter>) -> Option<Result<()>> {
        let c = &self.inner.catalog;
        let deadline = tokio::time::Instant::now() + QUEUE_WAIT;
        let mut pause = Duration::from_millis(5);
        let turn = loop {
            match c.journal_turn(seq).await {
                Ok(Some(true)) => break true,
                Ok(Some(false)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                _ => break false,
            }
        };
        if turn && c.journal_claim(seq).await.unwrap_or(false) {
            return Some(w.commit().await);
        }
        super::abort_quietly(w).await;
        None
    }

    /// Before a write is acknowledged from the journal: copies its staging file `id` to
    /// `journal.peer_copies` peers, so that losing this node loses nothing
    /// (`docs/design/cluster.md`). A write that cannot get its copies is answered 503; it
    /// is journaled all the same.
    async fn copy_to_peers(&self, id: &str) -> Result<()> {
        let (n, Some(peers)) = (self.inner.peer_copies, self.inner.peers.get()) else { return Ok(()) };
        if n == 0 {
            return Ok(());
        }
        let journal = &self.inner.journal;
        let open = move || journal.open_staged(id, None).boxed();
        match peers.send_staged(id, &open, n).await {
            // Every store took it meanwhile: no copy is needed.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Through mode: whether enough stores hold the write, else the journal's answer.
    fn acknowledge(&self, place: &BucketPlan, durable: usize, op: &'static str) -> Result<()> {
        let ack = if place.write_mode == WriteMode::Back {
            "journal"
        } else if durable >= place.min_durable {
            "stores"
        } else if place.strict {
            "refused"
        } else {
            "journal"
        };
        ::metrics::counter!("strata_writes_total", "op" => op, "ack" => ack).increment(1);
        if ack == "refused" {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("only {durable} of {} required stores took the write (strict)", place.min_durable),
            ));
        }
        Ok(())
    }

    fn entry_of(&self, rec: &ObjectRecord, e: &NewEntry, seq: i64, node: &str) -> crate::catalog::JournalEntry {
        crate::catalog::JournalEntry {
            seq,
            node: node.to_owned(),
            bucket: rec.bucket.clone(),
            key: rec.key.clone(),
            store: e.store.clone(),
            op: e.op,
            etag: e.etag.clone(),
            size: e.size,
            staging: e.staging.clone(),
            state: e.state,
            attempts: 0,
            last_error: None,
            next_ms: 0,
            created_ms: 0,
        }
    }

    /// Records the outcome of an inline store call for its entry; returns whether the store
    /// now holds the write.
    async fn settle_inline(&self, entry: crate::catalog::JournalEntry, r: Result<()>) -> bool {
        let c = &self.inner.catalog;
        match r {
            Ok(()) => {
                // Closed in a batch shared with concurrent writes (`journal/closer.rs`).
                self.inner.closer.close(entry).await;
                true
            }
            Err(e) => {
                // A failure no retry can fix makes the entry stuck at once, in sight.
                let stuck = !e.is_retryable();
                tracing::warn!(store = %entry.store, error = %e, stuck, "an inline write failed; the journal has it");
                let _ = c.journal_failed(entry.seq, &e.to_string(), crate::clock::now_ms() + 1000, stuck).await;
                false
            }
        }
    }

    /// Deletes an object. Idempotent: deleting a missing key succeeds.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        let place = self.plan(bucket).await?;
        if validate_key(key).is_err() {
            // No such key can exist, so there is nothing to delete.
            return Ok(());
        }
        self.writable()?;
        let path = place.path_of(key);
        let guard = self.inner.locks.write(bucket, key).await;
        // Journaled even when there is no row: bytes a store holds without one (written by
        // another program) go too, and only in the key's order, so that this delete can
        // never remove a newer write's bytes.
        let through = place.write_mode == WriteMode::Through;
        let entries = place
            .stores
            .iter()
            .map(|s| NewEntry {
                store: s.clone(),
                op: JournalOp::Delete,
                etag: String::new(),
                size: 0,
                staging: None,
                state: if through { EntryState::Uploading } else { EntryState::Pending },
            })
            .collect();
        let node = self.inner.journal.node().to_owned();
        let w = JournalWrite { node: &node, entries, upload: None, check: &|_| Ok(()) };
        let Journaled { entries, seqs, old } = self.inner.catalog.delete_object_journaled(bucket, key, w).await?;
        self.invalidate_hot(bucket, key, None, old.is_some());
        drop(guard);
        let gone = ObjectRecord { bucket: bucket.to_owned(), key: key.to_owned(), ..Default::default() };
        let mut durable = 0;
        for (i, e) in entries.iter().enumerate().filter(|(_, e)| e.state == EntryState::Uploading) {
            let r = self.backend(&e.store)?.delete(&path).await;
            if self.settle_inline(self.entry_of(&gone, e, seqs[i], &node), r).await {
                durable += 1;
            }
        }
        self.acknowledge(&place, durable, "delete")
    }
}

async fn abort_all(writers: Vec<(String, Box<dyn ObjectWriter>)>, e: Error) -> Error {
    for (_, w) in writers {
        super::abort_quietly(w).await;
    }
    e
}
