//! S3 as clients use it (issue 14): every key S3 takes is stored and listed, conditional
//! writes, folders, and the error details clients read. Regression tests for that issue.

use crate::harness::{Cold, Harness, Opts, code, status};
use async_trait::async_trait;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use std::sync::Arc;
use std::time::Duration;
use strata::backend::{Backend, Layer, ObjectWriter, WriteOptions};
use strata::error::{Error, ErrorKind, Result};

both!(
    every_key_is_stored_and_listed,
    conditional_writes,
    error_details,
    upload_part_copy_across_buckets,
    versions_of_an_unversioned_bucket,
    listing_details,
    parts_and_checksums,
    ranges_s3_ignores,
);

/// Keys that clash as paths, whitespace at both ends, a segment over 255 bytes, folders: all
/// acknowledged, all in the store, all listed, and the bucket deletes cleanly after.
async fn every_key_is_stored_and_listed(h: Harness) {
    let c = &h.client;
    h.bucket("keys").await;
    let long = "s".repeat(300);
    let keys = [
        "a/b".to_owned(),
        "a/b/c".to_owned(),
        // (The SDK will not send a key of one space; " a/ " is as hard for a store: a
        // segment that starts and one that ends with whitespace.)
        " a/ ".to_owned(),
        format!("long/{long}"),
        format!("long/{long}/x"),
        "photos/".to_owned(),
        "photos/cat.jpg".to_owned(),
        "photos/empty/".to_owned(),
        "//".to_owned(),
    ];
    for k in &keys {
        let body = ByteStream::from(k.clone().into_bytes());
        c.put_object().bucket("keys").key(k).body(body).send().await.unwrap_or_else(|e| panic!("{k:?}: {e:?}"));
    }
    h.drained().await;
    for k in &keys {
        assert_eq!(h.get("keys", k).await, k.as_bytes(), "{k:?}");
    }
    let mut listed = h.keys("keys").await;
    listed.sort();
    let mut want = keys.to_vec();
    want.sort();
    assert_eq!(listed, want);
    // Folders list as S3 lists them: a common prefix, and the marker inside it.
    let top = c.list_objects_v2().bucket("keys").delimiter("/").send().await.unwrap();
    let prefixes: Vec<_> = top.common_prefixes().iter().filter_map(|p| p.prefix.clone()).collect();
    assert_eq!(prefixes, [" a/", "/", "a/", "long/", "photos/"], "in byte order");
    let inside = c.list_objects_v2().bucket("keys").prefix("photos/").delimiter("/").send().await.unwrap();
    let names: Vec<_> = inside.contents().iter().filter_map(|o| o.key.clone()).collect();
    assert_eq!(names, ["photos/", "photos/cat.jpg"]);
    let sub: Vec<_> = inside.common_prefixes().iter().filter_map(|p| p.prefix.clone()).collect();
    assert_eq!(sub, ["photos/empty/"]);
    // Ordinary keys stay readable in the store without strata.
    assert_eq!(h.cold_read("keys", "photos/cat.jpg").await, b"photos/cat.jpg");
    // Nothing is left waiting or stuck, and /ready says so.
    let ready: serde_json::Value =
        reqwest::get(format!("http://{}/ready", h.addr)).await.unwrap().json().await.unwrap();
    assert_eq!(ready["stuck_entries"], serde_json::json!({}), "{ready}");
    for k in &keys {
        c.delete_object().bucket("keys").key(k).send().await.unwrap();
    }
    c.delete_bucket().bucket("keys").send().await.expect("the bucket is empty, so it deletes");
    h.drained().await;
    if let Some(root) = h.fs_root() {
        let left: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(left.iter().all(|n| n == ".strata-tmp"), "a deleted bucket leaves no directories: {left:?}");
    }
}

/// If-None-Match: * and If-Match on PutObject, CopyObject and CompleteMultipartUpload,
/// and racing creators: exactly one wins.
async fn conditional_writes(h: Harness) {
    let c = &h.client;
    h.bucket("cond").await;
    let put = |k: &str, body: &'static [u8]| c.put_object().bucket("cond").key(k).body(ByteStream::from_static(body));
    let first = put("lock", b"one").if_none_match("*").send().await.expect("creates a new key");
    assert_eq!(code(put("lock", b"two").if_none_match("*").send().await), "PreconditionFailed");
    assert_eq!(h.get("cond", "lock").await, b"one", "the refused write changed nothing");
    assert_eq!(code(put("lock", b"two").if_match("\"0123\"").send().await), "PreconditionFailed");
    let etag = first.e_tag().unwrap();
    put("lock", b"three").if_match(etag).send().await.expect("the right ETag replaces");
    assert_eq!(h.get("cond", "lock").await, b"three");
    assert_eq!(code(put("nothing", b"x").if_match(etag).send().await), "NoSuchKey");
    let copy = c.copy_object().bucket("cond").key("lock").copy_source("cond/nothing");
    assert_eq!(status(copy.send().await), 404);
    put("src", b"source").send().await.unwrap();
    let copy = c.copy_object().bucket("cond").key("lock").copy_source("cond/src").if_none_match("*");
    assert_eq!(code(copy.send().await), "PreconditionFailed");
    let copy = c.copy_object().bucket("cond").key("fresh").copy_source("cond/src").if_none_match("*");
    copy.send().await.expect("a copy to a new key");
    let up = c.create_multipart_upload().bucket("cond").key("lock").send().await.unwrap();
    let id = up.upload_id().unwrap();
    let part = c.upload_part().bucket("cond").key("lock").upload_id(id).part_number(1);
    let part = part.body(ByteStream::from_static(b"part")).send().await.unwrap();
    let done = CompletedMultipartUpload::builder()
        .parts(CompletedPart::builder().part_number(1).e_tag(part.e_tag().unwrap()).build())
        .build();
    let complete = c.complete_multipart_upload().bucket("cond").key("lock").upload_id(id);
    let r = complete.clone().multipart_upload(done.clone()).if_none_match("*").send().await;
    assert_eq!(code(r), "PreconditionFailed");
    complete.multipart_upload(done).send().await.expect("the upload is still there to complete");
    // Racing creators of one key: the check is atomic with the write.
    let mut tasks = Vec::new();
    for i in 0..10u8 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let body = ByteStream::from(vec![i; 1000]);
            c.put_object().bucket("cond").key("race").body(body).if_none_match("*").send().await.is_ok()
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1, "exactly one creator wins");
}

/// Error XML carries the request id, a 304 its ETag, presigned URLs are capped at seven
/// days, and S3's bucket naming rules hold.
async fn error_details(h: Harness) {
    let c = &h.client;
    h.bucket("det").await;
    let etag = h.put("det", "k", b"body").await;
    // <RequestId> in the XML, equal to the header.
    let r = reqwest::get(format!("http://{}/det?list-type=2", h.addr)).await.unwrap();
    let id = r.headers()["x-amz-request-id"].to_str().unwrap().to_owned();
    let body = r.text().await.unwrap();
    assert!(body.contains(&format!("<RequestId>{id}</RequestId>")), "{body}");
    // A 304 names the version it is about.
    let e = c.get_object().bucket("det").key("k").if_none_match(&etag).send().await.unwrap_err();
    let SdkError::ServiceError(se) = &e else { panic!("{e:?}") };
    assert_eq!(se.raw().status().as_u16(), 304);
    assert_eq!(se.raw().headers().get("etag"), Some(etag.as_str()));
    let e = c.head_object().bucket("det").key("k").if_none_match(&etag).send().await.unwrap_err();
    let SdkError::ServiceError(se) = &e else { panic!("{e:?}") };
    assert_eq!(se.raw().headers().get("etag"), Some(etag.as_str()));
    // X-Amz-Expires over 604800 seconds is refused before the signature is looked at.
    let cfg = aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
    let url = c.get_object().bucket("det").key("k").presigned(cfg).await.unwrap().uri().to_owned();
    let long = url.replace("X-Amz-Expires=300", "X-Amz-Expires=999999999");
    let r = reqwest::get(&long).await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("AuthorizationQueryParametersError"));
    // Bucket names S3 refuses.
    for bad in ["foo.-bar", "foo-.bar", "xn--abc"] {
        assert_eq!(code(c.create_bucket().bucket(bad).send().await), "InvalidBucketName", "{bad}");
    }
    // aws-chunked is how the body travelled, not how the object is encoded.
    let file = h.dir.path().join("gz");
    std::fs::write(&file, vec![7u8; 70_000]).unwrap();
    let put = c.put_object().bucket("det").key("gz").content_encoding("gzip");
    let put = put.checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32);
    put.body(ByteStream::from_path(&file).await.unwrap()).send().await.unwrap();
    let head = c.head_object().bucket("det").key("gz").send().await.unwrap();
    assert_eq!(head.content_encoding(), Some("gzip"));
}

/// A store that refuses one name for good, as a disk refuses a name it cannot hold.
struct Refuses {
    inner: Arc<dyn Backend>,
}

#[async_trait]
impl Layer for Refuses {
    fn inner(&self) -> &dyn Backend {
        self.inner.as_ref()
    }
    async fn writer(&self, path: &str, opts: &WriteOptions) -> Result<Box<dyn ObjectWriter>> {
        if path.contains("poison") {
            return Err(Error::new(ErrorKind::InvalidKey, "this store can never hold it"));
        }
        self.inner.writer(path, opts).await
    }
}

/// A failure no retry can fix makes the entry stuck at its first attempt, in sight on
/// `/ready` and `/metrics`; it is not retried for ever in silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_the_store_never_takes_is_stuck_at_once() {
    let wrap: crate::harness::Wrap = Arc::new(|inner| Arc::new(Refuses { inner }) as Arc<dyn Backend>);
    let toml = "[buckets.back]\nbackend = \"local\"\nwrite_mode = \"back\"\n".to_owned();
    let h = Harness::start_opts(Cold::Fs, Opts { toml, wrap: Some(wrap) }).await;
    h.put("back", "fine", b"ok").await;
    h.put("back", "poison", b"never lands").await;
    // /ready reads the health sampler and /metrics the uploader's gauges: both publish
    // every few seconds.
    let (mut stuck, mut metrics) = (serde_json::Value::Null, String::new());
    for _ in 0..100 {
        let ready: serde_json::Value =
            reqwest::get(format!("http://{}/ready", h.addr)).await.unwrap().json().await.unwrap();
        stuck = ready["stuck_entries"].clone();
        metrics = reqwest::get(format!("http://{}/metrics", h.addr)).await.unwrap().text().await.unwrap();
        if stuck != serde_json::json!({}) && metrics.contains("strata_journal_stuck{backend=\"local\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stuck, serde_json::json!({ "local": 1 }), "/ready names the stuck entry");
    let ready: serde_json::Value =
        reqwest::get(format!("http://{}/ready", h.addr)).await.unwrap().json().await.unwrap();
    let backlog = &ready["backlog"]["local"];
    assert!(backlog["entries"].as_u64() >= Some(1), "{ready}");
    assert!(backlog["last_error"].as_str().is_some_and(|e| e.contains("never hold")), "{ready}");
    assert!(metrics.contains("strata_journal_stuck{backend=\"local\"} 1"), "{metrics}");
    let status = h.tier().journal_status().await.unwrap();
    let entry = status.backlog.stuck.first().expect("listed as stuck");
    assert_eq!((entry.key.as_str(), entry.attempts), ("poison", 1), "stuck at the first attempt");
    assert_eq!(h.cold_read("back", "fine").await, b"ok");
}

/// A key whose name in the store would pass the store's length limit is refused with a
/// 4xx before it is acknowledged (Garage here: the run's prefix makes the name longer).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_name_the_store_cannot_take_is_refused_before_the_200() {
    let h = Harness::start(Cold::Garage).await;
    h.bucket("lim").await;
    let key = "k".repeat(1020);
    let r = h.client.put_object().bucket("lim").key(&key).body(ByteStream::from_static(b"x")).send().await;
    assert_eq!(code(r), "KeyTooLongError");
    assert!(h.keys("lim").await.is_empty(), "nothing was acknowledged");
    let status = h.tier().journal_status().await.unwrap();
    assert!(status.backlog.stores.iter().all(|s| s.entries == 0), "nothing was journaled");
}

/// `aws s3 cp s3://a/big s3://b/big` for objects over the multipart threshold: parts copied
/// from another bucket's object, whole and by range, with the copy-source conditionals.
async fn upload_part_copy_across_buckets(h: Harness) {
    let c = &h.client;
    h.bucket("from").await;
    h.bucket("to-b").await;
    let data: Vec<u8> = (0..(6u32 << 20) + 1000).map(|i| (i % 251) as u8).collect();
    let etag = h.put("from", "big", &data).await;
    let up = c.create_multipart_upload().bucket("to-b").key("big").send().await.unwrap();
    let id = up.upload_id().unwrap();
    let split = 5u64 << 20;
    let copy = |n: i32, range: String| {
        c.upload_part_copy()
            .bucket("to-b")
            .key("big")
            .upload_id(id)
            .part_number(n)
            .copy_source("from/big")
            .copy_source_range(range)
    };
    let p1 = copy(1, format!("bytes=0-{}", split - 1)).copy_source_if_match(&etag).send().await.unwrap();
    let p2 = copy(2, format!("bytes={split}-{}", data.len() - 1)).send().await.unwrap();
    let bad = copy(3, format!("bytes=0-{}", data.len())).send().await;
    assert_eq!(code(bad), "InvalidArgument", "a range past the source's end");
    let stale = copy(3, "bytes=0-9".into()).copy_source_if_match("\"00\"").send().await;
    assert_eq!(code(stale), "PreconditionFailed");
    let parts = [p1, p2]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let e = p.copy_part_result().and_then(|r| r.e_tag()).unwrap();
            CompletedPart::builder().part_number(i as i32 + 1).e_tag(e).build()
        })
        .collect::<Vec<_>>();
    let done = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
    c.complete_multipart_upload().bucket("to-b").key("big").upload_id(id).multipart_upload(done).send().await.unwrap();
    assert!(h.get("to-b", "big").await == data, "the copied parts assemble into the source");
    // A whole-object part copy, and the source named with its one version.
    let up = c.create_multipart_upload().bucket("to-b").key("small").send().await.unwrap();
    let id = up.upload_id().unwrap();
    let src = "from/big?versionId=null";
    let whole = c.upload_part_copy().bucket("to-b").key("small").upload_id(id).part_number(1).copy_source(src);
    let p = whole.send().await.unwrap();
    assert_eq!(p.copy_part_result().and_then(|r| r.e_tag()), Some(etag.as_str()), "the whole source, one part");
}

/// ListObjectVersions and GetBucketVersioning on a bucket that never had versioning, as
/// `rclone purge` calls them.
async fn versions_of_an_unversioned_bucket(h: Harness) {
    let c = &h.client;
    h.bucket("ver").await;
    for k in ["a", "d/b", "d/c"] {
        h.put("ver", k, k.as_bytes()).await;
    }
    let v = c.get_bucket_versioning().bucket("ver").send().await.unwrap();
    assert_eq!(v.status(), None, "never enabled: no status");
    let all = c.list_object_versions().bucket("ver").send().await.unwrap();
    let keys: Vec<_> =
        all.versions().iter().map(|v| (v.key().unwrap(), v.version_id().unwrap(), v.is_latest())).collect();
    assert_eq!(keys, [("a", "null", Some(true)), ("d/b", "null", Some(true)), ("d/c", "null", Some(true))]);
    let page = c.list_object_versions().bucket("ver").max_keys(2).send().await.unwrap();
    assert_eq!(page.is_truncated(), Some(true));
    let next = c.list_object_versions().bucket("ver").key_marker(page.next_key_marker().unwrap());
    let next = next.version_id_marker(page.next_version_id_marker().unwrap()).send().await.unwrap();
    let rest: Vec<_> = next.versions().iter().filter_map(|v| v.key()).collect();
    assert_eq!(rest, ["d/c"]);
    let grouped = c.list_object_versions().bucket("ver").delimiter("/").send().await.unwrap();
    let p: Vec<_> = grouped.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
    assert_eq!(p, ["d/"]);
    assert_eq!(code(c.list_object_versions().bucket("nope").send().await), "NoSuchBucket");
}

/// An empty delimiter is not echoed, fetch-owner gives owners, an unsigned `HEAD /` is
/// refused like `GET /`, a chunked PUT of unknown length is taken, and a PUT with
/// `Expect: 100-continue` and no body does not stall the connection.
async fn listing_details(h: Harness) {
    let c = &h.client;
    h.bucket("lds").await;
    h.put("lds", "k", b"v").await;
    let r = c.list_objects_v2().bucket("lds").delimiter("").fetch_owner(true).send().await.unwrap();
    assert_eq!(r.delimiter(), None);
    assert!(r.contents()[0].owner().is_some(), "fetch-owner=true names the owner");
    let r = c.list_objects_v2().bucket("lds").send().await.unwrap();
    assert!(r.contents()[0].owner().is_none(), "only when asked");
    let head = reqwest::Client::new().head(format!("http://{}/", h.addr)).send().await.unwrap();
    assert_eq!(head.status().as_u16(), 403);
    // Transfer-Encoding: chunked, no Content-Length, through a presigned PUT.
    let cfg = aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
    let url = c.put_object().bucket("lds").key("chunked").presigned(cfg.clone()).await.unwrap().uri().to_owned();
    let chunks: Vec<std::result::Result<bytes::Bytes, std::io::Error>> =
        (0..50).map(|i| Ok(bytes::Bytes::from(vec![i as u8; 10_000]))).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let r = reqwest::Client::new().put(&url).body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    assert_eq!(h.get("lds", "chunked").await.len(), 500_000);
    // Expect: 100-continue on an empty PUT, then a second request on the same connection.
    let url = c.put_object().bucket("lds").key("empty").presigned(cfg).await.unwrap().uri().to_owned();
    let path = url.splitn(4, '/').nth(3).unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let put = format!("PUT /{path} HTTP/1.1\r\nHost: {}\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n", h.addr);
    s.write_all(put.as_bytes()).await.unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while !got.contains("HTTP/1.1 200") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("answered").unwrap();
        assert!(n > 0, "the connection closed: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // hyper sends no `100 Continue` for a body it never reads; botocore then waited 30 s
    // on the connection's next request (seen with botocore 1.43.11). So it is closed.
    let lower = got.to_ascii_lowercase();
    assert!(lower.contains("connection: close") || lower.contains("100 continue"), "{got}");
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("closed at once");
    assert_eq!(n.unwrap_or(0), 0, "the server closes the connection");
    assert_eq!(h.get("lds", "empty").await, b"");
}

/// Checksums are stored and returned (PutObject, HEAD and GET with checksum mode, the
/// composite checksum of a multipart object, GetObjectAttributes), `partNumber` reads one
/// part, and a repeated CompleteMultipartUpload gets the same answer.
async fn parts_and_checksums(h: Harness) {
    use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ObjectAttributes};
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let c = &h.client;
    h.bucket("sums").await;
    let put = c.put_object().bucket("sums").key("one").body(ByteStream::from_static(b"hello world"));
    let put = put.checksum_algorithm(ChecksumAlgorithm::Crc32).send().await.unwrap();
    let want = b64(&crc32fast::hash(b"hello world").to_be_bytes());
    assert_eq!(put.checksum_crc32(), Some(want.as_str()), "PutObject returns the checksum");
    let head = c.head_object().bucket("sums").key("one").checksum_mode(ChecksumMode::Enabled).send().await.unwrap();
    assert_eq!(head.checksum_crc32(), Some(want.as_str()));
    let plain = c.head_object().bucket("sums").key("one").send().await.unwrap();
    assert_eq!(plain.checksum_crc32(), None, "only when asked for");
    let got = c.get_object().bucket("sums").key("one").checksum_mode(ChecksumMode::Enabled).send().await.unwrap();
    assert_eq!(got.checksum_crc32(), Some(want.as_str()));
    c.copy_object().bucket("sums").key("copy").copy_source("sums/one").send().await.unwrap();
    let copy = c.head_object().bucket("sums").key("copy").checksum_mode(ChecksumMode::Enabled).send().await.unwrap();
    assert_eq!(copy.checksum_crc32(), Some(want.as_str()), "a copy keeps a full-object checksum");
    let one = c.get_object().bucket("sums").key("one").part_number(1).send().await.unwrap();
    assert_eq!((one.parts_count(), one.content_length()), (None, Some(11)), "part 1 of a single-part object");
    assert_eq!(code(c.get_object().bucket("sums").key("one").part_number(2).send().await), "InvalidPartNumber");
    // A multipart object with CRC32 parts.
    let p1: Vec<u8> = vec![1u8; 5 << 20];
    let p2: Vec<u8> = b"the last part".to_vec();
    let up = c.create_multipart_upload().bucket("sums").key("multi").checksum_algorithm(ChecksumAlgorithm::Crc32);
    let up = up.send().await.unwrap();
    let id = up.upload_id().unwrap();
    let mut done = Vec::new();
    let mut raw = Vec::new();
    for (n, body) in [(1, &p1), (2, &p2)] {
        let part = c.upload_part().bucket("sums").key("multi").upload_id(id).part_number(n);
        let part = part.checksum_algorithm(ChecksumAlgorithm::Crc32).body(ByteStream::from(body.clone()));
        let part = part.send().await.unwrap();
        let sum = b64(&crc32fast::hash(body).to_be_bytes());
        assert_eq!(part.checksum_crc32(), Some(sum.as_str()), "UploadPart returns the part's checksum");
        raw.extend(crc32fast::hash(body).to_be_bytes());
        let e = part.e_tag().unwrap();
        done.push(CompletedPart::builder().part_number(n).e_tag(e).checksum_crc32(sum).build());
    }
    let composite = format!("{}-2", b64(&crc32fast::hash(&raw).to_be_bytes()));
    let mpu = CompletedMultipartUpload::builder().set_parts(Some(done)).build();
    let complete = c.complete_multipart_upload().bucket("sums").key("multi").upload_id(id).multipart_upload(mpu);
    let first = complete.clone().send().await.unwrap();
    assert_eq!(first.checksum_crc32(), Some(composite.as_str()), "the composite checksum");
    let again = complete.send().await.expect("a repeated completion answers again");
    assert_eq!(again.e_tag(), first.e_tag());
    let part2 = c.get_object().bucket("sums").key("multi").part_number(2).send().await.unwrap();
    assert_eq!(part2.parts_count(), Some(2));
    let start = p1.len();
    assert_eq!(
        part2.content_range(),
        Some(format!("bytes {start}-{}/{}", start + p2.len() - 1, start + p2.len()).as_str())
    );
    assert_eq!(part2.body.collect().await.unwrap().into_bytes().as_ref(), p2.as_slice());
    let head2 = c.head_object().bucket("sums").key("multi").part_number(1).send().await.unwrap();
    assert_eq!((head2.parts_count(), head2.content_length()), (Some(2), Some(p1.len() as i64)));
    let attrs = c.get_object_attributes().bucket("sums").key("multi");
    let attrs = attrs.object_attributes(ObjectAttributes::ObjectParts).object_attributes(ObjectAttributes::Checksum);
    let attrs = attrs.object_attributes(ObjectAttributes::ObjectSize).send().await.unwrap();
    assert_eq!(attrs.object_size(), Some((p1.len() + p2.len()) as i64));
    assert_eq!(attrs.checksum().and_then(|s| s.checksum_crc32()), Some(composite.as_str()));
    let parts = attrs.object_parts().unwrap();
    assert_eq!(parts.total_parts_count(), Some(2));
    let sizes: Vec<_> = parts.parts().iter().map(|p| p.size()).collect();
    assert_eq!(sizes, [Some(p1.len() as i64), Some(p2.len() as i64)]);
}

/// What an SDK will not send, signed: an empty Content-MD5, DeleteObjects with a wrong one,
/// an XML body over 20 MiB, a body that is not the one signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_checks_s3_makes() {
    use base64::Engine;
    use md5::Digest;
    let h = Harness::start(Cold::Fs).await;
    h.bucket("chk").await;
    let md5 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(b));
    let r = crate::harness::signed(h.addr, "PUT", "/chk/k", &[("content-md5", "")], b"abc".to_vec()).await;
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("<Code>InvalidDigest</Code>"));
    let body = b"<Delete><Object><Key>a</Key></Object></Delete>".to_vec();
    let wrong = md5(b"x");
    let r = crate::harness::signed(h.addr, "POST", "/chk?delete", &[("content-md5", &wrong)], body.clone()).await;
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("<Code>BadDigest</Code>"));
    let right = md5(&body);
    let r = crate::harness::signed(h.addr, "POST", "/chk?delete", &[("content-md5", &right)], body).await;
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    // The answer comes from the head alone (the server does not read 21 MiB to refuse it),
    // so a raw socket reads it before sending any body.
    let head = format!("POST /chk?delete HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", 21 << 20);
    let answer = crate::web::raw(&h, &head).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("<Code>MaxMessageLengthExceeded</Code>"), "{answer}");
    let r = crate::harness::signed_with(h.addr, ("PUT", "/chk/k", &[]), b"signed", b"sent!!".to_vec()).await;
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("<Code>XAmzContentSHA256Mismatch</Code>"));
    assert!(h.keys("chk").await.is_empty(), "nothing was stored");
}

/// A reqwest client whose connections come from `ip` (any 127.x.y.z is this machine).
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder().local_address(std::net::IpAddr::from(ip)).build().unwrap()
}

/// Failed authentication is braked per client address (issue 14): after `auth_burst`
/// failures an address is refused before any secret is checked, with Retry-After, while
/// another address is served; wrong S3 signatures, admin logins and passwords all count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_authentication_is_braked_per_address() {
    let h = Harness::start(Cold::Fs).await;
    h.bucket("brk").await;
    h.put("brk", "k", b"v").await;
    let cfg = aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
    let wrong = h.client_with(crate::harness::ACCESS_KEY, "not-the-secret", "us-east-1");
    let bad = wrong.get_object().bucket("brk").key("k").presigned(cfg.clone()).await.unwrap().uri().to_owned();
    let good = h.client.get_object().bucket("brk").key("k").presigned(cfg).await.unwrap().uri().to_owned();
    let (attacker, other) = (client_from([127, 0, 0, 5]), client_from([127, 0, 0, 2]));
    for _ in 0..10 {
        assert_eq!(attacker.get(&bad).send().await.unwrap().status().as_u16(), 403);
    }
    let r = attacker.get(&bad).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503, "braked");
    assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert!(r.text().await.unwrap().contains("<Code>SlowDown</Code>"));
    let r = attacker.get(&good).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503, "while braked, not even the right signature is looked at");
    assert_eq!(other.get(&good).send().await.unwrap().status().as_u16(), 200, "another address is served");
    let anon = other.get(format!("http://{}/health", h.addr)).send().await.unwrap();
    assert_eq!(anon.status().as_u16(), 200);
    // The admin API, from a third address.
    let admin = client_from([127, 0, 0, 3]);
    let url = format!("http://{}/_strata/status.json", h.addr);
    for _ in 0..10 {
        let r = admin.get(&url).basic_auth(crate::harness::ACCESS_KEY, Some("guess")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }
    let r = admin.get(&url).basic_auth(crate::harness::ACCESS_KEY, Some(crate::harness::SECRET_KEY)).send().await;
    assert_eq!(r.unwrap().status().as_u16(), 429, "braked before the password is looked at");
    let r = other.get(&url).basic_auth(crate::harness::ACCESS_KEY, Some(crate::harness::SECRET_KEY)).send().await;
    assert_eq!(r.unwrap().status().as_u16(), 200);
    // A password rule, from a fourth address.
    crate::web::set_rule(&h, "brk", "", serde_json::json!({ "access": "password", "password": "open sesame" })).await;
    let fan = client_from([127, 0, 0, 4]);
    let photo = format!("http://{}/brk/k", h.addr);
    for _ in 0..10 {
        let r = fan.get(&photo).basic_auth("x", Some("wrong")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }
    let r = fan.get(&photo).basic_auth("x", Some("open sesame")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let metrics = reqwest::get(format!("http://{}/metrics", h.addr)).await.unwrap().text().await.unwrap();
    // Counters exist from the start (at 0); these moved.
    for api in ["s3", "admin", "password"] {
        let name = format!("strata_auth_throttled_total{{api=\"{api}\"}} ");
        let n: f64 =
            metrics.lines().find_map(|l| l.strip_prefix(name.as_str())).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        assert!(n >= 1.0, "{api}: {metrics}");
    }
}

/// Regression (issue 14): request spans leaked across requests; under 32 concurrent PUTs a
/// log line carried up to 298 request ids. Each line must name at most one request, its
/// own, and every request's id appears in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_log_line_names_only_its_own_request() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let args = ["--listen".into(), "127.0.0.1:0".into(), "--data-dir".into(), dir.path().join("data").into()];
    let (mut child, addr) =
        crate::harness::serve_process(&args, &[("STRATA_LOG", "debug"), ("NO_COLOR", "1")], log.into());
    let c = crate::harness::client(addr, crate::harness::ACCESS_KEY, crate::harness::SECRET_KEY, "us-east-1");
    c.create_bucket().bucket("logs").send().await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                let body = ByteStream::from(vec![i as u8; 300_000]);
                let r = c.put_object().bucket("logs").key(format!("k{i}")).body(body).send().await.unwrap();
                r.request_id().unwrap().to_owned()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(dir.path().join("log")).unwrap();
    // Strip ANSI colours, in case the subscriber still writes them.
    let plain: String = {
        let mut out = String::with_capacity(text.len());
        let mut esc = false;
        for ch in text.chars() {
            match (esc, ch) {
                (false, '\u{1b}') => esc = true,
                (true, 'm') => esc = false,
                (true, _) => {}
                (false, c) => out.push(c),
            }
        }
        out
    };
    let mut lines_with_ids = 0;
    for l in plain.lines() {
        let n = l.matches("s3{id=").count();
        assert!(n <= 1, "a line names {n} requests: {l}");
        lines_with_ids += n;
    }
    for id in &ids {
        assert!(plain.contains(&format!("s3{{id={id}")), "request {id} is not in the log");
    }
    assert!(lines_with_ids >= ids.len() * 2, "every request logs more than its end: {lines_with_ids} lines");
}

/// A Range S3 ignores gets the whole object, not 400 (rclone sends `bytes=N-(N-1)` for an
/// offset at the end); a last byte past u64 reads to the end; an unsatisfiable start is
/// still 416. Signed in a header (the SDK) and in the query (presigned).
async fn ranges_s3_ignores(h: Harness) {
    let c = &h.client;
    h.bucket("rngs").await;
    h.put("rngs", "k", b"0123456789").await;
    let get = |r: &'static str| c.get_object().bucket("rngs").key("k").range(r).send();
    for ignored in ["bytes=5-1", "bytes=0-1,5-6", "items=0-1", "bytes=x-"] {
        let r = get(ignored).await.unwrap_or_else(|e| panic!("{ignored}: {e:?}"));
        assert_eq!(r.content_range(), None, "{ignored}");
        assert_eq!(r.body.collect().await.unwrap().into_bytes().as_ref(), b"0123456789", "{ignored}");
    }
    let r = get("bytes=3-99999999999999999999999").await.unwrap();
    assert_eq!(r.content_range(), Some("bytes 3-9/10"));
    assert_eq!(status(get("bytes=10-").await), 416, "an unsatisfiable start");
    let head = c.head_object().bucket("rngs").key("k").range("bytes=9-2").send().await.unwrap();
    assert_eq!(head.content_length(), Some(10));
    let cfg = aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
    let url = c.get_object().bucket("rngs").key("k").presigned(cfg).await.unwrap().uri().to_owned();
    let r = reqwest::Client::new().get(&url).header("range", "bytes=5-1").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"0123456789");
    // The second pass is never reached without a valid signature.
    let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flip = if &url[at..=at] == "0" { "1" } else { "0" };
    let forged = format!("{}{flip}{}", &url[..at], &url[at + 1..]);
    let r = reqwest::Client::new().get(&forged).header("range", "bytes=5-1").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

/// CopyObject and UploadPartCopy between buckets on two different stores (a disk here and
/// Garage), so no server-side copy can serve: the bytes stream through strata.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_between_stores() {
    let second = tempfile::tempdir().unwrap();
    let toml = format!(
        "[backends.second]\ntype = \"fs\"\nroot = \"{}\"\n[buckets.far]\nbackend = \"second\"\n",
        second.path().display()
    );
    let h = Harness::start_opts(Cold::Garage, Opts { toml, wrap: None }).await;
    let c = &h.client;
    h.bucket("near").await;
    let data: Vec<u8> = (0..(5u32 << 20) + 4321).map(|i| (i % 253) as u8).collect();
    h.put("near", "src", &data).await;
    c.copy_object().bucket("far").key("whole").copy_source("near/src").send().await.unwrap();
    assert!(h.get("far", "whole").await == data, "CopyObject across stores");
    let up = c.create_multipart_upload().bucket("far").key("parts").send().await.unwrap();
    let id = up.upload_id().unwrap();
    let split = 5u64 << 20;
    let mut done = Vec::new();
    for (n, range) in [(1, format!("bytes=0-{}", split - 1)), (2, format!("bytes={split}-{}", data.len() - 1))] {
        let p = c.upload_part_copy().bucket("far").key("parts").upload_id(id).part_number(n);
        let p = p.copy_source("near/src").copy_source_range(range).send().await.unwrap();
        let e = p.copy_part_result().and_then(|r| r.e_tag()).unwrap().to_owned();
        done.push(CompletedPart::builder().part_number(n).e_tag(e).build());
    }
    let mpu = CompletedMultipartUpload::builder().set_parts(Some(done)).build();
    c.complete_multipart_upload().bucket("far").key("parts").upload_id(id).multipart_upload(mpu).send().await.unwrap();
    assert!(h.get("far", "parts").await == data, "UploadPartCopy across stores");
    h.drained().await;
    let on_disk = std::fs::read(second.path().join("far/parts")).expect("the second store holds it");
    assert!(on_disk == data);
}
