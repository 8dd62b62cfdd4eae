//! The backend conformance suite: every test runs against every kind of store strata
//! speaks, each built as a full [`stack`] (OpenDAL, metrics, breaker), so the layers'
//! forwarding is checked too.
//!
//! - the fs backend, on a temporary directory;
//! - S3, on Garage (`STRATA_TEST_GARAGE_*`, from `scripts/garage-up`);
//! - Azure Blob, on Azurite (`STRATA_TEST_AZURITE_*`, from `scripts/emulators-up`);
//! - GCS, on gcp-storage-emulator (`STRATA_TEST_GCS_*`, from `scripts/emulators-up`).
//!
//! `scripts/test` starts all of them. Each run writes under a fresh random prefix (the fs
//! store under a fresh directory).

use super::*;
use crate::config::{AzblobBackend, FsBackend, GcsBackend, S3Backend};
use crate::error::ErrorKind;
use futures::TryStreamExt;

struct Store {
    backend: Arc<dyn Backend>,
    _dir: Option<tempfile::TempDir>,
}

fn env(kind: &str, k: &str) -> String {
    let name = format!("STRATA_TEST_{kind}_{k}");
    std::env::var(&name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the suite with scripts/test, which starts it"))
}

fn run_prefix() -> String {
    format!("conformance-{}/", uuid::Uuid::new_v4().simple())
}

fn built(name: &str, cfg: &BackendConfig, dir: Option<tempfile::TempDir>) -> Store {
    let breaker = BreakerSettings {
        latency_budget: Duration::from_secs(10),
        io_budget: Duration::from_secs(30),
        failures: 3,
        cooldown: Duration::from_secs(1),
    };
    let backend = stack(name, cfg, &Limits::default(), &breaker).expect("the store builds").backend;
    Store { backend, _dir: dir }
}

fn fs() -> Store {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = BackendConfig::Fs(FsBackend { root: dir.path().join("root"), deferred_sync: false });
    built("fs", &cfg, Some(dir))
}

/// The disk store as `strata copy --sync batch` opens it: no fsync per write.
fn fs_deferred() -> Store {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = BackendConfig::Fs(FsBackend { root: dir.path().join("root"), deferred_sync: true });
    built("fs", &cfg, Some(dir))
}

fn garage() -> Store {
    let g = |k| env("GARAGE", k);
    let cfg = BackendConfig::S3(S3Backend {
        endpoint: Some(g("ENDPOINT")),
        region: g("REGION"),
        bucket: g("BUCKET"),
        prefix: run_prefix(),
        access_key: Some(g("ACCESS_KEY")),
        secret_key: Some(g("SECRET_KEY")),
        virtual_host_style: false,
        ca_bundle: None,
    });
    built("garage", &cfg, None)
}

fn azurite() -> Store {
    let a = |k| env("AZURITE", k);
    let cfg = BackendConfig::Azblob(AzblobBackend {
        container: a("CONTAINER"),
        endpoint: a("ENDPOINT"),
        prefix: run_prefix(),
        account_name: Some(a("ACCOUNT")),
        account_key: Some(a("KEY")),
        ca_bundle: None,
    });
    built("azurite", &cfg, None)
}

fn gcs() -> Store {
    let g = |k| env("GCS", k);
    let cfg = BackendConfig::Gcs(GcsBackend {
        bucket: g("BUCKET"),
        prefix: run_prefix(),
        credential: None,
        endpoint: Some(g("ENDPOINT")),
        anonymous: true,
        ca_bundle: None,
    });
    built("gcs", &cfg, None)
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_fs { $(#[tokio::test] async fn $name() { super::$name(super::fs().backend.as_ref()).await })* }
        mod on_fs_deferred { $(#[tokio::test] async fn $name() { super::$name(super::fs_deferred().backend.as_ref()).await })* }
        mod on_garage { $(#[tokio::test] async fn $name() { super::$name(super::garage().backend.as_ref()).await })* }
        mod on_azurite { $(#[tokio::test] async fn $name() { super::$name(super::azurite().backend.as_ref()).await })* }
        mod on_gcs { $(#[tokio::test] async fn $name() { super::$name(super::gcs().backend.as_ref()).await })* }
    };
}

conformance!(
    writes_become_visible_at_commit_only,
    abort_keeps_the_previous_content,
    reads_whole_and_ranged,
    missing_paths,
    delete_is_idempotent,
    listing_is_recursive_and_bounded_by_its_prefix,
    native_headers_round_trip,
    presign_matches_the_capability,
    every_key_has_its_own_object,
    sync_is_idempotent_and_keeps_every_commit,
);

// Not on the GCS emulator: OpenDAL writes objects past one chunk (8 MiB) through GCS's
// XML multipart API, which gcp-storage-emulator answers with 501. Real GCS has it; this
// path stays untested here until an emulator does.
mod large {
    #[tokio::test]
    async fn on_fs() {
        super::large_writes_go_in_parts(super::fs().backend.as_ref()).await
    }
    #[tokio::test]
    async fn on_garage() {
        super::large_writes_go_in_parts(super::garage().backend.as_ref()).await
    }
    #[tokio::test]
    async fn on_azurite() {
        super::large_writes_go_in_parts(super::azurite().backend.as_ref()).await
    }
}

/// `Backend::sync` (issue 17): it succeeds whether or not the store defers its fsyncs,
/// twice in a row, and changes nothing a reader sees.
async fn sync_is_idempotent_and_keeps_every_commit(b: &dyn Backend) {
    let p = run_prefix();
    for i in 0..3 {
        put(b, &format!("{p}s/{i}"), format!("body {i}").as_bytes()).await;
    }
    b.sync().await.expect("sync");
    b.sync().await.expect("sync again");
    for i in 0..3 {
        assert_eq!(get(b, &format!("{p}s/{i}"), None).await.expect("read"), format!("body {i}").as_bytes());
    }
}

async fn put(b: &dyn Backend, path: &str, bytes: &[u8]) {
    let mut w = b.writer(path, &WriteOptions::default()).await.expect("writer");
    for piece in bytes.chunks(1000) {
        w.write(Bytes::copy_from_slice(piece)).await.expect("write");
    }
    w.commit().await.expect("commit");
}

async fn get(b: &dyn Backend, path: &str, range: Option<Range<u64>>) -> Result<Vec<u8>> {
    let chunks: Vec<Bytes> = b.read(path, range).await?.try_collect().await?;
    Ok(chunks.concat())
}

async fn writes_become_visible_at_commit_only(b: &dyn Backend) {
    let mut w = b.writer("a/new.bin", &WriteOptions::default()).await.unwrap();
    w.write(Bytes::from_static(b"hello ")).await.unwrap();
    w.write(Bytes::from_static(b"world")).await.unwrap();
    assert_eq!(b.stat("a/new.bin").await.unwrap(), None, "nothing is visible before commit");
    w.commit().await.unwrap();
    let st = b.stat("a/new.bin").await.unwrap().expect("visible after commit");
    assert_eq!(st.size, 11);
    assert_eq!(get(b, "a/new.bin", None).await.unwrap(), b"hello world");
    put(b, "a/new.bin", b"second").await;
    assert_eq!(get(b, "a/new.bin", None).await.unwrap(), b"second", "an overwrite replaces");
}

async fn abort_keeps_the_previous_content(b: &dyn Backend) {
    put(b, "k", b"old").await;
    let mut w = b.writer("k", &WriteOptions::default()).await.unwrap();
    w.write(Bytes::from_static(b"new bytes")).await.unwrap();
    w.abort().await.unwrap();
    assert_eq!(get(b, "k", None).await.unwrap(), b"old");
    let w = b.writer("never", &WriteOptions::default()).await.unwrap();
    drop(w);
    assert_eq!(b.stat("never").await.unwrap(), None, "a dropped writer publishes nothing");
}

async fn reads_whole_and_ranged(b: &dyn Backend) {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    put(b, "r/data", &data).await;
    assert_eq!(get(b, "r/data", None).await.unwrap(), data);
    assert_eq!(get(b, "r/data", Some(100..200)).await.unwrap(), &data[100..200]);
    assert_eq!(get(b, "r/data", Some(9_990..10_000)).await.unwrap(), &data[9_990..]);
}

async fn missing_paths(b: &dyn Backend) {
    assert_eq!(b.stat("no/such").await.unwrap(), None);
    let e = get(b, "no/such", None).await.expect_err("a missing path does not read");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

async fn delete_is_idempotent(b: &dyn Backend) {
    put(b, "d/x", b"x").await;
    b.delete("d/x").await.unwrap();
    assert_eq!(b.stat("d/x").await.unwrap(), None);
    b.delete("d/x").await.expect("deleting a missing path succeeds");
    b.delete("d/never").await.expect("deleting a never-written path succeeds");
}

async fn listing_is_recursive_and_bounded_by_its_prefix(b: &dyn Backend) {
    for p in ["l/a", "l/sub/b", "l/sub/deeper/c", "lx/outside"] {
        put(b, p, p.as_bytes()).await;
    }
    let mut found: Vec<(String, Option<u64>)> =
        b.list("l/").map_ok(|e| (e.path, e.size)).try_collect().await.expect("the listing reads");
    found.sort();
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["l/a", "l/sub/b", "l/sub/deeper/c"], "files only, recursively, under the prefix");
    for (p, size) in &found {
        assert!(size.is_none_or(|s| s == p.len() as u64), "{p}: a listed size is the real one");
    }
    let none: Vec<ListEntry> = b.list("empty/").try_collect().await.expect("an empty prefix lists");
    assert!(none.is_empty());
}

async fn native_headers_round_trip(b: &dyn Backend) {
    let opts = WriteOptions {
        content_type: Some("image/png".into()),
        cache_control: Some("max-age=60".into()),
        user_metadata: BTreeMap::from([("owner".into(), "ann".into())]),
        ..Default::default()
    };
    let mut w = b.writer("h/img.png", &opts).await.unwrap();
    w.write(Bytes::from_static(b"png")).await.unwrap();
    w.commit().await.unwrap();
    let st = b.stat("h/img.png").await.unwrap().expect("written");
    if b.capability().native_headers {
        assert_eq!(st.headers.content_type.as_deref(), Some("image/png"));
        assert_eq!(st.headers.user_metadata.get("owner").map(String::as_str), Some("ann"));
    } else {
        assert_eq!(st.headers.user_metadata, BTreeMap::new(), "a store without native headers claims none");
    }
}

/// Keys S3 accepts that a store would rewrite, refuse or confuse (issue 14): each is its
/// own object, reads back, and lists as itself.
async fn every_key_has_its_own_object(b: &dyn Backend) {
    // Longer than a file name; Garage on LMDB takes keys up to about 500 bytes in all.
    let long = "x".repeat(260);
    let keys = [
        "k/a/b".to_owned(),
        "k/a/b/c".to_owned(),
        "k/a/b/c/d".to_owned(),
        "k/ ".to_owned(),
        "k/folder/".to_owned(),
        "k/folder".to_owned(),
        "k//double".to_owned(),
        "k/./dot".to_owned(),
        "k/../up".to_owned(),
        "k/.strata-tmp/x".to_owned(),
        "k/.strata~x".to_owned(),
        // (No `%`: gcp-storage-emulator decodes object names twice, so `100%` is lost
        // there whatever strata does; real GCS keeps it.)
        "k/tilde~ tail ".to_owned(),
        format!("k/{long}/y"),
        format!("k/{long}"),
    ];
    for (i, k) in keys.iter().enumerate() {
        b.check_path(k).expect("the store can hold it");
        put(b, k, format!("body {i}").as_bytes()).await;
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(get(b, k, None).await.unwrap(), format!("body {i}").as_bytes(), "{k:?}");
        assert_eq!(b.stat(k).await.unwrap().map(|s| s.size), Some(format!("body {i}").len() as u64), "{k:?}");
    }
    let mut listed: Vec<String> = b.list("k/").map_ok(|e| e.path).try_collect().await.unwrap();
    listed.sort();
    let mut want = keys.to_vec();
    want.sort();
    assert_eq!(listed, want);
    let under: Vec<String> = b.list("k/a/b").map_ok(|e| e.path).try_collect().await.unwrap();
    assert_eq!(under.len(), 3, "a prefix that ends inside a segment: {under:?}");
    for k in &keys {
        b.delete(k).await.unwrap();
        assert_eq!(b.stat(k).await.unwrap(), None, "{k:?}");
    }
    let left: Vec<ListEntry> = b.list("k/").try_collect().await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(b.check_path(&"k".repeat(5000)).is_err_and(|e| e.kind() == ErrorKind::KeyTooLong));
}

async fn large_writes_go_in_parts(b: &dyn Backend) {
    // Larger than one OpenDAL write chunk (8 MiB), so object stores take it in parts.
    let data: Vec<u8> = (0..(9u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let mut w = b.writer("big/object", &WriteOptions::default()).await.unwrap();
    for piece in data.chunks(1 << 20) {
        w.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    w.commit().await.unwrap();
    assert_eq!(b.stat("big/object").await.unwrap().map(|s| s.size), Some(data.len() as u64));
    let back = get(b, "big/object", None).await.unwrap();
    assert!(back == data, "the parts are assembled in order");
}

async fn presign_matches_the_capability(b: &dyn Backend) {
    put(b, "p/file.txt", b"presigned bytes").await;
    let url = b.presign_read("p/file.txt", Duration::from_secs(60), None).await.expect("presign answers");
    match (b.capability().presign, url) {
        (true, Some(url)) => {
            let resp = reqwest::get(&url).await.expect("the URL answers");
            assert!(resp.status().is_success(), "{url}: {}", resp.status());
            assert_eq!(resp.bytes().await.unwrap().as_ref(), b"presigned bytes");
        }
        (false, None) => {}
        (cap, url) => panic!("capability says presign = {cap}, but presign_read gave {url:?}"),
    }
}
