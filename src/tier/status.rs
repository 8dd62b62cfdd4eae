//! What the tier tells operators about itself, and the operator controls it takes: the
//! catalog ping, the journal's backlog, the bucket list, the hot tier's counters and
//! controls, the on-demand scrub, and closing at shutdown.
//!
//! These are the tier's narrow doors: callers get answers, never the catalog, the stores
//! or the journal themselves.

use super::Tier;
use crate::catalog::BucketRecord;
use crate::error::{Error, ErrorKind, Result};
use crate::replication::{Backlog, Scrub, ScrubReport};
use crate::tier::hot::HotStats;
use std::time::Duration;

/// Longest wait for the catalog to answer a ping.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The journal's state on this node and the backlog of every store.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JournalStatus {
    /// Writes are refused (maintenance).
    pub read_only: bool,
    /// Bytes in this node's staging files.
    pub staged_bytes: u64,
    /// `journal.max_size`.
    pub max_size: u64,
    /// Every store's lag, and the stuck entries.
    #[serde(flatten)]
    pub backlog: Backlog,
}

impl Tier {
    /// Whether the catalog answers within 2 s; the error says why not.
    pub async fn ping(&self) -> std::result::Result<(), String> {
        match tokio::time::timeout(PING_TIMEOUT, self.inner.catalog.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("catalog ping timed out after {}s", PING_TIMEOUT.as_secs())),
        }
    }

    /// The journal's state and every configured store's backlog.
    pub async fn journal_status(&self) -> Result<JournalStatus> {
        let backlog = crate::replication::backlog(&self.inner.catalog, self.store_names().into_iter()).await?;
        let j = &self.inner.journal;
        Ok(JournalStatus { read_only: self.is_read_only(), staged_bytes: j.used(), max_size: j.max_size(), backlog })
    }

    /// Returns this node's stuck journal entries to `pending`; how many.
    pub async fn retry_stuck(&self) -> Result<u64> {
        self.inner.catalog.journal_recover(self.inner.journal.node(), true).await
    }

    /// The replay at a server's start (see `Journal::recover`). Only the server calls it.
    pub async fn recover_journal(&self) -> Result<()> {
        self.inner.journal.recover(&self.inner.catalog).await
    }

    /// The uploader that drains this node's journal into the stores.
    pub fn uploader(&self) -> crate::journal::Uploader {
        let i = &self.inner;
        crate::journal::Uploader::new(i.journal.clone(), i.catalog.clone(), i.backends.clone(), i.plans.clone())
    }

    /// A scrub of the replicated buckets that runs every `interval` as a worker, or once
    /// with [`Scrub::run`]. Repairs are queued on this node.
    pub fn scrub(&self, interval: Duration) -> Scrub {
        let i = &self.inner;
        Scrub::new(i.catalog.clone(), i.backends.clone(), i.plans.clone(), i.journal.node(), interval)
    }

    /// Runs a scrub now and reports what it found.
    pub async fn scrub_now(&self) -> Result<ScrubReport> {
        self.scrub(Duration::ZERO).run().await
    }

    /// Every bucket, by name.
    pub async fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        self.inner.catalog.list_buckets().await
    }

    /// The nodes that share the catalog, their leases and journal backlogs.
    pub async fn cluster_status(&self) -> Result<crate::cluster::ClusterView> {
        crate::cluster::status(&self.inner.catalog).await
    }

    /// This node's unfinished journal entries.
    pub async fn own_entries(&self) -> Result<u64> {
        let me = self.node_id();
        Ok(self.inner.catalog.journal_by_node().await?.into_iter().find(|b| b.node == me).map_or(0, |b| b.entries))
    }

    /// This node's id (its journal's; names its entries and its registration).
    pub fn node_id(&self) -> &str {
        self.inner.journal.node()
    }

    /// Takes new hot tier bounds (`hot.max_size`, `hot.min_free`; a config reload).
    pub fn set_hot_limits(&self, max_size: u64, min_free: u64) {
        if let Some(h) = &self.inner.hot {
            h.set_limits(max_size, min_free);
        }
    }

    /// Takes new journal bounds (`journal.max_size`, `journal.min_free`; a config reload).
    pub fn set_journal_limits(&self, max_size: u64, min_free: u64) {
        self.inner.journal.set_limits(max_size, min_free);
    }

    /// Whether hot chunks are owned across the nodes (`cluster.shared_hot`, peers known):
    /// this node then warms and holds only its share.
    pub fn shares_hot(&self) -> bool {
        self.inner.shared_hot && self.inner.peers.get().is_some()
    }

    /// The names of the configured stores.
    pub fn store_names(&self) -> Vec<String> {
        self.inner.backends.names()
    }

    /// The hot tier's counters, when it is on.
    pub fn cache_stats(&self) -> Option<HotStats> {
        self.hot().map(|h| h.stats())
    }

    /// The hot tier's miss log, when it is on.
    pub fn miss_log(&self) -> Option<&std::path::Path> {
        self.hot().map(|h| h.miss_log())
    }

    /// The hot tier, or why an operator control cannot run.
    fn hot_or_conflict(&self) -> Result<&super::hot::Hot> {
        self.hot().ok_or_else(|| Error::new(ErrorKind::Conflict, "the hot tier is disabled (hot.enabled = false)"))
    }

    /// Drops the hot copies under `bucket`/`prefix`: (chunks, bytes) removed.
    pub fn cache_evict(&self, bucket: &str, prefix: &str) -> Result<(u64, u64)> {
        Ok(self.hot_or_conflict()?.evict_prefix(bucket, prefix))
    }

    /// Keeps `bucket`/`prefix` out of eviction.
    pub fn cache_pin(&self, bucket: &str, prefix: &str) -> Result<()> {
        self.hot_or_conflict()?.pin(bucket, prefix)
    }

    /// Lets `bucket`/`prefix` be evicted again; whether it was pinned.
    pub fn cache_unpin(&self, bucket: &str, prefix: &str) -> Result<bool> {
        self.hot_or_conflict()?.unpin(bucket, prefix)
    }

    /// Waits for pending journal closes, then closes the catalog (the end of a shutdown).
    pub async fn close(&self) {
        self.flush_journal().await;
        self.inner.catalog.close().await;
    }
}
