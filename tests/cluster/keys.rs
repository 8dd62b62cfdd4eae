//! Issue 20, across nodes: keys live in the shared catalog, so a key made on one node
//! works on every node at once (an unknown id makes a node reread), and one disabled on
//! any node is refused on every node once `auth.refresh` (200 ms here) has passed.

use super::Cluster;
use crate::keys::{admin, make_key};
use std::time::Duration;

/// Twice `auth.refresh` of these tests, plus a margin for a busy machine.
const AFTER_KEY_LAG: Duration = Duration::from_millis(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disabled_key_is_refused_on_every_node() {
    let c = Cluster::start(3).await;
    c.node(0).create_bucket().bucket("shared").send().await.unwrap();
    let (id, secret) = make_key(c.nodes[0].addr, "app", &[("shared", "", "readwrite")]).await;
    let as_key = |i: usize| crate::harness::client(c.nodes[i].addr, &id, &secret, "us-east-1");
    let get = |i: usize| {
        let k = as_key(i);
        async move {
            let r = k.get_object().bucket("shared").key("k").send().await;
            r.map(|_| ()).map_err(|e| aws_sdk_s3::error::ProvideErrorMetadata::code(&e).unwrap_or("none").to_owned())
        }
    };
    as_key(1).put_object().bucket("shared").key("k").body(b"v".to_vec().into()).send().await.unwrap();
    for i in 0..3 {
        assert_eq!(get(i).await, Ok(()), "node {i} knows the new key at once");
    }
    admin(c.nodes[2].addr, reqwest::Method::POST, "keys/disable", &[("id", &id)], None).await;
    tokio::time::sleep(AFTER_KEY_LAG).await;
    for i in 0..3 {
        assert_eq!(get(i).await, Err("InvalidAccessKeyId".into()), "node {i} after the lag");
    }
    admin(c.nodes[0].addr, reqwest::Method::POST, "keys/enable", &[("id", &id)], None).await;
    tokio::time::sleep(AFTER_KEY_LAG).await;
    for i in 0..3 {
        assert_eq!(get(i).await, Ok(()), "node {i} enabled again");
    }
    // A grant taken away on one node holds on the others too.
    let q = [("key", id.as_str()), ("bucket", "shared"), ("prefix", "")];
    admin(c.nodes[1].addr, reqwest::Method::DELETE, "grants", &q, None).await;
    tokio::time::sleep(AFTER_KEY_LAG).await;
    for i in 0..3 {
        assert_eq!(get(i).await, Err("AccessDenied".into()), "node {i} without the grant");
    }
    c.finish().await;
}
