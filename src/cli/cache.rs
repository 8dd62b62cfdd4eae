//! `strata cache …`: operator controls of a running server's hot tier (through the admin
//! API) and the offline eviction simulator.

use super::admin::{AdminClient, Target, follow};
use crate::tier::hot::sim::{self, Workload};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// The `cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Print the hot tier's counters (JSON).
    Stats(StatsArgs),
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

/// A server plus BUCKET[/PREFIX].
#[derive(Debug, Args)]
pub struct Scoped {
    #[command(flatten)]
    target: Target,
    /// BUCKET or BUCKET/PREFIX.
    path: String,
    /// Every live node that shares the config's catalog, not one server (warm runs on
    /// all of them at once; with `cluster.shared_hot` each fills the chunks it owns).
    #[arg(long)]
    cluster: bool,
}

/// `cache stats`: one server, or every live node of the cluster with totals.
#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    target: Target,
    /// Every live node that shares the config's catalog, with totals.
    #[arg(long)]
    cluster: bool,
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
        CacheCommand::Stats(a) if a.cluster => cluster_stats(&a.target).await?,
        CacheCommand::Stats(a) => {
            let c = AdminClient::new(&a.target)?;
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

fn split(path: &str) -> (&str, &str) {
    path.split_once('/').unwrap_or((path, ""))
}

async fn simple(s: &Scoped, route: &str) -> anyhow::Result<()> {
    if s.cluster {
        let mut answers = Vec::new();
        for (node, c) in AdminClient::cluster(&s.target).await? {
            let v: serde_json::Value = c.call(reqwest::Method::POST, route, Some(split(&s.path))).await?.json().await?;
            answers.push(serde_json::json!({ "node": node, "answer": v }));
        }
        println!("{}", serde_json::json!({ "nodes": answers }));
        return Ok(());
    }
    let c = AdminClient::new(&s.target)?;
    let resp = c.call(reqwest::Method::POST, route, Some(split(&s.path))).await?;
    print!("{}", resp.text().await?);
    Ok(())
}

/// Every live node's hot tier counters, and their sums (with `cluster.shared_hot` each
/// chunk is held once, so the total is the cluster's distinct hot bytes).
async fn cluster_stats(t: &Target) -> anyhow::Result<()> {
    let mut nodes = Vec::new();
    let mut total = serde_json::Map::new();
    for (node, c) in AdminClient::cluster(t).await? {
        let v: serde_json::Value = c.call(reqwest::Method::GET, "cache/stats", None).await?.json().await?;
        for (k, n) in v.as_object().into_iter().flatten().filter_map(|(k, n)| Some((k, n.as_u64()?))) {
            let sum = total.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0) + n;
            total.insert(k.clone(), sum.into());
        }
        nodes.push(serde_json::json!({ "node": node, "stats": v }));
    }
    println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "nodes": nodes, "total": total }))?);
    Ok(())
}

/// Warms one server, or with `--cluster` every live node at once: with
/// `cluster.shared_hot` each node fills only the chunks it owns, so the work is spread over
/// the owners and every chunk is fetched once.
async fn warm(s: &Scoped) -> anyhow::Result<()> {
    let (bucket, prefix) = split(&s.path);
    if !s.cluster {
        let c = AdminClient::new(&s.target)?;
        let last = warm_on(&c, "", (bucket, prefix)).await?;
        println!("{last}");
        if last["owned_only"] == true {
            eprintln!(
                "note: with cluster.shared_hot this node filled only the chunks it owns; --cluster warms them all"
            );
        }
        return Ok(());
    }
    let nodes = AdminClient::cluster(&s.target).await?;
    let runs = nodes.iter().map(|(node, c)| async move {
        let last = warm_on(c, &format!("{node}: "), (bucket, prefix)).await?;
        anyhow::Ok(serde_json::json!({ "node": node, "answer": last }))
    });
    let answers = futures::future::try_join_all(runs).await?;
    println!("{}", serde_json::json!({ "nodes": answers }));
    Ok(())
}

async fn warm_on(c: &AdminClient, label: &str, path: (&str, &str)) -> anyhow::Result<serde_json::Value> {
    let resp = c.call(reqwest::Method::POST, "cache/warm", Some(path)).await?;
    follow(resp, "warm", |v| {
        v.get("objects").map(|_| {
            format!(
                "{label}{} objects, {} scanned, {} fetched",
                v["objects"],
                indicatif::HumanBytes(v["bytes"].as_u64().unwrap_or(0)),
                indicatif::HumanBytes(v["fetched"].as_u64().unwrap_or(0))
            )
        })
    })
    .await
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
