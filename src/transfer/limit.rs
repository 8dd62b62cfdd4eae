//! A pacing rate limiter: each caller reserves its share of a timeline and sleeps until
//! its turn, so the long-run rate never exceeds the limit, whatever the piece sizes.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Limits a quantity (bytes, operations) to `rate` per second.
pub struct Pace {
    rate: f64,
    next: Mutex<Option<Instant>>,
}

impl Pace {
    /// A limiter of `rate` units per second (`rate` ≥ 1).
    pub fn new(rate: u64) -> Self {
        Self { rate: rate.max(1) as f64, next: Mutex::new(None) }
    }

    /// Waits until `n` more units fit under the rate.
    pub async fn take(&self, n: u64) {
        let start = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let start = next.map_or(now, |t| t.max(now));
            *next = Some(start + Duration::from_secs_f64(n as f64 / self.rate));
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // On tokio's paused clock, so this checks the schedule, not the machine's speed.
    #[tokio::test(start_paused = true)]
    async fn holds_the_rate() {
        let p = Pace::new(1000);
        let t = Instant::now();
        for _ in 0..5 {
            p.take(100).await;
        }
        // Five takes of 100 at 1000/s: the fifth starts 0.4 s in.
        assert_eq!(t.elapsed(), Duration::from_millis(400));
    }
}
