//! A layer that measures every call to a backend: latency, errors, bytes and throughput,
//! labelled by backend name. Wrapped around each store at construction, so no caller
//! repeats it.
//!
//! Metrics (see `docs/metrics.md`):
//! - `strata_backend_requests_total{backend,op}` and `strata_backend_errors_total{backend,op}`
//! - `strata_backend_seconds{backend,op}`: call latency; for reads, time to first byte
//! - `strata_backend_read_bytes_total{backend}`, `strata_backend_write_bytes_total{backend}`
//! - `strata_backend_read_bytes_per_second{backend}`: throughput of each completed read

use super::{Backend, ByteStream, Layer, ListEntry, ObjectStat, ObjectWriter, WriteOptions};
use crate::error::Result;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Instant;

/// Running totals of one backend, for the status page's sparklines (Prometheus gets the
/// same figures as metrics).
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Calls made.
    pub requests: AtomicU64,
    /// Calls that failed.
    pub errors: AtomicU64,
    /// Bytes read.
    pub read_bytes: AtomicU64,
    /// Sum of call latencies (reads: to first byte), in microseconds.
    pub latency_us: AtomicU64,
}

impl BackendStats {
    fn record(&self, started: Instant, ok: bool) {
        self.requests.fetch_add(1, Relaxed);
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.latency_us.fetch_add(us, Relaxed);
        if !ok {
            self.errors.fetch_add(1, Relaxed);
        }
    }
}

/// Measures `inner`.
pub struct Metered {
    inner: Arc<dyn Backend>,
    name: String,
    stats: Arc<BackendStats>,
}

impl Metered {
    /// Wraps a backend; the totals are also returned for the status page.
    pub fn wrap(inner: Arc<dyn Backend>) -> (Arc<dyn Backend>, Arc<BackendStats>) {
        let name = inner.name().to_owned();
        let stats = Arc::new(BackendStats::default());
        (Arc::new(Metered { inner, name, stats: stats.clone() }), stats)
    }

    fn done(&self, op: &'static str, started: Instant, ok: bool) {
        self.stats.record(started, ok);
        let b = self.name.clone();
        ::metrics::counter!("strata_backend_requests_total", "backend" => b.clone(), "op" => op).increment(1);
        ::metrics::histogram!("strata_backend_seconds", "backend" => b.clone(), "op" => op)
            .record(started.elapsed().as_secs_f64());
        if !ok {
            ::metrics::counter!("strata_backend_errors_total", "backend" => b, "op" => op).increment(1);
        }
    }
}

#[async_trait]
impl Layer for Metered {
    fn inner(&self) -> &dyn Backend {
        self.inner.as_ref()
    }

    async fn writer(&self, path: &str, opts: &WriteOptions) -> Result<Box<dyn ObjectWriter>> {
        let w = self.inner.writer(path, opts).await?;
        let stats = self.stats.clone();
        Ok(Box::new(MeteredWriter { inner: w, name: self.name.clone(), started: Instant::now(), stats }))
    }

    async fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<ByteStream> {
        let started = Instant::now();
        let s = self.inner.read(path, range).await.inspect_err(|_| self.done("read", started, false))?;
        let stats = self.stats.clone();
        Ok(MeteredRead { inner: s, name: self.name.clone(), started, first: true, bytes: 0, stats }.boxed())
    }

    async fn stat(&self, path: &str) -> Result<Option<ObjectStat>> {
        let started = Instant::now();
        let r = self.inner.stat(path).await;
        self.done("stat", started, r.is_ok());
        r
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let started = Instant::now();
        let r = self.inner.delete(path).await;
        self.done("delete", started, r.is_ok());
        r
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ListEntry>> {
        ::metrics::counter!("strata_backend_requests_total", "backend" => self.name.clone(), "op" => "list")
            .increment(1);
        self.inner.list(prefix)
    }
}

/// A read stream that records time to first byte, bytes and throughput.
struct MeteredRead {
    inner: ByteStream,
    name: String,
    started: Instant,
    first: bool,
    bytes: u64,
    stats: Arc<BackendStats>,
}

impl Stream for MeteredRead {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.inner.poll_next_unpin(cx);
        let name = self.name.clone();
        match &item {
            Poll::Ready(Some(Ok(b))) => {
                if std::mem::take(&mut self.first) {
                    self.stats.record(self.started, true);
                    ::metrics::counter!("strata_backend_requests_total", "backend" => name.clone(), "op" => "read")
                        .increment(1);
                    ::metrics::histogram!("strata_backend_seconds", "backend" => name.clone(), "op" => "read")
                        .record(self.started.elapsed().as_secs_f64());
                }
                self.bytes += b.len() as u64;
                self.stats.read_bytes.fetch_add(b.len() as u64, Relaxed);
                ::metrics::counter!("strata_backend_read_bytes_total", "backend" => name).increment(b.len() as u64);
            }
            Poll::Ready(Some(Err(_))) => {
                self.stats.errors.fetch_add(1, Relaxed);
                ::metrics::counter!("strata_backend_errors_total", "backend" => name, "op" => "read").increment(1);
            }
            Poll::Ready(None) if self.bytes > 0 => {
                let secs = self.started.elapsed().as_secs_f64().max(1e-6);
                ::metrics::histogram!("strata_backend_read_bytes_per_second", "backend" => name)
                    .record(self.bytes as f64 / secs);
                self.bytes = 0;
            }
            _ => {}
        }
        item
    }
}

struct MeteredWriter {
    inner: Box<dyn ObjectWriter>,
    name: String,
    started: Instant,
    stats: Arc<BackendStats>,
}

#[async_trait]
impl ObjectWriter for MeteredWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        let n = chunk.len() as u64;
        self.inner.write(chunk).await?;
        ::metrics::counter!("strata_backend_write_bytes_total", "backend" => self.name.clone()).increment(n);
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        let (name, started, stats) = (self.name.clone(), self.started, self.stats.clone());
        let r = self.inner.commit().await;
        stats.record(started, r.is_ok());
        ::metrics::counter!("strata_backend_requests_total", "backend" => name.clone(), "op" => "write").increment(1);
        ::metrics::histogram!("strata_backend_seconds", "backend" => name.clone(), "op" => "write")
            .record(started.elapsed().as_secs_f64());
        if r.is_err() {
            ::metrics::counter!("strata_backend_errors_total", "backend" => name, "op" => "write").increment(1);
        }
        r
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.inner.abort().await
    }
}
