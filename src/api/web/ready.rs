//! Ready answers: the hot-hit fast path of the web front end (issue 22,
//! `docs/design/hot-hits.md`). A plain GET of a whole small object that the memory tier
//! holds is answered from the shared bytes and a response head built once per version,
//! with no stream, no copy of the row and no header formatting per request.
//!
//! The fast path decides nothing on its own. The access check has already run
//! (`serve.rs`), the row is the one the full path would read (the same cache), and a head
//! is built by the full path's own code (`Plan::head` and `finish`), so both answer with
//! the same headers. A revalidation (`If-None-Match` or `If-Modified-Since`, what CDNs
//! and browsers send) gets its 304 here too, from the row alone, as the full path gives
//! it. Whatever the fast path does not handle (a query, a range, another conditional, a
//! coding that depends on `Accept-Encoding`, a redirect, a miss) falls through to the
//! full path. It must not read stores or the catalog itself. Derivatives (`?im=`) have a
//! fast path of their own, in `image.rs`, built the same way.

use super::serve::{Grant, Plan, finish};
use super::{Body, Web};
use crate::access_log::CacheStatus;
use crate::api::router::Target;
use crate::catalog::ObjectRecord;
use crate::config::ServeMode;
use crate::http::conditional::{self, Outcome, Validators};
use crate::names::ObjectRef;
use http::header as h;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use std::sync::Arc;

/// Heads kept (one per object version served so). About 1 KiB each.
const MAX_HEADS: usize = 10_000;

/// Request headers that send a request down the full path (`If-None-Match` and
/// `If-Modified-Since`, the revalidations, are answered here).
const DECLINE: [h::HeaderName; 4] = [h::RANGE, h::IF_MATCH, h::IF_UNMODIFIED_SINCE, h::IF_RANGE];

/// A response head worked out for one version of an object under one Cache-Control.
struct Head {
    etag: String,
    last_modified_ms: i64,
    size: u64,
    /// The version's hash (`Version::hash`), the memory tier's name for its bytes.
    vh: u128,
    cache_control: Option<String>,
    /// The heads of the 200 and of the 304; `None`: this version's answer depends on the
    /// request (a negotiated coding), so it always takes the full path.
    headers: Option<(HeaderMap, HeaderMap)>,
}

impl Head {
    fn fits(&self, rec: &ObjectRecord, cache_control: Option<&str>) -> bool {
        self.etag == rec.etag
            && self.last_modified_ms == rec.last_modified_ms
            && self.size == rec.size
            && self.cache_control.as_deref() == cache_control
    }
}

/// The heads of the ready answers: of originals by object, of derivatives by object and
/// tag (`image.rs`).
pub(super) struct Heads {
    objects: quick_cache::sync::Cache<(String, String), Arc<Head>>,
    pub(super) derived: quick_cache::sync::Cache<(String, String, String), Arc<super::image::DerivedHead>>,
}

impl Heads {
    /// Forgets every head (the web settings changed).
    pub(super) fn clear(&self) {
        self.objects.clear();
        self.derived.clear();
    }
}

impl Default for Heads {
    fn default() -> Self {
        Self { objects: quick_cache::sync::Cache::new(MAX_HEADS), derived: quick_cache::sync::Cache::new(MAX_HEADS) }
    }
}

impl Web {
    /// The ready answer to `req`, when the fast path applies; `None` sends it down the
    /// full path (which also answers every error).
    pub(super) async fn ready<B>(&self, req: &Request<B>, t: &Target, grant: &Grant) -> Option<Response<Body>> {
        if req.method() != Method::GET {
            return None;
        }
        if let Some(query) = req.uri().query() {
            // A derivative (`?im=`), or a signed link the full path serves.
            return self.ready_derivative(self.images.as_ref()?, req, t, grant, query).await;
        }
        if grant.download.is_some()
            || DECLINE.iter().any(|n| req.headers().contains_key(n))
            || self.policy.serve_mode(&t.bucket) != ServeMode::Proxy
        {
            return None;
        }
        let revalidation =
            req.headers().contains_key(h::IF_NONE_MATCH) || req.headers().contains_key(h::IF_MODIFIED_SINCE);
        let answer = |rec: &ObjectRecord| {
            let head = self.head(rec, grant, t);
            let (ok, not_modified) = head.headers.as_ref()?;
            let bytes = Some(head.vh);
            if !revalidation {
                return Some((ok.clone(), bytes));
            }
            // The ETag as the 200 sends it (quoted), so the comparison is the full path's.
            let etag = ok.get(h::ETAG)?.to_str().ok()?;
            let v = Validators { etag, last_modified_ms: head.last_modified_ms };
            match conditional::evaluate(req.headers(), &v) {
                Outcome::NotModified => Some((not_modified.clone(), None)),
                Outcome::Proceed => Some((ok.clone(), bytes)),
                Outcome::Failed => None,
            }
        };
        let (headers, data) = self.tier.get_small_hot(&t.bucket, &t.key, answer).await.ok()??;
        let mut r = match data {
            Some(data) => {
                let mut r = Response::new(Body::from(data));
                r.extensions_mut().insert(CacheStatus::Hit);
                r
            }
            None => {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                r
            }
        };
        *r.headers_mut() = headers;
        Some(r)
    }

    /// The ready heads of `rec` under `grant`, kept per version.
    fn head(&self, rec: &ObjectRecord, grant: &Grant, t: &Target) -> Arc<Head> {
        let cc = grant.cache_control.as_deref().or(rec.headers.cache_control.as_deref()).or(grant.fallback.as_deref());
        match self.heads.objects.get(&ObjectRef(&t.bucket, &t.key)) {
            Some(head) if head.fits(rec, cc) => head,
            _ => {
                let head = Arc::new(self.head_of(rec, cc, grant, t));
                self.heads.objects.insert((t.bucket.clone(), t.key.clone()), head.clone());
                head
            }
        }
    }

    /// Works out the heads of a whole-object 200 and of a 304 for `rec` with the full
    /// path's code: the plans of a plain GET and of one that revalidates this version.
    fn head_of(&self, rec: &ObjectRecord, cache_control: Option<&str>, grant: &Grant, t: &Target) -> Head {
        let plan = Plan::new(self, &HeaderMap::new(), rec);
        // A compressible body large enough to be compressed has one answer per coding.
        let negotiated = plan.vary && rec.size >= super::encode::MIN_COMPRESS;
        let headers = (!negotiated).then(|| {
            let mut r = plan.head(rec);
            r.extensions_mut().insert(CacheStatus::Hit);
            finish(&mut r, rec, grant, t);
            let mut revalidating = HeaderMap::new();
            if let Some(etag) = r.headers().get(h::ETAG) {
                revalidating.insert(h::IF_NONE_MATCH, etag.clone());
            }
            // As the full path answers a 304: no `X-Cache` (nothing was read).
            let mut not_modified = Plan::new(self, &revalidating, rec).head(rec);
            finish(&mut not_modified, rec, grant, t);
            (std::mem::take(r.headers_mut()), std::mem::take(not_modified.headers_mut()))
        });
        Head {
            etag: rec.etag.clone(),
            last_modified_ms: rec.last_modified_ms,
            size: rec.size,
            vh: crate::tier::version_of(rec).hash(),
            cache_control: cache_control.map(str::to_owned),
            headers,
        }
    }
}
