//! Replicas of buckets with several stores: the scrub that finds objects a store lacks and
//! queues their repair, and the lag report behind `strata replicate status`.
//!
//! Writes reach every store through the journal, so the catalog already knows which stores
//! are behind on which objects. The scrub covers what the catalog cannot know: a store
//! that lost objects (a wiped disk, a bucket emptied by hand). It stats every object of a
//! replicated bucket in every store that should hold it, and for each one missing (or of
//! the wrong size) marks the row behind there and adds a journal entry that copies it from
//! a replica that has it. The uploader does the copying. This module must not write to a
//! store itself.

use crate::backend::Backends;
use crate::catalog::{Catalog, ObjectRecord, StoreLag};
use crate::error::Result;
use crate::plan::{BucketPlan, Plans};
use crate::worker::Worker;
use futures::StreamExt;
use std::time::Duration;

/// Objects checked at once.
const CONCURRENCY: usize = 16;

/// What one scrub found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ScrubReport {
    /// Objects looked at.
    pub objects: u64,
    /// (object, store) pairs checked.
    pub checked: u64,
    /// Copies found missing or wrong and queued for repair.
    pub queued: u64,
    /// Checks skipped because the store did not answer.
    pub unreachable: u64,
}

/// Finds objects missing from a replica.
#[derive(Clone)]
pub struct Scrub {
    catalog: Catalog,
    backends: Backends,
    plans: Plans,
    node: String,
    interval: Duration,
    armed: bool,
}

impl Scrub {
    /// A scrub of the replicated buckets in `plans`; repairs are queued on `node`.
    pub fn new(catalog: Catalog, backends: Backends, plans: Plans, node: &str, interval: Duration) -> Self {
        Self { catalog, backends, plans, node: node.to_owned(), interval, armed: false }
    }

    /// Checks every object of every replicated bucket once.
    pub async fn run(&self) -> Result<ScrubReport> {
        let mut report = ScrubReport::default();
        for configured in self.plans.replicated() {
            let bucket = configured.name.as_str();
            let Some(b) = self.catalog.get_bucket(bucket).await? else { continue };
            let plan = self.plans.of(&b);
            let mut after = String::new();
            loop {
                let page = self.catalog.scan_objects(bucket, "", &after, 500).await?;
                let Some(last) = page.last() else { break };
                after = last.key.clone();
                report.objects += page.len() as u64;
                let mut checks = Vec::new();
                for r in page.into_iter().filter(|r| r.staging.is_none()) {
                    let r = std::sync::Arc::new(r);
                    for s in plan.stores.iter().filter(|s| !r.behind.contains(s)) {
                        checks.push((r.clone(), s.clone()));
                    }
                }
                let results: Vec<Result<Option<bool>>> = futures::stream::iter(checks)
                    .map(|(r, s)| {
                        let (me, plan) = (self.clone(), plan.clone());
                        async move { me.check(&plan, &r, &s).await }
                    })
                    .buffer_unordered(CONCURRENCY)
                    .collect()
                    .await;
                for r in results {
                    report.checked += 1;
                    match r? {
                        Some(true) => report.queued += 1,
                        Some(false) => {}
                        None => report.unreachable += 1,
                    }
                }
            }
        }
        if report.queued > 0 {
            tracing::info!(queued = report.queued, "scrub queued repairs of missing replicas");
        }
        ::metrics::counter!("strata_scrub_repairs_total").increment(report.queued);
        Ok(report)
    }

    /// `Some(true)` when `store` lacks `rec` and a repair was queued, `None` when the store
    /// did not answer.
    async fn check(&self, plan: &BucketPlan, rec: &ObjectRecord, store: &str) -> Result<Option<bool>> {
        let Some(backend) = self.backends.get(store) else { return Ok(Some(false)) };
        let path = plan.path_of(&rec.key);
        match backend.stat(&path).await {
            Ok(Some(st)) if st.size == rec.size => Ok(Some(false)),
            Ok(_) => Ok(Some(self.catalog.journal_repair(rec, store, &self.node).await?)),
            Err(e) => {
                tracing::debug!(store, error = %e, "scrub: store did not answer");
                Ok(None)
            }
        }
    }
}

#[async_trait::async_trait]
impl Worker for Scrub {
    fn name(&self) -> &'static str {
        "scrub"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn tick(&mut self) -> Result<()> {
        // The supervisor ticks once at start; a scrub waits one interval instead, so a
        // restart does not stat every object again.
        if !self.armed {
            self.armed = true;
            return Ok(());
        }
        self.run().await.map(|_| ())
    }
}

/// What every store still has to receive, and what is stuck: the one report behind the
/// admin API, the status page and `strata replicate status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Backlog {
    /// Each configured store's lag (stores with no backlog included).
    pub stores: Vec<StoreLag>,
    /// Stuck journal entries, oldest first (up to 50).
    pub stuck: Vec<Stuck>,
    /// Nodes that are down with entries left: their writes wait for them (their staging
    /// files are on their disks), shown as "waiting for node X".
    pub waiting: Vec<crate::catalog::NodeBacklog>,
}

/// A stuck journal entry, as an operator sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stuck {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// The store it did not reach.
    pub store: String,
    /// Tries so far.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When the write was journaled (ms since the epoch).
    pub since_ms: i64,
}

/// The backlog of `stores`, read from the catalog.
pub async fn backlog(catalog: &Catalog, stores: impl Iterator<Item = String>) -> Result<Backlog> {
    let found = catalog.journal_lag().await?;
    let stores = stores
        .map(|s| found.iter().find(|l| l.store == s).cloned().unwrap_or(StoreLag { store: s, ..Default::default() }))
        .collect();
    let stuck = catalog
        .journal_stuck(50)
        .await?
        .into_iter()
        .map(|e| Stuck {
            bucket: e.bucket,
            key: e.key,
            store: e.store,
            attempts: e.attempts,
            last_error: e.last_error,
            since_ms: e.created_ms,
        })
        .collect();
    let now = catalog.db_now_ms().await?;
    let nodes = catalog.nodes().await?;
    let live = |id: &str| nodes.iter().any(|n| n.id == id && n.is_live(now));
    let waiting = catalog.journal_by_node().await?.into_iter().filter(|b| !live(&b.node)).collect();
    Ok(Backlog { stores, stuck, waiting })
}
