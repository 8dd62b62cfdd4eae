//! The brake on failed authentication: per client address and per access key id, a leaky
//! bucket that fills by one per failure (a wrong S3 signature or access key, a wrong admin
//! login, a wrong password on a password rule or the login form) and drains by one per
//! `refill`. While an address's or a key id's bucket holds more than `burst`, requests
//! from that address or naming that key id that would need checking a secret are refused
//! before any secret is checked (so argon2 does not run for them either), with the seconds
//! until it drains as `Retry-After`. The key id's bucket slows down guessing one key's
//! secret from many addresses; it holds [`KEY_BURST_FACTOR`] times `burst`, because whoever
//! knows a key id can fill it and so slow that key down for everyone (the price of braking
//! per key), and a key used from many addresses sees more honest failures (clock skew).
//!
//! Successes change nothing, and other addresses and keys are not affected. The buckets
//! are per process and bounded (`quick_cache` evicts the least used), so an attacker
//! spraying addresses or key ids costs memory only up to that bound. It must not know any
//! protocol: the front ends decide what is a failure and how a refusal looks.

use quick_cache::sync::Cache;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Put in a response's extensions by a front end whose request failed to authenticate (a
/// wrong signature, key or password), so the dispatcher counts it against the address.
#[derive(Debug, Clone, Copy)]
pub struct Failed;

/// Whose failures one bucket counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Client {
    Addr(IpAddr),
    Key(Box<str>),
}

/// A key id's bucket holds this many times an address's burst.
pub const KEY_BURST_FACTOR: u32 = 10;

/// Addresses and key ids tracked at once.
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
    levels: Cache<Client, Level>,
}

impl Throttle {
    /// A brake that lets `burst` failures through, then one per `refill`. A `burst` of 0
    /// never refuses.
    pub fn new(burst: u32, refill: Duration) -> Self {
        Self { burst, refill: refill.max(Duration::from_millis(1)), levels: Cache::new(TRACKED) }
    }

    fn level(&self, who: &Client, now: Instant) -> f64 {
        self.levels.get(who).map_or(0.0, |l| {
            let drained = now.saturating_duration_since(l.at).as_secs_f64() / self.refill.as_secs_f64();
            (l.failures - drained).max(0.0)
        })
    }

    fn clients(ip: IpAddr, key: Option<&str>) -> impl Iterator<Item = Client> {
        std::iter::once(Client::Addr(ip)).chain(key.map(|k| Client::Key(k.into())))
    }

    fn burst_of(&self, who: &Client) -> f64 {
        match who {
            Client::Addr(_) => f64::from(self.burst),
            Client::Key(_) => f64::from(self.burst.saturating_mul(KEY_BURST_FACTOR)),
        }
    }

    /// `Err(seconds)` while `ip`, or the key id `key` a request names, must wait that long
    /// before its next try; `api` names the front end for the metric.
    pub fn check(&self, ip: IpAddr, key: Option<&str>, api: &'static str) -> Result<(), u64> {
        if self.burst == 0 {
            return Ok(());
        }
        let now = Instant::now();
        // After `burst` failures the next try waits until one of them has drained.
        let over = Self::clients(ip, key).map(|c| self.level(&c, now) - (self.burst_of(&c) - 1.0)).fold(0.0, f64::max);
        if over <= 0.0 {
            return Ok(());
        }
        ::metrics::counter!("strata_auth_throttled_total", "api" => api).increment(1);
        Err((over * self.refill.as_secs_f64()).ceil().max(1.0) as u64)
    }

    /// Counts one failed authentication of `ip` (and of the key id `key` it named) at `api`.
    pub fn failed(&self, ip: IpAddr, key: Option<&str>, api: &'static str) {
        ::metrics::counter!("strata_auth_failures_total", "api" => api).increment(1);
        if self.burst == 0 {
            return;
        }
        let now = Instant::now();
        for who in Self::clients(ip, key) {
            let failures = self.level(&who, now) + 1.0;
            if failures >= self.burst_of(&who) {
                tracing::warn!(?who, api, "too many failed authentications; braking");
            }
            self.levels.insert(who, Level { failures, at: now });
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
            assert_eq!(t.check(bad, None, "s3"), Ok(()));
            t.failed(bad, None, "s3");
        }
        let wait = t.check(bad, None, "s3").expect_err("over the burst");
        assert!(wait >= 1, "{wait}");
        assert_eq!(t.check(good, None, "s3"), Ok(()), "another address is not affected");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.check(bad, None, "s3"), Ok(()), "one failure forgiven: one more try");
        t.failed(bad, None, "s3");
        assert!(t.check(bad, None, "s3").is_err(), "and braked again");
        assert!(Throttle::new(0, Duration::from_secs(1)).check(bad, None, "s3").is_ok());
    }

    #[test]
    fn a_key_id_is_braked_from_every_address() {
        let t = Throttle::new(2, Duration::from_secs(60));
        for i in 0..(2 * KEY_BURST_FACTOR - 1) {
            t.failed([10, 0, 1, i as u8].into(), Some("AK1"), "s3");
        }
        assert_eq!(t.check([10, 0, 0, 9].into(), Some("AK1"), "s3"), Ok(()), "a key's burst is larger");
        t.failed([10, 0, 2, 1].into(), Some("AK1"), "s3");
        assert!(t.check([10, 0, 0, 9].into(), Some("AK1"), "s3").is_err(), "a fresh address naming AK1");
        assert_eq!(t.check([10, 0, 0, 9].into(), Some("AK2"), "s3"), Ok(()), "another key");
        assert_eq!(t.check([10, 0, 0, 9].into(), None, "s3"), Ok(()));
    }
}
