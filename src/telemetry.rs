//! Process-wide metrics: installs the Prometheus recorder once and renders its text.
//!
//! Owns the histogram buckets (real buckets, not summaries, so Prometheus can aggregate
//! across nodes). Every metric is named `strata_*` and listed in `docs/metrics.md`. It must
//! not define metrics itself: modules record through the `metrics` macros.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets, in seconds: 0.5 ms to 60 s.
const SECONDS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Throughput buckets, in bytes per second: 64 KiB/s to 4 GiB/s.
const RATES: &[f64] =
    &[65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0, 268435456.0, 1073741824.0, 4294967296.0];

/// Installs the recorder (first call only). `None` when another recorder is installed.
pub fn init() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let b = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_bytes_per_second".into()), RATES));
            match b.and_then(|b| b.install_recorder()) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// The current metrics in Prometheus text format.
pub fn render() -> String {
    init().map(|h| h.render()).unwrap_or_default()
}

/// Periodic housekeeping of the recorder (drains histogram buffers); call every few seconds.
pub fn upkeep() {
    if let Some(h) = init() {
        h.run_upkeep();
    }
}
