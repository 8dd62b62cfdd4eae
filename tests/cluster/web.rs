//! Issue 22 across nodes: a ready answer (the hot-hit fast path of the web front end, and
//! of the S3 API for signed GETs) is never served for a version that another node has
//! overwritten or deleted.

use super::{AFTER_LAG, Cluster};
use aws_sdk_s3::primitives::ByteStream;

const EXTRA: &str =
    "[buckets.pub]\nbackend = \"garage\"\n[[buckets.pub.rules]]\nprefix = \"\"\naccess = \"public-read\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ready_hit_is_not_served_after_an_overwrite_elsewhere() {
    let c = Cluster::start_extra(3, EXTRA).await;
    let url = format!("http://{}/pub/k", c.nodes[2].addr);
    for round in 0..10 {
        let body = format!("round {round} ").repeat(1000).into_bytes();
        c.node(0).put_object().bucket("pub").key("k").body(ByteStream::from(body.clone())).send().await.unwrap();
        tokio::time::sleep(AFTER_LAG).await;
        for read in 0..3 {
            let r = reqwest::get(&url).await.unwrap();
            let cache = r.headers().get("x-cache").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            assert_eq!(r.bytes().await.unwrap().to_vec(), body, "round {round}, read {read} ({cache})");
            if read > 0 {
                assert_eq!(cache, "HIT", "round {round}: the later reads are hot hits on node 2");
            }
        }
    }
    c.node(1).delete_object().bucket("pub").key("k").send().await.unwrap();
    tokio::time::sleep(AFTER_LAG).await;
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 404, "a deleted object is gone on every node");
    c.finish().await;
}

/// The whole-object hits node `addr` answered ready so far (`/_strata/cache/stats`).
async fn whole_hits(addr: std::net::SocketAddr) -> u64 {
    let (ak, sk) = (crate::harness::ACCESS_KEY, crate::harness::SECRET_KEY);
    let url = format!("http://{addr}/_strata/cache/stats");
    let v: serde_json::Value =
        reqwest::Client::new().get(url).basic_auth(ak, Some(sk)).send().await.unwrap().json().await.unwrap();
    v["whole_hits"].as_u64().unwrap()
}

/// The same for signed GETs (`src/api/s3/ready.rs`): SDK reads on node 2 are answered
/// ready once hot, and never with a version another node has replaced or deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_ready_hit_is_not_served_after_an_overwrite_elsewhere() {
    let c = Cluster::start_extra(3, EXTRA).await;
    let before = whole_hits(c.nodes[2].addr).await;
    for round in 0..10 {
        let body = format!("signed {round} ").repeat(1000).into_bytes();
        c.node(0).put_object().bucket("pub").key("s").body(ByteStream::from(body.clone())).send().await.unwrap();
        tokio::time::sleep(AFTER_LAG).await;
        for read in 0..3 {
            let r = c.node(2).get_object().bucket("pub").key("s").send().await.unwrap();
            assert_eq!(r.body.collect().await.unwrap().into_bytes().to_vec(), body, "round {round}, read {read}");
        }
    }
    // Each round: a miss, a read from the hot file, then one ready answer.
    assert_eq!(whole_hits(c.nodes[2].addr).await - before, 10, "the third read of each round was ready");
    c.node(1).delete_object().bucket("pub").key("s").send().await.unwrap();
    tokio::time::sleep(AFTER_LAG).await;
    let gone = c.node(2).get_object().bucket("pub").key("s").send().await;
    assert_eq!(crate::harness::status(gone), 404, "a deleted object is gone on every node");
    c.finish().await;
}
