//! Wires a validated config into a running strata: it opens the catalog, the stores, the
//! journal, the hot tier and the buckets' plans, builds the tier, starts the workers and
//! the front ends, and serves both listeners. It is the one place where handles are
//! shared out; it contains no request logic (routing is `api::router`'s).
//!
//! Shutdown order: stop accepting (`/ready` answers not-ready from here), keep open
//! connections for `limits.drain_linger` answering with `Connection: close`, drain
//! in-flight requests (bounded by `limits.shutdown_grace`), stop the background workers
//! (one cancellation reaches them all at once: a tick under way is dropped, and the
//! supervisor waits for every task to end), flush the journal's pending closes, close the
//! catalog, then free the data directory's lock (a successor waits for it: `handover.rs`).
//! An upload the uploader had under way is dropped and runs again at the next start.

mod handover;
mod listen;
mod reload;

pub use reload::{Reloader, Report, Source};

use crate::access_log::AccessLog;
use crate::api::Front;
use crate::api::router::Router;
use crate::api::s3::{S3Gateway, Spool};
use crate::api::web::{Web, WebSettings};
use crate::backend::Backends;
use crate::catalog::{BucketRecord, Catalog};
use crate::clock::now_ms;
use crate::config::{Config, Credentials};
use crate::error::{Error, ErrorKind, Result};
use crate::health::{Health, HealthWorker};
use crate::http::ServerLimits;
use crate::journal::{Journal, JournalSettings};
use crate::plan::Plans;
use crate::policy::Policy;
use crate::tier::hot::{Hot, HotSettings};
use crate::tier::{Tier, TierLimits, TierParts};
use crate::tls::Certs;
use crate::worker::Supervisor;
use listen::Listeners;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
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
    catalog: Catalog,
    plain_addr: Option<SocketAddr>,
    certs: Option<Certs>,
    /// This node's registration, marked stopped at a clean shutdown.
    me: crate::cluster::Identity,
    /// Whether it has left the cluster (then it deregisters at the stop).
    membership: Arc<crate::cluster::Membership>,
    /// Rereads the config (SIGHUP, `strata reload`), once it has a source.
    reloader: Arc<Reloader>,
    /// Starts a successor with copies of the listening sockets (binary upgrade), when
    /// this process owns its data directory.
    upgrade: Option<crate::api::UpgradeFn>,
    /// The data directory's lock, when this process took it ([`start`]).
    lock: Option<handover::DataLock>,
}

/// What a config opens into: the tier, and the handles the server wires into the workers
/// and front ends beside it.
pub struct Opened {
    /// The read and write paths.
    pub tier: Tier,
    /// The stores (the health worker probes them).
    pub backends: Backends,
    /// The catalog (the policy reads its runtime rules from it).
    pub catalog: Catalog,
    /// Every bucket's plan.
    pub plans: Plans,
}

/// Opens the catalog and backends of a validated config and builds the tier.
pub async fn open(config: &Config) -> Result<Opened> {
    open_with(config, Backends::from_config(config)?).await
}

/// Like [`open`] with backends built by the caller (tests wrap them to count calls or
/// inject faults).
pub async fn open_with(config: &Config, backends: Backends) -> Result<Opened> {
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
    let j = &config.journal;
    let settings = JournalSettings {
        dir: config.journal_dir(),
        max_size: j.max_size.0,
        min_free: j.min_free.0,
        segment_threshold: j.segment_threshold.0,
    };
    let plans = Plans::from_config(config);
    let tier = Tier::new(TierParts {
        catalog: catalog.clone(),
        backends: backends.clone(),
        default_backend: config.default_backend.clone(),
        staging: config.data_dir().join("uploads"),
        limits,
        hot: open_hot(config).await?,
        revalidate_after: config.hot.revalidate_after.map(|d| d.0),
        journal: Journal::open(settings).await?,
        plans: plans.clone(),
        read_only: config.read_only,
        peer_copies: config.journal.peer_copies,
        shared_hot: config.cluster.shared_hot,
        near_cache: config.cluster.near_cache.0,
    })
    .await?;
    Ok(Opened { tier, backends, catalog, plans })
}

/// The hot tier of `config`, when it is enabled.
async fn open_hot(config: &Config) -> Result<Option<Hot>> {
    let h = &config.hot;
    if !h.enabled {
        return Ok(None);
    }
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
        memory_large: h.memory_large,
    };
    Ok(Some(Hot::open(settings).await?))
}

/// Starts serving `config` (already resolved and validated) with what it opened into.
pub async fn start_with(config: &Config, opened: Opened) -> Result<Running> {
    start_inner(config, opened, (None, false)).await
}

/// `upgradable`: this process owns its data directory and may start a successor.
async fn start_inner(
    config: &Config,
    opened: Opened,
    (inherited, upgradable): (Option<&mut handover::Inherited>, bool),
) -> Result<Running> {
    let keys = crate::auth::Keyring::open(config, opened.catalog.clone()).await?;
    let credentials = keys.root().clone();
    let listeners = Listeners::bind(config, inherited).await?;
    // Only a process that owns its data directory (`start`) may start a successor.
    let upgrade: Option<crate::api::UpgradeFn> = if upgradable {
        let sockets = listeners.sockets()?;
        Some(Arc::new(move || handover::spawn_successor(&sockets)))
    } else {
        None
    };
    let (addr, admin_addr, plain_addr) = (listeners.main_addr()?, listeners.admin_addr()?, listeners.plain_addr()?);
    crate::telemetry::init();
    crate::telemetry::register(&opened.tier.store_names());
    let certs = if config.tls.enabled() { Some(Certs::load(&config.tls)?) } else { None };
    let acceptor = certs.as_ref().map(|c| c.server_config().map(TlsAcceptor::from)).transpose()?;
    let health = Arc::new(Health::with_certs(certs.clone()));
    let me = crate::cluster::Identity {
        id: opened.tier.node_id().to_owned(),
        // Peers call the admin endpoints: on the admin listener when there is one.
        address: config.cluster.advertise.clone().unwrap_or_else(|| admin_addr.unwrap_or(addr).to_string()),
        lease: config.cluster.lease.0,
        heartbeat: config.cluster.heartbeat.0,
        started_ms: now_ms(),
    };
    if opened.catalog.is_shared() {
        let keys = (credentials.access_key.clone(), credentials.secret_key.clone());
        let timing = (config.cluster.peer_timeout.0, me.lease);
        let peers = crate::cluster::Peers::new(opened.catalog.clone(), &me.id, keys, (certs.is_some(), timing))?;
        opened.tier.connect_peers(peers);
    }
    let membership = Arc::new(crate::cluster::Membership::default());
    let (mut workers, policy) =
        start_workers(config, &opened, health.clone(), (certs.as_ref(), &me, &membership)).await?;
    workers.spawn(crate::auth::Refresh(keys.clone()));
    let router = Router::new(opened.plans.clone(), admin_addr.is_none());
    let settings = WebSettings::from_config(config);
    let tier = opened.tier;
    let spool = Spool {
        dir: config.data_dir().join("uploads"),
        max: config.limits.max_object_size.0,
        idle: config.limits.body_idle_timeout.0,
    };
    let gateway = S3Gateway::new(tier.clone(), &keys, &config.region, &opened.plans, (settings.retry_after, spool));
    let images = match config.images.enabled {
        true => Some(crate::images::Images::new(config.images.clone(), tier.clone())?),
        false => None,
    };
    let web = Web::new(tier.clone(), policy, router.clone(), images, settings);
    let log = match &config.web.access_log {
        Some(path) => Some(AccessLog::open(path, config.web.access_log_format).await?),
        None => None,
    };
    let throttle = Arc::new(crate::throttle::Throttle::new(config.limits.auth_burst, config.limits.auth_refill.0));
    let shutdown = CancellationToken::new();
    let live = reload::Live {
        plans: opened.plans.clone(),
        policy: web.policy().clone(),
        web: web.clone(),
        backends: opened.backends.clone(),
        catalog: opened.catalog.clone(),
        tier: tier.clone(),
    };
    let reloader = Arc::new(Reloader::new(config.clone(), live));
    let r = reloader.clone();
    let reload_fn: crate::api::ReloadFn = Arc::new(move || {
        let r = r.clone();
        Box::pin(async move { Ok(serde_json::json!(r.reload().await?)) })
    });
    let front = Arc::new(
        Front::new(router, gateway, web, keys, health)
            .with_reload(reload_fn)
            .with_upgrade(upgrade.clone())
            .with_access_log(log)
            .with_throttle(throttle)
            .with_membership(membership.clone(), shutdown.clone()),
    );
    let tasks = listeners.serve(front, server_limits(config), acceptor, config.tls.plain, shutdown.clone())?;
    let catalog = opened.catalog;
    Ok(Running {
        addr,
        admin_addr,
        plain_addr,
        credentials,
        shutdown,
        tasks,
        workers,
        tier,
        catalog,
        certs,
        me,
        membership,
        reloader,
        upgrade,
        lock: None,
    })
}

/// Starts the background workers in the order ARCHITECTURE.md gives (health, metrics
/// upkeep, catalog change feed, cluster heartbeat, uploader, scrub, policy
/// refresh), after the journal's replay; returns them and
/// the access policy the refresh keeps current.
async fn start_workers(
    config: &Config,
    opened: &Opened,
    health: Arc<Health>,
    (certs, me, membership): (Option<&Certs>, &crate::cluster::Identity, &Arc<crate::cluster::Membership>),
) -> Result<(Supervisor, Policy)> {
    let tier = &opened.tier;
    let mut workers = Supervisor::default();
    workers.spawn(HealthWorker::new(tier.clone(), opened.backends.clone(), health));
    workers.spawn(crate::telemetry::Upkeep);
    // On SQLite too: writes by another process (`strata import`) reach the row cache
    // through it, and while it polls the cache keeps rows past their TTL.
    let url = config.catalog.as_deref().unwrap_or_default();
    workers.spawn(
        crate::catalog::ChangeFeed::start(opened.catalog.clone(), url, config.cluster.invalidation_lag.0).await?,
    );
    let t = tier.clone();
    let load: crate::cluster::HotBytes = Arc::new(move || t.cache_stats().map_or(0, |s| s.used_bytes));
    let heartbeat =
        crate::cluster::Heartbeat::register(opened.catalog.clone(), me.clone(), (membership.clone(), load)).await?;
    let lease_until = heartbeat.lease_until();
    workers.spawn(heartbeat);
    tier.recover_journal().await?;
    let mut uploader = tier.uploader();
    uploader.retry = (config.journal.retry_min.0, config.journal.retry_max.0);
    uploader.uploads = config.journal.uploads;
    if opened.catalog.is_shared() {
        let grace = config.cluster.lease.0;
        uploader.cluster = Some(crate::journal::ClusterRole { lease_until, grace });
    }
    workers.spawn(uploader);
    if !config.journal.scrub_interval.0.is_zero() {
        workers.spawn(tier.scrub(config.journal.scrub_interval.0));
    }
    let links = crate::auth::link_keys(config, true)?;
    let policy = Policy::load(config, &opened.plans, opened.catalog.clone(), links).await?;
    workers.spawn(crate::policy::Refresh(policy.clone()));
    if let Some(c) = certs
        && !config.tls.watch.0.is_zero()
    {
        workers.spawn(crate::tls::Watch::new(c.clone(), config.tls.watch.0));
    }
    Ok((workers, policy))
}

fn server_limits(config: &Config) -> ServerLimits {
    ServerLimits {
        max_connections: config.limits.max_connections,
        max_header_size: usize::try_from(config.limits.max_header_size.0).unwrap_or(usize::MAX),
        header_read_timeout: config.limits.header_read_timeout.0,
        shutdown_grace: config.limits.shutdown_grace.0,
        drain_linger: config.limits.drain_linger.0,
        h2_max_streams: config.limits.h2_max_streams,
    }
}

/// Opens everything and starts serving, as the one process of its data directory: it
/// takes the directory's lock first, and when it replaces a running process (a binary
/// upgrade, `handover.rs`) it takes that process's sockets and asks it to stop once its
/// own config and catalog are known to work.
pub async fn start(config: &Config) -> Result<Running> {
    if config.log.is_some() {
        crate::logging::set_filter(config.log.as_deref())?;
    }
    let mut inherited = handover::Inherited::from_env()?;
    let upgrading = handover::is_successor();
    if upgrading {
        let url = config.catalog.as_deref().ok_or_else(|| Error::new(ErrorKind::Config, "catalog is not resolved"))?;
        let catalog = Catalog::connect(url).await?;
        catalog.ping().await?;
        catalog.close().await;
        handover::relieve_predecessor()?;
    }
    // A successor waits long enough for its predecessor to drain (its own grace) and close;
    // any other start finds the directory free or says at once who holds it.
    let wait = if upgrading {
        config.limits.shutdown_grace.0 + std::time::Duration::from_secs(30)
    } else {
        std::time::Duration::ZERO
    };
    let dir = config.data_dir().to_owned();
    let lock = tokio::task::spawn_blocking(move || handover::DataLock::acquire(&dir, wait))
        .await
        .map_err(|e| Error::internal("data directory lock", e))??;
    let opened = open(config).await?;
    let mut running = start_inner(config, opened, (inherited.as_mut(), true)).await?;
    tracing::info!(lock = %lock.path().display(), "holding the data directory");
    running.lock = Some(lock);
    handover::notify(true);
    Ok(running)
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

    /// The catalog (tests inspect it).
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// A token that starts a graceful shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The plain-HTTP listener's address beside TLS, when `tls.plain_listen` is set.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain_addr
    }

    /// The live TLS certificates, when the listeners speak HTTPS: `Certs::reload` rereads
    /// them (SIGHUP), keeping the old ones on any error.
    pub fn tls_certs(&self) -> Option<Certs> {
        self.certs.clone()
    }

    /// Whether the listeners speak HTTPS.
    pub fn is_tls(&self) -> bool {
        self.certs.is_some()
    }

    /// The config reloader: give it a [`Source`] (`Reloader::set_source`) and SIGHUP or
    /// `strata reload` reread the config through it.
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    /// What starts a successor at a binary upgrade (SIGUSR2): this binary, as now on
    /// disk, with this process's listening sockets; it asks this process to stop once it
    /// is ready. `None` for a server that does not own its data directory ([`start_with`]).
    pub fn upgrader(&self) -> Option<crate::api::UpgradeFn> {
        self.upgrade.clone()
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
        if let Err(e) = crate::cluster::stopped(&self.catalog, &self.me, &self.membership).await {
            tracing::warn!(error = %e, "cannot mark this node stopped in the catalog; its lease runs out");
        }
        self.tier.close().await;
        res
    }

    /// Shuts down gracefully and waits.
    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}
