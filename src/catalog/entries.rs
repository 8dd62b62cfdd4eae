//! Journal entries (the `journal` table): one per (write, store) that the store does not
//! hold yet. Named `entries` so that "journal" means one thing: `crate::journal`, which
//! owns the staging files and the uploader.
//!
//! Entries of one key and store are applied in `seq` order; [`Catalog::journal_ready`]
//! never hands out an entry while an earlier one of its key and store is unfinished. Rows
//! and entries change together in one transaction, so a crash leaves either both or
//! neither. This file owns only the SQL.

use super::{Catalog, ObjectRecord, col, db_err, to_i64};
use crate::error::{Error, ErrorKind, Result};
use sqlx::any::AnyRow;

/// What an entry does to its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalOp {
    /// Write the version `etag` (from the staging file, or copied from a replica when the
    /// entry names no staging file).
    Put,
    /// Remove the key.
    Delete,
}

/// Where an entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Waiting for its turn (`next_ms`).
    Pending,
    /// Being applied now, by a request or the uploader.
    Uploading,
    /// Failed permanently; shown to the operator, retried only on request.
    Stuck,
}

impl EntryState {
    fn as_str(self) -> &'static str {
        match self {
            EntryState::Pending => "pending",
            EntryState::Uploading => "uploading",
            EntryState::Stuck => "stuck",
        }
    }
}

/// An entry to add.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// The store it targets.
    pub store: String,
    /// Put or delete.
    pub op: JournalOp,
    /// The version a put writes ("" for a delete).
    pub etag: String,
    /// Bytes a put moves.
    pub size: u64,
    /// The staging file of a put; `None` copies from a replica.
    pub staging: Option<String>,
    /// `Uploading` when the caller applies it at once, else `Pending`.
    pub state: EntryState,
}

/// An entry as stored.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    /// Order of application per key and store.
    pub seq: i64,
    /// The node whose journal directory holds the staging file.
    pub node: String,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Target store.
    pub store: String,
    /// Put or delete.
    pub op: JournalOp,
    /// Version of a put.
    pub etag: String,
    /// Bytes of a put.
    pub size: u64,
    /// Staging file of a put, if any.
    pub staging: Option<String>,
    /// State.
    pub state: EntryState,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Not retried before this time (ms since the epoch).
    pub next_ms: i64,
    /// When the write was journaled.
    pub created_ms: i64,
}

/// The backlog of one store.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoreLag {
    /// Store name.
    pub store: String,
    /// Unfinished entries.
    pub entries: u64,
    /// Bytes those entries still have to move.
    pub bytes: u64,
    /// Entries that failed permanently.
    pub stuck: u64,
    /// Creation time of the oldest unfinished entry (ms since the epoch).
    pub oldest_ms: Option<i64>,
    /// The most recent failure message.
    pub last_error: Option<String>,
}

impl StoreLag {
    /// The age of the oldest unfinished entry at `now_ms`, in seconds: the replication lag
    /// (0 with no backlog).
    pub fn lag_s(&self, now_ms: i64) -> f64 {
        self.oldest_ms.map_or(0.0, |o| (now_ms - o).max(0) as f64 / 1000.0)
    }
}

const ENTRY_COLS: &str =
    "seq, node, bucket, key, store, op, etag, size, staging, state, attempts, last_error, next_ms, created_ms";

impl JournalEntry {
    fn from_row(r: &AnyRow) -> Result<Self> {
        let op = match col::<String>(r, "op")?.as_str() {
            "put" => JournalOp::Put,
            "delete" => JournalOp::Delete,
            other => return Err(Error::new(ErrorKind::Internal, format!("journal: unknown op {other:?}"))),
        };
        let state = match col::<String>(r, "state")?.as_str() {
            "pending" => EntryState::Pending,
            "uploading" => EntryState::Uploading,
            _ => EntryState::Stuck,
        };
        Ok(Self {
            seq: col(r, "seq")?,
            node: col(r, "node")?,
            bucket: col(r, "bucket")?,
            key: col(r, "key")?,
            store: col(r, "store")?,
            op,
            etag: col(r, "etag")?,
            size: u64::try_from(col::<i64>(r, "size")?).unwrap_or(0),
            staging: col(r, "staging")?,
            state,
            attempts: u32::try_from(col::<i64>(r, "attempts")?).unwrap_or(u32::MAX),
            last_error: col(r, "last_error")?,
            next_ms: col(r, "next_ms")?,
            created_ms: col(r, "created_ms")?,
        })
    }
}

/// `["a", "b"]` → `",a,b,"` (commas around every name, so one can be removed in SQL).
pub(super) fn join_stores(stores: &[String]) -> String {
    if stores.is_empty() { String::new() } else { format!(",{},", stores.join(",")) }
}

pub(super) type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

pub(super) async fn insert_entries(
    tx: &mut Tx<'_>,
    o: (&str, &str),
    node: &str,
    entries: &[NewEntry],
) -> Result<Vec<i64>> {
    let now = crate::clock::now_ms();
    let mut seqs = Vec::with_capacity(entries.len());
    for e in entries {
        let op = if e.op == JournalOp::Put { "put" } else { "delete" };
        let row = sqlx::query(
            "INSERT INTO journal (node, bucket, key, store, op, etag, size, staging, state, attempts, last_error, \
             next_ms, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, NULL, $10, $10) RETURNING seq",
        )
        .bind(node)
        .bind(o.0)
        .bind(o.1)
        .bind(&e.store)
        .bind(op)
        .bind(&e.etag)
        .bind(to_i64(e.size)?)
        .bind(e.staging.clone())
        .bind(e.state.as_str())
        .bind(now)
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err("journal insert"))?;
        seqs.push(col(&row, "seq")?);
    }
    Ok(seqs)
}

/// One entry's completion inside `tx` (see [`Catalog::journal_done`]).
async fn done_in(tx: &mut Tx<'_>, e: &JournalEntry) -> Result<bool> {
    sqlx::query("DELETE FROM journal WHERE seq = $1")
        .bind(e.seq)
        .execute(&mut **tx)
        .await
        .map_err(db_err("journal done"))?;
    if e.op == JournalOp::Put {
        // Only the version this entry wrote is now in the store.
        sqlx::query(
            "UPDATE objects SET behind = CASE WHEN REPLACE(behind, ',' || $3 || ',', ',') = ',' THEN '' \
             ELSE REPLACE(behind, ',' || $3 || ',', ',') END \
             WHERE bucket = $1 AND key = $2 AND etag = $4 AND (staging = $5 OR $5 IS NULL)",
        )
        .bind(&e.bucket)
        .bind(&e.key)
        .bind(&e.store)
        .bind(&e.etag)
        .bind(e.staging.clone())
        .execute(&mut **tx)
        .await
        .map_err(db_err("journal done: behind"))?;
    }
    let free = match &e.staging {
        None => false,
        Some(s) => {
            let used = sqlx::query("SELECT 1 FROM journal WHERE staging = $1 LIMIT 1")
                .bind(s)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db_err("journal done: staging"))?;
            if used.is_none() {
                sqlx::query("UPDATE objects SET staging = NULL WHERE bucket = $1 AND key = $2 AND staging = $3")
                    .bind(&e.bucket)
                    .bind(&e.key)
                    .bind(s)
                    .execute(&mut **tx)
                    .await
                    .map_err(db_err("journal done: clear staging"))?;
            }
            used.is_none()
        }
    };
    Ok(free)
}

impl Catalog {
    /// Stores with an unfinished entry for `bucket`/`key` (any node's).
    pub async fn journal_stores(&self, bucket: &str, key: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT store FROM journal WHERE bucket = $1 AND key = $2")
            .bind(bucket)
            .bind(key)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("journal stores"))?;
        rows.iter().map(|r| col(r, "store")).collect()
    }

    /// Up to `limit` entries of `node` due at `now_ms`, oldest first, leaving out any whose
    /// key and store have an earlier unfinished entry (so order per key and store holds).
    pub async fn journal_ready(&self, node: &str, now_ms: i64, limit: usize) -> Result<Vec<JournalEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLS} FROM journal j WHERE node = $1 AND state = 'pending' AND next_ms <= $2 \
             AND NOT EXISTS (SELECT 1 FROM journal e WHERE e.bucket = j.bucket AND e.key = j.key \
             AND e.store = j.store AND e.seq < j.seq) ORDER BY seq LIMIT $3"
        ))
        .bind(node)
        .bind(now_ms)
        .bind(to_i64(limit as u64)?)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("journal ready"))?;
        rows.iter().map(JournalEntry::from_row).collect()
    }

    /// Whether entry `seq` is first in line for its key and store (no earlier entry of
    /// either is unfinished); `None` when the entry is gone.
    pub async fn journal_turn(&self, seq: i64) -> Result<Option<bool>> {
        let row = sqlx::query(
            "SELECT CAST((SELECT COUNT(*) FROM journal e WHERE e.bucket = j.bucket AND e.key = j.key \
             AND e.store = j.store AND e.seq < j.seq) AS BIGINT) AS earlier FROM journal j WHERE j.seq = $1",
        )
        .bind(seq)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("journal turn"))?;
        row.map(|r| col::<i64>(&r, "earlier").map(|n| n == 0)).transpose()
    }

    /// The node whose journal holds staging file `id`, while an entry names it.
    pub async fn staging_node(&self, id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT node FROM journal WHERE staging = $1 LIMIT 1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("staging node"))?;
        row.map(|r| col(&r, "node")).transpose()
    }

    /// Up to `limit` entries that a node whose lease ended before `expired_before` left
    /// behind and that need nothing from its disk, oldest first, each first in line for its
    /// key and store: deletes, copies from a replica (no staging file), puts of a version
    /// the key's row no longer names (nothing to write: they only hold the line), and puts
    /// whose staging file `me` holds a copy of (`journal.peer_copies`).
    pub async fn journal_orphans(&self, me: &str, expired_before: i64, limit: usize) -> Result<Vec<JournalEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLS} FROM journal j WHERE state <> 'stuck' \
             AND node IN (SELECT id FROM nodes WHERE lease_until_ms < $1) \
             AND (op = 'delete' OR staging IS NULL OR NOT EXISTS (SELECT 1 FROM objects o \
                  WHERE o.bucket = j.bucket AND o.key = j.key AND o.staging = j.staging) \
                  OR EXISTS (SELECT 1 FROM staging_copies c WHERE c.staging = j.staging AND c.node = $3)) \
             AND NOT EXISTS (SELECT 1 FROM journal e WHERE e.bucket = j.bucket AND e.key = j.key \
                  AND e.store = j.store AND e.seq < j.seq) ORDER BY seq LIMIT $2"
        ))
        .bind(expired_before)
        .bind(to_i64(limit as u64)?)
        .bind(me)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("journal orphans"))?;
        rows.iter().map(JournalEntry::from_row).collect()
    }

    /// Makes orphan entry `seq` this node's (`me`) and `uploading`, if its node's lease
    /// still ended before `expired_before` and nobody took it first; returns whether it did.
    /// From then on the dead node's restart cannot touch it.
    pub async fn journal_take_over(&self, seq: i64, me: &str, expired_before: i64) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE journal SET node = $2, state = 'uploading' WHERE seq = $1 AND state <> 'stuck' \
             AND node IN (SELECT id FROM nodes WHERE lease_until_ms < $3)",
        )
        .bind(seq)
        .bind(me)
        .bind(expired_before)
        .execute(&self.pool)
        .await
        .map_err(db_err("journal take over"))?;
        Ok(res.rows_affected() == 1)
    }

    /// Moves a pending entry to `uploading`; false when another worker took it.
    pub async fn journal_claim(&self, seq: i64) -> Result<bool> {
        let res = sqlx::query("UPDATE journal SET state = 'uploading' WHERE seq = $1 AND state = 'pending'")
            .bind(seq)
            .execute(&self.pool)
            .await
            .map_err(db_err("journal claim"))?;
        Ok(res.rows_affected() == 1)
    }

    /// The store now holds `e`: removes the entry, takes the store off the row's `behind`
    /// when the row is still that version, and, when no entry needs the staging file any
    /// more, clears it from the row. Returns whether the staging file can be removed.
    pub async fn journal_done(&self, e: &JournalEntry) -> Result<bool> {
        Ok(self.journal_done_many(std::slice::from_ref(e)).await?.first().copied().unwrap_or(false))
    }

    /// [`Catalog::journal_done`] for several entries in one transaction (one commit, so one
    /// fsync, for many). Returns, per entry, whether its staging file can be removed.
    pub async fn journal_done_many(&self, entries: &[JournalEntry]) -> Result<Vec<bool>> {
        self.write_begins();
        let r = self.db_journal_done_many(entries).await;
        for e in entries {
            self.settle(&e.bucket, &e.key, None);
        }
        r
    }

    async fn db_journal_done_many(&self, entries: &[JournalEntry]) -> Result<Vec<bool>> {
        let mut tx = self.pool.begin().await.map_err(db_err("begin"))?;
        let mut free = Vec::with_capacity(entries.len());
        for e in entries {
            free.push(done_in(&mut tx, e).await?);
        }
        tx.commit().await.map_err(db_err("commit"))?;
        Ok(free)
    }
    /// Records a failed attempt: back to `pending` until `next_ms`, or `stuck`.
    pub async fn journal_failed(&self, seq: i64, error: &str, next_ms: i64, stuck: bool) -> Result<()> {
        let state = if stuck { "stuck" } else { "pending" };
        sqlx::query(
            "UPDATE journal SET state = $2, attempts = attempts + 1, last_error = $3, next_ms = $4 WHERE seq = $1",
        )
        .bind(seq)
        .bind(state)
        .bind(error)
        .bind(next_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err("journal failed"))?;
        Ok(())
    }

    /// Returns claimed entry `seq` to `pending` (its outcome could not be recorded), as due
    /// as when it was claimed. Does nothing to an entry no longer `uploading` (settled
    /// after all, or gone).
    pub async fn journal_unclaim(&self, seq: i64) -> Result<()> {
        sqlx::query("UPDATE journal SET state = 'pending' WHERE seq = $1 AND state = 'uploading'")
            .bind(seq)
            .execute(&self.pool)
            .await
            .map_err(db_err("journal unclaim"))?;
        Ok(())
    }

    /// A store took a write again after failing: every pending entry of `node` for `store`
    /// that waits out a backoff becomes due now, so a backlog drains when its store
    /// returns instead of when each entry's own (up to `retry_max`) delay ends. Returns how
    /// many changed.
    pub async fn journal_store_back(&self, node: &str, store: &str, now_ms: i64) -> Result<u64> {
        let res = sqlx::query(
            "UPDATE journal SET next_ms = $3 WHERE node = $1 AND store = $2 AND state = 'pending' AND next_ms > $3",
        )
        .bind(node)
        .bind(store)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err("journal store back"))?;
        Ok(res.rows_affected())
    }

    /// Makes one waiting entry per store of `node` due now (the oldest: first in line for
    /// its key), so a store that has come back is noticed by a single attempt; see
    /// [`Catalog::journal_store_back`] for what a success then does. Returns how many
    /// changed.
    pub async fn journal_probe(&self, node: &str, now_ms: i64) -> Result<u64> {
        let res = sqlx::query(
            "UPDATE journal SET next_ms = $2 WHERE seq IN (SELECT MIN(seq) FROM journal \
             WHERE node = $1 AND state = 'pending' AND next_ms > $2 GROUP BY store)",
        )
        .bind(node)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err("journal probe"))?;
        Ok(res.rows_affected())
    }

    /// At start: entries of `node` left `uploading` by a crash go back to `pending`; with
    /// `stuck`, stuck entries are retried too. Returns how many changed.
    pub async fn journal_recover(&self, node: &str, stuck: bool) -> Result<u64> {
        let sql = if stuck {
            "UPDATE journal SET state = 'pending', next_ms = 0 WHERE node = $1 AND state <> 'pending'"
        } else {
            "UPDATE journal SET state = 'pending' WHERE node = $1 AND state = 'uploading'"
        };
        let res = sqlx::query(sql).bind(node).execute(&self.pool).await.map_err(db_err("journal recover"))?;
        Ok(res.rows_affected())
    }

    /// Staging files of `node` that an entry or a row still names.
    pub async fn staging_in_use(&self, node: &str) -> Result<std::collections::HashSet<String>> {
        let rows = sqlx::query(
            "SELECT staging FROM journal WHERE node = $1 AND staging IS NOT NULL \
             UNION SELECT staging FROM objects WHERE staging IS NOT NULL \
             UNION SELECT staging FROM staging_copies WHERE node = $1",
        )
        .bind(node)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("staging in use"))?;
        rows.iter().map(|r| col(r, "staging")).collect()
    }

    /// The backlog per store (all nodes).
    pub async fn journal_lag(&self) -> Result<Vec<StoreLag>> {
        let rows = sqlx::query(
            "SELECT store, COUNT(*) AS n, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes, \
             CAST(SUM(CASE WHEN state = 'stuck' THEN 1 ELSE 0 END) AS BIGINT) AS stuck, MIN(created_ms) AS oldest \
             FROM journal GROUP BY store ORDER BY store",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("journal lag"))?;
        let mut out = Vec::new();
        for r in &rows {
            let store: String = col(r, "store")?;
            let last = sqlx::query(
                "SELECT last_error FROM journal WHERE store = $1 AND last_error IS NOT NULL ORDER BY seq DESC LIMIT 1",
            )
            .bind(&store)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("journal lag"))?;
            out.push(StoreLag {
                entries: u64::try_from(col::<i64>(r, "n")?).unwrap_or(0),
                bytes: u64::try_from(col::<i64>(r, "bytes")?).unwrap_or(0),
                stuck: u64::try_from(col::<i64>(r, "stuck")?).unwrap_or(0),
                oldest_ms: col(r, "oldest")?,
                last_error: last.map(|l| col(&l, "last_error")).transpose()?,
                store,
            });
        }
        Ok(out)
    }

    /// Stuck entries, oldest first (for the operator).
    pub async fn journal_stuck(&self, limit: usize) -> Result<Vec<JournalEntry>> {
        let rows =
            sqlx::query(&format!("SELECT {ENTRY_COLS} FROM journal WHERE state = 'stuck' ORDER BY seq LIMIT $1"))
                .bind(to_i64(limit as u64)?)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("journal stuck"))?;
        rows.iter().map(JournalEntry::from_row).collect()
    }

    /// The scrub found `store` lacking version `etag` of `bucket`/`key`: marks the row
    /// behind there and adds a copy-from-replica entry, unless the row changed or the key
    /// already has work queued for that store. Returns whether an entry was added.
    pub async fn journal_repair(&self, o: &ObjectRecord, store: &str, node: &str) -> Result<bool> {
        self.write_begins();
        let r = self.db_journal_repair(o, store, node).await;
        self.settle(&o.bucket, &o.key, None);
        r
    }

    async fn db_journal_repair(&self, o: &ObjectRecord, store: &str, node: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err("begin"))?;
        super::writes::lock_key(&mut tx, self.shared, &o.bucket, &o.key).await?;
        let res = sqlx::query(
            "UPDATE objects SET behind = CASE WHEN behind = '' THEN ',' || $3 || ',' ELSE behind || $3 || ',' END \
             WHERE bucket = $1 AND key = $2 AND etag = $4 AND behind NOT LIKE '%,' || $3 || ',%' \
             AND NOT EXISTS (SELECT 1 FROM journal WHERE bucket = $1 AND key = $2 AND store = $3)",
        )
        .bind(&o.bucket)
        .bind(&o.key)
        .bind(store)
        .bind(&o.etag)
        .execute(&mut *tx)
        .await
        .map_err(db_err("journal repair"))?;
        if res.rows_affected() == 0 {
            return Ok(false);
        }
        let e = NewEntry {
            store: store.to_owned(),
            op: JournalOp::Put,
            etag: o.etag.clone(),
            size: o.size,
            staging: None,
            state: EntryState::Pending,
        };
        insert_entries(&mut tx, (&o.bucket, &o.key), node, &[e]).await?;
        tx.commit().await.map_err(db_err("commit"))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::super::records::split_stores;
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_store_list_round_trips(v in proptest::collection::vec("[a-z0-9_-]{1,12}", 0..6)) {
            proptest::prop_assert_eq!(split_stores(&join_stores(&v)), v);
        }

        #[test]
        fn split_never_panics_and_drops_empty_names(s in "[a-z,]{0,40}") {
            proptest::prop_assert!(split_stores(&s).iter().all(|n| !n.is_empty() && !n.contains(',')));
        }
    }

    #[test]
    fn stores_round_trip_through_their_column() {
        let v = vec!["a".to_owned(), "b-2".to_owned()];
        assert_eq!(split_stores(&join_stores(&v)), v);
        assert_eq!(join_stores(&[]), "");
        assert!(split_stores("").is_empty());
    }
}
