//! Operator's view (issue 7): documented metrics exist and move, health and readiness,
//! the status page (also in headless Chromium), `strata status`, the admin listener.

use crate::harness::{ACCESS_KEY, Cold, Harness, Opts, SECRET_KEY};
use std::time::Duration;

/// The metric names of each section of docs/metrics.md, by section title.
pub fn metric_sections() -> Vec<(String, Vec<String>)> {
    let doc = include_str!("../../docs/metrics.md");
    doc.split("\n## ")
        .map(|sec| {
            let title = sec.lines().next().unwrap_or("").to_owned();
            let mut names: Vec<String> = sec
                .lines()
                .filter_map(|l| l.strip_prefix("| `"))
                .filter_map(|l| l.split('`').next())
                .filter(|n| n.starts_with("strata_"))
                .map(str::to_owned)
                .collect();
            names.dedup();
            (title, names)
        })
        .collect()
}

/// Sections whose metrics exist only in some setups, each checked where it exists: TLS
/// (`tls::metrics_section`), the shared hot tier (`cluster::a_shared_hot_tier_…`) and
/// images (`images::…sizes_fits_and_formats_of_real_photographs`).
const ELSEWHERE: [&str; 3] = ["TLS", "Shared hot tier", "Images"];

/// The metrics of docs/metrics.md that every server has.
fn documented_metrics() -> Vec<String> {
    metric_sections()
        .into_iter()
        .filter(|(title, _)| !ELSEWHERE.iter().any(|t| title.starts_with(t)))
        .flat_map(|(_, names)| names)
        .collect()
}

async fn text(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of the first sample line of `metrics` that starts with `prefix`.
fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_documented_metric_exists_and_moves() {
    let h = Harness::start_opts(Cold::Fs, Opts { toml: "[hot]\nmin_free = \"0B\"\n".into(), wrap: None }).await;
    let names = documented_metrics();
    assert!(names.len() >= 15, "docs/metrics.md lists only {names:?}");
    h.bucket("met").await;
    h.put("met", "a", &vec![7u8; 100_000]).await;
    let url = format!("http://{}/metrics", h.addr);
    let before = text(&url).await.1;
    h.get("met", "a").await;
    h.get("met", "a").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, after) = text(&url).await;
    assert_eq!(status, 200);
    for n in &names {
        assert!(after.lines().any(|l| l.starts_with(n.as_str())), "{n} is documented but not in /metrics");
    }
    let gets = "strata_requests_total{op=\"GetObject\",status=\"200\"}";
    // The recorder is process-wide and other tests run beside this one: at least our 2.
    assert!(sample(&after, gets) - sample(&before, gets) >= 2.0, "GET count did not move by 2");
    let hot = "strata_hot_bytes_total{source=\"hot\"}";
    assert!(sample(&after, hot) > sample(&before, hot), "hot bytes did not move");
    let reads = "strata_backend_read_bytes_total{backend=\"local\"}";
    assert!(sample(&after, reads) >= sample(&before, reads) + 100_000.0, "backend bytes did not move");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_ready_status_and_a_bucket_called_health() {
    let h = Harness::start(Cold::Fs).await;
    let base = format!("http://{}", h.addr);
    assert_eq!(text(&format!("{base}/health")).await, (200, "ok\n".to_owned()));
    let (s, ready) = text(&format!("{base}/ready")).await;
    assert_eq!(s, 200, "{ready}");
    let v: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(v["ready"], true);
    // The page needs the keys.
    assert_eq!(text(&format!("{base}/_strata/status")).await.0, 401);
    let http = reqwest::Client::new();
    let page =
        http.get(format!("{base}/_strata/status")).basic_auth(ACCESS_KEY, Some(SECRET_KEY)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("data-name=\"local\""), "{html}");
    // "health" is a valid bucket name: signed S3 requests for it still reach S3.
    h.bucket("health").await;
    h.put("health", "k", b"v").await;
    assert_eq!(h.keys("health").await, vec!["k"]);
    assert_eq!(h.get("health", "k").await, b"v");
    // `strata status` prints the same view.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["status", "--endpoint", &base, "--data-dir"])
        .arg(h.dir.path().join("data"))
        .env("STRATA_ACCESS_KEY", ACCESS_KEY)
        .env("STRATA_SECRET_KEY", SECRET_KEY)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("catalog ok") && stdout.contains("cold stores:") && stdout.contains("local"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_listener_takes_the_operator_endpoints() {
    let h =
        Harness::start_opts(Cold::Fs, Opts { toml: "[admin]\nlisten = \"127.0.0.1:0\"\n".into(), wrap: None }).await;
    let admin = h.running.as_ref().unwrap().admin_addr().expect("admin listener");
    assert_eq!(text(&format!("http://{admin}/health")).await.0, 200);
    assert_eq!(text(&format!("http://{admin}/metrics")).await.0, 200);
    // On the main listener, an unsigned GET /metrics is an S3 request, refused unsigned.
    let (s, body) = text(&format!("http://{}/metrics", h.addr)).await;
    assert_eq!(s, 403, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_page_renders_in_headless_chromium() {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| std::process::Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("headless Chromium is needed: scripts/test installs Debian's chromium package");
    let h = Harness::start(Cold::Fs).await;
    h.bucket("page").await;
    h.put("page", "x", &[1u8; 5000]).await;
    h.get("page", "x").await;
    h.get("page", "x").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let url = format!("http://{ACCESS_KEY}:{SECRET_KEY}@{}/_strata/status", h.addr);
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let run = |extra: &[&str]| {
        let profile = tempfile::tempdir().unwrap();
        std::process::Command::new(chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let dom = run(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("<table id=\"backends\""), "no backends table in {dom}");
    assert!(dom.contains("data-name=\"local\""), "the local backend is not shown");
    assert!(dom.contains("<polyline"), "no sparkline");
    assert!(dom.contains("id=\"hit-ratio\""), "no hit ratio");
    assert!(dom.contains("<table id=\"replication\""), "no journal and replication table");
    let ratio = dom.split("id=\"hit-ratio\">").nth(1).and_then(|r| r.split('%').next()).unwrap_or("");
    assert!(ratio.parse::<f64>().is_ok_and(|r| r > 0.0), "hit ratio {ratio:?} should be a positive number");
    run(&[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).expect("Chromium saved a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 5000, "screenshot is not a real PNG");
}

#[test]
fn grafana_dashboard_uses_only_documented_metrics() {
    let dash: serde_json::Value = serde_json::from_str(include_str!("../../contrib/grafana-dashboard.json")).unwrap();
    let documented = documented_metrics();
    let mut used = 0;
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if let Some(name) = word.strip_prefix("strata_").map(|_| word.trim_end_matches("_bucket")) {
                    assert!(documented.iter().any(|d| d == name), "dashboard uses undocumented {name}");
                    used += 1;
                }
            }
        }
    }
    assert!(used >= 12);
}
