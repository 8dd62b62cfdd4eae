//! Headless Chromium loads a page with four derivatives in `<img srcset>` (a preset
//! negotiated by `Accept`, and three signed option lists: one at 2x, one AVIF) and
//! reports their natural sizes, as in `tests/web/browser.rs`.

use super::{sample, signed, start};
use crate::harness::Cold;
use crate::web::browser::{chromium, page_report};
use crate::web::{put_typed, set_rule};
use serde_json::json;

const PAGE: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>srcset</title></head><body>
<img id="thumb" srcset="/site/coffee.png?im=thumb 1x">
<img id="small" srcset="SMALL 1x">
<img id="large" srcset="LARGE 1x" width="300">
<img id="avif" srcset="AVIF 1x">
<script>
const r = {};
let n = 0;
function done(k, v) { r[k] = v; if (++n === 4) fetch('/site/report?r=' + encodeURIComponent(JSON.stringify(r))); }
for (const id of ['thumb', 'small', 'large', 'avif']) {
  const el = document.getElementById(id);
  const seen = () => done(id, el.naturalWidth ? [el.naturalWidth, el.naturalHeight] : 'error');
  if (el.complete) seen(); else { el.onload = seen; el.onerror = seen; }
}
setTimeout(() => fetch('/site/report?r=' + encodeURIComponent(JSON.stringify({timeout: true, r}))), 45000);
</script></body></html>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn srcset_derivatives_load_in_chromium_at_their_sizes() {
    let h = start(Cold::Fs, "[web]\naccess_log = \"access.log\"\naccess_log_format = \"json\"\n").await;
    h.bucket("site").await;
    set_rule(&h, "site", "", json!({ "access": "public-read" })).await;
    put_typed(&h, "site", "coffee.png", &sample("coffee.png"), Some("image/png"), None).await;
    let page = PAGE
        .replace("SMALL", &signed("site", "coffee.png", "w100,png", None))
        .replace("LARGE", &signed("site", "coffee.png", "w300,dpr2,jpeg", None))
        .replace("AVIF", &signed("site", "coffee.png", "w150,avif", None));
    put_typed(&h, "site", "index.html", page.as_bytes(), Some("text/html"), None).await;
    let url = format!("http://{}/site/index.html", h.addr);
    let (r, lines) = page_report(&h, chromium(), &url, "/site/report?r=", &[]).await;
    assert_eq!(r["thumb"], json!([200, 200]), "{r}");
    assert_eq!(r["small"], json!([100, 67]), "{r}");
    assert_eq!(r["large"], json!([600, 400]), "{r}");
    assert_eq!(r["avif"], json!([150, 100]), "Chromium decodes strata's AVIF: {r}");
    let thumb = lines.iter().find(|l| l["uri"] == "/site/coffee.png?im=thumb").expect("the thumb was asked for");
    assert_eq!(thumb["status"], 200, "{thumb}");
    println!("{thumb}");
}
