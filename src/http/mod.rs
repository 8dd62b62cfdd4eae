//! The HTTP server: accept loop, connection cap, header limits and timeouts, graceful
//! shutdown.
//!
//! Knows nothing of S3: it hands each request to a handler function and writes back the
//! response it gets. Also the plain-HTTP parts any front end can use: byte ranges
//! (`range`) and conditional requests (`conditional`).

pub mod conditional;
pub mod query;
pub mod range;

use crate::error::Result;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The user and password of an HTTP Basic `Authorization` header, when it has one that
/// decodes (base64, then UTF-8, then `user:password`; a header without `:` is all
/// password, as browsers send a gallery's one shared password).
pub fn basic_auth(headers: &http::HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    Some(match s.split_once(':') {
        Some((u, p)) => (u.to_owned(), p.to_owned()),
        None => (String::new(), s),
    })
}

/// The `Host` of a request, port included when the client sent one: the HTTP/1.1
/// header, else the HTTP/2 `:authority`.
pub fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// The client's address, put in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// Limits on clients.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Largest request head, in bytes.
    pub max_header_size: usize,
    /// Time to receive a request head (also the keep-alive idle limit).
    pub header_read_timeout: Duration,
    /// Time in-flight requests get after shutdown begins.
    pub shutdown_grace: Duration,
    /// Time open HTTP/1.1 connections keep being served after shutdown begins, each next
    /// answer saying `Connection: close`, before idle ones are closed.
    pub drain_linger: Duration,
    /// Streams one HTTP/2 connection may have open at once.
    pub h2_max_streams: u32,
}

/// Serves `listener` until `shutdown` is cancelled, then stops accepting, lets in-flight
/// requests finish for up to the grace period, and returns. With `tls`, every connection
/// is a TLS one (its handshake bounded by the header timeout), and HTTP/2 is chosen by
/// ALPN; without, HTTP/1.1 (or HTTP/2 with prior knowledge).
pub async fn serve<H, F, B>(
    listener: TcpListener,
    limits: ServerLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: H,
    shutdown: CancellationToken,
) -> Result<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = connection_builder(&limits);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Set once accepting stops: answers then tell HTTP/1.1 clients to close.
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Small writes go out at once: a TLS record or an HTTP/2 frame held back by Nagle's
        // algorithm waits for the peer's delayed ACK (40 ms) before the next one leaves.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let (h, draining) = (handler.clone(), draining.clone());
        let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let (h, draining) = (h.clone(), draining.clone());
            req.extensions_mut().insert(Peer(peer));
            let http1 = req.version() <= http::Version::HTTP_11;
            async move {
                let mut resp = h(req).await;
                if http1 && draining.load(std::sync::atomic::Ordering::SeqCst) {
                    resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(resp)
            }
        });
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        let handshake = limits.header_read_timeout;
        tokio::spawn(async move {
            let r = match tls {
                None => {
                    watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned()).await
                }
                Some(acceptor) => match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => {
                        watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(s), svc).into_owned()).await
                    }
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => Err("the TLS handshake timed out".into()),
                },
            };
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("stopped accepting; draining in-flight requests");
    draining.store(true, std::sync::atomic::Ordering::SeqCst);
    // Closing an idle keep-alive connection races a client that is sending on it (it sees
    // the connection drop). For a while, connections stay open and each next answer says
    // `Connection: close`, so a busy client is told to go; only then are idle ones closed.
    let stopped = tokio::time::Instant::now();
    while stopped.elapsed() < limits.drain_linger && slots.available_permits() < limits.max_connections {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The linger is part of the grace period.
    let grace = limits.shutdown_grace.saturating_sub(stopped.elapsed());
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("grace period over; closing remaining connections");
    }
    Ok(())
}

/// The HTTP/1.1 and HTTP/2 settings of every connection.
fn connection_builder(limits: &ServerLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_size.max(8192));
    // HTTP/2 floods: hyper's h2 bounds resets a client may provoke (rapid reset,
    // CVE-2023-44487) and counts CONTINUATION frames against the header list size
    // (CVE-2024-27316-style floods); the limits are set explicitly here, with the stream
    // cap and a keep-alive ping that drops dead peers as the HTTP/1.1 timeout does.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.h2_max_streams)
        // hyper buffers up to 1 MiB per stream by default: with 256 streams on each of
        // many connections that is the process's memory. 256 KiB keeps a stream busy.
        .max_send_buf_size(256 << 10)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024)
        .keep_alive_interval(limits.header_read_timeout)
        .keep_alive_timeout(limits.header_read_timeout);
    builder
}
