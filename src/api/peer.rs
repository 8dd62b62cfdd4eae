//! The peer endpoints: what one node of a cluster asks of another (under `/_strata/peer/`,
//! behind the admin API's Basic auth with the cluster's keys; `docs/design/cluster.md`).
//!
//! | method | path                    | query       | answer                                 |
//! |--------|-------------------------|-------------|----------------------------------------|
//! | GET    | /_strata/peer/staged/ID | from, to    | bytes `from..to` of a version staged here; 404 once the file is gone |
//! | PUT    | /_strata/peer/staged/ID |             | keeps a copy of another node's staged version (`journal.peer_copies`): `{"bytes": n}` |
//! | GET    | /_strata/peer/hot       | bucket, key, etag, mtime, size, from, to | bytes `from..to` of that version through this node's hot tier (`cluster.shared_hot`), with `x-strata-hot: hit` or `miss`; 404 when the catalog names another version |
//!
//! It maps the router's endpoints to tier calls; it holds no state.

use super::reply::{self, Body};
use crate::error::{Error, ErrorKind};
use crate::tier::Tier;
use http::{Response, StatusCode};
use serde_json::json;
use std::ops::Range;

fn range_of(query: &str) -> Result<Option<Range<u64>>, Error> {
    let num = |k| crate::http::query::value(query, k).and_then(|v| v.parse::<u64>().ok());
    match (num("from"), num("to")) {
        (Some(a), Some(b)) if a <= b => Ok(Some(a..b)),
        (None, None) => Ok(None),
        _ => Err(Error::new(ErrorKind::InvalidInput, "give from and to, from <= to")),
    }
}

fn stream(r: crate::error::Result<crate::backend::ByteStream>) -> Response<Body> {
    match r {
        Ok(stream) => reply::with_type(
            StatusCode::OK,
            s3s::dto::StreamingBlob::wrap(sync_wrapper::SyncStream::new(stream)),
            "application/octet-stream",
        ),
        Err(e) => reply::json_from_error(&e),
    }
}

/// Streams bytes `from..to` (the whole file without them) of staged version `id` to a
/// peer; 404 when the file is gone (the version moved to the stores).
pub async fn staged(tier: &Tier, id: &str, query: &str) -> Response<Body> {
    match range_of(query) {
        Ok(range) => stream(tier.read_staged(id, range).await),
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

/// Streams a range of one object version through this node's hot tier, for a node that
/// found this one to own its chunks.
pub async fn hot(tier: &Tier, query: &str) -> Response<Body> {
    let arg = |k| crate::http::query::value(query, k);
    let num = |k| arg(k).and_then(|v| v.parse::<i64>().ok());
    let (Some(bucket), Some(key), Some(etag), Some(mtime), Some(size)) =
        (arg("bucket"), arg("key"), arg("etag"), num("mtime"), num("size").and_then(|s| u64::try_from(s).ok()))
    else {
        return reply::json_from_error(&Error::new(ErrorKind::InvalidInput, "give bucket, key, etag, mtime and size"));
    };
    match range_of(query) {
        Ok(Some(range)) if range.end <= size => {
            match tier.read_hot_here((&bucket, &key), (&etag, mtime, size), range).await {
                Ok((hit, s)) => {
                    let mut resp = stream(Ok(s));
                    let said = http::HeaderValue::from_static(if hit { "hit" } else { "miss" });
                    resp.headers_mut().insert(crate::cluster::HIT_HEADER, said);
                    resp
                }
                Err(e) => reply::json_from_error(&e),
            }
        }
        Ok(_) => reply::json_from_error(&Error::new(ErrorKind::InvalidInput, "give from and to within the object")),
        Err(e) => reply::json_from_error(&e),
    }
}
