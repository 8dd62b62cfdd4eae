//! Admin routes for access keys and grants (under `/_strata/`, behind the admin gate: a
//! key with `admin` on `*`). Every change is recorded with the calling key's id as its
//! actor (`auth::keyring`). Secrets appear only in the answers to `create` and `rotate`.
//!
//! | method | path                   | query                         | answer                         |
//! |--------|------------------------|-------------------------------|--------------------------------|
//! | GET    | /_strata/keys          | [id]                          | `{"keys":[…]}` or one key      |
//! | POST   | /_strata/keys          | JSON `{name, expires_in, sources}` | 201 `{"key":{…},"secret"}` |
//! | POST   | /_strata/keys/enable   | id                            | the key                        |
//! | POST   | /_strata/keys/disable  | id                            | the key                        |
//! | POST   | /_strata/keys/rotate   | id, grace (default 1d)        | `{"key":{…},"secret"}`         |
//! | DELETE | /_strata/keys          | id                            | `{"deleted":id}`               |
//! | GET    | /_strata/keys/audit    | [limit] (default 100)         | `{"changes":[…]}`              |
//! | GET    | /_strata/grants        | [key]                         | `{"grants":[…]}`               |
//! | POST   | /_strata/grants        | key, bucket, prefix, rights   | the grant                      |
//! | DELETE | /_strata/grants        | key, bucket, prefix           | `{"removed":true}`             |
//!
//! This module maps the router's endpoints to keyring calls; it holds no state.

use super::reply::{self, Body};
use super::router::AdminEndpoint as E;
use crate::auth::Keyring;
use crate::auth::keyring::NewKey;
use crate::error::{Error, ErrorKind, Result};
use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

/// The body of `POST keys`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    name: String,
    /// A lifetime such as "90d".
    #[serde(default)]
    expires_in: Option<String>,
    /// CIDRs the key may be used from.
    #[serde(default)]
    sources: Vec<String>,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidInput, msg).public()
}

fn duration(text: &str, what: &str) -> Result<std::time::Duration> {
    humantime::parse_duration(text.trim())
        .map_err(|_| bad(format!("{what}: {text:?} is not a duration such as \"1d\"")))
}

/// Answers one of these endpoints for `actor` (the calling key's id).
pub async fn handle(keys: &Keyring, actor: &str, endpoint: E, query: &str, body: &[u8]) -> Response<Body> {
    let arg = |k: &str| crate::http::query::value(query, k);
    let need = |k: &str| arg(k).filter(|v| !v.is_empty()).ok_or_else(|| bad(format!("the query needs {k}")));
    let r: Result<(StatusCode, Value)> = async {
        let ok = |v: Value| Ok((StatusCode::OK, v));
        match endpoint {
            E::KeyList => match arg("id") {
                Some(id) => ok(json!(keys.show(&id).await?)),
                None => ok(json!({ "keys": keys.list().await? })),
            },
            E::KeyCreate => {
                let c: Create =
                    serde_json::from_slice(body).map_err(|e| bad(format!("the body is not a new key: {e}")))?;
                let expires_in = c.expires_in.as_deref().map(|t| duration(t, "expires_in")).transpose()?;
                let (key, secret) = keys.create(actor, NewKey { name: c.name, expires_in, sources: c.sources }).await?;
                Ok((StatusCode::CREATED, json!({ "key": key, "secret": secret })))
            }
            E::KeyEnable | E::KeyDisable => {
                ok(json!(keys.set_enabled(actor, &need("id")?, endpoint == E::KeyEnable).await?))
            }
            E::KeyRotate => {
                let grace = duration(&arg("grace").unwrap_or_else(|| "1d".into()), "grace")?;
                let (key, secret) = keys.rotate(actor, &need("id")?, grace).await?;
                ok(json!({ "key": key, "secret": secret }))
            }
            E::KeyDelete => {
                let id = need("id")?;
                keys.delete(actor, &id).await?;
                ok(json!({ "deleted": id }))
            }
            E::KeyAudit => {
                let limit =
                    arg("limit").map_or(Ok(100), |l| l.parse::<i64>().map_err(|_| bad("limit: not a number")))?;
                ok(json!({ "changes": keys.audit_trail(limit.clamp(1, 10_000)).await? }))
            }
            E::GrantList => ok(json!({ "grants": keys.grants(arg("key").as_deref()).await? })),
            E::GrantAdd => {
                let at = (need("bucket")?, arg("prefix").unwrap_or_default());
                ok(json!(keys.grant(actor, &need("key")?, (&at.0, &at.1), &need("rights")?).await?))
            }
            E::GrantRemove => {
                let at = (need("bucket")?, arg("prefix").unwrap_or_default());
                keys.revoke(actor, &need("key")?, (&at.0, &at.1)).await?;
                ok(json!({ "removed": true }))
            }
            other => Err(Error::new(ErrorKind::Internal, format!("{other:?} is not a key endpoint"))),
        }
    }
    .await;
    match r {
        Ok((status, v)) => reply::json(status, &v),
        Err(e) => reply::json_from_error(&e),
    }
}
