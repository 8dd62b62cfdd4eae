//! The operator's view of one process: backend health, short time series for sparklines,
//! the hot tier's figures, recent errors and the most-missed objects.
//!
//! Owns [`HealthWorker`], which every 5 s pings the catalog, probes each backend with a
//! `stat` of a path that does not exist, and samples the counters into ring buffers of
//! 10 minutes. It only reads the tier's state, never changes it. Rendering is `api::status`'s.

use crate::backend::Backends;
use crate::tier::Tier;
use crate::worker::Worker;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Time between samples.
pub const EVERY: Duration = Duration::from_secs(5);
/// Samples kept per series (10 minutes).
pub const POINTS: usize = 120;
/// Path probed in every backend; it never exists, so a healthy store answers "not found".
const PROBE_PATH: &str = ".strata-health-probe";

/// One backend as the status page shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct BackendView {
    /// Backend name.
    pub name: String,
    /// "up", "degraded" (calls failed in the last interval) or "down" (the probe failed).
    pub state: String,
    /// The probe's last error.
    pub last_error: Option<String>,
    /// Latency of the last probe, ms.
    pub probe_ms: f64,
    /// Mean call latency per interval, ms (the probe's when there were no calls).
    pub latency_ms: Vec<f64>,
    /// Read throughput per interval, MiB/s.
    pub read_mib_s: Vec<f64>,
    /// Failed calls since start.
    pub errors: u64,
}

/// The hot tier as the status page shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct HotView {
    /// Bytes used and the bound.
    pub used_bytes: u64,
    /// The bound.
    pub max_bytes: u64,
    /// Hits / (hits + misses) since start.
    pub hit_ratio: f64,
    /// Hit ratio per interval (NaN-free: intervals without reads repeat the last value).
    pub hit_ratio_series: Vec<f64>,
    /// Bytes served from hot and from cold since start.
    pub bytes_hot: u64,
    /// Bytes served as they came from the cold store.
    pub bytes_cold: u64,
    /// Chunks evicted since start.
    pub evictions: u64,
}

/// One object of the miss log's top list.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Missed {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Misses in the log's recent tail.
    pub count: u64,
}

/// Everything the status page and `strata status` show.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct Snapshot {
    /// Seconds since the process started.
    pub uptime_s: u64,
    /// Whether the catalog answered the last ping.
    pub catalog_ok: bool,
    /// The last ping's error.
    pub catalog_error: Option<String>,
    /// Every backend.
    pub backends: Vec<BackendView>,
    /// The hot tier, when enabled.
    pub hot: Option<HotView>,
    /// The journal's backlog and each store's replication lag (after the first probe).
    pub journal: Option<JournalView>,
    /// Recent errors, newest first.
    pub recent_errors: Vec<crate::telemetry::ErrorEntry>,
    /// Most-missed objects in the miss log's tail.
    pub top_missed: Vec<Missed>,
    /// The TLS certificates in force, when the listeners speak HTTPS.
    #[serde(default)]
    pub certificates: Vec<crate::tls::CertView>,
}

/// The journal as the status page shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct JournalView {
    /// Writes are refused (maintenance).
    pub read_only: bool,
    /// Bytes in staging files.
    pub staged_bytes: u64,
    /// `journal.max_size`.
    pub max_size: u64,
    /// Every store's backlog.
    pub stores: Vec<StoreView>,
    /// The nodes that share the catalog (one with SQLite).
    #[serde(default)]
    pub nodes: Vec<NodeLine>,
}

/// One node of the cluster, as the status page shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct NodeLine {
    /// Node id.
    pub id: String,
    /// Where peers reach it.
    pub address: String,
    /// `up`, `stopped` or `unregistered`.
    pub state: String,
    /// Whether its lease holds.
    pub live: bool,
    /// Its unfinished journal entries (waiting for it when it is down).
    pub entries: u64,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_s: f64,
    /// Bytes in its hot tier.
    #[serde(default)]
    pub hot_bytes: u64,
    /// Bytes it read from other nodes' hot tiers.
    #[serde(default)]
    pub peer_bytes: u64,
}

/// One store's backlog.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct StoreView {
    /// Store name.
    pub store: String,
    /// Writes it does not hold yet.
    pub entries: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Entries that failed permanently.
    pub stuck: u64,
    /// Age of the oldest, in seconds: the replication lag.
    pub lag_s: f64,
    /// The latest failure.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Series {
    latency_ms: VecDeque<f64>,
    read_mib_s: VecDeque<f64>,
    /// Totals at the last sample: requests, errors, bytes read, latency (µs).
    prev: (u64, u64, u64, u64),
    state: String,
    last_error: Option<String>,
    probe_ms: f64,
    errors: u64,
}

#[derive(Default)]
struct State {
    catalog: Option<Result<(), String>>,
    backends: BTreeMap<String, Series>,
    hit_ratio: VecDeque<f64>,
    prev_hot: (u64, u64),
    journal: Option<JournalView>,
}

/// Shared between the worker and the handlers.
pub struct Health {
    started: Instant,
    state: Mutex<State>,
    certs: Option<crate::tls::Certs>,
}

impl Default for Health {
    fn default() -> Self {
        Self { started: Instant::now(), state: Mutex::default(), certs: None }
    }
}

impl Health {
    /// A view that also shows the TLS certificates of `certs`.
    pub fn with_certs(certs: Option<crate::tls::Certs>) -> Self {
        Self { certs, ..Self::default() }
    }
}

fn push(q: &mut VecDeque<f64>, v: f64) {
    if q.len() == POINTS {
        q.pop_front();
    }
    q.push_back(if v.is_finite() { v } else { 0.0 });
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Names of backends that are not "up" at the last probe.
    pub fn degraded(&self) -> Vec<String> {
        self.lock().backends.iter().filter(|(_, s)| s.state != "up").map(|(n, _)| n.clone()).collect()
    }

    /// Journal entries that failed for good, per store (at the last sample), which wait for
    /// `strata replicate retry`.
    pub fn stuck(&self) -> Vec<(String, u64)> {
        let st = self.lock();
        let stores = st.journal.as_ref().map(|j| j.stores.as_slice()).unwrap_or_default();
        stores.iter().filter(|s| s.stuck > 0).map(|s| (s.store.clone(), s.stuck)).collect()
    }

    /// Stores with writes they do not hold yet, at the last sample: their backlog, age and
    /// latest failure (a write retried again and again shows here, not only in the log).
    pub fn backlog(&self) -> Vec<StoreView> {
        let st = self.lock();
        let stores = st.journal.as_ref().map(|j| j.stores.as_slice()).unwrap_or_default();
        stores.iter().filter(|s| s.entries > 0).cloned().collect()
    }

    /// The current view; `tier` supplies the hot tier's counters and miss log.
    pub fn snapshot(&self, tier: &Tier) -> Snapshot {
        let st = self.lock();
        let backends = st
            .backends
            .iter()
            .map(|(name, s)| BackendView {
                name: name.clone(),
                state: s.state.clone(),
                last_error: s.last_error.clone(),
                probe_ms: s.probe_ms,
                latency_ms: s.latency_ms.iter().copied().collect(),
                read_mib_s: s.read_mib_s.iter().copied().collect(),
                errors: s.errors,
            })
            .collect();
        let hot = tier.cache_stats().map(|s| HotView {
            used_bytes: s.used_bytes,
            max_bytes: s.max_bytes,
            hit_ratio: s.hits as f64 / (s.hits + s.misses).max(1) as f64,
            hit_ratio_series: st.hit_ratio.iter().copied().collect(),
            bytes_hot: s.bytes_hot,
            bytes_cold: s.bytes_cold,
            evictions: s.evictions,
        });
        let top_missed = tier.miss_log().map(|p| top_missed(p, 10)).unwrap_or_default();
        Snapshot {
            uptime_s: self.started.elapsed().as_secs(),
            catalog_ok: matches!(st.catalog, Some(Ok(()))),
            catalog_error: match &st.catalog {
                Some(Err(e)) => Some(e.clone()),
                None => Some("not checked yet".into()),
                _ => None,
            },
            backends,
            hot,
            journal: st.journal.clone(),
            recent_errors: crate::telemetry::recent_errors(),
            top_missed,
            certificates: self.certs.as_ref().map(|c| c.views()).unwrap_or_default(),
        }
    }
}

/// Counts the objects in the last 256 KiB of the miss log.
fn top_missed(path: &std::path::Path, n: usize) -> Vec<Missed> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else { return Vec::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let tail = 256 << 10;
    if f.seek(SeekFrom::Start(len.saturating_sub(tail))).is_err() {
        return Vec::new();
    }
    let mut text = String::new();
    if f.take(tail).read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    let mut counts: HashMap<(String, String), u64> = HashMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if let (Some(b), Some(k)) = (v["bucket"].as_str(), v["key"].as_str()) {
            *counts.entry((b.to_owned(), k.to_owned())).or_default() += 1;
        }
    }
    let mut top: Vec<Missed> = counts.into_iter().map(|((bucket, key), count)| Missed { bucket, key, count }).collect();
    top.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    top.truncate(n);
    top
}

/// Probes and samples every [`EVERY`].
pub struct HealthWorker {
    tier: Tier,
    backends: Backends,
    health: Arc<Health>,
    last: Instant,
}

impl HealthWorker {
    /// A worker feeding `health` from `tier`, probing each of `backends` (the tier's).
    pub fn new(tier: Tier, backends: Backends, health: Arc<Health>) -> Self {
        Self { tier, backends, health, last: Instant::now() }
    }

    async fn probe(&self, name: &str) -> (Result<(), String>, f64) {
        let started = Instant::now();
        let res = match self.backends.get(name) {
            Some(b) => match tokio::time::timeout(Duration::from_secs(5), b.stat(PROBE_PATH)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("probe timed out after 5s".into()),
            },
            None => Err("no such backend".into()),
        };
        (res, started.elapsed().as_secs_f64() * 1000.0)
    }
}

impl HealthWorker {
    async fn journal(&self) -> Option<JournalView> {
        let status = self.tier.journal_status().await.ok()?;
        let now = crate::clock::now_ms();
        let stores = status
            .backlog
            .stores
            .into_iter()
            .map(|l| StoreView {
                lag_s: l.lag_s(now),
                store: l.store,
                entries: l.entries,
                bytes: l.bytes,
                stuck: l.stuck,
                last_error: l.last_error,
            })
            .collect();
        let view = self.tier.cluster_status().await.map(|v| v.nodes).unwrap_or_default();
        let nodes = view
            .into_iter()
            .map(|n| NodeLine {
                heartbeat_age_s: (now - n.node.heartbeat_ms).max(0) as f64 / 1000.0,
                hot_bytes: n.node.hot_bytes,
                peer_bytes: n.node.peer_bytes,
                id: n.node.id,
                address: n.node.address,
                state: n.node.state,
                live: n.live,
                entries: n.backlog.entries,
            })
            .collect();
        Some(JournalView {
            read_only: status.read_only,
            staged_bytes: status.staged_bytes,
            max_size: status.max_size,
            stores,
            nodes,
        })
    }
}

#[async_trait::async_trait]
impl Worker for HealthWorker {
    fn name(&self) -> &'static str {
        "health"
    }

    fn interval(&self) -> Duration {
        EVERY
    }

    async fn tick(&mut self) -> crate::error::Result<()> {
        let catalog = self.tier.ping().await;
        if let Err(e) = &catalog {
            crate::telemetry::record_error("catalog", e);
        }
        let names: Vec<String> = self.backends.names();
        let mut probes = Vec::new();
        for n in &names {
            probes.push((n.clone(), self.probe(n).await));
        }
        let journal = self.journal().await;
        let dt = self.last.elapsed().as_secs_f64().max(0.001);
        self.last = Instant::now();
        let mut st = self.health.lock();
        st.catalog = Some(catalog);
        st.journal = journal;
        for (name, (res, ms)) in probes {
            let totals = self.backends.stats(&name).map_or((0, 0, 0, 0), |s| {
                (
                    s.requests.load(Relaxed),
                    s.errors.load(Relaxed),
                    s.read_bytes.load(Relaxed),
                    s.latency_us.load(Relaxed),
                )
            });
            let s = st.backends.entry(name.clone()).or_default();
            let (dreq, derr) = (totals.0.saturating_sub(s.prev.0), totals.1.saturating_sub(s.prev.1));
            let dbytes = totals.2.saturating_sub(s.prev.2);
            let dlat = totals.3.saturating_sub(s.prev.3);
            let latency = if dreq > 0 { dlat as f64 / dreq as f64 / 1000.0 } else { ms };
            push(&mut s.latency_ms, latency);
            push(&mut s.read_mib_s, dbytes as f64 / dt / (1 << 20) as f64);
            s.prev = totals;
            s.errors = totals.1;
            s.probe_ms = ms;
            let up = res.is_ok();
            ::metrics::gauge!("strata_backend_up", "backend" => name.clone()).set(if up { 1.0 } else { 0.0 });
            s.state = match (&res, derr) {
                (Err(_), _) => "down",
                (Ok(()), 0) => "up",
                _ => "degraded",
            }
            .to_owned();
            if let Err(e) = &res {
                crate::telemetry::record_error(&format!("backend {name}"), e);
            }
            s.last_error = res.err();
        }
        if let Some(s) = self.tier.cache_stats() {
            let (dh, dm) = (s.hits.saturating_sub(st.prev_hot.0), s.misses.saturating_sub(st.prev_hot.1));
            let last = st.hit_ratio.back().copied().unwrap_or(0.0);
            let ratio = if dh + dm > 0 { dh as f64 / (dh + dm) as f64 } else { last };
            push(&mut st.hit_ratio, ratio);
            st.prev_hot = (s.hits, s.misses);
        }
        Ok(())
    }
}
