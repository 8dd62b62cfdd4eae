//! This node among the others that share the catalog: its registration and heartbeat
//! lease (the [`Heartbeat`] worker), the cluster's view for operators ([`status`]: each
//! node, whether its lease holds, its journal backlog), and [`Peers`] (`peers.rs`), the
//! client of the other nodes' peer endpoints.
//!
//! Nodes coordinate only through the catalog (`docs/design/cluster.md`): the order of a
//! key's writes is the catalog's (`catalog/writes.rs`), and this registry says who is up.
//! It must not order writes or move bytes itself.

mod peers;

pub use peers::{HIT_HEADER, Peers, VersionRef};

use crate::catalog::{Catalog, NodeBacklog, NodeRecord};
use crate::error::Result;
use crate::worker::Worker;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::SeqCst};
use std::time::Duration;

/// Who this node is, as it registers.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The node id (its journal's).
    pub id: String,
    /// Where peers reach it.
    pub address: String,
    /// How long a heartbeat keeps it up.
    pub lease: Duration,
    /// How often it renews.
    pub heartbeat: Duration,
    /// When this process started (ms since the epoch).
    pub started_ms: i64,
}

/// This node's standing, shared by the heartbeat, `strata cluster leave` and the server's
/// shutdown: a node that is leaving takes no writes and keeps its lease until its journal
/// is empty; a node that has left is removed from the registry when it stops.
#[derive(Debug, Default)]
pub struct Membership {
    leaving: AtomicBool,
    left: AtomicBool,
}

impl Membership {
    /// Starts leaving (the heartbeat says `leaving` from now on).
    pub fn begin_leave(&self) {
        self.leaving.store(true, SeqCst);
    }

    /// Whether this node is leaving.
    pub fn is_leaving(&self) -> bool {
        self.leaving.load(SeqCst)
    }

    /// The journal is empty: at its stop the node deregisters instead of staying listed.
    pub fn mark_left(&self) {
        self.left.store(true, SeqCst);
    }

    /// Whether the node has left.
    pub fn has_left(&self) -> bool {
        self.left.load(SeqCst)
    }
}

/// What a node's heartbeat reports of its hot tier: the bytes in it.
pub type HotBytes = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Renews this node's lease in the catalog (with its hot tier's size and the bytes it read
/// from its peers), and publishes the cluster's gauges.
pub struct Heartbeat {
    catalog: Catalog,
    me: Identity,
    load: HotBytes,
    /// Until when this node's lease holds, as last renewed (the uploader's fence).
    lease_until: Arc<AtomicI64>,
    membership: Arc<Membership>,
}

impl Heartbeat {
    /// Registers `me` now (so a node that cannot reach its catalog does not start) and
    /// returns the worker that keeps the lease.
    pub async fn register(
        catalog: Catalog,
        me: Identity,
        (membership, load): (Arc<Membership>, HotBytes),
    ) -> Result<Heartbeat> {
        let hb = Heartbeat { catalog, me, load, lease_until: Arc::default(), membership };
        hb.renew("up").await?;
        tracing::info!(node = %hb.me.id, address = %hb.me.address, "registered in the catalog");
        Ok(hb)
    }

    /// Writes the lease in the database's clock. The fence (`lease_until`) is this node's
    /// own clock at the time the renewal was sent plus the lease: it passes no later than
    /// the lease in the catalog does, so this node stops applying entries before anyone
    /// may take them over (one more lease later).
    async fn renew(&self, state: &str) -> Result<()> {
        let sent = crate::clock::now_ms();
        let now = self.catalog.db_now_ms().await?;
        let lease = i64::try_from(self.me.lease.as_millis()).unwrap_or(i64::MAX / 2);
        let stopped = state == "stopped";
        let rec = NodeRecord {
            id: self.me.id.clone(),
            address: self.me.address.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_ms: self.me.started_ms,
            heartbeat_ms: now,
            lease_until_ms: if stopped { now } else { now + lease },
            state: state.to_owned(),
            hot_bytes: (self.load)(),
            peer_bytes: peers::peer_bytes(),
        };
        self.catalog.node_heartbeat(&rec).await?;
        self.lease_until.store(if stopped { sent } else { sent + lease }, SeqCst);
        Ok(())
    }

    /// Until when this node's lease holds, in its own clock (the fence; see `renew`).
    pub fn lease_until(&self) -> Arc<AtomicI64> {
        self.lease_until.clone()
    }
}

/// At a clean shutdown: a node that has left (`strata cluster leave`) is removed from the
/// registry; any other is marked stopped (its lease ends at once, and the row stays so that
/// its journal backlog, if any, keeps a name).
pub async fn stopped(catalog: &Catalog, me: &Identity, membership: &Membership) -> Result<()> {
    if membership.has_left() {
        catalog.node_remove(&me.id).await?;
        tracing::info!(node = %me.id, "left the cluster");
        return Ok(());
    }
    let load: HotBytes = Arc::new(|| 0);
    let hb = Heartbeat {
        catalog: catalog.clone(),
        me: me.clone(),
        load,
        lease_until: Arc::default(),
        membership: Arc::default(),
    };
    hb.renew("stopped").await
}

#[async_trait::async_trait]
impl Worker for Heartbeat {
    fn name(&self) -> &'static str {
        "cluster-heartbeat"
    }

    fn interval(&self) -> Duration {
        self.me.heartbeat
    }

    async fn tick(&mut self) -> Result<()> {
        self.renew(if self.membership.is_leaving() { "leaving" } else { "up" }).await?;
        let view = status(&self.catalog).await?;
        let now = self.catalog.db_now_ms().await?;
        let live = view.nodes.iter().filter(|n| n.live).count();
        ::metrics::gauge!("strata_cluster_nodes", "state" => "live").set(live as f64);
        ::metrics::gauge!("strata_cluster_nodes", "state" => "down").set((view.nodes.len() - live) as f64);
        for n in &view.nodes {
            let age = (now - n.node.heartbeat_ms).max(0) as f64 / 1000.0;
            ::metrics::gauge!("strata_cluster_heartbeat_age_seconds", "node" => n.node.id.clone()).set(age);
            ::metrics::gauge!("strata_cluster_node_entries", "node" => n.node.id.clone()).set(n.backlog.entries as f64);
        }
        Ok(())
    }
}

/// One node as operators see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeView {
    /// The registration.
    #[serde(flatten)]
    pub node: NodeRecord,
    /// Whether its lease holds now.
    pub live: bool,
    /// Its journal backlog.
    pub backlog: NodeBacklog,
}

/// The cluster as the catalog knows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterView {
    /// Every registered node, plus any node that has journal entries but no registration
    /// (it ran before registration existed, or was removed with work left).
    pub nodes: Vec<NodeView>,
}

/// Reads the registry and the journal's backlog per node.
pub async fn status(catalog: &Catalog) -> Result<ClusterView> {
    let now = catalog.db_now_ms().await?;
    let mut backlog = catalog.journal_by_node().await?;
    let mut nodes: Vec<NodeView> = catalog
        .nodes()
        .await?
        .into_iter()
        .map(|node| {
            let i = backlog.iter().position(|b| b.node == node.id);
            let b = i
                .map(|i| backlog.remove(i))
                .unwrap_or_else(|| NodeBacklog { node: node.id.clone(), ..Default::default() });
            NodeView { live: node.is_live(now), node, backlog: b }
        })
        .collect();
    for b in backlog {
        let node = NodeRecord {
            id: b.node.clone(),
            address: String::new(),
            version: String::new(),
            started_ms: 0,
            heartbeat_ms: 0,
            lease_until_ms: 0,
            state: "unregistered".into(),
            hot_bytes: 0,
            peer_bytes: 0,
        };
        nodes.push(NodeView { node, live: false, backlog: b });
    }
    Ok(ClusterView { nodes })
}
