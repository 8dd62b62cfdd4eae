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
//! It maps the router's endpoints to tier calls; it holds no state.

use super::reply::{self, Body};
use super::router::AdminEndpoint;
use crate::error::{Error, ErrorKind, Result};
use crate::tier::Tier;
use http::{Response, StatusCode};
use serde_json::{Value, json};

/// Answers one of these endpoints; `query` is the request's query string.
pub async fn handle(tier: &Tier, endpoint: AdminEndpoint, query: &str) -> Response<Body> {
    let r: Result<Value> = match endpoint {
        AdminEndpoint::Journal => tier.journal_status().await.map(|s| json!(s)),
        AdminEndpoint::JournalRetry => tier.retry_stuck().await.map(|n| json!({ "retried": n })),
        AdminEndpoint::ReadOnly => match crate::http::query::value(query, "on").as_deref() {
            Some("true") => Ok(set(tier, true)),
            Some("false") => Ok(set(tier, false)),
            _ => Err(Error::new(ErrorKind::InvalidInput, "give on=true or on=false")),
        },
        AdminEndpoint::Scrub => tier.scrub_now().await.map(|r| json!(r)),
        other => Err(Error::new(ErrorKind::Internal, format!("{other:?} is not a journal endpoint"))),
    };
    match r {
        Ok(v) => reply::json(StatusCode::OK, &v),
        Err(e) => reply::json_from_error(&e),
    }
}

fn set(tier: &Tier, on: bool) -> Value {
    tier.set_read_only(on);
    json!({ "read_only": on })
}
