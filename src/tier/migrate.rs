//! Copy-on-read migration, in the style of Cloudflare Sippy: a bucket can name an origin
//! store; a read of a key the catalog does not have is looked up there, copied into the
//! bucket's own store and published, then served like any other object.
//!
//! The copy happens under the key's write lock, so concurrent first reads copy once. A
//! write through strata always wins: a key with a row is never taken from the origin
//! again. `strata copy ORIGIN DEST` followed by `strata import BUCKET` fills in the rest.

use super::{Tier, keys, now_ms, validate_key};
use crate::catalog::{ObjectHeaders, ObjectRecord};
use crate::error::{Error, ErrorKind, Result};
use futures::StreamExt;
use md5::{Digest, Md5};

impl Tier {
    /// Copies `bucket`/`key` in from the bucket's origin, when it has one and the origin
    /// has the key. `Ok(None)`: no origin, or not there either.
    pub(super) async fn migrate(&self, bucket: &str, key: &str) -> Result<Option<ObjectRecord>> {
        let Some((origin, prefix)) = self.inner.hot.origins.get(bucket) else { return Ok(None) };
        if validate_key(key).is_err() {
            return Ok(None);
        }
        let _guard = self.inner.locks.write(bucket, key).await;
        if let Some(rec) = self.inner.catalog.get_object(bucket, key).await? {
            return Ok(Some(rec));
        }
        let from = self.backend(origin)?.clone();
        let path = format!("{prefix}{key}");
        let Some(stat) = from.stat(&path).await? else { return Ok(None) };
        let b = self.bucket(bucket).await?;
        let to = self.backend(&b.backend)?.clone();
        let mut w = to.writer(&keys::store_path(&b.prefix, key), &stat.headers).await?;
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
            backend: b.backend.clone(),
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
        self.inner.catalog.put_object(&rec).await?;
        ::metrics::counter!("strata_migrated_objects_total").increment(1);
        tracing::info!(bucket, key, size, origin = %origin, "migrated on read");
        Ok(Some(rec))
    }
}
