//! The trace-driven cache simulator behind `strata cache simulate`.
//!
//! Replays a trace of (object, size) requests against S3-FIFO and LRU, using the same
//! [`Eviction`](super::eviction::Eviction) code as the server, and against Belady's OPT (evict
//! the object needed farthest in the future; skip admitting one needed later than all
//! others). It reports the request hit ratio, the byte hit ratio and the bytes fetched
//! from the origin. Objects are whole units here: the server's chunking is not modelled.

use super::eviction::{self, EvictionKind};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};

/// One request: an object id and its size in bytes.
pub type Request = (u64, u64);

/// A synthetic workload: Zipf-distributed reads with periodic one-time scans.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Distinct objects in the popular set.
    pub objects: u64,
    /// Requests to the popular set.
    pub requests: u64,
    /// Zipf exponent (0.9 is typical of web and media traffic).
    pub alpha: f64,
    /// A scan starts after every this many requests (0: no scans).
    pub scan_every: u64,
    /// Objects per scan; each scan reads objects never seen before.
    pub scan_len: u64,
    /// Sizes vary from 4 KiB to 512 KiB (else every object is 64 KiB).
    pub varied_sizes: bool,
    /// Random seed, so runs repeat.
    pub seed: u64,
}

fn size_of(id: u64, varied: bool) -> u64 {
    if !varied {
        return 64 << 10;
    }
    let h = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58;
    4096 << (h % 8)
}

impl Workload {
    /// The request sequence.
    pub fn generate(&self) -> Vec<Request> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let mut cdf = Vec::with_capacity(self.objects as usize);
        let mut total = 0.0;
        for i in 1..=self.objects.max(1) {
            total += 1.0 / (i as f64).powf(self.alpha);
            cdf.push(total);
        }
        let mut out = Vec::new();
        let mut next_scan_id = self.objects;
        for n in 0..self.requests {
            if self.scan_every > 0 && n > 0 && n % self.scan_every == 0 {
                for _ in 0..self.scan_len {
                    out.push((next_scan_id, size_of(next_scan_id, self.varied_sizes)));
                    next_scan_id += 1;
                }
            }
            let u = rng.r#gen::<f64>() * total;
            let id = cdf.partition_point(|c| *c < u) as u64;
            out.push((id, size_of(id, self.varied_sizes)));
        }
        out
    }
}

/// Parses a trace: one request per line, `KEY SIZE` or `KEY,SIZE` (keys are any text).
pub fn parse_trace(text: &str) -> Result<Vec<Request>, String> {
    let mut ids: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split([',', ' ', '\t']).filter(|s| !s.is_empty());
        let (Some(key), Some(size), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("line {}: expected KEY SIZE", n + 1));
        };
        let size: u64 = size.parse().map_err(|_| format!("line {}: size {size:?} is not a number", n + 1))?;
        let next = ids.len() as u64;
        out.push((*ids.entry(key.to_owned()).or_insert(next), size.max(1)));
    }
    Ok(out)
}

/// The outcome of one policy on one trace.
#[derive(Debug, Clone, Serialize)]
pub struct SimResult {
    /// Policy name.
    pub policy: String,
    /// Requests served from the cache, as a fraction.
    pub hit_ratio: f64,
    /// Bytes served from the cache, as a fraction.
    pub byte_hit_ratio: f64,
    /// Bytes fetched from the origin.
    pub origin_bytes: u64,
}

/// The bytes of every distinct object in `trace`.
pub fn footprint(trace: &[Request]) -> u64 {
    let mut seen = HashSet::new();
    trace.iter().filter(|(id, _)| seen.insert(*id)).map(|(_, s)| s).sum()
}

/// Runs S3-FIFO, LRU and OPT on `trace` with a cache of `capacity` bytes.
pub fn simulate(trace: &[Request], capacity: u64) -> Vec<SimResult> {
    let mut out = vec![];
    for kind in [EvictionKind::S3Fifo, EvictionKind::Lru] {
        out.push(run_policy(trace, capacity, kind));
    }
    out.push(run_opt(trace, capacity));
    out
}

#[derive(Default)]
struct Tally {
    hits: u64,
    bytes: u64,
    hit_bytes: u64,
}

impl Tally {
    fn result(&self, name: &str, n: usize) -> SimResult {
        SimResult {
            policy: name.to_owned(),
            hit_ratio: self.hits as f64 / n.max(1) as f64,
            byte_hit_ratio: self.hit_bytes as f64 / self.bytes.max(1) as f64,
            origin_bytes: self.bytes - self.hit_bytes,
        }
    }
}

fn run_policy(trace: &[Request], capacity: u64, kind: EvictionKind) -> SimResult {
    let mut p = eviction::build::<u64>(kind, capacity);
    let mut resident: HashMap<u64, u64> = HashMap::new();
    let (mut used, mut t) = (0u64, Tally::default());
    for &(id, size) in trace {
        t.bytes += size;
        if resident.contains_key(&id) {
            p.hit(&id);
            t.hits += 1;
            t.hit_bytes += size;
            continue;
        }
        if size > capacity {
            continue;
        }
        while used + size > capacity {
            let Some(v) = p.evict(&mut |_| true) else { break };
            used -= resident.remove(&v).unwrap_or(0);
        }
        p.insert(id, size);
        resident.insert(id, size);
        used += size;
    }
    let name = match kind {
        EvictionKind::S3Fifo => "s3-fifo",
        EvictionKind::Lru => "lru",
    };
    t.result(name, trace.len())
}

fn run_opt(trace: &[Request], capacity: u64) -> SimResult {
    // next[i]: index of the next request for the same object, or usize::MAX.
    let mut next = vec![usize::MAX; trace.len()];
    let mut last: HashMap<u64, usize> = HashMap::new();
    for (i, (id, _)) in trace.iter().enumerate().rev() {
        next[i] = last.insert(*id, i).unwrap_or(usize::MAX);
    }
    let mut by_next: BTreeSet<(usize, u64)> = BTreeSet::new();
    let mut resident: HashMap<u64, (usize, u64)> = HashMap::new();
    let (mut used, mut t) = (0u64, Tally::default());
    for (i, &(id, size)) in trace.iter().enumerate() {
        t.bytes += size;
        if let Some((n, s)) = resident.remove(&id) {
            by_next.remove(&(n, id));
            t.hits += 1;
            t.hit_bytes += size;
            resident.insert(id, (next[i], s));
            by_next.insert((next[i], id));
            continue;
        }
        if size > capacity || next[i] == usize::MAX {
            continue;
        }
        while used + size > capacity {
            let Some(&(far, victim)) = by_next.last() else { break };
            if far < next[i] {
                break;
            }
            by_next.remove(&(far, victim));
            used -= resident.remove(&victim).map_or(0, |r| r.1);
        }
        if used + size <= capacity {
            resident.insert(id, (next[i], size));
            by_next.insert((next[i], id));
            used += size;
        }
    }
    t.result("opt", trace.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_bounds_the_others_and_s3fifo_resists_scans() {
        let w = Workload {
            objects: 20_000,
            requests: 200_000,
            alpha: 0.9,
            scan_every: 10_000,
            scan_len: 4_000,
            varied_sizes: false,
            seed: 7,
        };
        let trace = w.generate();
        let cap = footprint(&trace) / 10;
        let r = simulate(&trace, cap);
        let (fifo, lru, opt) = (&r[0], &r[1], &r[2]);
        assert!(opt.hit_ratio >= fifo.hit_ratio && opt.hit_ratio >= lru.hit_ratio, "{r:?}");
        assert!(fifo.hit_ratio > lru.hit_ratio, "{r:?}");
    }

    #[test]
    fn trace_parsing() {
        let t = parse_trace("# comment\na 10\nb,20\na 10\n").unwrap();
        assert_eq!(t, vec![(0, 10), (1, 20), (0, 10)]);
        assert!(parse_trace("a").unwrap_err().contains("line 1"));
        assert!(parse_trace("a x").unwrap_err().contains("not a number"));
    }
}
