//! The integration suite: strata started on port 0, driven with aws-sdk-s3.
//!
//! Every test runs twice: over the local-disk backend and over Garage, a real S3 server
//! (`scripts/test` starts it and exports `STRATA_TEST_GARAGE_*`).

/// Runs each named test twice: over the local-disk store and over Garage. Defined before
/// the modules so that `compat` uses it too.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod on_fs { $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::Harness::start(super::Cold::Fs).await).await })* }
        mod on_garage { $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::Harness::start(super::Cold::Garage).await).await })* }
    };
}

mod cluster;
mod compat;
mod harness;
mod hot;
mod images;
mod journal;
mod keys;
mod layers;
mod limits;
mod reload;
mod status;
mod tls;
mod transfer;
mod web;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, MetadataDirective, ObjectIdentifier};
use harness::{Cold, Harness, code, status};

both!(
    buckets,
    put_get_head_metadata,
    range_and_conditionals,
    listings,
    delete_and_copy,
    multipart,
    bad_keys_and_auth,
    presigned_urls,
    concurrent_writers_never_mix,
    failed_upload_leaves_previous_version,
    import_indexes_foreign_objects,
);

async fn buckets(h: Harness) {
    let c = &h.client;
    c.create_bucket().bucket("alpha").send().await.unwrap();
    assert_eq!(code(c.create_bucket().bucket("alpha").send().await), "BucketAlreadyOwnedByYou");
    assert_eq!(code(c.create_bucket().bucket("Bad_Name").send().await), "InvalidBucketName");
    c.head_bucket().bucket("alpha").send().await.unwrap();
    assert_eq!(status(c.head_bucket().bucket("nope").send().await), 404);
    let names: Vec<_> =
        c.list_buckets().send().await.unwrap().buckets().iter().filter_map(|b| b.name.clone()).collect();
    assert_eq!(names, ["alpha"]);
    h.put("alpha", "k", b"x").await;
    assert_eq!(code(c.delete_bucket().bucket("alpha").send().await), "BucketNotEmpty");
    c.delete_object().bucket("alpha").key("k").send().await.unwrap();
    c.delete_bucket().bucket("alpha").send().await.unwrap();
    assert_eq!(code(c.delete_bucket().bucket("alpha").send().await), "NoSuchBucket");
}

async fn put_get_head_metadata(h: Harness) {
    let c = &h.client;
    h.bucket("media").await;
    let body = vec![7u8; 100_000];
    let put = c
        .put_object()
        .bucket("media")
        .key("dir/photo.jpg")
        .body(ByteStream::from(body.clone()))
        .content_type("image/jpeg")
        .cache_control("public, max-age=3600")
        .content_disposition("inline")
        .metadata("owner", "ann")
        .send()
        .await
        .unwrap();
    let want_etag = harness::quoted_md5(&body);
    assert_eq!(put.e_tag(), Some(want_etag.as_str()));
    let got = c.get_object().bucket("media").key("dir/photo.jpg").send().await.unwrap();
    assert_eq!(got.content_type(), Some("image/jpeg"));
    assert_eq!(got.cache_control(), Some("public, max-age=3600"));
    assert_eq!(got.content_disposition(), Some("inline"));
    assert_eq!(got.metadata().unwrap().get("owner").map(String::as_str), Some("ann"));
    assert_eq!(got.e_tag(), Some(want_etag.as_str()));
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), &body[..]);
    let head = c.head_object().bucket("media").key("dir/photo.jpg").send().await.unwrap();
    assert_eq!(head.content_length(), Some(100_000));
    assert_eq!(status(c.head_object().bucket("media").key("missing").send().await), 404);
    assert_eq!(code(c.get_object().bucket("media").key("missing").send().await), "NoSuchKey");
    assert_eq!(code(c.get_object().bucket("nobucket").key("k").send().await), "NoSuchBucket");
    // An empty object round-trips too.
    h.put("media", "empty", b"").await;
    assert_eq!(h.get("media", "empty").await, b"");
    // The bytes are in the cold store, natively, under the key.
    assert_eq!(h.cold_read("media", "dir/photo.jpg").await, body);
}

async fn range_and_conditionals(h: Harness) {
    let c = &h.client;
    h.bucket("rng").await;
    let etag = h.put("rng", "k", b"0123456789").await;
    let part = c.get_object().bucket("rng").key("k").range("bytes=2-5").send().await.unwrap();
    assert_eq!(part.content_range(), Some("bytes 2-5/10"));
    assert_eq!(part.body.collect().await.unwrap().into_bytes().as_ref(), b"2345");
    let tail = c.get_object().bucket("rng").key("k").range("bytes=-3").send().await.unwrap();
    assert_eq!(tail.body.collect().await.unwrap().into_bytes().as_ref(), b"789");
    assert_eq!(status(c.get_object().bucket("rng").key("k").range("bytes=20-30").send().await), 416);
    assert_eq!(status(c.get_object().bucket("rng").key("k").if_none_match(&etag).send().await), 304);
    assert_eq!(status(c.get_object().bucket("rng").key("k").if_match("\"nope\"").send().await), 412);
    c.get_object().bucket("rng").key("k").if_match(&etag).send().await.unwrap();
    let future = aws_smithy_types::DateTime::from_secs(4_000_000_000);
    let past = aws_smithy_types::DateTime::from_secs(1_000_000_000);
    assert_eq!(status(c.get_object().bucket("rng").key("k").if_modified_since(future).send().await), 304);
    c.get_object().bucket("rng").key("k").if_modified_since(past).send().await.unwrap();
    assert_eq!(status(c.get_object().bucket("rng").key("k").if_unmodified_since(past).send().await), 412);
    assert_eq!(status(c.head_object().bucket("rng").key("k").if_none_match(&etag).send().await), 304);
}

async fn listings(h: Harness) {
    let c = &h.client;
    h.bucket("lst").await;
    for k in ["a/1", "a/2", "a/b/3", "b", "c d/1", "e"] {
        h.put("lst", k, k.as_bytes()).await;
    }
    let v2 = c.list_objects_v2().bucket("lst").delimiter("/").send().await.unwrap();
    let keys: Vec<_> = v2.contents().iter().filter_map(|o| o.key.clone()).collect();
    let cps: Vec<_> = v2.common_prefixes().iter().filter_map(|p| p.prefix.clone()).collect();
    assert_eq!((keys, cps), (vec!["b".to_owned(), "e".to_owned()], vec!["a/".to_owned(), "c d/".to_owned()]));
    // Paging with max-keys and continuation tokens visits every key once, in order.
    let (mut seen, mut token) = (Vec::new(), None);
    loop {
        let page = c.list_objects_v2().bucket("lst").max_keys(2).set_continuation_token(token).send().await.unwrap();
        seen.extend(page.contents().iter().filter_map(|o| o.key.clone()));
        if !page.is_truncated().unwrap_or(false) {
            break;
        }
        token = page.next_continuation_token().map(str::to_owned);
    }
    assert_eq!(seen, ["a/1", "a/2", "a/b/3", "b", "c d/1", "e"]);
    let after = c.list_objects_v2().bucket("lst").start_after("b").send().await.unwrap();
    assert_eq!(after.contents().iter().filter_map(|o| o.key.as_deref()).collect::<Vec<_>>(), ["c d/1", "e"]);
    let pre = c.list_objects_v2().bucket("lst").prefix("a/").delimiter("/").send().await.unwrap();
    assert_eq!(pre.contents().len(), 2);
    assert_eq!(pre.common_prefixes()[0].prefix(), Some("a/b/"));
    let v1 = c.list_objects().bucket("lst").marker("a/2").max_keys(2).send().await.unwrap();
    assert_eq!(v1.contents().iter().filter_map(|o| o.key.as_deref()).collect::<Vec<_>>(), ["a/b/3", "b"]);
    assert!(v1.is_truncated().unwrap());
    let enc = c.list_objects_v2().bucket("lst").prefix("c").encoding_type("url".into()).send().await.unwrap();
    assert_eq!(enc.contents()[0].key(), Some("c%20d/1"));
    assert_eq!(code(c.list_objects_v2().bucket("nope").send().await), "NoSuchBucket");
}

async fn delete_and_copy(h: Harness) {
    let c = &h.client;
    h.bucket("del").await;
    h.bucket("del2").await;
    for k in ["x", "y", "z"] {
        h.put("del", k, k.as_bytes()).await;
    }
    let ids = ["x", "y", "never"].map(|k| ObjectIdentifier::builder().key(k).build().unwrap());
    let del = Delete::builder().set_objects(Some(ids.to_vec())).build().unwrap();
    let out = c.delete_objects().bucket("del").delete(del).send().await.unwrap();
    assert_eq!(out.deleted().len(), 3);
    assert_eq!(h.keys("del").await, ["z"]);
    c.delete_object().bucket("del").key("never").send().await.unwrap();
    assert!(h.cold_read_opt("del", "x").await.is_none(), "deleted bytes are gone from the store");
    // COPY keeps metadata; REPLACE swaps it.
    c.put_object()
        .bucket("del")
        .key("src")
        .body(ByteStream::from_static(b"payload"))
        .content_type("text/plain")
        .metadata("a", "1")
        .send()
        .await
        .unwrap();
    c.copy_object().bucket("del2").key("dst").copy_source("del/src").send().await.unwrap();
    let got = c.head_object().bucket("del2").key("dst").send().await.unwrap();
    assert_eq!(
        (got.content_type(), got.metadata().unwrap().get("a").map(String::as_str)),
        (Some("text/plain"), Some("1"))
    );
    c.copy_object()
        .bucket("del")
        .key("src")
        .copy_source("del/src")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("application/x-new")
        .metadata("b", "2")
        .send()
        .await
        .unwrap();
    let got = c.head_object().bucket("del").key("src").send().await.unwrap();
    assert_eq!(got.content_type(), Some("application/x-new"));
    assert!(got.metadata().unwrap().get("a").is_none());
    assert_eq!(h.get("del", "src").await, b"payload");
    assert_eq!(code(c.copy_object().bucket("del").key("src").copy_source("del/src").send().await), "InvalidRequest");
    assert_eq!(code(c.copy_object().bucket("del").key("n").copy_source("del/missing").send().await), "NoSuchKey");
}

async fn multipart(h: Harness) {
    let c = &h.client;
    h.bucket("mpu").await;
    let up = c.create_multipart_upload().bucket("mpu").key("big").content_type("video/mp4").send().await.unwrap();
    let id = up.upload_id().unwrap().to_owned();
    let p1 = vec![1u8; 5 << 20];
    let p2 = b"tail".to_vec();
    let mut parts = Vec::new();
    for (n, data) in [(1, &p1), (2, &p2)] {
        let r = c
            .upload_part()
            .bucket("mpu")
            .key("big")
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        parts.push(CompletedPart::builder().part_number(n).e_tag(r.e_tag().unwrap()).build());
    }
    let listed = c.list_parts().bucket("mpu").key("big").upload_id(&id).send().await.unwrap();
    assert_eq!(listed.parts().iter().map(|p| p.size().unwrap()).collect::<Vec<_>>(), [5 << 20, 4]);
    let ups = c.list_multipart_uploads().bucket("mpu").send().await.unwrap();
    assert_eq!(ups.uploads()[0].upload_id(), Some(id.as_str()));
    assert!(c.head_object().bucket("mpu").key("big").send().await.is_err(), "not visible before completion");
    let bad = CompletedMultipartUpload::builder()
        .parts(CompletedPart::builder().part_number(1).e_tag("\"wrong\"").build())
        .build();
    assert_eq!(
        code(c.complete_multipart_upload().bucket("mpu").key("big").upload_id(&id).multipart_upload(bad).send().await),
        "InvalidPart"
    );
    let done = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
    let out = c
        .complete_multipart_upload()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .multipart_upload(done)
        .send()
        .await
        .unwrap();
    assert!(out.e_tag().unwrap().ends_with("-2\""), "{:?}", out.e_tag());
    let mut want = p1.clone();
    want.extend_from_slice(&p2);
    assert_eq!(h.get("mpu", "big").await, want);
    assert_eq!(c.head_object().bucket("mpu").key("big").send().await.unwrap().content_type(), Some("video/mp4"));
    assert_eq!(h.cold_read("mpu", "big").await.len(), want.len(), "one object in the store");
    // Too-small non-final parts, and aborts.
    let id2 =
        c.create_multipart_upload().bucket("mpu").key("small").send().await.unwrap().upload_id().unwrap().to_owned();
    let mut parts = Vec::new();
    for n in 1..=2 {
        let r = c
            .upload_part()
            .bucket("mpu")
            .key("small")
            .upload_id(&id2)
            .part_number(n)
            .body(ByteStream::from_static(b"tiny"))
            .send()
            .await
            .unwrap();
        parts.push(CompletedPart::builder().part_number(n).e_tag(r.e_tag().unwrap()).build());
    }
    let small = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
    assert_eq!(
        code(
            c.complete_multipart_upload()
                .bucket("mpu")
                .key("small")
                .upload_id(&id2)
                .multipart_upload(small)
                .send()
                .await
        ),
        "EntityTooSmall"
    );
    c.abort_multipart_upload().bucket("mpu").key("small").upload_id(&id2).send().await.unwrap();
    assert_eq!(
        code(c.abort_multipart_upload().bucket("mpu").key("small").upload_id(&id2).send().await),
        "NoSuchUpload"
    );
    assert_eq!(code(c.list_parts().bucket("mpu").key("small").upload_id(&id2).send().await), "NoSuchUpload");
    assert!(c.list_multipart_uploads().bucket("mpu").send().await.unwrap().uploads().is_empty());
    assert!(c.head_object().bucket("mpu").key("small").send().await.is_err());
}

async fn bad_keys_and_auth(h: Harness) {
    let c = &h.client;
    h.bucket("sec").await;
    let long = "k".repeat(1025);
    assert_eq!(
        code(c.put_object().bucket("sec").key(&long).body(ByteStream::from_static(b"x")).send().await),
        "KeyTooLongError"
    );
    // S3 takes these keys; each is stored under its own name, inside the store (issue 14).
    let odd = ["../escape", "a/../../escape", "a//b", "x/./y"];
    for k in odd {
        let r = c.put_object().bucket("sec").key(k).body(ByteStream::from(k.as_bytes().to_vec())).send().await;
        r.unwrap_or_else(|e| panic!("{k}: {e:?}"));
    }
    for k in odd {
        assert_eq!(h.get("sec", k).await, k.as_bytes(), "{k}");
    }
    let mut keys = h.keys("sec").await;
    keys.sort();
    let mut want: Vec<String> = odd.iter().map(|k| k.to_string()).collect();
    want.sort();
    assert_eq!(keys, want);
    h.drained().await;
    h.assert_nothing_outside_store();
    let wrong_secret = h.client_with("STRATAACCESSKEY", "not-the-secret", "us-east-1");
    assert_eq!(code(wrong_secret.list_buckets().send().await), "SignatureDoesNotMatch");
    let unknown = h.client_with("NOBODY", "not-the-secret", "us-east-1");
    assert_eq!(code(unknown.list_buckets().send().await), "InvalidAccessKeyId", "as S3 answers (issue 14)");
    let wrong_region = h.client_with("STRATAACCESSKEY", "strata-secret-key", "eu-west-3");
    assert_eq!(code(wrong_region.list_buckets().send().await), "AuthorizationHeaderMalformed");
    let anon = reqwest::get(format!("http://{}/sec/k", h.addr)).await.unwrap();
    assert_eq!(anon.status().as_u16(), 403);
    let resp =
        reqwest::Client::new().put(format!("http://{}/sec?delete", h.addr)).body("<not xml").send().await.unwrap();
    assert!(resp.status().is_client_error());
    assert!(resp.headers().contains_key("x-amz-request-id"));
}

async fn presigned_urls(h: Harness) {
    use aws_sdk_s3::presigning::PresigningConfig;
    h.bucket("pre").await;
    h.put("pre", "doc.txt", b"signed bytes").await;
    let cfg = PresigningConfig::expires_in(std::time::Duration::from_secs(300)).unwrap();
    let req = h.client.get_object().bucket("pre").key("doc.txt").presigned(cfg.clone()).await.unwrap();
    let got = reqwest::get(req.uri()).await.unwrap();
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"signed bytes");
    let tampered = req.uri().replace("doc.txt", "other.txt");
    assert_eq!(reqwest::get(tampered).await.unwrap().status().as_u16(), 403);
    let put = h.client.put_object().bucket("pre").key("up.txt").presigned(cfg).await.unwrap();
    let r = reqwest::Client::new().put(put.uri()).body("via presigned put").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(h.get("pre", "up.txt").await, b"via presigned put");
}

async fn concurrent_writers_never_mix(h: Harness) {
    h.bucket("ccw").await;
    h.put("ccw", "k", &vec![0u8; 300_000]).await;
    let mut tasks = Vec::new();
    for w in 1..=6u8 {
        let c = h.client.clone();
        tasks.push(tokio::spawn(async move {
            c.put_object().bucket("ccw").key("k").body(ByteStream::from(vec![w; 300_000])).send().await.unwrap();
        }));
    }
    for _ in 0..6 {
        let c = h.client.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let got = c.get_object().bucket("ccw").key("k").send().await.unwrap();
                let etag = got.e_tag().unwrap().to_owned();
                let body = got.body.collect().await.unwrap().into_bytes();
                assert_eq!(body.len(), 300_000);
                assert!(body.iter().all(|b| *b == body[0]), "a read mixed two writes");
                assert_eq!(etag, harness::quoted_md5(&body), "headers and bytes disagree");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let last = h.get("ccw", "k").await;
    // Writers that met a queued entry for the key were journaled behind it.
    h.drained().await;
    let cold = h.cold_read("ccw", "k").await;
    assert!(cold == last, "store and catalog agree on the winner: cold {:?}, catalog {:?}", &cold[..4], &last[..4]);
    let head = h.client.head_object().bucket("ccw").key("k").send().await.unwrap();
    assert_eq!(head.e_tag().unwrap(), harness::quoted_md5(&last));
}

async fn failed_upload_leaves_previous_version(h: Harness) {
    h.bucket("fail").await;
    h.put("fail", "k", b"version one").await;
    // A Content-MD5 that matches neither body.
    let put_bad_md5 = async |key: &str, body: &'static [u8]| {
        let r = h.client.put_object().bucket("fail").key(key).body(ByteStream::from_static(body));
        code(r.content_md5("AAAAAAAAAAAAAAAAAAAAAA==").send().await)
    };
    assert_eq!(put_bad_md5("k", b"version two").await, "BadDigest");
    assert_eq!(h.get("fail", "k").await, b"version one");
    assert_eq!(h.cold_read("fail", "k").await, b"version one");
    assert_eq!(put_bad_md5("new", b"x").await, "BadDigest");
    assert_eq!(h.keys("fail").await, ["k"]);
    assert!(h.cold_read_opt("fail", "new").await.is_none(), "no partial object in the store");
}

async fn import_indexes_foreign_objects(h: Harness) {
    h.bucket("imp").await;
    h.put("imp", "via-strata", b"1").await;
    h.cold_write("imp", "foreign/a.txt", b"written behind strata's back").await;
    h.cold_write("imp", "foreign/b.txt", b"b").await;
    let tier = h.running.as_ref().unwrap().tier().clone();
    let first = tier.import("imp", |_| {}).await.unwrap();
    assert_eq!((first.added, first.unchanged), (2, 1));
    let again = tier.import("imp", |_| {}).await.unwrap();
    assert_eq!((again.added, again.unchanged), (0, 3), "idempotent");
    assert_eq!(h.keys("imp").await, ["foreign/a.txt", "foreign/b.txt", "via-strata"]);
    assert_eq!(h.get("imp", "foreign/a.txt").await, b"written behind strata's back");
    let head = h.client.head_object().bucket("imp").key("foreign/a.txt").send().await.unwrap();
    assert_eq!(head.e_tag().unwrap(), harness::quoted_md5(b"written behind strata's back"));
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    harness::sigterm_exits_cleanly().await;
}
