//! Conversions between s3s DTOs and strata types: timestamps, metadata, headers, bodies,
//! checksums and read preconditions.

use crate::backend::ByteStream;
use crate::catalog::{ObjectHeaders, ObjectRecord};
use crate::error::{Error, ErrorKind, Result};
use base64::Engine;
use futures::StreamExt;
use s3s::dto::{ChecksumAlgorithm, ETag, ETagCondition, Metadata, Range, StreamingBlob, Timestamp};
use s3s::{S3Result, TrailingHeaders, s3_error};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// ms since the Unix epoch → S3 timestamp.
pub fn ts(ms: i64) -> Timestamp {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Timestamp::from(t)
}

/// S3 timestamp → ms since the Unix epoch.
pub fn ts_ms(t: &Timestamp) -> i64 {
    let t: OffsetDateTime = t.clone().into();
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The quoted ETag of a record.
pub fn etag(rec: &ObjectRecord) -> ETag {
    ETag::Strong(rec.etag.clone())
}

/// Standard headers from request fields.
pub fn headers_from(
    content_type: Option<String>,
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    expires: Option<Timestamp>,
) -> ObjectHeaders {
    ObjectHeaders {
        content_type,
        cache_control,
        content_disposition,
        // aws-chunked is a transfer detail of the upload, not a property of the object.
        content_encoding: content_encoding.and_then(|e| without_aws_chunked(&e)),
        content_language,
        expires_ms: expires.as_ref().map(ts_ms),
    }
}

/// User metadata, names lower-cased.
pub fn meta_from(m: Option<Metadata>) -> BTreeMap<String, String> {
    m.unwrap_or_default().into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect()
}

/// User metadata for a response (none when empty).
pub fn meta_to(m: &BTreeMap<String, String>) -> Option<Metadata> {
    (!m.is_empty()).then(|| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// A Content-Encoding without its `aws-chunked` token (`gzip, aws-chunked` is `gzip`), or
/// `None` when nothing is left.
fn without_aws_chunked(v: &str) -> Option<String> {
    let kept: Vec<&str> =
        v.split(',').map(str::trim).filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked")).collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

/// Decodes a `Content-MD5` header.
pub fn md5_header(v: Option<&str>) -> S3Result<Option<[u8; 16]>> {
    let Some(v) = v else { return Ok(None) };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .map_err(|_| s3_error!(InvalidDigest, "Content-MD5 is not base64"))?;
    let arr: [u8; 16] = bytes.try_into().map_err(|_| s3_error!(InvalidDigest, "Content-MD5 is not 16 bytes"))?;
    Ok(Some(arr))
}

/// The precondition of a write from its `If-Match` and `If-None-Match`. S3 takes only
/// `*` in If-None-Match on writes.
pub fn write_condition(
    if_match: Option<ETagCondition>,
    if_none_match: Option<ETagCondition>,
) -> S3Result<crate::tier::WriteCondition> {
    let if_match = if_match.map(|c| match c {
        ETagCondition::Any => "*".to_owned(),
        ETagCondition::ETag(e) => e.into_value(),
    });
    let if_none_match = match if_none_match {
        None => false,
        Some(ETagCondition::Any) => true,
        Some(ETagCondition::ETag(_)) => {
            return Err(s3_error!(NotImplemented, "If-None-Match on a write takes only '*'"));
        }
    };
    Ok(crate::tier::WriteCondition { if_match, if_none_match })
}

/// The same from raw headers (CopyObject's input does not carry them).
pub fn write_condition_of(headers: &http::HeaderMap) -> S3Result<crate::tier::WriteCondition> {
    let parse = |name: http::header::HeaderName| -> S3Result<Option<ETagCondition>> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => ETagCondition::parse_http_header(v.as_bytes())
                .map(Some)
                .map_err(|_| s3_error!(InvalidArgument, "a malformed If-Match or If-None-Match")),
        }
    };
    write_condition(parse(http::header::IF_MATCH)?, parse(http::header::IF_NONE_MATCH)?)
}

/// The preconditions of a read: If-Match, If-None-Match, If-Modified-Since,
/// If-Unmodified-Since.
pub type Conditions = (Option<ETagCondition>, Option<ETagCondition>, Option<Timestamp>, Option<Timestamp>);

fn etag_matches(c: &ETagCondition, rec: &ObjectRecord) -> bool {
    match c {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == rec.etag,
    }
}

/// Checks preconditions in RFC 9110 order and resolves the range against the size.
pub fn plan_read(
    rec: &ObjectRecord,
    conds: &Conditions,
    range: Option<&Range>,
) -> Result<Option<std::ops::Range<u64>>> {
    let (if_match, if_none_match, if_modified_since, if_unmodified_since) = conds;
    let modified_s = rec.last_modified_ms.div_euclid(1000);
    let secs = |t: &Timestamp| ts_ms(t).div_euclid(1000);
    let failed = |what: &str| Err(Error::new(ErrorKind::PreconditionFailed, format!("{what} does not hold")));
    match (if_match, if_unmodified_since) {
        (Some(c), _) if !etag_matches(c, rec) => return failed("If-Match"),
        (None, Some(t)) if modified_s > secs(t) => return failed("If-Unmodified-Since"),
        _ => {}
    }
    let not_modified = || Err(Error::new(ErrorKind::NotModified, "not modified"));
    match (if_none_match, if_modified_since) {
        (Some(c), _) if etag_matches(c, rec) => return not_modified(),
        (None, Some(t)) if modified_s <= secs(t) => return not_modified(),
        _ => {}
    }
    match range {
        None => Ok(None),
        Some(r) => r
            .check(rec.size)
            .map(Some)
            .map_err(|_| Error::new(ErrorKind::InvalidRange, format!("range not satisfiable for size {}", rec.size))),
    }
}

/// Checksums a client declared for a body, in headers or (later) in trailers.
#[derive(Debug, Default)]
pub struct Checksums {
    pub algorithm: Option<ChecksumAlgorithm>,
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub crc64nvme: Option<String>,
}

impl Checksums {
    fn hasher(&self) -> s3s::checksum::ChecksumHasher {
        let mut h = s3s::checksum::ChecksumHasher::default();
        if let Some(a) = &self.algorithm {
            super::checksum::enable(&mut h, a.as_str());
        }
        let names = [
            ChecksumAlgorithm::CRC32,
            ChecksumAlgorithm::CRC32C,
            ChecksumAlgorithm::SHA1,
            ChecksumAlgorithm::SHA256,
            ChecksumAlgorithm::CRC64NVME,
        ];
        for (name, sent) in names.into_iter().zip(self.sent()) {
            if sent {
                super::checksum::enable(&mut h, name);
            }
        }
        h
    }

    fn fill_from_trailers(&mut self, t: Option<&TrailingHeaders>) {
        let Some(map) = t.and_then(TrailingHeaders::take) else { return };
        let get = |name: &str| map.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        self.crc32 = self.crc32.take().or_else(|| get("x-amz-checksum-crc32"));
        self.crc32c = self.crc32c.take().or_else(|| get("x-amz-checksum-crc32c"));
        self.sha1 = self.sha1.take().or_else(|| get("x-amz-checksum-sha1"));
        self.sha256 = self.sha256.take().or_else(|| get("x-amz-checksum-sha256"));
        self.crc64nvme = self.crc64nvme.take().or_else(|| get("x-amz-checksum-crc64nvme"));
    }

    /// Which checksums the client sent a value for, in `checksum::chosen`'s order.
    fn sent(&self) -> [bool; 5] {
        [
            self.crc32.is_some(),
            self.crc32c.is_some(),
            self.sha1.is_some(),
            self.sha256.is_some(),
            self.crc64nvme.is_some(),
        ]
    }

    fn verify(&self, got: &s3s::dto::Checksum) -> Result<()> {
        let pairs = [
            ("CRC32", &self.crc32, &got.checksum_crc32),
            ("CRC32C", &self.crc32c, &got.checksum_crc32c),
            ("SHA1", &self.sha1, &got.checksum_sha1),
            ("SHA256", &self.sha256, &got.checksum_sha256),
            ("CRC64NVME", &self.crc64nvme, &got.checksum_crc64nvme),
        ];
        for (name, want, got) in pairs {
            if want.is_some() && want != got {
                return Err(Error::new(ErrorKind::BadDigest, format!("the {name} checksum does not match the body")));
            }
        }
        Ok(())
    }
}

/// What a failed body read means: s3s's check of a signed payload's SHA-256 (it names no
/// public type, so its message is read), else a body cut short.
fn body_error(e: &(dyn std::error::Error + 'static)) -> Error {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.to_string().contains("Sha256Mismatch") {
            return Error::new(ErrorKind::ContentHashMismatch, "the body's SHA-256 is not the one signed");
        }
        cur = c.source();
    }
    Error::new(ErrorKind::IncompleteBody, format!("reading the request body: {e}"))
}

/// The request body as a strata byte stream that verifies the declared checksums (from
/// headers or aws-chunked trailers) at its end: a mismatch is the stream's last item, an
/// error, so the tier aborts the write and nothing becomes visible. The verified checksum
/// to keep goes into the returned slot as the stream ends.
pub fn body_stream(
    blob: StreamingBlob,
    want: Checksums,
    trailers: Option<TrailingHeaders>,
) -> (ByteStream, crate::tier::ChecksumSlot) {
    struct State {
        blob: StreamingBlob,
        hasher: s3s::checksum::ChecksumHasher,
        want: Checksums,
        trailers: Option<TrailingHeaders>,
        slot: crate::tier::ChecksumSlot,
    }
    let slot = crate::tier::ChecksumSlot::default();
    let st = State { hasher: want.hasher(), blob, want, trailers, slot: slot.clone() };
    let stream = futures::stream::try_unfold(st, |mut st| async move {
        match st.blob.next().await {
            Some(Ok(chunk)) => {
                st.hasher.update(&chunk);
                Ok(Some((chunk, st)))
            }
            Some(Err(e)) => Err(body_error(&*e)),
            None => {
                let State { hasher, mut want, trailers, slot, .. } = st;
                want.fill_from_trailers(trailers.as_ref());
                let got = hasher.finalize();
                want.verify(&got)?;
                let declared = want.algorithm.as_ref().map(ChecksumAlgorithm::as_str);
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = super::checksum::chosen(declared, &got, want.sent());
                Ok(None)
            }
        }
    })
    .boxed();
    (stream, slot)
}
