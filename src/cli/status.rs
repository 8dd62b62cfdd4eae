//! `strata status`: the status page's summary in a terminal.

use super::admin::{AdminClient, Target};
use crate::health::Snapshot;

/// Prints the summary of a running server.
pub async fn run(t: &Target) -> anyhow::Result<()> {
    let c = AdminClient::new(t)?;
    let s: Snapshot = c.call(reqwest::Method::GET, "status.json", None).await?.json().await?;
    print!("{}", summary(c.base(), &s));
    Ok(())
}

fn mib(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// The text `strata status` prints.
pub fn summary(base: &str, s: &Snapshot) -> String {
    let mut out = String::new();
    let catalog =
        if s.catalog_ok { "ok".to_owned() } else { format!("DOWN ({})", s.catalog_error.clone().unwrap_or_default()) };
    out += &format!("strata at {base}: up {} s, catalog {catalog}\n", s.uptime_s);
    out += "cold stores:\n";
    for b in &s.backends {
        out += &format!(
            "  {:<12} {:<9} probe {:>7.1} ms  latency {:>7.1} ms  reads {:>8.1} MiB/s  errors {}{}\n",
            b.name,
            b.state,
            b.probe_ms,
            b.latency_ms.last().copied().unwrap_or(0.0),
            b.read_mib_s.last().copied().unwrap_or(0.0),
            b.errors,
            b.last_error.as_ref().map(|e| format!("  ({e})")).unwrap_or_default()
        );
    }
    match &s.hot {
        Some(h) => {
            out += &format!(
                "hot tier: {} of {}, hit ratio {:.1}%, {} hot / {} cold served, {} evictions\n",
                mib(h.used_bytes),
                mib(h.max_bytes),
                h.hit_ratio * 100.0,
                mib(h.bytes_hot),
                mib(h.bytes_cold),
                h.evictions
            )
        }
        None => out += "hot tier: disabled\n",
    }
    match &s.journal {
        Some(j) => {
            let ro = if j.read_only { ", READ-ONLY" } else { "" };
            out += &format!("journal: {} of {} staged{ro}\n", mib(j.staged_bytes), mib(j.max_size));
            for st in &j.stores {
                out += &format!(
                    "  {:<12} pending {:>6}  {:>10}  stuck {:>3}  lag {:>7.1} s{}\n",
                    st.store,
                    st.entries,
                    mib(st.bytes),
                    st.stuck,
                    st.lag_s,
                    st.last_error.as_ref().map(|e| format!("  ({e})")).unwrap_or_default()
                );
            }
        }
        None => out += "journal: not sampled yet\n",
    }
    if !s.top_missed.is_empty() {
        out += "most missed:\n";
        for m in &s.top_missed {
            out += &format!("  {:>6}  {}/{}\n", m.count, m.bucket, m.key);
        }
    }
    if !s.recent_errors.is_empty() {
        out += "recent errors:\n";
        for e in s.recent_errors.iter().take(10) {
            out += &format!("  {}  {}  {}\n", e.ts, e.source, e.message);
        }
    }
    out
}
