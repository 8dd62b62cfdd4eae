//! `Peers`: the client of the other nodes' peer endpoints (`api::peer`): versions staged
//! on them, copies of this node's staged versions, and ranges through their hot tiers,
//! with the owner of each hot chunk chosen by rendezvous hashing over the live nodes.
//! Requests carry HTTP Basic auth with the cluster's S3 keys, which every node shares.

use crate::backend::ByteStream;
use crate::catalog::{Catalog, NodeRecord};
use crate::error::{Error, ErrorKind, Result};
use futures::StreamExt;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Streams a staged version of this node's from its start (the journal's `open_staged`,
/// which this layer cannot name).
pub type StagedOpener<'a> = dyn Fn() -> futures::future::BoxFuture<'a, Result<ByteStream>> + Send + Sync + 'a;

/// Bytes this process has read from other nodes' hot tiers (its heartbeat reports them).
static PEER_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Bytes this process has read from other nodes' hot tiers.
pub fn peer_bytes() -> u64 {
    PEER_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

/// How long the list of live nodes is reused before the registry is read again.
const NODES_TTL: Duration = Duration::from_secs(1);

/// One object version, as a peer names it (the hot tier's `Version`, which this module
/// cannot name).
#[derive(Debug, Clone, Copy)]
pub struct VersionRef<'a> {
    /// Bucket.
    pub bucket: &'a str,
    /// Key.
    pub key: &'a str,
    /// ETag.
    pub etag: &'a str,
    /// Modification time (ms).
    pub mtime_ms: i64,
    /// Size in bytes.
    pub size: u64,
    /// The version's 128-bit name (the hot tier's).
    pub hash: u128,
}

/// The other nodes, as this node reaches them.
#[derive(Clone)]
pub struct Peers {
    catalog: Catalog,
    http: reqwest::Client,
    /// `http` or `https`, as this node's own listener speaks.
    scheme: &'static str,
    keys: (String, String),
    me: String,
    /// The live nodes, and when they were read.
    live: Arc<Mutex<(Option<Instant>, Vec<NodeRecord>)>>,
    /// Owners that failed a hot read, and until when they are skipped.
    skipped: Arc<Mutex<HashMap<String, Instant>>>,
    /// `cluster.peer_timeout`: the wait for an owner's answer to start, and for each next
    /// piece of it.
    timeout: Duration,
    /// How long a failed owner is skipped: one lease, after which the registry has
    /// dropped it if it is really down.
    skip_for: Duration,
}

impl Peers {
    /// A client for this node (`me`), authenticating with `keys` (access key, secret);
    /// `tls` when the nodes' listeners speak HTTPS, and `(peer_timeout, lease)`.
    pub fn new(
        catalog: Catalog,
        me: &str,
        keys: (String, String),
        (tls, (timeout, skip_for)): (bool, (Duration, Duration)),
    ) -> Result<Peers> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::internal("peer client", e))?;
        let scheme = if tls { "https" } else { "http" };
        Ok(Peers {
            catalog,
            http,
            scheme,
            keys,
            me: me.to_owned(),
            live: Arc::default(),
            skipped: Arc::default(),
            timeout,
            skip_for,
        })
    }

    /// Streams `range` of staged version `id` from the node whose journal holds it, or,
    /// when that node cannot serve, from a live node that holds a copy of it
    /// (`journal.peer_copies`). `NotFound` when no node holds it any more (it moved to the
    /// stores: read the row again), or when it is this node's; `Unavailable` naming the
    /// owner when no holder can serve.
    pub async fn read_staged(&self, id: &str, range: Option<Range<u64>>) -> Result<ByteStream> {
        let gone = || Error::new(ErrorKind::NotFound, "the staged version moved to the stores");
        let Some(owner) = self.catalog.staging_node(id).await? else { return Err(gone()) };
        if owner == self.me {
            return Err(gone());
        }
        let now = self.catalog.db_now_ms().await?;
        let nodes = self.catalog.nodes().await?;
        let mut holders = vec![owner.clone()];
        holders.extend(self.catalog.staging_copy_nodes(id).await?.into_iter().filter(|n| *n != owner && *n != self.me));
        let mut why = "is not registered";
        let mut missing = 0;
        for holder in &holders {
            let Some(peer) = nodes.iter().find(|n| n.id == *holder) else { continue };
            if !peer.is_live(now) {
                why = "is down (its lease has passed)";
                continue;
            }
            match self.fetch(peer, id, range.clone()).await {
                Ok(Some(stream)) => {
                    ::metrics::counter!("strata_peer_reads_total", "result" => "ok").increment(1);
                    return Ok(stream);
                }
                Ok(None) => missing += 1,
                Err(()) => why = "does not answer",
            }
        }
        if missing == holders.len() {
            return Err(gone());
        }
        ::metrics::counter!("strata_peer_reads_total", "result" => "unavailable").increment(1);
        tracing::warn!(node = %owner, staging = %id, why, "a version is staged on another node that cannot serve it");
        // `why` goes to clients too: no addresses or third-party messages in it.
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("this version is staged on node {owner}, which {why}; retry later"),
        )
        .public())
    }

    /// One peer read: `Ok(None)` when the peer no longer has the file, `Err` when it did
    /// not answer well (logged here).
    async fn fetch(
        &self,
        peer: &NodeRecord,
        id: &str,
        range: Option<Range<u64>>,
    ) -> std::result::Result<Option<ByteStream>, ()> {
        let mut url = format!("{}://{}/_strata/peer/staged/{id}", self.scheme, peer.address);
        if let Some(r) = range {
            url.push_str(&format!("?from={}&to={}", r.start, r.end));
        }
        let resp = match self.http.get(&url).basic_auth(&self.keys.0, Some(&self.keys.1)).send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(node = %peer.id, error = %e, "peer read failed");
                return Err(());
            }
        };
        match resp.status() {
            s if s.is_success() => {}
            reqwest::StatusCode::NOT_FOUND => return Ok(None),
            s => {
                tracing::warn!(node = %peer.id, status = %s, "peer read refused");
                return Err(());
            }
        }
        let node = peer.id.clone();
        Ok(Some(
            resp.bytes_stream()
                .map(move |r| {
                    r.map_err(|e| Error::new(ErrorKind::Unavailable, format!("reading from node {node}: {e}")))
                })
                .boxed(),
        ))
    }

    /// Copies staged version `id` (this node's; `open` streams it, once per peer) to `n`
    /// live peers and records each copy in the catalog (`journal.peer_copies`).
    /// `Unavailable` when fewer than `n` peers took it; `NotFound` when it is gone (every
    /// store holds the version).
    pub async fn send_staged(&self, id: &str, open: &StagedOpener<'_>, n: usize) -> Result<()> {
        let mut peers: Vec<NodeRecord> = self.live_nodes().await?.into_iter().filter(|p| p.id != self.me).collect();
        // Spread copies over the peers rather than always loading the first.
        rand::seq::SliceRandom::shuffle(peers.as_mut_slice(), &mut rand::thread_rng());
        let mut sent = 0;
        for p in peers {
            if sent == n {
                break;
            }
            let body = reqwest::Body::wrap_stream(open().await?);
            let url = format!("{}://{}/_strata/peer/staged/{id}", self.scheme, p.address);
            let put = self.http.put(&url).basic_auth(&self.keys.0, Some(&self.keys.1)).body(body).send().await;
            match put {
                Ok(r) if r.status().is_success() => {
                    self.catalog.staging_copy_add(id, &p.id).await?;
                    sent += 1;
                }
                Ok(r) => tracing::warn!(node = %p.id, status = %r.status(), "a peer refused a staging copy"),
                Err(e) => tracing::warn!(node = %p.id, error = %e, "a peer did not take a staging copy"),
            }
        }
        ::metrics::counter!("strata_peer_copies_total").increment(sent as u64);
        if sent < n {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("only {sent} of journal.peer_copies = {n} peers took a copy of this write"),
            )
            .public());
        }
        Ok(())
    }

    /// The live nodes (this one included), read from the registry at most once a second.
    async fn live_nodes(&self) -> Result<Vec<NodeRecord>> {
        {
            let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            if live.0.is_some_and(|at| at.elapsed() < NODES_TTL) {
                return Ok(live.1.clone());
            }
        }
        let now = self.catalog.db_now_ms().await?;
        let nodes: Vec<NodeRecord> = self.catalog.nodes().await?.into_iter().filter(|n| n.is_live(now)).collect();
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = (Some(Instant::now()), nodes.clone());
        Ok(nodes)
    }

    /// The owner of chunk `idx` of version `hash` among `nodes`: the highest rendezvous
    /// score. When a node joins or leaves, only the chunks it wins or won change owner.
    fn owner(nodes: &[NodeRecord], hash: u128, idx: u64) -> Option<&NodeRecord> {
        use sha2::{Digest, Sha256};
        let score = |id: &str| {
            let d = Sha256::new()
                .chain_update(hash.to_le_bytes())
                .chain_update(idx.to_le_bytes())
                .chain_update(id)
                .finalize();
            u64::from_le_bytes(d[..8].try_into().unwrap_or([0; 8]))
        };
        nodes.iter().max_by_key(|n| (score(&n.id), n.id.clone()))
    }

    /// The live nodes that may own chunks now: those not skipped after a failure.
    async fn owners(&self) -> Option<Vec<NodeRecord>> {
        let mut nodes = match self.live_nodes().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the node registry; reading the chunk here");
                return None;
            }
        };
        let mut skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
        skipped.retain(|_, until| *until > Instant::now());
        nodes.retain(|n| !skipped.contains_key(&n.id));
        Some(nodes)
    }

    /// Whether this node owns chunk `idx` of version `hash` (what `warm` fills here).
    pub async fn owns(&self, hash: u128, idx: u64) -> bool {
        let Some(nodes) = self.owners().await else { return true };
        Self::owner(&nodes, hash, idx).is_none_or(|o| o.id == self.me)
    }

    /// The wait for an owner's answer to start, and for each next piece of it.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Skips node `id` as an owner for one lease: its chunks go to the next owner by
    /// rendezvous order (often this node), so one dead node costs each reader one failed
    /// attempt, not one per request.
    pub fn skip(&self, id: &str, why: &str) {
        ::metrics::counter!("strata_peer_hot_reads_total", "result" => "failed").increment(1);
        tracing::warn!(node = %id, why, "the owner of a hot chunk did not serve it; reading it here");
        let until = Instant::now() + self.skip_for;
        self.skipped.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), until);
    }

    /// Range `piece` of chunk `idx` of `v` through the hot tier of the node that owns the
    /// chunk, with the owner's id. `None` when this node owns it, or when the owner failed
    /// before its answer started (it is then skipped): the caller reads it through its
    /// own hot tier, in the same request. A failure later in the stream is the caller's to
    /// recover from ([`Peers::skip`]).
    pub async fn read_hot(&self, v: &VersionRef<'_>, idx: u64, piece: Range<u64>) -> Option<(String, ByteStream)> {
        let nodes = self.owners().await?;
        let owner = Self::owner(&nodes, v.hash, idx)?;
        if owner.id == self.me {
            return None;
        }
        let started = Instant::now();
        let url = format!("{}://{}/_strata/peer/hot", self.scheme, owner.address);
        let (mtime, size, from, to) =
            (v.mtime_ms.to_string(), v.size.to_string(), piece.start.to_string(), piece.end.to_string());
        let query = [
            ("bucket", v.bucket),
            ("key", v.key),
            ("etag", v.etag),
            ("mtime", &mtime),
            ("size", &size),
            ("from", &from),
            ("to", &to),
        ];
        let req = self.http.get(&url).query(&query).basic_auth(&self.keys.0, Some(&self.keys.1));
        let resp = match tokio::time::timeout(self.timeout, req.send()).await {
            Ok(Ok(r)) if r.status().is_success() => r,
            // The owner's catalog names another version (a write this node has not seen
            // yet, or an older row there): not the owner's fault; read it here.
            Ok(Ok(r)) if r.status() == reqwest::StatusCode::NOT_FOUND => return None,
            Ok(Ok(r)) => return self.skip_none(&owner.id, &format!("answered {}", r.status())),
            Ok(Err(e)) => return self.skip_none(&owner.id, &e.to_string()),
            Err(_) => return self.skip_none(&owner.id, "did not answer within cluster.peer_timeout"),
        };
        let hit = resp.headers().get(HIT_HEADER).is_some_and(|h| h.as_bytes() == b"hit");
        ::metrics::histogram!("strata_peer_hot_seconds").record(started.elapsed().as_secs_f64());
        let result = if hit { "hit" } else { "miss" };
        ::metrics::counter!("strata_peer_hot_reads_total", "result" => result).increment(1);
        if hit {
            // Without the shared tier this node would have read the chunk from the cold
            // store (it does not hold it: it asked its owner).
            ::metrics::counter!("strata_peer_cold_gets_saved_total").increment(1);
        }
        let node = owner.id.clone();
        let stream = resp
            .bytes_stream()
            .map(move |r| match r {
                Ok(b) => {
                    ::metrics::counter!("strata_peer_hot_bytes_total").increment(b.len() as u64);
                    PEER_BYTES.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    Ok(b)
                }
                Err(e) => Err(Error::new(ErrorKind::Unavailable, format!("reading a hot chunk from node {node}: {e}"))),
            })
            .boxed();
        Some((owner.id.clone(), stream))
    }

    fn skip_none<T>(&self, id: &str, why: &str) -> Option<T> {
        self.skip(id, why);
        None
    }
}

/// The header an owner answers a hot read with: `hit` when it held every chunk, `miss`
/// when it filled one.
pub const HIT_HEADER: &str = "x-strata-hot";

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeRecord {
        NodeRecord {
            id: id.into(),
            address: String::new(),
            version: String::new(),
            started_ms: 0,
            heartbeat_ms: 0,
            lease_until_ms: 0,
            state: "up".into(),
            hot_bytes: 0,
            peer_bytes: 0,
        }
    }

    /// Issue 16: over 10,000 chunks, a joining node takes within 2 points of 1/N of them
    /// (N counting it), all from the others, and the rest stay where they were; a node
    /// that leaves (or whose lease passes) gives up only its own, within 2 points of 1/N.
    #[test]
    fn membership_changes_move_about_one_nth_of_the_chunks() {
        let ids = |n: usize| -> Vec<NodeRecord> { (0..n).map(|i| node(&format!("node-{i}"))).collect() };
        let chunks: Vec<(u128, u64)> =
            (0..10_000u64).map(|i| (u128::from(i / 7).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060), i % 7)).collect();
        for n in [3usize, 4, 8] {
            let (before, after) = (ids(n), ids(n + 1));
            let joined = format!("node-{n}");
            let mut moved = 0;
            let mut per_node = HashMap::<String, u32>::new();
            for &(h, i) in &chunks {
                let (was, now) = (Peers::owner(&before, h, i).unwrap(), Peers::owner(&after, h, i).unwrap());
                *per_node.entry(was.id.clone()).or_default() += 1;
                if was.id != now.id {
                    moved += 1;
                    assert_eq!(now.id, joined, "a chunk moved to a node that did not join");
                }
            }
            let share = f64::from(moved) / chunks.len() as f64;
            let ideal = 1.0 / (n + 1) as f64;
            assert!((share - ideal).abs() <= 0.02, "join {n}->{}: moved {share:.3}, ideal {ideal:.3}", n + 1);
            // Before the join, each of the n nodes owned within 2 points of 1/n.
            let even = per_node.values().all(|c| (f64::from(*c) / chunks.len() as f64 - 1.0 / n as f64).abs() <= 0.02);
            assert!(even, "{n} nodes share evenly: {per_node:?}");
        }
        // A node of four whose lease passes: only its chunks change owner.
        let four = ids(4);
        let three: Vec<NodeRecord> = four.iter().filter(|n| n.id != "node-2").cloned().collect();
        let mut moved = 0;
        for &(h, i) in &chunks {
            let (was, now) = (Peers::owner(&four, h, i).unwrap(), Peers::owner(&three, h, i).unwrap());
            if was.id != now.id {
                assert_eq!(was.id, "node-2", "only the departed node's chunks move");
                moved += 1;
            }
        }
        let share = f64::from(moved) / chunks.len() as f64;
        assert!((share - 0.25).abs() <= 0.02, "leave 4->3: moved {share:.3}");
    }
}
