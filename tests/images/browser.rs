//! Headless Chromium loads a page with three derivatives in `<img srcset>` (a preset
//! negotiated by `Accept`, and two signed option lists, one at 2x) and reports their
//! natural sizes, as in `tests/web/browser.rs`.

use super::{sample, signed, start};
use crate::harness::Cold;
use crate::web::{put_typed, set_rule};
use serde_json::{Value, json};
use std::time::Duration;

const PAGE: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>srcset</title></head><body>
<img id="thumb" srcset="/site/coffee.png?im=thumb 1x">
<img id="small" srcset="SMALL 1x">
<img id="large" srcset="LARGE 1x" width="300">
<script>
const r = {};
let n = 0;
function done(k, v) { r[k] = v; if (++n === 3) fetch('/site/report?r=' + encodeURIComponent(JSON.stringify(r))); }
for (const id of ['thumb', 'small', 'large']) {
  const el = document.getElementById(id);
  const seen = () => done(id, el.naturalWidth ? [el.naturalWidth, el.naturalHeight] : 'error');
  if (el.complete) seen(); else { el.onload = seen; el.onerror = seen; }
}
setTimeout(() => fetch('/site/report?r=' + encodeURIComponent(JSON.stringify({timeout: true, r}))), 45000);
</script></body></html>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn srcset_derivatives_load_in_chromium_at_their_sizes() {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| std::process::Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("headless Chromium is needed: scripts/test installs Debian's chromium package");
    let h = start(Cold::Fs, "[web]\naccess_log = \"access.log\"\naccess_log_format = \"json\"\n").await;
    h.bucket("site").await;
    set_rule(&h, "site", "", json!({ "access": "public-read" })).await;
    put_typed(&h, "site", "coffee.png", &sample("coffee.png"), Some("image/png"), None).await;
    let page = PAGE
        .replace("SMALL", &signed("site", "coffee.png", "w100,png", None))
        .replace("LARGE", &signed("site", "coffee.png", "w300,dpr2,jpeg", None));
    put_typed(&h, "site", "index.html", page.as_bytes(), Some("text/html"), None).await;
    let profile = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{}/site/index.html", h.addr))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = h.cfg.web.access_log.clone().unwrap();
    let mut lines: Vec<Value> = Vec::new();
    let mut report = None;
    for _ in 0..600 {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        report = lines.iter().find_map(|l| l["uri"].as_str()?.strip_prefix("/site/report?r=").map(str::to_owned));
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
    assert_eq!(r["thumb"], json!([200, 200]), "{r}");
    assert_eq!(r["small"], json!([100, 67]), "{r}");
    assert_eq!(r["large"], json!([600, 400]), "{r}");
    let thumb = lines.iter().find(|l| l["uri"] == "/site/coffee.png?im=thumb").expect("the thumb was asked for");
    assert_eq!(thumb["status"], 200, "{thumb}");
    println!("{thumb}");
}
