//! Issue 18, "optionally they are also written to a derivatives store, so they survive
//! the loss of the cache": with `images.store`, a derivative the hot tier lost is read
//! back from the store instead of rendered, and a new version of the original never finds
//! an old copy.

use super::{fetch, image_stats, sample, start_probed};
use crate::harness::{ACCESS_KEY, Harness, SECRET_KEY};
use crate::hot::probe::Faults;
use crate::web::{put_typed, set_rule};
use serde_json::json;

/// Drops every hot chunk of bucket `pics`: originals and derivatives.
async fn evict_all(h: &Harness) {
    let url = format!("http://{}/_strata/cache/evict?bucket=pics&prefix=", h.addr);
    let r = reqwest::Client::new().post(url).basic_auth(ACCESS_KEY, Some(SECRET_KEY)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// The files under `dir`, recursively.
fn files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map_or(0, |d| d.map(|e| e.unwrap().path()).map(|p| if p.is_dir() { files(&p) } else { 1 }).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_derivatives_store_outlives_the_hot_tier() {
    let keep = tempfile::tempdir().unwrap();
    let extra =
        format!("[images]\nstore = \"keep\"\n[backends.keep]\ntype = \"fs\"\nroot = \"{}\"\n", keep.path().display());
    let (h, p) = start_probed(&extra, Faults::default).await;
    h.bucket("pics").await;
    set_rule(&h, "pics", "", json!({ "access": "public-read" })).await;
    put_typed(&h, "pics", "c.png", &sample("coffee.png"), Some("image/png"), None).await;
    let path = "/pics/c.png?im=thumb";

    let reads = p.reads();
    let first = fetch(&h, path, &[]).await;
    assert_eq!((first.header("x-cache"), first.size()), ("MISS", (200, 200)));
    assert_eq!(p.reads() - reads, 1, "the original was read to render it");
    assert_eq!(files(keep.path()), 1, "a copy went to the store");

    // The hot tier loses everything: the copy is read back, nothing is rendered again.
    evict_all(&h).await;
    let reads = p.reads();
    let back = fetch(&h, path, &[]).await;
    assert_eq!((back.status.as_u16(), back.body == first.body), (200, true), "the same bytes");
    assert_eq!(back.header("etag"), first.header("etag"));
    assert_eq!(p.reads(), reads, "the original was not read");
    let s = image_stats(&h).await;
    assert_eq!((s["renders"].as_u64(), s["store_hits"].as_u64()), (Some(1), Some(1)), "{s}");
    assert_eq!(fetch(&h, path, &[]).await.header("x-cache"), "HIT", "and it is hot again");

    // A new original never finds the old copy: rendered, and stored beside it.
    put_typed(&h, "pics", "c.png", &sample("astronaut.png"), Some("image/png"), None).await;
    evict_all(&h).await;
    let new = fetch(&h, path, &[]).await;
    assert_eq!((new.header("x-cache"), new.body != first.body), ("MISS", true));
    let s = image_stats(&h).await;
    assert_eq!((s["renders"].as_u64(), s["store_hits"].as_u64()), (Some(2), Some(1)), "{s}");
    assert_eq!(files(keep.path()), 2);
}
