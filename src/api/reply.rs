//! Answers of the non-S3 front ends (web, admin, status): the one place where a strata
//! error becomes an HTTP status for them, and the small response builders they share.
//!
//! S3 answers are s3s's, with codes from `api/s3/error.rs`. This module must not decide
//! anything about a request: it only shapes answers.

use crate::error::{Error, ErrorKind};
use http::{HeaderValue, Response, StatusCode};

/// The body type of every front end.
pub type Body = s3s::Body;

/// The HTTP status of a strata error, for every front end but S3.
pub fn status_of(e: &Error) -> StatusCode {
    use ErrorKind as K;
    match e.kind() {
        K::NotFound | K::BucketNotFound | K::UploadNotFound => StatusCode::NOT_FOUND,
        K::InvalidKey | K::KeyTooLong | K::InvalidInput | K::InvalidBucketName => StatusCode::BAD_REQUEST,
        K::Conflict | K::BucketExists | K::BucketNotEmpty => StatusCode::CONFLICT,
        K::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        K::NotModified => StatusCode::NOT_MODIFIED,
        K::InvalidRange | K::InvalidPartNumber => StatusCode::RANGE_NOT_SATISFIABLE,
        K::EntityTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        K::InvalidPart
        | K::InvalidPartOrder
        | K::EntityTooSmall
        | K::IncompleteBody
        | K::BadDigest
        | K::ContentHashMismatch => StatusCode::BAD_REQUEST,
        // `Retry-After` is added by [`with_retry_after`].
        K::Unavailable | K::Timeout | K::SlowDown | K::ReadOnly => StatusCode::SERVICE_UNAVAILABLE,
        K::Config | K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A response with `body` and a Content-Type.
pub fn with_type(status: StatusCode, body: impl Into<Body>, ctype: &'static str) -> Response<Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// A JSON answer (one line).
pub fn json(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    with_type(status, format!("{v}\n"), "application/json")
}

/// A JSON `{"error": …}` answer.
pub fn json_error(status: StatusCode, msg: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": msg }))
}

/// The JSON answer of a failed admin call: its status, and the error's context as the
/// message (internal details stay in the log).
pub fn json_from_error(e: &Error) -> Response<Body> {
    let status = status_of(e);
    if status.is_server_error() {
        tracing::warn!(error = %e, "admin call failed");
        return json_error(status, &e.to_string());
    }
    json_error(status, e.context())
}

/// A plain-text answer that no cache keeps (errors and refusals).
pub fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = with_type(status, format!("{msg}\n"), "text/plain; charset=utf-8");
    r.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Adds `Retry-After: secs` to a 503 that has none (`failover.retry_after`): a client that
/// honours it backs off instead of hammering a store that is down. Each front end applies
/// its own server's value, so two servers in one process never share it.
pub fn with_retry_after<B>(resp: &mut Response<B>, secs: u32) {
    if resp.status() == StatusCode::SERVICE_UNAVAILABLE && !resp.headers().contains_key(http::header::RETRY_AFTER) {
        resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_goes_on_503s_only_and_keeps_an_existing_one() {
        let mut r = Response::new(());
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        with_retry_after(&mut r, 7);
        assert_eq!(r.headers()["retry-after"], "7");
        with_retry_after(&mut r, 9);
        assert_eq!(r.headers()["retry-after"], "7");
        let mut ok = Response::new(());
        with_retry_after(&mut ok, 7);
        assert!(ok.headers().get("retry-after").is_none());
    }

    #[test]
    fn statuses_of_kinds() {
        let s = |k| status_of(&Error::new(k, "x")).as_u16();
        assert_eq!(s(ErrorKind::NotFound), 404);
        assert_eq!(s(ErrorKind::InvalidKey), 400);
        assert_eq!(s(ErrorKind::Conflict), 409);
        assert_eq!(s(ErrorKind::SlowDown), 503);
        assert_eq!(s(ErrorKind::Internal), 500);
    }
}
