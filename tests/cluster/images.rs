//! Issue 18 across nodes: a derivative cached on one node is not served once another
//! node acknowledged an overwrite or a delete of its original (its name holds the
//! original's version, so a node reading the new row asks for a new derivative), also
//! when that node answered it ready (from its memory tier, `ready_derivative`). With
//! `images.store` on the shared Garage, the node that changed the original removes the
//! copies another node stored there.

use super::{AFTER_LAG, Cluster};
use crate::harness::{ACCESS_KEY, SECRET_KEY};
use aws_sdk_s3::primitives::ByteStream;

const EXTRA: &str = "[images]\nstore = \"garage\"\n[images.presets.t64]\nwidth = 64\nformat = \"png\"\n\
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

/// The derivatives `images.store` holds for bucket `pics`, as Garage lists them.
async fn stored_copies(c: &Cluster) -> usize {
    let (b, prefix, g) = &c.garage;
    let r = g.list_objects_v2().bucket(b).prefix(format!("{prefix}.strata-derivatives/pics/")).send().await.unwrap();
    r.contents().len()
}

/// Waits (up to 5 s: copies go in the background) until the store holds `n` copies.
async fn until_copies(c: &Cluster, n: usize, what: &str) {
    for _ in 0..50 {
        if stored_copies(c).await == n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(stored_copies(c).await, n, "{what}");
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
    assert_eq!(stored_copies(&c).await, 1, "node 1 stored its render");
    put("astronaut.png").await.unwrap(); // 512 × 512
    until_copies(&c, 0, "node 0's overwrite removes node 1's copy").await;
    tokio::time::sleep(AFTER_LAG).await;
    assert_eq!(derivative(&c, 1, "k.png").await, (200, "MISS".into(), Some((64, 64))), "the new original's");
    assert_eq!(stored_copies(&c).await, 1);
    c.node(0).delete_object().bucket("pics").key("k.png").send().await.unwrap();
    until_copies(&c, 0, "node 0's delete removes it").await;
    tokio::time::sleep(AFTER_LAG).await;
    assert_eq!(derivative(&c, 1, "k.png").await.0, 404, "no derivative outlives its original");
    c.finish().await;
}
