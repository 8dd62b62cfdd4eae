//! Load-balancer endpoints (`/health`, `/ready`, `/metrics`) and the status page.
//!
//! The status page is one server-rendered HTML document: inline CSS, inline SVG
//! sparklines, no script and no outside asset, so it works offline and behind any proxy.
//! It refreshes itself every 10 s. This module renders what `health` gathered; the only
//! thing it asks for itself is `/ready`'s catalog ping, which must be fresh.

use crate::health::{Health, Snapshot};
use crate::images::ImagesStats;
use crate::tier::Tier;
use http::{Response, StatusCode};
use serde_json::json;
use std::fmt::Write;

/// An answer no cache keeps: these change every few seconds.
fn reply(status: StatusCode, body: String, ctype: &'static str) -> Response<s3s::Body> {
    let mut r = super::reply::with_type(status, body, ctype);
    r.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    r
}

/// `/health`: liveness. The process answers, so it is alive.
pub fn health() -> Response<s3s::Body> {
    reply(StatusCode::OK, "ok\n".into(), "text/plain")
}

/// `/ready`: 200 when the catalog answers now and the server is not draining (`draining`:
/// a shutdown or a successor taking over), else 503. Backends that are down, journal
/// entries stuck for good, and each store's backlog (entries, lag, latest failure) are
/// listed but do not make strata unready: it still serves.
pub async fn ready(tier: &Tier, health: &Health, draining: bool) -> Response<s3s::Body> {
    let catalog = tier.ping().await;
    let degraded = health.degraded();
    let stuck: serde_json::Map<String, serde_json::Value> =
        health.stuck().into_iter().map(|(store, n)| (store, n.into())).collect();
    let backlog: serde_json::Map<String, serde_json::Value> = health
        .backlog()
        .into_iter()
        .map(|s| (s.store, json!({ "entries": s.entries, "lag_s": s.lag_s, "last_error": s.last_error })))
        .collect();
    let ready = catalog.is_ok() && !draining;
    let body = json!({
        "ready": ready,
        "draining": draining,
        "catalog": catalog.as_ref().err().map_or("ok", String::as_str),
        "degraded_backends": degraded,
        "stuck_entries": stuck,
        "backlog": backlog,
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    reply(status, format!("{body}\n"), "application/json")
}

/// `/metrics`: Prometheus text.
pub fn metrics() -> Response<s3s::Body> {
    reply(StatusCode::OK, crate::telemetry::render(), "text/plain; version=0.0.4")
}

/// The snapshot as JSON (for `strata status`), with the derivative counters.
pub fn status_json(s: &Snapshot, images: Option<&ImagesStats>) -> Response<s3s::Body> {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let (Some(o), Some(i)) = (v.as_object_mut(), images) {
        o.insert("images".into(), serde_json::to_value(i).unwrap_or_default());
    }
    reply(StatusCode::OK, v.to_string(), "application/json")
}

/// The status page.
pub fn status_html(s: &Snapshot, images: Option<&ImagesStats>) -> Response<s3s::Body> {
    reply(StatusCode::OK, render(s, images), "text/html; charset=utf-8")
}

/// Derivatives since the start: renders, their mean time, hot-tier hits, bytes saved
/// against the originals, refusals by reason.
fn images_section(i: &ImagesStats) -> String {
    let refused: Vec<String> = i.rejections.iter().map(|(r, n)| format!("{} {n}", esc(r))).collect();
    format!(
        "<h2>Image derivatives</h2><table id=\"images\"><tr><th>rendered</th><td class=\"num\">{} (mean {:.1} ms)</td></tr>\
         <tr><th>from the hot tier</th><td class=\"num\">{} ({} ready)</td></tr><tr><th>from images.store</th><td class=\"num\">{}</td></tr><tr><th>saved against originals</th><td class=\"num\">{}</td></tr>\
         <tr><th>refused</th><td>{}</td></tr></table>",
        i.renders,
        i.mean_render_ms,
        i.hits,
        i.ready_hits,
        i.store_hits,
        bytes(i.bytes_saved),
        if refused.is_empty() { "none".to_owned() } else { refused.join(", ") }
    )
}

/// Escapes text for HTML content and quoted attributes, `'` included (`html-escape`).
fn esc(s: &str) -> String {
    html_escape::encode_quoted_attribute(s).into_owned()
}

fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", units[u]) }
}

/// An inline SVG line of `points`, scaled to its maximum.
fn sparkline(points: &[f64]) -> String {
    let (w, h) = (120.0, 24.0);
    // One sample draws as a flat line, not as nothing.
    let one;
    let points = if points.len() == 1 {
        one = [points[0], points[0]];
        &one[..]
    } else {
        points
    };
    let max = points.iter().copied().fold(0.0f64, f64::max).max(1e-9);
    let n = points.len().max(2) as f64 - 1.0;
    let pts: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", i as f64 * w / n, h - v / max * (h - 2.0) - 1.0))
        .collect();
    format!(
        "<svg class=\"spark\" width=\"120\" height=\"24\" viewBox=\"0 0 120 24\"><rect width=\"120\" height=\"24\" fill=\"#f1f5f9\"/><polyline fill=\"none\" stroke=\"#2563eb\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        pts.join(" ")
    )
}

fn last(points: &[f64]) -> f64 {
    points.last().copied().unwrap_or(0.0)
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:2em;color:#111}table{border-collapse:collapse;margin-bottom:1.5em}\
td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}th{background:#f4f4f5}\
.up{color:#15803d}.degraded{color:#b45309}.down{color:#b91c1c;font-weight:bold}.num{font-variant-numeric:tabular-nums}\
.spark{vertical-align:middle}h2{margin-top:1.5em}";

fn render(s: &Snapshot, images: Option<&ImagesStats>) -> String {
    let mut h = String::new();
    let catalog =
        if s.catalog_ok { "ok".to_owned() } else { format!("DOWN: {}", s.catalog_error.as_deref().unwrap_or("")) };
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\">\
         <title>strata status</title><style>{STYLE}</style></head><body><h1>strata</h1>\
         <p>up <span id=\"uptime\" class=\"num\">{}</span> s · catalog <span id=\"catalog\" class=\"{}\">{}</span></p>",
        s.uptime_s,
        if s.catalog_ok { "up" } else { "down" },
        esc(&catalog)
    );
    h.push_str("<h2>Cold stores</h2><table id=\"backends\"><tr><th>backend</th><th>state</th><th>probe</th><th>latency, 10 min</th><th>reads, 10 min</th><th>errors</th></tr>");
    for b in &s.backends {
        let _ = write!(
            h,
            "<tr class=\"backend\" data-name=\"{n}\"><td>{n}</td><td class=\"{st}\" title=\"{err}\">{st}</td>\
             <td class=\"num\">{:.1} ms</td><td>{} <span class=\"num\">{:.1} ms</span></td>\
             <td>{} <span class=\"num\">{:.1} MiB/s</span></td><td class=\"num\">{}</td></tr>",
            b.probe_ms,
            sparkline(&b.latency_ms),
            last(&b.latency_ms),
            sparkline(&b.read_mib_s),
            last(&b.read_mib_s),
            b.errors,
            n = esc(&b.name),
            st = esc(&b.state),
            err = esc(b.last_error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</table><h2>Hot tier</h2>");
    match &s.hot {
        Some(t) => {
            let _ = write!(
                h,
                "<table id=\"hot\"><tr><th>used</th><td class=\"num\">{} of {}</td></tr>\
                 <tr><th>hit ratio</th><td>{} <span class=\"num\" id=\"hit-ratio\">{:.1}%</span> since start</td></tr>\
                 <tr><th>served</th><td class=\"num\">{} hot, {} cold</td></tr><tr><th>evictions</th><td class=\"num\">{}</td></tr></table>",
                bytes(t.used_bytes),
                bytes(t.max_bytes),
                sparkline(&t.hit_ratio_series),
                t.hit_ratio * 100.0,
                bytes(t.bytes_hot),
                bytes(t.bytes_cold),
                t.evictions
            );
        }
        None => h.push_str("<p>disabled (<code>hot.enabled = false</code>)</p>"),
    }
    journal_section(&mut h, s.journal.as_ref());
    certificates_section(&mut h, &s.certificates, crate::clock::now_secs());
    if let Some(i) = images {
        h.push_str(&images_section(i));
    }
    h.push_str("<h2>Most missed</h2><table id=\"missed\"><tr><th>bucket</th><th>key</th><th>misses</th></tr>");
    for m in &s.top_missed {
        let _ =
            write!(h, "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>", esc(&m.bucket), esc(&m.key), m.count);
    }
    h.push_str("</table><h2>Recent errors</h2><table id=\"errors\"><tr><th>time</th><th>where</th><th>error</th></tr>");
    for e in &s.recent_errors {
        let _ = write!(h, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&e.ts), esc(&e.source), esc(&e.message));
    }
    if s.recent_errors.is_empty() {
        h.push_str("<tr><td colspan=\"3\">none</td></tr>");
    }
    h.push_str("</table></body></html>\n");
    h
}

/// Days before expiry from which the page warns about a certificate.
const CERT_WARN_DAYS: i64 = 14;

/// The TLS certificates in force, with a warning for those that expire within 14 days.
fn certificates_section(h: &mut String, certs: &[crate::tls::CertView], now: i64) {
    if certs.is_empty() {
        return;
    }
    h.push_str("<h2>Certificates</h2><table id=\"certificates\"><tr><th>certificate</th><th>expires in</th></tr>");
    for c in certs {
        let days = (c.not_after - now).div_euclid(86_400);
        let (class, note) = match days {
            d if d < 0 => ("down", " <strong>expired</strong>"),
            d if d < CERT_WARN_DAYS => ("degraded", " <strong>renew it</strong>"),
            _ => ("up", ""),
        };
        let _ = write!(
            h,
            "<tr class=\"cert\"><td>{}</td><td class=\"{class} num\">{days} days{note}</td></tr>",
            esc(&c.name)
        );
    }
    h.push_str("</table>");
}

/// The journal's backlog and each store's replication lag.
fn journal_section(h: &mut String, j: Option<&crate::health::JournalView>) {
    h.push_str("<h2>Journal and replication</h2>");
    let Some(j) = j else {
        h.push_str("<p id=\"journal\">not sampled yet</p>");
        return;
    };
    let mode = if j.read_only { " <strong>read-only</strong>" } else { "" };
    let _ = write!(
        h,
        "<p id=\"journal\">staged <span class=\"num\">{} of {}</span>{mode}</p>\
         <table id=\"replication\"><tr><th>store</th><th>pending</th><th>bytes</th><th>stuck</th><th>lag</th><th>last error</th></tr>",
        bytes(j.staged_bytes),
        bytes(j.max_size)
    );
    for st in &j.stores {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1} s</td><td>{}</td></tr>",
            esc(&st.store),
            st.entries,
            bytes(st.bytes),
            st.stuck,
            st.lag_s,
            esc(st.last_error.as_deref().unwrap_or(""))
        );
    }
    h.push_str("</table>");
    nodes_section(h, &j.nodes);
}

/// The nodes that share the catalog; a node that is down with entries left is what its
/// writes wait for.
fn nodes_section(h: &mut String, nodes: &[crate::health::NodeLine]) {
    h.push_str(
        "<h2>Nodes</h2><table id=\"nodes\"><tr><th>node</th><th>address</th><th>health</th><th>entries</th>\
         <th>heartbeat</th><th>hot</th><th>share</th><th>from peers</th></tr>",
    );
    let all: u64 = nodes.iter().filter(|n| n.live).map(|n| n.hot_bytes).sum();
    for n in nodes {
        let share = if all == 0 || !n.live { 0.0 } else { 100.0 * n.hot_bytes as f64 / all as f64 };
        let health = match (n.live, n.entries) {
            (true, _) => "up".to_owned(),
            (false, 0) => format!("down ({})", n.state),
            (false, e) => format!("down: {e} writes waiting for it"),
        };
        let class = if n.live { "up" } else { "down" };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1} s ago</td>\
             <td class=\"num\">{}</td><td class=\"num\">{share:.0}%</td><td class=\"num\">{}</td></tr>",
            esc(&n.id),
            esc(&n.address),
            esc(&health),
            n.entries,
            n.heartbeat_age_s,
            bytes(n.hot_bytes),
            bytes(n.peer_bytes)
        );
    }
    h.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::BackendView;

    #[test]
    fn page_escapes_and_draws() {
        let s = Snapshot {
            catalog_ok: true,
            backends: vec![BackendView {
                name: "s3<main>".into(),
                state: "up".into(),
                latency_ms: vec![1.0, 3.0, 2.0],
                ..Default::default()
            }],
            ..Default::default()
        };
        let html = render(&s, None);
        assert!(html.contains("s3&lt;main&gt;") && !html.contains("s3<main>"));
        assert!(html.contains("<polyline"));
        assert!(!html.contains("http://") && !html.contains("https://"), "no outside assets");
    }

    #[test]
    fn certificates_warn_two_weeks_ahead() {
        let now = 1_000_000_000;
        let cert =
            |name: &str, days: i64| crate::tls::CertView { name: name.into(), not_after: now + days * 86_400 + 60 };
        let mut h = String::new();
        certificates_section(&mut h, &[cert("fine.test", 90), cert("soon.test", 13), cert("gone.test", -1)], now);
        assert!(h.contains("fine.test</td><td class=\"up num\">90 days</td>"), "{h}");
        assert!(h.contains("soon.test</td><td class=\"degraded num\">13 days <strong>renew it</strong>"), "{h}");
        assert!(h.contains("gone.test</td><td class=\"down num\">-1 days <strong>expired</strong>"), "{h}");
        let mut none = String::new();
        certificates_section(&mut none, &[], now);
        assert!(none.is_empty(), "no section without TLS");
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }
}
