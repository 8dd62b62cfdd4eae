//! Wires a validated config into a running strata: catalog, backends, tier, S3 gateway and
//! the HTTP server.
//!
//! Shutdown order: stop accepting, drain in-flight requests (bounded by
//! `limits.shutdown_grace`), then close the catalog. Background workers (journal uploader,
//! repairer) will be stopped between the drain and the catalog close.

use crate::api::s3::S3Gateway;
use crate::backend::Backends;
use crate::catalog::{BucketRecord, Catalog};
use crate::config::{Config, Credentials};
use crate::error::{Error, ErrorKind, Result};
use crate::http::{ServerLimits, serve};
use crate::tier::{Tier, TierLimits, now_ms};
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
    let url = config.catalog.as_deref().ok_or_else(|| Error::new(ErrorKind::Config, "catalog is not resolved"))?;
    let catalog = Catalog::connect(url).await?;
    let backends = Backends::from_config(&config.backends, &config.limits)?;
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
    Tier::new(catalog, backends, &config.default_backend, config.data_dir().join("uploads"), limits).await
}

/// Starts serving `config` (already resolved and validated) with `tier`.
pub async fn start_with(config: &Config, tier: Tier) -> Result<Running> {
    let credentials = crate::auth::load_or_create(config)?;
    let addr = config.listen.ok_or_else(|| Error::new(ErrorKind::Config, "listen is not resolved"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::new(ErrorKind::Config, format!("cannot listen on {addr}")).with_source(e))?;
    let addr = listener.local_addr()?;
    let gateway = S3Gateway::new(tier.clone(), &credentials, &config.region);
    let limits = ServerLimits {
        max_connections: config.limits.max_connections,
        max_header_size: usize::try_from(config.limits.max_header_size.0).unwrap_or(usize::MAX),
        header_read_timeout: config.limits.header_read_timeout.0,
        shutdown_grace: config.limits.shutdown_grace.0,
    };
    let shutdown = CancellationToken::new();
    let handler = move |req| {
        let g = gateway.clone();
        async move { g.handle(req).await }
    };
    let task = tokio::spawn(serve(listener, limits, handler, shutdown.clone()));
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
