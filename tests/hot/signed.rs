//! Issue 22: ready answers for signed GETs (`src/api/s3/ready.rs`). A GetObject of a small
//! object that the memory tier holds, signed in its header (the SDK) or in a presigned URL
//! (SigV4 or SigV2), is answered without s3s; the answer must be the full path's, header for header, and a
//! request the full path would refuse must still be refused.

use super::body;
use crate::harness::{Cold, Harness, code};
use crate::keys::{admin, make_key};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use std::time::Duration;

/// The headers of an answer that do not change between two answers of one version.
fn head_of(r: &reqwest::Response) -> Vec<(String, String)> {
    crate::harness::stable_headers(r, &["date", "x-amz-request-id"])
}

async fn presigned(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
    let cfg = PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
    c.get_object().bucket(bucket).key(key).presigned(cfg).await.unwrap().uri().to_owned()
}

/// A SigV2-presigned GET of `path` (as sent), valid for five minutes, signed with `secret`.
fn sigv2_url(h: &Harness, path: &str, secret: &str) -> String {
    use base64::Engine;
    let expires = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 300;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("GET\n\n\n{expires}\n{path}").as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    let sig = sig.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
    let id = crate::harness::ACCESS_KEY;
    format!("http://{}{path}?AWSAccessKeyId={id}&Expires={expires}&Signature={sig}", h.addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_hit_answers_as_the_full_path_and_checks_every_signature() {
    let h = Harness::start(Cold::Fs).await;
    let whole = |h: &Harness| h.hot_stats().whole_hits;
    h.bucket("pics").await;
    let photo = body(20_000, 3);
    let put = h.client.put_object().bucket("pics").key("a b/é.jpg").content_type("image/jpeg").metadata("who", "me");
    put.body(ByteStream::from(photo.clone())).send().await.unwrap();
    let url = presigned(&h.client, "pics", "a b/é.jpg").await;
    let http = reqwest::Client::new();

    // The miss, then a hit from the hot file that brings the chunk into memory: both the
    // full path's. From then on, SDK GETs and presigned GETs are ready answers.
    let miss = http.get(&url).send().await.unwrap();
    assert_eq!(miss.status(), 200);
    let full_head = head_of(&miss);
    assert_eq!(miss.bytes().await.unwrap().as_ref(), &photo[..]);
    assert_eq!(h.get("pics", "a b/é.jpg").await, photo);
    let before = whole(&h);
    for _ in 0..3 {
        let r = h.client.get_object().bucket("pics").key("a b/é.jpg").send().await.unwrap();
        assert_eq!((r.content_type(), r.metadata().unwrap()["who"].as_str()), (Some("image/jpeg"), "me"));
        assert_eq!(r.body.collect().await.unwrap().into_bytes().as_ref(), &photo[..]);
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(head_of(&r), full_head, "a ready answer has the full path's headers");
        assert_eq!(r.bytes().await.unwrap().as_ref(), &photo[..]);
    }
    // SigV2-presigned (aws cli v1's and boto3's default), as ready.
    let v2 = sigv2_url(&h, "/pics/a%20b/%C3%A9.jpg", crate::harness::SECRET_KEY);
    for _ in 0..2 {
        let r = http.get(&v2).send().await.unwrap();
        assert_eq!(head_of(&r), full_head);
        assert_eq!(r.bytes().await.unwrap().as_ref(), &photo[..]);
    }
    assert_eq!(whole(&h) - before, 8, "the eight hits were ready answers");
    let before = whole(&h);
    let forged = sigv2_url(&h, "/pics/a%20b/%C3%A9.jpg", "not the secret");
    assert_eq!(http.get(&forged).send().await.unwrap().status(), 403);
    let later = v2.replace("Expires=", "Expires=1");
    assert_eq!(http.get(&later).send().await.unwrap().status(), 403, "a SigV2 expiry is signed");
    assert_eq!(whole(&h), before, "no refused request was answered ready");

    // Ranges and conditionals take the full path and read no bytes from memory.
    let before = whole(&h);
    let r = h.client.get_object().bucket("pics").key("a b/é.jpg").range("bytes=5-9").send().await.unwrap();
    assert_eq!(r.body.collect().await.unwrap().into_bytes().as_ref(), &photo[5..10]);
    let etag = full_head.iter().find(|(n, _)| n == "etag").unwrap().1.clone();
    let r = h.client.get_object().bucket("pics").key("a b/é.jpg").if_none_match(&etag).send().await;
    assert_eq!(crate::harness::status(r), 304);
    assert_eq!(whole(&h), before);

    // Signatures that do not hold are refused as before, by the full path.
    let tampered = url.replace("X-Amz-Expires=300", "X-Amz-Expires=3000");
    assert_eq!(http.get(&tampered).send().await.unwrap().status(), 403);
    let wrong = h.client_with(crate::harness::ACCESS_KEY, "not the secret", "us-east-1");
    assert_eq!(code(wrong.get_object().bucket("pics").key("a b/é.jpg").send().await), "SignatureDoesNotMatch");
    let elsewhere = h.client_with(crate::harness::ACCESS_KEY, crate::harness::SECRET_KEY, "eu-west-1");
    assert_eq!(
        code(elsewhere.get_object().bucket("pics").key("a b/é.jpg").send().await),
        "AuthorizationHeaderMalformed"
    );
    assert_eq!(whole(&h), before, "no refused request was answered ready");

    // A key's grants and state are checked on every request.
    let (other, secret) = make_key(h.addr, "thumbs", &[("pics", "thumbs/", "read")]).await;
    let c = h.client_with(&other, &secret, "us-east-1");
    assert_eq!(code(c.get_object().bucket("pics").key("a b/é.jpg").send().await), "AccessDenied");
    let (reader, secret) = make_key(h.addr, "reader", &[("pics", "", "read")]).await;
    let c = h.client_with(&reader, &secret, "us-east-1");
    for _ in 0..2 {
        c.get_object().bucket("pics").key("a b/é.jpg").send().await.unwrap();
    }
    assert_eq!(whole(&h) - before, 2, "another key's hits are ready answers too");
    admin(h.addr, reqwest::Method::POST, "keys/disable", &[("id", &reader)], None).await;
    assert_eq!(code(c.get_object().bucket("pics").key("a b/é.jpg").send().await), "InvalidAccessKeyId");

    // An overwrite is served at once, with its own headers; a delete is a 404 at once.
    let newer = body(20_000, 9);
    let put = h.client.put_object().bucket("pics").key("a b/é.jpg").content_type("image/webp");
    put.body(ByteStream::from(newer.clone())).send().await.unwrap();
    for _ in 0..3 {
        let r = http.get(&url).send().await.unwrap();
        assert_ne!(r.headers()["etag"].to_str().unwrap(), etag, "no stale validator");
        assert_eq!(r.headers()["content-type"], "image/webp", "no stale header");
        assert_eq!(r.bytes().await.unwrap().as_ref(), &newer[..], "no stale bytes");
    }
    h.client.delete_object().bucket("pics").key("a b/é.jpg").send().await.unwrap();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 404, "a deleted object is gone at once");
}
