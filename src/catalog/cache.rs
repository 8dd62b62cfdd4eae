//! An in-process cache of bucket and object rows.
//!
//! Every write through this [`Catalog`](super::Catalog) updates the cache, and a
//! generation counter keeps a read that raced a write from caching what it read, so this
//! process always reads its own writes. Other writers (other nodes on PostgreSQL,
//! `strata import` on a SQLite file) reach it through the change feed (`feed.rs`), which
//! forgets the rows they changed within `cluster.invalidation_lag`. A row is trusted for
//! [`TTL`]; while the feed polls successfully, for up to [`FED_TTL`] (issue 22: a hot set
//! wider than what SQLite rereads in a TTL made every hit a query). Should the feed stop,
//! rows fall back to the TTL within one TTL. Reads whose answer must be the committed row
//! (the uploader's version check, a read's check after the store answered) use
//! [`Catalog::get_object_fresh`](super::Catalog::get_object_fresh).

use super::{BucketRecord, ObjectRecord};
use crate::names::ObjectRef;
use quick_cache::sync::Cache;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a row is trusted without asking the database, and without the change feed.
pub const TTL: Duration = Duration::from_secs(2);
/// How long a row is trusted while the change feed polls successfully. Shorter than the
/// time the feed keeps changes (two minutes), so a feed that recovers after a pause finds
/// every change of a row it still trusts.
pub const FED_TTL: Duration = Duration::from_secs(60);
/// Object rows kept; past it `quick_cache` evicts (S3-FIFO), so a scan does not flush
/// the rows that are read again and again.
const MAX_ROWS: usize = 200_000;
/// Bucket rows kept.
const MAX_BUCKETS: usize = 10_000;
/// Locks that turn concurrent misses of one row into one database read.
const FILL_STRIPES: usize = 256;

type Slot<T> = (Instant, Option<T>);

/// Cached rows (a `None` row records that there is none).
pub struct RowCache {
    generation: AtomicU64,
    /// When the change feed last polled successfully (ms after `born`; 0: never).
    fed_at: AtomicU64,
    born: Instant,
    /// Orders a read's fill against a write's update: a fill checks the generation and
    /// inserts under it, and every write's update takes it, so a stale fill can never
    /// land after the write it raced. Lookups do not take it.
    order: Mutex<()>,
    /// Shared rows: a hit hands out the row without copying it (the hot-hit path reads
    /// one per request).
    objects: Cache<(String, String), Slot<Arc<ObjectRecord>>>,
    buckets: Cache<String, Slot<BucketRecord>>,
    /// Held while a row is read to fill the cache (striped by row): the other readers of
    /// that row wait and then find it cached. Without it, every reader of a popular row
    /// that had just expired queried SQLite at once, through its one worker thread: the
    /// HTTP/2 benchmark (640 requests in flight) served 10k instead of 26k requests/s.
    fills: Vec<tokio::sync::Mutex<()>>,
}

impl Default for RowCache {
    fn default() -> Self {
        Self {
            generation: AtomicU64::new(0),
            fed_at: AtomicU64::new(0),
            born: Instant::now(),
            order: Mutex::new(()),
            objects: Cache::new(MAX_ROWS),
            buckets: Cache::new(MAX_BUCKETS),
            fills: (0..FILL_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl RowCache {
    /// The change feed polled successfully, in a poll that began at `began`: every change
    /// committed before then has been forgotten here.
    pub fn fed(&self, began: Instant) {
        let ms = u64::try_from(began.saturating_duration_since(self.born).as_millis()).unwrap_or(u64::MAX);
        self.fed_at.store(ms.max(1), SeqCst);
    }

    /// Whether the feed polled successfully within the last TTL.
    fn feed_alive(&self) -> bool {
        let at = self.fed_at.load(SeqCst);
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        at > 0 && now.saturating_sub(at) < TTL.as_millis() as u64
    }

    fn fresh<T>(&self, slot: Option<Slot<T>>) -> Option<Option<T>> {
        let (at, v) = slot?;
        let age = at.elapsed();
        (age < TTL || (age < FED_TTL && self.feed_alive())).then_some(v)
    }

    /// The generation to pass to `fill_*` after a database read.
    pub fn generation(&self) -> u64 {
        self.generation.load(SeqCst)
    }

    /// Called before a database write: readers that started earlier will not cache.
    pub fn begin_write(&self) {
        self.generation.fetch_add(1, SeqCst);
    }

    /// The fill lock of a row, to hold across its database read.
    pub async fn filling(&self, row: &(impl std::hash::Hash + ?Sized)) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let h = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(row);
        self.fills[(h as usize) % FILL_STRIPES].lock().await
    }

    fn ordered(&self) -> std::sync::MutexGuard<'_, ()> {
        self.order.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A cached object row: `Some(None)` when the cache knows there is none.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Option<Arc<ObjectRecord>>> {
        self.fresh(self.objects.get(&ObjectRef(bucket, key)))
    }

    /// Caches what a read found, unless a write began since `generation`.
    pub fn fill_object(&self, generation: u64, bucket: &str, key: &str, row: Option<Arc<ObjectRecord>>) {
        let _order = self.ordered();
        if self.generation() == generation {
            self.objects.insert((bucket.to_owned(), key.to_owned()), (Instant::now(), row));
        }
    }

    /// After a write of `bucket`/`key`: its new row (or none).
    pub fn set_object(&self, bucket: &str, key: &str, row: Option<ObjectRecord>) {
        let _order = self.ordered();
        self.objects.insert((bucket.to_owned(), key.to_owned()), (Instant::now(), row.map(Arc::new)));
    }

    /// Forgets an object row (a write whose outcome is not known here).
    pub fn forget_object(&self, bucket: &str, key: &str) {
        let _order = self.ordered();
        self.objects.remove(&ObjectRef(bucket, key));
    }

    /// A cached bucket row.
    pub fn bucket(&self, name: &str) -> Option<Option<BucketRecord>> {
        self.fresh(self.buckets.get(name))
    }

    /// Caches a bucket read, unless a write began since `generation`.
    pub fn fill_bucket(&self, generation: u64, name: &str, row: Option<BucketRecord>) {
        let _order = self.ordered();
        if self.generation() == generation {
            self.buckets.insert(name.to_owned(), (Instant::now(), row));
        }
    }

    /// Forgets a bucket row and every object row of that bucket.
    pub fn forget_bucket(&self, name: &str) {
        let _order = self.ordered();
        self.buckets.remove(name);
        self.objects.retain(|(b, _), _| b != name);
    }
}

/// The public row operations: the database plus the cache, when there is one.
impl super::Catalog {
    pub(super) fn write_begins(&self) {
        if let Some(c) = &self.cache {
            c.begin_write();
        }
    }

    /// Creates a bucket. Fails with `BucketExists` when the name is taken.
    pub async fn create_bucket(&self, b: &BucketRecord) -> crate::error::Result<()> {
        self.write_begins();
        let r = self.db_create_bucket(b).await;
        self.cache.iter().for_each(|c| c.forget_bucket(&b.name));
        r
    }

    /// Creates a bucket declared in the config, or updates its backend and prefix.
    pub async fn ensure_bucket(&self, b: &BucketRecord) -> crate::error::Result<()> {
        self.write_begins();
        let r = self.db_ensure_bucket(b).await;
        self.cache.iter().for_each(|c| c.forget_bucket(&b.name));
        r
    }

    /// Deletes an empty bucket: `BucketNotFound` if absent, `BucketNotEmpty` while it holds
    /// objects or multipart uploads. The check and the delete are one transaction.
    pub async fn delete_bucket(&self, name: &str) -> crate::error::Result<()> {
        self.write_begins();
        let r = self.db_delete_bucket(name).await;
        self.cache.iter().for_each(|c| c.forget_bucket(name));
        r
    }

    /// The bucket `name`, if it exists.
    pub async fn get_bucket(&self, name: &str) -> crate::error::Result<Option<BucketRecord>> {
        let Some(c) = &self.cache else { return self.db_get_bucket(name).await };
        if let Some(hit) = c.bucket(name) {
            return Ok(hit);
        }
        let _fill = c.filling(name).await;
        if let Some(hit) = c.bucket(name) {
            return Ok(hit);
        }
        let g = c.generation();
        let row = self.db_get_bucket(name).await?;
        c.fill_bucket(g, name, row.clone());
        Ok(row)
    }

    /// Inserts or replaces the row of `o.bucket`/`o.key`.
    pub async fn put_object(&self, o: &ObjectRecord) -> crate::error::Result<()> {
        self.write_begins();
        let r = self.db_put_object(o).await;
        self.settle(&o.bucket, &o.key, r.is_ok().then(|| Some(o.clone())));
        r
    }

    /// Inserts the row only if the key has none; returns whether it was inserted.
    pub async fn insert_object_if_absent(&self, o: &ObjectRecord) -> crate::error::Result<bool> {
        self.write_begins();
        let r = self.db_insert_object_if_absent(o).await;
        self.settle(&o.bucket, &o.key, None);
        r
    }

    /// The row of `bucket`/`key`, if any.
    pub async fn get_object(&self, bucket: &str, key: &str) -> crate::error::Result<Option<ObjectRecord>> {
        Ok(self.get_object_shared(bucket, key).await?.map(Arc::unwrap_or_clone))
    }

    /// [`Catalog::get_object`], the row shared with the cache instead of copied.
    pub async fn get_object_shared(&self, bucket: &str, key: &str) -> crate::error::Result<Option<Arc<ObjectRecord>>> {
        let Some(c) = &self.cache else { return Ok(self.db_get_object(bucket, key).await?.map(Arc::new)) };
        if let Some(hit) = c.object(bucket, key) {
            return Ok(hit);
        }
        // Boxed: a database read's state is large, and a cached row should not carry it.
        Box::pin(self.fill_object(c, bucket, key)).await
    }

    /// Reads a row into the cache (one reader per row at a time).
    async fn fill_object(
        &self,
        c: &RowCache,
        bucket: &str,
        key: &str,
    ) -> crate::error::Result<Option<Arc<ObjectRecord>>> {
        let _fill = c.filling(&(bucket, key)).await;
        if let Some(hit) = c.object(bucket, key) {
            return Ok(hit);
        }
        let g = c.generation();
        let row = self.db_get_object(bucket, key).await?.map(Arc::new);
        c.fill_object(g, bucket, key, row.clone());
        Ok(row)
    }

    /// Removes the row; returns whether one existed. Idempotent.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> crate::error::Result<bool> {
        self.write_begins();
        let r = self.db_delete_object(bucket, key).await;
        self.settle(bucket, key, r.is_ok().then_some(None));
        r
    }

    /// Completes an upload: writes the object row and removes the upload and its parts, as
    /// one transaction, so the object appears exactly when the upload disappears.
    pub async fn complete_upload(&self, upload_id: &str, o: &ObjectRecord) -> crate::error::Result<()> {
        self.write_begins();
        let r = self.db_complete_upload(upload_id, o).await;
        self.settle(&o.bucket, &o.key, r.is_ok().then(|| Some(o.clone())));
        r
    }

    /// The change feed read the whole log in a poll that began at `began` (see
    /// [`RowCache::fed`]).
    pub fn feed_polled(&self, began: Instant) {
        if let Some(c) = &self.cache {
            c.fed(began);
        }
    }

    /// Forgets the cached rows another writer changed (`None` key: the bucket's row, and
    /// every object row of that bucket). Reads racing this do not cache what they read.
    pub fn forget_cached(&self, changed: &[(String, Option<String>)]) {
        let Some(c) = &self.cache else { return };
        if changed.is_empty() {
            return;
        }
        c.begin_write();
        for (bucket, key) in changed {
            match key {
                Some(k) => c.forget_object(bucket, k),
                None => c.forget_bucket(bucket),
            }
        }
    }

    /// The committed row of `bucket`/`key`, read from the database whatever is cached.
    pub async fn get_object_fresh(&self, bucket: &str, key: &str) -> crate::error::Result<Option<ObjectRecord>> {
        let row = self.db_get_object(bucket, key).await?;
        if let Some(c) = &self.cache
            && c.object(bucket, key).is_some_and(|cached| cached.as_deref() != row.as_ref())
        {
            // The cache is behind the database (another node's change on its way through
            // the feed): forget it now, and keep reads that raced this one from caching.
            c.begin_write();
            c.forget_object(bucket, key);
        }
        Ok(row)
    }

    /// After a write: the row it left (`Some`), or forget the key when the outcome is unknown.
    pub(super) fn settle(&self, bucket: &str, key: &str, known: Option<Option<ObjectRecord>>) {
        let Some(c) = &self.cache else { return };
        match known {
            Some(row) => c.set_object(bucket, key, row),
            None => c.forget_object(bucket, key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 22: a row outlives the TTL only while the change feed polls, and never
    /// outlives `FED_TTL`.
    #[test]
    fn rows_outlive_the_ttl_only_while_the_feed_polls() {
        let Some(born) = Instant::now().checked_sub(Duration::from_secs(100)) else { return };
        let c = RowCache { born, ..RowCache::default() };
        let put = |age: u64| {
            let at = Instant::now().checked_sub(Duration::from_secs(age)).unwrap_or(born);
            c.objects.insert(("b".into(), "k".into()), (at, Some(Arc::new(sample()))));
        };
        put(0);
        assert!(c.object("b", "k").is_some(), "young rows are trusted without a feed");
        put(5);
        assert_eq!(c.object("b", "k"), None, "past the TTL, without a feed");
        c.fed(Instant::now());
        assert!(c.object("b", "k").is_some(), "past the TTL, while the feed polls");
        put(70);
        assert_eq!(c.object("b", "k"), None, "never past FED_TTL");
        put(5);
        c.fed(born + Duration::from_secs(90));
        assert_eq!(c.object("b", "k"), None, "a feed silent for longer than the TTL is not trusted");
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_cached() {
        let c = RowCache::default();
        let g = c.generation();
        c.begin_write();
        c.set_object("b", "k", None);
        c.fill_object(g, "b", "k", Some(Arc::new(sample())));
        assert_eq!(c.object("b", "k"), Some(None), "the stale read must not replace the write");
        let g = c.generation();
        c.fill_object(g, "b", "k2", Some(Arc::new(sample())));
        assert_eq!(c.object("b", "k2"), Some(Some(Arc::new(sample()))));
        c.forget_bucket("b");
        assert_eq!(c.object("b", "k2"), None);
    }

    /// Concurrent misses of one row wait for the first reader's fill.
    #[tokio::test]
    async fn one_fill_per_row_at_a_time() {
        let c = Arc::new(RowCache::default());
        let first = c.filling(&("b", "k")).await;
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move {
                let _g = c.filling(&("b", "k")).await;
                c.object("b", "k")
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "the second reader waits for the first");
        c.fill_object(c.generation(), "b", "k", Some(Arc::new(sample())));
        drop(first);
        assert_eq!(waiter.await.unwrap(), Some(Some(Arc::new(sample()))), "and then finds the row cached");
    }

    fn sample() -> ObjectRecord {
        ObjectRecord {
            bucket: "b".into(),
            key: "k".into(),
            size: 1,
            etag: "e".into(),
            last_modified_ms: 1,
            backend: "local".into(),
            headers: Default::default(),
            user_meta: Default::default(),
            ..Default::default()
        }
    }
}
