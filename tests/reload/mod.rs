//! Issue 19: the real binary rereads its config file at `strata reload` and at SIGHUP (a
//! bucket, a store and an access rule added to the file are in force at once; an invalid
//! file and a change that needs a restart change nothing and say why; `/metrics` shows the
//! config generation), and replaces itself at SIGUSR2 under load without a failed request.

use crate::harness::{ACCESS_KEY, SECRET_KEY};
use aws_sdk_s3::primitives::ByteStream;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

fn config(dir: &Path, extra: &str) -> String {
    format!(
        "[credentials]\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n\
         [hot]\nchunk_size = \"64KiB\"\nmin_free = \"0B\"\n\
         [backends.disk]\ntype = \"fs\"\nroot = \"{}\"\n\
         [buckets.cold]\nbackend = \"disk\"\nhot = false\n\
         [buckets.pics]\nbackend = \"disk\"\n{extra}",
        dir.join("store").display()
    )
}

/// `strata reload` against `addr`: (exit success, output).
fn reload(cfg: &Path, addr: SocketAddr) -> (bool, String) {
    strata(cfg, addr, "reload")
}

/// `strata COMMAND` against `addr` (with a config of its own that holds only the keys, so
/// that the server, not the command, reads the file under test): (exit success, output).
fn strata(cfg: &Path, addr: SocketAddr, command: &str) -> (bool, String) {
    let client = cfg.with_file_name("client.toml");
    std::fs::write(&client, format!("[credentials]\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n"))
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([command, "--config"])
        .arg(&client)
        .args(["--endpoint", &format!("http://{addr}")])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

async fn anonymous(addr: SocketAddr, path: &str) -> u16 {
    reqwest::get(format!("http://{addr}{path}")).await.unwrap().status().as_u16()
}

async fn generation(addr: SocketAddr) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with("strata_config_generation ")).expect("the generation is shown");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_applies_buckets_and_rules_and_refuses_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("strata.toml");
    std::fs::write(&cfg, config(dir.path(), "")).unwrap();
    let args = ["--listen", "127.0.0.1:0", "--config"].map(std::ffi::OsString::from);
    let args = [&args[..], &[cfg.clone().into(), "--data-dir".into(), dir.path().join("data").into()]].concat();
    let log = dir.path().join("stderr.log");
    let stderr = std::process::Stdio::from(std::fs::File::create(&log).unwrap());
    let (proc, addr) = crate::harness::serve_process(&args, &[("STRATA_LOG", "error")], stderr);
    let pid = proc.id().to_string();
    let _reaper = Reaper(dir.path().join("data"), Some(proc));
    let s3 = crate::harness::client(addr, ACCESS_KEY, SECRET_KEY, "us-east-1");
    assert_eq!(generation(addr).await, 1.0);
    s3.put_object().bucket("pics").key("a.jpg").body(ByteStream::from_static(b"pic")).send().await.unwrap();
    assert_eq!(anonymous(addr, "/pics/a.jpg").await, 403, "private by default");

    // A new store, a new bucket on it and public rules: in force as soon as the reload
    // answers.
    let rules = format!(
        "[[buckets.pics.rules]]\nprefix = \"\"\naccess = \"public-read\"\n\
         [buckets.gallery]\nbackend = \"disk2\"\n[[buckets.gallery.rules]]\nprefix = \"\"\naccess = \"public-read\"\n\
         [backends.disk2]\ntype = \"fs\"\nroot = \"{}\"\n",
        dir.path().join("store2").display()
    );
    let rules = rules.as_str();
    std::fs::write(&cfg, config(dir.path(), rules)).unwrap();
    let (ok, said) = reload(&cfg, addr);
    assert!(ok, "{said}");
    assert!(said.contains("buckets.gallery") && said.contains("buckets.pics"), "{said}");
    assert_eq!(anonymous(addr, "/pics/a.jpg").await, 200, "the new rule is in force");
    s3.put_object().bucket("gallery").key("b.jpg").body(ByteStream::from_static(b"b")).send().await.unwrap();
    assert_eq!(anonymous(addr, "/gallery/b.jpg").await, 200, "the new bucket and its rule");
    assert!(said.contains("backends.disk2"), "{said}");
    assert!(dir.path().join("store2/gallery/b.jpg").exists(), "the object is in the new store");
    assert_eq!(generation(addr).await, 2.0);

    // An invalid file changes nothing, and says why.
    std::fs::write(&cfg, "this is = not [ toml").unwrap();
    let (ok, said) = reload(&cfg, addr);
    assert!(!ok && said.contains("not valid"), "{said}");
    assert_eq!(anonymous(addr, "/pics/a.jpg").await, 200);
    assert_eq!(generation(addr).await, 2.0);

    // A change that needs a restart is refused naming the field; the rest of that file is
    // not applied either.
    let moved = config(dir.path(), rules).replace("chunk_size = \"64KiB\"", "chunk_size = \"1MiB\"");
    std::fs::write(&cfg, moved.replace("access = \"public-read\"", "access = \"private\"")).unwrap();
    let (ok, said) = reload(&cfg, addr);
    assert!(!ok && said.contains("hot.chunk_size") && said.contains("restart"), "{said}");
    assert_eq!(anonymous(addr, "/pics/a.jpg").await, 200, "nothing of the refused file applies");

    // SIGHUP rereads the file too: pics goes private again, and the log filter becomes
    // "info" (the environment said "error"), so this reload's own line is logged.
    let private = rules.replacen("access = \"public-read\"", "access = \"private\"", 1);
    std::fs::write(&cfg, format!("log = \"strata=info\"\n{}", config(dir.path(), &private))).unwrap();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let mut code = 0;
    for _ in 0..50 {
        code = anonymous(addr, "/pics/a.jpg").await;
        if code == 403 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code, 403, "SIGHUP applied the file");
    assert_eq!(anonymous(addr, "/gallery/b.jpg").await, 200);
    assert_eq!(generation(addr).await, 3.0);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logged.matches("config reloaded").count(), 1, "only the reload under the new filter: {logged}");
    // A lower hot.max_size evicts down to it at once.
    for i in 0..6 {
        let body = vec![i as u8; 60 << 10];
        s3.put_object().bucket("pics").key(format!("h{i}")).body(ByteStream::from(body)).send().await.unwrap();
        s3.get_object().bucket("pics").key(format!("h{i}")).send().await.unwrap().body.collect().await.unwrap();
    }
    let stats = || async {
        let r = reqwest::Client::new()
            .get(format!("http://{addr}/_strata/cache/stats"))
            .basic_auth(ACCESS_KEY, Some(SECRET_KEY));
        r.send().await.unwrap().json::<serde_json::Value>().await.unwrap()
    };
    let before = stats().await;
    assert!(before["used_bytes"].as_u64().unwrap() > 300 << 10, "{before}");
    let smaller =
        config(dir.path(), &private).replace("chunk_size = \"64KiB\"", "chunk_size = \"64KiB\"\nmax_size = \"192KiB\"");
    std::fs::write(&cfg, smaller).unwrap();
    let (ok, said) = reload(&cfg, addr);
    assert!(ok && said.contains("hot.max_size"), "{said}");
    let after = stats().await;
    assert_eq!(after["max_bytes"], 192 << 10, "{after}");
    assert!(after["used_bytes"].as_u64().unwrap() <= 192 << 10, "evicted down to the new bound: {after}");
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    assert!(text.contains("strata_config_reload_timestamp_seconds"), "the time of the last reload is shown");
    assert!(text.contains(r#"strata_config_reloads_total{result="refused"} 1"#), "{text}");
    assert!(text.contains(r#"strata_config_reloads_total{result="invalid"} 1"#));
}

/// Stops whatever serves `data` when the test ends, passed or not: the first process and
/// the successor that holds the data directory's lock (not a child of the test).
struct Reaper(std::path::PathBuf, Option<std::process::Child>);

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

/// Issue 19, upgrade: clients keep GETs of hot and cold objects (a bucket without the hot
/// tier), PUTs and one slow
/// streaming download going while the server is reloaded five times and upgraded five
/// times (SIGUSR2 or `strata upgrade`: the same build starts again, takes the listening
/// sockets and the data directory over). No request fails, no connection is refused, every acknowledged write
/// reads back, and the download completes intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_and_upgrades_under_load_lose_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("strata.toml"), dir.path().join("data"));
    std::fs::write(&cfg, config(dir.path(), "")).unwrap();
    let args = ["--listen", "127.0.0.1:0", "--config"].map(std::ffi::OsString::from);
    let args = [&args[..], &[cfg.clone().into(), "--data-dir".into(), data.clone().into()]].concat();
    let (first, addr) = crate::harness::serve_process(&args, &[], std::process::Stdio::null());
    let first_pid = first.id();
    let mut reaper = Reaper(data.clone(), Some(first));
    // No retries: every failure, a refused connection included, is counted.
    let s3 = crate::harness::client_no_retry(addr, Duration::from_secs(60));
    let big: Vec<u8> = (0..24u32 << 20).map(|i| (i % 253) as u8).collect();
    s3.put_object().bucket("pics").key("big").body(ByteStream::from(big.clone())).send().await.unwrap();
    for (i, bucket) in (0..20).flat_map(|i| [(i, "pics"), (i, "cold")]) {
        let body = format!("object {i}").repeat(100);
        s3.put_object()
            .bucket(bucket)
            .key(format!("o{i}"))
            .body(ByteStream::from(body.into_bytes()))
            .send()
            .await
            .unwrap();
    }
    let (stop, failed, done) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for w in 0..6 {
        let (s3, stop, failed, done, acked) = (s3.clone(), stop.clone(), failed.clone(), done.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(SeqCst) {
                n += 1;
                let ok = if w < 2 {
                    let key = format!("w{w}-{n}");
                    let r = s3
                        .put_object()
                        .bucket("pics")
                        .key(&key)
                        .body(ByteStream::from(key.clone().into_bytes()))
                        .send()
                        .await;
                    if r.is_ok() {
                        acked.lock().unwrap().push(key);
                    }
                    r.map(|_| ()).map_err(|e| format!("{e:?}"))
                } else {
                    // Hot (read over and over) and colder (spread) objects.
                    // A hot object read over and over, 20 others in turn, and objects of a
                    // bucket without the hot tier (every read from the store).
                    let (bucket, key) = match w {
                        2 | 4 => ("pics", "o0".to_owned()),
                        3 => ("pics", format!("o{}", n % 20)),
                        _ => ("cold", format!("o{}", n % 20)),
                    };
                    match s3.get_object().bucket(bucket).key(&key).send().await {
                        Ok(o) => o.body.collect().await.map(|_| ()).map_err(|e| format!("{e:?}")),
                        Err(e) => Err(format!("{e:?}")),
                    }
                };
                match ok {
                    Ok(()) => done.fetch_add(1, SeqCst),
                    Err(e) => {
                        eprintln!("request failed: {e}");
                        failed.fetch_add(1, SeqCst)
                    }
                };
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
    let mut pids = vec![first_pid];
    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (ok, said) = reload(&cfg, addr);
        assert!(ok, "reload {round}: {said}");
        let old = holder(&data);
        if round % 2 == 0 {
            assert!(std::process::Command::new("kill").args(["-USR2", &old.to_string()]).status().unwrap().success());
        } else {
            let (ok, said) = strata(&cfg, addr, "upgrade");
            assert!(ok && said.contains("successor"), "strata upgrade: {said}");
        }
        let mut now = old;
        for _ in 0..600 {
            now = holder(&data);
            if now != old && now != 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_ne!(now, old, "upgrade {round}: a successor took the data directory over");
        pids.push(now);
        if let Some(mut p) = reaper.1.take() {
            p.wait().unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let got = slow.await.unwrap();
    assert!(got.len() == big.len() && got == big, "the long download is intact");
    let (done, failed) = (done.load(SeqCst), failed.load(SeqCst));
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

/// Issue 19: once a server starts draining, `/ready` answers 503 on a connection that is
/// still open, and the answer tells the client to close (`limits.drain_linger`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_draining_server_is_not_ready_and_asks_clients_to_close() {
    let h = crate::harness::Harness::start(crate::harness::Cold::Fs).await;
    let http = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    let url = |p: &str| format!("http://{}{p}", h.addr);
    assert_eq!(http.get(url("/ready")).send().await.unwrap().status(), 200);
    h.running.as_ref().unwrap().shutdown_token().cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = http.get(url("/ready")).send().await.expect("the kept-alive connection is still served");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers().get("connection").map(|v| v.to_str().unwrap()), Some("close"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!((body["ready"].clone(), body["draining"].clone()), (false.into(), true.into()), "{body}");
}

/// Issue 19: with an admin listener, both sockets are handed over. Two upgrades by
/// `strata upgrade` on the admin address while one client reads objects on the main
/// listener and another reads `/metrics` on the admin one, neither retrying: no request
/// fails, and each listener is served by the new process afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_hands_the_admin_listener_over_too() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("strata.toml"), dir.path().join("data"));
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    std::fs::write(&cfg, config(dir.path(), &format!("[admin]\nlisten = \"{admin}\"\n"))).unwrap();
    let args = ["--listen", "127.0.0.1:0", "--config"].map(std::ffi::OsString::from);
    let args = [&args[..], &[cfg.clone().into(), "--data-dir".into(), data.clone().into()]].concat();
    let (first, addr) = crate::harness::serve_process(&args, &[], std::process::Stdio::null());
    let mut reaper = Reaper(data.clone(), Some(first));
    let s3 = crate::harness::client_no_retry(addr, Duration::from_secs(60));
    s3.put_object().bucket("pics").key("k").body(ByteStream::from_static(b"kept")).send().await.unwrap();
    let (stop, failed, done) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let main = {
        let (s3, stop, failed, done) = (s3.clone(), stop.clone(), failed.clone(), done.clone());
        tokio::spawn(async move {
            while !stop.load(SeqCst) {
                let got = match s3.get_object().bucket("pics").key("k").send().await {
                    Ok(o) => o.body.collect().await.map(|_| ()).map_err(|e| format!("{e:?}")),
                    Err(e) => Err(format!("{e:?}")),
                };
                match got {
                    Ok(()) => done.fetch_add(1, SeqCst),
                    Err(e) => {
                        eprintln!("main listener: {e}");
                        failed.fetch_add(1, SeqCst)
                    }
                };
            }
        })
    };
    let metrics = {
        let (stop, failed, done) = (stop.clone(), failed.clone(), done.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::builder().retry(reqwest::retry::never()).build().unwrap();
            while !stop.load(SeqCst) {
                let got = match http.get(format!("http://{admin}/metrics")).send().await {
                    Ok(r) if r.status() == 200 => r.bytes().await.map(|_| ()).map_err(|e| e.to_string()),
                    Ok(r) => Err(r.status().to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match got {
                    Ok(()) => done.fetch_add(1, SeqCst),
                    Err(e) => {
                        eprintln!("admin listener: {e}");
                        failed.fetch_add(1, SeqCst)
                    }
                };
            }
        })
    };
    for round in 0..2 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let old = holder(&data);
        let (ok, said) = strata(&cfg, admin, "upgrade");
        assert!(ok && said.contains("successor"), "upgrade {round}: {said}");
        let mut now = old;
        for _ in 0..600 {
            now = holder(&data);
            if now != old && now != 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_ne!(now, old, "upgrade {round}: a successor took over");
        if let Some(mut p) = reaper.1.take() {
            p.wait().unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, SeqCst);
    main.await.unwrap();
    metrics.await.unwrap();
    let (done, failed) = (done.load(SeqCst), failed.load(SeqCst));
    eprintln!("{done} requests on both listeners over 2 upgrades, {failed} failed");
    assert_eq!(failed, 0, "no request failed on either listener");
    assert!(done > 50, "{done}");
}

/// Issue 19 with TLS: the HTTPS listener and the plain-HTTP one beside it are both handed
/// over. Two upgrades (SIGUSR2) while one client reads a public object over HTTPS (HTTP/2
/// by ALPN) and another over plain HTTP, neither retrying: no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_hands_tls_and_plain_listeners_over() {
    use std::io::BufRead;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
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
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(&data)
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
    let (stop, failed, done) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let urls = [format!("https://localhost:{}/pics/k", addr.port()), format!("http://{plain}/pics/k")];
    let mut tasks = Vec::new();
    for (client, url) in [https, http].into_iter().zip(urls) {
        let (stop, failed, done) = (stop.clone(), failed.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(SeqCst) {
                let got = match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => r.bytes().await.map(|b| b.len()).map_err(|e| e.to_string()),
                    Ok(r) => Err(r.status().to_string()),
                    Err(e) => Err(format!("{e:?}")),
                };
                match got {
                    Ok(4) => done.fetch_add(1, SeqCst),
                    other => {
                        eprintln!("{url}: {other:?}");
                        failed.fetch_add(1, SeqCst)
                    }
                };
            }
        }));
    }
    for round in 0..2 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let old = holder(&data);
        assert!(std::process::Command::new("kill").args(["-USR2", &old.to_string()]).status().unwrap().success());
        let mut now = old;
        for _ in 0..600 {
            now = holder(&data);
            if now != old && now != 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_ne!(now, old, "upgrade {round}: a successor took over");
        if let Some(mut p) = reaper.1.take() {
            p.wait().unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let (done, failed) = (done.load(SeqCst), failed.load(SeqCst));
    eprintln!("{done} requests over HTTPS and plain HTTP across 2 upgrades, {failed} failed");
    assert_eq!(failed, 0, "no request failed on either listener");
    assert!(done > 50, "{done}");
}
