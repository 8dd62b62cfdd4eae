//! Issue 22: the hot-hit fast path (ready answers, `src/api/web/ready.rs`). A GET of a
//! small public object that the memory tier holds is answered without a stream; the
//! answer must be the full path's, byte for byte and header for header, and never stale.

use super::{hdr, http, put_typed, set_rule, start};
use crate::harness::{Cold, Harness};
use serde_json::json;

/// The headers of an answer that do not change between two answers of one version.
fn head_of(r: &reqwest::Response) -> Vec<(String, String)> {
    crate::harness::stable_headers(r, &["date", "x-cache"])
}

fn whole_hits(h: &Harness) -> u64 {
    h.hot_stats().whole_hits
}

/// A strata (config `extra`) with bucket "pics" public, and a plain HTTP client.
async fn public_pics(extra: &str) -> (Harness, reqwest::Client) {
    let h = start(Cold::Fs, extra).await;
    let c = http(&h);
    h.bucket("pics").await;
    set_rule(&h, "pics", "", json!({ "access": "public-read" })).await;
    (h, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ready_hit_answers_as_the_full_path_and_is_never_stale() {
    let (h, c) = public_pics("").await;
    let photo: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
    put_typed(&h, "pics", "a.jpg", &photo, Some("image/jpeg"), None).await;
    let url = format!("http://{}/pics/a.jpg", h.addr);

    let miss = c.get(&url).send().await.unwrap();
    assert_eq!(hdr(&miss, "x-cache"), "MISS");
    let full_head = head_of(&miss);
    assert_eq!(miss.bytes().await.unwrap().as_ref(), &photo[..]);

    // The first hit reads the hot file and brings the chunk into memory (a one-hit
    // object never takes memory); from then on the answers are ready.
    let before = whole_hits(&h);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!((hdr(&r, "x-cache"), head_of(&r)), ("HIT", full_head.clone()));
    assert_eq!(r.bytes().await.unwrap().as_ref(), &photo[..]);
    assert_eq!(whole_hits(&h), before, "a hit from the hot file is not a ready answer");
    for _ in 0..5 {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!((r.status().as_u16(), hdr(&r, "x-cache")), (200, "HIT"));
        assert_eq!(head_of(&r), full_head, "a ready answer has the full path's headers");
        assert_eq!(r.bytes().await.unwrap().as_ref(), &photo[..]);
    }
    assert_eq!(whole_hits(&h) - before, 5, "the five hits were ready answers");

    // What the fast path leaves to the full path still works, and reads no bytes.
    let before = whole_hits(&h);
    let r = c.get(&url).header("range", "bytes=10-19").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &photo[10..20]);
    let r = c.head(&url).send().await.unwrap();
    assert_eq!(hdr(&r, "content-length"), "20000");
    // A revalidation, by ETag or by date, is answered ready, from the row alone, with the
    // full path's 304 (an If-Unmodified-Since in the future beside it, which changes no
    // answer, sends it down the full path); a stale ETag gets the object.
    let etag = full_head.iter().find(|(n, _)| n == "etag").unwrap().1.clone();
    let modified = full_head.iter().find(|(n, _)| n == "last-modified").unwrap().1.clone();
    for (name, value) in [("if-none-match", &etag), ("if-modified-since", &modified)] {
        let far = "Fri, 01 Jan 2100 00:00:00 GMT";
        let full = c.get(&url).header(name, value).header("if-unmodified-since", far).send().await.unwrap();
        let ready = c.get(&url).header(name, value).send().await.unwrap();
        assert_eq!((full.status().as_u16(), ready.status().as_u16()), (304, 304), "{name}");
        assert_eq!(head_of(&ready), head_of(&full), "a ready 304 to {name} has the full path's headers");
        assert_eq!(hdr(&ready, "cache-control"), "public, max-age=3600");
        assert!(ready.bytes().await.unwrap().is_empty());
    }
    assert_eq!(whole_hits(&h), before, "ranges, HEAD and 304s read no bytes");
    let r = c.get(&url).header("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT").send().await.unwrap();
    assert_eq!((r.status().as_u16(), hdr(&r, "x-cache")), (200, "HIT"));
    assert_eq!(head_of(&r), full_head, "modified since: the whole object, ready");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &photo[..]);
    assert_eq!(whole_hits(&h), before + 1);
    let before = whole_hits(&h);
    let r = c.get(&url).header("if-none-match", "\"stale\"").send().await.unwrap();
    assert_eq!((r.status().as_u16(), hdr(&r, "x-cache")), (200, "HIT"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), &photo[..]);
    assert_eq!(whole_hits(&h), before + 1, "a revalidation of another version gets a ready 200");

    // An overwrite is served at once, with its own validators.
    let newer: Vec<u8> = photo.iter().rev().copied().collect();
    put_typed(&h, "pics", "a.jpg", &newer, Some("image/jpeg"), None).await;
    for _ in 0..3 {
        let r = c.get(&url).send().await.unwrap();
        assert_ne!(hdr(&r, "etag"), etag, "no stale validator");
        assert_eq!(r.bytes().await.unwrap().as_ref(), &newer[..], "no stale bytes");
    }

    // A rule's Cache-Control applies from the next answer on.
    set_rule(&h, "pics", "", json!({ "access": "public-read", "cache_control": "public, max-age=5" })).await;
    let r = c.get(&url).send().await.unwrap();
    assert_eq!((hdr(&r, "x-cache"), hdr(&r, "cache-control")), ("HIT", "public, max-age=5"));

    // Access is checked on every request, ready or not.
    set_rule(&h, "pics", "", json!({ "access": "private" })).await;
    assert_eq!(c.get(&url).send().await.unwrap().status(), 403);
    set_rule(&h, "pics", "", json!({ "access": "public-read" })).await;
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);

    h.client.delete_object().bucket("pics").key("a.jpg").send().await.unwrap();
    assert_eq!(c.get(&url).send().await.unwrap().status(), 404, "a deleted object is gone at once");

    // A body whose answer depends on Accept-Encoding is never answered ready.
    let css = "a { color: red }\n".repeat(400);
    put_typed(&h, "pics", "s.css", css.as_bytes(), Some("text/css"), None).await;
    let url = format!("http://{}/pics/s.css", h.addr);
    c.get(&url).send().await.unwrap().bytes().await.unwrap();
    let before = whole_hits(&h);
    let r = c.get(&url).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!((hdr(&r, "content-encoding"), hdr(&r, "vary")), ("gzip", "Accept-Encoding"));
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(hdr(&r, "content-encoding"), "");
    assert_eq!(r.text().await.unwrap(), css);
    assert_eq!(whole_hits(&h), before, "negotiated answers take the full path");
}

/// Issue 22: rows now stay cached past their 2 s TTL while the change feed polls, so a
/// write by another process on the SQLite file (what `strata import` does) must reach the
/// cache through the feed: here well within the 2 s for which the TTL alone would have
/// served the row the put had just cached (lag 200 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_by_another_process_reaches_the_row_cache_within_the_lag() {
    use std::time::{Duration, Instant};
    let (h, c) = public_pics("[cluster]\ninvalidation_lag = \"200ms\"\n").await;
    let url = format!("http://{}/pics/k", h.addr);
    // Another process on the same catalog file.
    let other = strata::catalog::Catalog::connect(h.cfg.catalog.as_deref().unwrap()).await.unwrap();
    for round in 0..3 {
        put_typed(&h, "pics", "k", b"kept", Some("text/plain"), None).await;
        let cached = Instant::now(); // the put left its row in the cache
        for _ in 0..3 {
            assert_eq!(c.get(&url).send().await.unwrap().status(), 200, "round {round}");
        }
        assert!(other.delete_object("pics", "k").await.unwrap());
        let mut status = 200;
        while status != 404 && cached.elapsed() < Duration::from_millis(1500) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            status = c.get(&url).send().await.unwrap().status().as_u16();
        }
        assert_eq!(status, 404, "round {round}: the other process's delete, before the row's TTL ran out");
    }
    other.close().await;
}
