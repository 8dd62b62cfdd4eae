//! A Range header s3s cannot parse, answered as S3 answers it: `bytes=5-1`, several ranges
//! or another unit are ignored (the whole object), and a last byte past `u64` means "to
//! the end" (RFC 9110 lets a server ignore what it cannot honour; `http::range` has the
//! rules). s3s refuses all of these with 400, and the header is signed, so it cannot be
//! rewritten before s3s checks the signature.
//!
//! So such a request goes to s3s as it came. s3s parses an operation's headers only after
//! it has checked the signature and the access (`s3s::ops::prepare`), so an
//! `InvalidArgument: invalid header: range` answer means the request was authenticated.
//! Only then is it served again, with its Range made canonical or dropped and its
//! signature taken off (the header, or the query's `X-Amz-*`), by a second s3s service
//! that checks no signatures. No other request ever reaches that one.

use http::{HeaderMap, Method, Request, Response, Uri, Version, header};
use s3s::service::S3Service;

/// The service that serves again; see the module's header.
#[derive(Clone)]
pub struct Retry(pub S3Service);

/// What is kept of a GET or HEAD to serve it again (neither has a body).
pub struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Retry {
    /// The head of `req` when its Range is one s3s will refuse, else `None`.
    pub fn head_of(req: &Request<s3s::Body>) -> Option<Head> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return None;
        }
        let v = req.headers().get(header::RANGE)?.to_str().ok()?;
        if s3s::dto::Range::parse(v).is_ok() {
            return None;
        }
        let mut headers = req.headers().clone();
        match crate::http::range::canonical(v).and_then(|c| http::HeaderValue::from_str(&c).ok()) {
            Some(c) => headers.insert(header::RANGE, c),
            None => headers.remove(header::RANGE),
        };
        for h in [header::AUTHORIZATION.as_str(), "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"] {
            headers.remove(h);
        }
        let uri = unsigned(req.uri())?;
        Some(Head { method: req.method().clone(), uri, version: req.version(), headers })
    }

    /// Whether s3s refused a request for its Range header alone (after authenticating it).
    pub fn refused_for_range(resp: &Response<s3s::Body>) -> bool {
        resp.status() == http::StatusCode::BAD_REQUEST
            && resp.body().bytes().is_some_and(|b| {
                let text = String::from_utf8_lossy(&b);
                text.contains("<Code>InvalidArgument</Code>") && text.contains("invalid header: range")
            })
    }

    /// Serves `head` again without a signature check (see the module's header).
    pub async fn call(&self, head: Head) -> Result<Response<s3s::Body>, s3s::HttpError> {
        let mut req = Request::new(s3s::Body::empty());
        *req.method_mut() = head.method;
        *req.uri_mut() = head.uri;
        *req.version_mut() = head.version;
        *req.headers_mut() = head.headers;
        self.0.call(req).await
    }
}

/// `uri` without a presigned URL's signature: SigV4's `X-Amz-*` parameters, SigV2's
/// `AWSAccessKeyId`, `Signature` and `Expires`.
fn unsigned(uri: &Uri) -> Option<Uri> {
    let Some(query) = uri.query() else { return Some(uri.clone()) };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or("").to_ascii_lowercase();
            !(name.starts_with("x-amz-") || ["awsaccesskeyid", "signature", "expires"].contains(&name.as_str()))
        })
        .collect();
    let pq = if kept.is_empty() { uri.path().to_owned() } else { format!("{}?{}", uri.path(), kept.join("&")) };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_comes_off_the_query() {
        let u: Uri = "/b/k?partNumber=1&X-Amz-Signature=ab&x-amz-date=1&response-content-type=a".parse().unwrap();
        assert_eq!(unsigned(&u).unwrap().to_string(), "/b/k?partNumber=1&response-content-type=a");
        let u: Uri = "/b/k?X-Amz-Signature=ab".parse().unwrap();
        assert_eq!(unsigned(&u).unwrap().to_string(), "/b/k");
        let v2: Uri = "/b/k?AWSAccessKeyId=A&Expires=1&Signature=s&partNumber=2".parse().unwrap();
        assert_eq!(unsigned(&v2).unwrap().to_string(), "/b/k?partNumber=2");
    }
}
