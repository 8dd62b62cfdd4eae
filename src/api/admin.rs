//! The admin API under `/_strata/`: metrics and the hot tier's operator controls.
//!
//! `/_strata/metrics` is open, as Prometheus scrapers expect. Everything else needs HTTP
//! Basic auth with the S3 access key and secret key, compared in constant time. `_` cannot
//! start a bucket name, so no S3 request is ever routed here. This module maps requests to
//! tier calls; it must not reach into the hot tier's internals.
//!
//! | method | path                     | query             | answer                  |
//! |--------|--------------------------|-------------------|-------------------------|
//! | GET    | /_strata/metrics         |                   | Prometheus text         |
//! | GET    | /_strata/status          |                   | the status page (HTML)  |
//! | GET    | /_strata/status.json     |                   | JSON `health::Snapshot` |
//! | GET    | /_strata/cache/stats     |                   | JSON `HotStats`         |
//! | POST   | /_strata/cache/evict     | bucket, prefix    | `{"chunks","bytes"}`    |
//! | POST   | /_strata/cache/pin       | bucket, prefix    | `{"pinned":true}`       |
//! | POST   | /_strata/cache/unpin     | bucket, prefix    | `{"existed":bool}`      |
//! | POST   | /_strata/cache/warm      | bucket, prefix    | JSON lines of progress  |
//! | POST   | /_strata/migrate         | bucket            | JSON lines of progress  |
//!
//! The journal, replication and read-only routes are in `api::replication`; access rules,
//! signed links and direct URLs in `api::access`.

use super::status;
use crate::config::Credentials;
use crate::health::Health;
use crate::tier::Tier;
use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use s3s::dto::StreamingBlob;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// The path prefix this module answers.
pub const PREFIX: &str = "/_strata/";

/// The admin endpoint.
#[derive(Clone)]
pub struct Admin {
    tier: Tier,
    creds: Credentials,
    health: Arc<Health>,
    web: super::web::Web,
}

/// Largest admin request body read (a rule change).
const MAX_BODY: usize = 64 << 10;

fn reply(status: StatusCode, body: impl Into<s3s::Body>, ctype: &str) -> Response<s3s::Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

fn json_reply(status: StatusCode, v: &serde_json::Value) -> Response<s3s::Body> {
    reply(status, format!("{v}\n"), "application/json")
}

fn error(status: StatusCode, msg: &str) -> Response<s3s::Body> {
    json_reply(status, &json!({ "error": msg }))
}

/// Compares two byte strings in time independent of where they differ (`subtle`, as the
/// password checks do).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

impl Admin {
    /// An admin endpoint over `tier`, guarded by `creds`, showing `health`; `web` holds
    /// the access policy it changes.
    pub fn new(tier: Tier, creds: Credentials, health: Arc<Health>, web: super::web::Web) -> Self {
        Self { tier, creds, health, web }
    }

    /// Serves `/health`, `/ready` and `/metrics` (see [`status::OPEN_PATHS`]).
    pub async fn handle_open<B>(&self, req: Request<B>) -> Response<s3s::Body> {
        match req.uri().path() {
            "/health" => status::health(),
            "/ready" => status::ready(&self.tier, &self.health).await,
            _ => status::metrics(),
        }
    }

    fn authorized<B>(&self, req: &Request<B>) -> bool {
        let Some(v) = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some(b64) = v.strip_prefix("Basic ") else { return false };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else { return false };
        let want = format!("{}:{}", self.creds.access_key, self.creds.secret_key);
        constant_time_eq(&raw, want.as_bytes())
    }

    /// Serves one request under [`PREFIX`].
    pub async fn handle<B>(&self, req: Request<B>) -> Response<s3s::Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path().strip_prefix(PREFIX).unwrap_or("").to_owned();
        if path == "metrics" && req.method() == Method::GET {
            return reply(StatusCode::OK, crate::telemetry::render(), "text/plain; version=0.0.4");
        }
        if !self.authorized(&req) {
            let mut r = error(StatusCode::UNAUTHORIZED, "admin API needs Basic auth with the S3 access and secret key");
            if let Ok(v) = "Basic realm=\"strata\"".parse() {
                r.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
            }
            return r;
        }
        match (req.method(), path.as_str()) {
            (&Method::GET, "status") => return status::status_html(&self.health.snapshot(&self.tier)),
            (&Method::GET, "status.json") => return status::status_json(&self.health.snapshot(&self.tier)),
            _ => {}
        }
        let q = query(req.uri().query().unwrap_or(""));
        if path == "migrate" && req.method() == Method::POST {
            let bucket = q.get("bucket").cloned().unwrap_or_default();
            return match self.tier.bucket(&bucket).await {
                Ok(_) => self.migrate(bucket),
                Err(_) => error(StatusCode::NOT_FOUND, &format!("no bucket {bucket:?}")),
            };
        }
        if super::access::owns(&path) {
            use http_body_util::BodyExt;
            let (parts, body) = req.into_parts();
            let Ok(body) = http_body_util::Limited::new(body, MAX_BODY).collect().await else {
                return error(StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large");
            };
            let (status, v) = super::access::handle(&self.web, &parts.method, &path, &q, &body.to_bytes()).await;
            return json_reply(status, &v);
        }
        if super::replication::owns(&path) {
            let (status, body) = super::replication::handle(&self.tier, req.method(), &path, &q).await;
            return json_reply(status, &body);
        }
        let arg = |k: &str| q.get(k).cloned().unwrap_or_default();
        let Some(hot) = self.tier.hot() else {
            return error(StatusCode::CONFLICT, "the hot tier is disabled (hot.enabled = false)");
        };
        let (bucket, prefix) = (arg("bucket"), arg("prefix"));
        let needs_bucket = path != "cache/stats";
        if needs_bucket && self.tier.bucket(&bucket).await.is_err() {
            return error(StatusCode::NOT_FOUND, &format!("no bucket {bucket:?}"));
        }
        match (req.method().clone(), path.as_str()) {
            (Method::GET, "cache/stats") => json_reply(StatusCode::OK, &json!(hot.stats())),
            (Method::POST, "cache/evict") => {
                let (chunks, bytes) = hot.evict_prefix(&bucket, &prefix);
                json_reply(StatusCode::OK, &json!({ "chunks": chunks, "bytes": bytes }))
            }
            (Method::POST, "cache/pin") => match hot.pin(&bucket, &prefix) {
                Ok(()) => json_reply(StatusCode::OK, &json!({ "pinned": true })),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            },
            (Method::POST, "cache/unpin") => match hot.unpin(&bucket, &prefix) {
                Ok(existed) => json_reply(StatusCode::OK, &json!({ "existed": existed })),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            },
            (Method::POST, "cache/warm") => self.warm(bucket, prefix),
            _ => error(StatusCode::NOT_FOUND, &format!("no admin route {} {PREFIX}{path}", req.method())),
        }
    }

    /// Streams progress lines while the tier warms; the last line says done or error.
    fn warm(&self, bucket: String, prefix: String) -> Response<s3s::Body> {
        let tier = self.tier.clone();
        progress_job(move |mut report| async move {
            tier.warm(&bucket, &prefix, |objects, bytes, fetched| {
                report(json!({ "objects": objects, "bytes": bytes, "fetched": fetched }));
            })
            .await?;
            Ok(json!({ "done": true, "stats": tier.hot().map(|h| h.stats()) }))
        })
    }

    /// Copies in what a bucket's origin still has and the bucket lacks (the end of a
    /// copy-on-read migration), streaming progress lines.
    fn migrate(&self, bucket: String) -> Response<s3s::Body> {
        let tier = self.tier.clone();
        progress_job(move |mut report| async move {
            let stats = tier.migrate_all(&bucket, |s| report(json!(s))).await?;
            Ok(json!({ "done": true, "stats": stats }))
        })
    }
}

/// Runs `job` in its own task (it goes on if the client leaves) and streams its progress
/// as JSON lines, at most five a second, then a last line: its result or `{"error": …}`.
fn progress_job<F, Fut>(job: F) -> Response<s3s::Body>
where
    F: FnOnce(Box<dyn FnMut(serde_json::Value) + Send>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = crate::error::Result<serde_json::Value>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let line = |v: serde_json::Value| Bytes::from(format!("{v}\n"));
    let progress_tx = tx.clone();
    let mut last = std::time::Instant::now();
    let report = Box::new(move |v: serde_json::Value| {
        if last.elapsed().as_millis() >= 200 {
            last = std::time::Instant::now();
            let _ = progress_tx.try_send(line(v));
        }
    });
    tokio::spawn(async move {
        let end = job(report).await.unwrap_or_else(|e| json!({ "error": e.to_string() }));
        let _ = tx.send(line(end)).await;
    });
    let stream = tokio_stream_from(rx);
    reply(StatusCode::OK, StreamingBlob::wrap(sync_wrapper::SyncStream::new(stream)), "application/x-ndjson")
}

fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok(b), rx)) })
}

fn query(q: &str) -> HashMap<String, String> {
    crate::http::form_pairs(q).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn query_decoding() {
        let q = query("bucket=b&prefix=a%2Fb+c&x");
        assert_eq!(q["prefix"], "a/b c");
        assert_eq!(q["x"], "");
    }
}
