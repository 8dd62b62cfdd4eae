//! The `access_keys`, `key_grants`, `key_audit` and `seal_probe` tables: S3 access keys
//! made at runtime, what each may do, and who changed either. This file owns only the SQL;
//! `crate::auth` seals the secrets, decides, and keeps the in-memory keyring.
//!
//! Every change writes its audit row in the same transaction, so the trail cannot miss a
//! change that took effect.

use super::{Catalog, col, db_err};
use crate::error::Result;
use sqlx::any::AnyRow;

/// One access key as stored. The secrets are sealed (`crate::auth::seal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    /// The access key id (what clients send).
    pub id: String,
    /// A name for people.
    pub name: String,
    /// The current secret, sealed.
    pub secret_sealed: String,
    /// The secret before the last rotation, sealed, valid until `previous_until_ms`.
    pub previous_sealed: Option<String>,
    /// End of the previous secret's grace period, ms since the epoch.
    pub previous_until_ms: Option<i64>,
    /// When the key was made, ms since the epoch.
    pub created_ms: i64,
    /// When the key stops working, ms since the epoch.
    pub expires_ms: Option<i64>,
    /// A disabled key is refused.
    pub enabled: bool,
    /// Source networks (CIDR) the key may be used from, comma-separated; "" for anywhere.
    pub sources: String,
    /// When the row last changed, ms since the epoch.
    pub updated_ms: i64,
}

/// What one key may do in one bucket (or `*`) under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    /// The key.
    pub key_id: String,
    /// A bucket name, or `*` for every bucket.
    pub bucket: String,
    /// Key prefix ("" for the whole bucket).
    pub prefix: String,
    /// Rights, comma-separated (`read,list`).
    pub rights: String,
}

/// One change to keys or grants.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRow {
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The key id that made the change (the admin caller).
    pub actor: String,
    /// What was done (`key.create`, `grant.add`, …).
    pub action: String,
    /// The key id changed.
    pub subject: String,
    /// What changed, never a secret.
    pub detail: String,
}

const KEY_COLS: &str =
    "id, name, secret_sealed, previous_sealed, previous_until_ms, created_ms, expires_ms, enabled, sources, updated_ms";

fn key_of(r: &AnyRow) -> Result<KeyRow> {
    Ok(KeyRow {
        id: col(r, "id")?,
        name: col(r, "name")?,
        secret_sealed: col(r, "secret_sealed")?,
        previous_sealed: col(r, "previous_sealed")?,
        previous_until_ms: col(r, "previous_until_ms")?,
        created_ms: col(r, "created_ms")?,
        expires_ms: col(r, "expires_ms")?,
        enabled: col::<i64>(r, "enabled")? != 0,
        sources: col(r, "sources")?,
        updated_ms: col(r, "updated_ms")?,
    })
}

fn grant_of(r: &AnyRow) -> Result<GrantRow> {
    Ok(GrantRow {
        key_id: col(r, "key_id")?,
        bucket: col(r, "bucket")?,
        prefix: col(r, "prefix")?,
        rights: col(r, "rights")?,
    })
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

async fn audit(tx: &mut Tx<'_>, a: &AuditRow) -> Result<()> {
    sqlx::query("INSERT INTO key_audit (at_ms, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(a.at_ms)
        .bind(&a.actor)
        .bind(&a.action)
        .bind(&a.subject)
        .bind(&a.detail)
        .execute(&mut **tx)
        .await
        .map_err(db_err("write key audit"))?;
    Ok(())
}

/// Ends a change: without `changed` the transaction is dropped (rolled back) and false
/// returned; else the audit row is written and everything committed.
async fn commit_if(mut tx: Tx<'_>, changed: bool, why: &AuditRow) -> Result<bool> {
    if !changed {
        return Ok(false);
    }
    audit(&mut tx, why).await?;
    tx.commit().await.map_err(db_err("commit"))?;
    Ok(true)
}

impl Catalog {
    /// Every access key, by id.
    pub async fn access_keys(&self) -> Result<Vec<KeyRow>> {
        let rows = sqlx::query(&format!("SELECT {KEY_COLS} FROM access_keys ORDER BY id"))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("list access keys"))?;
        rows.iter().map(key_of).collect()
    }

    /// Every grant, by key, bucket and prefix.
    pub async fn key_grants(&self) -> Result<Vec<GrantRow>> {
        let rows = sqlx::query("SELECT key_id, bucket, prefix, rights FROM key_grants ORDER BY key_id, bucket, prefix")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("list key grants"))?;
        rows.iter().map(grant_of).collect()
    }

    /// Inserts `k`; false (nothing written) when its id is taken.
    pub async fn insert_access_key(&self, k: &KeyRow, why: &AuditRow) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err("begin"))?;
        let res = sqlx::query(&format!(
            "INSERT INTO access_keys ({KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (id) DO NOTHING"
        ))
        .bind(&k.id)
        .bind(&k.name)
        .bind(&k.secret_sealed)
        .bind(&k.previous_sealed)
        .bind(k.previous_until_ms)
        .bind(k.created_ms)
        .bind(k.expires_ms)
        .bind(i64::from(k.enabled))
        .bind(&k.sources)
        .bind(k.updated_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err("insert access key"))?;
        commit_if(tx, res.rows_affected() > 0, why).await
    }

    /// Rewrites the mutable fields of key `k.id` (secrets, expiry, enabled, sources);
    /// false when there is no such key. Idempotent.
    pub async fn update_access_key(&self, k: &KeyRow, why: &AuditRow) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err("begin"))?;
        let res = sqlx::query(
            "UPDATE access_keys SET secret_sealed = $2, previous_sealed = $3, previous_until_ms = $4, \
             expires_ms = $5, enabled = $6, sources = $7, updated_ms = $8 WHERE id = $1",
        )
        .bind(&k.id)
        .bind(&k.secret_sealed)
        .bind(&k.previous_sealed)
        .bind(k.previous_until_ms)
        .bind(k.expires_ms)
        .bind(i64::from(k.enabled))
        .bind(&k.sources)
        .bind(k.updated_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err("update access key"))?;
        commit_if(tx, res.rows_affected() > 0, why).await
    }

    /// Removes key `id` and its grants; false when there was no such key.
    pub async fn delete_access_key(&self, id: &str, why: &AuditRow) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err("begin"))?;
        sqlx::query("DELETE FROM key_grants WHERE key_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err("delete key grants"))?;
        let res = sqlx::query("DELETE FROM access_keys WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err("delete access key"))?;
        commit_if(tx, res.rows_affected() > 0, why).await
    }

    /// Sets the rights of (`key_id`, `bucket`, `prefix`), replacing what was there.
    /// Idempotent. The key must exist (checked by the caller under the same admin call).
    pub async fn put_key_grant(&self, g: &GrantRow, why: &AuditRow) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err("begin"))?;
        sqlx::query(
            "INSERT INTO key_grants (key_id, bucket, prefix, rights) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key_id, bucket, prefix) DO UPDATE SET rights = $4",
        )
        .bind(&g.key_id)
        .bind(&g.bucket)
        .bind(&g.prefix)
        .bind(&g.rights)
        .execute(&mut *tx)
        .await
        .map_err(db_err("put key grant"))?;
        commit_if(tx, true, why).await.map(drop)
    }

    /// Removes the grant of (`key_id`, `bucket`, `prefix`); false when there was none.
    pub async fn delete_key_grant(&self, key_id: &str, bucket: &str, prefix: &str, why: &AuditRow) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err("begin"))?;
        let res = sqlx::query("DELETE FROM key_grants WHERE key_id = $1 AND bucket = $2 AND prefix = $3")
            .bind(key_id)
            .bind(bucket)
            .bind(prefix)
            .execute(&mut *tx)
            .await
            .map_err(db_err("delete key grant"))?;
        commit_if(tx, res.rows_affected() > 0, why).await
    }

    /// The last `limit` audit rows, newest first.
    pub async fn key_audit(&self, limit: i64) -> Result<Vec<AuditRow>> {
        let rows =
            sqlx::query("SELECT at_ms, actor, action, subject, detail FROM key_audit ORDER BY seq DESC LIMIT $1")
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("read key audit"))?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    at_ms: col(r, "at_ms")?,
                    actor: col(r, "actor")?,
                    action: col(r, "action")?,
                    subject: col(r, "subject")?,
                    detail: col(r, "detail")?,
                })
            })
            .collect()
    }

    /// The sealed probe every node checks its seal key against, when a key has been made.
    pub async fn read_seal_probe(&self) -> Result<Option<String>> {
        let row = sqlx::query("SELECT probe FROM seal_probe WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("read seal probe"))?;
        row.map(|r| col(&r, "probe")).transpose()
    }

    /// Stores `probe` when there is none yet and returns the stored one either way (so of
    /// two nodes that race, both get the winner's).
    pub async fn seal_probe(&self, probe: &str) -> Result<String> {
        sqlx::query("INSERT INTO seal_probe (id, probe) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
            .bind(probe)
            .execute(&self.pool)
            .await
            .map_err(db_err("write seal probe"))?;
        let row = sqlx::query("SELECT probe FROM seal_probe WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err("read seal probe"))?;
        col(&row, "probe")
    }
}
