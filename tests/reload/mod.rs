//! Issue 19: the real binary rereads its config file at `strata reload` and at SIGHUP (a
//! bucket, a store and an access rule added to the file are in force at once; an invalid
//! file and a change that needs a restart change nothing and say why; `/metrics` shows the
//! config generation), and replaces itself at SIGUSR2 under load without a failed request.

use crate::harness::{ACCESS_KEY, SECRET_KEY};
use aws_sdk_s3::primitives::ByteStream;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

mod upgrade;

use upgrade::Reaper;

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
