//! Where a read's bytes come from: the staging file while a version is journaled, else the
//! first store that holds the version and answers within its budget.
//!
//! Stores listed in a row's `behind` are skipped (they hold an older version or none).
//! Stores whose circuit breaker is open are tried last, and fail at once. A store that
//! errors or misses its latency budget hands the read to the next one within the same
//! request, so the client sees an error only when no replica can serve.

use super::Tier;
use crate::backend::ByteStream;
use crate::catalog::ObjectRecord;
use crate::error::{Error, ErrorKind, Result};
use crate::plan::BucketPlan;
use futures::StreamExt;
use std::ops::Range;

impl Tier {
    /// Streams `range` of `rec` from the first replica that can serve it.
    pub(super) async fn read_replicas(
        &self,
        b: &BucketPlan,
        rec: &ObjectRecord,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream> {
        let path = b.path_of(&rec.key);
        let order = self.replica_order(b, rec);
        let mut last = None;
        for (i, store) in order.iter().enumerate() {
            match self.backend(store)?.read(&path, range.clone()).await {
                Ok(s) => {
                    if i > 0 {
                        ::metrics::counter!("strata_failover_reads_total", "backend" => (*store).clone()).increment(1);
                    }
                    return Ok(s);
                }
                Err(e) => {
                    tracing::debug!(store = %store, error = %e, "read failed; trying the next replica");
                    last = Some(e);
                }
            }
        }
        Err(match last {
            Some(e) if e.kind() == ErrorKind::NotFound && order.len() == 1 => e,
            Some(e) => Error::new(ErrorKind::Unavailable, format!("no store can serve this object now: {e}")),
            None => Error::new(ErrorKind::Unavailable, "no store holds this version yet and its staging file is gone"),
        })
    }

    /// [`Tier::read_replicas`], holding the stream until its first chunk has come and
    /// `rec` is still the key's row ([`Tier::still_current`]): from then on the version
    /// being read is fixed (an open file, an HTTP response).
    pub(super) async fn read_fixed(
        &self,
        b: &BucketPlan,
        rec: &ObjectRecord,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream> {
        let mut s = self.read_replicas(b, rec, range).await?;
        let first = s.next().await;
        self.still_current(rec).await?;
        Ok(futures::stream::iter(first).chain(s).boxed())
    }

    /// The stores that hold `rec`'s version, healthy ones first; a down one is still
    /// tried last (its breaker may let a probe through).
    pub(super) fn replica_order(&self, b: &BucketPlan, rec: &ObjectRecord) -> Vec<String> {
        let backends = &self.inner.backends;
        let mut order: Vec<String> = b.stores.iter().filter(|s| !rec.behind.contains(s)).cloned().collect();
        order.sort_by_key(|s| !backends.is_up(s));
        order
    }

    /// Streams `range` of `rec`, the version staged as `id`: from this node's staging
    /// file, else (the file moved to the stores, or is another node's) from a store that
    /// holds it. `NotFound` when neither can: read the row again.
    pub(super) async fn read_staged_or_stored(
        &self,
        b: &BucketPlan,
        rec: &ObjectRecord,
        id: &str,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream> {
        match self.read_staged(id, range.clone()).await {
            Err(e) if e.kind() == ErrorKind::NotFound && !self.replica_order(b, rec).is_empty() => {
                self.read_fixed(b, rec, range).await
            }
            Err(e) if e.kind() == ErrorKind::NotFound => match self.inner.peers.get() {
                // The file is another node's: read it there (a staging file never changes).
                Some(peers) => peers.read_staged(id, range).await,
                None => Err(e),
            },
            other => other,
        }
    }

    /// Keeps a copy of another node's staged version `id` (`journal.peer_copies`).
    pub async fn receive_staged_copy(&self, id: &str, body: ByteStream) -> Result<u64> {
        self.inner.journal.receive(id, body).await
    }

    /// Lets reads fetch versions staged on other nodes through `peers` (set once).
    pub fn connect_peers(&self, peers: crate::cluster::Peers) {
        let _ = self.inner.peers.set(peers);
    }

    /// The error for a version that only another node's staging file holds (no store has
    /// it yet): 503, naming that node.
    pub(super) async fn staged_elsewhere(&self, rec: &ObjectRecord) -> Error {
        let id = rec.staging.as_deref().unwrap_or_default();
        let node = self.inner.catalog.staging_node(id).await.ok().flatten().unwrap_or_else(|| "unknown".into());
        tracing::warn!(bucket = %rec.bucket, key = %rec.key, node = %node, "a version is staged on another node and no store holds it yet");
        Error::new(
            ErrorKind::Unavailable,
            format!("this version is staged on node {node} and no store holds it yet; retry later"),
        )
        .public()
    }

    /// Streams `range` of this node's staged version `id` (also for a peer's read);
    /// `NotFound` once the file is gone (every store holds the version by then: read the
    /// row again).
    pub async fn read_staged(&self, id: &str, range: Option<Range<u64>>) -> Result<ByteStream> {
        self.inner.journal.open_staged(id, range).await
    }
}
