//! The S3 API: s3s parses and signs requests (SigV4 headers, presigned URLs, aws-chunked
//! bodies with trailing checksums); these handlers translate them to tier calls.
//!
//! One file per operation family. Errors become S3 codes only in `error.rs`. This module
//! must not touch stores or the catalog directly: everything goes through [`Tier`].

mod attributes;
mod bucket;
mod checksum;
mod convert;
pub mod error;
pub mod grants;
mod list;
mod multipart;
mod object;
mod ops;
mod precheck;
mod range;
mod ready;
mod rotation;
mod sigv2;
mod sigv4;
mod spool;

pub use ready::Whole;
pub use spool::Spool;

use crate::auth::Keyring;
use crate::plan::Plans;
use crate::tier::Tier;
use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use s3s::dto::*;
use s3s::host::{S3Host, VirtualHost};
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3, S3Request, S3Response, S3Result};
use std::sync::Arc;
use tracing::Instrument;

/// The S3 operation handlers.
pub struct StrataS3 {
    tier: Tier,
    region: String,
}

macro_rules! delegate {
    ($($op:ident => $do:ident : $in:ty => $out:ty),* $(,)?) => {
        #[async_trait::async_trait]
        impl S3 for StrataS3 {
            $(async fn $op(&self, req: S3Request<$in>) -> S3Result<S3Response<$out>> { self.$do(req).await })*
        }
    };
}

delegate! {
    list_buckets => do_list_buckets: ListBucketsInput => ListBucketsOutput,
    create_bucket => do_create_bucket: CreateBucketInput => CreateBucketOutput,
    head_bucket => do_head_bucket: HeadBucketInput => HeadBucketOutput,
    delete_bucket => do_delete_bucket: DeleteBucketInput => DeleteBucketOutput,
    get_bucket_location => do_get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
    put_object => do_put_object: PutObjectInput => PutObjectOutput,
    get_object => do_get_object: GetObjectInput => GetObjectOutput,
    head_object => do_head_object: HeadObjectInput => HeadObjectOutput,
    delete_object => do_delete_object: DeleteObjectInput => DeleteObjectOutput,
    delete_objects => do_delete_objects: DeleteObjectsInput => DeleteObjectsOutput,
    copy_object => do_copy_object: CopyObjectInput => CopyObjectOutput,
    list_objects => do_list_objects: ListObjectsInput => ListObjectsOutput,
    list_objects_v2 => do_list_objects_v2: ListObjectsV2Input => ListObjectsV2Output,
    create_multipart_upload => do_create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput,
    upload_part => do_upload_part: UploadPartInput => UploadPartOutput,
    upload_part_copy => do_upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput,
    complete_multipart_upload => do_complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput,
    abort_multipart_upload => do_abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput,
    list_parts => do_list_parts: ListPartsInput => ListPartsOutput,
    list_multipart_uploads => do_list_multipart_uploads: ListMultipartUploadsInput => ListMultipartUploadsOutput,
    list_object_versions => do_list_object_versions: ListObjectVersionsInput => ListObjectVersionsOutput,
    get_bucket_versioning => do_get_bucket_versioning: GetBucketVersioningInput => GetBucketVersioningOutput,
    get_object_attributes => do_get_object_attributes: GetObjectAttributesInput => GetObjectAttributesOutput,
}

/// The S3 endpoint: signature checks, region check, request ids, then the handlers.
#[derive(Clone)]
pub struct S3Gateway {
    service: S3Service,
    /// Serves again, without its Range, a request `service` authenticated but refused
    /// only for a Range s3s cannot parse (`range.rs`).
    checked_range: range::Retry,
    /// Checks only which secret of a key in a rotation's grace period signed a request
    /// (`rotation.rs`).
    probe: S3Service,
    keys: Keyring,
    /// The live plans, for the host names that name buckets.
    plans: Plans,
    region: String,
    retry_after: u32,
    spool: Spool,
    /// Signed GETs of small hot objects, answered without s3s (`ready.rs`).
    ready: Arc<ready::Answers>,
}

impl S3Gateway {
    /// An endpoint for `tier` that accepts requests signed with the keys of `keys` for
    /// `region`, as their grants allow, with virtual-host addressing for `hosts`,
    /// `retry_after` seconds on every 503, and bodies of unknown length spooled as `spool`
    /// says.
    pub fn new(tier: Tier, keys: &Keyring, region: &str, plans: &Plans, (retry_after, spool): (u32, Spool)) -> Self {
        // `probe`: a service that only says whether a signature holds (`rotation.rs`).
        let builder = |auth: bool, probe: bool| {
            let mut b = S3ServiceBuilder::new(StrataS3 { tier: tier.clone(), region: region.to_owned() });
            if auth {
                b.set_auth(rotation::Keys(keys.clone()));
            }
            match (auth, probe) {
                (true, true) => b.set_access(rotation::Probe),
                (true, false) => b.set_access(grants::Access(keys.clone())),
                (false, _) => {}
            }
            // Always set: a reload may add host names to a config that had none.
            b.set_host(VirtualHosts(plans.clone()));
            b.build()
        };
        let (service, probe, checked_range) =
            (builder(true, false), builder(true, true), range::Retry(builder(false, false)));
        let ready = Arc::new(ready::Answers::new(tier, keys.clone(), plans.clone(), region.to_owned()));
        let (plans, keys, region) = (plans.clone(), keys.clone(), region.to_owned());
        Self { service, checked_range, probe, keys, plans, region, retry_after, spool, ready }
    }

    /// Serves one request, which names access key `key` (`router::s3_access_key`). Never
    /// fails: every error is an S3 error response.
    pub async fn handle<B>(&self, req: Request<B>, key: Option<&str>) -> Response<s3s::Body>
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let request_id = new_request_id();
        let started = std::time::Instant::now();
        let mut req = req;
        merge_repeated(req.headers_mut(), &http::header::CONTENT_ENCODING);
        let op = ops::op_name(req.method(), req.uri().path(), req.uri().query().unwrap_or(""), req.headers());
        let span = tracing::info_span!("s3", id = %request_id, method = %req.method(), path = %req.uri().path());
        let mut resp = match self.ready.answer(&req).await {
            ready::Ready::Answer(r) => r,
            ready::Ready::Learn(bucket, object, checksums) => {
                let r = self.full(req, key, &span).await;
                self.ready.learn((bucket, object, checksums), &r);
                r
            }
            ready::Ready::Full => self.full(req, key, &span).await,
        };
        crate::api::reply::with_retry_after(&mut resp, self.retry_after);
        with_request_id(&mut resp, &request_id);
        mark_auth_failure(&mut resp);
        let status = resp.status().as_u16();
        tracing::info!(parent: &span, status, "done");
        crate::telemetry::record_request(op, status, started);
        if let Some(key) = key {
            // Only ids this node knows get a series of their own, so random ids cannot
            // grow the metrics without bound.
            crate::telemetry::record_key_request(
                if self.keys.knows(key) { key } else { "unknown" },
                status_class(status),
            );
            resp.extensions_mut().insert(crate::access_log::KeyId(key.to_owned()));
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-amz-request-id", v);
        }
        resp
    }

    /// The full path: the region and head checks, then s3s.
    async fn full<B>(&self, req: Request<B>, key: Option<&str>, span: &tracing::Span) -> Response<s3s::Body>
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let host_bucket = crate::http::request_host(&req).is_some_and(|h| self.plans.hosts().bucket_of(h).is_some());
        let checked = self.check_region(&req).and_then(|()| precheck::head(&req, host_bucket));
        match checked {
            Err(e) => e.to_http_response().unwrap_or_else(|_| plain_500()),
            Ok(()) => {
                let req = req.map(|b| s3s::Body::http_body(b));
                // The span follows the call across its awaits (no guard held over them).
                match self.call(req, key).instrument(span.clone()).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(parent: span, error = ?e, "s3s failed");
                        plain_500()
                    }
                }
            }
        }
    }

    /// The answer to a signed request from an address braked for failed authentication:
    /// 503 `SlowDown` with `Retry-After`, which S3 clients back off on.
    pub fn slow_down(&self, wait: u64) -> Response<s3s::Body> {
        let e = s3s::s3_error!(SlowDown, "too many failed authentications from your address");
        let mut r = e.to_http_response().unwrap_or_else(|_| plain_500());
        r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(wait));
        with_request_id(&mut r, &new_request_id());
        r
    }

    /// Hands `req` (naming access key `key`) to s3s, first giving a body of unknown length
    /// its length and choosing the secret of a key in a rotation's grace period.
    async fn call(&self, req: Request<s3s::Body>, key: Option<&str>) -> Result<Response<s3s::Body>, s3s::HttpError> {
        // hyper sends `100 Continue` only when a body is read, and an empty one never is.
        // botocore then takes the final answer for its interim one and waits 30 s on the
        // connection's next request: close it after this answer instead.
        let close = expects_continue(&req)
            && req.version() == http::Version::HTTP_11
            && http_body::Body::is_end_stream(req.body());
        let req = match self.prepare(req).await {
            Ok(r) => r,
            Err(e) => return Ok(e.to_http_response().unwrap_or_else(|_| plain_500())),
        };
        let again = range::Retry::head_of(&req);
        let secret = rotation::which_secret(&self.keys, &self.probe, &req, key).await;
        let mut resp = rotation::SECRET.scope(secret, self.service.call(req)).await?;
        if let Some(head) = again
            && range::Retry::refused_for_range(&resp)
        {
            resp = self.checked_range.call(head).await?;
        }
        if close {
            resp.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        Ok(resp)
    }

    /// What the body needs before s3s reads it: a length (spooled), or its Content-MD5
    /// checked where s3s does not (DeleteObjects).
    async fn prepare(&self, req: Request<s3s::Body>) -> S3Result<Request<s3s::Body>> {
        if Spool::needs(&req) {
            return self.spool.take(req).await;
        }
        precheck::delete_md5(req).await
    }

    /// SigV4 binds a signature to a region, but s3s accepts any region that the signature
    /// was computed for; S3 refuses a region other than its own, and so does strata.
    fn check_region<B>(&self, req: &Request<B>) -> S3Result<()> {
        match credential_region(req) {
            Some(r) if r != self.region => Err(s3s::s3_error!(
                AuthorizationHeaderMalformed,
                "the authorization header is malformed; the region '{r}' is wrong; expecting '{}'",
                self.region
            )),
            _ => Ok(()),
        }
    }
}

/// Virtual-host addressing: `bucket.<domain>` and custom hosts name a bucket; any other
/// host is path style (s3s's own parsers would read an unknown host as a bucket name).
struct VirtualHosts(Plans);

impl S3Host for VirtualHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        Ok(match self.0.hosts().bucket_of(host) {
            Some(b) => VirtualHost::new(host).with_bucket(b),
            None => VirtualHost::new(host),
        })
    }
}

/// The region named in the SigV4 credential scope of a header or presigned request.
fn credential_region<B>(req: &Request<B>) -> Option<String> {
    let from_header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .map(|c| c.split([',', ' ']).next().unwrap_or("").to_owned());
    let from_query = || req.uri().query().and_then(|q| crate::http::query::value(q, "X-Amz-Credential"));
    let scope = from_header.or_else(from_query)?;
    scope.split('/').nth(2).map(str::to_owned)
}

fn expects_continue<B>(req: &Request<B>) -> bool {
    req.headers().get(http::header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Joins a header sent several times into one value, as SigV4's canonical form joins them
/// (`,` without spaces), so the signature still holds. SDKs send `Content-Encoding: gzip`
/// beside their own `Content-Encoding: aws-chunked`, which s3s refuses as a duplicate.
fn merge_repeated(headers: &mut http::HeaderMap, name: &http::header::HeaderName) {
    if headers.get_all(name).iter().nth(1).is_none() {
        return;
    }
    let joined: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::trim).collect();
    if let Ok(v) = HeaderValue::from_str(&joined.join(",")) {
        headers.insert(name, v);
    }
}

/// Puts the request id into an S3 error body (`<RequestId>`), as S3 does; s3s does not
/// know strata's ids. Error bodies are small and already in memory.
fn with_request_id(resp: &mut Response<s3s::Body>, id: &str) {
    if resp.status().as_u16() < 400 {
        return;
    }
    let Some(bytes) = resp.body().bytes() else { return };
    let Ok(text) = std::str::from_utf8(&bytes) else { return };
    if text.contains("<RequestId>") {
        return;
    }
    let Some(at) = text.rfind("</Error>") else { return };
    let body = format!("{}<RequestId>{id}</RequestId>{}", &text[..at], &text[at..]);
    if let Ok(v) = HeaderValue::from_str(&body.len().to_string()) {
        resp.headers_mut().insert(http::header::CONTENT_LENGTH, v);
    }
    *resp.body_mut() = s3s::Body::from(body);
}

/// Marks a refusal of the signature or access key ([`crate::throttle::Failed`]).
fn mark_auth_failure(resp: &mut Response<s3s::Body>) {
    if resp.status() != http::StatusCode::FORBIDDEN {
        return;
    }
    let Some(bytes) = resp.body().bytes() else { return };
    let failed = [&b"<Code>SignatureDoesNotMatch</Code>"[..], b"<Code>InvalidAccessKeyId</Code>"]
        .iter()
        .any(|code| bytes.windows(code.len()).any(|w| w == *code));
    if failed {
        resp.extensions_mut().insert(crate::throttle::Failed);
    }
}

/// A request id: 32 hex digits from the thread's CSPRNG (a UUID v4 asked the kernel for
/// its bytes, a system call on every request).
fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn status_class(status: u16) -> &'static str {
    match status {
        0..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

fn plain_500() -> Response<s3s::Body> {
    let mut r = Response::new(s3s::Body::from("internal error".to_owned()));
    *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosts_name_buckets_and_other_hosts_are_path_style() {
        let custom = std::collections::BTreeMap::from([("cdn.test".to_owned(), "pics".to_owned())]);
        let h = VirtualHosts(Plans::from_hosts(crate::plan::Hosts::new(&vec!["media.test".to_owned()], &custom)));
        let bucket = |host: &str| h.parse_host_header(host).unwrap().bucket().map(str::to_owned);
        assert_eq!(bucket("pics.media.test:7070").as_deref(), Some("pics"));
        assert_eq!(bucket("cdn.test").as_deref(), Some("pics"));
        assert_eq!(bucket("media.test"), None);
        assert_eq!(bucket("localhost:7070"), None, "an unknown host is not a bucket name");
    }

    #[test]
    fn finds_region_in_header_and_query() {
        let r = Request::builder()
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AK/20250101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=x",
            )
            .body(())
            .unwrap();
        assert_eq!(credential_region(&r).as_deref(), Some("eu-west-1"));
        let r = Request::builder()
            .uri("/b/k?X-Amz-Credential=AK%2F20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=1")
            .body(())
            .unwrap();
        assert_eq!(credential_region(&r).as_deref(), Some("us-east-1"));
        let r = Request::builder().uri("/b/k").body(()).unwrap();
        assert_eq!(credential_region(&r), None);
    }
}
