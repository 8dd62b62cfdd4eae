//! Issue 15: three strata processes on one fresh PostgreSQL database and one Garage.
//!
//! - racing writers: PUTs and DELETEs of a few keys from every node at once; afterwards
//!   every node, the catalog and Garage agree on one acknowledged final state per key, and
//!   every body served during the race matched its ETag;
//! - coherence: a hot copy on one node is not served once another node acknowledged an
//!   overwrite and the invalidation lag has passed;
//! - the registry: `strata cluster status` lists every node with its lease, and a killed
//!   node shows as down once its lease has passed.

use crate::harness::{ACCESS_KEY, SECRET_KEY};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use md5::Digest;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata::catalog::Catalog;

mod images;
mod keys;
mod shared_hot;
mod web;

/// The seal key every node of these tests shares (32 bytes, base64).
const SEAL_KEY: &str = "c3RyYXRhLXRlc3Qtc2VhbC1rZXktMzItYnl0ZXMhISE=";

/// Twice `cluster.invalidation_lag` of these tests (200 ms): after it, every node has
/// forgotten the rows another node changed.
const AFTER_LAG: Duration = Duration::from_millis(400);

struct Node {
    proc: std::process::Child,
    client: Client,
    addr: SocketAddr,
}

struct Cluster {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
    admin: String,
    db: String,
    catalog: Catalog,
    garage: (String, String, Client),
}

fn client(addr: SocketAddr) -> Client {
    crate::harness::client_no_retry(addr, Duration::from_secs(30))
}

impl Cluster {
    /// `n` nodes on a new database and a new prefix of the test Garage.
    async fn start(n: usize) -> Cluster {
        Self::start_with(n, crate::harness::garage_env(), 0).await
    }

    /// `n` nodes sharing one hot tier (`cluster.shared_hot`) of `chunk_size` chunks, with
    /// more `[cluster]` settings in `cluster`.
    async fn start_shared_hot(n: usize, chunk_size: &str, cluster: &str) -> Cluster {
        Self::start_opts(n, crate::harness::garage_env(), 0, Some((chunk_size, cluster))).await
    }

    /// `n` nodes on a new database and a new prefix of Garage `g`, with `journal.peer_copies`.
    async fn start_with(n: usize, g: crate::harness::GarageEnv, peer_copies: usize) -> Cluster {
        Self::start_opts(n, g, peer_copies, None).await
    }

    /// `n` nodes with `extra` appended to their config (sections of its own).
    async fn start_extra(n: usize, extra: &str) -> Cluster {
        Self::start_full(n, crate::harness::garage_env(), (0, None), extra).await
    }

    async fn start_opts(
        n: usize,
        g: crate::harness::GarageEnv,
        peer_copies: usize,
        shared_hot: Option<(&str, &str)>,
    ) -> Cluster {
        Self::start_full(n, g, (peer_copies, shared_hot), "").await
    }

    async fn start_full(
        n: usize,
        g: crate::harness::GarageEnv,
        (peer_copies, shared_hot): (usize, Option<(&str, &str)>),
        extra: &str,
    ) -> Cluster {
        use sqlx::Connection;
        let admin = std::env::var("STRATA_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&admin).await.expect("PostgreSQL (scripts/test starts one)");
        let db = format!("strata_cluster_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {db}")).execute(&mut conn).await.unwrap();
        let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
        let prefix = format!("cluster-{}/", uuid::Uuid::new_v4().simple());
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            "catalog = \"{url}\"\ndefault_backend = \"garage\"\n\
             [credentials]\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n\
             [auth]\nseal_key = \"{SEAL_KEY}\"\nrefresh = \"200ms\"\n\
             [journal]\nretry_min = \"50ms\"\nretry_max = \"500ms\"\nstore_timeout = \"2s\"\npeer_copies = {peer_copies}\n\
             [failover]\nlatency_budget = \"1s\"\ncooldown = \"500ms\"\n\
             [cluster]\nheartbeat = \"300ms\"\nlease = \"1500ms\"\ninvalidation_lag = \"200ms\"\nshared_hot = {}\n{}\n\
             [backends.garage]\ntype = \"s3\"\nendpoint = \"{}\"\nregion = \"{}\"\nbucket = \"{}\"\nprefix = \"{prefix}\"\n\
             access_key = \"{}\"\nsecret_key = \"{}\"\n{}\n{extra}",
            shared_hot.is_some(),
            shared_hot.map_or("", |s| s.1),
            g.endpoint,
            g.region,
            g.bucket,
            g.access_key,
            g.secret_key,
            shared_hot.map(|s| format!("[hot]\nchunk_size = \"{}\"\n", s.0)).unwrap_or_default()
        );
        std::fs::write(dir.path().join("strata.toml"), toml).unwrap();
        let garage_client = crate::harness::garage_client(&g);
        let garage = (g.bucket, prefix, garage_client);
        let catalog = Catalog::connect(&url).await.unwrap();
        let mut c = Cluster { nodes: Vec::new(), dir, admin, db, catalog, garage };
        for i in 0..n {
            c.spawn(i);
        }
        c
    }

    fn config(&self) -> std::path::PathBuf {
        self.dir.path().join("strata.toml")
    }

    fn spawn(&mut self, i: usize) {
        let data = self.dir.path().join(format!("node{i}"));
        let args = ["--listen", "127.0.0.1:0", "--config"].map(std::ffi::OsString::from);
        let args = [&args[..], &[self.config().into(), "--data-dir".into(), data.into()]].concat();
        let (proc, addr) =
            crate::harness::serve_process(&args, &[("STRATA_LOG", "strata=error")], std::process::Stdio::null());
        self.nodes.push(Node { proc, client: client(addr), addr });
    }

    fn node(&self, i: usize) -> &Client {
        &self.nodes[i % self.nodes.len()].client
    }

    /// Waits until no node has journal work left.
    async fn drained(&self) {
        for _ in 0..600 {
            if self.catalog.journal_lag().await.unwrap().iter().all(|l| l.entries == 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the journal did not drain in 60 s: {:?}", self.catalog.journal_lag().await.unwrap());
    }

    async fn garage_read(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let (b, prefix, g) = &self.garage;
        let r = g.get_object().bucket(b).key(format!("{prefix}{bucket}/{key}")).send().await.ok()?;
        Some(r.body.collect().await.unwrap().into_bytes().to_vec())
    }

    async fn finish(mut self) {
        for n in &mut self.nodes {
            let _ = n.proc.kill();
            let _ = n.proc.wait();
        }
        self.catalog.close().await;
        use sqlx::Connection;
        let mut conn = sqlx::AnyConnection::connect(&self.admin).await.unwrap();
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.db)).execute(&mut conn).await.unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.proc.kill();
        }
    }
}

fn md5_hex(b: &[u8]) -> String {
    hex::encode(md5::Md5::digest(b))
}

/// One write as a client saw it: the key, what it wrote (`None`: a delete), when it was
/// sent and when its answer came.
#[derive(Debug, Clone)]
struct Op {
    key: String,
    body_md5: Option<String>,
    sent: Instant,
    answered: Instant,
}

#[derive(Default, Debug)]
struct Reads {
    ok: u64,
    not_found: u64,
    mismatched: u64,
    failed: Vec<String>,
}

const KEYS: usize = 4;
const TASKS: usize = 6;
const OPS_PER_TASK: usize = 170;

async fn race_task(c: Arc<Cluster>, task: usize, ops: Arc<Mutex<Vec<Op>>>, reads: Arc<Mutex<Reads>>) {
    let mut rng = rand::rngs::StdRng::from_entropy();
    for n in 0..OPS_PER_TASK {
        let key = format!("k{}", rng.gen_range(0..KEYS));
        let writer = c.node(task);
        let sent = Instant::now();
        let body_md5 = if rng.gen_bool(0.75) {
            let mut body = format!("{key}#{task}#{n}#").into_bytes();
            body.resize(rng.gen_range(body.len()..40 << 10), (n % 251) as u8);
            let r = writer.put_object().bucket("race").key(&key).body(ByteStream::from(body.clone())).send().await;
            r.unwrap_or_else(|e| panic!("PUT {key} on node {}: {e:?}", task % 3));
            Some(md5_hex(&body))
        } else {
            let r = writer.delete_object().bucket("race").key(&key).send().await;
            r.unwrap_or_else(|e| panic!("DELETE {key} on node {}: {e:?}", task % 3));
            None
        };
        ops.lock().unwrap().push(Op { key, body_md5, sent, answered: Instant::now() });
        // A read of any key on another node, checked against the ETag it is served with.
        let key = format!("k{}", rng.gen_range(0..KEYS));
        let r = c.node(task + 1 + rng.gen_range(0..2)).get_object().bucket("race").key(&key).send().await;
        let outcome = match r {
            Ok(o) => {
                let etag = o.e_tag().unwrap_or_default().trim_matches('"').to_owned();
                match o.body.collect().await {
                    Ok(b) => Ok(md5_hex(&b.into_bytes()) == etag),
                    Err(e) => Err(format!("GET {key}: body broke off: {e}")),
                }
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Err(String::new()),
            Err(e) => Err(format!("GET {key}: {e:?}")),
        };
        let mut reads = reads.lock().unwrap();
        match outcome {
            Ok(true) => reads.ok += 1,
            Ok(false) => reads.mismatched += 1,
            Err(e) if e.is_empty() => reads.not_found += 1,
            Err(e) => reads.failed.push(e),
        }
    }
}

/// The final state of `key` must be an acknowledged write that no other write of the key
/// followed: none was sent after its answer came.
fn is_last_write(ops: &[Op], key: &str, state: &Option<String>) -> bool {
    let of_key: Vec<&Op> = ops.iter().filter(|o| o.key == key).collect();
    of_key.iter().any(|w| w.body_md5 == *state && !of_key.iter().any(|o| o.sent > w.answered))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_agree_everywhere() {
    let c = Arc::new(Cluster::start(3).await);
    c.node(0).create_bucket().bucket("race").send().await.unwrap();
    let ops = Arc::new(Mutex::new(Vec::new()));
    let reads = Arc::new(Mutex::new(Reads::default()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS).map(|t| tokio::spawn(race_task(c.clone(), t, ops.clone(), reads.clone()))).collect();
    for t in tasks {
        t.await.unwrap();
    }
    let took = started.elapsed();
    c.drained().await;
    tokio::time::sleep(AFTER_LAG).await;
    let ops = ops.lock().unwrap().clone();
    let reads = std::mem::take(&mut *reads.lock().unwrap());
    eprintln!("cluster race: {} writes in {took:?}; reads {reads:?}", ops.len());
    assert!(ops.len() >= 1000, "at least 1,000 writes raced");
    assert_eq!(reads.mismatched, 0, "no body served that is not its ETag's");
    assert!(reads.failed.is_empty(), "reads failed during the race: {:?}", reads.failed);
    for k in 0..KEYS {
        let key = format!("k{k}");
        let row = c.catalog.get_object_fresh("race", &key).await.unwrap();
        let garage = c.garage_read("race", &key).await;
        assert_eq!(row.as_ref().map(|r| r.etag.clone()), garage.as_deref().map(md5_hex), "{key}: catalog and Garage");
        for i in 0..3 {
            let got = match c.node(i).get_object().bucket("race").key(&key).send().await {
                Ok(o) => Some(o.body.collect().await.unwrap().into_bytes().to_vec()),
                Err(_) => None,
            };
            assert_eq!(got.as_deref().map(md5_hex), garage.as_deref().map(md5_hex), "{key}: node {i} and Garage");
        }
        let state = row.map(|r| r.etag);
        assert!(is_last_write(&ops, &key, &state), "{key}: the final state {state:?} is not a last acknowledged write");
    }
    Arc::try_unwrap(c).ok().expect("tasks ended").finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_copy_is_not_served_after_an_overwrite_elsewhere() {
    let c = Cluster::start(3).await;
    c.node(0).create_bucket().bucket("hot").send().await.unwrap();
    for round in 0..20 {
        let body = format!("round {round}").repeat(500).into_bytes();
        c.node(0).put_object().bucket("hot").key("k").body(ByteStream::from(body.clone())).send().await.unwrap();
        // Node 2 caches rows too: the overwrite reaches it within the lag.
        tokio::time::sleep(AFTER_LAG).await;
        for _ in 0..2 {
            // The second read is a hot hit on node 2.
            let got = c.node(2).get_object().bucket("hot").key("k").send().await.unwrap();
            assert_eq!(got.body.collect().await.unwrap().into_bytes().to_vec(), body, "round {round}");
        }
    }
    c.finish().await;
}

/// The JSON that `strata ARGS --config CONFIG` prints.
fn strata_json(args: &[&str], config: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The JSON that `strata COMMAND status --json` prints.
fn status_json(command: &str, config: &std::path::Path) -> serde_json::Value {
    strata_json(&[command, "status", "--json"], config)
}

fn cluster_status(config: &std::path::Path) -> serde_json::Value {
    status_json("cluster", config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_status_lists_nodes_and_their_leases() {
    let mut c = Cluster::start(3).await;
    let v = cluster_status(&c.config());
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{v}");
    assert!(nodes.iter().all(|n| n["live"] == true && n["state"] == "up"), "{v}");
    assert!(nodes.iter().all(|n| n["address"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:"))), "{v}");
    c.nodes[1].proc.kill().unwrap();
    c.nodes[1].proc.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let v = cluster_status(&c.config());
    let live = v["nodes"].as_array().unwrap().iter().filter(|n| n["live"] == true).count();
    assert_eq!(live, 2, "a killed node is down once its lease passed: {v}");
    c.finish().await;
}

/// Rounds of three PUTs of one key, one per node, released together; after each round
/// the catalog's ETag, Garage's bytes and every node's answer agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_puts_of_one_key_settle_on_one_version() {
    let c = Arc::new(Cluster::start(3).await);
    c.node(0).create_bucket().bucket("same").send().await.unwrap();
    let mut disagreements = Vec::new();
    for round in 0..100 {
        let barrier = Arc::new(tokio::sync::Barrier::new(3));
        let puts = (0..3).map(|i| {
            let (c, barrier) = (c.clone(), barrier.clone());
            tokio::spawn(async move {
                let body = format!("round {round} node {i} ").repeat(100 + i * 37).into_bytes();
                barrier.wait().await;
                c.node(i)
                    .put_object()
                    .bucket("same")
                    .key("k")
                    .body(ByteStream::from(body.clone()))
                    .send()
                    .await
                    .unwrap();
                md5_hex(&body)
            })
        });
        let written: Vec<String> = futures::future::join_all(puts).await.into_iter().map(Result::unwrap).collect();
        c.drained().await;
        tokio::time::sleep(AFTER_LAG).await;
        let row = c.catalog.get_object_fresh("same", "k").await.unwrap().expect("a row").etag;
        let garage = c.garage_read("same", "k").await.as_deref().map(md5_hex);
        let mut served = Vec::new();
        for i in 0..3 {
            let got = match c.node(i).get_object().bucket("same").key("k").send().await {
                Ok(o) => o.body.collect().await.map(|b| md5_hex(&b.into_bytes())).map_err(|e| e.to_string()),
                Err(e) => Err(format!("{e:?}")),
            };
            served.push(got.unwrap_or_else(|e| format!("error: {e}")));
        }
        if !written.contains(&row) || garage.as_ref() != Some(&row) || served.iter().any(|s| *s != row) {
            disagreements.push(format!("round {round}: catalog {row}, Garage {garage:?}, served {served:?}"));
        }
    }
    assert!(disagreements.is_empty(), "{} of 100 rounds disagree: {disagreements:#?}", disagreements.len());
    Arc::try_unwrap(c).ok().expect("tasks ended").finish().await;
}

/// Peer reads: with Garage frozen, writes that node 0 acknowledged from its journal read
/// back on nodes 1 and 2 (through node 0). Once node 0 is gone, they answer 503 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_staged_on_one_node_reads_back_on_the_others() {
    let g = crate::harness::OwnGarage::start();
    let mut c = Cluster::start_with(3, g.settings(), 0).await;
    c.node(0).create_bucket().bucket("peer").send().await.unwrap();
    g.signal("-STOP");
    let puts = (0..5).map(|i| {
        let client = c.node(0).clone();
        async move {
            let body = format!("staged {i} ").repeat(3000 + i * 100).into_bytes();
            let key = format!("k{i}");
            client.put_object().bucket("peer").key(&key).body(ByteStream::from(body.clone())).send().await.unwrap();
            (key, body)
        }
    });
    let written = futures::future::join_all(puts).await;
    let owner = c.catalog.journal_lag().await.unwrap();
    assert!(owner.iter().any(|l| l.entries >= 5), "the writes wait in node 0's journal: {owner:?}");
    for i in 1..3 {
        for (key, body) in &written {
            let got = c.node(i).get_object().bucket("peer").key(key).range("bytes=100-").send().await.unwrap();
            assert_eq!(got.body.collect().await.unwrap().into_bytes().to_vec(), body[100..], "{key} on node {i}");
            let got = c.node(i).get_object().bucket("peer").key(key).send().await.unwrap();
            assert_eq!(got.e_tag().unwrap().trim_matches('"'), md5_hex(body), "{key} on node {i}");
            assert_eq!(got.body.collect().await.unwrap().into_bytes().to_vec(), *body, "{key} on node {i}");
        }
    }
    let view = cluster_status(&c.config());
    let node0 = view["nodes"].as_array().unwrap().iter().find(|n| n["backlog"]["entries"].as_u64() >= Some(5)).unwrap();
    let node0 = node0["id"].as_str().unwrap().to_owned();
    c.nodes[0].proc.kill().unwrap();
    c.nodes[0].proc.wait().unwrap();
    let e = c.node(1).get_object().bucket("peer").key("k0").send().await.unwrap_err();
    let text = format!("{e:?}");
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(503), "{text}");
    assert!(text.contains(&node0), "the error names the node that holds the version: {text}");
    g.signal("-CONT");
    c.finish().await;
}

fn replicate_status(config: &std::path::Path) -> serde_json::Value {
    status_json("replicate", config)
}

/// Node loss: node 0 acknowledges a DELETE and three PUTs from its journal while Garage is
/// frozen, and is killed for good. Once its lease (and one more) has passed, another node
/// takes the DELETE over and applies it. The PUTs, whose bytes only node 0 has, show as
/// waiting for node 0, and a later PUT of one of those keys on node 1 is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_nodes_entries_are_taken_over_or_shown_waiting() {
    let g = crate::harness::OwnGarage::start();
    let mut c = Cluster::start_with(3, g.settings(), 0).await;
    c.node(0).create_bucket().bucket("loss").send().await.unwrap();
    c.node(0).put_object().bucket("loss").key("gone").body(ByteStream::from_static(b"old")).send().await.unwrap();
    c.drained().await;
    g.signal("-STOP");
    let client = c.node(0).clone();
    let puts = (0..3).map(|i| {
        let client = client.clone();
        async move {
            let body = ByteStream::from(format!("only on node 0: {i}").into_bytes());
            client.put_object().bucket("loss").key(format!("k{i}")).body(body).send().await.unwrap();
        }
    });
    let delete = client.delete_object().bucket("loss").key("gone").send();
    let (_, deleted) = futures::join!(futures::future::join_all(puts), delete);
    deleted.unwrap();
    c.nodes[0].proc.kill().unwrap();
    c.nodes[0].proc.wait().unwrap();
    g.signal("-CONT");
    let started = Instant::now();
    while c.garage_read("loss", "gone").await.is_some() {
        assert!(started.elapsed() < Duration::from_secs(30), "the DELETE was not taken over");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("node loss: the DELETE was taken over {:?} after the kill", started.elapsed());
    let v = replicate_status(&c.config());
    let waiting = v["waiting"].as_array().unwrap();
    assert_eq!(waiting.len(), 1, "{v}");
    assert_eq!(waiting[0]["entries"], 3, "the three PUTs wait for node 0: {v}");
    let body = b"written on node 1".to_vec();
    c.node(1).put_object().bucket("loss").key("k0").body(ByteStream::from(body.clone())).send().await.unwrap();
    assert_eq!(c.garage_read("loss", "k0").await, Some(body), "node 0's older PUT does not hold the key up");
    let v = replicate_status(&c.config());
    assert_eq!(v["waiting"][0]["entries"], 2, "{v}");
    c.finish().await;
}

/// Node loss with `journal.peer_copies = 1`: every write node 0 acknowledged from its
/// journal during a Garage freeze reads back from the copies once node 0 is killed for
/// good, reaches Garage through another node after the freeze, and the copies are removed
/// once they are no longer needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_peer_copies_a_dead_nodes_writes_reach_the_store() {
    let g = crate::harness::OwnGarage::start();
    let mut c = Cluster::start_with(3, g.settings(), 1).await;
    c.node(0).create_bucket().bucket("copies").send().await.unwrap();
    g.signal("-STOP");
    let client = c.node(0).clone();
    let puts = (0..6).map(|i| {
        let client = client.clone();
        async move {
            let body = format!("copied {i} ").repeat(1000 + i * 500).into_bytes();
            let key = format!("k{i}");
            client.put_object().bucket("copies").key(&key).body(ByteStream::from(body.clone())).send().await.unwrap();
            (key, body)
        }
    });
    let written = futures::future::join_all(puts).await;
    c.nodes[0].proc.kill().unwrap();
    c.nodes[0].proc.wait().unwrap();
    // With node 0 gone and Garage still frozen, the copies serve its writes.
    for i in 1..3 {
        for (key, body) in &written {
            let got = c.node(i).get_object().bucket("copies").key(key).send().await.unwrap();
            assert_eq!(got.body.collect().await.unwrap().into_bytes().to_vec(), *body, "{key} on node {i}");
        }
    }
    g.signal("-CONT");
    let started = Instant::now();
    for (key, body) in &written {
        loop {
            if c.garage_read("copies", key).await.as_ref() == Some(body) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{key} did not reach Garage through a peer");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "peer copies: {} writes of a killed node reached Garage {:?} after the kill",
        written.len(),
        started.elapsed()
    );
    c.drained().await;
    let v = replicate_status(&c.config());
    assert!(v["waiting"].as_array().unwrap().is_empty(), "nothing waits for node 0: {v}");
    // The copies go once nothing needs them (the uploaders look every 2 s).
    let copies = |c: &Cluster| {
        (1..3).map(|i| std::fs::read_dir(c.dir.path().join(format!("node{i}/journal"))).unwrap().count()).sum::<usize>()
    };
    let started = Instant::now();
    while copies(&c) > 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "copies left: {}", copies(&c));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.finish().await;
}

/// `strata cluster leave` on a node under load, during a Garage freeze (so its journal has
/// work left): it refuses writes (clients move to the other nodes), drains, deregisters and
/// exits; every acknowledged write is in Garage afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_leaves_under_load_and_loses_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let g = crate::harness::OwnGarage::start();
    let mut c = Cluster::start_with(3, g.settings(), 0).await;
    c.node(0).create_bucket().bucket("leave").send().await.unwrap();
    g.signal("-STOP");
    let acked = Arc::new(Mutex::new(Vec::<(String, Vec<u8>)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<Client> = (0..3).map(|i| c.node(i).clone()).collect();
    let load = (0..3).map(|t| {
        let (clients, acked, stop) = (clients.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(SeqCst) {
                let (key, body) = (format!("load-{t}-{n}"), format!("load {t} {n} ").repeat(200).into_bytes());
                // A node that refuses (it is leaving) hands the write to the next one.
                for i in 0..3 {
                    let client = &clients[(t + n + i) % 3];
                    let put = client.put_object().bucket("leave").key(&key).body(ByteStream::from(body.clone()));
                    if put.send().await.is_ok() {
                        acked.lock().unwrap().push((key.clone(), body.clone()));
                        break;
                    }
                }
                n += 1;
            }
        })
    });
    let load: Vec<_> = load.collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let endpoint = format!("http://{}", c.nodes[0].addr);
    let (config, ep) = (c.config(), endpoint.clone());
    let leave = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["cluster", "leave", "--endpoint", &ep, "--config"])
            .arg(config)
            .output()
            .unwrap()
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = c.catalog.journal_lag().await.unwrap().iter().map(|l| l.entries).sum::<u64>();
    g.signal("-CONT");
    let out = leave.await.unwrap();
    assert!(out.status.success(), "leave failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"left\""), "{}", String::from_utf8_lossy(&out.stdout));
    let status = c.nodes[0].proc.wait().unwrap();
    assert!(status.success(), "the node that left exits cleanly: {status:?}");
    stop.store(true, SeqCst);
    for l in load {
        l.await.unwrap();
    }
    c.drained().await;
    let acked = acked.lock().unwrap().clone();
    eprintln!("leave: {} writes acknowledged under load, {waiting} entries waiting when the drain began", acked.len());
    assert!(waiting > 0, "the leaving node had work left");
    for (key, body) in &acked {
        assert_eq!(c.garage_read("leave", key).await.as_ref(), Some(body), "{key} is in Garage");
    }
    let v = cluster_status(&c.config());
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "the node that left is gone from the registry: {v}");
    c.finish().await;
}

/// A PgBouncer of this test's own in `mode`, in front of the test PostgreSQL.
struct OwnPgBouncer {
    proc: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl OwnPgBouncer {
    fn start(mode: &str) -> OwnPgBouncer {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = dir.path().display();
        std::fs::write(dir.path().join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        std::fs::write(
            dir.path().join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host=127.0.0.1 port=5432 user=postgres\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
                 listen_port = {port}\nauth_type = trust\nauth_file = {d}/users.txt\npool_mode = {mode}\n\
                 max_client_conn = 200\ndefault_pool_size = 5\nlogfile = {d}/pgbouncer.log\n\
                 pidfile = {d}/pgbouncer.pid\nunix_socket_dir =\nignore_startup_parameters = extra_float_digits\n"
            ),
        )
        .unwrap();
        // PgBouncer refuses to run as root: it switches to the postgres user, who must
        // read its files.
        for p in [dir.path().to_owned(), dir.path().join("users.txt"), dir.path().join("pgbouncer.ini")] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let bin = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"].into_iter().find(|p| std::path::Path::new(p).exists());
        let bin = bin.expect("pgbouncer is not installed: run the suite with scripts/test (Debian's pgbouncer)");
        let mut cmd = std::process::Command::new(bin);
        let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
        if root {
            cmd.args(["-u", "postgres"]);
        }
        let proc = cmd.arg(dir.path().join("pgbouncer.ini")).stderr(std::process::Stdio::null()).spawn().unwrap();
        // Dropped (killed and waited for) if it does not come up.
        let me = OwnPgBouncer { proc, port, _dir: dir };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return me;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("pgbouncer did not start");
    }
}

impl Drop for OwnPgBouncer {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

/// A catalog behind PgBouncer in transaction mode is refused at start with a message that
/// names the cause; session mode works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgbouncer_in_transaction_mode_is_refused_and_session_mode_works() {
    let c = Cluster::start(0).await;
    let db = c.db.clone();
    for (mode, works) in [("transaction", false), ("session", true)] {
        let bouncer = OwnPgBouncer::start(mode);
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("strata.toml");
        let toml = std::fs::read_to_string(c.config()).unwrap();
        let toml = toml.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", bouncer.port));
        assert!(toml.contains(&db), "the config names the test database");
        std::fs::write(&config, toml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["cluster", "status", "--json", "--config"])
            .arg(&config)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if works {
            assert!(out.status.success(), "{mode} mode: {err}");
        } else {
            assert!(!out.status.success(), "{mode} mode must be refused");
            assert!(err.contains("PgBouncer in transaction"), "{mode} mode: the message names the cause: {err}");
        }
    }
    c.finish().await;
}

/// Conditional writes across nodes: 20 rounds of 9 creators of one key (`If-None-Match:
/// *`), three per node, released together: exactly one gets 200, the others 412.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creators_on_several_nodes_get_one_200() {
    let c = Arc::new(Cluster::start(3).await);
    c.node(0).create_bucket().bucket("create").send().await.unwrap();
    for round in 0..20 {
        let key = format!("k{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(9));
        let racers = (0..9).map(|i| {
            let (c, barrier, key) = (c.clone(), barrier.clone(), key.clone());
            tokio::spawn(async move {
                let body = ByteStream::from(format!("creator {i}").into_bytes());
                barrier.wait().await;
                let r = c.node(i).put_object().bucket("create").key(&key).body(body).if_none_match("*").send().await;
                match r {
                    Ok(_) => 200,
                    Err(e) => e.raw_response().map_or(0, |r| r.status().as_u16()),
                }
            })
        });
        let mut codes: Vec<u16> = futures::future::join_all(racers).await.into_iter().map(Result::unwrap).collect();
        codes.sort();
        assert_eq!(codes, [200, 412, 412, 412, 412, 412, 412, 412, 412], "round {round}");
    }
    Arc::try_unwrap(c).ok().expect("tasks ended").finish().await;
}
