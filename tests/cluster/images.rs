//! Issue 18 across nodes: a derivative cached on one node is not served once another
//! node acknowledged an overwrite or a delete of its original (its name holds the
//! original's version, so a node reading the new row asks for a new derivative), also
//! when that node answered it ready (from its memory tier, `ready_derivative`).

use super::{AFTER_LAG, Cluster};
use crate::harness::{ACCESS_KEY, SECRET_KEY};
use aws_sdk_s3::primitives::ByteStream;

const EXTRA: &str = "[images.presets.t64]\nwidth = 64\nformat = \"png\"\n\
                     [buckets.pics]\nbackend = \"garage\"\n[[buckets.pics.rules]]\nprefix = \"\"\naccess = \"public-read\"\n";

async fn derivative(c: &Cluster, node: usize, key: &str) -> (u16, String, Option<(u32, u32)>) {
    let url = format!("http://{}/pics/{key}?im=t64", c.nodes[node].addr);
    let r = reqwest::get(url).await.unwrap();
    let (status, cache) = (r.status().as_u16(), r.headers().get("x-cache").map(|v| v.to_str().unwrap().to_owned()));
    let body = r.bytes().await.unwrap();
    let size = image::load_from_memory(&body).ok().map(|i| (i.width(), i.height()));
    (status, cache.unwrap_or_default(), size)
}

/// Node `node`'s derivatives answered ready (`images.ready_hits` of its status JSON).
async fn ready_hits(c: &Cluster, node: usize) -> u64 {
    let url = format!("http://{}/_strata/status.json", c.nodes[node].addr);
    let r = reqwest::Client::new().get(url).basic_auth(ACCESS_KEY, Some(SECRET_KEY)).send().await.unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    v["images"]["ready_hits"].as_u64().expect("images.ready_hits")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_derivative_is_not_served_after_its_original_changed_on_another_node() {
    let c = Cluster::start_extra(2, EXTRA).await;
    let put = |img: &str| {
        let body = crate::images::sample(img);
        c.node(0).put_object().bucket("pics").key("k.png").body(ByteStream::from(body)).send()
    };
    put("coffee.png").await.unwrap(); // 600 × 400
    assert_eq!(derivative(&c, 1, "k.png").await, (200, "MISS".into(), Some((64, 43))));
    assert_eq!(derivative(&c, 1, "k.png").await, (200, "HIT".into(), Some((64, 43))));
    // The first hit brought it into node 1's memory tier: the next are ready answers.
    for _ in 0..3 {
        assert_eq!(derivative(&c, 1, "k.png").await, (200, "HIT".into(), Some((64, 43))));
    }
    assert_eq!(ready_hits(&c, 1).await, 3);
    put("astronaut.png").await.unwrap(); // 512 × 512
    tokio::time::sleep(AFTER_LAG).await;
    assert_eq!(derivative(&c, 1, "k.png").await, (200, "MISS".into(), Some((64, 64))), "the new original's");
    c.node(0).delete_object().bucket("pics").key("k.png").send().await.unwrap();
    tokio::time::sleep(AFTER_LAG).await;
    assert_eq!(derivative(&c, 1, "k.png").await.0, 404, "no derivative outlives its original");
    c.finish().await;
}
