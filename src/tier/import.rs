//! `strata import`: index objects already in a cold store (written without strata) into
//! the catalog, so they can be listed and served.
//!
//! Idempotent and resumable: a key that already has a row of the same size is skipped
//! without touching the store, so a re-run after an interruption only does what is left
//! (it lists again, but stats and hashes nothing twice).

use super::Tier;
use crate::catalog::{ObjectHeaders, ObjectRecord};
use crate::error::Result;
use crate::names::validate_key;
use futures::StreamExt;
use md5::{Digest, Md5};
use std::collections::BTreeMap;

/// Counts from one import run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Objects seen in the store.
    pub scanned: u64,
    /// Rows added.
    pub added: u64,
    /// Rows replaced because the store's object changed.
    pub updated: u64,
    /// Objects already indexed.
    pub unchanged: u64,
    /// Paths that are not valid keys (left alone, reported in the log).
    pub invalid: u64,
}

impl Tier {
    /// Indexes every object under `bucket`'s prefix in its backend. `progress` is called
    /// after each object.
    pub async fn import(&self, bucket: &str, mut progress: impl FnMut(&ImportStats)) -> Result<ImportStats> {
        let plan = self.plan(bucket).await?;
        let backend = self.backend(&plan.stores[0])?.clone();
        let mut stats = ImportStats::default();
        let mut list = backend.list(&plan.prefix);
        while let Some(entry) = list.next().await {
            let entry = entry?;
            stats.scanned += 1;
            let Some(key) = plan.key_of(&entry.path).map(str::to_owned) else { continue };
            if validate_key(&key).is_err() {
                tracing::warn!(path = %entry.path, "not a valid key; skipped");
                stats.invalid += 1;
                progress(&stats);
                continue;
            }
            let existing = self.inner.catalog.get_object(bucket, &key).await?;
            if let (Some(row), Some(size)) = (&existing, entry.size)
                && row.size == size
            {
                stats.unchanged += 1;
                progress(&stats);
                continue;
            }
            let Some(stat) = backend.stat(&entry.path).await? else { continue };
            if existing.as_ref().is_some_and(|r| r.size == stat.size) {
                stats.unchanged += 1;
                progress(&stats);
                continue;
            }
            let etag = match stat.etag.clone() {
                Some(e) => e,
                None => md5_of(&*backend, &entry.path).await?,
            };
            let rec = ObjectRecord {
                bucket: bucket.to_owned(),
                key,
                size: stat.size,
                etag,
                last_modified_ms: stat.last_modified_ms.unwrap_or_else(crate::clock::now_ms),
                backend: plan.stores[0].clone(),
                headers: ObjectHeaders { content_type: stat.content_type, ..Default::default() },
                user_meta: BTreeMap::new(),
                ..Default::default()
            };
            if existing.is_some() {
                self.inner.catalog.put_object(&rec).await?;
                stats.updated += 1;
            } else if self.inner.catalog.insert_object_if_absent(&rec).await? {
                stats.added += 1;
            } else {
                stats.unchanged += 1;
            }
            progress(&stats);
        }
        Ok(stats)
    }
}

/// A disk keeps no ETag: hash the bytes, as S3 would have for a single PUT.
async fn md5_of(backend: &dyn crate::backend::Backend, path: &str) -> Result<String> {
    let mut s = backend.read(path, None).await?;
    let mut h = Md5::new();
    while let Some(chunk) = s.next().await {
        h.update(&chunk?);
    }
    Ok(hex::encode(h.finalize()))
}
