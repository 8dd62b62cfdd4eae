//! Admin routes for the journal, replication and the read-only switch (under
//! `/_strata/`, behind the admin API's Basic auth).
//!
//! | method | path                    | query       | answer                                 |
//! |--------|-------------------------|-------------|----------------------------------------|
//! | GET    | /_strata/journal        |             | backlog per store, stuck entries, bytes |
//! | POST   | /_strata/journal/retry  |             | `{"retried": n}` (stuck → pending)     |
//! | POST   | /_strata/read-only      | on=true\|false | `{"read_only": bool}`               |
//! | POST   | /_strata/scrub          |             | the scrub's report, once it has run    |
//!
//! It maps requests to calls on the tier, the catalog and the scrub; it holds no state.

use crate::tier::Tier;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Whether `path` (after `/_strata/`) is one of these routes.
pub fn owns(path: &str) -> bool {
    matches!(path, "journal" | "journal/retry" | "read-only" | "scrub")
}

/// Answers one of these routes: (status, JSON body).
pub async fn handle(tier: &Tier, method: &Method, path: &str, q: &HashMap<String, String>) -> (StatusCode, Value) {
    let r = match (method, path) {
        (&Method::GET, "journal") => journal(tier).await,
        (&Method::POST, "journal/retry") => {
            tier.catalog().journal_recover(tier.journal().node(), true).await.map(|n| json!({ "retried": n }))
        }
        (&Method::POST, "read-only") => match q.get("on").map(String::as_str) {
            Some("true") => Ok(set(tier, true)),
            Some("false") => Ok(set(tier, false)),
            _ => return (StatusCode::BAD_REQUEST, json!({ "error": "give on=true or on=false" })),
        },
        (&Method::POST, "scrub") => {
            let scrub = crate::server::scrub(tier, std::time::Duration::ZERO);
            scrub.run().await.map(|r| json!(r))
        }
        _ => return (StatusCode::METHOD_NOT_ALLOWED, json!({ "error": format!("{method} is not allowed here") })),
    };
    match r {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": e.to_string() })),
    }
}

fn set(tier: &Tier, on: bool) -> Value {
    tier.set_read_only(on);
    json!({ "read_only": on })
}

/// The backlog: per store, plus the stuck entries an operator must look at.
pub async fn journal(tier: &Tier) -> crate::error::Result<Value> {
    let stores = crate::replication::lag(tier.catalog(), tier.backends().names().map(str::to_owned)).await?;
    let stuck = crate::replication::stuck(tier.catalog()).await?;
    Ok(json!({
        "read_only": tier.is_read_only(),
        "staged_bytes": tier.journal().used(),
        "max_size": tier.journal().max_size(),
        "stores": stores,
        "stuck": stuck,
    }))
}
