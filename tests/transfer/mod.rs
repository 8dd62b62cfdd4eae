//! Bulk moves (issue 6): resume after an interruption, sync deletes only extras, verify
//! finds a flipped byte, metadata survives an S3-to-S3 copy, and the CLI's exit status.

use async_trait::async_trait;
use bytes::Bytes;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use strata::backend::{Backend, Layer, ObjectWriter, WriteOptions};
use strata::config::{Config, Overrides};
use strata::error::{Error, ErrorKind, Result};
use strata::transfer::{Location, Mode, Options, Stats, Summary};

fn config() -> Config {
    Config::parse("").unwrap().resolve(&Overrides::default(), &|_| None).unwrap()
}

fn dir_location(p: &Path) -> Location {
    Location::parse(p.to_str().unwrap(), &config(), &|_| None).unwrap()
}

fn opts(ckpt: &Path) -> Options {
    Options {
        transfers: 4,
        checkers: 4,
        dry_run: false,
        max_rate: None,
        max_tps: None,
        checksum: false,
        checkpoint: ckpt.to_owned(),
    }
}

async fn go(mode: Mode, src: &Location, dst: &Location, o: Options) -> Summary {
    strata::transfer::run(mode, src.clone(), dst.clone(), o, Arc::new(Stats::default())).await.unwrap()
}

fn fill(dir: &Path, n: usize) {
    for i in 0..n {
        let p = dir.join(format!("d{}/f{i:03}", i % 3));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("object {i} ").repeat(i + 1)).unwrap();
    }
}

/// `n` objects in directory `a`, copied to directory `b`.
struct Copied {
    t: tempfile::TempDir,
    a: std::path::PathBuf,
    b: std::path::PathBuf,
    ck: std::path::PathBuf,
    src: Location,
    dst: Location,
}

async fn copied(n: usize) -> Copied {
    let t = tempfile::tempdir().unwrap();
    let (a, b, ck) = (t.path().join("a"), t.path().join("b"), t.path().join("ck.sqlite"));
    std::fs::create_dir_all(&a).unwrap();
    fill(&a, n);
    let (src, dst) = (dir_location(&a), dir_location(&b));
    go(Mode::Copy, &src, &dst, opts(&ck)).await;
    Copied { t, a, b, ck, src, dst }
}

/// Counts commits, and fails every commit after the first `ok` ones.
struct Flaky {
    inner: Arc<dyn Backend>,
    commits: Arc<AtomicU64>,
    ok: u64,
}

struct FlakyWriter {
    inner: Box<dyn ObjectWriter>,
    commits: Arc<AtomicU64>,
    ok: u64,
}

#[async_trait]
impl ObjectWriter for FlakyWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.inner.write(chunk).await
    }
    async fn commit(self: Box<Self>) -> Result<()> {
        if self.commits.fetch_add(1, SeqCst) >= self.ok {
            self.inner.abort().await?;
            return Err(Error::new(ErrorKind::Unavailable, "flaky: the destination went away"));
        }
        self.inner.commit().await
    }
    async fn abort(self: Box<Self>) -> Result<()> {
        self.inner.abort().await
    }
}

#[async_trait]
impl Layer for Flaky {
    fn inner(&self) -> &dyn Backend {
        self.inner.as_ref()
    }
    async fn writer(&self, path: &str, opts: &WriteOptions) -> Result<Box<dyn ObjectWriter>> {
        let inner = self.inner.writer(path, opts).await?;
        Ok(Box::new(FlakyWriter { inner, commits: self.commits.clone(), ok: self.ok }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_copy_resumes_without_copying_anything_twice() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, ck) = (t.path().join("a"), t.path().join("b"), t.path().join("ck.sqlite"));
    std::fs::create_dir_all(&a).unwrap();
    fill(&a, 60);
    let src = dir_location(&a);
    let plain = dir_location(&b);
    let commits = Arc::new(AtomicU64::new(0));
    let flaky = Location {
        backend: Arc::new(Flaky { inner: plain.backend.clone(), commits: commits.clone(), ok: 25 }),
        ..plain.clone()
    };
    let first = go(Mode::Copy, &src, &flaky, opts(&ck)).await;
    assert_eq!(first.copied, 25, "{first:?}");
    assert_eq!(first.failed, 35);
    assert!(ck.exists(), "an interrupted run keeps its checkpoint");
    let counter = Arc::new(AtomicU64::new(0));
    let counted = Location {
        backend: Arc::new(Flaky { inner: plain.backend.clone(), commits: counter.clone(), ok: u64::MAX }),
        ..plain.clone()
    };
    let second = go(Mode::Copy, &src, &counted, opts(&ck)).await;
    assert_eq!((second.copied, second.skipped, second.failed), (35, 25, 0), "{second:?}");
    assert_eq!(counter.load(SeqCst), 35, "the resumed run wrote exactly the missing objects");
    assert!(!ck.exists(), "a clean run removes its checkpoint");
    let v = go(Mode::Verify, &src, &plain, opts(&ck)).await;
    assert!(v.ok() && v.listed == 60, "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_deletes_only_the_extras() {
    let Copied { t: _t, b, ck, src, dst, .. } = copied(20).await;
    std::fs::write(b.join("d0/extra-1"), "x").unwrap();
    std::fs::create_dir_all(b.join("new")).unwrap();
    std::fs::write(b.join("new/extra-2"), "y").unwrap();
    let dry = go(Mode::Sync, &src, &dst, Options { dry_run: true, ..opts(&ck) }).await;
    assert_eq!((dry.deleted, dry.copied), (2, 0), "{dry:?}");
    assert!(b.join("d0/extra-1").exists(), "a dry run deleted something");
    let s = go(Mode::Sync, &src, &dst, opts(&ck)).await;
    assert_eq!((s.deleted, s.copied, s.skipped), (2, 0, 20), "{s:?}");
    assert!(!b.join("d0/extra-1").exists() && !b.join("new/extra-2").exists());
    let v = go(Mode::Verify, &src, &dst, opts(&ck)).await;
    assert!(v.ok(), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_finds_a_flipped_byte_a_missing_and_an_extra_object() {
    let Copied { t, a, b, ck, src, dst } = copied(10).await;
    let victim = b.join("d1/f004");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[7] ^= 0x01;
    std::fs::write(&victim, bytes).unwrap();
    std::fs::remove_file(b.join("d2/f005")).unwrap();
    std::fs::write(b.join("d0/stray"), "z").unwrap();
    let v = go(Mode::Verify, &src, &dst, opts(&ck)).await;
    assert_eq!(v.different, vec!["d1/f004"]);
    assert_eq!(v.missing, vec!["d2/f005"]);
    assert_eq!(v.extra, vec!["d0/stray"]);
    assert!(!v.ok());
    // The CLI says so with its exit status.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["verify", a.to_str().unwrap(), b.to_str().unwrap(), "--data-dir"])
        .arg(t.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "verify exited 0 on a mismatch");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["different"][0], "d1/f004");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metadata_survives_a_server_side_s3_to_s3_copy() {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let var = |k: &str| {
        std::env::var(format!("STRATA_TEST_GARAGE_{k}"))
            .unwrap_or_else(|_| panic!("STRATA_TEST_GARAGE_{k} is not set: run the suite with scripts/test"))
    };
    let (endpoint, bucket, ak, sk) = (var("ENDPOINT"), var("BUCKET"), var("ACCESS_KEY"), var("SECRET_KEY"));
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(Region::new("garage"))
        .credentials_provider(Credentials::new(&ak, &sk, None, None, "garage"))
        .force_path_style(true)
        .build();
    let g = aws_sdk_s3::Client::from_conf(conf);
    let run = uuid::Uuid::new_v4().simple().to_string();
    g.put_object()
        .bucket(&bucket)
        .key(format!("{run}/src/photo.jpg"))
        .body(vec![9u8; 70_000].into())
        .content_type("image/jpeg")
        .cache_control("public, max-age=60")
        .metadata("camera", "x100")
        .send()
        .await
        .unwrap();
    // A key that needs escaping in the CopyObject URL and its x-amz-copy-source header.
    let odd = "odd key/naïve+1 (2)&x=y.txt";
    g.put_object().bucket(&bucket).key(format!("{run}/src/{odd}")).body(b"odd".to_vec().into()).send().await.unwrap();
    let env = |k: &str| match k {
        "AWS_ENDPOINT_URL" => Some(endpoint.clone()),
        "AWS_REGION" => Some("garage".to_owned()),
        "AWS_ACCESS_KEY_ID" => Some(ak.clone()),
        "AWS_SECRET_ACCESS_KEY" => Some(sk.clone()),
        _ => None,
    };
    let src = Location::parse(&format!("s3://{bucket}/{run}/src"), &config(), &env).unwrap();
    let dst = Location::parse(&format!("s3://{bucket}/{run}/dst/"), &config(), &env).unwrap();
    let t = tempfile::tempdir().unwrap();
    let s = go(Mode::Copy, &src, &dst, opts(&t.path().join("ck"))).await;
    assert_eq!((s.copied, s.failed), (2, 0), "{s:?}");
    // One endpoint, one key pair: Garage copied both itself (S3 CopyObject).
    assert_eq!(s.server_side, 2, "{s:?}");
    let got = g.get_object().bucket(&bucket).key(format!("{run}/dst/{odd}")).send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), b"odd");
    let head = g.head_object().bucket(&bucket).key(format!("{run}/dst/photo.jpg")).send().await.unwrap();
    assert_eq!(head.content_type(), Some("image/jpeg"));
    assert_eq!(head.cache_control(), Some("public, max-age=60"));
    assert_eq!(head.metadata().and_then(|m| m.get("camera")).map(String::as_str), Some("x100"));
    assert_eq!(head.content_length(), Some(70_000));
    let again = go(Mode::Copy, &src, &dst, opts(&t.path().join("ck"))).await;
    assert_eq!((again.copied, again.skipped), (0, 2), "an unchanged object is copied again: {again:?}");
    // The same Garage named another way is another endpoint to strata: the copy is
    // streamed, and the headers come from a stat of the source (listings lack them).
    let other = endpoint.replace("127.0.0.1", "localhost");
    let env2 = |k: &str| if k == "AWS_ENDPOINT_URL" { Some(other.clone()) } else { env(k) };
    let dst2 = Location::parse(&format!("s3://{bucket}/{run}/streamed/"), &config(), &env2).unwrap();
    let s = go(Mode::Copy, &src, &dst2, opts(&t.path().join("ck2"))).await;
    assert_eq!((s.copied, s.server_side, s.failed), (2, 0, 0), "{s:?}");
    let head = g.head_object().bucket(&bucket).key(format!("{run}/streamed/photo.jpg")).send().await.unwrap();
    assert_eq!(head.content_type(), Some("image/jpeg"));
    assert_eq!(head.metadata().and_then(|m| m.get("camera")).map(String::as_str), Some("x100"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_on_read_serves_from_the_origin_and_copies_in() {
    use crate::harness::{Cold, Harness, Opts};
    let old = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(old.path().join("albums")).unwrap();
    std::fs::write(old.path().join("albums/cat.jpg"), vec![3u8; 90_000]).unwrap();
    let toml = format!(
        "[backends.old]\ntype = \"fs\"\nroot = \"{}\"\n[buckets.mig]\nbackend = \"local\"\norigin = \"old\"\norigin_prefix = \"\"\n",
        old.path().display()
    );
    let h = Harness::start_opts(Cold::Fs, Opts { toml, wrap: None }).await;
    assert!(h.keys("mig").await.is_empty(), "nothing is migrated before it is read");
    assert_eq!(h.get("mig", "albums/cat.jpg").await, vec![3u8; 90_000]);
    assert_eq!(h.cold_read("mig", "albums/cat.jpg").await, vec![3u8; 90_000], "copied into the bucket's own store");
    assert_eq!(h.keys("mig").await, vec!["albums/cat.jpg"]);
    // Once migrated, the bucket's copy is the truth: the origin is not read again.
    std::fs::write(old.path().join("albums/cat.jpg"), b"changed at the origin").unwrap();
    assert_eq!(h.get("mig", "albums/cat.jpg").await, vec![3u8; 90_000]);
    let missing = h.client.get_object().bucket("mig").key("albums/dog.jpg").send().await;
    assert_eq!(crate::harness::code(missing), "NoSuchKey");
    let head = h.client.head_object().bucket("mig").key("albums/cat.jpg").send().await.unwrap();
    assert_eq!(head.content_length(), Some(90_000));
}

/// Issue 6: `POST /_strata/migrate` (behind `strata migrate BUCKET`) copies in what the
/// origin still has; what the bucket already holds, including a client's newer write, is
/// left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_fills_in_the_rest_and_never_overwrites_a_write() {
    use crate::harness::{ACCESS_KEY, Cold, Harness, Opts, SECRET_KEY};
    let old = tempfile::tempdir().unwrap();
    for i in 0..30 {
        std::fs::create_dir_all(old.path().join("p")).unwrap();
        std::fs::write(old.path().join(format!("p/{i:02}.bin")), format!("origin {i}")).unwrap();
    }
    let toml = format!(
        "[backends.old]\ntype = \"fs\"\nroot = \"{}\"\n[buckets.fill]\nbackend = \"local\"\norigin = \"old\"\norigin_prefix = \"\"\n",
        old.path().display()
    );
    let h = Harness::start_opts(Cold::Fs, Opts { toml, wrap: None }).await;
    assert_eq!(h.get("fill", "p/03.bin").await, b"origin 3", "one read migrates first");
    h.put("fill", "p/07.bin", b"written through strata").await;
    let url = format!("http://{}/_strata/migrate?bucket=fill", h.addr);
    let r = reqwest::Client::new().post(url).basic_auth(ACCESS_KEY, Some(SECRET_KEY)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let last: serde_json::Value = serde_json::from_str(body.lines().last().unwrap()).unwrap();
    assert_eq!(last["stats"]["listed"], 30, "{body}");
    assert_eq!((last["stats"]["migrated"].clone(), last["stats"]["present"].clone()), (28.into(), 2.into()), "{body}");
    assert_eq!(h.keys("fill").await.len(), 30);
    for i in [0, 15, 29] {
        assert_eq!(h.cold_read("fill", &format!("p/{i:02}.bin")).await, format!("origin {i}").as_bytes());
    }
    assert_eq!(h.get("fill", "p/07.bin").await, b"written through strata", "a client's write wins");
    let none = reqwest::Client::new()
        .post(format!("http://{}/_strata/migrate?bucket=nope", h.addr))
        .basic_auth(ACCESS_KEY, Some(SECRET_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
}
