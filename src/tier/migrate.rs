//! Copy-on-read migration, in the style of Cloudflare Sippy: a bucket can name an origin
//! store; a read of a key the catalog does not have is looked up there, copied into the
//! bucket's own store and published, then served like any other object.
//!
//! The copy happens under the key's write lock, so concurrent first reads copy once. A
//! write through strata always wins: a key with a row is never taken from the origin
//! again. [`Tier::migrate_all`] (`strata migrate BUCKET`, run by the server) fills in the
//! rest. Objects are copied into the bucket's first store; the scrub copies them to any
//! other replica.

use super::Tier;
use crate::catalog::{ObjectHeaders, ObjectRecord};
use crate::clock::now_ms;
use crate::error::{Error, ErrorKind, Result};
use crate::names::validate_key;
use futures::StreamExt;
use md5::{Digest, Md5};

impl Tier {
    /// Copies `bucket`/`key` in from the bucket's origin, when it has one and the origin
    /// has the key. `Ok(None)`: no origin, or not there either.
    pub(super) async fn migrate(&self, bucket: &str, key: &str) -> Result<Option<ObjectRecord>> {
        let plan = self.plan(bucket).await?;
        let Some(origin) = &plan.origin else { return Ok(None) };
        if validate_key(key).is_err() {
            return Ok(None);
        }
        let _guard = self.inner.locks.write(bucket, key).await;
        if let Some(rec) = self.inner.catalog.get_object(bucket, key).await? {
            return Ok(Some(rec));
        }
        let from = self.backend(&origin.store)?.clone();
        let path = origin.path_of(key);
        let Some(stat) = from.stat(&path).await? else { return Ok(None) };
        let to = self.backend(&plan.stores[0])?.clone();
        let mut w = to.writer(&plan.path_of(key), &stat.headers).await?;
        let mut body = from.read(&path, None).await?;
        let (mut md5, mut size) = (Md5::new(), 0u64);
        let copied: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                md5.update(&chunk);
                size += chunk.len() as u64;
                w.write(chunk).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = copied {
            let _ = w.abort().await;
            return Err(e);
        }
        if size != stat.size {
            let _ = w.abort().await;
            return Err(Error::new(ErrorKind::Unavailable, format!("origin sent {size} of {} bytes", stat.size)));
        }
        w.commit().await?;
        let h = &stat.headers;
        let rec = ObjectRecord {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size,
            etag: hex::encode(md5.finalize()),
            last_modified_ms: stat.last_modified_ms.unwrap_or_else(now_ms),
            backend: plan.stores[0].clone(),
            headers: ObjectHeaders {
                content_type: h.content_type.clone(),
                cache_control: h.cache_control.clone(),
                content_disposition: h.content_disposition.clone(),
                content_encoding: h.content_encoding.clone(),
                ..Default::default()
            },
            user_meta: h.user_metadata.clone(),
            ..Default::default()
        };
        // Under the key's lock no write through strata can have landed meanwhile, but an
        // insert that never replaces a row keeps that true for a second process as well.
        if !self.inner.catalog.insert_object_if_absent(&rec).await? {
            return self.inner.catalog.get_object(bucket, key).await;
        }
        ::metrics::counter!("strata_migrated_objects_total").increment(1);
        tracing::info!(bucket, key, size, origin = %origin.store, "migrated on read");
        Ok(Some(rec))
    }
}

/// What [`Tier::migrate_all`] did so far.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MigrateStats {
    /// Objects listed in the origin.
    pub listed: u64,
    /// Copied in by this run.
    pub migrated: u64,
    /// Already in the bucket (written through strata, or migrated earlier).
    pub present: u64,
    /// Failed; a later run retries them.
    pub failed: u64,
}

impl Tier {
    /// Finishes a copy-on-read migration: copies in every object of `bucket`'s origin that
    /// the bucket does not have yet, four at a time, through the same path as a first
    /// read (under each key's write lock, so a client's write always wins). `progress`
    /// sees the running totals after each object.
    pub async fn migrate_all(&self, bucket: &str, mut progress: impl FnMut(&MigrateStats)) -> Result<MigrateStats> {
        let plan = self.plan(bucket).await?;
        let Some(origin) = plan.origin.clone() else {
            return Err(Error::new(ErrorKind::InvalidInput, format!("bucket {bucket} has no origin to migrate from")));
        };
        let listing = self.backend(&origin.store)?.list(&origin.prefix);
        let mut stats = MigrateStats::default();
        let mut done = listing
            .map(|entry| {
                let origin = &origin;
                async move {
                    let key = entry.map(|e| origin.key_of(&e.path).unwrap_or_default().to_owned())?;
                    if self.inner.catalog.get_object(bucket, &key).await?.is_some() {
                        return Ok::<bool, Error>(false);
                    }
                    Ok(self.migrate(bucket, &key).await?.is_some())
                }
            })
            .buffer_unordered(4);
        while let Some(r) = done.next().await {
            stats.listed += 1;
            match r {
                Ok(true) => stats.migrated += 1,
                Ok(false) => stats.present += 1,
                Err(e) => {
                    tracing::warn!(bucket, error = %e, "migration of one object failed");
                    stats.failed += 1;
                }
            }
            progress(&stats);
        }
        Ok(stats)
    }
}
