//! Image derivatives (issue 18): sizes and fit modes on real photographs (scikit-image's
//! sample data, `scripts/test-images`), EXIF orientation, format negotiation with
//! `Accept` and `Vary`, signatures (tampered 403, expired 410), presets without one, the
//! original's access rules, garbage and bombs, one render for 100 concurrent requests
//! (counted at the backend), invalidation on overwrite, metrics, and `<img srcset>` in
//! headless Chromium.

mod browser;
mod ready;
mod store;

use crate::harness::{Cold, Harness, Opts};
use crate::hot::probe::{Faults, Probe};
use crate::web::{http, put_typed, set_rule, sign};
use reqwest::StatusCode;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use strata::images::options::{Options, sign as sign_image};
use strata::policy::link::LinkKeys;

const LINK_SECRET: &str = "image-test-secret-0123456789";

/// The config of every test: a link key, two presets, a hot tier.
fn toml(extra: &str) -> String {
    format!(
        "{extra}\n[hot]\nmin_free = \"0B\"\n[[web.link_keys]]\nid = \"img1\"\nsecret = \"{LINK_SECRET}\"\n\
         [images.presets.thumb]\nwidth = 200\nheight = 200\nfit = \"cover\"\n\
         [images.presets.screen]\nwidth = 1024\nformat = \"jpeg\"\n"
    )
}

async fn start(cold: Cold, extra: &str) -> Harness {
    Harness::start_opts(cold, Opts { toml: toml(extra), wrap: None }).await
}

async fn start_probed(extra: &str, faults: impl Fn() -> Faults + Send + Sync + 'static) -> (Harness, Arc<Probe>) {
    let (wrap, slot) = crate::hot::wrap_with(faults);
    let h = Harness::start_opts(Cold::Fs, Opts { toml: toml(extra), wrap: Some(wrap) }).await;
    let p = slot.lock().unwrap().clone().unwrap();
    (h, p)
}

/// scikit-image's sample photographs (fetched by `scripts/test-images`).
pub(crate) fn sample(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("STRATA_TEST_IMAGES").map(PathBuf::from).unwrap_or_else(|| {
        let out = std::process::Command::new("scripts/test-images").output().expect("scripts/test-images runs");
        assert!(out.status.success(), "scripts/test-images failed: {}", String::from_utf8_lossy(&out.stderr));
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    });
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A large JPEG made from a sample: `name` resized to `w` × `h`, with an optional EXIF
/// orientation.
pub(crate) fn large_jpeg(name: &str, w: u32, h: u32, orientation: Option<u16>) -> Vec<u8> {
    let img = image::load_from_memory(&sample(name)).unwrap().resize_exact(w, h, image::imageops::FilterType::Triangle);
    let rgb = img.into_rgb8();
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 85);
    if let Some(o) = orientation {
        let mut t = b"II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0".to_vec();
        t.extend(u32::from(o).to_le_bytes());
        t.extend(0u32.to_le_bytes());
        enc.add_exif_metadata(&t).unwrap();
    }
    enc.encode(rgb.as_raw(), w as u16, h as u16, jpeg_encoder::ColorType::Rgb).unwrap();
    out
}

fn keys() -> LinkKeys {
    LinkKeys::new(vec![("img1".into(), LINK_SECRET.as_bytes().to_vec())])
}

/// The path of a signed derivative of `bucket`/`key`.
pub(crate) fn signed(bucket: &str, key: &str, opts: &str, expires: Option<i64>) -> String {
    let o = Options::parse(opts, 4096).unwrap();
    format!("/{bucket}/{key}?{}", sign_image(&keys(), bucket, key, &o, expires).unwrap())
}

struct Got {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    fn size(&self) -> (u32, u32) {
        let img = image::load_from_memory(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {} {}", self.status, String::from_utf8_lossy(&self.body)));
        (img.width(), img.height())
    }
}

async fn fetch(h: &Harness, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut r = http(h).get(format!("http://{}{path}", h.addr));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    Got { status, headers, body: resp.bytes().await.unwrap().to_vec() }
}

/// The `images` part of the status JSON (the derivative counters).
async fn image_stats(h: &Harness) -> serde_json::Value {
    let url = format!("http://{}/_strata/status.json", h.addr);
    let r = http(h).get(url).basic_auth(crate::harness::ACCESS_KEY, Some(crate::harness::SECRET_KEY)).send();
    r.await.unwrap().json::<serde_json::Value>().await.unwrap()["images"].clone()
}

const WEBP: (&str, &str) = ("accept", "image/avif,image/webp,image/apng,*/*;q=0.8");

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod on_fs { $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::Cold::Fs).await })* }
        mod on_garage { $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::Cold::Garage).await })* }
    };
}

both!(sizes_fits_and_formats_of_real_photographs);

async fn sizes_fits_and_formats_of_real_photographs(cold: Cold) {
    let h = start(cold, "").await;
    h.bucket("pics").await;
    set_rule(&h, "pics", "", json!({ "access": "public-read" })).await;
    // coffee.png is 600 × 400; chelsea.png 451 × 300.
    put_typed(&h, "pics", "coffee.png", &sample("coffee.png"), Some("image/png"), None).await;
    put_typed(&h, "pics", "chelsea.png", &sample("chelsea.png"), Some("image/png"), None).await;
    put_typed(&h, "pics", "rocket.jpg", &sample("rocket.jpg"), Some("image/jpeg"), None).await;
    let big = large_jpeg("astronaut.png", 6000, 4000, None);
    put_typed(&h, "pics", "big.jpg", &big, Some("image/jpeg"), None).await;

    // A preset needs no signature; the format follows Accept, and says so in Vary.
    let t = fetch(&h, "/pics/coffee.png?im=thumb", &[WEBP]).await;
    assert_eq!(t.status, 200, "{}", String::from_utf8_lossy(&t.body));
    assert_eq!((t.header("content-type"), t.header("vary"), t.size()), ("image/webp", "Accept", (200, 200)));
    assert_eq!(t.header("x-cache"), "MISS");
    assert_eq!(t.header("cache-control"), "public, max-age=3600", "the original's public rule");
    // AVIF by name (signed): never chosen by `Accept`, so no `Vary`.
    let a = fetch(&h, &signed("pics", "coffee.png", "w120,avif", None), &[WEBP]).await;
    assert_eq!((a.status, a.header("content-type"), a.header("vary")), (StatusCode::OK, "image/avif", ""));
    assert_eq!(&a.body[4..12], b"ftypavif", "an AVIF file");
    let j = fetch(&h, "/pics/coffee.png?im=thumb", &[("accept", "image/png,*/*")]).await;
    assert_eq!((j.header("content-type"), j.size()), ("image/jpeg", (200, 200)));
    assert_ne!(j.header("etag"), t.header("etag"), "each format has its own validator");
    let again = fetch(&h, "/pics/coffee.png?im=thumb", &[WEBP]).await;
    assert_eq!((again.header("x-cache"), &again.body), ("HIT", &t.body), "the second ask is a hot-tier hit");
    let cond = fetch(&h, "/pics/coffee.png?im=thumb", &[WEBP, ("if-none-match", t.header("etag"))]).await;
    assert_eq!(cond.status, 304);
    let screen = fetch(&h, "/pics/big.jpg?im=screen", &[WEBP]).await;
    assert_eq!((screen.header("content-type"), screen.header("vary"), screen.size()), ("image/jpeg", "", (1024, 683)));

    // Signed options: each fit mode on a 600 × 400 photograph in a 300 × 300 box.
    for (fit, want) in [("cover", (300, 300)), ("contain", (300, 300)), ("fill", (300, 300)), ("inside", (300, 200))] {
        let g = fetch(&h, &signed("pics", "coffee.png", &format!("w300,h300,{fit},png"), None), &[]).await;
        assert_eq!((g.status, g.header("content-type"), g.size()), (StatusCode::OK, "image/png", want), "{fit}");
    }
    let cases = [
        ("chelsea.png", "w100,jpeg", (100, 67)),
        ("chelsea.png", "h50,webp", (75, 50)),
        ("chelsea.png", "w100,dpr2,jpeg", (200, 133)),
        ("chelsea.png", "w2000,jpeg", (451, 300)), // never enlarged
        ("big.jpg", "w400,webp,q60", (400, 267)),
        ("big.jpg", "w400,h400,cover,jpeg", (400, 400)),
    ];
    for (key, opts, want) in cases {
        let g = fetch(&h, &signed("pics", key, opts, None), &[]).await;
        assert_eq!((g.status, g.size()), (StatusCode::OK, want), "{key} {opts}");
    }
    let rocket = image::load_from_memory(&sample("rocket.jpg")).unwrap();
    let g = fetch(&h, &signed("pics", "rocket.jpg", "w100,png", None), &[]).await;
    let ratio = f64::from(rocket.height()) / f64::from(rocket.width());
    assert_eq!(g.size(), (100, (100.0 * ratio).round() as u32));

    // Unsigned options, a tampered signature, another object's signature, an expired one.
    let unsigned = fetch(&h, "/pics/coffee.png?im=w300,png", &[]).await;
    assert_eq!(unsigned.status, 403);
    let good = signed("pics", "coffee.png", "w300,png", None);
    assert_eq!(fetch(&h, &good.replace("w300", "w301"), &[]).await.status, 403);
    assert_eq!(fetch(&h, &good.replace("coffee.png", "chelsea.png"), &[]).await.status, 403);
    let past = signed("pics", "coffee.png", "w300,png", Some(1_000));
    assert_eq!(fetch(&h, &past, &[]).await.status, 410);
    let future = signed("pics", "coffee.png", "w300,png", Some(4_000_000_000));
    assert_eq!(fetch(&h, &future, &[]).await.status, 200);
    let bad = fetch(&h, "/pics/coffee.png?im=w300,blur", &[]).await;
    assert_eq!(bad.status, 400, "{}", String::from_utf8_lossy(&bad.body));
    assert_eq!(fetch(&h, "/pics/missing.png?im=thumb", &[]).await.status, 404);

    // The metrics of docs/metrics.md's Images section exist and moved.
    let metrics = http(&h).get(format!("http://{}/metrics", h.addr)).send().await.unwrap().text().await.unwrap();
    let section = crate::status::metric_sections().into_iter().find(|(t, _)| t.starts_with("Images")).unwrap().1;
    assert!(section.len() >= 5, "{section:?}");
    for n in section {
        assert!(metrics.lines().any(|l| l.starts_with(n.as_str())), "{n} is documented but not in /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exif_orientation_of_a_photograph_is_applied() {
    let h = start(Cold::Fs, "").await;
    h.bucket("pics").await;
    set_rule(&h, "pics", "", json!({ "access": "public-read" })).await;
    // Stored 800 × 600, shown (orientation 6: turned a quarter clockwise) 600 × 800.
    put_typed(&h, "pics", "turned.jpg", &large_jpeg("coffee.png", 800, 600, Some(6)), None, None).await;
    let g = fetch(&h, &signed("pics", "turned.jpg", "w150,jpeg", None), &[]).await;
    assert_eq!(g.size(), (150, 200), "the derivative is upright");
    assert!(!g.body.windows(6).any(|w| w == b"Exif\0\0"), "metadata is stripped by default");
    let kept = fetch(&h, &signed("pics", "turned.jpg", "w150,jpeg,meta", None), &[]).await;
    assert!(kept.body.windows(6).any(|w| w == b"Exif\0\0"), "meta keeps it");
    assert_eq!(kept.size(), (150, 200));
    // The status page counts them.
    let page = reqwest::Client::new()
        .get(format!("http://{}/_strata/status", h.addr))
        .basic_auth(crate::harness::ACCESS_KEY, Some(crate::harness::SECRET_KEY))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let section = page.split("<h2>Image derivatives</h2>").nth(1).expect("an images section");
    assert!(section.contains("<td class=\"num\">2 (mean"), "two renders: {section}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_derivative_is_as_protected_as_its_original() {
    let h = start(Cold::Fs, "").await;
    h.bucket("site").await;
    set_rule(&h, "site", "", json!({ "access": "public-read" })).await;
    set_rule(&h, "site", "private/", json!({ "access": "private" })).await;
    set_rule(&h, "site", "signed/", json!({ "access": "signed" })).await;
    set_rule(&h, "site", "gallery/", json!({ "access": "password", "password": "gallery pw" })).await;
    let photo = sample("chelsea.png");
    for key in ["private/a.png", "signed/a.png", "gallery/a.png"] {
        put_typed(&h, "site", key, &photo, Some("image/png"), None).await;
    }
    assert_eq!(fetch(&h, "/site/private/a.png?im=thumb", &[]).await.status, 403);
    // A valid image signature does not open a private original.
    assert_eq!(fetch(&h, &signed("site", "private/a.png", "w100,png", None), &[]).await.status, 403);
    assert_eq!(fetch(&h, "/site/signed/a.png?im=thumb", &[]).await.status, 403);
    assert_eq!(fetch(&h, "/site/gallery/a.png?im=thumb", &[]).await.status, 401);
    // A signed link to the original opens its derivatives, never for shared caches.
    let link = sign(&h, "site", "signed/a.png", &[("expires", "10m")]).await;
    let g = fetch(&h, &format!("{link}&im=thumb"), &[]).await;
    assert_eq!((g.status, g.size()), (StatusCode::OK, (200, 200)));
    assert_eq!(g.header("cache-control"), "private, no-store");
    let basic = ("authorization", "Basic dXNlcjpnYWxsZXJ5IHB3"); // user:gallery pw
    let g = fetch(&h, "/site/gallery/a.png?im=thumb", &[basic]).await;
    assert_eq!((g.status, g.header("cache-control")), (StatusCode::OK, "private, no-store"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_truncation_and_bombs_get_a_clear_4xx() {
    let h = start(Cold::Fs, "[images]\nmax_source_bytes = \"2MiB\"\n").await;
    h.bucket("pics").await;
    set_rule(&h, "pics", "", json!({ "access": "public-read" })).await;
    let jpeg = sample("rocket.jpg");
    put_typed(&h, "pics", "notes.txt", b"this is not a picture at all", Some("text/plain"), None).await;
    put_typed(&h, "pics", "cut.jpg", &jpeg[..200], Some("image/jpeg"), None).await;
    put_typed(&h, "pics", "bomb.png", &bomb_png(200_000, 200_000), Some("image/png"), None).await;
    put_typed(&h, "pics", "huge.jpg", &vec![0xFF; 3 << 20], Some("image/jpeg"), None).await;
    for (key, want) in [("notes.txt", 415), ("cut.jpg", 422), ("bomb.png", 422), ("huge.jpg", 422)] {
        let g = fetch(&h, &format!("/pics/{key}?im=thumb"), &[]).await;
        let text = String::from_utf8_lossy(&g.body).into_owned();
        assert_eq!(g.status.as_u16(), want, "{key}: {text}");
        assert!(text.len() > 20 && g.header("content-type").starts_with("text/plain"), "{key}: a reason: {text}");
    }
    // The originals are still served as they are.
    assert_eq!(fetch(&h, "/pics/notes.txt", &[]).await.status, 200);
    let metrics = http(&h).get(format!("http://{}/metrics", h.addr)).send().await.unwrap().text().await.unwrap();
    for reason in ["not-an-image", "unreadable", "too-large"] {
        let line = format!("strata_image_rejections_total{{reason=\"{reason}\"}}");
        assert!(metrics.lines().any(|l| l.starts_with(&line)), "{line} missing");
    }
}

/// A 1 × 1 PNG whose header claims `w` × `h`: a decompression bomb's header.
fn bomb_png(w: u32, h: u32) -> Vec<u8> {
    let mut png = crate::web::browser::png(1, 1);
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_requests_make_one_render() {
    // The bucket bypasses the hot tier, so without single flight every request would read
    // the original from the store: the backend's read count is the render count.
    let extra = "[buckets.pics]\nbackend = \"local\"\nhot = false\n";
    let (h, p) = start_probed(extra, || Faults { delay: Duration::from_millis(200), ..Default::default() }).await;
    set_rule(&h, "pics", "", json!({ "access": "public-read" })).await;
    put_typed(&h, "pics", "coffee.png", &sample("coffee.png"), Some("image/png"), None).await;
    let before = p.reads();
    let client = http(&h);
    let url = format!("http://{}/pics/coffee.png?im=thumb", h.addr);
    let asks = (0..100).map(|_| {
        let (c, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            let r = c.get(url).header(WEBP.0, WEBP.1).send().await.unwrap();
            (r.status(), r.bytes().await.unwrap())
        })
    });
    let answers: Vec<_> = futures::future::join_all(asks).await.into_iter().map(Result::unwrap).collect();
    assert!(answers.iter().all(|(s, b)| *s == 200 && *b == answers[0].1), "every answer is the same derivative");
    assert_eq!(p.reads() - before, 1, "100 concurrent requests for a new derivative read the original once");
    // Now it is in the hot tier: no more reads, whatever the original's bucket says.
    assert_eq!(fetch(&h, "/pics/coffee.png?im=thumb", &[WEBP]).await.header("x-cache"), "HIT");
    assert_eq!(p.reads() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overwriting_or_deleting_the_original_invalidates_its_derivatives() {
    let (h, p) = start_probed("", Faults::default).await;
    h.bucket("pics").await;
    set_rule(&h, "pics", "", json!({ "access": "public-read" })).await;
    put_typed(&h, "pics", "k.png", &sample("coffee.png"), Some("image/png"), None).await;
    let path = signed("pics", "k.png", "w120,png", None);
    let first = fetch(&h, &path, &[]).await;
    assert_eq!((first.header("x-cache"), first.size()), ("MISS", (120, 80)));
    assert_eq!(fetch(&h, &path, &[]).await.header("x-cache"), "HIT");
    let stats = h.hot_stats();
    assert!(stats.chunks >= 1, "the derivative is counted in the hot tier: {stats:?}");
    // astronaut.png is 512 × 512: a stale derivative would still be 120 × 80.
    put_typed(&h, "pics", "k.png", &sample("astronaut.png"), Some("image/png"), None).await;
    let reads = p.reads();
    let second = fetch(&h, &path, &[]).await;
    assert_eq!((second.header("x-cache"), second.size()), ("MISS", (120, 120)), "the new original's derivative");
    assert_ne!(second.header("etag"), first.header("etag"));
    assert!(p.reads() <= reads + 1, "the new original was read at most once from the store");
    h.client.delete_object().bucket("pics").key("k.png").send().await.unwrap();
    assert_eq!(fetch(&h, &path, &[]).await.status, 404, "no derivative outlives its original");
}

/// Runs the real binary's `strata images …` against `h`: (success, stdout, stderr).
fn cli(h: &Harness, args: &[&str]) -> (bool, String, String) {
    let conf = h.dir.path().join("cli.toml");
    std::fs::write(&conf, format!("[[web.link_keys]]\nid = \"img1\"\nsecret = \"{LINK_SECRET}\"\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("images")
        .args(args)
        .arg("--config")
        .arg(&conf)
        .arg("--data-dir")
        .arg(h.dir.path().join("data"))
        .env("STRATA_ACCESS_KEY", crate::harness::ACCESS_KEY)
        .env("STRATA_SECRET_KEY", crate::harness::SECRET_KEY)
        .output()
        .unwrap();
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), s(&out.stdout), s(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn warm_renders_presets_ahead_and_a_rerun_renders_nothing() {
    let h = start(Cold::Fs, "").await;
    h.bucket("pics").await;
    set_rule(&h, "pics", "", json!({ "access": "public-read" })).await;
    let names = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png"];
    for n in names {
        put_typed(&h, "pics", &format!("album/{n}"), &sample(n), None, None).await;
    }
    put_typed(&h, "pics", "album/notes.txt", b"not an image", None, None).await;
    put_typed(&h, "pics", "elsewhere/coffee.png", &sample("coffee.png"), None, None).await;
    let endpoint = format!("http://{}", h.addr);
    // thumb's format is auto (WebP and JPEG are warmed), screen's is JPEG: 3 per image.
    let (ok, out, err) = cli(&h, &["warm", "pics/album/", "--preset", "thumb,screen", "--endpoint", &endpoint]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("5 images: 15 derivatives rendered") && out.contains("1 skipped"), "{out}");
    let hit = fetch(&h, "/pics/album/coffee.png?im=thumb", &[WEBP]).await;
    assert_eq!((hit.header("x-cache"), hit.size()), ("HIT", (200, 200)), "warmed before the first request");
    assert_eq!(fetch(&h, "/pics/album/coffee.png?im=thumb", &[]).await.header("x-cache"), "HIT", "JPEG too");
    assert_eq!(fetch(&h, "/pics/elsewhere/coffee.png?im=thumb", &[]).await.header("x-cache"), "MISS", "the prefix");
    // A rerun (or a resumed run) makes nothing again.
    let (ok, out, err) = cli(&h, &["warm", "pics/album/", "--preset", "thumb,screen", "--endpoint", &endpoint]);
    assert!(ok && out.contains("0 derivatives rendered") && out.contains("15 already made"), "{out}\n{err}");
    let (ok, out, _) =
        cli(&h, &["warm", "pics/album/", "--preset", "thumb", "--after", "album/coffee.png", "--endpoint", &endpoint]);
    assert!(ok && out.starts_with("2 images"), "--after skips the keys up to it: {out}");
    let (ok, _, err) = cli(&h, &["warm", "pics", "--preset", "nope", "--endpoint", &endpoint]);
    assert!(!ok && err.contains("no preset") && err.contains("nope"), "{err}");
    // `strata images sign` makes URLs the server takes.
    let (ok, url, err) = cli(&h, &["sign", "pics/album/coffee.png", "w64,png", "--expires", "1h"]);
    assert!(ok, "{err}");
    let g = fetch(&h, url.trim(), &[]).await;
    assert_eq!((g.status, g.size()), (StatusCode::OK, (64, 43)), "{url}");
    let (ok, _, err) = cli(&h, &["sign", "pics/album/coffee.png", "w64,sepia"]);
    assert!(!ok && err.contains("sepia"), "{err}");
}

/// Issue 18: a warm reads each original once for all its presets, past the hot tier unless
/// the tier holds it already, so warming a library does not evict the working set; a
/// request keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn warm_reads_originals_past_the_hot_tier_unless_they_are_hot() {
    let (h, p) = start_probed("", Faults::default).await;
    h.bucket("pics").await;
    set_rule(&h, "pics", "", json!({ "access": "public-read" })).await;
    for n in ["astronaut.png", "chelsea.png", "coffee.png"] {
        put_typed(&h, "pics", &format!("w/{n}"), &sample(n), None, None).await;
    }
    // chelsea.png is hot (read by a client): the warm reads it from the hot tier.
    for _ in 0..2 {
        assert_eq!(fetch(&h, "/pics/w/chelsea.png", &[]).await.status, StatusCode::OK);
    }
    let (chunks, reads) = (h.hot_stats().chunks, p.reads());
    let endpoint = format!("http://{}", h.addr);
    // Three derivatives per image (thumb as WebP and JPEG, screen), one read per original.
    let (ok, out, err) = cli(&h, &["warm", "pics/w/", "--preset", "thumb,screen", "--endpoint", &endpoint]);
    assert!(ok && out.contains("3 images: 9 derivatives rendered"), "{out}\n{err}");
    assert_eq!(p.reads() - reads, 2, "the two cold originals were read from the store once each");
    assert_eq!(h.hot_stats().chunks - chunks, 9, "only the derivatives were kept, not the originals");
    let g = fetch(&h, "/pics/w/coffee.png?im=screen", &[]).await;
    assert_eq!((g.header("x-cache"), g.size()), ("HIT", (600, 400)));
    // A request for a derivative not made yet reads its original through the hot tier.
    let (chunks, reads) = (h.hot_stats().chunks, p.reads());
    assert_eq!(fetch(&h, &signed("pics", "w/coffee.png", "w50,png", None), &[]).await.header("x-cache"), "MISS");
    assert_eq!((p.reads() - reads, h.hot_stats().chunks - chunks), (1, 2), "the original and the derivative kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_render_queue_answers_503_with_retry_after() {
    // One render thread and one place in its queue: a burst of distinct derivatives of a
    // large photograph overflows it.
    let h = start(Cold::Fs, "[images]\nconcurrency = 1\nqueue = 1\n").await;
    h.bucket("pics").await;
    set_rule(&h, "pics", "", json!({ "access": "public-read" })).await;
    put_typed(&h, "pics", "big.jpg", &large_jpeg("astronaut.png", 6000, 4000, None), None, None).await;
    let client = http(&h);
    let asks = (0..12).map(|i| {
        let (c, url) = (
            client.clone(),
            format!("http://{}{}", h.addr, signed("pics", "big.jpg", &format!("w{},png", 100 + i), None)),
        );
        tokio::spawn(async move {
            let r = c.get(url).send().await.unwrap();
            (r.status().as_u16(), r.headers().get("retry-after").is_some())
        })
    });
    let answers: Vec<(u16, bool)> = futures::future::join_all(asks).await.into_iter().map(Result::unwrap).collect();
    assert!(answers.iter().all(|a| *a == (200, false) || *a == (503, true)), "{answers:?}");
    assert!(answers.iter().any(|a| a.0 == 503), "the burst overflowed the queue: {answers:?}");
    assert!(answers.iter().any(|a| a.0 == 200), "{answers:?}");
    // Once the burst is over, the same derivatives render.
    let g = fetch(&h, &signed("pics", "big.jpg", "w111,png", None), &[]).await;
    assert_eq!((g.status, g.size()), (StatusCode::OK, (111, 74)));
}
