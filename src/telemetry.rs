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

/// One entry of the recent-errors list on the status page.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ErrorEntry {
    /// When, RFC 3339.
    pub ts: String,
    /// Where: "s3 GetObject", "backend local", "catalog", …
    pub source: String,
    /// What.
    pub message: String,
}

/// Errors kept for the status page.
const RECENT: usize = 50;
static ERRORS: std::sync::Mutex<std::collections::VecDeque<ErrorEntry>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

/// Remembers an error for the status page (the last 50 are kept).
pub fn record_error(source: &str, message: &str) {
    let ts = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let mut q = ERRORS.lock().unwrap_or_else(|p| p.into_inner());
    if q.len() == RECENT {
        q.pop_back();
    }
    q.push_front(ErrorEntry { ts, source: source.to_owned(), message: message.chars().take(300).collect() });
}

/// The recent errors, newest first.
pub fn recent_errors() -> Vec<ErrorEntry> {
    ERRORS.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
}

/// Counts one API request and its latency (to the response head).
pub fn record_request(op: &'static str, status: u16, started: std::time::Instant) {
    let seconds = started.elapsed().as_secs_f64();
    labelled(
        &REQUESTS,
        (op, status),
        |(op, status)| {
            let counter = ::metrics::counter!("strata_requests_total", "op" => op, "status" => status.to_string());
            (counter, ::metrics::histogram!("strata_request_seconds", "op" => op))
        },
        |(counter, histogram)| {
            counter.increment(1);
            histogram.record(seconds);
        },
    );
}

/// Counts one S3 request of access key `key` (a label it may have: a known id or
/// `unknown`) in status class `class` (`2xx` …).
pub fn record_key_request(key: &str, class: &'static str) {
    let known = KEY_REQUESTS.get_or_init(Default::default);
    let found = |m: &std::collections::HashMap<String, Vec<(&'static str, ::metrics::Counter)>>| {
        m.get(key)?.iter().find(|(c, _)| *c == class).map(|(_, counter)| counter.increment(1))
    };
    if found(&known.read().unwrap_or_else(|p| p.into_inner())).is_some() {
        return;
    }
    let counter = ::metrics::counter!("strata_s3_key_requests_total", "key" => key.to_owned(), "class" => class);
    counter.increment(1);
    let mut w = known.write().unwrap_or_else(|p| p.into_inner());
    if w.len() >= MAX_LABEL_SETS {
        w.clear();
    }
    w.entry(key.to_owned()).or_default().push((class, counter));
}

/// Handles of labelled series, resolved once per label set: a lookup by name and labels
/// costs an allocation per label and a registry search, on every request.
type Handles<K, H> = OnceLock<std::sync::RwLock<std::collections::HashMap<K, H>>>;

static REQUESTS: Handles<(&'static str, u16), (::metrics::Counter, ::metrics::Histogram)> = OnceLock::new();
static KEY_REQUESTS: Handles<String, Vec<(&'static str, ::metrics::Counter)>> = OnceLock::new();

/// Most label sets kept (status codes and key ids are few; this bounds a surprise).
const MAX_LABEL_SETS: usize = 4096;

/// `use_` on the handles of `labels` in `known`, made by `make` the first time.
fn labelled<K, H>(known: &Handles<K, H>, labels: K, make: impl FnOnce(K) -> H, use_: impl FnOnce(&H))
where
    K: std::hash::Hash + Eq + Clone,
{
    let known = known.get_or_init(Default::default);
    if let Some(h) = known.read().unwrap_or_else(|p| p.into_inner()).get(&labels) {
        return use_(h);
    }
    let h = make(labels.clone());
    use_(&h);
    let mut w = known.write().unwrap_or_else(|p| p.into_inner());
    if w.len() >= MAX_LABEL_SETS {
        w.clear();
    }
    w.insert(labels, h);
}

/// Creates every unlabelled series at zero, and the per-backend ones for `backends`, so
/// `/metrics` lists every documented name from the start.
pub fn register(backends: &[String]) {
    for c in [
        "strata_hot_hits_total",
        "strata_hot_fill_errors_total",
        "strata_hot_corrupt_total",
        "strata_hot_evictions_total",
        "strata_hot_evicted_bytes_total",
        "strata_migrated_objects_total",
        "strata_scrub_repairs_total",
        "strata_access_log_dropped_total",
        "strata_hot_fill_mismatch_total",
        "strata_read_version_changed_total",
        "strata_journal_takeovers_total",
        "strata_peer_copies_total",
        "strata_auth_key_errors_total",
    ] {
        ::metrics::counter!(c).increment(0);
    }
    for result in ["ok", "unavailable"] {
        ::metrics::counter!("strata_peer_reads_total", "result" => result).increment(0);
    }
    for result in ["ok", "retry", "stuck"] {
        ::metrics::counter!("strata_journal_uploads_total", "result" => result).increment(0);
    }
    for api in ["s3", "admin", "password", "login"] {
        ::metrics::counter!("strata_auth_failures_total", "api" => api).increment(0);
        ::metrics::counter!("strata_auth_throttled_total", "api" => api).increment(0);
    }
    for op in ["put", "delete"] {
        for ack in ["stores", "journal", "refused"] {
            ::metrics::counter!("strata_writes_total", "op" => op, "ack" => ack).increment(0);
        }
    }
    ::metrics::gauge!("strata_journal_bytes").set(0.0);
    ::metrics::gauge!("strata_journal_entries").set(0.0);
    ::metrics::gauge!("strata_read_only").set(0.0);
    for reason in ["bad-link", "expired-link", "password", "signed-only", "private"] {
        ::metrics::counter!("strata_web_denied_total", "reason" => reason).increment(0);
    }
    for reason in ["absent", "corrupt", "no-space"] {
        ::metrics::counter!("strata_hot_misses_total", "reason" => reason).increment(0);
    }
    for source in ["hot", "cold"] {
        ::metrics::counter!("strata_hot_bytes_total", "source" => source).increment(0);
    }
    for b in backends {
        for op in ["read", "write", "stat", "delete", "list"] {
            ::metrics::counter!("strata_backend_requests_total", "backend" => b.clone(), "op" => op).increment(0);
            ::metrics::counter!("strata_backend_errors_total", "backend" => b.clone(), "op" => op).increment(0);
        }
        ::metrics::counter!("strata_backend_read_bytes_total", "backend" => b.clone()).increment(0);
        ::metrics::counter!("strata_backend_write_bytes_total", "backend" => b.clone()).increment(0);
        ::metrics::counter!("strata_failover_reads_total", "backend" => b.clone()).increment(0);
        ::metrics::gauge!("strata_replication_pending", "backend" => b.clone()).set(0.0);
        ::metrics::gauge!("strata_replication_lag_seconds", "backend" => b.clone()).set(0.0);
    }
}

/// Recorder housekeeping as a background worker.
pub struct Upkeep;

#[async_trait::async_trait]
impl crate::worker::Worker for Upkeep {
    fn name(&self) -> &'static str {
        "metrics-upkeep"
    }
    fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(5)
    }
    async fn tick(&mut self) -> crate::error::Result<()> {
        upkeep();
        Ok(())
    }
}
