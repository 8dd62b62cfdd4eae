//! Issue 18, "optionally they are also written to a derivatives store, so they survive
//! the loss of the cache": with `images.store`, a derivative the hot tier lost is read
//! back from the store instead of rendered, and a new version of the original never finds
//! an old copy: overwriting or deleting the original removes its copies.

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

    // Another original's copy, which nothing below may touch.
    put_typed(&h, "pics", "d.png", &sample("coffee.png"), Some("image/png"), None).await;
    assert_eq!(fetch(&h, "/pics/d.png?im=thumb", &[]).await.header("x-cache"), "MISS");
    assert_eq!(files(keep.path()), 2);

    // A new original never finds the old copy: the overwrite removes it from the store,
    // and the new one is rendered and stored.
    put_typed(&h, "pics", "c.png", &sample("astronaut.png"), Some("image/png"), None).await;
    until_files(keep.path(), 1, "the old version's copy goes").await;
    evict_all(&h).await;
    let new = fetch(&h, path, &[]).await;
    assert_eq!((new.header("x-cache"), new.body != first.body), ("MISS", true));
    let s = image_stats(&h).await;
    assert_eq!((s["renders"].as_u64(), s["store_hits"].as_u64()), (Some(3), Some(1)), "{s}");
    assert_eq!(files(keep.path()), 2);

    // Deleting the original removes its copies; the other original's stays.
    h.client.delete_object().bucket("pics").key("c.png").send().await.unwrap();
    until_files(keep.path(), 1, "a deleted original's copies go").await;
    evict_all(&h).await;
    let other = fetch(&h, "/pics/d.png?im=thumb", &[]).await;
    assert_eq!(other.status.as_u16(), 200);
    assert_eq!(image_stats(&h).await["store_hits"].as_u64(), Some(2), "d.png's copy was read back");
}

/// Waits (up to 5 s: the store's copies go in the background) until `dir` holds `n` files.
async fn until_files(dir: &std::path::Path, n: usize, what: &str) {
    for _ in 0..50 {
        if files(dir) == n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(files(dir), n, "{what}");
}
