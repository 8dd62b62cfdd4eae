//! A backend wrapper for hot-tier tests: counts cold reads, records their ranges and how
//! many run at once, delays first bytes and breaks streams on demand.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata::backend::{Backend, ByteStream, Layer};
use strata::error::{Error, ErrorKind, Result};

#[derive(Default)]
pub struct Faults {
    /// Sleep before the first byte of every read.
    pub delay: Duration,
    /// Break a read after this many bytes…
    pub break_after: Option<u64>,
    /// …this many times (then reads succeed).
    pub breaks: u64,
}

pub struct Probe {
    inner: Arc<dyn Backend>,
    pub reads: AtomicU64,
    pub ranges: Mutex<Vec<Option<Range<u64>>>>,
    in_flight: Arc<AtomicU64>,
    pub max_in_flight: Arc<AtomicU64>,
    faults: Faults,
    breaks_left: AtomicU64,
}

impl Probe {
    pub fn new(inner: Arc<dyn Backend>, faults: Faults) -> Arc<Probe> {
        let breaks_left = AtomicU64::new(faults.breaks);
        Arc::new(Probe {
            inner,
            reads: AtomicU64::new(0),
            ranges: Mutex::new(Vec::new()),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
            faults,
            breaks_left,
        })
    }

    pub fn reads(&self) -> u64 {
        self.reads.load(SeqCst)
    }

    pub fn take_ranges(&self) -> Vec<Option<Range<u64>>> {
        std::mem::take(&mut *self.ranges.lock().unwrap())
    }
}

/// A probe shared between the test and the server: the wrapper hands the server a
/// forwarding backend and keeps the probe for the test.
pub struct Shared(pub Arc<Probe>);

struct InFlight(Arc<AtomicU64>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

#[async_trait]
impl Layer for Shared {
    fn inner(&self) -> &dyn Backend {
        self.0.inner.as_ref()
    }
    async fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<ByteStream> {
        let p = &self.0;
        p.reads.fetch_add(1, SeqCst);
        p.ranges.lock().unwrap().push(range.clone());
        let now = p.in_flight.fetch_add(1, SeqCst) + 1;
        p.max_in_flight.fetch_max(now, SeqCst);
        let guard = InFlight(p.in_flight.clone());
        if !p.faults.delay.is_zero() {
            tokio::time::sleep(p.faults.delay).await;
        }
        let inner = p.inner.read(path, range).await?;
        let breaking =
            p.faults.break_after.filter(|_| p.breaks_left.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok());
        let state = (inner, 0u64, breaking, guard, false);
        Ok(futures::stream::unfold(state, |(mut s, sent, brk, g, done)| async move {
            if done {
                return None;
            }
            if let Some(limit) = brk
                && sent >= limit
            {
                let e = Error::new(ErrorKind::Unavailable, "probe: stream broken on purpose");
                return Some((Err(e), (s, sent, brk, g, true)));
            }
            let item: Result<Bytes> = s.next().await?;
            let item = match (item, brk) {
                (Ok(b), Some(limit)) if sent + b.len() as u64 > limit => Ok(b.slice(..(limit - sent) as usize)),
                (other, _) => other,
            };
            let n = item.as_ref().map_or(0, |b| b.len() as u64);
            Some((item, (s, sent + n, brk, g, false)))
        })
        .boxed())
    }
}
