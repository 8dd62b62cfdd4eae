//! Admin routes for anonymous access (under `/_strata/`, behind the admin API's Basic
//! auth): access rules and serving modes changed at runtime, signed links, direct URLs.
//!
//! | method | path              | query                                  | answer                      |
//! |--------|-------------------|----------------------------------------|-----------------------------|
//! | GET    | /_strata/access   |                                        | `{"rules":[…],"serve":{…}}` |
//! | POST   | /_strata/access   | bucket, prefix; JSON body `RuleChange` | `{"changed":true}`          |
//! | DELETE | /_strata/access   | bucket, prefix                         | `{"cleared":bool}`          |
//! | POST   | /_strata/sign     | bucket, key, expires, ip, download     | `{"url","expires"}`         |
//! | GET    | /_strata/direct   | bucket, key                            | `{"url","expires"}`         |
//!
//! `direct` answers only for buckets whose serving mode is "direct": the URL it hands out
//! reaches the cold store without strata, so the access check is this admin call's.

use super::web::Web;
use crate::config::ServeMode;
use crate::policy::RuleChange;
use crate::policy::link::LinkParams;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// Whether `path` (after `/_strata/`) is one of these routes.
pub fn owns(path: &str) -> bool {
    matches!(path, "access" | "sign" | "direct")
}

fn bad(msg: impl Into<String>) -> (StatusCode, Value) {
    (StatusCode::BAD_REQUEST, json!({ "error": msg.into() }))
}

/// Answers one of these routes: (status, JSON body).
pub async fn handle(
    web: &Web,
    method: &Method,
    path: &str,
    q: &HashMap<String, String>,
    body: &[u8],
) -> (StatusCode, Value) {
    let arg = |k: &str| q.get(k).cloned().unwrap_or_default();
    match (method, path) {
        (&Method::GET, "access") => {
            let serve: serde_json::Map<String, Value> =
                web.policy().serve_modes().into_iter().map(|(b, m)| (b, json!(m.as_str()))).collect();
            (StatusCode::OK, json!({ "rules": web.policy().rules(), "serve": serve }))
        }
        (&Method::POST, "access") => {
            let change: RuleChange = match serde_json::from_slice(if body.is_empty() { b"{}" } else { body }) {
                Ok(c) => c,
                Err(e) => return bad(format!("the body is not a rule change: {e}")),
            };
            match web.policy().change(&arg("bucket"), &arg("prefix"), change).await {
                Ok(()) => (StatusCode::OK, json!({ "changed": true })),
                Err(e) if e.kind() == crate::error::ErrorKind::InvalidInput => bad(e.context()),
                Err(e) => (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": e.to_string() })),
            }
        }
        (&Method::DELETE, "access") => match web.policy().clear(&arg("bucket"), &arg("prefix")).await {
            Ok(gone) => (StatusCode::OK, json!({ "cleared": gone })),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": e.to_string() })),
        },
        (&Method::POST, "sign") => sign(web, q),
        (&Method::GET, "direct") => direct(web, &arg("bucket"), &arg("key")).await,
        _ => (StatusCode::METHOD_NOT_ALLOWED, json!({ "error": format!("{method} is not allowed here") })),
    }
}

/// Link parameters from `expires` (a duration such as "1h"), `ip` and `download`.
pub fn link_params(expires: &str, ip: Option<&str>, download: Option<&str>) -> Result<LinkParams, String> {
    let ttl = humantime::parse_duration(expires).map_err(|e| format!("expires: {e} (write e.g. \"1h\")"))?;
    if ttl.is_zero() || ttl > Duration::from_secs(10 * 365 * 86400) {
        return Err("expires: must be between 1s and 10 years".into());
    }
    let ip = match ip.filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse().map_err(|_| format!("ip: {s:?} is not an IP address"))?),
        None => None,
    };
    let now = crate::tier::now_ms() / 1000;
    let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    Ok(LinkParams { expires: now.saturating_add(secs), ip, download: download.map(str::to_owned) })
}

fn sign(web: &Web, q: &HashMap<String, String>) -> (StatusCode, Value) {
    let (Some(bucket), Some(key)) = (q.get("bucket"), q.get("key")) else { return bad("give bucket and key") };
    if let Err(e) = crate::tier::validate_key(key) {
        return bad(e.context());
    }
    let expires = q.get("expires").map_or("1h", String::as_str);
    let p = match link_params(expires, q.get("ip").map(String::as_str), q.get("download").map(String::as_str)) {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    match crate::policy::link::link(web.policy().links(), web.settings().base_url.as_deref(), bucket, key, &p) {
        Some(url) => (StatusCode::OK, json!({ "url": url, "expires": p.expires })),
        None => (StatusCode::CONFLICT, json!({ "error": "no link key is configured" })),
    }
}

async fn direct(web: &Web, bucket: &str, key: &str) -> (StatusCode, Value) {
    if web.policy().serve_mode(bucket) != ServeMode::Direct {
        return (StatusCode::CONFLICT, json!({ "error": format!("bucket {bucket:?} is not in direct serving mode") }));
    }
    let rec = match web.tier().head(bucket, key).await {
        Ok(r) => r,
        Err(e) => return (StatusCode::NOT_FOUND, json!({ "error": e.context() })),
    };
    let ttl = web.settings().redirect_ttl;
    match web.tier().presign(&rec, ttl, None).await {
        Ok(Some(url)) => {
            let expires = crate::tier::now_ms() / 1000 + i64::try_from(ttl.as_secs()).unwrap_or(0);
            (StatusCode::OK, json!({ "url": url, "expires": expires }))
        }
        Ok(None) => (
            StatusCode::CONFLICT,
            json!({ "error": "no store of this object can presign a URL (a disk store, or the write is still journaled)" }),
        ),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": e.to_string() })),
    }
}
