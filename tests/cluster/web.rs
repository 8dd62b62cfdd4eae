//! Issue 22 across nodes: a ready answer (the web front end's hot-hit fast path) is never
//! served for a version that another node has overwritten or deleted.

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
