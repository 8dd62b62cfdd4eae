//! Journaled writes of one key, in one order across every node that shares the catalog.
//!
//! A put or a delete is journaled by one transaction that takes the key's lock, reads the
//! key's current row and its unfinished entries, checks the write's precondition against
//! them, and writes the new row (or removes it) with one entry per store. On PostgreSQL the
//! lock is a transaction-scoped advisory lock (`pg_advisory_xact_lock`): the commit or the
//! rollback releases it, and so does the server when the connection breaks, because the
//! transaction then aborts and leaves nothing half-written. So the transactions of one key
//! form one sequence, and each sees every earlier one. SQLite has one writer node, whose
//! in-process key locks already order these transactions (`docs/design/cluster.md`).
//!
//! This file owns only the SQL: what the tier does with the outcome (which stores it writes
//! inline, which wait for the uploader) is the tier's.

use super::entries::{Tx, insert_entries};
use super::{Catalog, EntryState, NewEntry, OBJECT_COLS, ObjectRecord, bind_object, col, db_err};
use crate::error::Result;

/// A write to journal.
pub struct JournalWrite<'a> {
    /// The node whose journal holds the staging file (and applies the entries).
    pub node: &'a str,
    /// One entry per store. `Uploading` asks to apply it inline (during the request); the
    /// catalog makes it `Pending` when that store still has unfinished entries of the key,
    /// so that it queues behind them.
    pub entries: Vec<NewEntry>,
    /// A multipart upload to remove in the same transaction (`UploadNotFound` when gone).
    pub upload: Option<&'a str>,
    /// The write's precondition, given the key's current row under the key's lock. An
    /// error rolls the transaction back and is returned as it is.
    pub check: &'a (dyn Fn(Option<&ObjectRecord>) -> Result<()> + Send + Sync),
}

/// A journaled write.
#[derive(Debug)]
pub struct Journaled {
    /// The entries as stored, in the order given (some may now be `Pending`).
    pub entries: Vec<NewEntry>,
    /// Their `seq`s.
    pub seqs: Vec<i64>,
    /// The row the write replaced or removed.
    pub old: Option<ObjectRecord>,
}

/// Takes the cluster-wide lock of `bucket`/`key` for the rest of `tx`. Keys whose hashes
/// collide share a lock, which costs waiting, never correctness.
///
/// On SQLite it takes the database's write lock instead: a transaction that reads first
/// and writes later fails (`SQLITE_BUSY_SNAPSHOT`, with no wait) when another connection
/// committed in between, so the first statement must be a write. A `DELETE` that matches
/// nothing still begins a write.
pub(super) async fn lock_key(tx: &mut Tx<'_>, shared: bool, bucket: &str, key: &str) -> Result<()> {
    let q = if shared {
        // Bucket names have no '/', so "bucket/key" names one key.
        sqlx::query("SELECT 1 FROM pg_advisory_xact_lock(hashtextextended($1, 0))").bind(format!("{bucket}/{key}"))
    } else {
        sqlx::query("DELETE FROM journal WHERE seq < 0")
    };
    q.execute(&mut **tx).await.map_err(db_err("lock key"))?;
    Ok(())
}

/// Under the key's lock: the current row, the precondition, and the stores the key has
/// unfinished entries for (whose inline writes must queue instead).
async fn prepare(
    tx: &mut Tx<'_>,
    shared: bool,
    (bucket, key): (&str, &str),
    w: &mut JournalWrite<'_>,
) -> Result<Option<ObjectRecord>> {
    lock_key(tx, shared, bucket, key).await?;
    let row = sqlx::query(&format!("SELECT {OBJECT_COLS} FROM objects WHERE bucket = $1 AND key = $2"))
        .bind(bucket)
        .bind(key)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err("get object"))?;
    let old = row.map(|r| ObjectRecord::from_row(&r)).transpose()?;
    (w.check)(old.as_ref())?;
    let rows = sqlx::query("SELECT DISTINCT store FROM journal WHERE bucket = $1 AND key = $2")
        .bind(bucket)
        .bind(key)
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err("journal stores"))?;
    let queued: Vec<String> = rows.iter().map(|r| col(r, "store")).collect::<Result<_>>()?;
    for e in &mut w.entries {
        if queued.contains(&e.store) {
            e.state = EntryState::Pending;
        }
    }
    Ok(old)
}

impl Catalog {
    /// Journals a put: under the key's lock, checks `w.check`, writes the row of `o` and
    /// the entries in one transaction (the moment a write is journaled), and removes
    /// `w.upload` with them.
    pub async fn put_object_journaled(&self, o: &ObjectRecord, w: JournalWrite<'_>) -> Result<Journaled> {
        self.write_begins();
        let r = self.db_put_object_journaled(o, w).await;
        self.settle(&o.bucket, &o.key, r.is_ok().then(|| Some(o.clone())));
        r
    }

    async fn db_put_object_journaled(&self, o: &ObjectRecord, mut w: JournalWrite<'_>) -> Result<Journaled> {
        let mut tx = self.pool.begin().await.map_err(db_err("begin"))?;
        let old = prepare(&mut tx, self.shared, (&o.bucket, &o.key), &mut w).await?;
        if let Some(id) = w.upload {
            super::remove_upload(&mut tx, id).await?;
        }
        bind_object(sqlx::query(super::UPSERT_OBJECT), o)?.execute(&mut *tx).await.map_err(db_err("put object"))?;
        let seqs = insert_entries(&mut tx, (&o.bucket, &o.key), w.node, &w.entries).await?;
        tx.commit().await.map_err(db_err("commit"))?;
        Ok(Journaled { entries: w.entries, seqs, old })
    }

    /// Journals a delete: under the key's lock, removes the row of `bucket`/`key` (if any)
    /// and adds the entries, in one transaction. Entries are added even when there is no
    /// row, so that bytes a store holds without one (written by another program) go too,
    /// in the key's order.
    pub async fn delete_object_journaled(&self, bucket: &str, key: &str, w: JournalWrite<'_>) -> Result<Journaled> {
        self.write_begins();
        let r = self.db_delete_object_journaled(bucket, key, w).await;
        self.settle(bucket, key, r.is_ok().then_some(None));
        r
    }

    async fn db_delete_object_journaled(&self, bucket: &str, key: &str, mut w: JournalWrite<'_>) -> Result<Journaled> {
        let mut tx = self.pool.begin().await.map_err(db_err("begin"))?;
        let old = prepare(&mut tx, self.shared, (bucket, key), &mut w).await?;
        if old.is_some() {
            sqlx::query("DELETE FROM objects WHERE bucket = $1 AND key = $2")
                .bind(bucket)
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(db_err("delete object"))?;
        }
        let seqs = insert_entries(&mut tx, (bucket, key), w.node, &w.entries).await?;
        tx.commit().await.map_err(db_err("commit"))?;
        Ok(Journaled { entries: w.entries, seqs, old })
    }

    /// Replaces the row of `new.bucket`/`new.key` only while it is still `old` (same ETag
    /// and modification time), under the key's lock; returns whether it did. For rows
    /// refreshed from a store that changed behind strata's back: a write journaled
    /// meanwhile, on any node, wins.
    pub async fn replace_object_if(&self, old: &ObjectRecord, new: &ObjectRecord) -> Result<bool> {
        self.write_begins();
        let r = self.db_replace_object_if(old, new).await;
        self.settle(&new.bucket, &new.key, None);
        r
    }

    async fn db_replace_object_if(&self, old: &ObjectRecord, new: &ObjectRecord) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err("begin"))?;
        lock_key(&mut tx, self.shared, &new.bucket, &new.key).await?;
        let same =
            sqlx::query("SELECT 1 FROM objects WHERE bucket = $1 AND key = $2 AND etag = $3 AND last_modified_ms = $4")
                .bind(&old.bucket)
                .bind(&old.key)
                .bind(&old.etag)
                .bind(old.last_modified_ms)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("compare object"))?;
        if same.is_none() {
            return Ok(false);
        }
        bind_object(sqlx::query(super::UPSERT_OBJECT), new)?.execute(&mut *tx).await.map_err(db_err("put object"))?;
        tx.commit().await.map_err(db_err("commit"))?;
        Ok(true)
    }
}
