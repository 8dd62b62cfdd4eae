//! Issue 20: access keys and grants kept in the catalog.
//!
//! - two keys with different grants, through aws-sdk-s3, on fs and Garage: each can do
//!   exactly what its grants allow, in every operation family (objects, multipart, copy
//!   with read on the source and write on the target, DeleteObjects per key, listing with
//!   a prefix grant, buckets), and a refusal is `AccessDenied`, never a 404;
//! - the life of a key: rotation's grace period, disable and enable, expiry, source
//!   networks, deletion, the audit trail with its actors, an admin key that is not the
//!   config's, secrets that are not in the catalog, and a node with another seal key
//!   refused at start;
//! - the admin API refuses a data-only key.
//!
//! The cluster half (a key disabled on one node is refused on every node) is in
//! `tests/cluster/keys.rs`.

use crate::harness::{ACCESS_KEY, Cold, Harness, SECRET_KEY, code, status};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

/// Calls the admin API at `addr` as `(id, secret)`: the status and the JSON answer.
pub async fn admin_as(
    addr: SocketAddr,
    (id, secret): (&str, &str),
    method: reqwest::Method,
    route: &str,
    query: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("http://{addr}/_strata/{route}"))
        .basic_auth(id, Some(secret))
        .query(query);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Calls the admin API as the config's key and expects success.
pub async fn admin(
    addr: SocketAddr,
    method: reqwest::Method,
    route: &str,
    query: &[(&str, &str)],
    body: Option<Value>,
) -> Value {
    let (status, v) = admin_as(addr, (ACCESS_KEY, SECRET_KEY), method, route, query, body).await;
    assert!((200..300).contains(&status), "{route}: {status} {v}");
    v
}

/// Makes a key named `name` with `grants` (scope, rights): its id and secret.
pub async fn make_key(addr: SocketAddr, name: &str, grants: &[(&str, &str, &str)]) -> (String, String) {
    let v = admin(addr, reqwest::Method::POST, "keys", &[], Some(json!({ "name": name }))).await;
    let (id, secret) = (v["key"]["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned());
    for (bucket, prefix, rights) in grants {
        let q = [("key", id.as_str()), ("bucket", bucket), ("prefix", prefix), ("rights", rights)];
        admin(addr, reqwest::Method::POST, "grants", &q, None).await;
    }
    (id, secret)
}

async fn put(c: &Client, bucket: &str, key: &str) -> Result<(), String> {
    let r = c.put_object().bucket(bucket).key(key).body(ByteStream::from_static(b"data")).send().await;
    r.map(|_| ()).map_err(|e| aws_sdk_s3::error::ProvideErrorMetadata::code(&e).unwrap_or("none").to_owned())
}

async fn get(c: &Client, bucket: &str, key: &str) -> Result<(), String> {
    let r = c.get_object().bucket(bucket).key(key).send().await;
    r.map(|_| ()).map_err(|e| aws_sdk_s3::error::ProvideErrorMetadata::code(&e).unwrap_or("none").to_owned())
}

fn denied(r: Result<(), String>) -> bool {
    r.is_err_and(|c| c == "AccessDenied")
}

both!(two_keys_can_do_exactly_what_their_grants_allow);

async fn two_keys_can_do_exactly_what_their_grants_allow(h: Harness) {
    let root = &h.client;
    for b in ["pics", "docs"] {
        h.bucket(b).await;
    }
    for (b, k) in [("pics", "u1/a.jpg"), ("pics", "u2/b.jpg"), ("docs", "d.txt")] {
        h.put(b, k, b"original").await;
    }
    let (w_id, w_secret) = make_key(h.addr, "writer", &[("pics", "u1/", "read,write,list")]).await;
    let (r_id, r_secret) =
        make_key(h.addr, "reader", &[("pics", "", "readonly"), ("pics", "u2/", "delete"), ("docs", "", "delete")])
            .await;
    let w = h.client_with(&w_id, &w_secret, "us-east-1");
    let r = h.client_with(&r_id, &r_secret, "us-east-1");

    // Objects: the writer reads and writes under u1/ only, and deletes nothing.
    assert_eq!(put(&w, "pics", "u1/new").await, Ok(()));
    assert!(denied(put(&w, "pics", "u2/x").await));
    assert_eq!(status(root.head_object().bucket("pics").key("u2/x").send().await), 404, "nothing written");
    assert_eq!(get(&w, "pics", "u1/a.jpg").await, Ok(()));
    assert!(denied(get(&w, "pics", "u2/b.jpg").await));
    assert!(denied(get(&w, "docs", "d.txt").await));
    assert!(denied(get(&w, "nope", "x").await), "a bucket that does not exist is not revealed");
    assert_eq!(
        get(&w, "pics", "u1/missing").await,
        Err("NoSuchKey".into()),
        "within its grant a key learns what is missing"
    );
    assert_eq!(code(w.delete_object().bucket("pics").key("u1/new").send().await), "AccessDenied");
    assert_eq!(status(w.head_object().bucket("pics").key("u2/b.jpg").send().await), 403);

    // The reader reads everything in pics, writes nothing.
    assert_eq!(get(&r, "pics", "u2/b.jpg").await, Ok(()));
    assert!(denied(put(&r, "pics", "u1/x").await));

    // Listings: the writer only within its prefix.
    let listed = w.list_objects_v2().bucket("pics").prefix("u1/").send().await.unwrap();
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["u1/a.jpg", "u1/new"]);
    assert_eq!(code(w.list_objects_v2().bucket("pics").send().await), "AccessDenied");
    assert_eq!(code(w.list_objects_v2().bucket("pics").prefix("u").send().await), "AccessDenied");
    assert_eq!(code(w.list_objects().bucket("pics").prefix("u2/").send().await), "AccessDenied");
    assert_eq!(r.list_objects_v2().bucket("pics").send().await.unwrap().key_count(), Some(3));

    // Multipart: writes under the grant's prefix.
    let up = w.create_multipart_upload().bucket("pics").key("u1/mp").send().await.unwrap();
    let id = up.upload_id().unwrap();
    let part = w.upload_part().bucket("pics").key("u1/mp").upload_id(id).part_number(1);
    let etag = part.body(ByteStream::from_static(b"part")).send().await.unwrap().e_tag().unwrap().to_owned();
    let done = CompletedMultipartUpload::builder().parts(CompletedPart::builder().part_number(1).e_tag(etag).build());
    w.complete_multipart_upload()
        .bucket("pics")
        .key("u1/mp")
        .upload_id(id)
        .multipart_upload(done.build())
        .send()
        .await
        .unwrap();
    assert_eq!(code(w.create_multipart_upload().bucket("pics").key("u2/mp").send().await), "AccessDenied");
    assert_eq!(code(r.create_multipart_upload().bucket("pics").key("u2/mp").send().await), "AccessDenied");

    // Copy: read on the source and write on the target.
    w.copy_object().bucket("pics").key("u1/copy").copy_source("pics/u1/a.jpg").send().await.unwrap();
    assert_eq!(
        code(w.copy_object().bucket("pics").key("u1/c2").copy_source("docs/d.txt").send().await),
        "AccessDenied"
    );
    assert_eq!(
        code(w.copy_object().bucket("pics").key("u2/c3").copy_source("pics/u1/a.jpg").send().await),
        "AccessDenied"
    );
    assert_eq!(
        code(r.copy_object().bucket("pics").key("u2/c4").copy_source("pics/u1/a.jpg").send().await),
        "AccessDenied"
    );

    // DeleteObjects: each key on its own.
    let ids = ["u1/a.jpg", "u2/b.jpg"].map(|k| ObjectIdentifier::builder().key(k).build().unwrap());
    let out = r
        .delete_objects()
        .bucket("pics")
        .delete(Delete::builder().set_objects(Some(ids.to_vec())).build().unwrap())
        .send()
        .await
        .unwrap();
    let gone: Vec<_> = out.deleted().iter().filter_map(|d| d.key()).collect();
    let refused: Vec<_> = out.errors().iter().map(|e| (e.key().unwrap(), e.code().unwrap())).collect();
    assert_eq!(gone, ["u2/b.jpg"]);
    assert_eq!(refused, [("u1/a.jpg", "AccessDenied")]);
    assert_eq!(h.get("pics", "u1/a.jpg").await, b"original", "a refused key stays");
    assert_eq!(status(root.head_object().bucket("pics").key("u2/b.jpg").send().await), 404);
    let one = [ObjectIdentifier::builder().key("d.txt").build().unwrap()];
    let del =
        w.delete_objects().bucket("docs").delete(Delete::builder().set_objects(Some(one.to_vec())).build().unwrap());
    assert_eq!(code(del.send().await), "AccessDenied", "no grant on the bucket at all");

    // Buckets: each key sees only its buckets, and makes or removes none.
    let names = |c: &Client| {
        let c = c.clone();
        async move {
            c.list_buckets().send().await.unwrap().buckets().iter().filter_map(|b| b.name.clone()).collect::<Vec<_>>()
        }
    };
    assert_eq!(names(&w).await, ["pics"]);
    assert_eq!(names(&r).await, ["docs", "pics"]);
    assert_eq!(names(root).await, ["docs", "pics"]);
    assert_eq!(code(w.create_bucket().bucket("newb").send().await), "AccessDenied");
    assert_eq!(code(w.delete_bucket().bucket("pics").send().await), "AccessDenied");
    w.head_bucket().bucket("pics").send().await.unwrap();
    assert_eq!(status(w.head_bucket().bucket("docs").send().await), 403);

    // The admin API refuses a data key, and an unknown one.
    let (s, _) = admin_as(h.addr, (&w_id, &w_secret), reqwest::Method::GET, "keys", &[], None).await;
    assert_eq!(s, 403);
    let (s, _) = admin_as(h.addr, (&w_id, "wrong"), reqwest::Method::GET, "status.json", &[], None).await;
    assert_eq!(s, 401);

    // Requests are counted per key id, and no secret is in the metrics.
    let metrics = reqwest::get(format!("http://{}/metrics", h.addr)).await.unwrap().text().await.unwrap();
    let key_label = format!("key=\"{w_id}\"");
    let counted = metrics.lines().any(|l| {
        l.starts_with("strata_s3_key_requests_total{") && l.contains(&key_label) && l.contains("class=\"4xx\"")
    });
    assert!(counted, "no refused requests counted for {w_id}");
    assert!(!metrics.contains(&w_secret) && !metrics.contains(&r_secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_rotates_expires_is_disabled_and_is_audited() {
    use reqwest::Method;
    let mut h = Harness::start(Cold::Fs).await;
    h.bucket("pics").await;
    let (id, old) = make_key(h.addr, "app", &[("pics", "", "owner")]).await;
    let with = |secret: &str| h.client_with(&id, secret, "us-east-1");
    assert_eq!(put(&with(&old), "pics", "a").await, Ok(()));

    // Rotation: both secrets during the grace period, then only the new one.
    let v = admin(h.addr, Method::POST, "keys/rotate", &[("id", &id), ("grace", "3s")], None).await;
    let new = v["secret"].as_str().unwrap().to_owned();
    assert!(v["key"]["previous_until_ms"].is_i64());
    assert_eq!(put(&with(&new), "pics", "b").await, Ok(()));
    assert_eq!(put(&with(&old), "pics", "c").await, Ok(()), "the old secret during the grace period");
    assert_eq!(get(&with(&old), "pics", "b").await, Ok(()));
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(put(&with(&old), "pics", "d").await, Err("SignatureDoesNotMatch".into()));
    assert_eq!(put(&with(&new), "pics", "d").await, Ok(()));

    // Disable and enable: at once on this node.
    admin(h.addr, Method::POST, "keys/disable", &[("id", &id)], None).await;
    assert_eq!(get(&with(&new), "pics", "a").await, Err("InvalidAccessKeyId".into()));
    admin(h.addr, Method::POST, "keys/enable", &[("id", &id)], None).await;
    assert_eq!(get(&with(&new), "pics", "a").await, Ok(()));

    // Expiry and source networks.
    let v = admin(h.addr, Method::POST, "keys", &[], Some(json!({ "name": "brief", "expires_in": "2s" }))).await;
    let (brief, brief_secret) = (v["key"]["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned());
    admin(h.addr, Method::POST, "grants", &[("key", &brief), ("bucket", "*"), ("rights", "read")], None).await;
    let b = h.client_with(&brief, &brief_secret, "us-east-1");
    assert_eq!(get(&b, "pics", "a").await, Ok(()));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(get(&b, "pics", "a").await, Err("InvalidAccessKeyId".into()), "expired");
    for (net, ok) in [("10.0.0.0/8", false), ("127.0.0.1", true)] {
        let v = admin(h.addr, Method::POST, "keys", &[], Some(json!({ "name": "net", "sources": [net] }))).await;
        let (nid, nsecret) = (v["key"]["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned());
        admin(h.addr, Method::POST, "grants", &[("key", &nid), ("bucket", "pics"), ("rights", "read")], None).await;
        assert_eq!(get(&h.client_with(&nid, &nsecret, "us-east-1"), "pics", "a").await.is_ok(), ok, "{net}");
    }

    // An admin key that is not the config's: its changes name it in the audit trail.
    let (boss, boss_secret) = make_key(h.addr, "boss", &[("*", "", "admin")]).await;
    let (s, v) =
        admin_as(h.addr, (&boss, &boss_secret), Method::POST, "keys", &[], Some(json!({ "name": "made by boss" })))
            .await;
    assert_eq!(s, 201, "{v}");
    let made = v["key"]["id"].as_str().unwrap().to_owned();
    let (s, _) = admin_as(h.addr, (&boss, &boss_secret), Method::DELETE, "keys", &[("id", &made)], None).await;
    assert_eq!(s, 200);
    let (s, _) =
        admin_as(h.addr, (&boss, &boss_secret), Method::POST, "keys/disable", &[("id", ACCESS_KEY)], None).await;
    assert_eq!(s, 409, "the config's key is changed in the config");
    admin(h.addr, Method::DELETE, "keys", &[("id", &id)], None).await;
    assert_eq!(get(&with(&new), "pics", "a").await, Err("InvalidAccessKeyId".into()), "deleted");
    let trail = admin(h.addr, Method::GET, "keys/audit", &[("limit", "100")], None).await;
    let of = |subject: &str| -> Vec<(String, String)> {
        let mut v: Vec<_> = trail["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["subject"] == subject)
            .map(|c| (c["action"].as_str().unwrap().to_owned(), c["actor"].as_str().unwrap().to_owned()))
            .collect();
        v.reverse();
        v
    };
    let root = ACCESS_KEY.to_owned();
    let steps = ["key.create", "grant.add", "key.rotate", "key.disable", "key.enable", "key.delete"];
    assert_eq!(of(&id), steps.map(|s| (s.to_owned(), root.clone())));
    assert_eq!(of(&made), [("key.create".to_owned(), boss.clone()), ("key.delete".to_owned(), boss.clone())]);
    assert!(!trail.to_string().contains(&new), "no secret in the trail");

    // The catalog holds no secret in the clear.
    let mut catalog = std::fs::read(h.cfg.data_dir().join("catalog.db")).unwrap();
    catalog.extend(std::fs::read(h.cfg.data_dir().join("catalog.db-wal")).unwrap_or_default());
    assert!(catalog.windows(id.len()).any(|w| w == id.as_bytes()), "the file is the one the keys are in");
    for s in [&new, &old, &brief_secret, &boss_secret] {
        assert!(!catalog.windows(s.len()).any(|w| w == s.as_bytes()), "a secret in the catalog file");
    }

    // A node with another seal key is refused at start, naming the setting.
    let mut cfg = h.cfg.clone();
    h.running.take().unwrap().stop().await.unwrap();
    use base64::Engine;
    cfg.auth.seal_key = Some(base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
    let opened = strata::server::open(&cfg).await.unwrap();
    let err = strata::server::start_with(&cfg, opened).await.err().expect("another seal key is refused");
    assert!(err.to_string().contains("auth.seal_key"), "{err}");
}
