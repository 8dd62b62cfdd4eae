//! The `[journal]` and `[failover]` sections and the per-bucket write settings: how
//! acknowledged writes are kept until every cold store holds them, and when a store is
//! treated as down.

use super::{ByteSize, HumanDuration};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// When a PUT or DELETE is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WriteMode {
    /// Once `min_durable` stores hold the object; when they fail or time out, once it is
    /// fsynced in the local journal (unless `strict`).
    #[default]
    Through,
    /// Once it is fsynced in the local journal; the stores are written in the background.
    Back,
}

/// The local journal of writes that some cold store does not hold yet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Directory of staged object bytes. Default "<data_dir>/journal".
    pub dir: Option<PathBuf>,
    /// Most bytes staged at once; beyond it writes get 503 SlowDown. Every write is
    /// staged, so it must be at least `limits.max_object_size`. Default "10GiB".
    pub max_size: ByteSize,
    /// Free space the journal leaves on its filesystem; below it writes get 503 SlowDown.
    /// Default "1GiB".
    pub min_free: ByteSize,
    /// Longest wait for one step of a write to a cold store (open, a body piece, commit)
    /// before the write falls back to the journal. Default "30s".
    pub store_timeout: HumanDuration,
    /// First retry delay of a failed background upload; it doubles per attempt, with
    /// jitter. Default "1s".
    pub retry_min: HumanDuration,
    /// Longest retry delay. Default "5m".
    pub retry_max: HumanDuration,
    /// Background uploads run at once. Default 4.
    pub uploads: usize,
    /// Time between two scrubs that look for objects missing from a replica (only buckets
    /// with several `stores`). "0s" turns the scrub off. Default "24h".
    pub scrub_interval: HumanDuration,
    /// With several nodes on one PostgreSQL catalog: other nodes that receive a copy of a
    /// write's staged bytes before it is acknowledged from the journal (a store lacks it),
    /// so that losing this node for good during a store outage loses nothing. A write
    /// that cannot get its copies is answered 503 (it is journaled and still reaches the
    /// stores). Default 0.
    pub peer_copies: usize,
    /// Bodies up to this size are kept in memory while they arrive and then appended to a
    /// shared segment file, many writes per fsync (`docs/design/journal.md`, "Segments");
    /// larger ones get a staging file of their own. "0B" gives every write its own file.
    /// Default "256KiB"; at most "16MiB".
    pub segment_threshold: ByteSize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            dir: None,
            max_size: ByteSize(10 << 30),
            min_free: ByteSize(1 << 30),
            store_timeout: HumanDuration(Duration::from_secs(30)),
            retry_min: HumanDuration(Duration::from_secs(1)),
            retry_max: HumanDuration(Duration::from_secs(300)),
            uploads: 4,
            scrub_interval: HumanDuration(Duration::from_secs(24 * 3600)),
            segment_threshold: ByteSize(256 << 10),
            peer_copies: 0,
        }
    }
}

/// When reads leave a cold store for the next replica.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailoverConfig {
    /// Longest wait for a store's first byte (or a stat or delete) before the call counts
    /// as failed and a read moves to the next replica. Default "10s".
    pub latency_budget: HumanDuration,
    /// Failed calls in a row that mark a store down. Default 3.
    pub failures: u32,
    /// How long a store stays down before one probe call is let through. Default "5s".
    pub cooldown: HumanDuration,
    /// `Retry-After` sent with a 503 when no store can serve a read, in seconds. Default 5.
    pub retry_after: u32,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            latency_budget: HumanDuration(Duration::from_secs(10)),
            failures: 3,
            cooldown: HumanDuration(Duration::from_secs(5)),
            retry_after: 5,
        }
    }
}

/// Several nodes on one PostgreSQL catalog (`docs/design/cluster.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Where the other nodes reach this one (`host:port`). Default: the main listener's
    /// address.
    pub advertise: Option<String>,
    /// How often this node renews its lease in the catalog. Default "2s".
    pub heartbeat: HumanDuration,
    /// How long a node counts as up after its last heartbeat. Default "10s"; at least
    /// twice `heartbeat`.
    pub lease: HumanDuration,
    /// The longest a row another node changed stays in this node's row cache (PostgreSQL
    /// catalogs; the change feed). Default "1s"; between "10ms" and "10s".
    pub invalidation_lag: HumanDuration,
    /// One hot tier across the nodes: each chunk has an owner among the live nodes, which
    /// fills it once from the cold store; the others read it through the owner. Needs a
    /// PostgreSQL catalog. Default false.
    pub shared_hot: bool,
    /// With `shared_hot`: memory for whole chunks this node read through their owners, so
    /// a popular object does not send every read to its owner. "0" turns it off. Default
    /// "64MiB".
    pub near_cache: ByteSize,
    /// How long a node waits for another node to start answering a peer request, and for
    /// each next piece of its answer, before it skips that node (for one lease) and reads
    /// the bytes itself. Default "2s"; between "100ms" and "60s".
    pub peer_timeout: HumanDuration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            advertise: None,
            heartbeat: HumanDuration(Duration::from_secs(2)),
            lease: HumanDuration(Duration::from_secs(10)),
            invalidation_lag: HumanDuration(Duration::from_secs(1)),
            shared_hot: false,
            near_cache: ByteSize(64 << 20),
            peer_timeout: HumanDuration(Duration::from_secs(2)),
        }
    }
}
