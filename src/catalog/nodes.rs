//! The `nodes` table: every strata process that shares this catalog, with its heartbeat
//! lease; the journal's backlog per node; and `staging_copies`, the staging files other
//! nodes hold copies of (`journal.peer_copies`). This file owns only the SQL; the heartbeat
//! itself is `crate::cluster`'s.

use super::{Catalog, col, db_err};
use crate::error::Result;

/// One node as registered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeRecord {
    /// The node id (kept in its journal directory).
    pub id: String,
    /// Where its peers reach it (`host:port`).
    pub address: String,
    /// Its strata version.
    pub version: String,
    /// When it started (ms since the epoch).
    pub started_ms: i64,
    /// Its last heartbeat.
    pub heartbeat_ms: i64,
    /// It counts as up until then.
    pub lease_until_ms: i64,
    /// `up`, `leaving` or `stopped`.
    pub state: String,
    /// Bytes in its hot tier, at its last heartbeat.
    pub hot_bytes: u64,
    /// Bytes it has read from other nodes' hot tiers since it started.
    pub peer_bytes: u64,
}

/// One node's share of the journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeBacklog {
    /// The node id.
    pub node: String,
    /// Its unfinished entries.
    pub entries: u64,
    /// Bytes they still move.
    pub bytes: u64,
    /// Those that failed for good.
    pub stuck: u64,
}

const NODE_COLS: &str = "id, address, version, started_ms, heartbeat_ms, lease_until_ms, state, hot_bytes, peer_bytes";

impl NodeRecord {
    fn from_row(r: &sqlx::any::AnyRow) -> Result<Self> {
        Ok(Self {
            id: col(r, "id")?,
            address: col(r, "address")?,
            version: col(r, "version")?,
            started_ms: col(r, "started_ms")?,
            heartbeat_ms: col(r, "heartbeat_ms")?,
            lease_until_ms: col(r, "lease_until_ms")?,
            state: col(r, "state")?,
            hot_bytes: u64::try_from(col::<i64>(r, "hot_bytes")?).unwrap_or(0),
            peer_bytes: u64::try_from(col::<i64>(r, "peer_bytes")?).unwrap_or(0),
        })
    }

    /// Whether the node held its lease at `now_ms` and was not stopped.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.state != "stopped" && self.lease_until_ms > now_ms
    }
}

impl Catalog {
    /// The database's clock, in milliseconds since the epoch: leases are written and
    /// compared in it, so the nodes' own clocks need not agree.
    pub async fn db_now_ms(&self) -> Result<i64> {
        let sql = if self.shared {
            "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) AS now"
        } else {
            "SELECT CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) AS now"
        };
        let row = sqlx::query(sql).fetch_one(&self.pool).await.map_err(db_err("clock"))?;
        col(&row, "now")
    }

    /// Registers `n` or renews its lease (idempotent: the row is replaced).
    pub async fn node_heartbeat(&self, n: &NodeRecord) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO nodes ({NODE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO UPDATE SET \
             address = excluded.address, version = excluded.version, started_ms = excluded.started_ms, \
             heartbeat_ms = excluded.heartbeat_ms, lease_until_ms = excluded.lease_until_ms, state = excluded.state, \
             hot_bytes = excluded.hot_bytes, peer_bytes = excluded.peer_bytes"
        ))
        .bind(&n.id)
        .bind(&n.address)
        .bind(&n.version)
        .bind(n.started_ms)
        .bind(n.heartbeat_ms)
        .bind(n.lease_until_ms)
        .bind(&n.state)
        .bind(i64::try_from(n.hot_bytes).unwrap_or(i64::MAX))
        .bind(i64::try_from(n.peer_bytes).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(db_err("node heartbeat"))?;
        Ok(())
    }

    /// Every registered node, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let rows = sqlx::query(&format!("SELECT {NODE_COLS} FROM nodes ORDER BY id"))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("nodes"))?;
        rows.iter().map(NodeRecord::from_row).collect()
    }

    /// Removes node `id` from the registry; returns whether it was there.
    pub async fn node_remove(&self, id: &str) -> Result<bool> {
        let res = sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err("node remove"))?;
        Ok(res.rows_affected() > 0)
    }

    /// The journal's backlog per node that has one, by node.
    pub async fn journal_by_node(&self) -> Result<Vec<NodeBacklog>> {
        let rows = sqlx::query(
            "SELECT node, COUNT(*) AS n, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes, \
             CAST(SUM(CASE WHEN state = 'stuck' THEN 1 ELSE 0 END) AS BIGINT) AS stuck FROM journal GROUP BY node ORDER BY node",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("journal by node"))?;
        let n = |r: &sqlx::any::AnyRow, c: &str| col::<i64>(r, c).map(|v| u64::try_from(v).unwrap_or(0));
        rows.iter()
            .map(|r| {
                Ok(NodeBacklog {
                    node: col(r, "node")?,
                    entries: n(r, "n")?,
                    bytes: n(r, "bytes")?,
                    stuck: n(r, "stuck")?,
                })
            })
            .collect()
    }

    /// Records that `node` holds a copy of staging file `staging` (idempotent).
    pub async fn staging_copy_add(&self, staging: &str, node: &str) -> Result<()> {
        sqlx::query("INSERT INTO staging_copies (staging, node) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(staging)
            .bind(node)
            .execute(&self.pool)
            .await
            .map_err(db_err("staging copy"))?;
        Ok(())
    }

    /// The nodes that hold a copy of staging file `staging`.
    pub async fn staging_copy_nodes(&self, staging: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT node FROM staging_copies WHERE staging = $1 ORDER BY node")
            .bind(staging)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("staging copies"))?;
        rows.iter().map(|r| col(r, "node")).collect()
    }

    /// The copies `node` holds that no journal entry needs any more.
    pub async fn staging_copies_unused(&self, node: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT staging FROM staging_copies c WHERE node = $1 \
             AND NOT EXISTS (SELECT 1 FROM journal j WHERE j.staging = c.staging)",
        )
        .bind(node)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("unused staging copies"))?;
        rows.iter().map(|r| col(r, "staging")).collect()
    }

    /// Forgets `node`'s copy of `staging` (its file is removed).
    pub async fn staging_copy_remove(&self, staging: &str, node: &str) -> Result<()> {
        sqlx::query("DELETE FROM staging_copies WHERE staging = $1 AND node = $2")
            .bind(staging)
            .bind(node)
            .execute(&self.pool)
            .await
            .map_err(db_err("staging copy remove"))?;
        Ok(())
    }
}
