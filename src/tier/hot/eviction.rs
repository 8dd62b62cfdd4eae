//! Eviction orders: S3-FIFO (the default) and LRU, byte-weighted.
//!
//! An eviction order only ranks entries; it never touches files and never decides *whether* to
//! evict. The index asks it for victims until a reservation fits, and the `evictable`
//! callback lets the index veto entries that are being read, filled or pinned. The same
//! code runs in the simulator (`strata cache simulate`), so the measured hit ratios are the
//! ones the server gets.
//!
//! S3-FIFO follows Yang et al., "FIFO queues are all you need for cache eviction"
//! (SOSP '23): a small FIFO takes new entries and drops one-hit wonders early, a main FIFO
//! with 2-bit frequency counters keeps what was reused, and a ghost FIFO of recently
//! dropped keys sends a returning key straight to main.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;

pub use crate::config::EvictionKind;

/// Orders entries for eviction.
pub trait Eviction<K>: Send {
    /// A new entry of `size` bytes. Inserting a present key is a no-op.
    fn insert(&mut self, k: K, size: u64);
    /// `k` was read. Unknown keys are ignored.
    fn hit(&mut self, k: &K);
    /// `k` left the cache for another reason (invalidation). Unknown keys are ignored.
    fn remove(&mut self, k: &K);
    /// Picks and forgets the next victim that `evictable` accepts, or `None` when every
    /// entry is vetoed (or there are none). Vetoed entries keep their place.
    fn evict(&mut self, evictable: &mut dyn FnMut(&K) -> bool) -> Option<K>;
    /// The cache's bound became `capacity` bytes (a config reload). Orders that size
    /// nothing from it ignore this.
    fn resize(&mut self, _capacity: u64) {}
    /// Number of entries.
    fn len(&self) -> usize;
    /// Whether there are no entries.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Builds a policy for a cache of `capacity` bytes.
pub fn build<K: Copy + Eq + Hash + Send + 'static>(kind: EvictionKind, capacity: u64) -> Box<dyn Eviction<K>> {
    match kind {
        EvictionKind::S3Fifo => Box::new(S3Fifo::new(capacity)),
        EvictionKind::Lru => Box::new(Lru::default()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Small,
    Main,
}

#[derive(Debug)]
struct Meta {
    size: u64,
    freq: u8,
    queue: Queue,
    /// Bumped on every requeue; queue slots with an older generation are stale.
    gen_: u64,
}

/// S3-FIFO with lazy deletion: queue slots carry a generation, stale slots are skipped.
pub struct S3Fifo<K> {
    meta: HashMap<K, Meta>,
    small: VecDeque<(K, u64)>,
    main: VecDeque<(K, u64)>,
    ghost: VecDeque<(K, u64)>,
    ghost_set: HashMap<K, u64>,
    small_bytes: u64,
    main_bytes: u64,
    ghost_bytes: u64,
    small_target: u64,
    ghost_target: u64,
    next_gen: u64,
}

impl<K: Copy + Eq + Hash> S3Fifo<K> {
    /// A policy for `capacity` bytes: 10% small queue, ghost as large as main.
    pub fn new(capacity: u64) -> Self {
        Self {
            meta: HashMap::new(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: VecDeque::new(),
            ghost_set: HashMap::new(),
            small_bytes: 0,
            main_bytes: 0,
            ghost_bytes: 0,
            small_target: (capacity / 10).max(1),
            ghost_target: capacity - capacity / 10,
            next_gen: 0,
        }
    }

    fn push(&mut self, k: K, queue: Queue) {
        self.next_gen += 1;
        let g = self.next_gen;
        if let Some(m) = self.meta.get_mut(&k) {
            m.gen_ = g;
            m.queue = queue;
        }
        match queue {
            Queue::Small => self.small.push_back((k, g)),
            Queue::Main => self.main.push_back((k, g)),
        }
        // Stale slots accumulate under churn; compact when they dominate.
        if self.small.len() + self.main.len() > 4 * self.meta.len() + 64 {
            let meta = &self.meta;
            self.small.retain(|(k, g)| meta.get(k).is_some_and(|m| m.gen_ == *g));
            self.main.retain(|(k, g)| meta.get(k).is_some_and(|m| m.gen_ == *g));
        }
    }

    fn add_ghost(&mut self, k: K, size: u64) {
        self.ghost.push_back((k, size));
        self.ghost_set.insert(k, size);
        self.ghost_bytes += size;
        while self.ghost_bytes > self.ghost_target {
            let Some((g, s)) = self.ghost.pop_front() else { break };
            if self.ghost_set.get(&g) == Some(&s) {
                self.ghost_set.remove(&g);
            }
            self.ghost_bytes = self.ghost_bytes.saturating_sub(s);
        }
    }

    fn forget(&mut self, k: &K) -> Option<Meta> {
        let m = self.meta.remove(k)?;
        match m.queue {
            Queue::Small => self.small_bytes -= m.size,
            Queue::Main => self.main_bytes -= m.size,
        }
        Some(m)
    }

    /// Pops the live head of `queue`, skipping stale slots.
    fn pop(&mut self, queue: Queue) -> Option<K> {
        loop {
            let q = match queue {
                Queue::Small => &mut self.small,
                Queue::Main => &mut self.main,
            };
            let (k, g) = q.pop_front()?;
            if self.meta.get(&k).is_some_and(|m| m.gen_ == g && m.queue == queue) {
                return Some(k);
            }
        }
    }
}

impl<K: Copy + Eq + Hash + Send> Eviction<K> for S3Fifo<K> {
    fn resize(&mut self, capacity: u64) {
        // The queues move toward their new targets as entries come and go.
        self.small_target = (capacity / 10).max(1);
        self.ghost_target = capacity - capacity / 10;
    }

    fn insert(&mut self, k: K, size: u64) {
        if self.meta.contains_key(&k) {
            return;
        }
        let queue = if self.ghost_set.remove(&k).is_some() { Queue::Main } else { Queue::Small };
        match queue {
            Queue::Small => self.small_bytes += size,
            Queue::Main => self.main_bytes += size,
        }
        self.meta.insert(k, Meta { size, freq: 0, queue, gen_: 0 });
        self.push(k, queue);
    }

    fn hit(&mut self, k: &K) {
        if let Some(m) = self.meta.get_mut(k) {
            m.freq = (m.freq + 1).min(3);
        }
    }

    fn remove(&mut self, k: &K) {
        self.forget(k);
    }

    fn evict(&mut self, evictable: &mut dyn FnMut(&K) -> bool) -> Option<K> {
        // Every pass either evicts, promotes, decrements a counter or skips a vetoed entry;
        // counters are at most 3, so this bound is only reached when everything is vetoed.
        let mut budget = 5 * self.meta.len() + 8;
        while budget > 0 && !self.meta.is_empty() {
            budget -= 1;
            let from_small = self.small_bytes > self.small_target || self.main_bytes == 0;
            let queue = if from_small { Queue::Small } else { Queue::Main };
            let other = if from_small { Queue::Main } else { Queue::Small };
            let Some(k) = self.pop(queue).or_else(|| self.pop(other)) else { break };
            let queue = self.meta.get(&k).map_or(queue, |m| m.queue);
            let (freq, size) = self.meta.get(&k).map(|m| (m.freq, m.size)).unwrap_or((0, 0));
            if !evictable(&k) {
                self.push(k, queue);
                continue;
            }
            match queue {
                Queue::Small if freq >= 1 => {
                    self.small_bytes -= size;
                    self.main_bytes += size;
                    if let Some(m) = self.meta.get_mut(&k) {
                        m.freq = 0;
                    }
                    self.push(k, Queue::Main);
                }
                Queue::Main if freq >= 1 => {
                    if let Some(m) = self.meta.get_mut(&k) {
                        m.freq -= 1;
                    }
                    self.push(k, Queue::Main);
                }
                Queue::Small => {
                    self.forget(&k);
                    self.add_ghost(k, size);
                    return Some(k);
                }
                Queue::Main => {
                    self.forget(&k);
                    return Some(k);
                }
            }
        }
        None
    }

    fn len(&self) -> usize {
        self.meta.len()
    }
}

/// Least recently used, by a logical clock.
pub struct Lru<K> {
    tick: u64,
    at: HashMap<K, u64>,
    order: BTreeMap<u64, K>,
}

impl<K> Default for Lru<K> {
    fn default() -> Self {
        Self { tick: 0, at: HashMap::new(), order: BTreeMap::new() }
    }
}

impl<K: Copy + Eq + Hash + Send> Eviction<K> for Lru<K> {
    fn insert(&mut self, k: K, _size: u64) {
        if !self.at.contains_key(&k) {
            self.tick += 1;
            self.at.insert(k, self.tick);
            self.order.insert(self.tick, k);
        }
    }

    fn hit(&mut self, k: &K) {
        if let Some(t) = self.at.get_mut(k) {
            self.order.remove(t);
            self.tick += 1;
            *t = self.tick;
            self.order.insert(self.tick, *k);
        }
    }

    fn remove(&mut self, k: &K) {
        if let Some(t) = self.at.remove(k) {
            self.order.remove(&t);
        }
    }

    fn evict(&mut self, evictable: &mut dyn FnMut(&K) -> bool) -> Option<K> {
        let (&t, &k) = self.order.iter().find(|(_, k)| evictable(k))?;
        self.order.remove(&t);
        self.at.remove(&k);
        Some(k)
    }

    fn len(&self) -> usize {
        self.at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kinds() -> [EvictionKind; 2] {
        [EvictionKind::S3Fifo, EvictionKind::Lru]
    }

    #[test]
    fn vetoed_entries_are_never_evicted() {
        for kind in kinds() {
            let mut p = build::<u32>(kind, 100);
            for k in 0..10 {
                p.insert(k, 10);
            }
            let mut seen = vec![];
            while let Some(k) = p.evict(&mut |k| k % 2 == 0) {
                seen.push(k);
            }
            seen.sort();
            assert_eq!(seen, vec![0, 2, 4, 6, 8], "{kind:?}");
            assert_eq!(p.len(), 5);
            assert_eq!(p.evict(&mut |_| false), None);
        }
    }

    #[test]
    fn s3fifo_keeps_reused_entries_through_a_scan() {
        let mut p = S3Fifo::<u32>::new(100);
        let mut resident = std::collections::HashSet::new();
        let mut access = |p: &mut S3Fifo<u32>, k: u32| {
            if resident.contains(&k) {
                p.hit(&k);
                return;
            }
            while p.small_bytes + p.main_bytes + 1 > 100 {
                let v = p.evict(&mut |_| true).unwrap();
                resident.remove(&v);
            }
            p.insert(k, 1);
            resident.insert(k);
        };
        for _ in 0..3 {
            for k in 0..50 {
                access(&mut p, k);
            }
        }
        for k in 1000..1500 {
            access(&mut p, k);
        }
        let kept = (0..50).filter(|k| p.meta.contains_key(k)).count();
        assert!(kept >= 45, "only {kept} of 50 hot keys survived a scan");
    }

    #[test]
    fn lru_evicts_least_recent() {
        let mut p = Lru::<u32>::default();
        for k in 0..3 {
            p.insert(k, 1);
        }
        p.hit(&0);
        assert_eq!(p.evict(&mut |_| true), Some(1));
        assert_eq!(p.evict(&mut |_| true), Some(2));
        assert_eq!(p.evict(&mut |_| true), Some(0));
    }

    proptest! {
        #[test]
        fn every_inserted_key_leaves_exactly_once(ops in proptest::collection::vec((0u8..4, 0u32..40), 1..400)) {
            for kind in kinds() {
                let mut p = build::<u32>(kind, 50);
                let mut live = std::collections::HashSet::new();
                for (op, k) in &ops {
                    match op {
                        0 => { p.insert(*k, 1 + u64::from(*k % 5)); live.insert(*k); }
                        1 => p.hit(k),
                        2 => { p.remove(k); live.remove(k); }
                        _ => if let Some(v) = p.evict(&mut |_| true) {
                            prop_assert!(live.remove(&v), "{kind:?} evicted {v}, which is not live");
                        },
                    }
                    prop_assert_eq!(p.len(), live.len());
                }
                while let Some(v) = p.evict(&mut |_| true) {
                    prop_assert!(live.remove(&v));
                }
                prop_assert!(live.is_empty());
            }
        }
    }
}
