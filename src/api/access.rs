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
//! reaches the cold store without strata, so the access check is this admin call's. This
//! module maps the router's endpoints to policy and tier calls; it holds no state.

use super::reply::{self, Body};
use super::router::AdminEndpoint;
use super::web::Web;
use crate::config::ServeMode;
use crate::error::{Error, ErrorKind, Result};
use crate::policy::RuleChange;
use crate::policy::link::LinkParams;
use http::{Response, StatusCode};
use serde_json::{Value, json};

/// Answers one of these endpoints, with the request's query string and body.
pub async fn handle(web: &Web, endpoint: AdminEndpoint, query: &str, body: &[u8]) -> Response<Body> {
    let arg = |k: &str| crate::http::query::value(query, k).unwrap_or_default();
    let r: Result<Value> = match endpoint {
        AdminEndpoint::AccessShow => {
            let serve: serde_json::Map<String, Value> =
                web.policy().serve_modes().into_iter().map(|(b, m)| (b, json!(m.as_str()))).collect();
            Ok(json!({ "rules": web.policy().rules(), "serve": serve }))
        }
        AdminEndpoint::AccessChange => {
            match serde_json::from_slice::<RuleChange>(if body.is_empty() { b"{}" } else { body }) {
                Ok(change) => web
                    .policy()
                    .change(&arg("bucket"), &arg("prefix"), change)
                    .await
                    .map(|()| json!({ "changed": true })),
                Err(e) => Err(bad(format!("the body is not a rule change: {e}"))),
            }
        }
        AdminEndpoint::AccessClear => {
            web.policy().clear(&arg("bucket"), &arg("prefix")).await.map(|gone| json!({ "cleared": gone }))
        }
        AdminEndpoint::Sign => sign(web, query),
        AdminEndpoint::Direct => direct(web, &arg("bucket"), &arg("key")).await,
        other => Err(Error::new(ErrorKind::Internal, format!("{other:?} is not an access endpoint"))),
    };
    match r {
        Ok(v) => reply::json(StatusCode::OK, &v),
        Err(e) => reply::json_from_error(&e),
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidInput, msg)
}

fn sign(web: &Web, query: &str) -> Result<Value> {
    let arg = |k: &str| crate::http::query::value(query, k);
    let (Some(bucket), Some(key)) = (arg("bucket"), arg("key")) else { return Err(bad("give bucket and key")) };
    crate::names::validate_key(&key)?;
    let expires = arg("expires").unwrap_or_else(|| "1h".to_owned());
    let p = LinkParams::parse(&expires, arg("ip").as_deref(), arg("download").as_deref()).map_err(bad)?;
    match crate::policy::link::link(&web.policy().links(), web.settings().base_url.as_deref(), &bucket, &key, &p) {
        Some(url) => Ok(json!({ "url": url, "expires": p.expires })),
        None => Err(Error::new(ErrorKind::Conflict, "no link key is configured")),
    }
}

async fn direct(web: &Web, bucket: &str, key: &str) -> Result<Value> {
    if web.policy().serve_mode(bucket) != ServeMode::Direct {
        return Err(Error::new(ErrorKind::Conflict, format!("bucket {bucket:?} is not in direct serving mode")));
    }
    let rec = web.tier().head(bucket, key).await?;
    let ttl = web.settings().redirect_ttl;
    match web.tier().presign(&rec, ttl, None).await? {
        Some(url) => {
            let expires = crate::clock::now_secs() + i64::try_from(ttl.as_secs()).unwrap_or(0);
            Ok(json!({ "url": url, "expires": expires }))
        }
        None => Err(Error::new(
            ErrorKind::Conflict,
            "no store of this object can presign a URL (a disk store, or the write is still journaled)",
        )),
    }
}
