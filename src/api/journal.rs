//! Admin routes for the journal, replication and the read-only switch (under
//! `/_strata/`, behind the admin API's Basic auth).
//!
//! | method | path                    | query       | answer                                 |
//! |--------|-------------------------|-------------|----------------------------------------|
//! | GET    | /_strata/journal        |             | backlog per store, stuck entries, bytes |
//! | POST   | /_strata/journal/retry  |             | `{"retried": n}` (stuck → pending)     |
//! | POST   | /_strata/read-only      | on=true\|false | `{"read_only": bool}`               |
//! | POST   | /_strata/scrub          |             | the scrub's report, once it has run    |
//! | GET    | /_strata/peer/staged/ID | from, to    | bytes `from..to` of a version staged here (another node's peer read); 404 once the file is gone |
//! | PUT    | /_strata/peer/staged/ID |             | keeps a copy of another node's staged version (`journal.peer_copies`): `{"bytes": n}` |
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

/// Streams bytes `from..to` (the whole file without them) of staged version `id` to a
/// peer; 404 when the file is gone (the version moved to the stores).
pub async fn staged(tier: &Tier, id: &str, query: &str) -> Response<Body> {
    let num = |k| crate::http::query::value(query, k).and_then(|v| v.parse::<u64>().ok());
    let range = match (num("from"), num("to")) {
        (Some(a), Some(b)) if a <= b => Some(a..b),
        (None, None) => None,
        _ => return reply::json_from_error(&Error::new(ErrorKind::InvalidInput, "give from and to, from <= to")),
    };
    match tier.read_staged_here(id, range).await {
        Ok(stream) => reply::with_type(
            StatusCode::OK,
            s3s::dto::StreamingBlob::wrap(sync_wrapper::SyncStream::new(stream)),
            "application/octet-stream",
        ),
        Err(e) => reply::json_from_error(&e),
    }
}

/// Keeps a copy of another node's staged version `id`, read from `body`.
pub async fn receive(tier: &Tier, id: &str, body: crate::backend::ByteStream) -> Response<Body> {
    match tier.receive_staged_copy(id, body).await {
        Ok(n) => reply::json(StatusCode::OK, &json!({ "bytes": n })),
        Err(e) => reply::json_from_error(&e),
    }
}
