//! Hot-tier tests (issue 3): single fetch per miss, the size bound, restart, corruption,
//! broken streams, invalidation on write, chunked range reads, operator controls and
//! metrics. Cold reads are counted by a probe wrapped around the backend.

pub(crate) mod probe;
mod signed;

use crate::harness::{ACCESS_KEY, Cold, Harness, Opts, SECRET_KEY, Wrap};
use aws_sdk_s3::primitives::ByteStream;
use probe::{Faults, Probe, Shared};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Slot = Arc<Mutex<Option<Arc<Probe>>>>;

pub(crate) fn wrap_with(faults: impl Fn() -> Faults + Send + Sync + 'static) -> (Wrap, Slot) {
    let slot: Slot = Arc::default();
    let s = slot.clone();
    let wrap: Wrap = Arc::new(move |inner| {
        let p = Probe::new(inner, faults());
        *s.lock().unwrap() = Some(p.clone());
        Arc::new(Shared(p))
    });
    (wrap, slot)
}

async fn start(cold: Cold, toml: &str, faults: impl Fn() -> Faults + Send + Sync + 'static) -> (Harness, Arc<Probe>) {
    let (wrap, slot) = wrap_with(faults);
    let h = Harness::start_opts(cold, Opts { toml: toml.to_owned(), wrap: Some(wrap) }).await;
    let p = slot.lock().unwrap().clone().unwrap();
    (h, p)
}

fn body(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed).collect()
}

/// Flips a byte near the end of one hot file (in its data, past the header).
fn damage_one_file(h: &Harness) {
    let file = hot_files(h).pop().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() - 1000;
    bytes[at] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
}

fn hot_files(h: &Harness) -> Vec<PathBuf> {
    let mut out = vec![];
    let Ok(dirs) = std::fs::read_dir(h.dir.path().join("data/hot/data")) else { return out };
    for d in dirs.flatten() {
        out.extend(std::fs::read_dir(d.path()).unwrap().flatten().map(|f| f.path()));
    }
    out
}

const SMALL: &str = "[hot]\nmin_free = \"0B\"\nchunk_size = \"64KiB\"\nmax_size = \"64MiB\"\n";

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod on_fs { $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::Cold::Fs).await })* }
        mod on_garage { $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::Cold::Garage).await })* }
    };
}

both!(hundred_concurrent_misses_cause_one_cold_get, range_read_fetches_only_its_chunks, writes_invalidate_hot_copies);

async fn hundred_concurrent_misses_cause_one_cold_get(cold: Cold) {
    let (h, p) = start(cold, "[hot]\nmin_free = \"0B\"\n", || Faults {
        delay: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    h.bucket("one").await;
    let data = body(1 << 20, 1);
    h.put("one", "big.bin", &data).await;
    let gets = (0..100).map(|_| {
        let c = h.client.clone();
        tokio::spawn(async move {
            let r = c.get_object().bucket("one").key("big.bin").send().await.unwrap();
            r.body.collect().await.unwrap().into_bytes()
        })
    });
    for g in futures::future::join_all(gets).await {
        assert!(g.unwrap() == data, "a reader got other bytes");
    }
    assert_eq!(p.reads(), 1, "100 concurrent misses must cause exactly one cold GET");
    let s = h.hot_stats();
    assert_eq!((s.misses, s.coalesced + s.hits + s.misses), (1, 100), "{s:?}");
    // And now it is hot: no further cold reads.
    assert!(h.get("one", "big.bin").await == data);
    assert_eq!(p.reads(), 1);
}

async fn range_read_fetches_only_its_chunks(cold: Cold) {
    let toml = "[hot]\nmin_free = \"0B\"\nchunk_size = \"64KiB\"\nfill_concurrency = 1\n";
    let (h, p) = start(cold, toml, Faults::default).await;
    h.bucket("rng").await;
    let data = body(1 << 20, 2);
    h.put("rng", "a.bin", &data).await;
    let r = h.client.get_object().bucket("rng").key("a.bin").range("bytes=200000-300000").send().await.unwrap();
    let got = r.body.collect().await.unwrap().into_bytes();
    assert!(got[..] == data[200000..=300000]);
    let k = 64 * 1024;
    assert_eq!(p.take_ranges(), vec![Some(3 * k..4 * k), Some(4 * k..5 * k)], "only chunks 3 and 4 are fetched");
    // The same range again is all hot.
    let r = h.client.get_object().bucket("rng").key("a.bin").range("bytes=200000-300000").send().await.unwrap();
    assert!(r.body.collect().await.unwrap().into_bytes()[..] == data[200000..=300000]);
    assert_eq!(p.reads(), 2);
}

async fn writes_invalidate_hot_copies(cold: Cold) {
    let (h, p) = start(cold, SMALL, Faults::default).await;
    h.bucket("inv").await;
    let (v1, v2, v3) = (body(200_000, 1), body(150_000, 2), body(70_000, 3));
    h.put("inv", "k", &v1).await;
    assert!(h.get("inv", "k").await == v1);
    assert!(h.get("inv", "k").await == v1);
    h.put("inv", "k", &v2).await;
    assert!(h.get("inv", "k").await == v2, "a reader after an acknowledged PUT got old bytes");
    h.put("inv", "src", &v3).await;
    h.client.copy_object().bucket("inv").key("k").copy_source("inv/src").send().await.unwrap();
    assert!(h.get("inv", "k").await == v3, "a reader after an acknowledged COPY got old bytes");
    h.client.delete_object().bucket("inv").key("k").send().await.unwrap();
    let gone = h.client.get_object().bucket("inv").key("k").send().await;
    assert_eq!(crate::harness::code(gone), "NoSuchKey");
    // Every chunk of the old versions is gone from the disk, not just hidden.
    let names: Vec<String> = hot_files(&h).iter().map(|p| p.display().to_string()).collect();
    let live_chunks = 70_000usize.div_ceil(65536);
    assert!(names.len() <= live_chunks, "stale hot files remain: {names:?}");
    assert!(p.reads() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn size_bound_holds_under_concurrent_fills() {
    let toml = "[hot]\nmin_free = \"0B\"\nchunk_size = \"64KiB\"\nmax_size = \"1MiB\"\n";
    let (h, _p) = start(Cold::Fs, toml, || Faults { delay: Duration::from_millis(5), ..Default::default() }).await;
    h.bucket("bound").await;
    let objects: Vec<Vec<u8>> = (0..40).map(|i| body(150_000, i)).collect();
    for (i, o) in objects.iter().enumerate() {
        h.put("bound", &format!("o{i}"), o).await;
    }
    let dir = h.dir.path().join("data/hot");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s2, d2) = (stop.clone(), dir.clone());
    let sampler = std::thread::spawn(move || {
        let mut max = 0u64;
        while !s2.load(std::sync::atomic::Ordering::SeqCst) {
            max = max.max(dir_bytes(&d2));
        }
        max
    });
    for _round in 0..3 {
        let gets = objects.iter().enumerate().map(|(i, o)| {
            let (c, o) = (h.client.clone(), o.clone());
            tokio::spawn(async move {
                let r = c.get_object().bucket("bound").key(format!("o{i}")).send().await.unwrap();
                assert!(r.body.collect().await.unwrap().into_bytes() == o);
            })
        });
        for g in futures::future::join_all(gets).await {
            g.unwrap();
        }
        assert!(h.hot_stats().used_bytes <= 1 << 20, "{:?}", h.hot_stats());
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let max = sampler.join().unwrap();
    let s = h.hot_stats();
    assert!(max <= 1 << 20, "hot files reached {max} bytes on disk, over the 1 MiB bound");
    assert!(max > 512 << 10, "the tier never filled up ({max} bytes); the test proves nothing");
    assert!(s.evictions > 0, "{s:?}");
}

/// Bytes of chunk files and temporary fill files under the hot directory.
fn dir_bytes(hot: &std::path::Path) -> u64 {
    let files = |d: &std::path::Path| -> u64 {
        let Ok(rd) = std::fs::read_dir(d) else { return 0 };
        rd.flatten().filter_map(|f| f.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
    };
    let Ok(dirs) = std::fs::read_dir(hot.join("data")) else { return 0 };
    dirs.flatten().map(|d| files(&d.path())).sum::<u64>() + files(&hot.join("tmp"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_keeps_hot_files_and_drops_damaged_ones() {
    let (mut h, p) = start(Cold::Fs, SMALL, Faults::default).await;
    h.bucket("rst").await;
    let (a, b) = (body(100_000, 1), body(30_000, 2));
    h.put("rst", "a", &a).await;
    h.put("rst", "b", &b).await;
    assert!(h.get("rst", "a").await == a && h.get("rst", "b").await == b);
    assert_eq!(p.reads(), 3, "a has two chunks, b one");
    // Truncate b's only chunk file: at start it must be dropped, not served.
    let files = hot_files(&h);
    assert_eq!(files.len(), 3);
    let small = files.iter().min_by_key(|f| f.metadata().unwrap().len()).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(small).unwrap();
    f.set_len(f.metadata().unwrap().len() - 100).unwrap();
    let (wrap, slot) = wrap_with(Faults::default);
    h.restart(Some(wrap)).await;
    let p = slot.lock().unwrap().clone().unwrap();
    assert!(h.get("rst", "a").await == a);
    assert_eq!(p.reads(), 0, "a was hot before the restart and must still be");
    assert!(h.get("rst", "b").await == b);
    assert_eq!(p.reads(), 1, "b's damaged chunk is fetched again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_hot_file_is_never_served() {
    let (h, p) = start(Cold::Fs, SMALL, Faults::default).await;
    h.bucket("cor").await;
    let data = body(50_000, 9);
    h.put("cor", "x", &data).await;
    assert!(h.get("cor", "x").await == data);
    damage_one_file(&h);
    assert!(h.get("cor", "x").await == data, "a corrupt hot file was served");
    assert_eq!(p.reads(), 2, "the damaged chunk is fetched again");
    assert_eq!(h.hot_stats().corrupt, 1);
    assert!(h.get("cor", "x").await == data);
    assert_eq!(p.reads(), 2, "the refetched chunk is hot again");
    let log = std::fs::read_to_string(h.dir.path().join("data/hot/misses.log")).unwrap();
    assert!(log.lines().any(|l| l.contains("\"reason\":\"corrupt\"") && l.contains("\"key\":\"x\"")), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_stream_never_gives_a_short_200_or_a_truncated_file() {
    // Stream mode: every cold read breaks after 100 KB, the one resumption included.
    let toml = "[hot]\nmin_free = \"0B\"\nchunk_size = \"1MiB\"\nfill_retries = 1\n";
    let (h, p) =
        start(Cold::Fs, toml, || Faults { break_after: Some(100_000), breaks: u64::MAX, ..Default::default() }).await;
    h.bucket("brk").await;
    let data = body(300_000, 4);
    h.put("brk", "x", &data).await;
    let r = h.client.get_object().bucket("brk").key("x").send().await;
    // Either the request fails, or its body does: never a complete-looking short body.
    if let Ok(r) = r {
        assert!(r.body.collect().await.is_err(), "a broken cold stream gave a complete response");
    }
    assert_eq!(p.reads(), 2, "the fill resumed once before giving up");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(hot_files(&h), Vec::<PathBuf>::new(), "a broken fill left a hot file");
    let tmp: Vec<_> = std::fs::read_dir(h.dir.path().join("data/hot/tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "temporary fill files remain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_and_forward_survives_a_stream_that_breaks_midway() {
    let toml = format!("{SMALL}[buckets.saf]\nbackend = \"local\"\nfill = \"store-and-forward\"\n");
    let (h, p) = start(Cold::Fs, &toml, || Faults { break_after: Some(50_000), breaks: 1, ..Default::default() }).await;
    let data = body(60_000, 5);
    h.put("saf", "x", &data).await;
    assert!(h.get("saf", "x").await == data);
    let ranges = p.take_ranges();
    assert_eq!(ranges, vec![Some(0..60_000), Some(50_000..60_000)], "one broken read, then one resumed where it broke");
    // When every attempt breaks, store-and-forward answers an error status, not a body.
    let toml = format!("{SMALL}fill_retries = 1\n[buckets.saf]\nbackend = \"local\"\nfill = \"store-and-forward\"\n");
    let (h, _p) =
        start(Cold::Fs, &toml, || Faults { break_after: Some(5_000), breaks: u64::MAX, ..Default::default() }).await;
    h.put("saf", "x", &data).await;
    let r = h.client.get_object().bucket("saf").key("x").send().await;
    assert_eq!(crate::harness::status(r), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_chunk_fetch_on_a_large_cold_miss() {
    let toml = "[hot]\nmin_free = \"0B\"\nchunk_size = \"64KiB\"\nfill_concurrency = 4\n";
    let (h, p) = start(Cold::Fs, toml, || Faults { delay: Duration::from_millis(20), ..Default::default() }).await;
    h.bucket("par").await;
    let data = body(2 << 20, 6);
    h.put("par", "big", &data).await;
    assert!(h.get("par", "big").await == data);
    assert_eq!(p.reads(), 32);
    let max = p.max_in_flight.load(std::sync::atomic::Ordering::SeqCst);
    assert!((2..=4).contains(&max), "{max} cold reads ran at once; want 2 to 4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revalidation_picks_up_changes_behind_stratas_back() {
    let (h, _p) = start(Cold::Fs, &format!("{SMALL}revalidate_after = \"1ms\"\n"), Faults::default).await;
    h.bucket("rvl").await;
    h.put("rvl", "k", b"old contents").await;
    assert_eq!(h.get("rvl", "k").await, b"old contents");
    tokio::time::sleep(Duration::from_millis(10)).await;
    h.cold_write("rvl", "k", b"new, longer contents").await;
    assert_eq!(h.get("rvl", "k").await, b"new, longer contents");
    // Without revalidation the catalog is trusted: the hot copy keeps being served.
    let (h, _p) = start(Cold::Fs, SMALL, Faults::default).await;
    h.bucket("rvl").await;
    h.put("rvl", "k", b"old contents").await;
    assert_eq!(h.get("rvl", "k").await, b"old contents");
    h.cold_write("rvl", "k", b"new, longer contents").await;
    assert_eq!(h.get("rvl", "k").await, b"old contents");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_controls_and_metrics() {
    let toml = "[hot]\nmin_free = \"0B\"\nchunk_size = \"64KiB\"\nmax_size = \"512KiB\"\n";
    let (h, p) = start(Cold::Fs, toml, Faults::default).await;
    h.bucket("ops").await;
    for i in 0..4 {
        h.put("ops", &format!("keep/{i}"), &body(50_000, i)).await;
    }
    for i in 0..20 {
        h.put("ops", &format!("other/{i}"), &body(60_000, i)).await;
    }
    let http = reqwest::Client::new();
    let base = format!("http://{}/_strata", h.addr);
    let admin = |m: reqwest::Method, route: &str| {
        http.request(m, format!("{base}/{route}")).basic_auth(ACCESS_KEY, Some(SECRET_KEY))
    };
    let denied = http.get(format!("{base}/cache/stats")).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let wrong = http.get(format!("{base}/cache/stats")).basic_auth(ACCESS_KEY, Some("nope")).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    // Pin keep/, warm it, then churn the cache with other/: keep/ stays hot.
    let r = admin(reqwest::Method::POST, "cache/pin?bucket=ops&prefix=keep/").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let warm = admin(reqwest::Method::POST, "cache/warm?bucket=ops&prefix=keep/").send().await.unwrap();
    let text = warm.text().await.unwrap();
    assert!(text.lines().last().unwrap().contains("\"done\":true"), "{text}");
    assert_eq!(p.reads(), 4);
    for _ in 0..2 {
        for i in 0..20 {
            h.get("ops", &format!("other/{i}")).await;
        }
    }
    assert!(h.hot_stats().evictions > 0);
    let before = p.reads();
    for i in 0..4 {
        assert!(h.get("ops", &format!("keep/{i}")).await == body(50_000, i));
    }
    assert_eq!(p.reads(), before, "pinned objects were evicted");
    // Explicit eviction drops them even while pinned.
    let r: serde_json::Value =
        admin(reqwest::Method::POST, "cache/evict?bucket=ops&prefix=keep/").send().await.unwrap().json().await.unwrap();
    assert_eq!(r["chunks"], 4);
    h.get("ops", "keep/0").await;
    assert_eq!(p.reads(), before + 1);
    // The CLI reads the same stats through the same API.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["cache", "stats", "--endpoint", &format!("http://{}", h.addr), "--data-dir"])
        .arg(h.dir.path().join("data"))
        .env("STRATA_ACCESS_KEY", ACCESS_KEY)
        .env("STRATA_SECRET_KEY", SECRET_KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["pins"][0], "ops/keep/");
    assert!(stats["hits"].as_u64().unwrap() >= 4);
    // Metrics exist and moved.
    let m = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    for name in [
        "strata_hot_hits_total",
        "strata_hot_misses_total",
        "strata_hot_bytes_total",
        "strata_hot_evictions_total",
        "strata_hot_used_bytes",
        "strata_hot_fill_seconds_bucket",
        "strata_backend_seconds_bucket",
        "strata_backend_read_bytes_total",
        "strata_backend_read_bytes_per_second_bucket",
    ] {
        assert!(m.lines().any(|l| l.starts_with(name)), "{name} missing from /metrics");
    }
    let _ = ByteStream::from_static(b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucket_can_opt_out_of_the_hot_tier() {
    let toml = format!("{SMALL}[buckets.cold-only]\nbackend = \"local\"\nhot = false\n");
    let (h, p) = start(Cold::Fs, &toml, Faults::default).await;
    let data = body(100_000, 7);
    h.put("cold-only", "x", &data).await;
    for _ in 0..3 {
        assert!(h.get("cold-only", "x").await == data);
    }
    assert_eq!(p.reads(), 3, "every read of an opted-out bucket goes to the cold store");
    assert!(hot_files(&h).is_empty());
    assert_eq!(h.hot_stats().misses, 0);
}

/// Issue 22: with `hot.memory_large`, a large chunk goes into memory on its second read
/// from a hot file, after every block of it passed its check; a chunk that fails its check
/// then is discarded and fetched again, never served; an overwrite drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_chunks_enter_memory_on_their_second_read_and_only_checked() {
    // One chunk fetched at a time, so that no chunk is read from its file during the miss.
    let toml = "[hot]\nchunk_size = \"1MiB\"\nfill_concurrency = 1\nmemory_size = \"8MiB\"\nmemory_large = true\n";
    let (h, p) = start(Cold::Fs, toml, Faults::default).await;
    h.bucket("big").await;
    let data = body(3 << 20, 5);
    h.put("big", "v", &data).await;
    assert!(h.get("big", "v").await == data, "the miss");
    let fetched = p.reads();
    assert!(h.get("big", "v").await == data, "the first read from the hot files");
    assert_eq!(h.hot_stats().memory_bytes, 0, "a chunk read once stays on disk only");

    // Damage one chunk's file: the read that would load it finds the damage, serves the
    // chunk fetched again, and loads the other two.
    damage_one_file(&h);
    assert!(h.get("big", "v").await == data, "a damaged chunk was served");
    assert_eq!((h.hot_stats().corrupt, p.reads()), (1, fetched + 1), "the damaged chunk is fetched again");
    assert_eq!(h.hot_stats().memory_bytes, 2 << 20, "the two sound chunks are in memory");

    // The refetched chunk joins them on its second read from its file.
    assert!(h.get("big", "v").await == data);
    assert!(h.get("big", "v").await == data);
    assert_eq!(h.hot_stats().memory_bytes, 3 << 20);

    // From memory now: the files are no longer read, and the bytes are right.
    for f in hot_files(&h) {
        std::fs::write(&f, b"gone").unwrap();
    }
    assert!(h.get("big", "v").await == data);
    assert_eq!((h.hot_stats().corrupt, p.reads()), (1, fetched + 1), "nothing read from a file or the store");

    let newer = body(3 << 20, 6);
    h.put("big", "v", &newer).await;
    assert_eq!(h.hot_stats().memory_bytes, 0, "an overwrite drops the old version's chunks");
    assert!(h.get("big", "v").await == newer);
}
