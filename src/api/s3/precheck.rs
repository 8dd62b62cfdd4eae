//! Checks S3 makes that s3s does not, run on a request before s3s sees it. None of them
//! changes a header or the body's bytes, so signatures still hold.
//!
//! - a presigned URL's `X-Amz-Expires` is at most seven days;
//! - an unsigned `HEAD /` is refused like `GET /`;
//! - an empty `Content-MD5` is refused (s3s reads it as absent);
//! - an XML body over s3s's limit is refused with `MaxMessageLengthExceeded` up front
//!   (s3s answered 500);
//! - DeleteObjects' `Content-MD5` is checked against the body (s3s ignores it).

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use md5::{Digest, Md5};
use s3s::{S3Error, S3Result, s3_error};

/// The largest XML request body, as s3s's default `xml_max_body_size`.
pub const MAX_XML_BODY: u64 = 20 << 20;

/// The checks that need only the request head. `host_bucket`: the Host header names the
/// bucket (virtual-host style), so the whole path is the key.
pub fn head<B>(req: &Request<B>, host_bucket: bool) -> S3Result<()> {
    check_presign_expiry(req)?;
    anonymous_root(req)?;
    if req.headers().get("content-md5").is_some_and(|v| v.as_bytes().trim_ascii().is_empty()) {
        return Err(s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid: it is empty"));
    }
    let length = req.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if has_xml_body(req, host_bucket) && length.is_some_and(|n| n > MAX_XML_BODY) {
        return Err(s3_error!(
            MaxMessageLengthExceeded,
            "Your request was too big: XML bodies take {MAX_XML_BODY} bytes"
        ));
    }
    Ok(())
}

/// POSTs, and PUTs of bucket settings, carry XML; object and part PUTs carry data.
fn has_xml_body<B>(req: &Request<B>, host_bucket: bool) -> bool {
    let path = req.uri().path().trim_start_matches('/');
    let bucket_level = if host_bucket { path.is_empty() } else { !path.trim_end_matches('/').contains('/') };
    req.method() == Method::POST || (req.method() == Method::PUT && bucket_level)
}

/// S3 refuses presigned URLs valid for more than seven days.
const MAX_PRESIGN_EXPIRY: u64 = 604_800;

/// Refuses a presigned URL whose `X-Amz-Expires` is not a number of seconds up to seven
/// days, as S3 does (s3s checks only that it has not passed).
fn check_presign_expiry<B>(req: &Request<B>) -> S3Result<()> {
    let Some(v) = req.uri().query().and_then(|q| crate::http::query::value(q, "X-Amz-Expires")) else {
        return Ok(());
    };
    match v.parse::<u64>() {
        Ok(n) if (1..=MAX_PRESIGN_EXPIRY).contains(&n) => Ok(()),
        _ => {
            let code = s3s::S3ErrorCode::Custom("AuthorizationQueryParametersError".into());
            let mut e = S3Error::with_message(
                code,
                format!("X-Amz-Expires must be a number of seconds from 1 to {MAX_PRESIGN_EXPIRY}"),
            );
            e.set_status_code(http::StatusCode::BAD_REQUEST);
            Err(e)
        }
    }
}

/// An unsigned `HEAD /` asks for the bucket list, which is never anonymous: 403, as for
/// `GET /` (s3s knows no HEAD of the root and would answer 501).
fn anonymous_root<B>(req: &Request<B>) -> S3Result<()> {
    if req.method() == Method::HEAD && req.uri().path() == "/" && !crate::api::router::is_s3_signed(req) {
        return Err(s3s::s3_error!(AccessDenied, "Access Denied"));
    }
    Ok(())
}

/// Checks a DeleteObjects body against its `Content-MD5`; other requests pass as they are.
pub async fn delete_md5(req: Request<s3s::Body>) -> S3Result<Request<s3s::Body>> {
    let is_delete =
        req.method() == Method::POST && req.uri().query().is_some_and(|q| crate::http::query::has(q, "delete"));
    let chunked =
        req.headers().get("content-encoding").is_some_and(|v| v.as_bytes().windows(11).any(|w| w == b"aws-chunked"));
    let Some(want) = req.headers().get("content-md5").cloned().filter(|_| is_delete && !chunked) else {
        return Ok(req);
    };
    let want = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, want.as_bytes())
        .map_err(|_| s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid"))?;
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, usize::try_from(MAX_XML_BODY).unwrap_or(usize::MAX));
    let bytes: Bytes = match limited.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(s3_error!(MaxMessageLengthExceeded, "Your request was too big"));
        }
        Err(e) => return Err(S3Error::with_source(s3s::S3ErrorCode::IncompleteBody, e)),
    };
    if Md5::digest(&bytes).as_slice() != want.as_slice() {
        return Err(s3_error!(BadDigest, "The Content-MD5 you specified did not match what was received."));
    }
    Ok(Request::from_parts(parts, s3s::Body::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(uri: &str) -> Request<()> {
        Request::builder().method(Method::PUT).uri(uri).body(()).unwrap()
    }

    /// A PutObject's body is data, also in virtual-host style where the path is the key.
    #[test]
    fn only_bucket_settings_and_posts_carry_xml() {
        assert!(has_xml_body(&put("/bucket"), false));
        assert!(!has_xml_body(&put("/bucket/key"), false));
        assert!(!has_xml_body(&put("/key"), true), "bucket in the Host header");
        assert!(has_xml_body(&put("/"), true));
        let post = Request::builder().method(Method::POST).uri("/b/k?uploadId=1").body(()).unwrap();
        assert!(has_xml_body(&post, false));
    }
}
