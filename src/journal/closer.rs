//! Closes the journal entries of inline writes (applied to their stores during the
//! request), in batches: a group commit. The closes of all writes finishing at about the same time share one
//! catalog transaction (with SQLite, one fsync) instead of one each; every request still
//! waits for its own close, so when a write is acknowledged its row no longer names
//! the stores that hold it as behind.
//!
//! Should a close be lost (a crash before its commit), the entry is `uploading` at the
//! next start, returns to `pending` and is applied again, which every store step allows.

use super::Journal;
use crate::catalog::{Catalog, JournalEntry};
use tokio::sync::{mpsc, oneshot};

/// Entries closed per transaction, at most.
const BATCH: usize = 256;

enum Msg {
    Close(Box<JournalEntry>, oneshot::Sender<()>),
    Flush(oneshot::Sender<()>),
}

/// The handle requests send finished entries to.
#[derive(Clone)]
pub struct Closer {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Closer {
    /// Starts the closing task (it ends when every handle is dropped).
    pub fn spawn(catalog: Catalog, journal: Journal) -> Closer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, catalog, journal));
        Closer { tx }
    }

    /// Closes `e`, whose store now holds its write, in the next batch; returns once that
    /// batch committed (or failed, leaving the entry to the uploader).
    pub async fn close(&self, e: JournalEntry) {
        let (tx, rx) = oneshot::channel();
        // A closed channel means shutdown: the entry then runs again at the next start.
        if self.tx.send(Msg::Close(Box::new(e), tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Waits until every entry queued before this call is closed (shutdown, tests).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Msg>, catalog: Catalog, journal: Journal) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut waiters = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                Msg::Close(e, w) => {
                    batch.push(*e);
                    waiters.push(w);
                }
                Msg::Flush(w) => waiters.push(w),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            close_batch(&catalog, &journal, &batch).await;
            batch.clear();
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

async fn close_batch(catalog: &Catalog, journal: &Journal, batch: &[JournalEntry]) {
    match catalog.journal_done_many(batch).await {
        Ok(free) => {
            for (e, free) in batch.iter().zip(free) {
                if free && let Some(s) = &e.staging {
                    journal.remove(s).await;
                }
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, entries = batch.len(), "cannot close journal entries; they will run again");
            for e in batch {
                let _ = catalog.journal_failed(e.seq, &err.to_string(), crate::clock::now_ms(), false).await;
            }
        }
    }
}
