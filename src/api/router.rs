//! The one router: every request on either listener is parsed once, here, into a
//! [`Route`], and every front end gets what the router worked out instead of looking at
//! the request again.
//!
//! The order on the main listener:
//! 1. `/health`, `/ready` and `/metrics` are valid S3 paths too (a bucket may be called
//!    "health"), so they are the operator endpoints only for unsigned GETs: an S3 client
//!    always signs;
//! 2. the login form's POST, and unsigned GETs and HEADs of objects (no S3 subresource)
//!    are the web front end's; a name strata would never store is refused there (400);
//! 3. `/_strata/` is the admin API, in every addressing style;
//! 4. everything else is S3 (s3s routes S3 operations itself).
//!
//! With `[admin] listen` set, steps 1 and 3 move to the admin listener and the main
//! listener serves only 2 and 4. This module decides where a request goes; it must not
//! answer it, and it knows no tier, policy or store.

use crate::error::{Error, ErrorKind, Result};
#[cfg(test)]
use crate::plan::Hosts;
use crate::plan::Plans;
use http::{Method, Request};

/// The admin API's path prefix (`_` never starts a bucket name).
pub const ADMIN_PREFIX: &str = "/_strata/";

/// The login form posts here.
pub const LOGIN_PATH: &str = "/_strata/login";

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

/// Where a request goes.
#[derive(Debug)]
pub enum Route {
    /// A load-balancer endpoint, open to anyone.
    Open(OpenEndpoint),
    /// An admin endpoint (Basic auth with an admin key, except `metrics`), or why the path
    /// under `/_strata/` names none.
    Admin(std::result::Result<AdminEndpoint, Unrouted>),
    /// The web front end.
    Web(WebCall),
    /// The S3 API.
    S3,
}

/// `/health`, `/ready`, `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenEndpoint {
    /// Liveness.
    Health,
    /// Readiness (the catalog answers).
    Ready,
    /// Prometheus text.
    Metrics,
}

impl OpenEndpoint {
    fn of(path: &str) -> Option<Self> {
        match path {
            "/health" => Some(Self::Health),
            "/ready" => Some(Self::Ready),
            "/metrics" => Some(Self::Metrics),
            _ => None,
        }
    }
}

/// The admin API's endpoints: the method and the path after `/_strata/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminEndpoint {
    /// `GET metrics`: Prometheus text, open like `/metrics`.
    Metrics,
    /// `GET status`: the status page.
    Status,
    /// `GET status.json`: the status snapshot.
    StatusJson,
    /// `GET cache/stats`.
    CacheStats,
    /// `POST cache/evict?bucket&prefix`.
    CacheEvict,
    /// `POST cache/pin?bucket&prefix`.
    CachePin,
    /// `POST cache/unpin?bucket&prefix`.
    CacheUnpin,
    /// `POST cache/warm?bucket&prefix`: progress lines.
    CacheWarm,
    /// `POST migrate?bucket`: progress lines.
    Migrate,
    /// `GET journal`: the backlog.
    Journal,
    /// `POST journal/retry`: stuck entries back to pending.
    JournalRetry,
    /// `POST read-only?on=true|false`.
    ReadOnly,
    /// `POST scrub`: run a scrub now.
    Scrub,
    /// `GET access`: rules and serving modes.
    AccessShow,
    /// `POST access?bucket&prefix` with a JSON rule change.
    AccessChange,
    /// `DELETE access?bucket&prefix`.
    AccessClear,
    /// `POST sign?bucket&key&expires&ip&download`.
    Sign,
    /// `GET direct?bucket&key`.
    Direct,
    /// `GET peer/staged/ID?from&to`: bytes of a version staged on this node, for another
    /// node that shares the catalog (`docs/design/cluster.md`).
    PeerStaged(String),
    /// `PUT peer/staged/ID`: keep a copy of another node's staged version
    /// (`journal.peer_copies`).
    PeerStagedPut(String),
    /// `GET peer/hot?bucket&key&etag&mtime&size&from&to`: a range of one version through
    /// this node's hot tier (`cluster.shared_hot`).
    PeerHot,
    /// `POST cluster/leave`: stop taking writes, drain this node's journal, deregister and
    /// stop (progress lines).
    ClusterLeave,
    /// `POST reload`: reread the config file and apply what can change while running.
    Reload,
    /// `POST upgrade`: start the binary on disk as a successor that takes over.
    Upgrade,
    /// `POST images/warm?bucket&prefix&presets&concurrency&after`: derivatives of presets
    /// rendered ahead of requests (progress lines).
    ImagesWarm,
    /// `GET keys[?id]`: the stored access keys, or one.
    KeyList,
    /// `POST keys` with a JSON `{name, expires_in, sources}`: a new key and its secret.
    KeyCreate,
    /// `POST keys/enable?id`.
    KeyEnable,
    /// `POST keys/disable?id`.
    KeyDisable,
    /// `POST keys/rotate?id&grace`: a new secret; the old one valid for `grace`.
    KeyRotate,
    /// `DELETE keys?id`.
    KeyDelete,
    /// `GET keys/audit?limit`: changes to keys and grants, newest first.
    KeyAudit,
    /// `GET grants[?key]`.
    GrantList,
    /// `POST grants?key&bucket&prefix&rights`.
    GrantAdd,
    /// `DELETE grants?key&bucket&prefix`.
    GrantRemove,
}

/// Why a path under `/_strata/` names no endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unrouted {
    /// No such path (the message names what was asked).
    NotFound(String),
    /// The path exists, with another method.
    MethodNotAllowed(Method),
}

/// Staged versions are named by 32 lowercase hex digits (a staging file's UUID) or a
/// segment record's id (`crate::journal::is_staged_id`): nothing else names a file there.
fn is_staging_id(id: &str) -> bool {
    crate::journal::is_staged_id(id)
}

impl AdminEndpoint {
    /// The endpoint of `method` on `path` (after the prefix).
    pub fn parse(method: &Method, path: &str) -> std::result::Result<Self, Unrouted> {
        use AdminEndpoint as E;
        let (get, post, delete) = (method == Method::GET, method == Method::POST, method == Method::DELETE);
        let found = match path {
            "metrics" if get => E::Metrics,
            "status" if get => E::Status,
            "status.json" if get => E::StatusJson,
            "cache/stats" if get => E::CacheStats,
            "cache/evict" if post => E::CacheEvict,
            "cache/pin" if post => E::CachePin,
            "cache/unpin" if post => E::CacheUnpin,
            "cache/warm" if post => E::CacheWarm,
            "migrate" if post => E::Migrate,
            "journal" if get => E::Journal,
            "journal/retry" if post => E::JournalRetry,
            "read-only" if post => E::ReadOnly,
            "scrub" if post => E::Scrub,
            "access" if get => E::AccessShow,
            "access" if post => E::AccessChange,
            "access" if delete => E::AccessClear,
            "sign" if post => E::Sign,
            "direct" if get => E::Direct,
            "cluster/leave" if post => E::ClusterLeave,
            "reload" if post => E::Reload,
            "upgrade" if post => E::Upgrade,
            "peer/hot" if get => E::PeerHot,
            "images/warm" if post => E::ImagesWarm,
            "keys" if get => E::KeyList,
            "keys" if post => E::KeyCreate,
            "keys" if delete => E::KeyDelete,
            "keys/enable" if post => E::KeyEnable,
            "keys/disable" if post => E::KeyDisable,
            "keys/rotate" if post => E::KeyRotate,
            "keys/audit" if get => E::KeyAudit,
            "grants" if get => E::GrantList,
            "grants" if post => E::GrantAdd,
            "grants" if delete => E::GrantRemove,
            p if p.strip_prefix("peer/staged/").is_some_and(is_staging_id) => {
                let id = p.trim_start_matches("peer/staged/").to_owned();
                match method {
                    &Method::GET => E::PeerStaged(id),
                    &Method::PUT => E::PeerStagedPut(id),
                    m => return Err(Unrouted::MethodNotAllowed(m.clone())),
                }
            }
            "metrics" | "status" | "status.json" | "cache/stats" | "cache/evict" | "cache/pin" | "cache/unpin"
            | "cache/warm" | "migrate" | "journal" | "journal/retry" | "read-only" | "scrub" | "access" | "sign"
            | "direct" | "cluster/leave" | "peer/hot" | "reload" | "upgrade" | "keys" | "keys/enable"
            | "keys/disable" | "keys/rotate" | "keys/audit" | "grants" | "images/warm" => {
                return Err(Unrouted::MethodNotAllowed(method.clone()));
            }
            _ => return Err(Unrouted::NotFound(format!("no admin route {method} {ADMIN_PREFIX}{path}"))),
        };
        Ok(found)
    }

    /// Whether the endpoint is open without credentials.
    pub fn is_open(&self) -> bool {
        *self == Self::Metrics
    }
}

/// How a request named its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `/bucket/key`.
    Path,
    /// `bucket.<domain>/key`, or a custom domain: the path is the key.
    Host,
}

/// The object a web request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Bucket.
    pub bucket: String,
    /// Key (percent-decoded).
    pub key: String,
    /// Addressing style.
    pub style: Style,
}

/// A request for the web front end.
#[derive(Debug)]
pub enum WebCall {
    /// The login form's POST.
    Login,
    /// A GET or HEAD of this object, or why its name is refused.
    Object(Result<Target>),
}

/// Parses requests against the host names that name buckets.
#[derive(Debug, Clone)]
pub struct Router {
    /// The live plans, for the host names that name buckets (a reload changes them).
    plans: Plans,
    ops_on_main: bool,
}

impl Router {
    /// A router; `ops_on_main` puts the open and admin endpoints on the main listener
    /// (no `[admin] listen`).
    pub fn new(plans: Plans, ops_on_main: bool) -> Self {
        Self { plans, ops_on_main }
    }

    /// The route of a request on the main listener.
    pub fn route<B>(&self, req: &Request<B>) -> Route {
        let path = req.uri().path();
        let get = req.method() == Method::GET;
        if self.ops_on_main
            && get
            && let Some(open) = OpenEndpoint::of(path)
            && !is_s3_signed(req)
        {
            return Route::Open(open);
        }
        if let Some(call) = self.web_call(req) {
            Route::Web(call)
        } else if self.ops_on_main && path.starts_with(ADMIN_PREFIX) {
            Route::Admin(AdminEndpoint::parse(req.method(), &path[ADMIN_PREFIX.len()..]))
        } else {
            Route::S3
        }
    }

    /// The route of a request on the admin listener: the open endpoints (GET), else the
    /// admin API (anything else is not found there).
    pub fn route_admin<B>(&self, req: &Request<B>) -> Route {
        let path = req.uri().path();
        if req.method() == Method::GET
            && let Some(open) = OpenEndpoint::of(path)
        {
            return Route::Open(open);
        }
        match path.strip_prefix(ADMIN_PREFIX) {
            Some(rest) => Route::Admin(AdminEndpoint::parse(req.method(), rest)),
            None => Route::Admin(Err(Unrouted::NotFound(format!("no admin route {} {path}", req.method())))),
        }
    }

    /// The web front end's call, if `req` is one: the login form's POST, or an unsigned
    /// GET or HEAD of an object without S3 subresources.
    fn web_call<B>(&self, req: &Request<B>) -> Option<WebCall> {
        let m = req.method();
        if m == Method::POST && req.uri().path() == LOGIN_PATH {
            return Some(WebCall::Login);
        }
        // `/_strata/` stays the admin API's, in every addressing style.
        if !(m == Method::GET || m == Method::HEAD) || is_s3_signed(req) || req.uri().path().starts_with(ADMIN_PREFIX) {
            return None;
        }
        let q = req.uri().query().unwrap_or("");
        if crate::http::query::names(q).any(|k| S3_SUBRESOURCES.contains(&k.as_ref())) {
            return None;
        }
        // Only "names no object" (the root, a bucket: listings) goes elsewhere.
        self.target(crate::http::request_host(req), req.uri().path()).transpose().map(WebCall::Object)
    }

    /// The object named by `host` and `path` (the raw, still-encoded URI path). `Ok(None)`
    /// when it names no object (the root or a bucket); an error for a key strata would
    /// never store (NUL, bad encoding, over 1024 bytes).
    pub fn target(&self, host: Option<&str>, path: &str) -> Result<Option<Target>> {
        let rest = path.strip_prefix('/').unwrap_or(path);
        let (bucket, raw_key, style) = match host.and_then(|h| self.plans.hosts().bucket_of(h)) {
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
        crate::names::validate_key(&key)?;
        Ok(Some(Target { bucket, key, style }))
    }
}

fn decode(s: &str) -> Result<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| Error::new(ErrorKind::InvalidKey, "the path is not UTF-8 once decoded"))
}

/// Whether a request carries S3 credentials (a SigV4 or SigV2 header, or a presigned URL).
pub fn is_s3_signed<B>(req: &Request<B>) -> bool {
    let auth = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    if auth.starts_with("AWS4-") || auth.starts_with("AWS ") {
        return true;
    }
    let q = req.uri().query().unwrap_or("");
    crate::http::query::names(q)
        .any(|k| matches!(k.as_ref(), "X-Amz-Signature" | "X-Amz-Credential" | "Signature" | "AWSAccessKeyId"))
}

/// The access key id a signed S3 request names (SigV4 or SigV2, header or query), as it
/// names it: not yet checked. Only ids of the characters AWS uses are returned, so the
/// value is safe in logs and labels.
pub fn s3_access_key<B>(req: &Request<B>) -> Option<String> {
    let auth = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let id = if let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 ") {
        rest.split("Credential=").nth(1).and_then(|c| c.split('/').next()).map(str::to_owned)
    } else if let Some(rest) = auth.strip_prefix("AWS ") {
        rest.rsplit_once(':').map(|(id, _)| id.trim().to_owned())
    } else {
        let q = req.uri().query().unwrap_or("");
        let cred = crate::http::query::value(q, "X-Amz-Credential");
        cred.and_then(|c| c.split('/').next().map(str::to_owned))
            .or_else(|| crate::http::query::value(q, "AWSAccessKeyId"))
    }?;
    let plain =
        !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    plain.then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn names_the_access_key_of_every_signature_form() {
        let with = |auth: &str, uri: &str| {
            let mut b = Request::builder().uri(uri);
            if !auth.is_empty() {
                b = b.header("authorization", auth);
            }
            s3_access_key(&b.body(()).unwrap())
        };
        let v4 =
            "AWS4-HMAC-SHA256 Credential=AKID1/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab";
        assert_eq!(with(v4, "/b/k").as_deref(), Some("AKID1"));
        assert_eq!(with("AWS AKID2:c2ln", "/b/k").as_deref(), Some("AKID2"));
        assert_eq!(
            with("", "/b/k?X-Amz-Credential=AKID3%2F20250101%2Fus-east-1%2Fs3%2Faws4_request").as_deref(),
            Some("AKID3")
        );
        assert_eq!(with("", "/b/k?AWSAccessKeyId=AKID4&Signature=x&Expires=1").as_deref(), Some("AKID4"));
        assert_eq!(with("", "/b/k"), None);
        assert_eq!(with("AWS bad id\"x:sig", "/b/k"), None, "odd characters are not logged");
    }

    fn router(ops: bool) -> Router {
        let custom = BTreeMap::from([("cdn.example.com".to_owned(), "pics".to_owned())]);
        Router::new(Plans::from_hosts(Hosts::new(&vec!["media.test".to_owned()], &custom)), ops)
    }

    #[test]
    fn targets_in_three_styles() {
        let t = |h: &str, p: &str| router(true).target(Some(h), p);
        let obj = |b: &str, k: &str, style| Some(Target { bucket: b.into(), key: k.into(), style });
        assert_eq!(t("127.0.0.1:7070", "/pics/a/b.jpg").unwrap(), obj("pics", "a/b.jpg", Style::Path));
        assert_eq!(t("pics.media.test:8080", "/a%20b.jpg").unwrap(), obj("pics", "a b.jpg", Style::Host));
        assert_eq!(t("CDN.example.com", "/x/y").unwrap(), obj("pics", "x/y", Style::Host));
        assert_eq!(t("media.test", "/pics/k").unwrap(), obj("pics", "k", Style::Path), "the bare domain is path style");
        assert_eq!(t("127.0.0.1", "/pics").unwrap(), None);
        assert_eq!(t("127.0.0.1", "/pics/").unwrap(), None);
        assert_eq!(t("pics.media.test", "/").unwrap(), None);
        // Every key S3 takes is a key here; stores name them safely (`backend::keymap`).
        assert_eq!(t("h", "/pics/a/%2e%2e/b").unwrap(), obj("pics", "a/../b", Style::Path));
        assert_eq!(t("h", "/pics/a//b").unwrap(), obj("pics", "a//b", Style::Path));
        for bad in ["/pics/%ff", "/pics/a%00b"] {
            assert!(t("h", bad).is_err(), "{bad}");
        }
    }

    fn req(method: Method, uri: &str, auth: Option<&str>) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri).header("host", "127.0.0.1");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn each_request_has_one_route() {
        let r = router(true);
        let route = |m: Method, uri: &str, auth: Option<&str>| format!("{:?}", r.route(&req(m, uri, auth)));
        assert!(route(Method::GET, "/health", None).starts_with("Open(Health"));
        assert_eq!(
            route(Method::GET, "/health", Some("AWS4-HMAC-SHA256 Credential=x")),
            "S3",
            "a bucket called health"
        );
        assert!(route(Method::GET, "/pics/a.jpg", None).starts_with("Web(Object(Ok"));
        assert!(route(Method::GET, "/pics/a%00", None).starts_with("Web(Object(Err"));
        assert_eq!(route(Method::GET, "/pics/a.jpg?X-Amz-Signature=1", None), "S3");
        assert_eq!(route(Method::GET, "/pics/a.jpg?X%2DAmz%2DSignature=1", None), "S3", "decoded once");
        assert_eq!(route(Method::GET, "/pics/a.jpg?uploadId=1", None), "S3");
        assert_eq!(route(Method::GET, "/pics", None), "S3", "listings are S3's");
        assert_eq!(route(Method::PUT, "/pics/a.jpg", None), "S3");
        assert!(route(Method::POST, "/_strata/login", None).starts_with("Web(Login"));
        assert_eq!(route(Method::POST, "/_strata/cache/warm", None), "Admin(Ok(CacheWarm))");
        assert_eq!(route(Method::GET, "/_strata/cache/warm", None), "Admin(Err(MethodNotAllowed(GET)))");
        assert!(route(Method::GET, "/_strata/nope", None).starts_with("Admin(Err(NotFound"));
        let apart = router(false);
        assert_eq!(format!("{:?}", apart.route(&req(Method::GET, "/health", None))), "S3");
        assert_eq!(format!("{:?}", apart.route(&req(Method::GET, "/_strata/status", None))), "S3");
        assert!(format!("{:?}", apart.route_admin(&req(Method::GET, "/ready", None))).starts_with("Open(Ready"));
        assert_eq!(
            format!("{:?}", apart.route_admin(&req(Method::DELETE, "/_strata/access", None))),
            "Admin(Ok(AccessClear))"
        );
    }
}
