//! Bytes derived from one version of an object (image derivatives), kept in the hot tier
//! beside the original's chunks.
//!
//! A derivative is stored as a hot-tier object of the original's bucket and key whose
//! version names the original's ETag and modification time plus the derivative's tag. So
//! it is counted in the tier's bounds and evicted by its policy like any chunk, and the
//! invalidation that drops an overwritten or deleted original's chunks before the write
//! is acknowledged drops its derivatives with them. A node that reads a newer row asks
//! for a newer version's derivative, so none is served stale on any node.
//!
//! A copy can also be kept in a store (`images.store`, `stored_path`), so derivatives
//! outlive the hot tier; its path names the original's version as the hot tier's name
//! does, under a folder per original key, which an overwrite or delete of the original
//! empties (`drop_derived_stored`).
//!
//! This file knows nothing of images: what the bytes are, and who makes them, is
//! `crate::images`'s.

use super::Tier;
use super::read::version_of;
use crate::catalog::ObjectRecord;
use crate::config::FillMode;
use crate::error::{Error, ErrorKind, Result};
use crate::tier::hot::{OpenFn, Version};
use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use std::ops::Range;
use std::sync::Arc;

/// The hot-tier version of derivative `tag` of `rec`, `len` bytes long.
fn derived_version(rec: &ObjectRecord, tag: &str, len: u64) -> Version {
    let mut v = version_of(rec);
    v.etag = format!("{}|derived|{tag}", rec.etag);
    v.size = len;
    v
}

/// Where a store keeps derivative `tag` of `rec`: under `.strata-derivatives/`, by
/// bucket, then a digest of the key (one folder per original: [`stored_dir`]), then a
/// digest of the original's version and the tag, so any key and tag make a short path
/// every store takes, and a new version never finds an old copy. Bucket names cannot
/// start with a dot, so the prefix meets no bucket's default one.
fn stored_path(rec: &ObjectRecord, tag: &str) -> String {
    let version = digest(&[&rec.etag, &rec.last_modified_ms.to_string(), tag]);
    format!("{}{version}", stored_dir(&rec.bucket, &rec.key))
}

/// The folder of every stored derivative of every version of `bucket`/`key`.
fn stored_dir(bucket: &str, key: &str) -> String {
    format!(".strata-derivatives/{bucket}/{}/", digest(&[key]))
}

/// SHA-256 of `parts`, each prefixed by its length (so no two lists of parts meet), in hex.
fn digest(parts: &[&str]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

impl Tier {
    /// The bytes of derivative `tag` of `rec` (`len` long), when the hot tier holds them
    /// all. `None` on any miss: the caller makes it again. Never starts a cold read.
    pub async fn derived(&self, rec: &ObjectRecord, tag: &str, len: u64) -> Option<Bytes> {
        let hot = self.hot()?;
        let v = derived_version(rec, tag, len);
        if let Some(bytes) = hot.whole_in_memory(&v) {
            return Some(bytes);
        }
        if len == 0 || !hot.holds(&v, 0..len) {
            return None;
        }
        // Evicted between the check and the read: the fill asks this, and gets a miss.
        let gone: OpenFn = Arc::new(|_| async { Err(Error::new(ErrorKind::NotFound, "derivative evicted")) }.boxed());
        let mut s = hot.read(v, 0..len, FillMode::Stream, gone).await.ok()?;
        let first = s.next().await?.ok()?;
        if first.len() as u64 == len {
            return Some(first); // one piece: no copy
        }
        let mut out = BytesMut::with_capacity(usize::try_from(len).ok()?);
        out.extend_from_slice(&first);
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.ok()?);
        }
        (out.len() as u64 == len).then(|| out.freeze())
    }

    /// The [`Version::hash`] of derivative `tag` of `rec`, `len` bytes long: what a caller
    /// that keeps something per derivative (the ready heads of `api::web`) names its bytes
    /// by in [`Tier::get_whole_hot`].
    pub fn derived_hash(rec: &ObjectRecord, tag: &str, len: u64) -> u128 {
        derived_version(rec, tag, len).hash()
    }

    /// Derivative `tag` of `rec` from `store` (`images.store`), or `None` when the store
    /// has no copy of it (never made, or made for another version: the path names the
    /// version).
    pub async fn read_derived_stored(&self, store: &str, rec: &ObjectRecord, tag: &str) -> Result<Option<Bytes>> {
        let b = self.backend(store)?;
        let mut s = match b.read(&stored_path(rec, tag), None).await {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out = BytesMut::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(Some(out.freeze()))
    }

    /// Writes derivative `tag` of `rec` to `store` (`images.store`), whole or not at all
    /// (the store's writer commits it at once). Idempotent: the same version and tag make
    /// the same bytes under the same path.
    pub async fn write_derived_stored(&self, store: &str, rec: &ObjectRecord, tag: &str, bytes: Bytes) -> Result<()> {
        let b = self.backend(store)?;
        let mut w = b.writer(&stored_path(rec, tag), &crate::backend::WriteOptions::default()).await?;
        if let Err(e) = w.write(bytes).await {
            super::abort_quietly(w).await;
            return Err(e);
        }
        w.commit().await
    }

    /// Names the store that keeps derivatives (`images.store`), so that a write or delete of
    /// an original removes the copies of its old versions there. Set once, at start.
    pub fn keep_derived_in(&self, store: &str) {
        let _ = self.inner.derived_store.set(store.to_owned());
    }

    /// Deletes, in the background, the stored derivatives of `bucket`/`key` (every version:
    /// its original was just overwritten or deleted, so no row names those versions any
    /// more). Best effort: a copy left behind (the store failed, or a render of the old
    /// version stored it after this ran) is never served, as its path names the old
    /// version; only its bytes stay until the key changes again. A copy of the new version
    /// stored before this lists the folder is removed too, and is made again on its next
    /// miss.
    pub(super) fn drop_derived_stored(&self, bucket: &str, key: &str) {
        let Some(store) = self.inner.derived_store.get() else { return };
        let Ok(b) = self.backend(store) else { return };
        let (dir, store) = (stored_dir(bucket, key), store.clone());
        tokio::spawn(async move {
            let mut entries = b.list(&dir);
            while let Some(e) = entries.next().await {
                let r = match e {
                    Ok(e) => b.delete(&e.path).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = r {
                    tracing::warn!(%store, folder = %dir, error = %e, "old stored derivatives not removed");
                    return;
                }
            }
        });
    }

    /// Keeps `bytes` as derivative `tag` of `rec` in the hot tier; `false` when there is
    /// none to keep them in. Idempotent: bytes already held are not written again.
    pub async fn keep_derived(&self, rec: &ObjectRecord, tag: &str, bytes: Bytes) -> Result<bool> {
        let Some(hot) = self.hot() else { return Ok(false) };
        let len = bytes.len() as u64;
        if len == 0 {
            return Ok(false);
        }
        let v = derived_version(rec, tag, len);
        let open: OpenFn = Arc::new(move |r: Range<u64>| {
            let part = bytes.slice(r.start as usize..r.end as usize);
            async move { Ok(futures::stream::once(async move { Ok(part) }).boxed()) }.boxed()
        });
        hot.warm(v, 0..len, open).await.map(|_| true)
    }
}
