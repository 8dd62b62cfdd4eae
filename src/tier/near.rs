//! The near cache of a shared hot tier (`cluster.shared_hot`): whole chunks this node read
//! through their owners, kept in memory up to `cluster.near_cache` bytes, so that one
//! popular object does not send every read of it to its owner.
//!
//! Keys are (the version's 128-bit name, the chunk index): a new version is a new key, so
//! nothing here can be stale. Admission and eviction are `quick_cache`'s (a new entry
//! must be read again before it displaces one that is), which keeps the one-off reads of
//! a scan from flushing the hot ones. It must not fetch anything itself.

use bytes::Bytes;

#[derive(Clone)]
struct ByLength;

impl quick_cache::Weighter<(u128, u64), Bytes> for ByLength {
    fn weight(&self, _: &(u128, u64), chunk: &Bytes) -> u64 {
        chunk.len() as u64
    }
}

/// Chunks read through their owners.
pub(super) struct Near {
    chunks: quick_cache::sync::Cache<(u128, u64), Bytes, ByLength>,
}

impl Near {
    /// A cache of at most `bytes`; `None` when that is 0.
    pub(super) fn new(bytes: u64, chunk_size: u64) -> Option<Near> {
        let items = usize::try_from(bytes / chunk_size.max(1)).unwrap_or(usize::MAX).max(1);
        (bytes > 0).then(|| Near { chunks: quick_cache::sync::Cache::with_weighter(items, bytes, ByLength) })
    }

    /// Chunk `idx` of version `hash`, when it is here.
    pub(super) fn get(&self, hash: u128, idx: u64) -> Option<Bytes> {
        let hit = self.chunks.get(&(hash, idx));
        if hit.is_some() {
            ::metrics::counter!("strata_peer_near_hits_total").increment(1);
        }
        hit
    }

    /// Keeps chunk `idx` of version `hash` (its whole bytes).
    pub(super) fn keep(&self, hash: u128, idx: u64, chunk: Bytes) {
        self.chunks.insert((hash, idx), chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_bytes_and_keyed_by_version() {
        let near = Near::new(4 << 10, 1 << 10).unwrap();
        for i in 0..64 {
            near.keep(7, i, Bytes::from(vec![1u8; 1 << 10]));
        }
        let held: usize = (0..64).filter_map(|i| near.get(7, i)).map(|b| b.len()).sum();
        assert!(held <= 4 << 10, "at most the bound: {held}");
        near.keep(8, 0, Bytes::from_static(b"new version"));
        assert_eq!(near.get(8, 0).as_deref(), Some(&b"new version"[..]));
        assert!(near.get(9, 0).is_none(), "another version is another key");
        assert!(Near::new(0, 1 << 10).is_none(), "0 turns it off");
    }
}
