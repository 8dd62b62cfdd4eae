//! Issue 18 (the cached-derivative case) and issue 22: a derivative this node keeps in the
//! memory tier is answered ready (`src/api/web/image.rs`, `ready_derivative`). The answer
//! must be the full path's header for header and byte for byte, its options authorised
//! on every request, and never stale.

use super::{Got, WEBP, fetch, image_stats, sample, signed, start};
use crate::harness::{Cold, Harness};
use crate::web::{put_typed, set_rule};
use reqwest::StatusCode;
use serde_json::json;

/// The derivatives answered ready so far (`images.ready_hits` of the status JSON).
async fn ready_hits(h: &Harness) -> u64 {
    image_stats(h).await["ready_hits"].as_u64().expect("images.ready_hits in the status JSON")
}

/// The headers of an answer that do not change between two answers of one derivative.
fn head_of(g: &Got) -> Vec<(String, String)> {
    let mut v: Vec<_> = g
        .headers
        .iter()
        .filter(|(n, _)| n.as_str() != "date")
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kept_derivative_is_answered_ready_as_the_full_path_answers() {
    let h = start(Cold::Fs, "").await;
    h.bucket("pics").await;
    set_rule(&h, "pics", "", json!({ "access": "public-read" })).await;
    put_typed(&h, "pics", "c.png", &sample("coffee.png"), Some("image/png"), None).await;
    let path = "/pics/c.png?im=thumb";

    let miss = fetch(&h, path, &[WEBP]).await;
    assert_eq!((miss.status, miss.header("x-cache"), miss.header("vary")), (StatusCode::OK, "MISS", "Accept"));
    // The first hit reads the derivative from its hot file (and so brings it into
    // memory): the full path's answer, the reference for every ready one.
    let full = fetch(&h, path, &[WEBP]).await;
    assert_eq!((full.header("x-cache"), full.body == miss.body), ("HIT", true));
    assert_eq!(ready_hits(&h).await, 0, "a hit from the hot file is not a ready answer");
    for _ in 0..5 {
        let g = fetch(&h, path, &[WEBP]).await;
        assert_eq!(head_of(&g), head_of(&full), "a ready answer has the full path's headers");
        assert!(g.body == full.body, "and its bytes");
    }
    assert_eq!(ready_hits(&h).await, 5, "the five hits were ready answers");

    // An explicit `webp` shares the derivative (one tag) but not `Vary`: a shared cache
    // must never get the negotiated answer's headers without it, nor the other way round.
    let explicit = signed("pics", "c.png", "w200,h200,cover,webp", None);
    for _ in 0..3 {
        let g = fetch(&h, &explicit, &[]).await;
        assert_eq!((g.header("vary"), g.header("content-type"), g.body == full.body), ("", "image/webp", true));
    }
    assert_eq!(fetch(&h, path, &[WEBP]).await.header("vary"), "Accept");
    let before = ready_hits(&h).await;
    assert_eq!(fetch(&h, &explicit, &[]).await.header("vary"), "");
    assert_eq!(ready_hits(&h).await, before + 1, "answered ready with its own heads");

    // Another Accept is another derivative (JPEG): made once, then ready too.
    let jpeg = fetch(&h, path, &[("accept", "image/jpeg")]).await;
    assert_eq!((jpeg.header("x-cache"), jpeg.header("content-type")), ("MISS", "image/jpeg"));
    for _ in 0..3 {
        let g = fetch(&h, path, &[("accept", "image/jpeg")]).await;
        assert_eq!((g.header("content-type"), g.body == jpeg.body), ("image/jpeg", true));
    }
    assert!(ready_hits(&h).await >= 6);

    // Revalidations: a 304 with the validators and no body, a 412 from the full path.
    let before = ready_hits(&h).await;
    let etag = full.header("etag").to_owned();
    let g = fetch(&h, path, &[WEBP, ("if-none-match", &etag)]).await;
    assert_eq!((g.status, g.header("etag"), g.body.len()), (StatusCode::NOT_MODIFIED, etag.as_str(), 0));
    assert_eq!((g.header("vary"), g.header("cache-control")), ("Accept", full.header("cache-control")));
    assert_eq!(g.header("content-type"), "", "a 304 names no type, as the full path's");
    let g = fetch(&h, path, &[WEBP, ("if-match", "\"other\"")]).await;
    assert_eq!(g.status, StatusCode::PRECONDITION_FAILED);
    let g = fetch(&h, path, &[WEBP, ("if-none-match", "\"other\"")]).await;
    assert_eq!((g.status, g.body == full.body), (StatusCode::OK, true));
    assert_eq!(ready_hits(&h).await, before + 1, "only the 200 sent bytes");

    // Signed options are checked on every request, hot or not.
    let s = signed("pics", "c.png", "w90,png", None);
    let first = fetch(&h, &s, &[]).await;
    assert_eq!((first.status, first.size()), (StatusCode::OK, (90, 60)));
    for _ in 0..3 {
        assert_eq!(fetch(&h, &s, &[]).await.body, first.body);
    }
    let tampered = s.replace("w90", "w91");
    assert_eq!(fetch(&h, &tampered, &[]).await.status, StatusCode::FORBIDDEN);
    let flipped = if s.ends_with('0') { '1' } else { '0' };
    let bad_sig = format!("{}{flipped}", &s[..s.len() - 1]);
    assert_eq!(fetch(&h, &bad_sig, &[]).await.status, StatusCode::FORBIDDEN);
    let expired = signed("pics", "c.png", "w90,png", Some(1));
    assert_eq!(fetch(&h, &expired, &[]).await.status, StatusCode::GONE);

    // The original's rules first: made private, its hot derivative is refused.
    set_rule(&h, "pics", "", json!({ "access": "private" })).await;
    assert_eq!(fetch(&h, path, &[WEBP]).await.status, StatusCode::FORBIDDEN);
    set_rule(&h, "pics", "", json!({ "access": "public-read" })).await;
    assert_eq!(fetch(&h, path, &[WEBP]).await.body, full.body);

    // Never stale: an overwrite is a new derivative at once, a delete a 404.
    put_typed(&h, "pics", "c.png", &sample("astronaut.png"), Some("image/png"), None).await;
    let g = fetch(&h, path, &[WEBP]).await;
    assert_eq!((g.header("x-cache"), g.size()), ("MISS", (200, 200)), "the new original's derivative");
    assert!(g.header("etag") != etag && g.body != full.body);
    h.client.delete_object().bucket("pics").key("c.png").send().await.unwrap();
    assert_eq!(fetch(&h, path, &[WEBP]).await.status, StatusCode::NOT_FOUND);
}
