//! Plain HTTP for browsers and CDNs: anonymous GET and HEAD of objects, in path style
//! (`/bucket/key`), virtual-host style (`bucket.<domain>/key`) or on a custom domain mapped
//! to one bucket; the password login page; signed links.
//!
//! Requests signed for S3 never come here (they go to `api::s3`, which checks SigV4), nor
//! do listings: a bucket is never listed anonymously. This module asks `policy` whether a
//! request may read, then reads through `tier`. It must not touch stores or the catalog
//! directly, and it maps errors to HTTP statuses, never to S3 codes.

mod encode;
mod login;
mod serve;

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::policy::Policy;
use crate::tier::Tier;
use http::{Request, Response, StatusCode};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The login form posts here (`_` never starts a bucket name).
pub const LOGIN_PATH: &str = "/_strata/login";

/// How a request named its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `/bucket/key`.
    Path,
    /// `bucket.<domain>/key`, or a custom domain: the path is the key.
    Host,
}

/// The object a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Bucket.
    pub bucket: String,
    /// Key (percent-decoded).
    pub key: String,
    /// Addressing style.
    pub style: Style,
}

/// Settings of the web front end, from `[web]`.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// Base domains for virtual-host addressing.
    pub domains: Vec<String>,
    /// Custom domains → bucket.
    pub hosts: HashMap<String, String>,
    /// Public base URL for printed links.
    pub base_url: Option<String>,
    /// Default Cache-Control of public objects.
    pub public_cache_control: String,
    /// Login cookie lifetime.
    pub login_ttl: Duration,
    /// Presigned URL lifetime.
    pub redirect_ttl: Duration,
    /// Whether to compress compressible types.
    pub compress: bool,
    /// Seconds in `Retry-After` on a 503 (`failover.retry_after`).
    pub retry_after: u32,
}

impl WebSettings {
    /// The settings of `config`.
    pub fn from_config(config: &Config) -> Self {
        let w = &config.web;
        Self {
            domains: w.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            hosts: w.hosts.iter().map(|(h, b)| (h.to_ascii_lowercase(), b.clone())).collect(),
            base_url: w.base_url.as_ref().map(|u| u.trim_end_matches('/').to_owned()),
            public_cache_control: w.public_cache_control.clone(),
            login_ttl: w.login_ttl.0,
            redirect_ttl: w.redirect_ttl.0,
            compress: w.compress,
            retry_after: config.failover.retry_after,
        }
    }

    /// The bucket a `Host` header names by itself (custom domain or virtual host).
    pub fn host_bucket(&self, host: &str) -> Option<String> {
        let host = host_name(host);
        if let Some(b) = self.hosts.get(&host) {
            return Some(b.clone());
        }
        self.domains.iter().find_map(|d| {
            let b = host.strip_suffix(d.as_str())?.strip_suffix('.')?;
            crate::config::valid_bucket_name(b).then(|| b.to_owned())
        })
    }

    /// The object named by `host` and `path` (the raw, still-encoded URI path). `Ok(None)`
    /// when it names no object (the root or a bucket); an error for a key strata would
    /// never store (`..` segments, bad encoding).
    pub fn target(&self, host: Option<&str>, path: &str) -> Result<Option<Target>> {
        let rest = path.strip_prefix('/').unwrap_or(path);
        let (bucket, raw_key, style) = match host.and_then(|h| self.host_bucket(h)) {
            Some(b) => (b, rest, Style::Host),
            None => match rest.split_once('/') {
                Some((b, k)) => (decode(b)?, k, Style::Path),
                None => return Ok(None),
            },
        };
        if raw_key.is_empty() {
            return Ok(None);
        }
        let key = decode(raw_key)?;
        crate::tier::validate_key(&key)?;
        Ok(Some(Target { bucket, key, style }))
    }
}

fn decode(s: &str) -> Result<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| Error::new(ErrorKind::InvalidKey, "the path is not UTF-8 once decoded"))
}

/// A host header without its port, lowercased.
fn host_name(host: &str) -> String {
    let h = if host.starts_with('[') {
        host.split(']').next().map(|s| format!("{s}]")).unwrap_or_default()
    } else {
        host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|c| c.is_ascii_digit())).map_or(host, |(h, _)| h).to_owned()
    };
    h.to_ascii_lowercase()
}

/// The `Host` of a request (HTTP/1.1 header or HTTP/2 authority).
pub fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.headers().get(http::header::HOST).and_then(|v| v.to_str().ok()).or_else(|| req.uri().host())
}

/// Where a web request's bytes came from, for the access log and `X-Cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// The hot tier (or the journal's staging file) had it all.
    Hit,
    /// At least part came from a cold store.
    Miss,
    /// Answered with a redirect to the cold store.
    Redirect,
}

impl CacheStatus {
    /// The log spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Redirect => "REDIRECT",
        }
    }
}

/// S3 query parameters that name a subresource; such requests stay with the S3 API.
const S3_SUBRESOURCES: &[&str] = &[
    "acl",
    "tagging",
    "uploadId",
    "uploads",
    "attributes",
    "versionId",
    "legal-hold",
    "retention",
    "torrent",
    "partNumber",
];

/// Whether a request carries S3 credentials (a SigV4 or SigV2 header, or a presigned URL).
pub fn is_s3_signed<B>(req: &Request<B>) -> bool {
    let auth = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    if auth.starts_with("AWS4-") || auth.starts_with("AWS ") {
        return true;
    }
    let q = req.uri().query().unwrap_or("");
    q.split('&').any(|kv| {
        let k = kv.split('=').next().unwrap_or("");
        matches!(k, "X-Amz-Signature" | "X-Amz-Credential" | "Signature" | "AWSAccessKeyId")
    })
}

/// The web front end.
#[derive(Clone)]
pub struct Web {
    tier: Tier,
    policy: Policy,
    s: Arc<WebSettings>,
}

type Body = s3s::Body;

impl Web {
    /// A front end reading through `tier` under `policy`.
    pub fn new(tier: Tier, policy: Policy, s: WebSettings) -> Self {
        Self { tier, policy, s: Arc::new(s) }
    }

    /// The policy (the admin API changes it).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The settings.
    pub fn settings(&self) -> &WebSettings {
        &self.s
    }

    /// The tier.
    pub fn tier(&self) -> &Tier {
        &self.tier
    }

    /// What this front end would do with `req`, if it is one of its requests: the login
    /// form's POST, or an unsigned GET or HEAD of an object (the object worked out once
    /// here; a name strata would never store is ours to refuse with 400).
    pub fn call<B>(&self, req: &Request<B>) -> Option<Call> {
        let m = req.method();
        if m == http::Method::POST && req.uri().path() == LOGIN_PATH {
            return Some(Call::Login);
        }
        // `/_strata/` stays the admin API's, in every addressing style.
        if !(m == http::Method::GET || m == http::Method::HEAD)
            || is_s3_signed(req)
            || req.uri().path().starts_with(crate::api::admin::PREFIX)
        {
            return None;
        }
        let q = req.uri().query().unwrap_or("");
        if q.split('&').any(|kv| S3_SUBRESOURCES.contains(&kv.split('=').next().unwrap_or(""))) {
            return None;
        }
        // Only "names no object" (the root, a bucket: listings) goes elsewhere.
        self.s.target(request_host(req), req.uri().path()).transpose().map(Call::Object)
    }

    /// Answers a request that [`Web::call`] claimed.
    pub async fn handle<B>(&self, req: Request<B>, call: Call) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut resp = match call {
            Call::Login => self.login(req).await,
            Call::Object(Ok(target)) => self.serve(&req, target).await,
            Call::Object(Err(e)) => from_error(&e),
        };
        crate::api::with_retry_after(&mut resp, self.s.retry_after);
        resp
    }
}

/// A request for the web front end.
pub enum Call {
    /// The login form's POST.
    Login,
    /// A GET or HEAD of this object, or why its name is refused.
    Object(Result<Target>),
}

/// A plain-text answer.
pub(crate) fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(format!("{msg}\n")));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    r
}

/// The answer for a tier error.
fn from_error(e: &Error) -> Response<Body> {
    let (status, msg) = match e.kind() {
        ErrorKind::NotFound | ErrorKind::BucketNotFound => (StatusCode::NOT_FOUND, "not found"),
        ErrorKind::InvalidKey | ErrorKind::KeyTooLong | ErrorKind::InvalidInput => {
            (StatusCode::BAD_REQUEST, "bad request: invalid object name")
        }
        ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::SlowDown => {
            // `Web::handle` adds Retry-After.
            (StatusCode::SERVICE_UNAVAILABLE, "the object's stores are unavailable; try again")
        }
        _ => {
            tracing::warn!(error = %e, "web read failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    };
    text(status, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> WebSettings {
        WebSettings {
            domains: vec!["media.test".into()],
            hosts: HashMap::from([("cdn.example.com".into(), "pics".into())]),
            base_url: None,
            public_cache_control: String::new(),
            login_ttl: Duration::from_secs(1),
            redirect_ttl: Duration::from_secs(1),
            compress: true,
            retry_after: 5,
        }
    }

    #[test]
    fn targets_in_three_styles() {
        let t = |h: &str, p: &str| s().target(Some(h), p);
        let obj = |b: &str, k: &str, style| Some(Target { bucket: b.into(), key: k.into(), style });
        assert_eq!(t("127.0.0.1:7070", "/pics/a/b.jpg").unwrap(), obj("pics", "a/b.jpg", Style::Path));
        assert_eq!(t("pics.media.test:8080", "/a%20b.jpg").unwrap(), obj("pics", "a b.jpg", Style::Host));
        assert_eq!(t("CDN.example.com", "/x/y").unwrap(), obj("pics", "x/y", Style::Host));
        assert_eq!(t("media.test", "/pics/k").unwrap(), obj("pics", "k", Style::Path), "the bare domain is path style");
        assert_eq!(t("127.0.0.1", "/pics").unwrap(), None);
        assert_eq!(t("127.0.0.1", "/pics/").unwrap(), None);
        assert_eq!(t("pics.media.test", "/").unwrap(), None);
        for bad in ["/pics/../etc/passwd", "/pics/a/%2e%2e/b", "/pics/a//b", "/pics/%ff", "/pics/a/./b"] {
            assert!(t("h", bad).is_err(), "{bad}");
        }
        assert_eq!(host_name("[::1]:80"), "[::1]");
    }
}
