//! `GET /bucket/key?im=…`: a derivative of an object the access check already let the
//! client read. The options are a preset's or signed (`images::options`); conditionals
//! are answered before any render; the answer carries the original's Cache-Control and,
//! when the format came from `Accept`, `Vary: Accept`. A derivative this node keeps in
//! the memory tier is answered ready (`ready_derivative`, `docs/design/hot-hits.md`),
//! with the same heads as the full path (`derivative`).

use super::serve::{Grant, denied};
use super::{Body, Web, from_error, text};
use crate::access_log::CacheStatus;
use crate::api::router::Target;
use crate::catalog::ObjectRecord;
use crate::http::conditional::{self, Outcome, Validators};
use crate::images::options::{Asked, Refusal, Resolved};
use crate::images::render::RenderError;
use crate::images::{ImageError, Images};
use http::header::{self as h, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use sha2::Digest;
use std::sync::Arc;

impl Web {
    /// Answers a derivative request for `target`, which `grant` lets the client read.
    pub(super) async fn derivative<B>(
        &self,
        images: &Images,
        req: &Request<B>,
        target: &Target,
        grant: &Grant,
        asked: Asked,
    ) -> Response<Body> {
        let now = crate::clock::now_secs();
        let links = self.policy.links();
        let opts = match asked.authorize(images.config(), &links, (&target.bucket, &target.key), now) {
            Ok(o) => o,
            Err(r) => return refused(images, &r),
        };
        let accept = req.headers().get(h::ACCEPT).and_then(|v| v.to_str().ok());
        let resolved = opts.resolve(accept, images.config());
        let rec = match self.tier.head(&target.bucket, &target.key).await {
            Ok(r) => r,
            Err(e) => return from_error(&e),
        };
        let tag = resolved.tag();
        let etag = derived_etag(&rec, &tag);
        let v = Validators { etag: &etag, last_modified_ms: rec.last_modified_ms };
        match conditional::evaluate(req.headers(), &v) {
            Outcome::NotModified => return head(StatusCode::NOT_MODIFIED, &rec, &resolved, &etag, grant),
            Outcome::Failed => return head(StatusCode::PRECONDITION_FAILED, &rec, &resolved, &etag, grant),
            Outcome::Proceed => {}
        }
        let d = match images.derivative(&rec, &resolved, &tag).await {
            Ok(d) => d,
            Err(e) => return failed(images, &e),
        };
        let mut r = head(StatusCode::OK, &rec, &resolved, &etag, grant);
        r.headers_mut().insert(h::CONTENT_LENGTH, HeaderValue::from(d.bytes.len()));
        let hit = if d.hit { CacheStatus::Hit } else { CacheStatus::Miss };
        r.headers_mut().insert("x-cache", HeaderValue::from_static(hit.as_str()));
        r.extensions_mut().insert(hit);
        if req.method() != Method::HEAD {
            *r.body_mut() = Body::from(d.bytes);
        }
        r
    }
}

/// The ready heads of one derivative of one version of an original (`ready.rs` keeps them
/// by object and tag): a hit in the memory tier is answered with them and the shared
/// bytes, with no render, no row copy and no header formatting per request.
pub(super) struct DerivedHead {
    /// The original's version, the Cache-Control and whether the format came from
    /// `Accept` (`Vary`), which the heads were made under: an explicit `webp` and an
    /// `auto` that resolved to WebP share a tag but not their `Vary`.
    etag: String,
    last_modified_ms: i64,
    cache_control: Option<String>,
    varies: bool,
    /// The original's size (for the bytes-saved count).
    original: u64,
    /// The derivative's length and [`Tier::derived_hash`](crate::tier::Tier::derived_hash).
    len: u64,
    vh: u128,
    /// The derivative's ETag, as the full path compares it.
    derived_etag: String,
    /// The heads of the 200 and of the 304.
    ok: HeaderMap,
    not_modified: HeaderMap,
}

/// A borrowed (bucket, key, tag): looks a head up without allocating.
#[derive(Hash)]
struct DerivedRef<'a>(&'a str, &'a str, &'a str);

impl quick_cache::Equivalent<(String, String, String)> for DerivedRef<'_> {
    fn equivalent(&self, k: &(String, String, String)) -> bool {
        self.0 == k.0 && self.1 == k.1 && self.2 == k.2
    }
}

impl Web {
    /// The ready answer to a GET of a derivative the memory tier holds, when this node made
    /// or found it before; `None` sends the request down the full path
    /// ([`Web::derivative`]), which also answers every refusal and error. The options are
    /// authorised and resolved by the full path's code, on every request (a signature
    /// may expire), and the heads are made by its `head`.
    pub(super) async fn ready_derivative<B>(
        &self,
        images: &Images,
        req: &Request<B>,
        t: &Target,
        grant: &Grant,
        query: &str,
    ) -> Option<Response<Body>> {
        let asked = Asked::from_query(query).ok()??;
        let now = crate::clock::now_secs();
        let opts = asked.authorize(images.config(), &self.policy.links(), (&t.bucket, &t.key), now).ok()?;
        let accept = req.headers().get(h::ACCEPT).and_then(|v| v.to_str().ok());
        let resolved = opts.resolve(accept, images.config());
        let tag = resolved.tag();
        let answer = |rec: &ObjectRecord| {
            let head = self.derived_head(images, rec, grant, t, &resolved, &tag)?;
            let v = Validators { etag: &head.derived_etag, last_modified_ms: head.last_modified_ms };
            match conditional::evaluate(req.headers(), &v) {
                Outcome::Proceed => Some(((head.ok.clone(), head.original), Some((head.vh, head.len)))),
                Outcome::NotModified => Some(((head.not_modified.clone(), head.original), None)),
                Outcome::Failed => None,
            }
        };
        let ((headers, original), data) = self.tier.get_whole_hot(&t.bucket, &t.key, answer).await.ok()??;
        let mut r = match data {
            Some(data) => {
                images.hit(original, data.len(), true);
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

    /// The ready heads of derivative `tag` (`r`) of `rec` under `grant`, kept per version;
    /// `None` when this node has not kept the derivative (the full path makes it).
    fn derived_head(
        &self,
        images: &Images,
        rec: &ObjectRecord,
        grant: &Grant,
        t: &Target,
        r: &Resolved,
        tag: &str,
    ) -> Option<Arc<DerivedHead>> {
        let cc = grant.cache_control.as_deref().or(rec.headers.cache_control.as_deref()).or(grant.fallback.as_deref());
        let kept = self.heads.derived.get(&DerivedRef(&t.bucket, &t.key, tag));
        if let Some(head) = kept.filter(|h| {
            h.etag == rec.etag
                && h.last_modified_ms == rec.last_modified_ms
                && h.cache_control.as_deref() == cc
                && h.varies == r.varies
        }) {
            return Some(head);
        }
        let len = images.kept_len(rec, tag)?;
        let derived_etag = derived_etag(rec, tag);
        let mut ok = head(StatusCode::OK, rec, r, &derived_etag, grant);
        ok.headers_mut().insert(h::CONTENT_LENGTH, HeaderValue::from(len));
        ok.headers_mut().insert("x-cache", HeaderValue::from_static(CacheStatus::Hit.as_str()));
        let not_modified = head(StatusCode::NOT_MODIFIED, rec, r, &derived_etag, grant);
        let head = Arc::new(DerivedHead {
            etag: rec.etag.clone(),
            last_modified_ms: rec.last_modified_ms,
            cache_control: cc.map(str::to_owned),
            varies: r.varies,
            original: rec.size,
            len,
            vh: crate::tier::Tier::derived_hash(rec, tag, len),
            derived_etag,
            ok: std::mem::take(ok.headers_mut()),
            not_modified: not_modified.into_parts().0.headers,
        });
        self.heads.derived.insert((t.bucket.clone(), t.key.clone(), tag.to_owned()), head.clone());
        Some(head)
    }
}

/// The answer's head: validators, type, Cache-Control (the original's rules), `Vary`.
fn head(status: StatusCode, rec: &ObjectRecord, r: &Resolved, etag: &str, grant: &Grant) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    let hs = resp.headers_mut();
    let mut set = |name: h::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            hs.insert(name, v);
        }
    };
    set(h::ETAG, etag);
    set(h::LAST_MODIFIED, &conditional::http_date(rec.last_modified_ms));
    if r.varies {
        set(h::VARY, "Accept");
    }
    let cc =
        grant.cache_control.clone().or_else(|| rec.headers.cache_control.clone()).or_else(|| grant.fallback.clone());
    if let Some(cc) = cc {
        set(h::CACHE_CONTROL, &cc);
    }
    if status == StatusCode::OK {
        set(h::CONTENT_TYPE, r.content_type());
    }
    set(h::X_CONTENT_TYPE_OPTIONS, "nosniff");
    resp
}

/// A strong validator of one derivative of one version: the original's ETag and a digest
/// of the derivative's tag.
fn derived_etag(rec: &ObjectRecord, tag: &str) -> String {
    let d = sha2::Sha256::digest(tag.as_bytes());
    format!("\"{}-im{}\"", rec.etag, hex::encode(&d[..6]))
}

/// The answer to a refused `im` request (400, 403, 410).
pub(super) fn refused(images: &Images, r: &Refusal) -> Response<Body> {
    match r {
        Refusal::Invalid(m) => {
            images.reject("invalid");
            text(StatusCode::BAD_REQUEST, &format!("bad request: {m}"))
        }
        Refusal::Unsigned => {
            images.reject("unsigned");
            denied("bad-image-signature");
            text(StatusCode::FORBIDDEN, "forbidden: these image options need a valid signature (or use a preset)")
        }
        Refusal::Expired => {
            images.reject("expired");
            denied("expired-image-link");
            text(StatusCode::GONE, "gone: this image link has expired")
        }
    }
}

/// The answer when a derivative could not be made.
fn failed(images: &Images, e: &ImageError) -> Response<Body> {
    images.reject(e.reason());
    let status = match e {
        ImageError::Render(RenderError::NotAnImage(_)) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ImageError::Render(_) | ImageError::SourceTooLarge(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ImageError::Busy | ImageError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
        ImageError::Read(kind, m) => return from_error(&crate::error::Error::new(*kind, m.clone())),
    };
    let mut r = text(status, &format!("{}: {e}", status.canonical_reason().unwrap_or("refused").to_lowercase()));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(h::RETRY_AFTER, HeaderValue::from(images.retry_after().as_secs().max(1)));
    }
    r
}
