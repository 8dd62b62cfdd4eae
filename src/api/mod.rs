//! Protocol front ends: the S3 API, plain HTTP for browsers and CDNs (`web`), the admin
//! endpoints and the status page, and [`Front`], which hands each request to one of them.
//!
//! A request is parsed once, by [`router`], into a [`Route`]; `Front` dispatches it and
//! wraps the answer for the access log. Errors become HTTP statuses in [`reply`] (S3
//! codes in `api/s3/error.rs`). Inside `api` the dependencies point one way too:
//! `Front` → the operator routes (`admin`, `access`, `journal`, `status`) and `s3` →
//! `web` → `router`, `reply`.

pub mod access;
pub mod admin;
pub mod journal;
pub mod keys;
pub mod peer;
pub mod reply;
pub mod router;
pub mod s3;
pub mod status;
pub mod web;

use crate::access_log::{AccessLog, Counted, RequestInfo};
use crate::auth::{Keyring, Principal};
use crate::health::Health;
use crate::throttle::{Failed, Throttle};
use reply::Body;
use router::{AdminEndpoint as E, OpenEndpoint, Route, Router, Unrouted};
use s3::S3Gateway;
use std::sync::Arc;
use web::Web;

/// The plain listener's answer beside TLS: a 308 to the same host and path over HTTPS on
/// `port` (a 308 keeps the method and body, so a PUT is not turned into a GET).
pub fn to_https<B>(req: &http::Request<B>, port: u16) -> http::Response<Body> {
    let host = crate::http::request_host(req).unwrap_or("localhost");
    let name = match host.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') && p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    };
    let authority = if port == 443 { name.to_owned() } else { format!("{name}:{port}") };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut r = reply::text(http::StatusCode::PERMANENT_REDIRECT, "this server speaks HTTPS");
    if let Ok(v) = http::HeaderValue::from_str(&format!("https://{authority}{path}")) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    r
}

/// The client's address (unspecified when the listener did not record it).
fn peer_ip<B>(req: &http::Request<B>) -> std::net::IpAddr {
    req.extensions().get::<crate::http::Peer>().map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.0.ip())
}

/// 429 with `Retry-After`: an address braked for failed authentication.
fn too_many(wait: u64) -> http::Response<Body> {
    let mut r = reply::text(http::StatusCode::TOO_MANY_REQUESTS, "too many failed logins from your address; wait");
    r.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(wait));
    r
}

/// Largest admin request body read (a rule change).
const MAX_ADMIN_BODY: usize = 64 << 10;

/// Every front end of one server, and its access log.
pub struct Front {
    router: Router,
    gateway: S3Gateway,
    web: Web,
    keys: Keyring,
    health: Arc<Health>,
    log: Option<AccessLog>,
    throttle: Arc<Throttle>,
    /// This node's standing in the cluster and the server's shutdown (`cluster/leave`).
    membership: (Arc<crate::cluster::Membership>, tokio_util::sync::CancellationToken),
    /// Rereads and applies the config (`POST reload`).
    reload: Option<ReloadFn>,
    /// Starts a successor (`POST upgrade`), when this server owns its data directory.
    upgrade: Option<UpgradeFn>,
}

pub use admin::{ReloadFn, UpgradeFn};

impl Front {
    /// The admin key of an admin call; else the answer: 429 while its address or key is
    /// braked (before the secret is looked at), 401 for a wrong or missing key (a wrong try
    /// counts), 403 for a key without `admin` on `*` or used from outside its networks.
    fn admin_gate<B>(&self, req: &http::Request<B>) -> Result<Arc<Principal>, Box<http::Response<Body>>> {
        let basic = crate::http::basic_auth(req.headers());
        let (ip, key) = (peer_ip(req), basic.as_ref().map(|(user, _)| user.as_str()));
        if basic.is_some()
            && let Err(wait) = self.throttle.check(ip, key, "admin")
        {
            return Err(Box::new(too_many(wait)));
        }
        let Some((user, pass)) = &basic else { return Err(Box::new(admin::unauthorized())) };
        let Some(who) = self.keys.basic(user, pass) else {
            self.throttle.failed(ip, key, "admin");
            return Err(Box::new(admin::unauthorized()));
        };
        if !who.reaches_from(ip) || !who.allows(crate::auth::rights::Need::Server) {
            return Err(Box::new(admin::forbidden()));
        }
        Ok(who)
    }

    /// The front ends of one server; admin keys of `keys` may use the admin API.
    pub fn new(router: Router, gateway: S3Gateway, web: Web, keys: Keyring, health: Arc<Health>) -> Self {
        let throttle = Arc::new(Throttle::new(0, std::time::Duration::from_secs(1)));
        let membership = Default::default();
        Self { router, gateway, web, keys, health, log: None, throttle, membership, reload: None, upgrade: None }
    }

    /// Brakes failed authentication per client address with `throttle`.
    pub fn with_throttle(mut self, throttle: Arc<Throttle>) -> Self {
        self.throttle = throttle;
        self
    }

    /// Lets `cluster/leave` mark this node leaving and stop the server once it has left.
    pub fn with_membership(
        mut self,
        m: Arc<crate::cluster::Membership>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        self.membership = (m, shutdown);
        self
    }

    /// Lets `POST reload` reread the config through `reload`.
    pub fn with_reload(mut self, reload: ReloadFn) -> Self {
        self.reload = Some(reload);
        self
    }

    /// Lets `POST upgrade` start a successor through `upgrade`.
    pub fn with_upgrade(mut self, upgrade: Option<UpgradeFn>) -> Self {
        self.upgrade = upgrade;
        self
    }

    /// Logs every request of the main listener to `log`.
    pub fn with_access_log(mut self, log: Option<AccessLog>) -> Self {
        self.log = log;
        self
    }

    /// Serves one request of the main listener.
    pub async fn handle_main(&self, req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Counted<Body>> {
        let info = self.log.as_ref().map(|_| RequestInfo::of(&req));
        let peer = peer_ip(&req);
        let route = self.router.route(&req);
        let api = match &route {
            Route::S3 if router::is_s3_signed(&req) => Some("s3"),
            Route::Web(router::WebCall::Login) => Some("login"),
            Route::Web(_) if req.headers().contains_key(http::header::AUTHORIZATION) => Some("password"),
            _ => None,
        };
        // A signed request's key is braked as well as its address: guessing one key's
        // secret from many addresses is slowed down too.
        let key = if matches!(route, Route::S3) { router::s3_access_key(&req) } else { None };
        let braked = api.and_then(|api| self.throttle.check(peer, key.as_deref(), api).err().map(|w| (api, w)));
        let resp = match (braked, route) {
            (Some(("s3", wait)), _) => self.gateway.slow_down(wait),
            (Some((_, wait)), _) => too_many(wait),
            // The S3 and operator futures are large (kilobytes of state); boxed, they do not
            // make every web hit's future as large, which hyper moves more than once.
            (None, Route::Web(call)) => self.web.handle(req, call).await,
            (None, Route::S3) => Box::pin(self.gateway.handle(req, key.as_deref())).await,
            (None, route) => Box::pin(self.operator(req, route)).await,
        };
        if let Some(api) = api
            && resp.extensions().get::<Failed>().is_some()
        {
            self.throttle.failed(peer, key.as_deref(), api);
        }
        match (&self.log, info) {
            (Some(log), Some(info)) => log.wrap(info, resp),
            _ => AccessLog::unlogged(resp),
        }
    }

    /// Serves one request of the admin listener.
    pub async fn handle_admin(&self, req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Body> {
        let route = self.router.route_admin(&req);
        self.operator(req, route).await
    }

    /// The open and admin endpoints.
    async fn operator<B>(&self, req: http::Request<B>, route: Route) -> http::Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tier = self.web.tier();
        match &route {
            Route::Open(OpenEndpoint::Health) => return status::health(),
            Route::Open(OpenEndpoint::Ready) => {
                // Not ready while draining (a shutdown or a successor taking over), so a
                // load balancer moves traffic before the connections close.
                return status::ready(tier, &self.health, self.membership.1.is_cancelled()).await;
            }
            Route::Open(OpenEndpoint::Metrics) => return status::metrics(),
            Route::Admin(Ok(e)) if e.is_open() => return status::metrics(),
            _ => {}
        }
        let actor = match self.admin_gate(&req) {
            Ok(who) => who,
            Err(refused) => return *refused,
        };
        let endpoint = match route {
            Route::Admin(Ok(e)) => e,
            Route::Admin(Err(Unrouted::NotFound(msg))) => return reply::json_error(http::StatusCode::NOT_FOUND, &msg),
            Route::Admin(Err(Unrouted::MethodNotAllowed(m))) => {
                return reply::json_error(http::StatusCode::METHOD_NOT_ALLOWED, &format!("{m} is not allowed here"));
            }
            Route::Open(_) | Route::Web(_) | Route::S3 => {
                return reply::json_error(http::StatusCode::NOT_FOUND, "not an operator endpoint");
            }
        };
        let query = req.uri().query().unwrap_or("").to_owned();
        match endpoint {
            E::Status => {
                let images = self.web.images().map(crate::images::Images::stats);
                status::status_html(&self.health.snapshot(tier), images.as_ref())
            }
            E::StatusJson => {
                let images = self.web.images().map(crate::images::Images::stats);
                status::status_json(&self.health.snapshot(tier), images.as_ref())
            }
            E::Journal | E::JournalRetry | E::ReadOnly | E::Scrub => journal::handle(tier, endpoint, &query).await,
            E::PeerStaged(id) => peer::staged(tier, &id, &query).await,
            E::PeerHot => peer::hot(tier, &query).await,
            E::ClusterLeave => admin::leave(tier.clone(), self.membership.0.clone(), self.membership.1.clone()),
            E::Reload => admin::reload(self.reload.as_ref()).await,
            E::Upgrade => admin::upgrade(self.upgrade.as_ref()),
            E::PeerStagedPut(id) => {
                use crate::error::{Error, ErrorKind};
                use futures::StreamExt;
                let body = http_body_util::BodyStream::new(req.into_body())
                    .map(|f| match f {
                        Ok(frame) => Ok(frame.into_data().ok()),
                        Err(e) => Err(Error::new(ErrorKind::IncompleteBody, e.into().to_string())),
                    })
                    .filter_map(|r| futures::future::ready(r.transpose()));
                peer::receive(tier, &id, body.boxed()).await
            }
            E::KeyList
            | E::KeyCreate
            | E::KeyEnable
            | E::KeyDisable
            | E::KeyRotate
            | E::KeyDelete
            | E::KeyAudit
            | E::GrantList
            | E::GrantAdd
            | E::GrantRemove => {
                use http_body_util::BodyExt;
                let Ok(body) = http_body_util::Limited::new(req.into_body(), MAX_ADMIN_BODY).collect().await else {
                    return reply::json_error(http::StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large");
                };
                keys::handle(&self.keys, &actor.id, endpoint, &query, &body.to_bytes()).await
            }
            E::AccessShow | E::AccessChange | E::AccessClear | E::Sign | E::Direct => {
                use http_body_util::BodyExt;
                let body = req.into_body();
                let Ok(body) = http_body_util::Limited::new(body, MAX_ADMIN_BODY).collect().await else {
                    return reply::json_error(http::StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large");
                };
                access::handle(&self.web, endpoint, &query, &body.to_bytes()).await
            }
            E::ImagesWarm => admin::images_warm(self.web.images().cloned(), &query),
            E::Metrics | E::CacheStats | E::CacheEvict | E::CachePin | E::CacheUnpin | E::CacheWarm | E::Migrate => {
                admin::handle(tier, endpoint, &query).await
            }
        }
    }
}
