//! Plain HTTP for browsers and CDNs: anonymous GET and HEAD of objects, in path style
//! (`/bucket/key`), virtual-host style (`bucket.<domain>/key`) or on a custom domain mapped
//! to one bucket; the password login page; signed links; image derivatives (`?im=`).
//!
//! Requests signed for S3 never come here (they go to `api::s3`, which checks SigV4), nor
//! do listings: a bucket is never listed anonymously. This module asks `policy` whether a
//! request may read, then reads through `tier`. The router (`api::router`) decides which
//! requests come here and names their object. It must not touch stores or the catalog
//! directly; its errors become HTTP statuses through `api::reply`, never S3 codes.

mod encode;
mod image;
mod login;
mod ready;
mod serve;

use super::reply::{self, Body};
use super::router::{Router, WebCall};
use crate::config::Config;
use crate::error::Error;
use crate::policy::Policy;
use crate::tier::Tier;
use http::{Request, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;

/// Settings of the web front end, from `[web]` (the host names are the plans').
#[derive(Debug, Clone)]
pub struct WebSettings {
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
            base_url: w.base_url.as_ref().map(|u| u.trim_end_matches('/').to_owned()),
            public_cache_control: w.public_cache_control.clone(),
            login_ttl: w.login_ttl.0,
            redirect_ttl: w.redirect_ttl.0,
            compress: w.compress,
            retry_after: config.failover.retry_after,
        }
    }
}

/// The web front end.
#[derive(Clone)]
pub struct Web {
    tier: Tier,
    policy: Policy,
    router: Router,
    /// Derivatives (`?im=`), unless `images.enabled` is off.
    images: Option<crate::images::Images>,
    /// Response heads of the hot-hit fast path (`ready.rs`).
    heads: Arc<ready::Heads>,
    /// Live: a reload swaps them ([`Web::reconfigure`]).
    s: Arc<arc_swap::ArcSwap<WebSettings>>,
}

impl Web {
    /// A front end reading through `tier` under `policy`; `router` names the object of a
    /// login form's return address; `images` makes derivatives.
    pub fn new(
        tier: Tier,
        policy: Policy,
        router: Router,
        images: Option<crate::images::Images>,
        s: WebSettings,
    ) -> Self {
        let heads = Arc::default();
        Self { tier, policy, router, images, heads, s: Arc::new(arc_swap::ArcSwap::from_pointee(s)) }
    }

    /// The policy (the admin API changes it).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<WebSettings> {
        self.s.load_full()
    }

    /// Takes the settings of a reloaded config (requests under way keep theirs).
    pub fn reconfigure(&self, s: WebSettings) {
        self.s.store(Arc::new(s));
        // A ready head may carry what the old settings decided (`Vary`, say).
        self.heads.clear();
    }

    /// The derivative service, unless `images.enabled` is off.
    pub fn images(&self) -> Option<&crate::images::Images> {
        self.images.as_ref()
    }

    /// The tier.
    pub fn tier(&self) -> &Tier {
        &self.tier
    }

    /// Answers a request the router gave this front end.
    pub async fn handle<B>(&self, req: Request<B>, call: WebCall) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut resp = match call {
            WebCall::Login => Box::pin(self.login(req)).await,
            WebCall::Object(Ok(target)) => self.serve(&req, target).await,
            WebCall::Object(Err(e)) => from_error(&e),
        };
        reply::with_retry_after(&mut resp, self.s.load().retry_after);
        resp
    }
}

/// A plain-text answer.
pub(crate) fn text(status: StatusCode, msg: &str) -> Response<Body> {
    reply::text(status, msg)
}

/// The answer for a tier error: its status (`api::reply`), with a message that says no
/// more than a reader may know.
fn from_error(e: &Error) -> Response<Body> {
    let status = reply::status_of(e);
    let msg = match status {
        StatusCode::NOT_FOUND => "not found",
        StatusCode::BAD_REQUEST => "bad request: invalid object name",
        // `Web::handle` adds Retry-After.
        StatusCode::SERVICE_UNAVAILABLE => "the object's stores are unavailable; try again",
        s if s.is_server_error() => {
            tracing::warn!(error = %e, "web read failed");
            "internal error"
        }
        s => s.canonical_reason().unwrap_or("refused"),
    };
    text(status, msg)
}
