//! Per-key reader/writer locks, striped so memory stays bounded however many keys exist.
//!
//! Two keys may share a stripe; that only costs a little waiting, never correctness.

use std::hash::{Hash, Hasher};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

const STRIPES: usize = 1024;

pub(super) struct KeyLocks {
    stripes: Vec<RwLock<()>>,
}

impl KeyLocks {
    pub(super) fn new() -> Self {
        Self { stripes: (0..STRIPES).map(|_| RwLock::new(())).collect() }
    }

    fn stripe(&self, bucket: &str, key: &str) -> &RwLock<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (bucket, key).hash(&mut h);
        &self.stripes[(h.finish() as usize) % STRIPES]
    }

    pub(super) async fn read(&self, bucket: &str, key: &str) -> RwLockReadGuard<'_, ()> {
        self.stripe(bucket, key).read().await
    }

    pub(super) async fn write(&self, bucket: &str, key: &str) -> RwLockWriteGuard<'_, ()> {
        self.stripe(bucket, key).write().await
    }
}
