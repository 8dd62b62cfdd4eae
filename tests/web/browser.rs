//! Headless Chromium against the media origin: an image from a signed link (and a
//! tampered one that must not load), a login to a password-protected gallery through the
//! login page, and an audio element that seeks (Range requests).
//!
//! The page reports what it saw by requesting `/site/report?r=…`; the test reads that
//! line, and the 206 answers for the audio, from the access log.

use super::{http, put_typed, set_rule, sign, start};
use crate::harness::{Cold, Harness};
use serde_json::{Value, json};
use std::time::Duration;

/// A valid PNG of `w`×`h` opaque pixels (stored deflate blocks, no compression).
pub(crate) fn png(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut c = crc32fast::Hasher::new();
        c.update(kind);
        c.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&c.finalize().to_be_bytes());
    }
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0); // filter: none
        for x in 0..w {
            raw.extend_from_slice(&[(x * 7) as u8, (y * 5) as u8, 200]);
        }
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, b) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        z.extend_from_slice(&(b.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(b.len() as u16)).to_le_bytes());
        z.extend_from_slice(b);
    }
    let (mut a, mut bsum) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        bsum = (bsum + a) % 65_521;
    }
    z.extend_from_slice(&((bsum << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A mono 16-bit PCM WAV tone of `secs` seconds at 16 kHz.
fn wav(secs: u32) -> Vec<u8> {
    let rate = 16_000u32;
    let n = rate * secs;
    let mut out = Vec::with_capacity(44 + 2 * n as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + 2 * n).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&[1, 0, 1, 0]);
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&[2, 0, 16, 0]);
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(2 * n).to_le_bytes());
    for i in 0..n {
        let s = ((i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin() * 8000.0) as i16;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

const PAGE: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>media test</title></head><body>
<img id="signed" src="SIGNED"><img id="tampered" src="TAMPERED">
<audio id="audio" preload="metadata" src="/site/media/tone.wav"></audio>
<script>
const r = {};
const done = new Set();
function finish(k, v) { if (done.has(k)) return; done.add(k); r[k] = v; if (done.size === 4) report(); }
function report() { fetch('/site/report?r=' + encodeURIComponent(JSON.stringify(r))); }
setTimeout(() => { r.timeout = true; report(); }, 45000);
const s = document.getElementById('signed');
const img = (el, k) => { if (el.complete && el.naturalWidth) finish(k, el.naturalWidth);
  el.onload = () => finish(k, el.naturalWidth); el.onerror = () => finish(k, 'error'); };
img(s, 'signed');
img(document.getElementById('tampered'), 'tampered');
const a = document.getElementById('audio');
a.addEventListener('loadedmetadata', () => { r.duration = a.duration; a.currentTime = a.duration * 0.9; });
a.addEventListener('seeked', () => finish('seeked', a.currentTime));
a.addEventListener('error', () => finish('seeked', 'error ' + (a.error && a.error.code)));
// Made here, so its first load cannot fire before the listener exists.
const g = document.createElement('iframe');
let step = 0;
g.addEventListener('load', () => onGallery().catch(e => finish('gallery', 'exception: ' + e)));
async function onGallery() {
  const d = g.contentDocument;
  if (step === 0) {
    step = 1;
    r.before = (await fetch('/site/gallery/a.png')).status;
    const f = d.getElementById('login');
    if (!f) { finish('gallery', 'no login form'); return; }
    d.getElementById('password').value = 'gallery pw';
    f.submit();
  } else {
    const pic = d.getElementById('pic');
    if (!pic) { finish('gallery', 'no gallery page: ' + d.title); return; }
    const check = () => pic.naturalWidth ? finish('gallery', pic.naturalWidth) : finish('gallery', 'image did not load');
    if (pic.complete) check(); else { pic.onload = check; pic.onerror = check; }
  }
}
g.src = '/site/gallery/index.html';
document.body.appendChild(g);
</script></body></html>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_image_gallery_login_and_audio_seek_in_chromium() {
    let chromium = chromium();
    let h = start(Cold::Fs, "access_log = \"access.log\"\naccess_log_format = \"json\"\n").await;
    h.bucket("site").await;
    set_rule(&h, "site", "", json!({ "access": "public-read" })).await;
    set_rule(&h, "site", "private/", json!({ "access": "signed" })).await;
    set_rule(&h, "site", "gallery/", json!({ "access": "password", "password": "gallery pw" })).await;
    put_typed(&h, "site", "private/photo.png", &png(64, 48), Some("image/png"), None).await;
    put_typed(&h, "site", "gallery/a.png", &png(32, 32), Some("image/png"), None).await;
    let gallery =
        "<!doctype html><html><head><title>gallery</title></head><body><img id=\"pic\" src=\"a.png\"></body></html>";
    put_typed(&h, "site", "gallery/index.html", gallery.as_bytes(), Some("text/html"), None).await;
    let tone = wav(240);
    put_typed(&h, "site", "media/tone.wav", &tone, Some("audio/wav"), None).await;
    let signed = sign(&h, "site", "private/photo.png", &[("expires", "10m")]).await;
    let tampered = signed.replace("ss=", "ss=A").replace("ss=AA", "ss=B");
    let page = PAGE.replace("TAMPERED", &tampered).replace("SIGNED", &signed);
    put_typed(&h, "site", "index.html", page.as_bytes(), Some("text/html"), None).await;
    assert_eq!(http(&h).get(format!("http://{}/site/private/photo.png", h.addr)).send().await.unwrap().status(), 403);

    let url = format!("http://{}/site/index.html", h.addr);
    let (r, lines) =
        page_report(&h, chromium, &url, "/site/report?r=", &["--autoplay-policy=no-user-gesture-required"]).await;
    println!("report: {r}");
    for l in lines.iter().filter(|l| l["uri"].as_str().is_some_and(|u| u.contains("gallery") || u.contains("login"))) {
        println!("{l}");
    }
    assert_eq!(r.get("timeout"), None, "the page timed out: {r}");
    assert_eq!(r["signed"], 64, "the signed image loads: {r}");
    assert_eq!(r["tampered"], "error", "the tampered link does not: {r}");
    assert_eq!(r["before"], 401, "the gallery needs the password first: {r}");
    assert_eq!(r["gallery"], 32, "after the login page, the gallery image loads: {r}");
    let duration = r["duration"].as_f64().unwrap_or(0.0);
    assert!((duration - 240.0).abs() < 0.5, "audio duration {duration}: {r}");
    let at = r["seeked"].as_f64().unwrap_or_else(|| panic!("audio did not seek: {r}"));
    assert!((at - 216.0).abs() < 1.0, "seeked to {at}, wanted 216: {r}");
    let ranged = lines.iter().filter(|l| l["uri"] == "/site/media/tone.wav" && l["status"] == 206).count();
    assert!(ranged >= 1, "the audio element used no Range request: {lines:?}");
    let bytes: u64 =
        lines.iter().filter(|l| l["uri"] == "/site/media/tone.wav").filter_map(|l| l["bytes"].as_u64()).sum();
    println!("audio: {ranged} ranged responses, {bytes} of {} bytes sent", tone.len());
}

/// Loads `url` in headless `chromium` (with `flags`) and waits up to 60 s for the page's
/// report: a request whose URI starts with `prefix` and ends in JSON, read from `h`'s JSON
/// access log. Returns the report and every access-log line.
pub(crate) async fn page_report(
    h: &Harness,
    chromium: &str,
    url: &str,
    prefix: &str,
    flags: &[&str],
) -> (Value, Vec<Value>) {
    let profile = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = h.cfg.web.access_log.clone().expect("the page reports through the access log");
    let mut report = None;
    let mut lines: Vec<Value> = Vec::new();
    for _ in 0..600 {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        report = lines.iter().find_map(|l| l["uri"].as_str()?.strip_prefix(prefix).map(str::to_owned));
        if report.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let report = report.unwrap_or_else(|| panic!("the page never reported; {} log lines", lines.len()));
    let report = percent_encoding::percent_decode_str(&report).decode_utf8_lossy().into_owned();
    let r: Value = serde_json::from_str(&report).unwrap_or_else(|e| panic!("{e}: {report}"));
    (r, lines)
}

/// The first headless Chromium on the PATH.
pub(crate) fn chromium() -> &'static str {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| std::process::Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("headless Chromium is needed: scripts/test installs Debian's chromium package")
}
