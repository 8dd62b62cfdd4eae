//! Wires a validated config into a running strata: catalog, backends, tier, S3 gateway and
//! the HTTP server.
//!
//! Shutdown order: stop accepting, drain in-flight requests (bounded by
//! `limits.shutdown_grace`), stop the background workers (policy refresh, scrub, journal
//! uploader, metrics upkeep, health: last started first), then close the catalog. An upload the uploader
//! had under way is dropped and runs again at the next start.

use crate::access_log::{AccessLog, Counted, RequestInfo};
use crate::api::admin::{Admin, PREFIX as ADMIN_PREFIX};
use crate::api::s3::S3Gateway;
use crate::api::status::OPEN_PATHS;
use crate::api::web::{Call, Web, WebSettings};
use crate::backend::{Backends, BreakerSettings};
use crate::catalog::{BucketRecord, Catalog};
use crate::config::{Config, Credentials};
use crate::error::{Error, ErrorKind, Result};
use crate::health::{Health, HealthWorker};
use crate::http::{ServerLimits, serve};
use crate::journal::{Journal, JournalSettings, Placements, Uploader};
use crate::policy::Policy;
use crate::replication::Scrub;
use crate::tier::hot::{Hot, HotSettings};
use crate::tier::{ReadOptions, Tier, TierLimits, WriteSetup, now_ms};
use crate::worker::Supervisor;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A started server.
pub struct Running {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    credentials: Credentials,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<Result<()>>>,
    workers: Supervisor,
    tier: Tier,
}

/// Opens the catalog and backends of a validated config and builds the tier.
pub async fn open_tier(config: &Config) -> Result<Tier> {
    open_tier_with(config, Backends::from_config(&config.backends, &config.limits, &breaker_settings(config))?).await
}

/// The circuit-breaker settings of a config.
pub fn breaker_settings(config: &Config) -> BreakerSettings {
    let f = &config.failover;
    BreakerSettings {
        latency_budget: f.latency_budget.0,
        io_budget: config.journal.store_timeout.0,
        failures: f.failures,
        cooldown: f.cooldown.0,
    }
}

/// Like [`open_tier`] with backends built by the caller (tests wrap them to count calls or
/// inject faults).
pub async fn open_tier_with(config: &Config, backends: Backends) -> Result<Tier> {
    let url = config.catalog.as_deref().ok_or_else(|| Error::new(ErrorKind::Config, "catalog is not resolved"))?;
    let catalog = Catalog::connect(url).await?;
    for name in config.buckets.keys() {
        let b = &config.buckets[name];
        let rec = BucketRecord {
            name: name.clone(),
            backend: b.backend.clone(),
            prefix: config.bucket_prefix(name),
            created_ms: now_ms(),
        };
        catalog.ensure_bucket(&rec).await?;
    }
    let limits = TierLimits {
        max_object_size: config.limits.max_object_size.0,
        body_idle_timeout: config.limits.body_idle_timeout.0,
    };
    let hot = hot_options(config).await?;
    let j = &config.journal;
    let settings = JournalSettings { dir: config.journal_dir(), max_size: j.max_size.0, min_free: j.min_free.0 };
    let writes = WriteSetup {
        journal: Journal::open(settings).await?,
        placements: Placements::from_config(config),
        read_only: config.read_only,
    };
    let uploads = config.data_dir().join("uploads");
    Tier::new(catalog, backends, &config.default_backend, uploads, limits, hot, writes).await
}

async fn hot_options(config: &Config) -> Result<ReadOptions> {
    let h = &config.hot;
    let hot = if h.enabled {
        let settings = HotSettings {
            dir: config.hot_dir(),
            max_size: h.max_size.0,
            min_free: h.min_free.0,
            chunk_size: h.chunk_size.0,
            fill_concurrency: h.fill_concurrency,
            fill_retries: h.fill_retries,
            policy: h.policy,
            miss_log_max: h.miss_log_max.0,
            memory_size: h.memory_size.0,
        };
        Some(Hot::open(settings).await?)
    } else {
        None
    };
    let origins = config
        .buckets
        .iter()
        .filter_map(|(n, b)| {
            let o = b.origin.clone()?;
            Some((n.clone(), (o, b.origin_prefix.clone().unwrap_or_else(|| config.bucket_prefix(n)))))
        })
        .collect();
    Ok(ReadOptions {
        origins,
        hot,
        default_fill: h.fill,
        buckets: config.buckets.iter().map(|(n, b)| (n.clone(), (b.hot, b.fill))).collect(),
        revalidate_after: h.revalidate_after.map(|d| d.0),
    })
}

/// Starts serving `config` (already resolved and validated) with `tier`.
pub async fn start_with(config: &Config, tier: Tier) -> Result<Running> {
    let credentials = crate::auth::load_or_create(config)?;
    let addr = config.listen.ok_or_else(|| Error::new(ErrorKind::Config, "listen is not resolved"))?;
    let listener = bind(addr).await?;
    let addr = listener.local_addr()?;
    let admin_listener = match config.admin.listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let admin_addr = admin_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    crate::telemetry::init();
    crate::telemetry::register(&tier.backends().names().map(str::to_owned).collect::<Vec<_>>());
    let health = Arc::new(Health::default());
    let mut workers = Supervisor::default();
    workers.spawn(HealthWorker::new(tier.clone(), health.clone()));
    workers.spawn(crate::telemetry::Upkeep);
    tier.journal().recover(tier.catalog()).await?;
    let mut uploader = Uploader::new(
        tier.journal().clone(),
        tier.catalog().clone(),
        tier.backends().clone(),
        tier.placements().clone(),
    );
    uploader.retry = (config.journal.retry_min.0, config.journal.retry_max.0);
    uploader.uploads = config.journal.uploads;
    workers.spawn(uploader);
    if !config.journal.scrub_interval.0.is_zero() {
        workers.spawn(scrub(&tier, config.journal.scrub_interval.0));
    }
    let links = crate::auth::link_keys(config, true)?;
    let policy = Policy::load(config, tier.catalog().clone(), links).await?;
    workers.spawn(crate::policy::Refresh(policy.clone()));
    let settings = WebSettings::from_config(config);
    let gateway = S3Gateway::new(tier.clone(), &credentials, &config.region, &settings);
    let web = Web::new(tier.clone(), policy, settings);
    let admin = Admin::new(tier.clone(), credentials.clone(), health, web.clone());
    let log = match &config.web.access_log {
        Some(path) => Some(AccessLog::open(path, config.web.access_log_format).await?),
        None => None,
    };
    let limits = ServerLimits {
        max_connections: config.limits.max_connections,
        max_header_size: usize::try_from(config.limits.max_header_size.0).unwrap_or(usize::MAX),
        header_read_timeout: config.limits.header_read_timeout.0,
        shutdown_grace: config.limits.shutdown_grace.0,
    };
    let shutdown = CancellationToken::new();
    let ops_on_main = admin_listener.is_none();
    let front = Arc::new(Front { gateway, admin: admin.clone(), web, log, ops_on_main });
    let handler = move |req: hyper::Request<hyper::body::Incoming>| {
        let f = front.clone();
        async move { f.handle(req).await }
    };
    let mut tasks = vec![tokio::spawn(serve(listener, limits.clone(), handler, shutdown.clone()))];
    if let Some(l) = admin_listener {
        let handler = move |req: hyper::Request<hyper::body::Incoming>| {
            let a = admin.clone();
            async move {
                let open = req.method() == http::Method::GET && OPEN_PATHS.contains(&req.uri().path());
                if open { a.handle_open(req).await } else { a.handle(req).await }
            }
        };
        tasks.push(tokio::spawn(serve(l, limits, handler, shutdown.clone())));
    }
    Ok(Running { addr, admin_addr, credentials, shutdown, tasks, workers, tier })
}

/// The scrub of `tier`'s replicated buckets.
pub fn scrub(tier: &Tier, interval: std::time::Duration) -> Scrub {
    let (c, b, p) = (tier.catalog().clone(), tier.backends().clone(), tier.placements().clone());
    Scrub::new(c, b, p, tier.journal().node(), interval)
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::new(ErrorKind::Config, format!("cannot listen on {addr}")).with_source(e))
}

enum Route {
    Open,
    Admin,
    Web(Call),
    S3,
}

/// The main listener's front ends, and its access log.
struct Front {
    gateway: S3Gateway,
    admin: Admin,
    web: Web,
    log: Option<AccessLog>,
    ops_on_main: bool,
}

impl Front {
    async fn handle(&self, req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Counted<s3s::Body>> {
        let info = self.log.as_ref().map(|_| RequestInfo::of(&req));
        let resp = match self.route(&req) {
            Route::Open => self.admin.handle_open(req).await,
            Route::Admin => self.admin.handle(req).await,
            Route::Web(call) => self.web.handle(req, call).await,
            Route::S3 => self.gateway.handle(req).await,
        };
        match (&self.log, info) {
            (Some(log), Some(info)) => log.wrap(info, resp),
            _ => AccessLog::unlogged(resp),
        }
    }

    /// `/health`, `/ready` and `/metrics` are valid S3 paths too (buckets may be called
    /// "health"), so they are the operator endpoints only for unsigned GETs: an S3 client
    /// always signs. Unsigned GETs and HEADs of objects are the web front end's.
    fn route<B>(&self, req: &hyper::Request<B>) -> Route {
        let path = req.uri().path();
        let unsigned = !crate::api::web::is_s3_signed(req);
        let ops = self.ops_on_main;
        if ops && req.method() == http::Method::GET && unsigned && OPEN_PATHS.contains(&path) {
            Route::Open
        } else if let Some(call) = self.web.call(req) {
            Route::Web(call)
        } else if ops && path.starts_with(ADMIN_PREFIX) {
            Route::Admin
        } else {
            Route::S3
        }
    }
}

/// Opens everything and starts serving.
pub async fn start(config: &Config) -> Result<Running> {
    let tier = open_tier(config).await?;
    start_with(config, tier).await
}

impl Running {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The S3 credentials in use.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The tier (tests inspect it).
    pub fn tier(&self) -> &Tier {
        &self.tier
    }

    /// A token that starts a graceful shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The admin listener's address, when `[admin] listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Waits until the listeners have drained (after a shutdown), then stops the workers,
    /// then closes the catalog: the order in ARCHITECTURE.md.
    pub async fn wait(self) -> Result<()> {
        let mut res = Ok(());
        for t in self.tasks {
            let r = t.await.map_err(|e| Error::internal("server task", e))?;
            if res.is_ok() {
                res = r;
            }
        }
        self.workers.shutdown().await;
        self.tier.flush_journal().await;
        self.tier.catalog().close().await;
        res
    }

    /// Shuts down gracefully and waits.
    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}
