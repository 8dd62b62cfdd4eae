//! The worker that drains the journal: each due entry is applied to its store, with
//! exponential backoff and jitter on failure, and never dropped without a trace.
//!
//! Entries of one key and store run in order (the catalog hands out only the first
//! unfinished one), so the last acknowledged write of a key is the last one every store
//! sees. A put whose row has since moved to another version is skipped: a later entry for
//! that key and store carries the newer state. A failure that no retry can fix (the
//! staging file is gone and no replica holds the version) makes the entry `stuck`, shown
//! by `strata replicate status` and the status page, and retried only on request. So is any
//! failure the store calls permanent (a name it can never take): no retry can fix it, and
//! retrying for ever would hide it.

use super::{Journal, write_options};
use crate::backend::{Backends, ByteStream};
use crate::catalog::{Catalog, JournalEntry, JournalOp, ObjectRecord};
use crate::error::{Error, ErrorKind, Result};
use crate::plan::{BucketPlan, Plans};
use crate::worker::Worker;
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// Entries fetched per round.
const BATCH: usize = 64;

/// Drains this node's journal.
pub struct Uploader {
    journal: Journal,
    catalog: Catalog,
    backends: Backends,
    plans: Plans,
    /// First and longest retry delay.
    pub retry: (Duration, Duration),
    /// Entries applied at once.
    pub uploads: usize,
    /// This node's part in a cluster; `None` drains only its own entries.
    pub cluster: Option<ClusterRole>,
    /// How often one waiting entry per store is tried early, to notice a store that has
    /// come back (see [`Uploader::probe`]).
    pub probe_every: Duration,
    gauges_at: Option<Instant>,
    probed_at: Option<Instant>,
    /// Entries applied or failed whose outcome the catalog did not take (it was busy or
    /// away): still `uploading`, which no claim takes. Each tick returns them to `pending`,
    /// so they run again now rather than at the next start.
    unsettled: std::sync::Mutex<Vec<i64>>,
}

/// What lets an uploader act for the cluster (`docs/design/cluster.md`, "Node loss").
#[derive(Debug, Clone)]
pub struct ClusterRole {
    /// Until when this node's own lease holds, in this node's clock (ms since the epoch):
    /// when its last successful renewal was sent, plus the lease. Past it the uploader
    /// applies nothing: another node may be taking its entries over, and two appliers of
    /// one entry could reorder a key's writes.
    pub lease_until: Arc<AtomicI64>,
    /// How long after another node's lease ended this node takes over that node's entries
    /// that need nothing from its disk: one more lease, so a node cut off from the catalog
    /// has stopped applying (above) well before.
    pub grace: Duration,
}

impl Uploader {
    /// A drainer for `journal`, writing where `plans` say.
    pub fn new(journal: Journal, catalog: Catalog, backends: Backends, plans: Plans) -> Self {
        let retry = (Duration::from_secs(1), Duration::from_secs(300));
        let probe_every = Duration::from_secs(5);
        Self {
            journal,
            catalog,
            backends,
            plans,
            retry,
            uploads: 4,
            cluster: None,
            probe_every,
            gauges_at: None,
            probed_at: None,
            unsettled: std::sync::Mutex::default(),
        }
    }

    /// Applies every entry that is due now, this node's and those it takes over from dead
    /// nodes; returns how many were attempted.
    pub async fn drain_once(&self) -> Result<usize> {
        let now = crate::clock::now_ms();
        if let Some(role) = &self.cluster
            && role.lease_until.load(SeqCst) < now
        {
            tracing::warn!("this node's lease has passed (no heartbeat reached the catalog): applying nothing");
            return Ok(0);
        }
        let own = self.drain_own().await?;
        Ok(own + self.take_over_once().await?)
    }

    /// Takes over and applies the entries of dead nodes that need nothing from their disks.
    async fn take_over_once(&self) -> Result<usize> {
        let Some(role) = &self.cluster else { return Ok(0) };
        let grace = i64::try_from(role.grace.as_millis()).unwrap_or(i64::MAX / 2);
        let expired_before = self.catalog.db_now_ms().await? - grace;
        let orphans = self.catalog.journal_orphans(self.journal.node(), expired_before, BATCH).await?;
        let mut taken = 0;
        for e in orphans {
            if !self.catalog.journal_take_over(e.seq, self.journal.node(), expired_before).await? {
                continue;
            }
            tracing::info!(seq = e.seq, from = %e.node, bucket = %e.bucket, key = %e.key, store = %e.store,
                "journal: taking over an entry of a node that is down");
            ::metrics::counter!("strata_journal_takeovers_total").increment(1);
            let e = JournalEntry { node: self.journal.node().to_owned(), ..e };
            self.settle(&e).await;
            taken += 1;
        }
        Ok(taken)
    }

    async fn drain_own(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let batch = self.catalog.journal_ready(self.journal.node(), crate::clock::now_ms(), BATCH).await?;
            if batch.is_empty() {
                return Ok(total);
            }
            total += batch.len();
            // Finishing an entry makes the next one of its key and store ready, so go on
            // until nothing is due; failed entries wait for their backoff, so this ends.
            futures::stream::iter(batch).for_each_concurrent(self.uploads, |e| self.apply(e)).await;
        }
    }

    async fn apply(&self, e: JournalEntry) {
        match self.catalog.journal_claim(e.seq).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => {
                tracing::warn!(error = %err, "journal: cannot claim an entry");
                return;
            }
        }
        self.settle(&e).await;
    }

    /// Applies a claimed entry and records the outcome.
    async fn settle(&self, e: &JournalEntry) {
        let e = e.clone();
        let outcome = self.run(&e).await;
        let res = match outcome {
            Ok(()) => self.finish(&e).await,
            Err(err) => self.fail(&e, &err).await,
        };
        if let Err(err) = res {
            // Applying it again is harmless (every store step allows it); leaving it
            // `uploading` would hold its key's later writes back until a restart.
            tracing::warn!(seq = e.seq, error = %err, "journal: cannot record an entry's outcome; it runs again");
            self.unsettled.lock().unwrap_or_else(|p| p.into_inner()).push(e.seq);
        }
    }

    /// Returns the entries whose outcome was not recorded to `pending`; those the catalog
    /// still refuses wait for the next tick.
    async fn resettle(&self) -> Result<()> {
        let seqs = std::mem::take(&mut *self.unsettled.lock().unwrap_or_else(|p| p.into_inner()));
        let mut left = Vec::new();
        let mut first_err = None;
        for seq in seqs {
            if let Err(err) = self.catalog.journal_unclaim(seq).await {
                left.push(seq);
                first_err.get_or_insert(err);
            }
        }
        self.unsettled.lock().unwrap_or_else(|p| p.into_inner()).extend(left);
        first_err.map_or(Ok(()), Err)
    }

    async fn finish(&self, e: &JournalEntry) -> Result<()> {
        ::metrics::counter!("strata_journal_uploads_total", "result" => "ok").increment(1);
        if e.attempts > 0 {
            // The store failed this entry before and takes it now: it is back, so its
            // other waiting entries need not sit out their backoff.
            let n = self.catalog.journal_store_back(e.node.as_str(), &e.store, crate::clock::now_ms()).await?;
            if n > 0 {
                tracing::info!(store = %e.store, entries = n, "journal: a store took a write again; its backlog is due now");
            }
        }
        if self.catalog.journal_done(e).await?
            && let Some(s) = &e.staging
        {
            self.journal.remove(s).await;
        }
        Ok(())
    }

    async fn fail(&self, e: &JournalEntry, err: &Error) -> Result<()> {
        let stuck = !err.is_retryable();
        let result = if stuck { "stuck" } else { "retry" };
        ::metrics::counter!("strata_journal_uploads_total", "result" => result).increment(1);
        tracing::warn!(seq = e.seq, bucket = %e.bucket, key = %e.key, store = %e.store, attempts = e.attempts + 1,
            error = %err, "journal: applying an entry failed");
        crate::telemetry::record_error("journal", &format!("{} {}/{}: {err}", e.store, e.bucket, e.key));
        let next = crate::clock::now_ms() + backoff(self.retry, e.attempts);
        self.catalog.journal_failed(e.seq, &err.to_string(), next, stuck).await
    }

    /// Applies one entry to its store.
    async fn run(&self, e: &JournalEntry) -> Result<()> {
        let b = self.catalog.get_bucket(&e.bucket).await?.ok_or_else(|| stuck("the bucket is gone"))?;
        let plan = self.plans.of(&b);
        let path = plan.path_of(&e.key);
        let store = self.backends.get(&e.store).ok_or_else(|| stuck("the store is no longer configured"))?;
        if e.op == JournalOp::Delete {
            return store.delete(&path).await;
        }
        // The committed row, not a cached one: a stale row could make this put look
        // superseded and end its entry without writing.
        let Some(row) = self.catalog.get_object_fresh(&e.bucket, &e.key).await? else { return Ok(()) };
        let current = match &e.staging {
            Some(s) => row.staging.as_deref() == Some(s.as_str()),
            None => row.etag == e.etag,
        };
        if !current {
            return Ok(());
        }
        let body = self.source(e, &row, &plan, &path).await?;
        let mut w = store.writer(&path, &write_options(&row.headers, &row.user_meta)).await?;
        match copy(body, w.as_mut()).await {
            Ok(n) if n == row.size => w.commit().await,
            Ok(n) => {
                let _ = w.abort().await;
                Err(Error::new(ErrorKind::Unavailable, format!("source gave {n} of {} bytes", row.size)))
            }
            Err(err) => {
                let _ = w.abort().await;
                Err(err)
            }
        }
    }

    /// The bytes of the version `row` names: the staging file, else a replica that holds it.
    async fn source(&self, e: &JournalEntry, row: &ObjectRecord, plan: &BucketPlan, path: &str) -> Result<ByteStream> {
        if let Some(s) = &e.staging {
            match self.journal.open_staged(s, None).await {
                Ok(body) => return Ok(body),
                Err(err) if err.kind() == ErrorKind::NotFound => {
                    tracing::error!(file = %s, "journal: a staged version is missing; trying a replica");
                }
                Err(err) => return Err(err),
            }
        }
        let mut last = None;
        for st in plan.stores.iter().filter(|s| **s != e.store && !row.behind.contains(s)) {
            let Some(b) = self.backends.get(st) else { continue };
            match b.read(path, None).await {
                Ok(s) => return Ok(s),
                Err(err) => last = Some(err),
            }
        }
        match last {
            Some(err) => Err(err),
            None => Err(stuck("no staging file and no replica holds this version")),
        }
    }

    /// Removes the copies of other nodes' staging files that no entry needs any more.
    async fn remove_unused_copies(&self) -> Result<()> {
        let me = self.journal.node();
        for id in self.catalog.staging_copies_unused(me).await? {
            self.journal.remove(&id).await;
            self.catalog.staging_copy_remove(&id, me).await?;
        }
        Ok(())
    }

    /// Every `probe_every`, makes one waiting entry per store due now. A store that was
    /// down leaves its entries backed off by up to `retry_max` (five minutes by default);
    /// without a probe the backlog would wait that long after the store returns. One
    /// attempt per store and interval costs a failing store almost nothing, and the first
    /// success makes the rest due ([`Uploader::finish`]).
    async fn probe(&mut self) -> Result<()> {
        if self.probed_at.is_some_and(|t| t.elapsed() < self.probe_every) {
            return Ok(());
        }
        self.probed_at = Some(Instant::now());
        self.catalog.journal_probe(self.journal.node(), crate::clock::now_ms()).await?;
        Ok(())
    }

    async fn publish_gauges(&mut self) -> Result<()> {
        if self.gauges_at.is_some_and(|t| t.elapsed() < Duration::from_secs(2)) {
            return Ok(());
        }
        self.gauges_at = Some(Instant::now());
        if self.cluster.is_some() {
            self.remove_unused_copies().await?;
        }
        ::metrics::gauge!("strata_journal_bytes").set(self.journal.used() as f64);
        let lag = self.catalog.journal_lag().await?;
        let now = crate::clock::now_ms();
        let mut entries = 0;
        for name in self.backends.names() {
            let l = lag.iter().find(|l| l.store == name);
            entries += l.map_or(0, |l| l.entries);
            let age = l.and_then(|l| l.oldest_ms).map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
            ::metrics::gauge!("strata_replication_pending", "backend" => name.to_owned())
                .set(l.map_or(0, |l| l.entries) as f64);
            ::metrics::gauge!("strata_replication_lag_seconds", "backend" => name.to_owned()).set(age);
            ::metrics::gauge!("strata_journal_stuck", "backend" => name.to_owned())
                .set(l.map_or(0, |l| l.stuck) as f64);
        }
        ::metrics::gauge!("strata_journal_entries").set(entries as f64);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Worker for Uploader {
    fn name(&self) -> &'static str {
        "journal-uploader"
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(200)
    }

    async fn tick(&mut self) -> Result<()> {
        self.resettle().await?;
        self.probe().await?;
        self.drain_once().await?;
        self.publish_gauges().await
    }
}

const STUCK: &str = "stuck: ";

fn stuck(why: &str) -> Error {
    Error::new(ErrorKind::Internal, format!("{STUCK}{why}"))
}

/// The delay before attempt `attempts + 1`: doubling from `min`, capped at `max`, with up
/// to 50% jitter so entries that failed together do not retry together.
fn backoff((min, max): (Duration, Duration), attempts: u32) -> i64 {
    let base = min.saturating_mul(1u32 << attempts.min(20)).min(max);
    let ms = i64::try_from(base.as_millis()).unwrap_or(i64::MAX / 2);
    // 75% to 125% of the base.
    let jitter = rand::random::<u64>() % (u64::try_from(ms / 2).unwrap_or(0) + 1);
    ms * 3 / 4 + i64::try_from(jitter).unwrap_or(0)
}

async fn copy(mut body: ByteStream, w: &mut dyn crate::backend::ObjectWriter) -> Result<u64> {
    let mut n = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        n += chunk.len() as u64;
        w.write(chunk).await?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let r = (Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..100 {
            let first = backoff(r, 0);
            assert!((75..=150).contains(&first), "{first}");
            let later = backoff(r, 3);
            assert!((600..=1250).contains(&later), "{later}");
            let capped = backoff(r, 30);
            assert!((750..=1500).contains(&capped), "{capped}");
        }
    }
}
