//! The `access_rules` table: access rules and serving modes set at runtime, shared by every
//! node that uses the catalog. This file owns only the SQL; `crate::policy` merges the rows
//! with the config and decides.

use super::{Catalog, col, db_err};
use crate::error::Result;
use sqlx::any::AnyRow;

/// A runtime rule for a bucket and key prefix. A `None` field keeps the config's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessRow {
    /// Bucket.
    pub bucket: String,
    /// Key prefix ("" for the whole bucket).
    pub prefix: String,
    /// Access mode, spelled as in the config ("public-read", …).
    pub access: Option<String>,
    /// Argon2 PHC string of the password.
    pub password_hash: Option<String>,
    /// Cache-Control for public readers.
    pub cache_control: Option<String>,
    /// Serving mode ("proxy", "redirect", "direct"), for prefix "" only.
    pub serve: Option<String>,
    /// When it was last set, in ms since the epoch.
    pub updated_ms: i64,
}

const COLS: &str = "bucket, prefix, access, password_hash, cache_control, serve, updated_ms";

fn row_to(r: &AnyRow) -> Result<AccessRow> {
    Ok(AccessRow {
        bucket: col(r, "bucket")?,
        prefix: col(r, "prefix")?,
        access: col(r, "access")?,
        password_hash: col(r, "password_hash")?,
        cache_control: col(r, "cache_control")?,
        serve: col(r, "serve")?,
        updated_ms: col(r, "updated_ms")?,
    })
}

impl Catalog {
    /// Every runtime rule, ordered by bucket and prefix.
    pub async fn access_rules(&self) -> Result<Vec<AccessRow>> {
        let rows = sqlx::query(&format!("SELECT {COLS} FROM access_rules ORDER BY bucket, prefix"))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("list access rules"))?;
        rows.iter().map(row_to).collect()
    }

    /// Inserts or replaces the rule for (`bucket`, `prefix`). Idempotent.
    pub async fn put_access_rule(&self, r: &AccessRow) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO access_rules ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (bucket, prefix) DO UPDATE SET access = $3, password_hash = $4, \
             cache_control = $5, serve = $6, updated_ms = $7"
        ))
        .bind(&r.bucket)
        .bind(&r.prefix)
        .bind(&r.access)
        .bind(&r.password_hash)
        .bind(&r.cache_control)
        .bind(&r.serve)
        .bind(r.updated_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err("put access rule"))?;
        Ok(())
    }

    /// Removes the rule for (`bucket`, `prefix`); false when there was none.
    pub async fn delete_access_rule(&self, bucket: &str, prefix: &str) -> Result<bool> {
        let res = sqlx::query("DELETE FROM access_rules WHERE bucket = $1 AND prefix = $2")
            .bind(bucket)
            .bind(prefix)
            .execute(&self.pool)
            .await
            .map_err(db_err("delete access rule"))?;
        Ok(res.rows_affected() > 0)
    }
}
