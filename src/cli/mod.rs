//! The command line: `strata serve`, `strata import`, `strata cache …`, `strata status`,
//! `strata replicate …`, `strata cluster status`, `strata sign`, `strata access …`, `strata images …` and the bulk transfers.
//!
//! Owns argument parsing and what each command prints. The only module besides `main`
//! that uses `anyhow`.

mod access;
mod admin;
mod cache;
mod cluster;
mod images;
mod keys;
mod replicate;
mod status;
mod transfer;

use crate::config::{Config, Overrides};
use crate::error::{Error, ErrorKind};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// strata: an S3-compatible gateway that keeps all data in cold object stores.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the S3 API.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Address to listen on (default 127.0.0.1:7070).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Index objects already in a bucket's cold store (written without strata).
    Import {
        #[command(flatten)]
        common: Common,
        /// The bucket to index; it must be declared in the config or created through S3.
        bucket: String,
    },
    /// Inspect and control the hot tier, or simulate eviction policies.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Print a running server's health: stores, hot tier, journal, misses, recent errors.
    Status(admin::Target),
    /// Finish a copy-on-read migration: the server copies in every object of the bucket's
    /// origin that the bucket lacks.
    Migrate {
        #[command(flatten)]
        target: admin::Target,
        /// A bucket with an `origin`.
        bucket: String,
    },
    /// Turn a running server's read-only switch on or off (maintenance: writes get 503).
    ReadOnly {
        #[command(flatten)]
        target: admin::Target,
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Make a running server reread its config file and apply what can change while it
    /// runs (buckets, access rules, web settings, new stores, read-only); the same as
    /// SIGHUP. A change that needs a restart, or an invalid file, changes nothing.
    Reload {
        #[command(flatten)]
        target: admin::Target,
    },
    /// Replace a running server with the binary now at its path (the same as SIGUSR2): the
    /// new process takes the listening sockets over, the old one drains and exits. One
    /// that cannot start leaves the old one serving.
    Upgrade {
        #[command(flatten)]
        target: admin::Target,
    },
    /// Print a signed, expiring link to BUCKET/KEY (absolute under `web.base_url`, else a
    /// path).
    Sign(access::SignArgs),
    /// Image derivatives: warm presets ahead of requests, sign option lists.
    #[command(subcommand)]
    Images(images::ImagesCommand),
    /// Show or change a running server's access rules and serving modes.
    #[command(subcommand)]
    Access(access::AccessCommand),
    /// A running server's access keys: make, list, disable, rotate, delete, audit.
    #[command(subcommand)]
    Key(keys::KeyCommand),
    /// What each access key may do, per bucket and prefix.
    #[command(subcommand)]
    Grant(keys::GrantCommand),
    /// The journal's backlog per store (replication lag), and retrying stuck entries.
    #[command(subcommand)]
    Replicate(replicate::ReplicateCommand),
    /// The nodes that share this catalog: health, journal backlog, last heartbeat.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Copy objects that are missing or changed from SRC to DST (resumable).
    Copy(transfer::TransferArgs),
    /// Copy, then delete objects in DST that SRC does not have.
    Sync(transfer::TransferArgs),
    /// Copy, deleting each source object once it is safely at DST.
    Move(transfer::TransferArgs),
    /// Compare SRC and DST (listings and checksums); exit 1 on any difference.
    Verify(transfer::TransferArgs),
}

#[derive(Debug, Args)]
pub(crate) struct Common {
    /// Configuration file (TOML). Without it, embedded defaults are used.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Data directory (default ./strata-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn load(common: &Common, listen: Option<SocketAddr>) -> anyhow::Result<Config> {
    let overrides = Overrides { data_dir: common.data_dir.clone(), listen };
    let cfg = Config::load(common.config.as_deref())?.resolve(&overrides, &|k| std::env::var(k).ok())?;
    cfg.validate()?;
    Ok(cfg)
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { common, listen } => {
            let cfg = load(&common, listen)?;
            // A reload reads the same file with the same flags and environment.
            let source: crate::server::Source =
                Arc::new(move || load(&common, listen).map_err(|e| Error::new(ErrorKind::Config, format!("{e:#}"))));
            serve(cfg, source).await
        }
        Command::Import { common, bucket } => import(load(&common, None)?, &bucket).await,
        Command::Cache(cmd) => cache::run(cmd).await,
        Command::Status(t) => status::run(&t).await,
        Command::Replicate(cmd) => replicate::run(cmd).await,
        Command::Cluster(cmd) => cluster::run(cmd).await,
        Command::Sign(a) => access::sign(&a),
        Command::Access(cmd) => access::run(cmd).await,
        Command::Images(cmd) => images::run(cmd).await,
        Command::Key(cmd) => keys::run_key(cmd).await,
        Command::Grant(cmd) => keys::run_grant(cmd).await,
        Command::Migrate { target, bucket } => migrate(&target, &bucket).await,
        Command::Upgrade { target } => {
            let c = admin::AdminClient::new(&target)?;
            let resp = c.call(reqwest::Method::POST, "upgrade", None).await?;
            println!("{}", resp.text().await?);
            Ok(())
        }
        Command::Reload { target } => {
            let c = admin::AdminClient::new(&target)?;
            let resp = c.call(reqwest::Method::POST, "reload", None).await?;
            println!("{}", resp.text().await?);
            Ok(())
        }
        Command::ReadOnly { target, state } => {
            let c = admin::AdminClient::new(&target)?;
            let on = state == "on";
            let resp = c.call(reqwest::Method::POST, &format!("read-only?on={on}"), None).await?;
            print!("{}", resp.text().await?);
            Ok(())
        }
        Command::Copy(a) => transfer::run(crate::transfer::Mode::Copy, a).await,
        Command::Sync(a) => transfer::run(crate::transfer::Mode::Sync, a).await,
        Command::Move(a) => transfer::run(crate::transfer::Mode::Move, a).await,
        Command::Verify(a) => transfer::run(crate::transfer::Mode::Verify, a).await,
    }
}

async fn serve(cfg: Config, source: crate::server::Source) -> anyhow::Result<()> {
    let running = crate::server::start(&cfg).await.context("starting strata")?;
    running.reloader().set_source(source);
    let c = running.credentials();
    let scheme = if running.is_tls() { "https" } else { "http" };
    println!("strata listening on {scheme}://{}", running.local_addr());
    println!("region:     {}", cfg.region);
    println!("access key: {}", c.access_key);
    if cfg.credentials.is_none() || std::env::var("STRATA_SECRET_KEY").is_err() {
        println!("secret key: see {}", cfg.data_dir().join("credentials.json").display());
    }
    let token = running.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        token.cancel();
    });
    tokio::spawn(reload_on_sighup(running.reloader(), running.tls_certs()));
    if let Some(upgrade) = running.upgrader() {
        tokio::spawn(upgrade_on_sigusr2(upgrade));
    }
    running.wait().await.context("serving")?;
    println!("strata stopped");
    Ok(())
}

/// At every SIGHUP: rereads the config (a refused or invalid one changes nothing and is
/// logged) and the TLS certificates (a broken set keeps the old one).
async fn reload_on_sighup(reloader: Arc<crate::server::Reloader>, certs: Option<crate::tls::Certs>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot watch SIGHUP; use strata reload (certificates reload when their files change)");
        return;
    };
    while hup.recv().await.is_some() {
        // The reloader logs its own outcome.
        let _ = reloader.reload().await;
        if let Some(c) = &certs {
            let _ = c.reload();
        }
    }
}

/// At SIGUSR2: starts this binary again as a successor that takes over the listening
/// sockets, then asks this process to stop (`docs/design/reload.md`). A successor that
/// cannot start leaves this process serving.
async fn upgrade_on_sigusr2(upgrade: crate::api::UpgradeFn) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut usr2) = signal(SignalKind::user_defined2()) else {
        tracing::error!("cannot watch SIGUSR2; binary upgrades are off");
        return;
    };
    while usr2.recv().await.is_some() {
        if let Err(e) = upgrade() {
            tracing::error!(error = %e, "cannot start a successor; this process keeps serving");
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops strata");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn migrate(t: &admin::Target, bucket: &str) -> anyhow::Result<()> {
    let c = admin::AdminClient::new(t)?;
    let resp = c.call(reqwest::Method::POST, &format!("migrate?bucket={bucket}"), None).await?;
    let last = admin::follow(resp, "migration", |v| {
        v.get("listed").map(|_| {
            format!(
                "{} listed, {} migrated, {} present, {} failed",
                v["listed"], v["migrated"], v["present"], v["failed"]
            )
        })
    })
    .await?;
    println!("{last}");
    Ok(())
}

async fn import(cfg: Config, bucket: &str) -> anyhow::Result<()> {
    let tier = crate::server::open(&cfg).await?.tier;
    let mut last = std::time::Instant::now();
    let stats = tier
        .import(bucket, |s| {
            if last.elapsed().as_secs() >= 2 {
                last = std::time::Instant::now();
                eprintln!("scanned {} added {} updated {} unchanged {}", s.scanned, s.added, s.updated, s.unchanged);
            }
        })
        .await
        .with_context(|| format!("importing bucket {bucket}"))?;
    tier.close().await;
    println!(
        "{{\"bucket\":{:?},\"scanned\":{},\"added\":{},\"updated\":{},\"unchanged\":{},\"invalid\":{}}}",
        bucket, stats.scanned, stats.added, stats.updated, stats.unchanged, stats.invalid
    );
    Ok(())
}
