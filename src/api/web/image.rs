//! `GET /bucket/key?im=…`: a derivative of an object the access check already let the
//! client read. The options are a preset's or signed (`images::options`); conditionals
//! are answered before any render; the answer carries the original's Cache-Control and,
//! when the format came from `Accept`, `Vary: Accept`.

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
use http::{Method, Request, Response, StatusCode};
use sha2::Digest;

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
