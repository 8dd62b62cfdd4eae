//! `strata cache …`: operator controls of a running server's hot tier (through the admin
//! API) and the offline eviction simulator.

use crate::config::Config;
use crate::tier::hot::sim::{self, Workload};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;

/// The `cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Print the hot tier's counters (JSON).
    Stats(Target),
    /// Fetch every object under BUCKET[/PREFIX] into the hot tier, with a progress bar.
    Warm(Scoped),
    /// Drop the hot copies of every object under BUCKET[/PREFIX].
    Evict(Scoped),
    /// Keep objects under BUCKET[/PREFIX] from eviction (persists across restarts).
    Pin(Scoped),
    /// Remove a pin made with `pin`.
    Unpin(Scoped),
    /// Replay a trace (or a synthetic Zipf workload) against S3-FIFO, LRU and Belady's OPT.
    Simulate(Simulate),
}

/// Which server to talk to.
#[derive(Debug, Args)]
pub struct Target {
    #[command(flatten)]
    common: super::Common,
    /// Base URL of the server's operator endpoints (default: http:// plus the config's
    /// `admin.listen`, else its `listen` address).
    #[arg(long)]
    endpoint: Option<String>,
}

/// A server plus BUCKET[/PREFIX].
#[derive(Debug, Args)]
pub struct Scoped {
    #[command(flatten)]
    target: Target,
    /// BUCKET or BUCKET/PREFIX.
    path: String,
}

/// Simulator options.
#[derive(Debug, Args)]
pub struct Simulate {
    /// A trace file: one `KEY SIZE` (or `KEY,SIZE`) per line.
    #[arg(long, conflicts_with = "zipf")]
    trace: Option<PathBuf>,
    /// Zipf exponent of a synthetic workload.
    #[arg(long, default_value_t = 0.9)]
    zipf: f64,
    /// Objects in the synthetic popular set.
    #[arg(long, default_value_t = 100_000)]
    objects: u64,
    /// Requests to the popular set.
    #[arg(long, default_value_t = 1_000_000)]
    requests: u64,
    /// Start a scan of never-seen objects every N requests (0: no scans).
    #[arg(long, default_value_t = 50_000)]
    scan_every: u64,
    /// Objects per scan.
    #[arg(long, default_value_t = 20_000)]
    scan_len: u64,
    /// Vary sizes from 4 KiB to 512 KiB (default: all 64 KiB).
    #[arg(long)]
    varied_sizes: bool,
    /// Cache size as a fraction of the trace's footprint.
    #[arg(long, default_value_t = 0.1)]
    cache_fraction: f64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs a `cache` subcommand.
pub async fn run(cmd: CacheCommand) -> anyhow::Result<()> {
    match cmd {
        CacheCommand::Stats(t) => {
            let c = Client::new(&t)?;
            let v: serde_json::Value = c.call(reqwest::Method::GET, "cache/stats", None).await?.json().await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        CacheCommand::Evict(s) => simple(&s, "cache/evict").await?,
        CacheCommand::Pin(s) => simple(&s, "cache/pin").await?,
        CacheCommand::Unpin(s) => simple(&s, "cache/unpin").await?,
        CacheCommand::Warm(s) => warm(&s).await?,
        CacheCommand::Simulate(s) => simulate(&s)?,
    }
    Ok(())
}

pub(super) struct Client {
    http: reqwest::Client,
    base: String,
    user: String,
    pass: String,
}

impl Client {
    pub(super) fn new(t: &Target) -> anyhow::Result<Client> {
        let cfg: Config = super::load(&t.common, None)?;
        let creds = crate::auth::load(&cfg)?;
        let base = match &t.endpoint {
            Some(e) => e.trim_end_matches('/').to_owned(),
            None => format!("http://{}", cfg.admin.listen.or(cfg.listen).context("listen address is not resolved")?),
        };
        Ok(Client { http: reqwest::Client::new(), base, user: creds.access_key, pass: creds.secret_key })
    }

    pub(super) fn base(&self) -> &str {
        &self.base
    }

    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        route: &str,
        scope: Option<(&str, &str)>,
    ) -> anyhow::Result<reqwest::Response> {
        let query: Vec<(&str, &str)> = scope.map(|(b, p)| vec![("bucket", b), ("prefix", p)]).unwrap_or_default();
        self.call_with(method, route, &query, None).await
    }

    /// Like [`Client::call`] with any query and an optional JSON body.
    pub(super) async fn call_with(
        &self,
        method: reqwest::Method,
        route: &str,
        query: &[(&str, &str)],
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{}{route}", self.base, crate::api::router::ADMIN_PREFIX);
        let mut req = self.http.request(method, &url).basic_auth(&self.user, Some(&self.pass)).query(query);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach strata at {}", self.base))?;
        if !resp.status().is_success() {
            let status = resp.status();
            bail!("{route}: {status}: {}", resp.text().await.unwrap_or_default().trim());
        }
        Ok(resp)
    }
}

fn split(path: &str) -> (&str, &str) {
    path.split_once('/').unwrap_or((path, ""))
}

async fn simple(s: &Scoped, route: &str) -> anyhow::Result<()> {
    let c = Client::new(&s.target)?;
    let resp = c.call(reqwest::Method::POST, route, Some(split(&s.path))).await?;
    print!("{}", resp.text().await?);
    Ok(())
}

async fn warm(s: &Scoped) -> anyhow::Result<()> {
    let c = Client::new(&s.target)?;
    let resp = c.call(reqwest::Method::POST, "cache/warm", Some(split(&s.path))).await?;
    follow(resp, "warm", |v| {
        v.get("objects").map(|_| {
            format!(
                "{} objects, {} scanned, {} fetched",
                v["objects"],
                indicatif::HumanBytes(v["bytes"].as_u64().unwrap_or(0)),
                indicatif::HumanBytes(v["fetched"].as_u64().unwrap_or(0))
            )
        })
    })
    .await
}

/// Follows a streamed admin job: progress lines (shown by `describe`) on a spinner or as
/// plain lines, then its last line printed to stdout.
pub(super) async fn follow(
    mut resp: reqwest::Response,
    what: &str,
    describe: impl Fn(&serde_json::Value) -> Option<String>,
) -> anyhow::Result<()> {
    let tty = std::io::stderr().is_terminal();
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}")?);
    if !tty {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut pending = Vec::new();
    let mut last: Option<serde_json::Value> = None;
    while let Some(chunk) = resp.chunk().await? {
        pending.extend_from_slice(&chunk);
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let v: serde_json::Value = serde_json::from_slice(&line)?;
            if let Some(e) = v.get("error") {
                bar.abandon();
                bail!("{what} failed: {e}");
            }
            if let Some(msg) = describe(&v) {
                if tty {
                    bar.set_message(msg);
                    bar.tick();
                } else {
                    eprintln!("{msg}");
                }
            }
            last = Some(v);
        }
    }
    bar.finish_and_clear();
    match last {
        Some(v) if v.get("done").is_some() => {
            println!("{v}");
            Ok(())
        }
        _ => bail!("the server ended the {what} without a result"),
    }
}

fn simulate(s: &Simulate) -> anyhow::Result<()> {
    if !(s.cache_fraction > 0.0 && s.cache_fraction <= 1.0) {
        bail!("--cache-fraction must be in (0, 1]");
    }
    let trace = match &s.trace {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            sim::parse_trace(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        None => Workload {
            objects: s.objects,
            requests: s.requests,
            alpha: s.zipf,
            scan_every: s.scan_every,
            scan_len: s.scan_len,
            varied_sizes: s.varied_sizes,
            seed: s.seed,
        }
        .generate(),
    };
    let footprint = sim::footprint(&trace);
    let capacity = (footprint as f64 * s.cache_fraction) as u64;
    let results = sim::simulate(&trace, capacity);
    if s.json {
        let v = serde_json::json!({ "requests": trace.len(), "footprint": footprint, "capacity": capacity, "results": results });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "requests {}  footprint {}  cache {}",
        trace.len(),
        indicatif::HumanBytes(footprint),
        indicatif::HumanBytes(capacity)
    );
    println!("{:<8} {:>10} {:>15} {:>14}", "policy", "hit ratio", "byte hit ratio", "origin bytes");
    for r in &results {
        println!(
            "{:<8} {:>9.2}% {:>14.2}% {:>14}",
            r.policy,
            r.hit_ratio * 100.0,
            r.byte_hit_ratio * 100.0,
            indicatif::HumanBytes(r.origin_bytes).to_string()
        );
    }
    Ok(())
}
