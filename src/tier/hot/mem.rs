//! A small memory tier in front of the hot files, for small chunks (thumbnails, avatars):
//! a hit costs no file open and no trip to the blocking pool. With `hot.memory_large`,
//! larger chunks are kept too, from their second read from a hot file on (a one-off
//! download never takes memory), each at most a quarter of the tier, and loaded by one
//! reader at a time: their hits then skip the disk reads and block checks.
//!
//! Only bytes that passed their block CRCs on the way in are kept. Entries are keyed like
//! chunk files (version hash, index), so a new version never meets an old entry; writes
//! and operator evictions still drop entries at once, to free the memory. Eviction is
//! S3-FIFO, through the same policy code as the disk tier.

use super::eviction::{self, Eviction, EvictionKind};
use super::index::ChunkKey;
use bytes::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};

/// Largest chunk kept in memory (without `hot.memory_large`).
pub const ITEM_MAX: u64 = 256 << 10;

/// Large chunks remembered as read once (their second read loads them).
const SEEN_MAX: usize = 4096;

type Object = (String, String);

/// The memory tier. Used under a mutex; no I/O.
pub struct Mem {
    max: u64,
    used: u64,
    items: HashMap<ChunkKey, (Bytes, Object)>,
    by_object: HashMap<Object, HashSet<ChunkKey>>,
    policy: Box<dyn Eviction<ChunkKey>>,
    /// Whether large chunks are kept (`hot.memory_large`).
    large: bool,
    /// Large chunks read once from a hot file, oldest first.
    seen: (HashSet<ChunkKey>, VecDeque<ChunkKey>),
    /// Large chunks being loaded by a reader.
    loading: HashSet<ChunkKey>,
}

impl Mem {
    /// A tier of at most `max` bytes (0: off).
    pub fn new(max: u64) -> Self {
        Self {
            max,
            used: 0,
            items: HashMap::new(),
            by_object: HashMap::new(),
            policy: eviction::build(EvictionKind::S3Fifo, max.max(1)),
            large: false,
            seen: Default::default(),
            loading: HashSet::new(),
        }
    }

    /// Keeps large chunks too when `on`.
    pub fn with_large(mut self, on: bool) -> Self {
        self.large = on;
        self
    }

    /// Whether a reader of large chunk `k` (`n` bytes, opened from its hot file) should
    /// load it into memory now: large chunks are on, it fits, it was read once before, and
    /// nobody is loading it. `true` marks it loading until [`Mem::end_load`].
    pub fn begin_load(&mut self, k: ChunkKey, n: u64) -> bool {
        if !self.large || n > self.largest() || self.items.contains_key(&k) || self.loading.contains(&k) {
            return false;
        }
        if !self.seen.0.remove(&k) {
            self.seen.0.insert(k);
            self.seen.1.push_back(k);
            while self.seen.1.len() > SEEN_MAX {
                if let Some(old) = self.seen.1.pop_front() {
                    self.seen.0.remove(&old);
                }
            }
            return false;
        }
        self.loading.insert(k)
    }

    /// The largest chunk kept: a quarter of the tier with large chunks on, else
    /// [`ITEM_MAX`].
    fn largest(&self) -> u64 {
        if self.large { self.max / 4 } else { ITEM_MAX }
    }

    /// Ends a load that [`Mem::begin_load`] allowed (the reader `put` the bytes, or gave
    /// up).
    pub fn end_load(&mut self, k: ChunkKey) {
        self.loading.remove(&k);
    }

    /// The bytes of chunk `k`, counting a hit.
    pub fn get(&mut self, k: ChunkKey) -> Option<Bytes> {
        let (b, _) = self.items.get(&k)?;
        self.policy.hit(&k);
        Some(b.clone())
    }

    /// Keeps verified chunk bytes, evicting others as needed.
    pub fn put(&mut self, k: ChunkKey, (bucket, key): (&str, &str), data: Bytes) {
        let n = data.len() as u64;
        if n > self.largest().max(ITEM_MAX) || n > self.max || self.items.contains_key(&k) {
            return;
        }
        while self.used + n > self.max {
            let Some(v) = self.policy.evict(&mut |_| true) else { return };
            self.drop_item(&v);
        }
        let obj = (bucket.to_owned(), key.to_owned());
        self.by_object.entry(obj.clone()).or_default().insert(k);
        self.items.insert(k, (data, obj));
        self.policy.insert(k, n);
        self.used += n;
    }

    fn drop_item(&mut self, k: &ChunkKey) {
        let Some((b, obj)) = self.items.remove(k) else { return };
        self.used -= b.len() as u64;
        self.policy.remove(k);
        if let Some(set) = self.by_object.get_mut(&obj) {
            set.remove(k);
            if set.is_empty() {
                self.by_object.remove(&obj);
            }
        }
    }

    /// Drops chunks of `bucket`/`key` whose version hash is not `keep`.
    pub fn invalidate(&mut self, bucket: &str, key: &str, keep: Option<u128>) {
        let Some(set) = self.by_object.get(&(bucket.to_owned(), key.to_owned())) else { return };
        let gone: Vec<ChunkKey> = set.iter().filter(|c| Some(c.0) != keep).copied().collect();
        gone.iter().for_each(|k| self.drop_item(k));
    }

    /// Drops chunks of objects in `bucket` under `prefix`.
    pub fn evict_prefix(&mut self, bucket: &str, prefix: &str) {
        let gone: Vec<ChunkKey> = self
            .by_object
            .iter()
            .filter(|((b, k), _)| b == bucket && k.starts_with(prefix))
            .flat_map(|(_, s)| s.iter().copied())
            .collect();
        gone.iter().for_each(|k| self.drop_item(k));
    }

    /// Bytes held.
    pub fn used(&self) -> u64 {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_invalidated() {
        let mut m = Mem::new(100_000);
        for i in 0..10u32 {
            m.put((1, i), ("b", "k"), Bytes::from(vec![0u8; 30_000]));
        }
        assert!(m.used() <= 100_000);
        m.put((2, 0), ("b", "other"), Bytes::from(vec![1u8; 10]));
        m.invalidate("b", "k", None);
        assert_eq!(m.used(), 10);
        assert!(m.get((2, 0)).is_some());
        m.put((3, 0), ("b", "big"), Bytes::from(vec![0u8; (ITEM_MAX + 1) as usize]));
        assert!(m.get((3, 0)).is_none(), "chunks over ITEM_MAX stay on disk only");
        m.evict_prefix("b", "oth");
        assert_eq!(m.used(), 0);
    }

    #[test]
    fn a_large_chunk_is_loaded_on_its_second_read_by_one_reader() {
        let big = Bytes::from(vec![7u8; 1 << 20]);
        let mut off = Mem::new(8 << 20);
        assert!(!off.begin_load((1, 0), 1 << 20) && !off.begin_load((1, 0), 1 << 20), "off by default");
        let mut m = Mem::new(8 << 20).with_large(true);
        assert!(!m.begin_load((1, 0), 1 << 20), "a first read only marks it seen");
        assert!(m.begin_load((1, 0), 1 << 20), "the second read loads it");
        assert!(!m.begin_load((1, 0), 1 << 20), "one loader at a time");
        m.put((1, 0), ("b", "k"), big.clone());
        m.end_load((1, 0));
        assert_eq!(m.get((1, 0)).map(|b| b.len()), Some(1 << 20));
        assert!(!m.begin_load((1, 0), 1 << 20), "held already");
        assert!(!m.begin_load((2, 0), 3 << 20) && !m.begin_load((2, 0), 3 << 20), "over a quarter of the tier");
        m.put((2, 0), ("b", "k"), Bytes::from(vec![0u8; 3 << 20]));
        assert!(m.get((2, 0)).is_none(), "never held either");
        m.invalidate("b", "k", None);
        assert_eq!(m.used(), 0);
    }
}
