//! A circuit breaker with latency budgets, wrapped around each store.
//!
//! A call that fails with a retryable error (the store is unreachable, overloaded or timed
//! out), or that exceeds its budget, counts against the store; `failures` of them in a row
//! mark it down. While down, calls fail at once with `Unavailable`, so a read moves to the
//! next replica without waiting and a write falls back to the journal. After `cooldown`,
//! calls are let through again: the first success closes the breaker, a failure reopens
//! it. The health worker's probe is such a call, so a store that comes back is noticed
//! within `cooldown` plus one probe interval even when no client touches it.
//!
//! Budgets: `latency_budget` for a read's first byte, a stat and a delete; `io_budget` for
//! each step of a write (open, one piece, commit). A listing is not bounded here (it is
//! long by nature); its pages have the store's own timeout.

use super::{Backend, ByteStream, Layer, ObjectStat, ObjectWriter, WriteOptions};
use crate::error::{Error, ErrorKind, Result};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// How the breaker judges a store.
#[derive(Debug, Clone)]
pub struct BreakerSettings {
    /// Longest wait for a read's first byte, a stat or a delete.
    pub latency_budget: Duration,
    /// Longest wait for one step of a write.
    pub io_budget: Duration,
    /// Failures in a row that open the breaker.
    pub failures: u32,
    /// Time the breaker stays open before calls are let through again.
    pub cooldown: Duration,
}

/// The breaker of one store, shared by the layer and the read path.
#[derive(Debug, Default)]
pub struct BreakerState {
    in_a_row: AtomicU32,
    open_until: Mutex<Option<Instant>>,
    threshold: u32,
    cooldown: Duration,
}

impl BreakerState {
    fn new(s: &BreakerSettings) -> Self {
        Self { threshold: s.failures.max(1), cooldown: s.cooldown, ..Default::default() }
    }

    /// False while the breaker is open (the store is treated as down).
    pub fn is_up(&self) -> bool {
        let open = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
        open.is_none_or(|until| Instant::now() >= until)
    }

    /// True once enough failures in a row were seen, even after the cooldown.
    pub fn is_tripped(&self) -> bool {
        self.open_until.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    fn admit(&self, store: &str) -> Result<()> {
        if self.is_up() {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::Unavailable, format!("store {store} is down (circuit open)")))
        }
    }

    fn record<T>(&self, store: &str, r: &Result<T>) {
        match r {
            Ok(_) => self.success(),
            Err(e) if counts(e) => self.failure(store),
            Err(_) => self.success(),
        }
    }

    fn success(&self) {
        self.in_a_row.store(0, SeqCst);
        let mut open = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
        *open = None;
    }

    fn failure(&self, store: &str) {
        let n = self.in_a_row.fetch_add(1, SeqCst) + 1;
        if n >= self.threshold {
            let mut open = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
            if open.is_none() {
                tracing::warn!(store, failures = n, "store marked down");
            }
            *open = Some(Instant::now() + self.cooldown);
        }
    }
}

/// Errors that say something about the store's health (not about the request).
fn counts(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Internal)
}

/// Runs `f` within `budget`; running out is a `Timeout`.
async fn within<T>(budget: Duration, what: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(budget, f).await {
        Ok(r) => r,
        Err(_) => Err(Error::new(ErrorKind::Timeout, format!("{what} exceeded its {budget:?} budget"))),
    }
}

/// The layer.
pub struct Breaker {
    inner: Arc<dyn Backend>,
    state: Arc<BreakerState>,
    settings: BreakerSettings,
}

impl Breaker {
    /// Wraps `inner`; the shared state is returned for the read path and the status page.
    pub fn wrap(inner: Arc<dyn Backend>, settings: &BreakerSettings) -> (Arc<dyn Backend>, Arc<BreakerState>) {
        let state = Arc::new(BreakerState::new(settings));
        (Arc::new(Breaker { inner, state: state.clone(), settings: settings.clone() }), state)
    }

    async fn guarded<T>(&self, budget: Duration, what: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
        self.state.admit(self.inner.name())?;
        let r = within(budget, what, f).await;
        self.state.record(self.inner.name(), &r);
        r
    }
}

/// Presigning and listing pass through: neither is a call the store answers now (a
/// presign is local; a listing's pages have the store's own timeout).
#[async_trait]
impl Layer for Breaker {
    fn inner(&self) -> &dyn Backend {
        self.inner.as_ref()
    }

    async fn writer(&self, path: &str, opts: &WriteOptions) -> Result<Box<dyn ObjectWriter>> {
        let budget = self.settings.io_budget;
        let inner = self.guarded(budget, "opening a write", self.inner.writer(path, opts)).await?;
        let state = self.state.clone();
        Ok(Box::new(BreakerWriter { inner, state, budget, name: self.inner.name().to_owned() }))
    }

    async fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<ByteStream> {
        // The budget covers the first byte: a store that accepts the request and then
        // says nothing is as down as one that refuses it.
        let open = async {
            let mut s = self.inner.read(path, range).await?;
            match s.next().await {
                Some(Err(e)) => Err(e),
                first => Ok(futures::stream::iter(first).chain(s).boxed()),
            }
        };
        self.guarded(self.settings.latency_budget, "a read's first byte", open).await
    }

    async fn stat(&self, path: &str) -> Result<Option<ObjectStat>> {
        self.guarded(self.settings.latency_budget, "a stat", self.inner.stat(path)).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.guarded(self.settings.latency_budget, "a delete", self.inner.delete(path)).await
    }
}

struct BreakerWriter {
    inner: Box<dyn ObjectWriter>,
    state: Arc<BreakerState>,
    budget: Duration,
    name: String,
}

#[async_trait]
impl ObjectWriter for BreakerWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.state.admit(&self.name)?;
        let r = within(self.budget, "a write", self.inner.write(chunk)).await;
        self.state.record(&self.name, &r);
        r
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        let this = *self;
        this.state.admit(&this.name)?;
        let r = within(this.budget, "a commit", this.inner.commit()).await;
        this.state.record(&this.name, &r);
        r
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        // Best effort and bounded: an abort on a dead store must not hold up the fallback.
        let this = *self;
        within(this.budget, "an abort", this.inner.abort()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_and_closes_on_success() {
        let s = BreakerSettings {
            latency_budget: Duration::from_secs(1),
            io_budget: Duration::from_secs(1),
            failures: 3,
            cooldown: Duration::from_millis(50),
        };
        let b = BreakerState::new(&s);
        let down: Result<()> = Err(Error::new(ErrorKind::Unavailable, "x"));
        let missing: Result<()> = Err(Error::new(ErrorKind::NotFound, "x"));
        b.record("s", &down);
        b.record("s", &down);
        b.record("s", &missing);
        b.record("s", &down);
        assert!(b.is_up(), "a NotFound is an answer, so it breaks the run of failures");
        b.record("s", &down);
        b.record("s", &down);
        assert!(!b.is_up() && b.admit("s").is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.is_up(), "after the cooldown calls are let through");
        b.record("s", &down);
        assert!(!b.is_up(), "a failed probe reopens at once");
        std::thread::sleep(Duration::from_millis(60));
        b.record("s", &Ok(()));
        assert!(b.is_up() && !b.is_tripped());
    }
}
