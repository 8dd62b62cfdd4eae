//! Issue 19, binary upgrades of the real binary (SIGUSR2 or `strata upgrade`: the same
//! build starts again and takes the listening sockets and the data directory over) while
//! clients that never retry keep requests going: none may fail.

use super::{config, reload, strata};
use crate::harness::{ACCESS_KEY, SECRET_KEY};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

/// Stops whatever serves `data` when the test ends, passed or not: the first process and
/// the successor that holds the data directory's lock (not a child of the test).
pub(super) struct Reaper(pub(super) PathBuf, pub(super) Option<std::process::Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(c) = &mut self.1 {
            let _ = c.kill();
            let _ = c.wait();
        }
        let pid = holder(&self.0);
        if pid != 0 {
            let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

/// The pid in the data directory's lock file: the process that serves now.
fn holder(data: &Path) -> u32 {
    std::fs::read_to_string(data.join("strata.lock")).unwrap_or_default().trim().parse().unwrap_or(0)
}

/// How an upgrade is asked for.
enum Ask<'a> {
    Signal,
    /// `strata upgrade` against this address, with this config.
    Command(&'a Path, SocketAddr),
}

/// Upgrades the process that serves `data` and waits until its successor holds the data
/// directory; the first process (a child of the test) is reaped. Returns the new pid.
async fn upgrade(reaper: &mut Reaper, ask: Ask<'_>) -> u32 {
    let old = holder(&reaper.0);
    match ask {
        Ask::Signal => {
            assert!(std::process::Command::new("kill").args(["-USR2", &old.to_string()]).status().unwrap().success());
        }
        Ask::Command(cfg, addr) => {
            let (ok, said) = strata(cfg, addr, "upgrade");
            assert!(ok && said.contains("successor"), "strata upgrade: {said}");
        }
    }
    for _ in 0..600 {
        let now = holder(&reaper.0);
        if now != old && now != 0 {
            if let Some(mut p) = reaper.1.take() {
                p.wait().unwrap();
            }
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no successor took the data directory over from pid {old}");
}

/// Clients' running totals, and the switch that stops them.
#[derive(Clone, Default)]
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Load {
    fn running(&self) -> bool {
        !self.stop.load(SeqCst)
    }

    fn count(&self, what: &str, r: Result<(), String>) {
        match r {
            Ok(()) => self.done.fetch_add(1, SeqCst),
            Err(e) => {
                eprintln!("{what}: {e}");
                self.failed.fetch_add(1, SeqCst)
            }
        };
    }

    /// Stops the clients, waits for them, and returns (done, failed).
    async fn finish(&self, tasks: Vec<tokio::task::JoinHandle<()>>) -> (u64, u64) {
        self.stop.store(true, SeqCst);
        for t in tasks {
            t.await.expect("a client task ended cleanly");
        }
        (self.done.load(SeqCst), self.failed.load(SeqCst))
    }
}

/// One GET through the SDK, body and all.
async fn get(s3: &Client, bucket: &str, key: &str) -> Result<(), String> {
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(o) => o.body.collect().await.map(|_| ()).map_err(|e| format!("{e:?}")),
        Err(e) => Err(format!("{e:?}")),
    }
}

/// One GET through reqwest: 200 and a body of `len` bytes (any length when `None`).
async fn fetch(http: &reqwest::Client, url: &str, len: Option<usize>) -> Result<(), String> {
    match http.get(url).send().await {
        Ok(r) if r.status() == 200 => match r.bytes().await {
            Ok(b) if len.is_none_or(|n| n == b.len()) => Ok(()),
            Ok(b) => Err(format!("{} bytes", b.len())),
            Err(e) => Err(e.to_string()),
        },
        Ok(r) => Err(r.status().to_string()),
        Err(e) => Err(format!("{e:?}")),
    }
}

/// `strata serve` on `cfg` and `data`, with the first process's address.
fn serve(cfg: &Path, data: &Path) -> (Reaper, SocketAddr) {
    let args = ["--listen", "127.0.0.1:0", "--config"].map(std::ffi::OsString::from);
    let args = [&args[..], &[cfg.into(), "--data-dir".into(), data.into()]].concat();
    let (first, addr) = crate::harness::serve_process(&args, &[], std::process::Stdio::null());
    (Reaper(data.to_owned(), Some(first)), addr)
}

/// Clients keep GETs of hot and cold objects (a bucket without the hot tier), PUTs and one
/// slow streaming download going while the server is reloaded five times and upgraded five
/// times (three by SIGUSR2, two by `strata upgrade`). No request fails, no connection is
/// refused, every acknowledged write reads back, and the download completes intact. Then
/// a successor that cannot start (a broken config) leaves the old process serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_and_upgrades_under_load_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("strata.toml"), dir.path().join("data"));
    std::fs::write(&cfg, config(dir.path(), "")).unwrap();
    let (mut reaper, addr) = serve(&cfg, &data);
    // No retries: every failure, a refused connection included, is counted.
    let s3 = crate::harness::client_no_retry(addr, Duration::from_secs(60));
    let big: Vec<u8> = (0..24u32 << 20).map(|i| (i % 253) as u8).collect();
    s3.put_object().bucket("pics").key("big").body(ByteStream::from(big.clone())).send().await.unwrap();
    for (i, bucket) in (0..20).flat_map(|i| [(i, "pics"), (i, "cold")]) {
        let body = ByteStream::from(format!("object {i}").repeat(100).into_bytes());
        s3.put_object().bucket(bucket).key(format!("o{i}")).body(body).send().await.unwrap();
    }
    let load = Load::default();
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for w in 0..6 {
        let (s3, load, acked) = (s3.clone(), load.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while load.running() {
                n += 1;
                let r = match w {
                    0 | 1 => {
                        let key = format!("w{w}-{n}");
                        let body = ByteStream::from(key.clone().into_bytes());
                        let r = s3.put_object().bucket("pics").key(&key).body(body).send().await;
                        if r.is_ok() {
                            acked.lock().unwrap().push(key);
                        }
                        r.map(|_| ()).map_err(|e| format!("{e:?}"))
                    }
                    // A hot object read over and over, 20 others in turn, and objects of
                    // a bucket without the hot tier (every read from the store).
                    2 | 4 => get(&s3, "pics", "o0").await,
                    3 => get(&s3, "pics", &format!("o{}", n % 20)).await,
                    _ => get(&s3, "cold", &format!("o{}", n % 20)).await,
                };
                load.count("request", r);
            }
        }));
    }
    // The slow download: 24 MiB read at about 4 MiB/s, across the first upgrades.
    let slow = {
        let s3 = s3.clone();
        tokio::spawn(async move {
            let o = s3.get_object().bucket("pics").key("big").send().await.expect("the download starts");
            let mut body = o.body;
            let mut got = Vec::new();
            while let Some(chunk) = body.try_next().await.expect("the download continues") {
                got.extend_from_slice(&chunk);
                tokio::time::sleep(Duration::from_millis(chunk.len() as u64 / 4096)).await;
            }
            got
        })
    };
    let mut pids = vec![holder(&data)];
    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (ok, said) = reload(&cfg, addr);
        assert!(ok, "reload {round}: {said}");
        let ask = if round % 2 == 0 { Ask::Signal } else { Ask::Command(&cfg, addr) };
        pids.push(upgrade(&mut reaper, ask).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (done, failed) = load.finish(tasks).await;
    let got = slow.await.unwrap();
    assert!(got.len() == big.len() && got == big, "the long download is intact");
    eprintln!("{done} requests over 5 reloads and 5 upgrades (pids {pids:?}), {failed} failed");
    assert_eq!(failed, 0, "no request failed");
    assert!(done > 100, "the clients kept going: {done}");
    let acked = acked.lock().unwrap().clone();
    for key in &acked {
        let o = s3.get_object().bucket("pics").key(key).send().await.expect("an acknowledged write reads back");
        assert_eq!(o.body.collect().await.unwrap().into_bytes().as_ref(), key.as_bytes());
    }
    eprintln!("{} acknowledged writes read back", acked.len());
    // A successor that cannot start (its config is broken now) leaves the old one serving.
    let last = holder(&data);
    std::fs::write(&cfg, "not = [ a config").unwrap();
    assert!(std::process::Command::new("kill").args(["-USR2", &last.to_string()]).status().unwrap().success());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(holder(&data), last, "the old process still holds the data directory");
    let o = s3.get_object().bucket("pics").key("o1").send().await.expect("and still serves");
    assert_eq!(o.body.collect().await.unwrap().into_bytes().len(), "object 1".len() * 100);
}

/// With an admin listener, both sockets are handed over. Two upgrades by `strata upgrade`
/// on the admin address while one client reads objects on the main listener and another
/// reads `/metrics` on the admin one: no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_hands_the_admin_listener_over_too() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("strata.toml"), dir.path().join("data"));
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    std::fs::write(&cfg, config(dir.path(), &format!("[admin]\nlisten = \"{admin}\"\n"))).unwrap();
    let (mut reaper, addr) = serve(&cfg, &data);
    let s3 = crate::harness::client_no_retry(addr, Duration::from_secs(60));
    s3.put_object().bucket("pics").key("k").body(ByteStream::from_static(b"kept")).send().await.unwrap();
    let load = Load::default();
    let (l, s) = (load.clone(), s3.clone());
    let main = tokio::spawn(async move {
        while l.running() {
            l.count("main listener", get(&s, "pics", "k").await);
        }
    });
    let l = load.clone();
    let metrics = tokio::spawn(async move {
        let http = reqwest::Client::builder().retry(reqwest::retry::never()).build().unwrap();
        while l.running() {
            l.count("admin listener", fetch(&http, &format!("http://{admin}/metrics"), None).await);
        }
    });
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        upgrade(&mut reaper, Ask::Command(&cfg, admin)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (done, failed) = load.finish(vec![main, metrics]).await;
    eprintln!("{done} requests on both listeners over 2 upgrades, {failed} failed");
    assert_eq!(failed, 0, "no request failed on either listener");
    assert!(done > 50, "{done}");
}

/// With TLS, the HTTPS listener and the plain-HTTP one beside it are both handed over. Two
/// upgrades (SIGUSR2) while one client reads a public object over HTTPS (HTTP/2 by ALPN)
/// and another over plain HTTP: no request fails (an HTTP/2 stream refused unprocessed by
/// the old process's GOAWAY is retried once, as HTTP/2 clients do, and counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_hands_tls_and_plain_listeners_over() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("strata.toml"), dir.path().join("data"));
    let ca = crate::tls::Ca::new();
    ca.leaf(dir.path(), "cert", &["localhost", "127.0.0.1"]);
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let tls = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nplain_listen = \"{plain}\"\nplain = \"serve\"\n\
         [[buckets.pics.rules]]\nprefix = \"\"\naccess = \"public-read\"\n",
        dir.path().join("cert.crt"),
        dir.path().join("cert.key")
    );
    std::fs::write(&cfg, config(dir.path(), &tls)).unwrap();
    // The harness's `serve_process` reads an http:// line; this one says https://.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(&data)
        .env("STRATA_ACCESS_KEY", ACCESS_KEY)
        .env("STRATA_SECRET_KEY", SECRET_KEY)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let addr: SocketAddr = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "strata exited before listening");
        if let Some(a) = line.trim().strip_prefix("strata listening on https://") {
            break a.parse().unwrap();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let mut reaper = Reaper(data.clone(), Some(child));
    let s3 = crate::harness::client_no_retry(plain, Duration::from_secs(60));
    s3.put_object().bucket("pics").key("k").body(ByteStream::from_static(b"kept")).send().await.unwrap();
    let root = reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap();
    let https = reqwest::Client::builder().add_root_certificate(root).retry(reqwest::retry::never()).build().unwrap();
    let http = reqwest::Client::builder().retry(reqwest::retry::never()).build().unwrap();
    let urls = [format!("https://localhost:{}/pics/k", addr.port()), format!("http://{plain}/pics/k")];
    let first = https.get(&urls[0]).send().await.unwrap();
    assert_eq!(first.version(), reqwest::Version::HTTP_2, "HTTP/2 by ALPN");
    let load = Load::default();
    let refused = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (client, url) in [https, http].into_iter().zip(urls) {
        let (l, refused) = (load.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            while l.running() {
                let mut r = fetch(&client, &url, Some(4)).await;
                // HTTP/2: a stream the client opened after the old process's final GOAWAY
                // was refused unprocessed (RFC 9113, 6.8), which every client may and real
                // ones do retry. It is retried once here and counted; anything else fails.
                if r.as_ref().is_err_and(|e| e.contains("GoAway") && e.contains("NO_ERROR")) {
                    refused.fetch_add(1, SeqCst);
                    r = fetch(&client, &url, Some(4)).await;
                }
                l.count(&url, r);
            }
        }));
    }
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        upgrade(&mut reaper, Ask::Signal).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (done, failed) = load.finish(tasks).await;
    let refused = refused.load(SeqCst);
    eprintln!(
        "{done} requests over HTTPS and plain HTTP across 2 upgrades, {failed} failed, {refused} refused by GOAWAY"
    );
    assert_eq!(failed, 0, "no request failed on either listener");
    assert!(done > 50, "{done}");
}

/// A second `strata serve` on a data directory that a running server holds stops at once,
/// naming the holder, and the first one keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_server_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("strata.toml"), dir.path().join("data"));
    std::fs::write(&cfg, config(dir.path(), "")).unwrap();
    let (_reaper, addr) = serve(&cfg, &data);
    let started = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second server must not start");
    assert!(said.contains("in use by strata") && said.contains(&holder(&data).to_string()), "{said}");
    assert!(started.elapsed() < Duration::from_secs(10), "refused at once, not after a wait");
    let s3 = crate::harness::client_no_retry(addr, Duration::from_secs(10));
    s3.list_buckets().send().await.expect("the first server still serves");
}
