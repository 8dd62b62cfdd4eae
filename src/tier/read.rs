//! GET through the hot tier: which buckets use it (their plan says), how a fill opens the
//! cold store for exactly one version, revalidation against the store, and warming.
//!
//! The version check lives here, not in `hot`: a fill opens its cold stream under the
//! key's read lock after checking that the catalog still names the version it caches, so
//! a fill can never store one version's bytes under another's name.

use super::Tier;
use crate::backend::ByteStream;
use crate::catalog::ObjectRecord;
use crate::config::FillMode;
use crate::error::{Error, ErrorKind, Result};
use crate::plan::BucketPlan;
use crate::tier::hot::{Hot, OpenFn, Version};
use futures::{FutureExt, StreamExt};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

/// When each object was last checked against its store (for `revalidate_after`). An
/// object evicted from it (`quick_cache`, past `MAX_VALIDATED`) is simply checked again.
pub(super) struct Validated {
    at: quick_cache::sync::Cache<(String, String), Instant>,
}

/// Objects whose last check is remembered.
const MAX_VALIDATED: usize = 100_000;

impl Default for Validated {
    fn default() -> Self {
        Self { at: quick_cache::sync::Cache::new(MAX_VALIDATED) }
    }
}

/// A version of a catalog record.
pub fn version_of(rec: &ObjectRecord) -> Version {
    Version {
        bucket: rec.bucket.clone(),
        key: rec.key.clone(),
        etag: rec.etag.clone(),
        size: rec.size,
        mtime_ms: rec.last_modified_ms,
    }
}

impl Tier {
    /// The hot tier and fill mode for reads of bucket `b`, when it uses one.
    pub(super) fn hot_for(&self, b: &BucketPlan) -> Option<(&Hot, FillMode)> {
        Some((self.inner.hot.as_ref()?, b.hot?))
    }

    /// The hot tier, if any (for the admin API and tests).
    pub(super) fn hot(&self) -> Option<&Hot> {
        self.inner.hot.as_ref()
    }

    /// Streams `range` of `rec` through the hot tier: this node's, or, with
    /// `cluster.shared_hot`, each chunk through the node that owns it.
    pub(super) async fn read_hot(
        &self,
        b: &Arc<BucketPlan>,
        rec: &ObjectRecord,
        range: Range<u64>,
        (hot, mode): (&Hot, FillMode),
    ) -> Result<ByteStream> {
        match self.inner.peers.get() {
            Some(peers) if self.inner.shared_hot && !range.is_empty() => {
                self.read_hot_shared(peers.clone(), b, rec, range, (hot, mode)).await
            }
            _ => hot.read(version_of(rec), range, mode, self.opener(b, rec)).await,
        }
    }

    /// Opens cold reads of exactly the version `rec` describes.
    pub(super) fn opener(&self, b: &Arc<BucketPlan>, rec: &ObjectRecord) -> OpenFn {
        let tier = self.clone();
        let b = b.clone();
        let rec = Arc::new(rec.clone());
        Arc::new(move |range: Range<u64>| {
            let (tier, b, rec) = (tier.clone(), b.clone(), rec.clone());
            async move {
                let _guard = tier.inner.locks.read(&rec.bucket, &rec.key).await;
                let now = match tier.inner.catalog.get_object(&rec.bucket, &rec.key).await? {
                    Some(now) if now.etag == rec.etag && now.last_modified_ms == rec.last_modified_ms => now,
                    _ => return Err(Error::new(ErrorKind::NotFound, "the object changed while it was being read")),
                };
                let mut s = match &now.staging {
                    Some(id) => tier.read_staged(id, Some(range)).await?,
                    None => tier.read_replicas(&b, &now, Some(range)).await?,
                };
                // As in `Tier::get`: once the store answers, the version read is fixed, and
                // on a shared catalog it is the row's only if the row is still the same.
                let first = s.next().await;
                tier.still_current(&rec).await?;
                Ok(futures::stream::iter(first).chain(s).boxed())
            }
            .boxed()
        })
    }

    /// On a shared catalog, checks (once a store has started answering a read of `rec`)
    /// that `rec` is still the key's row, else `NotFound`: read the row and go again.
    ///
    /// Why this suffices (`docs/design/cluster.md`): a store takes a version only after its
    /// row committed, and the versions of a key reach each store in the order of their
    /// rows. So if the store answered with bytes of a later version, that version's row
    /// committed before the answer, and this read of the row (made after it) cannot find
    /// `rec`. With SQLite the key's read lock, held until the first byte, does the same.
    pub(super) async fn still_current(&self, rec: &ObjectRecord) -> Result<()> {
        let c = &self.inner.catalog;
        if !c.is_shared() {
            return Ok(());
        }
        match c.get_object_fresh(&rec.bucket, &rec.key).await? {
            Some(now) if now.etag == rec.etag && now.last_modified_ms == rec.last_modified_ms => Ok(()),
            _ => {
                ::metrics::counter!("strata_read_version_changed_total").increment(1);
                Err(Error::new(ErrorKind::NotFound, "the object changed while it was being read"))
            }
        }
    }

    /// With `revalidate_after` set, checks `rec` against its store when it is due and
    /// returns the record to serve: `rec` itself, or a new row when the store's object
    /// changed behind strata's back (size, ETag or a later modification time).
    pub(super) async fn revalidate(&self, b: &BucketPlan, rec: ObjectRecord) -> Result<ObjectRecord> {
        let Some(after) = self.inner.revalidate_after else { return Ok(rec) };
        if rec.staging.is_some() || !rec.behind.is_empty() {
            // strata is still writing this version to its stores: nothing to compare yet.
            return Ok(rec);
        }
        let id = (rec.bucket.clone(), rec.key.clone());
        if self.inner.validated.at.get(&id).is_some_and(|t| t.elapsed() < after) {
            return Ok(rec);
        }
        let path = b.path_of(&rec.key);
        let stat = match self.backend(&rec.backend)?.stat(&path).await {
            Ok(s) => s,
            // A store that is down cannot say the object changed; serve what is known.
            Err(e) if e.is_retryable() => return Ok(rec),
            Err(e) => return Err(e),
        };
        let Some(stat) = stat else {
            return Err(Error::new(ErrorKind::NotFound, "the object is gone from its store"));
        };
        // Store ETags are not compared: a store's ETag of an object strata wrote in parts
        // differs from the catalog's. A different size, or a modification clearly after the
        // catalog's (2 s of slack for the store's own clock and commit), means a change.
        let newer = stat.last_modified_ms.is_some_and(|m| m > rec.last_modified_ms + 2000);
        let fresh = if stat.size != rec.size || newer {
            tracing::info!(bucket = %rec.bucket, key = %rec.key, "object changed in its store; refreshing");
            let _guard = self.inner.locks.write(&rec.bucket, &rec.key).await;
            let etag =
                stat.etag.clone().unwrap_or_else(|| format!("{:x}-{}", stat.last_modified_ms.unwrap_or(0), stat.size));
            // Another program wrote these bytes: the parts and checksum strata knew are not
            // theirs.
            let new = ObjectRecord {
                size: stat.size,
                etag,
                last_modified_ms: stat.last_modified_ms.unwrap_or_else(crate::clock::now_ms),
                details: Default::default(),
                ..rec.clone()
            };
            // Only over the row this check read: a write journaled meanwhile (on any node)
            // is newer than what the store showed, and wins.
            if !self.inner.catalog.replace_object_if(&rec, &new).await? {
                let now = self.inner.catalog.get_object(&rec.bucket, &rec.key).await?;
                return now.ok_or_else(|| Error::new(ErrorKind::NotFound, "the object was deleted meanwhile"));
            }
            self.invalidate_hot(&new.bucket, &new.key, Some(&new), true);
            new
        } else {
            rec
        };
        self.inner.validated.at.insert(id, Instant::now());
        Ok(fresh)
    }

    /// The whole of a small object that the memory tier holds: the hot-hit fast path
    /// (the ready answers of `api::web` and `api::s3`). No stream, no copy of the row or
    /// the bytes. `accept` sees the current row first and says whether (and with what)
    /// the caller can answer from it, and whether it needs the bytes: `Some(vh)`, the
    /// [`Version::hash`] of the row's version (`version_of(rec).hash()`, which a caller
    /// keeps per version), or `None` (a 304 needs none). Only then are the bytes taken and
    /// counted as a hit. `None` whenever the full path ([`Tier::get`]) must decide: the
    /// bucket skips the hot tier, chunks are owned across nodes (`cluster.shared_hot`),
    /// objects are revalidated against their store, the version is still staged, `accept`
    /// declines, or the bytes are not in memory. The row comes from the same cache as
    /// [`Tier::get`]'s, so both paths see a write at the same moment.
    pub async fn get_small_hot<T>(
        &self,
        bucket: &str,
        key: &str,
        accept: impl FnOnce(&ObjectRecord) -> Option<(T, Option<u128>)>,
    ) -> Result<Option<(T, Option<bytes::Bytes>)>> {
        // An object over one memory item is never there: decline before `accept` works.
        let small = |rec: &ObjectRecord| self.hot().is_some_and(|h| h.fits_in_memory(rec.size));
        self.get_whole_hot(bucket, key, |rec| {
            small(rec).then(|| accept(rec)).flatten().map(|(t, vh)| (t, vh.map(|vh| (vh, rec.size))))
        })
        .await
    }

    /// The ready path's read, for originals ([`Tier::get_small_hot`]) and derivatives
    /// ([`Tier::derived_hash`]): `accept` sees the current row and names the bytes it needs
    /// by their [`Version::hash`] and length, or none (a 304). The bytes come from the
    /// memory tier only, shared, and count as a hit. `None` whenever the full path must
    /// decide ([`Tier::ready_row`]), `accept` declines, or the bytes are not in memory.
    /// Never reads a store or a hot file.
    pub async fn get_whole_hot<T>(
        &self,
        bucket: &str,
        key: &str,
        accept: impl FnOnce(&ObjectRecord) -> Option<(T, Option<(u128, u64)>)>,
    ) -> Result<Option<(T, Option<bytes::Bytes>)>> {
        let Some((hot, rec)) = self.ready_row(bucket, key).await? else { return Ok(None) };
        match accept(&rec) {
            None => Ok(None),
            Some((t, None)) => Ok(Some((t, None))),
            Some((t, Some((vh, len)))) if hot.fits_in_memory(len) => {
                Ok(hot.whole_in_memory_hashed(vh, len).map(|data| (t, Some(data))))
            }
            Some(_) => Ok(None),
        }
    }

    /// This node's hot tier and the current row of `bucket`/`key` (from the row cache that
    /// [`Tier::get`] reads), when a ready answer may come from the memory tier at all:
    /// what [`Tier::get_whole_hot`] checks first. `None`: the full path decides (no row, a
    /// staged version, no hot tier for the bucket, chunks owned across nodes, revalidation
    /// against the store).
    pub(super) async fn ready_row(&self, bucket: &str, key: &str) -> Result<Option<(&Hot, Arc<ObjectRecord>)>> {
        if self.inner.shared_hot || self.inner.revalidate_after.is_some() {
            return Ok(None);
        }
        let Some(hot) = self.hot() else { return Ok(None) };
        // Configured plans only (no catalog read): a bucket without one uses the hot tier,
        // as `Tier::plan` would say.
        if self.inner.plans.configured(bucket).is_some_and(|p| p.hot.is_none()) {
            return Ok(None);
        }
        let Some(rec) = self.inner.catalog.get_object_shared(bucket, key).await? else { return Ok(None) };
        Ok(rec.staging.is_none().then_some((hot, rec)))
    }

    /// Drops hot copies of `bucket`/`key` other than `keep` (called before a write is
    /// acknowledged); when a row was `replaced` (or removed), also starts removing the
    /// stored derivatives of its versions (`derived.rs`).
    pub(super) fn invalidate_hot(&self, bucket: &str, key: &str, keep: Option<&ObjectRecord>, replaced: bool) {
        if let Some(h) = self.hot() {
            h.invalidate(bucket, key, keep.map(version_of).as_ref());
        }
        if replaced {
            self.drop_derived_stored(bucket, key);
        }
        if self.inner.revalidate_after.is_some() {
            self.inner.validated.at.remove(&(bucket.to_owned(), key.to_owned()));
        }
    }

    /// Brings every object of `bucket` under `prefix` into the hot tier (with
    /// `cluster.shared_hot`, the chunks this node owns: `strata cache warm --cluster` asks
    /// every node). `progress` gets (objects done, bytes done, bytes fetched) after each
    /// object.
    pub async fn warm(&self, bucket: &str, prefix: &str, mut progress: impl FnMut(u64, u64, u64)) -> Result<()> {
        let b = self.plan(bucket).await?;
        let Some((hot, _)) = self.hot_for(&b) else {
            return Err(Error::new(ErrorKind::InvalidInput, format!("bucket {bucket} does not use the hot tier")));
        };
        let (mut after, mut n, mut bytes, mut fetched) = (String::new(), 0, 0, 0);
        loop {
            let page = self.inner.catalog.scan_objects(bucket, prefix, &after, 500).await?;
            let Some(last) = page.last() else { break };
            after = last.key.clone();
            for rec in page.iter().take_while(|r| r.key.starts_with(prefix)) {
                if rec.size > 0 {
                    fetched += self.warm_one(hot, &b, rec).await?;
                }
                n += 1;
                bytes += rec.size;
                progress(n, bytes, fetched);
            }
            if !last.key.starts_with(prefix) {
                break;
            }
        }
        Ok(())
    }
}
