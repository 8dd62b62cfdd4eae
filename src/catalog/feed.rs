//! The change feed of a catalog: how a change made on one node (or, on a SQLite file, by
//! another process such as `strata import`) reaches the row caches of the others within
//! `cluster.invalidation_lag`, and what lets those caches keep rows past their TTL.
//!
//! Every change of an object or bucket row adds a row to `changes` in its own transaction
//! (triggers: PostgreSQL's migration 0007, SQLite's 0010) and, on PostgreSQL, a NOTIFY on
//! `strata_changes`. The [`ChangeFeed`] worker polls the log (the truth) and listens for
//! the NOTIFY (a hint, so a missed one costs at most one poll), and forgets every cached
//! row named there. Sequence numbers are handed
//! out before commit, so a change may become visible after a later one: numbers skipped
//! over are kept as gaps and looked for again until they appear or are older than
//! [`GAP_WAIT`] (their transaction rolled back). It must not cache rows itself.

use super::{Catalog, col, db_err};
use crate::error::Result;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a skipped sequence number is looked for (longer than any catalog transaction).
const GAP_WAIT: Duration = Duration::from_secs(30);
/// Gaps kept at most (the oldest go first).
const MAX_GAPS: usize = 4096;
/// Changes read per poll.
const BATCH: i64 = 10_000;
/// Changes older than this are pruned (every node's cache has long forgotten them).
const KEEP_MS: i64 = 120_000;

/// Forgets cached rows that other nodes changed.
pub struct ChangeFeed {
    catalog: Catalog,
    url: String,
    lag: Duration,
    last: i64,
    gaps: BTreeMap<i64, Instant>,
    listener: Option<sqlx::postgres::PgListener>,
    pruned: Instant,
}

impl ChangeFeed {
    /// A feed for `catalog` (at `url`), starting after the newest change now.
    pub async fn start(catalog: Catalog, url: &str, lag: Duration) -> Result<ChangeFeed> {
        let row = sqlx::query("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) AS last FROM changes")
            .fetch_one(&catalog.pool)
            .await
            .map_err(db_err("change feed"))?;
        let last = col(&row, "last")?;
        let catalog_is_shared = catalog.is_shared();
        let mut feed = ChangeFeed {
            catalog,
            url: url.to_owned(),
            lag,
            last,
            gaps: BTreeMap::new(),
            listener: None,
            pruned: Instant::now(),
        };
        // SQLite has no NOTIFY: its feed polls only.
        if catalog_is_shared {
            feed.listen().await;
        }
        Ok(feed)
    }

    async fn listen(&mut self) {
        let l = async {
            let mut l = sqlx::postgres::PgListener::connect(&self.url).await?;
            l.listen("strata_changes").await?;
            Ok::<_, sqlx::Error>(l)
        };
        match l.await {
            Ok(l) => self.listener = Some(l),
            Err(e) => tracing::warn!(error = %e, "cannot LISTEN for catalog changes; polling only"),
        }
    }

    /// Reads the changes after the last one seen, and the gaps; forgets their rows.
    /// Returns how many it read.
    pub async fn poll(&mut self) -> Result<usize> {
        let began = Instant::now();
        let gaps: Vec<String> = self.gaps.keys().map(i64::to_string).collect();
        let also = if gaps.is_empty() { String::new() } else { format!(" OR seq IN ({})", gaps.join(",")) };
        let rows = sqlx::query(&format!(
            "SELECT seq, bucket, key FROM changes WHERE seq > $1{also} ORDER BY seq LIMIT {BATCH}"
        ))
        .bind(self.last)
        .fetch_all(&self.catalog.pool)
        .await
        .map_err(db_err("change feed"))?;
        let now = Instant::now();
        let mut changed = Vec::with_capacity(rows.len());
        for r in &rows {
            let seq: i64 = col(r, "seq")?;
            if seq > self.last {
                // Numbers skipped over may belong to transactions that commit later.
                for g in (self.last + 1..seq).take(MAX_GAPS) {
                    self.gaps.insert(g, now);
                }
                self.last = seq;
            } else {
                self.gaps.remove(&seq);
            }
            changed.push((col::<String>(r, "bucket")?, col::<Option<String>>(r, "key")?));
        }
        self.gaps.retain(|_, at| at.elapsed() < GAP_WAIT);
        while self.gaps.len() > MAX_GAPS {
            self.gaps.pop_first();
        }
        self.catalog.forget_cached(&changed);
        // Only a complete read of the log lets the cache trust its rows longer.
        if rows.len() < BATCH as usize {
            self.catalog.feed_polled(began);
        }
        Ok(rows.len())
    }

    /// Waits up to half the lag for a NOTIFY (or just sleeps without a listener).
    async fn wait(&mut self) {
        let half = self.lag / 2;
        let Some(l) = self.listener.as_mut() else {
            tokio::time::sleep(half).await;
            return;
        };
        match tokio::time::timeout(half, l.try_recv()).await {
            Err(_) | Ok(Ok(Some(_))) => {}
            // The connection dropped (the next call reconnects) or failed: poll meanwhile.
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "LISTEN for catalog changes failed; reconnecting");
                self.listener = None;
                self.listen().await;
            }
        }
    }

    async fn prune(&mut self) -> Result<()> {
        if self.pruned.elapsed() < Duration::from_secs(30) {
            return Ok(());
        }
        self.pruned = Instant::now();
        sqlx::query("DELETE FROM changes WHERE at_ms < $1")
            .bind(crate::clock::now_ms() - KEEP_MS)
            .execute(&self.catalog.pool)
            .await
            .map_err(db_err("change feed prune"))?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::worker::Worker for ChangeFeed {
    fn name(&self) -> &'static str {
        "catalog-change-feed"
    }

    fn interval(&self) -> Duration {
        Duration::ZERO
    }

    /// One poll, then a wait for the next NOTIFY of at most half the lag: a change is
    /// forgotten here at most one lag after it committed.
    async fn tick(&mut self) -> Result<()> {
        let polled = self.poll().await.map(|_| ());
        let pruned = self.prune().await;
        // Waits even after a failure, so a catalog that is down is not polled in a loop.
        self.wait().await;
        polled.and(pruned)
    }
}
