//! The brake on failed authentication: per client address, a leaky bucket that fills by
//! one per failure (a wrong S3 signature or access key, a wrong admin login, a wrong
//! password on a password rule or the login form) and drains by one per `refill`. While
//! an address's bucket holds more than `burst`, its requests that would need checking a
//! secret are refused before any secret is checked (so argon2 does not run for them
//! either), with the seconds until it drains as `Retry-After`.
//!
//! Successes change nothing, and other addresses are not affected. The buckets are per
//! process and bounded (`quick_cache` evicts the least used), so an attacker spraying
//! addresses costs memory only up to that bound. It must not know any protocol: the front
//! ends decide what is a failure and how a refusal looks.

use quick_cache::sync::Cache;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Put in a response's extensions by a front end whose request failed to authenticate (a
/// wrong signature, key or password), so the dispatcher counts it against the address.
#[derive(Debug, Clone, Copy)]
pub struct Failed;

/// Addresses tracked at once.
const TRACKED: usize = 100_000;

/// How full one address's bucket is, as of `at`.
#[derive(Debug, Clone, Copy)]
struct Level {
    failures: f64,
    at: Instant,
}

/// The brake.
pub struct Throttle {
    burst: u32,
    refill: Duration,
    levels: Cache<IpAddr, Level>,
}

impl Throttle {
    /// A brake that lets `burst` failures through, then one per `refill`. A `burst` of 0
    /// never refuses.
    pub fn new(burst: u32, refill: Duration) -> Self {
        Self { burst, refill: refill.max(Duration::from_millis(1)), levels: Cache::new(TRACKED) }
    }

    fn level(&self, ip: IpAddr, now: Instant) -> f64 {
        self.levels.get(&ip).map_or(0.0, |l| {
            let drained = now.saturating_duration_since(l.at).as_secs_f64() / self.refill.as_secs_f64();
            (l.failures - drained).max(0.0)
        })
    }

    /// `Err(seconds)` while `ip` must wait that long before its next try; `api` names the
    /// front end for the metric.
    pub fn check(&self, ip: IpAddr, api: &'static str) -> Result<(), u64> {
        if self.burst == 0 {
            return Ok(());
        }
        // After `burst` failures the next try waits until one of them has drained.
        let over = self.level(ip, Instant::now()) - f64::from(self.burst - 1);
        if over <= 0.0 {
            return Ok(());
        }
        ::metrics::counter!("strata_auth_throttled_total", "api" => api).increment(1);
        Err((over * self.refill.as_secs_f64()).ceil().max(1.0) as u64)
    }

    /// Counts one failed authentication of `ip` at `api`.
    pub fn failed(&self, ip: IpAddr, api: &'static str) {
        ::metrics::counter!("strata_auth_failures_total", "api" => api).increment(1);
        if self.burst == 0 {
            return;
        }
        let now = Instant::now();
        let failures = self.level(ip, now) + 1.0;
        self.levels.insert(ip, Level { failures, at: now });
        if failures >= f64::from(self.burst) {
            tracing::warn!(%ip, api, "too many failed authentications from one address; braking");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_one_try_per_refill() {
        let t = Throttle::new(3, Duration::from_millis(200));
        let (bad, good): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        for _ in 0..3 {
            assert_eq!(t.check(bad, "s3"), Ok(()));
            t.failed(bad, "s3");
        }
        let wait = t.check(bad, "s3").expect_err("over the burst");
        assert!(wait >= 1, "{wait}");
        assert_eq!(t.check(good, "s3"), Ok(()), "another address is not affected");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.check(bad, "s3"), Ok(()), "one failure forgiven: one more try");
        t.failed(bad, "s3");
        assert!(t.check(bad, "s3").is_err(), "and braked again");
        assert!(Throttle::new(0, Duration::from_secs(1)).check(bad, "s3").is_ok());
    }
}
