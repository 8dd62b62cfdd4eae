//! Reads that bypass strata's own byte path: presigned cold-store URLs for the redirect
//! and "direct" serving modes, and whether a read would be served hot (for the access log).

use super::Tier;
use crate::catalog::ObjectRecord;
use crate::error::Result;
use std::ops::Range;
use std::time::Duration;

impl Tier {
    /// A presigned GET URL for `rec` on the first healthy store that holds its version,
    /// valid for `ttl`. `Ok(None)` when no such store can presign (a disk store, or the
    /// version is still only in the journal): the caller serves the bytes itself.
    pub async fn presign(
        &self,
        rec: &ObjectRecord,
        ttl: Duration,
        disposition: Option<&str>,
    ) -> Result<Option<String>> {
        if rec.staging.is_some() {
            return Ok(None);
        }
        let b = self.plan(&rec.bucket).await?;
        let path = b.path_of(&rec.key);
        for store in self.replica_order(&b, rec) {
            let backend = self.backend(&store)?;
            if !backend.capability().presign {
                continue;
            }
            if let Some(url) = backend.presign_read(&path, ttl, disposition).await? {
                return Ok(Some(url));
            }
        }
        Ok(None)
    }

    /// Whether a read of `range` of `rec` would come from the hot tier (or its staging
    /// file) without touching a cold store. A hint for logs: it can change a moment later.
    pub fn is_hot(&self, rec: &ObjectRecord, range: Range<u64>) -> bool {
        if rec.staging.is_some() {
            return true;
        }
        // Only the configured plans are looked at (no catalog read per request): a bucket
        // without one uses the hot tier.
        let uses_hot = self.inner.plans.configured(&rec.bucket).is_none_or(|p| p.hot.is_some());
        match &self.inner.hot {
            Some(hot) if uses_hot => hot.holds(&super::version_of(rec), range),
            _ => false,
        }
    }
}
