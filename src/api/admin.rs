//! The admin API under `/_strata/`: who may call it, the hot tier's operator controls, the
//! migration job and leaving the cluster. The router names each endpoint (`api::router::AdminEndpoint`);
//! the journal's are answered in `api::journal`, access rules and links in `api::access`,
//! the status page in `api::status`.
//!
//! `/_strata/metrics` is open, as Prometheus scrapers expect. Everything else needs HTTP
//! Basic auth with an admin key (the root key, or one granted `admin` on `*`; `crate::auth`). `_` cannot
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
//! | POST   | /_strata/images/warm     | bucket, prefix, presets, concurrency, after | JSON lines of progress, then the summary |
//! | POST   | /_strata/cluster/leave   |                   | JSON lines (`entries` left), then `{"left": id}`; the server then stops |
//! | POST   | /_strata/upgrade         |                   | 202 `{"successor": pid}`: the binary on disk starts and takes the sockets over (`docs/design/reload.md`) |
//! | POST   | /_strata/reload          |                   | `{"generation", "changed"}`; 400 for an invalid config, 409 for a field that needs a restart (nothing changes) |

use super::reply::{self, Body};
use super::router::AdminEndpoint;
use crate::error::{Error, ErrorKind, Result};
use crate::tier::Tier;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use s3s::dto::StreamingBlob;
use serde_json::json;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The answer to a call without a valid admin key.
pub fn unauthorized() -> Response<Body> {
    let mut r = reply::json_error(
        StatusCode::UNAUTHORIZED,
        "admin API needs Basic auth with an admin key's id and secret (the config's key, or one granted admin on *)",
    );
    r.headers_mut().insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"strata\""));
    r
}

/// The answer to a valid key that may not use the admin API (no `admin` on `*`, or used
/// from outside its networks).
pub fn forbidden() -> Response<Body> {
    reply::json_error(StatusCode::FORBIDDEN, "this key may not use the admin API: it needs admin on *")
}

/// Answers a hot-tier or migration endpoint; `query` is the request's query string.
pub async fn handle(tier: &Tier, endpoint: AdminEndpoint, query: &str) -> Response<Body> {
    let arg = |k: &str| crate::http::query::value(query, k).unwrap_or_default();
    let (bucket, prefix) = (arg("bucket"), arg("prefix"));
    if endpoint == AdminEndpoint::CacheStats {
        return match tier.cache_stats() {
            Some(stats) => reply::json(StatusCode::OK, &json!(stats)),
            None => reply::json_from_error(&hot_disabled()),
        };
    }
    if let Err(e) = tier.bucket(&bucket).await {
        return reply::json_from_error(&e);
    }
    let r: Result<serde_json::Value> = match endpoint {
        AdminEndpoint::CacheEvict => {
            tier.cache_evict(&bucket, &prefix).map(|(c, b)| json!({ "chunks": c, "bytes": b }))
        }
        AdminEndpoint::CachePin => tier.cache_pin(&bucket, &prefix).map(|()| json!({ "pinned": true })),
        AdminEndpoint::CacheUnpin => tier.cache_unpin(&bucket, &prefix).map(|existed| json!({ "existed": existed })),
        AdminEndpoint::CacheWarm if tier.cache_stats().is_none() => Err(hot_disabled()),
        AdminEndpoint::CacheWarm => return warm(tier.clone(), bucket, prefix),
        AdminEndpoint::Migrate => return migrate(tier.clone(), bucket),
        other => Err(Error::new(ErrorKind::Internal, format!("{other:?} is not a cache endpoint"))),
    };
    match r {
        Ok(v) => reply::json(StatusCode::OK, &v),
        Err(e) => reply::json_from_error(&e),
    }
}

/// Rereads and applies the server's config (`server::Reloader`, which this layer cannot
/// name): what changed, as JSON, or why nothing did.
pub type ReloadFn = Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<serde_json::Value>> + Send + Sync>;

/// Starts a successor that takes the listening sockets over (`server`'s binary upgrade):
/// its pid.
pub type UpgradeFn = Arc<dyn Fn() -> Result<u32> + Send + Sync>;

/// `strata upgrade`: starts the binary now on disk as a successor; 202 with its pid. It
/// takes over once it is ready (this process then drains and exits); one that cannot start
/// leaves this process serving.
pub fn upgrade(upgrade: Option<&UpgradeFn>) -> Response<Body> {
    let Some(upgrade) = upgrade else {
        return reply::json_from_error(&Error::new(ErrorKind::Conflict, "this server cannot start a successor"));
    };
    match upgrade() {
        Ok(pid) => reply::json(StatusCode::ACCEPTED, &json!({ "successor": pid })),
        Err(e) => reply::json_from_error(&e),
    }
}

/// `strata reload`: rereads the config and applies it; 200 with what changed, else the
/// reason nothing did (400 invalid, 409 needs a restart).
pub async fn reload(reload: Option<&ReloadFn>) -> Response<Body> {
    let Some(reload) = reload else {
        return reply::json_from_error(&Error::new(ErrorKind::Conflict, "this server has no config file to reread"));
    };
    match reload().await {
        Ok(v) => reply::json(StatusCode::OK, &v),
        Err(e) => reply::json_from_error(&e),
    }
}

fn hot_disabled() -> Error {
    Error::new(ErrorKind::Conflict, "the hot tier is disabled (hot.enabled = false)")
}

/// Streams progress lines while the tier warms; the last line says done or error.
fn warm(tier: Tier, bucket: String, prefix: String) -> Response<Body> {
    progress_job(move |mut report| async move {
        tier.warm(&bucket, &prefix, |objects, bytes, fetched| {
            report(json!({ "objects": objects, "bytes": bytes, "fetched": fetched }));
        })
        .await?;
        // `owned_only`: with a shared hot tier this node filled only the chunks it owns.
        Ok(json!({ "done": true, "owned_only": tier.shares_hot(), "stats": tier.cache_stats() }))
    })
}

/// `images/warm`: renders the derivatives of `presets` (comma-separated) for every image
/// under `bucket`/`prefix`, streaming progress lines; the last is the summary.
pub fn images_warm(images: Option<crate::images::Images>, query: &str) -> Response<Body> {
    let arg = |k: &str| crate::http::query::value(query, k);
    let Some(images) = images else {
        return reply::json_from_error(&Error::new(
            ErrorKind::Conflict,
            "images are disabled (images.enabled = false)",
        ));
    };
    let Some(bucket) = arg("bucket") else {
        return reply::json_from_error(&Error::new(ErrorKind::InvalidInput, "give bucket"));
    };
    let concurrency = match arg("concurrency").map(|c| c.parse::<usize>()) {
        None => images.threads().max(2),
        Some(Ok(c)) if (1..=256).contains(&c) => c,
        Some(_) => return reply::json_from_error(&Error::new(ErrorKind::InvalidInput, "concurrency: 1 to 256")),
    };
    let plan = crate::images::WarmPlan {
        bucket,
        prefix: arg("prefix").unwrap_or_default(),
        presets: arg("presets").unwrap_or_default().split(',').filter(|p| !p.is_empty()).map(str::to_owned).collect(),
        concurrency,
        after: arg("after").filter(|a| !a.is_empty()),
    };
    progress_job(move |mut report| async move {
        let stats = images.warm(&plan, |s| report(json!(s))).await?;
        Ok(json!({ "done": true, "stats": stats }))
    })
}

/// Copies in what a bucket's origin still has and the bucket lacks (the end of a
/// copy-on-read migration), streaming progress lines.
fn migrate(tier: Tier, bucket: String) -> Response<Body> {
    progress_job(move |mut report| async move {
        let stats = tier.migrate_all(&bucket, |s| report(json!(s))).await?;
        Ok(json!({ "done": true, "stats": stats }))
    })
}

/// `strata cluster leave`: refuses writes from now on, waits until this node's journal is
/// empty (progress lines with the entries left), then has the server stop; at its stop the
/// node deregisters.
pub fn leave(tier: Tier, membership: Arc<crate::cluster::Membership>, shutdown: CancellationToken) -> Response<Body> {
    progress_job(move |mut report| async move {
        membership.begin_leave();
        tier.set_read_only(true);
        tracing::info!(node = %tier.node_id(), "leaving the cluster: writes refused, draining the journal");
        loop {
            let entries = tier.own_entries().await?;
            report(json!({ "entries": entries }));
            if entries == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        membership.mark_left();
        shutdown.cancel();
        Ok(json!({ "done": true, "left": tier.node_id() }))
    })
}

/// Runs `job` in its own task (it goes on if the client leaves) and streams its progress
/// as JSON lines, at most five a second, then a last line: its result or `{"error": …}`.
fn progress_job<F, Fut>(job: F) -> Response<s3s::Body>
where
    F: FnOnce(Box<dyn FnMut(serde_json::Value) + Send>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<serde_json::Value>> + Send + 'static,
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
    reply::with_type(StatusCode::OK, StreamingBlob::wrap(sync_wrapper::SyncStream::new(stream)), "application/x-ndjson")
}

fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok(b), rx)) })
}
