//! Issue 4, crash test: strata runs as a child process under concurrent PUTs and DELETEs
//! and is killed with SIGKILL at random points, then restarted, for
//! `STRATA_CRASH_CYCLES` cycles (default 20). Afterwards every acknowledged write must be
//! there, bytes and checksum, in the catalog and, once the journal drains, in every store.
//! A write whose answer the kill cut off may have happened or not, but nothing else: no
//! partial object, no older version coming back.

use crate::harness::{ACCESS_KEY, SECRET_KEY, quoted_md5};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TASKS: usize = 6;
const KEYS_PER_TASK: usize = 4;

/// What a key may hold: the last acknowledged state, and states whose answer was lost.
#[derive(Default, Clone)]
struct Expect {
    acked: Option<Vec<u8>>,
    maybe: Vec<Option<Vec<u8>>>,
}

type Model = Arc<Mutex<HashMap<String, Expect>>>;

fn config(dir: &Path) -> String {
    format!(
        "[credentials]\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n\
         [journal]\nretry_min = \"50ms\"\nretry_max = \"500ms\"\n\
         [backends.disk2]\ntype = \"fs\"\nroot = \"{}\"\n\
         [buckets.through]\nstores = [\"local\", \"disk2\"]\n\
         [buckets.back]\nstores = [\"local\", \"disk2\"]\nwrite_mode = \"back\"\n",
        dir.join("disk2").display()
    )
}

struct Child {
    proc: std::process::Child,
    addr: SocketAddr,
}

fn spawn(dir: &Path) -> Child {
    let args = ["--listen".into(), "127.0.0.1:0".into(), "--config".into(), dir.join("strata.toml").into()];
    let args = [&args[..], &["--data-dir".into(), dir.join("data").into()]].concat();
    let (proc, addr) =
        crate::harness::serve_process(&args, &[("STRATA_LOG", "strata=error")], std::process::Stdio::null());
    Child { proc, addr }
}

fn client(addr: SocketAddr) -> Client {
    crate::harness::client_no_retry(addr, Duration::from_secs(10))
}

/// A body that names its key and version, of a random length (up to 300 KiB).
fn body(key: &str, version: u64, rng: &mut impl Rng) -> Vec<u8> {
    let head = format!("{key}#{version}#");
    let len = rng.gen_range(head.len()..300 << 10);
    let mut b = head.into_bytes();
    b.resize(len, (version % 251) as u8);
    b
}

/// One client task: random PUTs and DELETEs on its own keys until the server dies.
async fn work(c: Client, task: usize, model: Model, deadline: Instant, version: Arc<std::sync::atomic::AtomicU64>) {
    let mut rng = rand::rngs::StdRng::from_entropy();
    while Instant::now() < deadline {
        let bucket = if task.is_multiple_of(2) { "through" } else { "back" };
        let key = format!("{bucket}/t{task}/k{}", rng.gen_range(0..KEYS_PER_TASK));
        let v = version.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (k, next) = (
            key.split_once('/').unwrap().1.to_owned(),
            if rng.gen_bool(0.2) { None } else { Some(body(&key, v, &mut rng)) },
        );
        model.lock().unwrap().entry(key.clone()).or_default().maybe.push(next.clone());
        let ok = match &next {
            Some(b) => c.put_object().bucket(bucket).key(&k).body(ByteStream::from(b.clone())).send().await.is_ok(),
            None => c.delete_object().bucket(bucket).key(&k).send().await.is_ok(),
        };
        if ok {
            let mut m = model.lock().unwrap();
            let e = m.get_mut(&key).unwrap();
            e.acked = next;
            e.maybe.clear();
        } else {
            // The server is gone (killed): this op's outcome is unknown; stop.
            return;
        }
    }
}

use rand::SeedableRng;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_random_points_loses_no_acknowledged_write() {
    let cycles: usize = std::env::var("STRATA_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("strata.toml"), config(dir.path())).unwrap();
    let model: Model = Arc::default();
    let version = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut acked_total = 0usize;
    for _ in 0..cycles {
        let mut child = spawn(dir.path());
        let c = client(child.addr);
        let run_for = Duration::from_millis(rng.gen_range(200..1500));
        let deadline = Instant::now() + Duration::from_secs(60);
        let tasks: Vec<_> =
            (0..TASKS).map(|t| tokio::spawn(work(c.clone(), t, model.clone(), deadline, version.clone()))).collect();
        tokio::time::sleep(run_for).await;
        child.proc.kill().unwrap(); // SIGKILL
        child.proc.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        acked_total = model.lock().unwrap().values().filter(|e| e.maybe.is_empty()).count();
    }
    let child = spawn(dir.path());
    let c = client(child.addr);
    let drain = Instant::now();
    wait_drained(child.addr).await;
    let drain_s = drain.elapsed().as_secs_f64();
    let model = model.lock().unwrap().clone();
    let mut checked = 0;
    for (full, e) in &model {
        let (bucket, key) = full.split_once('/').unwrap();
        let got = match c.get_object().bucket(bucket).key(key).send().await {
            Ok(r) => {
                let etag = r.e_tag().unwrap_or_default().to_owned();
                let b = r.body.collect().await.unwrap().into_bytes().to_vec();
                assert_eq!(etag, quoted_md5(&b), "{full}: the catalog's checksum matches the bytes");
                Some(b)
            }
            Err(err) => {
                assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(404), "{full}: {err:?}");
                None
            }
        };
        let allowed = std::iter::once(&e.acked).chain(&e.maybe).any(|s| *s == got);
        assert!(
            allowed,
            "{full}: holds {} bytes, which is neither the acknowledged state nor a cut-off write",
            got.as_ref().map_or(0, Vec::len)
        );
        for store in ["data/cold", "disk2"] {
            let on_disk = std::fs::read(dir.path().join(store).join(bucket).join(key)).ok();
            assert!(on_disk == got, "{full}: store {store} differs from the catalog after the drain");
        }
        checked += 1;
    }
    let staged: Vec<_> = std::fs::read_dir(dir.path().join("data/journal"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "node-id")
        .collect();
    assert!(staged.is_empty(), "{} staging files left after the drain", staged.len());
    // The operator's view agrees, from the catalog alone, beside the running server.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["replicate", "status", "--json", "--config"])
        .arg(dir.path().join("strata.toml"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stores: Vec<_> =
        v["stores"].as_array().unwrap().iter().map(|s| (s["store"].clone(), s["entries"].clone())).collect();
    assert_eq!(stores, [("disk2".into(), 0.into()), ("local".into(), 0.into())], "{v}");
    let mut child = child;
    child.proc.kill().unwrap();
    child.proc.wait().unwrap();
    eprintln!(
        "crash test: {cycles} SIGKILL cycles, {} writes issued, {checked} keys checked ({acked_total} with a settled state), \
         final drain {drain_s:.1} s, lost 0",
        version.load(std::sync::atomic::Ordering::SeqCst) - 1
    );
}

/// Polls the admin API until no store has pending journal entries.
async fn wait_drained(addr: SocketAddr) {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        let r =
            http.get(format!("http://{addr}/_strata/journal")).basic_auth(ACCESS_KEY, Some(SECRET_KEY)).send().await;
        if let Ok(r) = r
            && let Ok(v) = r.json::<serde_json::Value>().await
            && v["stores"].as_array().is_some_and(|s| s.iter().all(|s| s["entries"] == 0))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the journal did not drain within 60 s");
}
