//! `strata cluster status`: the nodes that share the catalog, whether each holds its lease,
//! its last heartbeat and its journal backlog, read straight from the catalog (so it works
//! while servers are down). `strata cluster leave`: a running node stops taking writes,
//! drains its journal, deregisters and stops.

use super::{Common, admin, load};
use crate::catalog::Catalog;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// List the nodes, their health, journal backlog and last heartbeat.
    Status {
        #[command(flatten)]
        common: Common,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Have a running node leave: it refuses writes (503, so clients go to the other
    /// nodes), drains its journal to the stores, deregisters and stops.
    Leave(admin::Target),
}

pub(crate) async fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    let (common, json) = match cmd {
        ClusterCommand::Status { common, json } => (common, json),
        ClusterCommand::Leave(t) => return leave(&t).await,
    };
    let cfg = load(&common, None)?;
    let catalog = Catalog::connect(cfg.catalog.as_deref().unwrap_or_default()).await?;
    let view = crate::cluster::status(&catalog).await?;
    catalog.close().await;
    if json {
        println!("{}", serde_json::to_string(&view)?);
        return Ok(());
    }
    let now = crate::clock::now_ms();
    println!(
        "{:<22} {:<22} {:<12} {:>6} {:>9} {:>12} {:>14} {:>12}",
        "node", "address", "state", "health", "entries", "bytes", "heartbeat", "hot"
    );
    for n in &view.nodes {
        let age = if n.node.heartbeat_ms == 0 {
            "never".to_owned()
        } else {
            format!("{:.1}s ago", (now - n.node.heartbeat_ms).max(0) as f64 / 1000.0)
        };
        println!(
            "{:<22} {:<22} {:<12} {:>6} {:>9} {:>12} {:>14} {:>12}",
            n.node.id,
            n.node.address,
            n.node.state,
            if n.live { "up" } else { "down" },
            n.backlog.entries,
            indicatif::HumanBytes(n.backlog.bytes).to_string(),
            age,
            indicatif::HumanBytes(n.node.hot_bytes).to_string()
        );
    }
    Ok(())
}

async fn leave(t: &admin::Target) -> anyhow::Result<()> {
    let c = admin::AdminClient::new(t)?;
    let resp = c.call(reqwest::Method::POST, "cluster/leave", None).await?;
    let last = admin::follow(resp, "leaving the cluster", |v| {
        v.get("entries")
            .map(|n| format!("{n} journal entries left to drain"))
            .or_else(|| v.get("left").map(|id| format!("node {} left the cluster", id.as_str().unwrap_or_default())))
    })
    .await?;
    println!("{last}");
    Ok(())
}
