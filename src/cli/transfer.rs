//! `strata copy|sync|move|verify SRC DST`: bulk moves with a progress display and a JSON
//! summary on stdout. Exits non-zero when anything failed or, for verify, differed.

use crate::config::ByteSize;
use crate::transfer::{Location, Mode, Options, Stats, Summary};
use anyhow::{Context, bail};
use clap::Args;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use sha2::Digest;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Arguments shared by the four commands.
#[derive(Debug, Args)]
pub struct TransferArgs {
    #[command(flatten)]
    common: super::Common,
    /// Source: BACKEND:PREFIX (a backend of the config), s3://BUCKET/PREFIX, or a directory.
    src: String,
    /// Destination, in the same forms.
    dst: String,
    /// Objects transferred at once.
    #[arg(long, default_value_t = 16)]
    transfers: usize,
    /// Objects checked (stat, compare) at once.
    #[arg(long, default_value_t = 16)]
    checkers: usize,
    /// Show what would be copied or deleted; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Bandwidth limit across all transfers, e.g. "50MiB" (per second).
    #[arg(long)]
    max_rate: Option<String>,
    /// Object operations (copies, deletes) per second.
    #[arg(long)]
    max_tps: Option<u32>,
    /// Compare MD5 checksums, not only sizes and times, to decide what changed.
    #[arg(long)]
    checksum: bool,
    /// Checkpoint file (default: <data-dir>/transfers/<run>.sqlite). Removed after a clean run.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// When copies to a directory become durable: `batch` syncs the destination's
    /// filesystem once before each checkpoint batch (at most every second or 500 objects)
    /// and at the end; `object` fsyncs every file and its directory. `move` always uses
    /// `object`, since it deletes each source once its copy is safe.
    #[arg(long, value_parser = ["batch", "object"], default_value = "batch")]
    sync: String,
}

/// Runs one transfer command.
pub async fn run(mode: Mode, a: TransferArgs) -> anyhow::Result<()> {
    let cfg = super::load(&a.common, None)?;
    let env = |k: &str| std::env::var(k).ok();
    let src = Location::parse(&a.src, &cfg, &env).with_context(|| format!("source {}", a.src))?;
    let deferred = a.sync == "batch" && !matches!(mode, Mode::Move);
    let dst = Location::parse_with(&a.dst, &cfg, &env, deferred).with_context(|| format!("destination {}", a.dst))?;
    let max_rate =
        a.max_rate.as_deref().map(ByteSize::parse).transpose().map_err(anyhow::Error::msg).context("--max-rate")?;
    if a.transfers == 0 || a.checkers == 0 {
        bail!("--transfers and --checkers must be at least 1");
    }
    let run_id = hex::encode(&sha2::Sha256::digest(format!("{mode:?}\n{}\n{}", a.src, a.dst))[..8]);
    let opts = Options {
        transfers: a.transfers,
        checkers: a.checkers,
        dry_run: a.dry_run,
        max_rate: max_rate.map(|b| b.0),
        max_tps: a.max_tps,
        checksum: a.checksum,
        checkpoint: a.checkpoint.unwrap_or_else(|| cfg.data_dir().join("transfers").join(format!("{run_id}.sqlite"))),
    };
    let stats = Arc::new(Stats::default());
    let ticker = tokio::spawn(progress(stats.clone()));
    let res = crate::transfer::run(mode, src, dst, opts, stats).await;
    ticker.abort();
    let _ = ticker.await;
    let summary: Summary = res?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if !summary.ok() {
        bail!(
            "{} failed, {} missing, {} different, {} extra",
            summary.failed,
            summary.missing.len(),
            summary.different.len(),
            summary.extra.len()
        );
    }
    Ok(())
}

/// A bar on a terminal, a line every 5 s otherwise.
async fn progress(stats: Arc<Stats>) {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    if !tty {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut last_line = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (listed, copied, skipped, failed, bytes) = (
            stats.listed.load(Relaxed),
            stats.copied.load(Relaxed),
            stats.skipped.load(Relaxed),
            stats.failed.load(Relaxed),
            stats.bytes.load(Relaxed),
        );
        let done = copied + skipped + failed;
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let eta = if stats.listing_done.load(Relaxed) == 1 && done > 0 {
            let left = listed.saturating_sub(done) as f64 / (done as f64 / secs);
            format!("ETA {}s", left.round())
        } else {
            "ETA ? (listing)".to_owned()
        };
        let msg = format!(
            "{:.0} obj/s {}/s copied {copied} skipped {skipped} failed {failed} {eta}",
            done as f64 / secs,
            HumanBytes((bytes as f64 / secs) as u64)
        );
        if tty {
            bar.set_length(listed);
            bar.set_position(done);
            bar.set_message(msg);
        } else if last_line.elapsed() >= Duration::from_secs(5) {
            last_line = Instant::now();
            eprintln!("listed {listed} done {done} {msg}");
        }
    }
}
