//! Authoritative object metadata: buckets, objects, multipart uploads and their parts, the
//! journal's entries (`entries.rs`: one per write and store not yet applied), and the
//! runtime access rules (`access.rs`).
//!
//! Owns the catalog database (SQLite or PostgreSQL through one code path, sqlx's `Any`
//! driver) and its versioned migrations, the row cache (`cache.rs`) and, for a
//! PostgreSQL catalog shared by several nodes, the change feed that keeps it coherent
//! (`feed.rs`),
//! plus the listing algorithm (prefix, delimiter, markers) so that a listing never scans a
//! cold store. It must not touch object bytes.

mod access;
mod cache;
#[cfg(test)]
mod conformance;
mod entries;
mod feed;
mod keys;
mod listing;
mod nodes;
mod records;
mod writes;

pub use access::AccessRow;
pub use entries::{EntryState, JournalEntry, JournalOp, NewEntry, StoreLag};
pub use feed::ChangeFeed;
pub use keys::{AuditRow, GrantRow, KeyRow};
pub use listing::{ListPage, ListQuery};
pub use nodes::{NodeBacklog, NodeRecord};
pub use records::{
    BucketRecord, Checksum, ObjectDetails, ObjectHeaders, ObjectRecord, PartInfo, PartRecord, UploadRecord,
};
pub use writes::{JournalWrite, Journaled};

use crate::error::{Error, ErrorKind, Result};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::str::FromStr;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A connection pool to the catalog database.
#[derive(Clone)]
pub struct Catalog {
    pool: AnyPool,
    /// Rows cached in process (see `cache.rs`; on PostgreSQL kept coherent by `feed.rs`).
    cache: Option<std::sync::Arc<cache::RowCache>>,
    /// PostgreSQL: several nodes may share this catalog, so journaled writes take the
    /// key's cluster-wide lock and reads check their row again (`docs/design/cluster.md`).
    shared: bool,
}

fn db_err(what: &str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
    move |e| {
        if is_pooled_per_transaction(&e) {
            return pooled_error();
        }
        let kind = match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => ErrorKind::Unavailable,
            e if is_contended(e) => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, format!("catalog: {what}")).with_source(e)
    }
}

/// Whether `e` says the database was busy rather than that the statement is wrong, so the
/// same statement may well succeed later: SQLite busy or locked (another writer held the
/// file past the busy timeout: 5, 6 and their extended codes), PostgreSQL serialization
/// failure, deadlock, lock not available. Callers retry these (the uploader, a client on a
/// 503) instead of treating them as a fault of their own.
fn is_contended(e: &sqlx::Error) -> bool {
    let Some(code) = e.as_database_error().and_then(|d| d.code()) else { return false };
    matches!(code.as_ref(), "5" | "6" | "261" | "262" | "517" | "773" | "40001" | "40P01" | "55P03")
}

/// Whether `e` is what a pooler that hands one server connection to several clients (one
/// transaction or statement at a time, as PgBouncer's transaction mode does) causes: sqlx
/// prepares named statements per connection, and the names then clash or go missing.
fn is_pooled_per_transaction(e: &sqlx::Error) -> bool {
    let msg = e.to_string();
    msg.contains("prepared statement") && (msg.contains("already exists") || msg.contains("does not exist"))
}

fn pooled_error() -> Error {
    Error::new(
        ErrorKind::Config,
        "catalog: the database connection is shared with other clients per transaction (PgBouncer in transaction \
         or statement mode?); strata keeps prepared statements per connection. Connect strata to PostgreSQL \
         directly or through session pooling (docs/design/cluster.md, \"PgBouncer\")",
    )
}

/// At the start on PostgreSQL: two fresh connections each prepare a statement of the same
/// name. Through a pooler in transaction mode they usually land on one server connection
/// and the second fails, so the catalog is refused with a clear message at once rather
/// than with a confusing error later.
async fn refuse_transaction_pooling(url: &str) -> Result<()> {
    use sqlx::Connection;
    let mut conns = Vec::new();
    for _ in 0..2 {
        conns.push(sqlx::AnyConnection::connect(url).await.map_err(db_err("connect"))?);
    }
    for _ in 0..2 {
        for c in &mut conns {
            sqlx::query("SELECT CAST($1 AS BIGINT) AS probe")
                .bind(1i64)
                .fetch_one(&mut *c)
                .await
                .map_err(db_err("probe"))?;
        }
    }
    for c in conns {
        let _ = c.close().await;
    }
    Ok(())
}

const OBJECT_COLS: &str =
    "bucket, key, size, etag, last_modified_ms, backend, headers, user_meta, staging, behind, details";
const UPLOAD_COLS: &str = "upload_id, bucket, key, created_ms, headers, user_meta";

impl Catalog {
    /// Connects to `url` ("sqlite://PATH" or "postgres://…") and applies pending migrations.
    /// A SQLite file and its directory are created when missing.
    pub async fn connect(url: &str) -> Result<Catalog> {
        sqlx::any::install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        let url = if is_sqlite {
            let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or(path);
            if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            format!("sqlite://{path}?mode=rwc")
        } else {
            url.to_owned()
        };
        let _ = sqlx::any::AnyConnectOptions::from_str(&url).map_err(db_err("bad catalog URL"))?;
        if !is_sqlite {
            refuse_transaction_pooling(&url).await?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if is_sqlite { 8 } else { 16 })
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(&url)
            .await
            .map_err(db_err("connect"))?;
        if is_sqlite {
            // WAL lets readers run beside the one writer and persists in the file; sqlx's
            // default synchronous=FULL then makes each commit durable.
            sqlx::query("PRAGMA journal_mode=WAL").execute(&pool).await.map_err(db_err("enable WAL"))?;
        }
        let migrator = if is_sqlite { &SQLITE_MIGRATIONS } else { &POSTGRES_MIGRATIONS };
        migrator.run(&pool).await.map_err(|e| Error::new(ErrorKind::Unavailable, "catalog: migrate").with_source(e))?;
        // With PostgreSQL the cache learns other nodes' changes from the change feed
        // (`feed.rs`), which the server runs beside it.
        let cache = Some(Default::default());
        Ok(Catalog { pool, cache, shared: !is_sqlite })
    }

    /// Whether several nodes may write this catalog (PostgreSQL). With SQLite one node
    /// owns it, and its in-process key locks order every write.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_err("ping"))?;
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Creates a bucket. Fails with `BucketExists` when the name is taken.
    async fn db_create_bucket(&self, b: &BucketRecord) -> Result<()> {
        let res = sqlx::query(
            "INSERT INTO buckets (name, backend, prefix, created_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&b.name)
        .bind(&b.backend)
        .bind(&b.prefix)
        .bind(b.created_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err("create bucket"))?;
        if res.rows_affected() == 0 {
            return Err(Error::new(ErrorKind::BucketExists, format!("bucket {} exists", b.name)));
        }
        Ok(())
    }

    /// Creates a bucket declared in the config, or updates its backend and prefix.
    async fn db_ensure_bucket(&self, b: &BucketRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO buckets (name, backend, prefix, created_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET backend = excluded.backend, prefix = excluded.prefix",
        )
        .bind(&b.name)
        .bind(&b.backend)
        .bind(&b.prefix)
        .bind(b.created_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err("ensure bucket"))?;
        Ok(())
    }

    /// The bucket `name`, if it exists.
    async fn db_get_bucket(&self, name: &str) -> Result<Option<BucketRecord>> {
        let row = sqlx::query("SELECT name, backend, prefix, created_ms FROM buckets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("get bucket"))?;
        row.map(|r| BucketRecord::from_row(&r)).transpose()
    }

    /// All buckets, by name.
    pub async fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        let rows = sqlx::query("SELECT name, backend, prefix, created_ms FROM buckets ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("list buckets"))?;
        rows.iter().map(BucketRecord::from_row).collect()
    }

    /// Deletes an empty bucket: `BucketNotFound` if absent, `BucketNotEmpty` while it holds
    /// objects or multipart uploads. The check and the delete are one transaction.
    async fn db_delete_bucket(&self, name: &str) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err("begin"))?;
        let busy = sqlx::query(
            "SELECT 1 FROM objects WHERE bucket = $1 UNION ALL SELECT 1 FROM uploads WHERE bucket = $1 \
             UNION ALL SELECT 1 FROM journal WHERE bucket = $1 LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err("check bucket empty"))?;
        if busy.is_some() {
            return Err(Error::new(ErrorKind::BucketNotEmpty, format!("bucket {name} is not empty")));
        }
        let res = sqlx::query("DELETE FROM buckets WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_err("delete bucket"))?;
        if res.rows_affected() == 0 {
            return Err(Error::new(ErrorKind::BucketNotFound, format!("no bucket {name}")));
        }
        tx.commit().await.map_err(db_err("commit"))
    }

    /// Inserts or replaces the row of `o.bucket`/`o.key`.
    async fn db_put_object(&self, o: &ObjectRecord) -> Result<()> {
        bind_object(sqlx::query(UPSERT_OBJECT), o)?.execute(&self.pool).await.map_err(db_err("put object"))?;
        Ok(())
    }

    /// Inserts the row only if the key has none; returns whether it was inserted.
    async fn db_insert_object_if_absent(&self, o: &ObjectRecord) -> Result<bool> {
        let res = bind_object(sqlx::query(INSERT_OBJECT_IF_ABSENT), o)?
            .execute(&self.pool)
            .await
            .map_err(db_err("insert object"))?;
        Ok(res.rows_affected() == 1)
    }

    /// The row of `bucket`/`key`, if any.
    async fn db_get_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectRecord>> {
        let row = sqlx::query(&format!("SELECT {OBJECT_COLS} FROM objects WHERE bucket = $1 AND key = $2"))
            .bind(bucket)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("get object"))?;
        row.map(|r| ObjectRecord::from_row(&r)).transpose()
    }

    /// Removes the row; returns whether one existed. Idempotent.
    async fn db_delete_object(&self, bucket: &str, key: &str) -> Result<bool> {
        let res = sqlx::query("DELETE FROM objects WHERE bucket = $1 AND key = $2")
            .bind(bucket)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(db_err("delete object"))?;
        Ok(res.rows_affected() > 0)
    }

    /// Up to `limit` rows of `bucket` with keys `>= prefix` and `> after`, in byte order.
    /// Callers stop at the first key that does not start with their prefix.
    pub async fn scan_objects(
        &self,
        bucket: &str,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<ObjectRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {OBJECT_COLS} FROM objects WHERE bucket = $1 AND key >= $2 AND key > $3 ORDER BY key LIMIT $4"
        ))
        .bind(bucket)
        .bind(prefix)
        .bind(after)
        .bind(to_i64(limit as u64)?)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("scan objects"))?;
        rows.iter().map(ObjectRecord::from_row).collect()
    }

    /// Records a new multipart upload.
    pub async fn create_upload(&self, u: &UploadRecord) -> Result<()> {
        sqlx::query(&format!("INSERT INTO uploads ({UPLOAD_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"))
            .bind(&u.upload_id)
            .bind(&u.bucket)
            .bind(&u.key)
            .bind(u.created_ms)
            .bind(u.headers.to_json())
            .bind(records::map_to_json(&u.user_meta))
            .execute(&self.pool)
            .await
            .map_err(db_err("create upload"))?;
        Ok(())
    }

    /// The upload `id`, if it is still in progress.
    pub async fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        let row = sqlx::query(&format!("SELECT {UPLOAD_COLS} FROM uploads WHERE upload_id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("get upload"))?;
        row.map(|r| UploadRecord::from_row(&r)).transpose()
    }

    /// Uploads in progress in `bucket` whose key starts with `prefix`, ordered by key then
    /// id, after the (`key_marker`, `id_marker`) position; up to `limit`.
    pub async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: &str,
        id_marker: &str,
        limit: usize,
    ) -> Result<Vec<UploadRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {UPLOAD_COLS} FROM uploads WHERE bucket = $1 AND key >= $2 \
             AND (key > $3 OR (key = $3 AND upload_id > $4)) ORDER BY key, upload_id LIMIT $5"
        ))
        .bind(bucket)
        .bind(prefix)
        .bind(key_marker)
        .bind(id_marker)
        .bind(to_i64(limit as u64)?)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("list uploads"))?;
        let all: Result<Vec<_>> = rows.iter().map(UploadRecord::from_row).collect();
        Ok(all?.into_iter().take_while(|u| u.key.starts_with(prefix)).collect())
    }

    /// Records (or replaces, on re-upload) one part.
    pub async fn put_part(&self, p: &PartRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO parts (upload_id, part_number, size, etag, last_modified_ms, checksum) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (upload_id, part_number) DO UPDATE SET size = excluded.size, \
             etag = excluded.etag, last_modified_ms = excluded.last_modified_ms, checksum = excluded.checksum",
        )
        .bind(&p.upload_id)
        .bind(i64::from(p.part_number))
        .bind(to_i64(p.size)?)
        .bind(&p.etag)
        .bind(p.last_modified_ms)
        .bind(p.checksum.as_ref().map(Checksum::to_column).unwrap_or_default())
        .execute(&self.pool)
        .await
        .map_err(db_err("put part"))?;
        Ok(())
    }

    /// Parts of an upload with numbers above `after`, ascending; up to `limit`.
    pub async fn list_parts(&self, upload_id: &str, after: u32, limit: usize) -> Result<Vec<PartRecord>> {
        let rows = sqlx::query(
            "SELECT upload_id, part_number, size, etag, last_modified_ms, checksum FROM parts \
             WHERE upload_id = $1 AND part_number > $2 ORDER BY part_number LIMIT $3",
        )
        .bind(upload_id)
        .bind(i64::from(after))
        .bind(to_i64(limit as u64)?)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("list parts"))?;
        rows.iter().map(PartRecord::from_row).collect()
    }

    /// Removes an upload and its parts in one transaction; returns whether it existed.
    pub async fn delete_upload(&self, upload_id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err("begin"))?;
        sqlx::query("DELETE FROM parts WHERE upload_id = $1")
            .bind(upload_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err("delete parts"))?;
        let res = sqlx::query("DELETE FROM uploads WHERE upload_id = $1")
            .bind(upload_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err("delete upload"))?;
        tx.commit().await.map_err(db_err("commit"))?;
        Ok(res.rows_affected() > 0)
    }

    /// Completes an upload: writes the object row and removes the upload and its parts, as
    /// one transaction, so the object appears exactly when the upload disappears.
    async fn db_complete_upload(&self, upload_id: &str, o: &ObjectRecord) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err("begin"))?;
        remove_upload(&mut tx, upload_id).await?;
        bind_object(sqlx::query(UPSERT_OBJECT), o)?.execute(&mut *tx).await.map_err(db_err("insert object"))?;
        tx.commit().await.map_err(db_err("commit"))
    }
}

/// Removes an upload and its parts inside `tx`; `UploadNotFound` when it is gone.
async fn remove_upload(tx: &mut sqlx::Transaction<'_, sqlx::Any>, upload_id: &str) -> Result<()> {
    let res = sqlx::query("DELETE FROM uploads WHERE upload_id = $1")
        .bind(upload_id)
        .execute(&mut **tx)
        .await
        .map_err(db_err("delete upload"))?;
    if res.rows_affected() == 0 {
        return Err(Error::new(ErrorKind::UploadNotFound, format!("no upload {upload_id}")));
    }
    sqlx::query("DELETE FROM parts WHERE upload_id = $1")
        .bind(upload_id)
        .execute(&mut **tx)
        .await
        .map_err(db_err("delete parts"))?;
    Ok(())
}

const UPSERT_OBJECT: &str = "INSERT INTO objects (bucket, key, size, etag, last_modified_ms, backend, headers, user_meta, \
     staging, behind, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (bucket, key) DO UPDATE SET \
     size = excluded.size, etag = excluded.etag, last_modified_ms = excluded.last_modified_ms, \
     backend = excluded.backend, headers = excluded.headers, user_meta = excluded.user_meta, \
     staging = excluded.staging, behind = excluded.behind, details = excluded.details";
const INSERT_OBJECT_IF_ABSENT: &str = "INSERT INTO objects (bucket, key, size, etag, last_modified_ms, backend, headers, \
     user_meta, staging, behind, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (bucket, key) DO NOTHING";

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bind_object<'q>(q: AnyQuery<'q>, o: &'q ObjectRecord) -> Result<AnyQuery<'q>> {
    Ok(q.bind(&o.bucket)
        .bind(&o.key)
        .bind(to_i64(o.size)?)
        .bind(&o.etag)
        .bind(o.last_modified_ms)
        .bind(&o.backend)
        .bind(o.headers.to_json())
        .bind(records::map_to_json(&o.user_meta))
        .bind(o.staging.clone())
        .bind(entries::join_stores(&o.behind))
        .bind(o.details.to_json()))
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::new(ErrorKind::InvalidInput, "value too large for the catalog"))
}

pub(crate) fn col<T>(row: &AnyRow, name: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(name).map_err(db_err("decode row"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    /// A write that finds the SQLite file held by another writer is retryable (a 503, a
    /// later attempt by the uploader); a wrong statement is not.
    #[tokio::test]
    async fn a_busy_database_is_retryable_and_a_bad_statement_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let opts =
            sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{}", dir.path().join("b.db").display()))
                .unwrap()
                .create_if_missing(true)
                .busy_timeout(std::time::Duration::ZERO);
        let mut holder = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
        let mut other = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)").execute(&mut holder).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut holder).await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)").execute(&mut holder).await.unwrap();
        let busy = sqlx::query("INSERT INTO t VALUES (2)").execute(&mut other).await.expect_err("the file is held");
        let e = db_err("insert")(busy);
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.is_retryable());
        let wrong = sqlx::query("INSERT INTO nowhere VALUES (1)").execute(&mut other).await.expect_err("no table");
        assert_eq!(db_err("insert")(wrong).kind(), ErrorKind::Internal);
        sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    }
}
