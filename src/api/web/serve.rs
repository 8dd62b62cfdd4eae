//! Anonymous GET and HEAD: the access check first (signed link, then the rule's mode),
//! then preconditions, range, coding, and the bytes (or a redirect to the cold store).
//!
//! Denials come before any lookup, so a refused client learns nothing about whether an
//! object exists.

use super::encode::{self, Coding};
use super::{Body, Web, from_error, text};
use crate::access_log::CacheStatus;
use crate::api::router::Target;
use crate::catalog::ObjectRecord;
use crate::config::{AccessMode, ServeMode};
use crate::error::{Error, ErrorKind};
use crate::http::conditional::{self, Outcome, Validators};
use crate::http::range::{self, Wanted};
use crate::policy::link::{LinkError, LinkParams};
use http::header::{self as h, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use std::net::IpAddr;
use std::sync::Mutex;

/// Cache-Control of anything a password, a signed link or a private rule guards.
const PRIVATE: &str = "private, no-store";

/// What the access check granted.
pub(super) struct Grant {
    /// Cache-Control to send whatever the object says.
    pub(super) cache_control: Option<String>,
    /// Cache-Control for objects that have none of their own.
    pub(super) fallback: Option<String>,
    /// The link's forced download name, if any.
    pub(super) download: Option<String>,
}

impl Web {
    /// Serves an anonymous GET or HEAD.
    pub(super) async fn serve<B>(&self, req: &Request<B>, target: Target) -> Response<Body> {
        let grant = match self.check(req, &target) {
            Ok(g) => g,
            Err(denied) => return denied,
        };
        if let Some(ready) = self.ready(req, &target, &grant).await {
            return ready;
        }
        // Boxed: the full path's state is large, and a hot hit should not carry it.
        Box::pin(self.full(req, target, grant)).await
    }

    /// Everything a ready answer does not cover: derivatives, redirects, HEAD, ranges,
    /// conditionals, misses and every error.
    async fn full<B>(&self, req: &Request<B>, target: Target, grant: Grant) -> Response<Body> {
        if let Some(images) = &self.images {
            match crate::images::options::Asked::from_query(req.uri().query().unwrap_or("")) {
                Ok(None) => {}
                Ok(Some(asked)) => return self.derivative(images, req, &target, &grant, asked).await,
                Err(refusal) => return super::image::refused(images, &refusal),
            }
        }
        if self.policy.serve_mode(&target.bucket) == ServeMode::Redirect {
            let rec = match self.tier.head(&target.bucket, &target.key).await {
                Ok(r) => r,
                Err(e) => return from_error(&e),
            };
            match self.redirect(&rec, &grant).await {
                Ok(Some(r)) => return r,
                Ok(None) => {} // no store can presign it (a disk, or still journaled): proxy
                Err(e) => return from_error(&e),
            }
        }
        let (mut resp, rec) = if req.method() == Method::HEAD {
            match self.tier.head(&target.bucket, &target.key).await {
                Ok(rec) => (Plan::new(self, req.headers(), &rec).head(&rec), Some(rec)),
                Err(e) => (from_error(&e), None),
            }
        } else {
            // One catalog read: the tier hands its row to the plan before any byte moves.
            self.get(req.headers(), &target).await
        };
        // Error answers keep their own headers (never a public Cache-Control on a 503).
        if let Some(rec) = rec {
            finish(&mut resp, &rec, &grant, &target);
        }
        resp
    }

    /// The access decision: `Ok` with what to send, or the refusal.
    #[allow(clippy::result_large_err)]
    fn check<B>(&self, req: &Request<B>, t: &Target) -> Result<Grant, Response<Body>> {
        let now = crate::clock::now_secs();
        let peer = req.extensions().get::<crate::http::Peer>().map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.ip());
        let query = req.uri().query().unwrap_or("");
        match self.policy.links().verify(&t.bucket, &t.key, query, now, peer) {
            Ok(Some(LinkParams { download, .. })) => {
                return Ok(Grant { cache_control: Some(PRIVATE.to_owned()), fallback: None, download });
            }
            Ok(None) => {}
            Err(LinkError::Forbidden) => {
                denied("bad-link");
                return Err(text(StatusCode::FORBIDDEN, "forbidden: this link is not valid"));
            }
            Err(LinkError::Expired) => {
                denied("expired-link");
                return Err(text(StatusCode::GONE, "gone: this link has expired"));
            }
        }
        let d = self.policy.decide(&t.bucket, &t.key);
        match d.access {
            AccessMode::PublicRead => Ok(Grant {
                cache_control: d.cache_control,
                fallback: Some(self.s.load().public_cache_control.clone()),
                download: None,
            }),
            AccessMode::Password if self.logged_in(req, t, &d, now) => {
                Ok(Grant { cache_control: Some(PRIVATE.to_owned()), fallback: None, download: None })
            }
            AccessMode::Password => {
                denied("password");
                let mut r = self.login_required(req, t, &d, None);
                // A wrong password in Basic auth counts against the address.
                if crate::http::basic_auth(req.headers()).is_some() {
                    r.extensions_mut().insert(crate::throttle::Failed);
                }
                Err(r)
            }
            AccessMode::Signed => {
                denied("signed-only");
                Err(text(StatusCode::FORBIDDEN, "forbidden: this object is only served through a signed link"))
            }
            AccessMode::Private => {
                denied("private");
                Err(text(StatusCode::FORBIDDEN, "forbidden: access denied"))
            }
        }
    }

    /// A 302 to a presigned cold-store URL, when the object's store can make one.
    async fn redirect(&self, rec: &ObjectRecord, grant: &Grant) -> crate::error::Result<Option<Response<Body>>> {
        let disposition = grant.download.as_deref().map(|n| attachment(n, &rec.key));
        let Some(url) = self.tier.presign(rec, self.s.load().redirect_ttl, disposition.as_deref()).await? else {
            return Ok(None);
        };
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::FOUND;
        let hs = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&url) {
            hs.insert(h::LOCATION, v);
        }
        // The target expires; neither a CDN nor a browser may keep the redirect.
        hs.insert(h::CACHE_CONTROL, HeaderValue::from_static(PRIVATE));
        r.extensions_mut().insert(CacheStatus::Redirect);
        Ok(Some(r))
    }

    /// Reads the object: the answer, and the row it describes (`None` for an error
    /// answer). The tier calls the plan with the row it is about to read, before any byte
    /// moves, so the hot-tier hint and the headers describe exactly that version.
    async fn get(&self, headers: &HeaderMap, t: &Target) -> (Response<Body>, Option<ObjectRecord>) {
        let seen = Mutex::new(None::<(ObjectRecord, Plan, bool)>);
        let res = self
            .tier
            .get(&t.bucket, &t.key, |now| {
                let p = Plan::new(self, headers, now);
                let out = match &p.outcome {
                    Ok(()) => Ok(p.range.clone()),
                    Err(e) => Err(Error::new(e.kind(), e.context())),
                };
                let hot = out.is_ok() && self.tier.is_hot(now, p.range.clone().unwrap_or(0..now.size));
                *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some((now.clone(), p, hot));
                out
            })
            .await;
        let seen = seen.into_inner().unwrap_or_else(|e| e.into_inner());
        match (res, seen) {
            (Ok((rec, _, stream)), Some((_, plan, hot))) => {
                let stream = match plan.coding {
                    Some(c) => encode::compress(stream, c),
                    None => stream,
                };
                let body = s3s::dto::StreamingBlob::wrap(sync_wrapper::SyncStream::new(stream));
                let mut r = plan.head(&rec);
                *r.body_mut() = body.into();
                r.extensions_mut().insert(if hot { CacheStatus::Hit } else { CacheStatus::Miss });
                (r, Some(rec))
            }
            (Err(e), Some((rec, plan, _)))
                if matches!(
                    e.kind(),
                    ErrorKind::NotModified | ErrorKind::PreconditionFailed | ErrorKind::InvalidRange
                ) =>
            {
                (plan.head(&rec), Some(rec))
            }
            (Err(e), _) => (from_error(&e), None),
            (Ok(_), None) => (from_error(&Error::new(ErrorKind::Internal, "read without a plan")), None),
        }
    }
}

/// The answer worked out for one version of an object: outcome of the preconditions,
/// the range and the coding.
pub(super) struct Plan {
    etag: String,
    ctype: String,
    outcome: crate::error::Result<()>,
    status: StatusCode,
    range: Option<std::ops::Range<u64>>,
    coding: Option<Coding>,
    /// Whether the type is one that gets compressed (`Vary: Accept-Encoding`).
    pub(super) vary: bool,
}

impl Plan {
    pub(super) fn new(web: &Web, headers: &HeaderMap, rec: &ObjectRecord) -> Plan {
        let ctype = encode::content_type(rec.headers.content_type.as_deref(), &rec.key);
        let vary = web.s.load().compress && encode::compressible(&ctype) && rec.headers.content_encoding.is_none();
        let wanted = range::parse(headers.get(h::RANGE).and_then(|v| v.to_str().ok()), rec.size);
        let base_etag = format!("\"{}\"", rec.etag);
        let v = Validators { etag: &base_etag, last_modified_ms: rec.last_modified_ms };
        let wanted = if conditional::range_applies(headers, &v) { wanted } else { Wanted::Full };
        let coding = match wanted {
            Wanted::Full if vary && rec.size >= encode::MIN_COMPRESS => {
                encode::negotiate(headers.get(h::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()))
            }
            _ => None,
        };
        // Each coding is its own representation, with its own strong validator.
        let etag = match coding {
            Some(c) => format!("\"{}-{}\"", rec.etag, c.token()),
            None => base_etag.clone(),
        };
        let v = Validators { etag: &etag, last_modified_ms: rec.last_modified_ms };
        let (outcome, status, range) = match (conditional::evaluate(headers, &v), wanted) {
            (Outcome::NotModified, _) => {
                (Err(Error::new(ErrorKind::NotModified, "not modified")), StatusCode::NOT_MODIFIED, None)
            }
            (Outcome::Failed, _) => (
                Err(Error::new(ErrorKind::PreconditionFailed, "precondition failed")),
                StatusCode::PRECONDITION_FAILED,
                None,
            ),
            (Outcome::Proceed, Wanted::Unsatisfiable) => (
                Err(Error::new(ErrorKind::InvalidRange, "range not satisfiable")),
                StatusCode::RANGE_NOT_SATISFIABLE,
                None,
            ),
            (Outcome::Proceed, Wanted::Part(r)) => (Ok(()), StatusCode::PARTIAL_CONTENT, Some(r)),
            (Outcome::Proceed, Wanted::Full) => (Ok(()), StatusCode::OK, None),
        };
        Plan { etag, ctype, outcome, status, range, coding, vary }
    }

    /// The response head (with an empty body) for `rec`.
    pub(super) fn head(&self, rec: &ObjectRecord) -> Response<Body> {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = self.status;
        let hs = r.headers_mut();
        let mut set = |name: h::HeaderName, v: &str| {
            if let Ok(v) = HeaderValue::from_str(v) {
                hs.insert(name, v);
            }
        };
        set(h::ETAG, &self.etag);
        set(h::LAST_MODIFIED, &conditional::http_date(rec.last_modified_ms));
        set(h::ACCEPT_RANGES, "bytes");
        if self.vary {
            set(h::VARY, "Accept-Encoding");
        }
        match self.status {
            StatusCode::NOT_MODIFIED | StatusCode::PRECONDITION_FAILED => return r,
            StatusCode::RANGE_NOT_SATISFIABLE => {
                set(h::CONTENT_RANGE, &format!("bytes */{}", rec.size));
                set(h::CONTENT_LENGTH, "0");
                return r;
            }
            _ => {}
        }
        set(h::CONTENT_TYPE, &self.ctype);
        match (&self.range, self.coding) {
            (Some(rg), _) => {
                set(h::CONTENT_RANGE, &format!("bytes {}-{}/{}", rg.start, rg.end - 1, rec.size));
                set(h::CONTENT_LENGTH, &(rg.end - rg.start).to_string());
            }
            (None, Some(c)) => set(h::CONTENT_ENCODING, c.token()),
            (None, None) => set(h::CONTENT_LENGTH, &rec.size.to_string()),
        }
        let stored = &rec.headers;
        if self.coding.is_none()
            && let Some(e) = &stored.content_encoding
        {
            set(h::CONTENT_ENCODING, e);
        }
        if let Some(l) = &stored.content_language {
            set(h::CONTENT_LANGUAGE, l);
        }
        if let Some(d) = &stored.content_disposition {
            set(h::CONTENT_DISPOSITION, d);
        }
        if let Some(ms) = stored.expires_ms {
            set(h::EXPIRES, &conditional::http_date(ms));
        }
        r
    }
}

pub(super) fn denied(reason: &'static str) {
    ::metrics::counter!("strata_web_denied_total", "reason" => reason).increment(1);
}

/// Headers every answer about an object gets: Cache-Control, a forced download name,
/// `X-Cache` and nosniff.
pub(super) fn finish(r: &mut Response<Body>, rec: &ObjectRecord, grant: &Grant, t: &Target) {
    let status = r.extensions().get::<CacheStatus>().copied();
    let hs = r.headers_mut();
    if !hs.contains_key(h::CACHE_CONTROL) {
        let cc = grant
            .cache_control
            .clone()
            .or_else(|| rec.headers.cache_control.clone())
            .or_else(|| grant.fallback.clone());
        if let Some(v) = cc.and_then(|c| HeaderValue::from_str(&c).ok()) {
            hs.insert(h::CACHE_CONTROL, v);
        }
    }
    if let Some(n) = &grant.download
        && let Ok(v) = HeaderValue::from_str(&attachment(n, &t.key))
    {
        hs.insert(h::CONTENT_DISPOSITION, v);
    }
    if let Some(s) = status {
        hs.insert("x-cache", HeaderValue::from_static(s.as_str()));
    }
    hs.insert(h::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

/// `attachment; filename=…` for a download name (the key's last segment when empty), with
/// an ASCII fallback and the UTF-8 form (RFC 6266).
pub fn attachment(name: &str, key: &str) -> String {
    let name = if name.is_empty() { key.rsplit('/').next().unwrap_or(key) } else { name };
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let utf8 = percent_encoding::utf8_percent_encode(name, crate::policy::link::QUERY);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{utf8}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn attachment_names() {
        assert_eq!(
            super::attachment("", "a/b/song.mp3"),
            "attachment; filename=\"song.mp3\"; filename*=UTF-8''song.mp3"
        );
        let v = super::attachment("naïve \"x\".txt", "k");
        assert!(
            v.starts_with("attachment; filename=\"na_ve _x_.txt\"; filename*=UTF-8''na%C3%AFve%20%22x%22.txt"),
            "{v}"
        );
        assert!(!super::attachment("a\r\nb", "k").contains('\n'));
    }
}
