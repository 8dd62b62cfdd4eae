//! Wires a validated config into a running strata: catalog, backends, tier, S3 gateway and
//! the HTTP server.
//!
//! Shutdown order: stop accepting, drain in-flight requests (bounded by
//! `limits.shutdown_grace`), then close the catalog. Background workers (journal uploader,
//! repairer) will be stopped between the drain and the catalog close.

use crate::api::admin::{Admin, PREFIX as ADMIN_PREFIX};
use crate::api::s3::S3Gateway;
use crate::backend::Backends;
use crate::catalog::{BucketRecord, Catalog};
use crate::config::{Config, Credentials};
use crate::error::{Error, ErrorKind, Result};
use crate::http::{ServerLimits, serve};
use crate::tier::hot::{Hot, HotSettings};
use crate::tier::{HotOptions, Tier, TierLimits, now_ms};
use std::net::SocketAddr;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A started server.
pub struct Running {
    addr: SocketAddr,
    credentials: Credentials,
    shutdown: CancellationToken,
    task: JoinHandle<Result<()>>,
    tier: Tier,
}

/// Opens the catalog and backends of a validated config and builds the tier.
pub async fn open_tier(config: &Config) -> Result<Tier> {
    open_tier_with(config, Backends::from_config(&config.backends, &config.limits)?).await
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
    Tier::new(catalog, backends, &config.default_backend, config.data_dir().join("uploads"), limits, hot).await
}

async fn hot_options(config: &Config) -> Result<HotOptions> {
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
    Ok(HotOptions {
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
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::new(ErrorKind::Config, format!("cannot listen on {addr}")).with_source(e))?;
    let addr = listener.local_addr()?;
    crate::telemetry::init();
    let gateway = S3Gateway::new(tier.clone(), &credentials, &config.region);
    let admin = Admin::new(tier.clone(), credentials.clone());
    let limits = ServerLimits {
        max_connections: config.limits.max_connections,
        max_header_size: usize::try_from(config.limits.max_header_size.0).unwrap_or(usize::MAX),
        header_read_timeout: config.limits.header_read_timeout.0,
        shutdown_grace: config.limits.shutdown_grace.0,
    };
    let shutdown = CancellationToken::new();
    let handler = move |req: hyper::Request<hyper::body::Incoming>| {
        let (g, a) = (gateway.clone(), admin.clone());
        async move { if req.uri().path().starts_with(ADMIN_PREFIX) { a.handle(req).await } else { g.handle(req).await } }
    };
    let task = tokio::spawn(serve(listener, limits, handler, shutdown.clone()));
    let upkeep = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = upkeep.cancelled() => break,
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => crate::telemetry::upkeep(),
            }
        }
    });
    Ok(Running { addr, credentials, shutdown, task, tier })
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

    /// Waits until the server has stopped (after a shutdown), then closes the catalog.
    pub async fn wait(self) -> Result<()> {
        let res = self.task.await.map_err(|e| Error::internal("server task", e))?;
        self.tier.catalog().close().await;
        res
    }

    /// Shuts down gracefully and waits.
    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}
