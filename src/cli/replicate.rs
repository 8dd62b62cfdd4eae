//! `strata replicate status|retry`: the journal's backlog per store, read straight from
//! the catalog (so it works while the server is down), and a retry of stuck entries.

use super::{Common, load};
use crate::catalog::Catalog;
use crate::journal::{Journal, JournalSettings};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum ReplicateCommand {
    /// Show each store's backlog and lag, and any stuck entries.
    Status {
        #[command(flatten)]
        common: Common,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Return stuck entries to the queue (the server retries them).
    Retry {
        #[command(flatten)]
        common: Common,
    },
}

pub(crate) async fn run(cmd: ReplicateCommand) -> anyhow::Result<()> {
    match cmd {
        ReplicateCommand::Status { common, json } => status(&common, json).await,
        ReplicateCommand::Retry { common } => {
            let cfg = load(&common, None)?;
            let (catalog, journal) = open(&cfg).await?;
            let n = catalog.journal_recover(journal.node(), true).await?;
            catalog.close().await;
            println!("{{\"retried\":{n}}}");
            Ok(())
        }
    }
}

/// The catalog and this node's journal directory, without the hot tier or the stores, so
/// these commands are safe beside a running server.
async fn open(cfg: &crate::config::Config) -> anyhow::Result<(Catalog, Journal)> {
    let url = cfg.catalog.as_deref().unwrap_or_default();
    let catalog = Catalog::connect(url).await?;
    let j = &cfg.journal;
    let settings = JournalSettings {
        dir: cfg.journal_dir(),
        max_size: j.max_size.0,
        min_free: j.min_free.0,
        segment_threshold: j.segment_threshold.0,
    };
    Ok((catalog, Journal::open(settings).await?))
}

async fn status(common: &Common, json: bool) -> anyhow::Result<()> {
    let cfg = load(common, None)?;
    let (catalog, journal) = open(&cfg).await?;
    let backlog = crate::replication::backlog(&catalog, cfg.backends.keys().cloned()).await?;
    catalog.close().await;
    if json {
        let v = serde_json::json!({ "staged_bytes": journal.used(), "stores": backlog.stores, "stuck": backlog.stuck,
            "waiting": backlog.waiting });
        println!("{v}");
        return Ok(());
    }
    let now = crate::clock::now_ms();
    println!("{:<14} {:>9} {:>12} {:>6} {:>10}  last error", "store", "pending", "bytes", "stuck", "lag");
    for s in &backlog.stores {
        println!(
            "{:<14} {:>9} {:>12} {:>6} {:>9.1}s  {}",
            s.store,
            s.entries,
            indicatif::HumanBytes(s.bytes).to_string(),
            s.stuck,
            s.lag_s(now),
            s.last_error.as_deref().unwrap_or("")
        );
    }
    for w in &backlog.waiting {
        println!("waiting for node {} (down): {} entries, {}", w.node, w.entries, indicatif::HumanBytes(w.bytes));
    }
    for e in &backlog.stuck {
        let err = e.last_error.as_deref().unwrap_or("");
        println!("stuck: {:?}/{:?} -> {:?}: {:?}", e.bucket, e.key, e.store, err);
    }
    Ok(())
}
