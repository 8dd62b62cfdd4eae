//! Issue 16: one hot tier across three nodes (`cluster.shared_hot`) on one PostgreSQL
//! database and Garage.
//!
//! - each chunk is fetched from the cold store once in the whole cluster (counted at the
//!   backend), later reads come from the near caches, `cache stats|evict|warm --cluster`
//!   act on every node and `warm` spreads the fetches over the owners;
//! - an owner that freezes or dies while reads run is skipped, and no read fails;
//! - an overwrite is never served stale from any node's near cache once the invalidation
//!   lag has passed.

use super::{AFTER_LAG, Cluster, cluster_status, strata_json};
use aws_sdk_s3::primitives::ByteStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

/// The sum over the nodes of a counter's samples whose line starts with `prefix`.
async fn counter_sum(c: &Cluster, prefix: &str) -> f64 {
    let mut sum = 0.0;
    for n in c.nodes.iter().filter(|n| n.addr.port() != 0) {
        let Ok(r) = reqwest::get(format!("http://{}/metrics", n.addr)).await else { continue };
        let text = r.text().await.unwrap_or_default();
        sum += text
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    sum
}

const COLD_READS: &str = r#"strata_backend_requests_total{backend="garage",op="read"}"#;
const THROUGH_OWNERS: &str = r#"strata_peer_hot_reads_total{result="hit"}"#;
const THROUGH_OWNERS_MISS: &str = r#"strata_peer_hot_reads_total{result="miss"}"#;

async fn through_owners(c: &Cluster) -> f64 {
    counter_sum(c, THROUGH_OWNERS).await + counter_sum(c, THROUGH_OWNERS_MISS).await
}

/// 100 concurrent GETs of `key`, spread over the nodes; every body must be `body`.
async fn hundred_reads(c: &Cluster, key: &str, body: &[u8]) {
    let gets = (0..100).map(|i| {
        let client = c.node(i).clone();
        async move {
            let o = client.get_object().bucket("shared").key(key).send().await.unwrap();
            o.body.collect().await.unwrap().into_bytes().to_vec()
        }
    });
    for got in futures::future::join_all(gets).await {
        assert!(got == body, "a whole, correct body of {key}");
    }
}

/// 100 concurrent reads of one object of one chunk, spread over three nodes, make one cold
/// GET; of four chunks, four. Later reads of it come from each node's near cache. The
/// registry reports hot bytes and peer bytes, and the cluster-wide controls act on every
/// node: stats count each chunk once, evict empties them all, and `warm --cluster` fetches
/// each chunk once, on its owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_hot_tier_fetches_each_chunk_once() {
    let c = Cluster::start_shared_hot(3, "64KiB", "").await;
    c.node(0).create_bucket().bucket("shared").send().await.unwrap();
    let small: Vec<u8> = (0..50 * 1024).map(|i| (i % 253) as u8).collect();
    let body: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    c.node(0).put_object().bucket("shared").key("small").body(ByteStream::from(small.clone())).send().await.unwrap();
    c.node(0).put_object().bucket("shared").key("big").body(ByteStream::from(body.clone())).send().await.unwrap();
    c.drained().await;
    let before = counter_sum(&c, COLD_READS).await;
    hundred_reads(&c, "small", &small).await;
    assert_eq!(counter_sum(&c, COLD_READS).await - before, 1.0, "one cold GET for 100 reads of one chunk");
    hundred_reads(&c, "big", &body).await;
    let cold = counter_sum(&c, COLD_READS).await - before;
    let peer = through_owners(&c).await;
    eprintln!("shared hot: 2 x 100 reads over 3 nodes, {cold} cold GETs, {peer} chunk reads through owners");
    assert_eq!(cold, 5.0, "one cold GET per chunk in the cluster");
    assert!(peer > 0.0, "non-owners read through the owners");
    assert!(counter_sum(&c, "strata_peer_cold_gets_saved_total").await > 0.0, "owners' hits are counted");
    // Read again, one at a time: every node has the chunks it does not own near by now.
    for i in 0..9 {
        let o = c.node(i).get_object().bucket("shared").key("big").send().await.unwrap();
        assert!(o.body.collect().await.unwrap().into_bytes().to_vec() == body, "read {i} again");
    }
    assert_eq!(through_owners(&c).await, peer, "later reads come from the near caches, not the owners");
    assert_eq!(counter_sum(&c, COLD_READS).await - before, 5.0, "and not from the cold store");
    // The registry reports each node's hot bytes and what it read from its peers.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let view = cluster_status(&c.config());
    let sum = |f: &str| view["nodes"].as_array().unwrap().iter().map(|n| n[f].as_u64().unwrap()).sum::<u64>();
    assert!(sum("hot_bytes") >= 250 * 1024, "{view}");
    assert!(sum("peer_bytes") > 0, "{view}");
    // Cluster-wide controls: each chunk is held by one node, and one evict empties them all.
    let stats = strata_json(&["cache", "stats", "--cluster"], &c.config());
    assert_eq!(stats["nodes"].as_array().map(Vec::len), Some(3), "{stats}");
    assert_eq!(stats["total"]["chunks"], 5, "each chunk once in the cluster: {stats}");
    let evicted = strata_json(&["cache", "evict", "shared", "--cluster"], &c.config());
    assert_eq!(evicted["nodes"].as_array().map(Vec::len), Some(3), "{evicted}");
    let stats = strata_json(&["cache", "stats", "--cluster"], &c.config());
    assert_eq!(stats["total"]["chunks"], 0, "{stats}");
    // warm --cluster: each node fills the chunks it owns; each chunk is fetched once.
    let cold = counter_sum(&c, COLD_READS).await;
    let warmed = strata_json(&["cache", "warm", "shared", "--cluster"], &c.config());
    let fetched: u64 =
        warmed["nodes"].as_array().unwrap().iter().map(|n| n["answer"]["stats"]["chunks"].as_u64().unwrap()).sum();
    assert_eq!(fetched, 5, "the owners hold every chunk once: {warmed}");
    assert_eq!(counter_sum(&c, COLD_READS).await - cold, 5.0, "one cold GET per chunk: {warmed}");
    let stats = strata_json(&["cache", "stats", "--cluster"], &c.config());
    assert_eq!(stats["total"]["chunks"], 5, "{stats}");
    let (_, documented) =
        crate::status::metric_sections().into_iter().find(|(t, _)| t.starts_with("Shared hot tier")).unwrap();
    // The resumed reads move in the test below, where an owner fails part-way.
    for name in documented.iter().filter(|n| !n.contains("resumed")) {
        assert!(counter_sum(&c, name).await > 0.0, "{name} is documented and moves");
    }
    c.finish().await;
}

/// Eight readers on two nodes read a 4 MiB object of 1 MiB chunks over and over (no near
/// cache, so every chunk a node does not own comes from its owner) while the third node,
/// the one that owns the most of its chunks, is frozen (SIGSTOP, longer than `cluster.peer_timeout`)
/// and then killed mid-read. No read fails, and every body is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_owner_that_freezes_or_dies_fails_no_read() {
    let mut c = Cluster::start_shared_hot(3, "1MiB", "near_cache = \"0\"\npeer_timeout = \"300ms\"\n").await;
    c.node(0).create_bucket().bucket("shared").send().await.unwrap();
    let body: Vec<u8> = (0..4u32 << 20).map(|i| (i % 249) as u8).collect();
    c.node(0).put_object().bucket("shared").key("hot").body(ByteStream::from(body.clone())).send().await.unwrap();
    c.drained().await;
    let warmed = strata_json(&["cache", "warm", "shared", "--cluster"], &c.config());
    // The victim: the node that owns the most chunks; the readers use the other two.
    let view = cluster_status(&c.config());
    let owned = |i: usize| {
        let addr = c.nodes[i].addr.to_string();
        let id = &view["nodes"].as_array().unwrap().iter().find(|n| n["address"] == addr.as_str()).unwrap()["id"];
        let answer = warmed["nodes"].as_array().unwrap().iter().find(|n| n["node"] == *id).unwrap();
        answer["answer"]["stats"]["chunks"].as_u64().unwrap()
    };
    let victim = (0..3).max_by_key(|i| owned(*i)).unwrap();
    let readers_on: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    eprintln!("node {victim} owns {} of 4 chunks", owned(victim));
    let (stop, reads) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let body = Arc::new(body);
    let readers: Vec<_> = (0..8)
        .map(|i| {
            let client = c.node(readers_on[i % 2]).clone();
            let (stop, reads, body) = (stop.clone(), reads.clone(), body.clone());
            tokio::spawn(async move {
                while !stop.load(SeqCst) {
                    let o = client.get_object().bucket("shared").key("hot").send().await;
                    let got = o.expect("a read with a frozen or dead owner").body.collect().await;
                    let got = got.expect("a whole body").into_bytes();
                    assert!(got.len() == body.len() && got[..] == body[..], "a correct body");
                    reads.fetch_add(1, SeqCst);
                }
            })
        })
        .collect();
    let pid = c.nodes[victim].proc.id().to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signal = |s: &str| assert!(std::process::Command::new("kill").args([s, &pid]).status().unwrap().success());
    signal("-STOP");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let frozen = reads.load(SeqCst);
    signal("-CONT");
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.nodes[victim].proc.kill().unwrap();
    c.nodes[victim].proc.wait().unwrap();
    c.nodes[victim].addr.set_port(0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, SeqCst);
    for r in readers {
        r.await.expect("no reader failed");
    }
    let failed = counter_sum(&c, r#"strata_peer_hot_reads_total{result="failed"}"#).await;
    let resumed = counter_sum(&c, "strata_peer_hot_resumed_total").await;
    eprintln!(
        "{} reads, {frozen} while frozen; {failed} owner reads failed ({resumed} part-way) and were read here",
        reads.load(SeqCst)
    );
    assert!(failed > 0.0, "the frozen or dead owner was tried and skipped");
    assert!(reads.load(SeqCst) > 16, "reads went on");
    c.finish().await;
}

/// Every node reads a key until its near cache holds it; another node overwrites it.
/// Once the write is acknowledged and the invalidation lag has passed, no node serves the
/// old bytes; during the lag a node serves the old or the new version whole, never a mix.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_overwrite_is_not_served_from_a_near_cache_after_the_lag() {
    let c = Cluster::start_shared_hot(3, "64KiB", "").await;
    c.node(0).create_bucket().bucket("shared").send().await.unwrap();
    let version = |round: usize| -> Vec<u8> { (0..150 * 1024).map(|i| ((i + round * 7) % 241) as u8).collect() };
    let mut old = version(0);
    c.node(0).put_object().bucket("shared").key("k").body(ByteStream::from(old.clone())).send().await.unwrap();
    for round in 1..8 {
        for i in 0..6 {
            let o = c.node(i).get_object().bucket("shared").key("k").send().await.unwrap();
            assert!(o.body.collect().await.unwrap().into_bytes().to_vec() == old, "round {round}: warm-up read");
        }
        let new = version(round);
        let writer = round % 3;
        c.node(writer).put_object().bucket("shared").key("k").body(ByteStream::from(new.clone())).send().await.unwrap();
        for i in 0..3 {
            let got = c.node(i).get_object().bucket("shared").key("k").send().await.unwrap();
            let got = got.body.collect().await.unwrap().into_bytes().to_vec();
            assert!(got == new || got == old, "round {round}, node {i}: a whole version during the lag");
        }
        tokio::time::sleep(AFTER_LAG).await;
        for i in 0..6 {
            let got = c.node(i).get_object().bucket("shared").key("k").send().await.unwrap();
            let got = got.body.collect().await.unwrap().into_bytes().to_vec();
            assert!(got == new, "round {round}, node {}: the new version after the lag", i % 3);
        }
        old = new;
    }
    assert!(counter_sum(&c, "strata_peer_near_hits_total").await > 0.0, "the near caches were used");
    c.finish().await;
}
