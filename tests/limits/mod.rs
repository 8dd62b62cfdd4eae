//! Hostile and careless clients: every limit in `[limits]` driven over a raw socket.
//! Regression tests for the limits issue 2 configured without testing (named in that
//! issue's closing note).

use crate::harness::{Cold, Harness, Opts};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMITS: &str = "[limits]\nmax_connections = 2\nmax_header_size = \"16KiB\"\nheader_read_timeout = \"1s\"\n\
                      body_idle_timeout = \"1s\"\nmax_object_size = \"1MiB\"\n";

async fn start() -> Harness {
    Harness::start_opts(Cold::Fs, Opts { toml: LIMITS.into(), wrap: None }).await
}

/// Reads until the peer closes or `limit` passes; returns what came.
async fn read_all(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&buf).into_owned(), true),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return (String::from_utf8_lossy(&buf).into_owned(), false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_request_head_gets_431() {
    let h = start().await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let big = "a".repeat(32 << 10);
    let req = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let (resp, _) = read_all(&mut s, Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{}", &resp[..resp.len().min(200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_never_finishes_its_head_is_dropped() {
    let h = start().await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    let (_, closed) = read_all(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "the connection stayed open past the header timeout");
    assert!(started.elapsed() < Duration::from_secs(5), "closed only after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_upload_times_out_and_leaves_nothing() {
    use aws_sdk_s3::presigning::PresigningConfig;
    let h = start().await;
    h.bucket("stall").await;
    let cfg = PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
    let pre = h.client.put_object().bucket("stall").key("k").presigned(cfg).await.unwrap();
    let uri: http::Uri = pre.uri().parse().unwrap();
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: {}\r\nContent-Length: 1000\r\n\r\n",
        uri.path_and_query().unwrap(),
        uri.authority().unwrap()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[1u8; 10]).await.unwrap();
    let started = Instant::now();
    let (resp, _) = read_all(&mut s, Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(6), "no answer for {:?}", started.elapsed());
    assert!(resp.starts_with("HTTP/1.1 4") || resp.is_empty(), "{resp}");
    assert!(h.keys("stall").await.is_empty(), "a stalled upload left an object");
    assert_eq!(h.cold_read_opt("stall", "k").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_over_the_cap_wait_their_turn() {
    let h = start().await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(h.addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let mut third = TcpStream::connect(h.addr).await.unwrap();
    third.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let (early, _) = read_all(&mut third, Duration::from_millis(500)).await;
    assert!(early.is_empty(), "a third connection was served past a cap of 2: {early}");
    drop(held.pop());
    let (resp, _) = read_all(&mut third, Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "not served once a slot freed: {resp:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_over_the_size_limit_is_refused_whole() {
    let h = start().await;
    h.bucket("big").await;
    let r = h.client.put_object().bucket("big").key("k").body(vec![0u8; 2 << 20].into()).send().await;
    assert_eq!(crate::harness::code(r), "EntityTooLarge");
    assert!(h.keys("big").await.is_empty());
    assert_eq!(h.cold_read_opt("big", "k").await, None);
}
