//! Object operations: PutObject, GetObject, HeadObject, DeleteObject(s), CopyObject.

use super::StrataS3;
use super::checksum::set_checksums;
use super::convert::{
    body_stream, etag, headers_from, md5_header, meta_from, meta_to, plan_read, ts, write_condition, write_condition_of,
};
use super::error::{IntoS3, to_s3};
use crate::catalog::ObjectRecord;
use crate::error::{Error, ErrorKind};
use crate::tier::PutInput;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

impl StrataS3 {
    pub(super) async fn do_put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let trailers = req.trailing_headers.clone();
        let input = req.input;
        let condition = write_condition(input.if_match, input.if_none_match)?;
        let body = input.body.ok_or_else(|| s3_error!(IncompleteBody, "PutObject needs a body"))?;
        let expected = super::convert::Checksums {
            algorithm: input.checksum_algorithm.clone(),
            crc32: input.checksum_crc32.clone(),
            crc32c: input.checksum_crc32c.clone(),
            sha1: input.checksum_sha1.clone(),
            sha256: input.checksum_sha256.clone(),
            crc64nvme: input.checksum_crc64nvme.clone(),
        };
        let headers = headers_from(
            input.content_type,
            input.cache_control,
            input.content_disposition,
            input.content_encoding,
            input.content_language,
            input.expires,
        );
        let (body, checksum) = body_stream(body, expected, trailers);
        let put = PutInput {
            headers,
            user_meta: meta_from(input.metadata),
            body,
            content_length: input.content_length.map(|n| u64::try_from(n).unwrap_or(0)),
            content_md5: md5_header(input.content_md5.as_deref())?,
            condition,
            checksum: Some(checksum),
        };
        let rec = self.tier.put(&input.bucket, &input.key, put).await.s3()?;
        let mut out = PutObjectOutput { e_tag: Some(etag(&rec)), ..Default::default() };
        set_checksums!(out, super::checksum::fields(rec.details.checksum.as_ref()), typed);
        Ok(S3Response::new(out))
    }

    pub(super) async fn do_get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let i = req.input;
        let conds = (i.if_match, i.if_none_match, i.if_modified_since, i.if_unmodified_since);
        let range = i.range;
        let part = part_number(i.part_number, range.is_some())?;
        // The version a 304 was about, for its ETag.
        let seen = std::sync::Mutex::new(None);
        let planned = |r: &ObjectRecord| {
            let p = match part {
                Some(n) => plan_read(r, &conds, None).and_then(|_| part_range(r, n).map(|(range, _)| range)),
                None => plan_read(r, &conds, range.as_ref()),
            };
            if p.as_ref().is_err_and(|e| e.kind() == ErrorKind::NotModified) {
                *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.clone());
            }
            p
        };
        let (rec, served, stream) = match self.tier.get(&i.bucket, &i.key, planned).await {
            Ok(v) => v,
            Err(e) => {
                let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).take();
                return Err(match seen {
                    Some(r) if e.kind() == ErrorKind::NotModified => not_modified(&r),
                    _ => to_s3(e),
                });
            }
        };
        let len = served.as_ref().map_or(rec.size, |r| r.end - r.start);
        let content_range = served.as_ref().map(|r| format!("bytes {}-{}/{}", r.start, r.end - 1, rec.size));
        let h = &rec.headers;
        // A checksum covers a whole object or part, never a Range of it (S3 sends none).
        let sums = if range.is_some() { Default::default() } else { checksums(&rec, i.checksum_mode.as_ref(), part) };
        let mut out = GetObjectOutput {
            // s3s wants a Sync body; SyncStream gives that without locking, since a
            // stream is only ever polled through `&mut`.
            body: Some(StreamingBlob::wrap(sync_wrapper::SyncStream::new(stream))),
            content_length: Some(i64::try_from(len).unwrap_or(i64::MAX)),
            content_range,
            accept_ranges: Some("bytes".to_owned()),
            e_tag: Some(etag(&rec)),
            last_modified: Some(ts(rec.last_modified_ms)),
            content_type: i.response_content_type.or_else(|| h.content_type.clone()),
            cache_control: i.response_cache_control.or_else(|| h.cache_control.clone()),
            content_disposition: i.response_content_disposition.or_else(|| h.content_disposition.clone()),
            content_encoding: i.response_content_encoding.or_else(|| h.content_encoding.clone()),
            content_language: i.response_content_language.or_else(|| h.content_language.clone()),
            expires: h.expires_ms.map(ts),
            metadata: meta_to(&rec.user_meta),
            parts_count: parts_count(&rec),
            ..Default::default()
        };
        set_checksums!(out, sums, typed);
        let mut resp = S3Response::new(out);
        if served.is_none() && part.is_none() {
            // The version this whole answer is of: the ready path keeps its head (`ready.rs`).
            resp.extensions.insert(super::Whole::of(&rec));
        }
        Ok(resp)
    }

    pub(super) async fn do_head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let i = req.input;
        let part = part_number(i.part_number, i.range.is_some())?;
        let rec = self.tier.head(&i.bucket, &i.key).await.s3()?;
        let conds = (i.if_match, i.if_none_match, i.if_modified_since, i.if_unmodified_since);
        match plan_read(&rec, &conds, None) {
            Err(e) if e.kind() == ErrorKind::NotModified => return Err(not_modified(&rec)),
            other => other.s3()?,
        };
        let mut out = head_output(&rec);
        if let Some(n) = part {
            let (range, _) = part_range(&rec, n).s3()?;
            if let Some(r) = range {
                out.content_length = Some(i64::try_from(r.end - r.start).unwrap_or(i64::MAX));
                out.content_range = Some(format!("bytes {}-{}/{}", r.start, r.end - 1, rec.size));
            }
        }
        set_checksums!(out, checksums(&rec, i.checksum_mode.as_ref(), part), typed);
        Ok(S3Response::new(out))
    }

    pub(super) async fn do_delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.tier.delete(&req.input.bucket, &req.input.key).await.s3()?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    pub(super) async fn do_delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let who = super::grants::Caller::of(&req.extensions);
        let i = req.input;
        self.tier.bucket(&i.bucket).await.s3()?;
        if i.delete.objects.len() > 1000 {
            return Err(s3_error!(MalformedXML, "DeleteObjects takes at most 1000 keys"));
        }
        let quiet = i.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for obj in i.delete.objects {
            // Each key is checked on its own, as S3 does: a refused key is an error entry.
            if !super::grants::Caller::may_delete(who.as_deref(), &i.bucket, &obj.key) {
                let (code, message) = (Some("AccessDenied".to_owned()), Some("Access Denied".to_owned()));
                errors.push(s3s::dto::Error { code, key: Some(obj.key), message, version_id: None });
                continue;
            }
            match self.tier.delete(&i.bucket, &obj.key).await {
                Ok(()) if quiet => {}
                Ok(()) => deleted.push(DeletedObject { key: Some(obj.key), ..Default::default() }),
                Err(e) => {
                    let s3e = to_s3(e);
                    errors.push(s3s::dto::Error {
                        code: Some(s3e.code().as_str().to_owned()),
                        key: Some(obj.key),
                        message: s3e.message().map(str::to_owned),
                        version_id: None,
                    });
                }
            }
        }
        let out = DeleteObjectsOutput { deleted: Some(deleted), errors: Some(errors), ..Default::default() };
        Ok(S3Response::new(out))
    }

    pub(super) async fn do_copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let condition = write_condition_of(&req.headers)?;
        let i = req.input;
        let (src_bucket, src_key) = copy_source(&i.copy_source)?;
        let replace = i.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if !replace && src_bucket == i.bucket && src_key == i.key {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata"
            ));
        }
        let new_meta = replace.then(|| {
            let h = headers_from(
                i.content_type,
                i.cache_control,
                i.content_disposition,
                i.content_encoding,
                i.content_language,
                i.expires,
            );
            (h, meta_from(i.metadata))
        });
        let conds = (
            i.copy_source_if_match,
            i.copy_source_if_none_match,
            i.copy_source_if_modified_since,
            i.copy_source_if_unmodified_since,
        );
        let check = |r: &ObjectRecord| copy_source_check(r, &conds, None).map(|_| ());
        let rec =
            self.tier.copy((&src_bucket, &src_key), (&i.bucket, &i.key), (new_meta, condition), check).await.s3()?;
        let result = CopyObjectResult {
            e_tag: Some(etag(&rec)),
            last_modified: Some(ts(rec.last_modified_ms)),
            ..Default::default()
        };
        Ok(S3Response::new(CopyObjectOutput { copy_object_result: Some(result), ..Default::default() }))
    }
}

/// The bucket and key of a copy source. Every object has the one version `null`, so that
/// version id names the object too.
pub(super) fn copy_source(cs: &CopySource) -> S3Result<(String, String)> {
    match cs {
        CopySource::Bucket { bucket, key, version_id } if version_id.as_deref().is_none_or(|v| v == "null") => {
            Ok((bucket.to_string(), key.to_string()))
        }
        CopySource::Bucket { .. } => Err(s3_error!(NoSuchVersion, "only version null exists")),
        _ => Err(s3_error!(NotImplemented, "access-point copy sources are not supported")),
    }
}

/// The copy-source preconditions and range of a source version. For copies, a "not
/// modified" source fails the precondition, as S3 does.
pub(super) fn copy_source_check(
    r: &ObjectRecord,
    conds: &super::convert::Conditions,
    range: Option<&Range>,
) -> crate::error::Result<Option<std::ops::Range<u64>>> {
    match plan_read(r, conds, range) {
        Err(e) if e.kind() == ErrorKind::NotModified => {
            Err(Error::new(ErrorKind::PreconditionFailed, "copy source not modified"))
        }
        other => other,
    }
}

/// A 304 with the validators of the version it is about (RFC 9110 §15.4.5).
fn not_modified(rec: &ObjectRecord) -> s3s::S3Error {
    let mut e = s3s::S3Error::new(s3s::S3ErrorCode::NotModified);
    let mut h = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(&format!("\"{}\"", rec.etag)) {
        h.insert(http::header::ETAG, v);
    }
    if let Ok(v) = http::HeaderValue::from_str(&crate::http::conditional::http_date(rec.last_modified_ms)) {
        h.insert(http::header::LAST_MODIFIED, v);
    }
    e.set_headers(h);
    e
}

fn head_output(rec: &ObjectRecord) -> HeadObjectOutput {
    let h = &rec.headers;
    HeadObjectOutput {
        content_length: Some(i64::try_from(rec.size).unwrap_or(i64::MAX)),
        accept_ranges: Some("bytes".to_owned()),
        e_tag: Some(etag(rec)),
        last_modified: Some(ts(rec.last_modified_ms)),
        content_type: h.content_type.clone(),
        cache_control: h.cache_control.clone(),
        content_disposition: h.content_disposition.clone(),
        content_encoding: h.content_encoding.clone(),
        content_language: h.content_language.clone(),
        expires: h.expires_ms.map(ts),
        metadata: meta_to(&rec.user_meta),
        parts_count: parts_count(rec),
        ..Default::default()
    }
}

/// `partNumber`: 1 to 10000, and never beside a Range header.
fn part_number(n: Option<i32>, with_range: bool) -> S3Result<Option<u32>> {
    let Some(n) = n else { return Ok(None) };
    if with_range {
        return Err(s3_error!(InvalidRequest, "Cannot specify both Range header and partNumber query parameter"));
    }
    match u32::try_from(n) {
        Ok(n) if (1..=crate::tier::MAX_PART_NUMBER).contains(&n) => Ok(Some(n)),
        _ => Err(s3_error!(InvalidArgument, "Part number must be an integer between 1 and 10000, inclusive")),
    }
}

/// The bytes of part `n` (`None`: all of an empty object), and the parts count S3 names
/// for multipart objects.
fn part_range(rec: &ObjectRecord, n: u32) -> crate::error::Result<(Option<std::ops::Range<u64>>, Option<i32>)> {
    let bad = || Error::new(ErrorKind::InvalidPartNumber, format!("The requested partnumber {n} is not satisfiable"));
    let parts = &rec.details.parts;
    if parts.is_empty() {
        if rec.etag.contains('-') {
            return Err(Error::new(ErrorKind::Conflict, "the part sizes of this object were not recorded"));
        }
        return match n {
            1 if rec.size == 0 => Ok((None, None)),
            1 => Ok((Some(0..rec.size), None)),
            _ => Err(bad()),
        };
    }
    let i = usize::try_from(n - 1).map_err(|_| bad())?;
    let part = parts.get(i).ok_or_else(bad)?;
    let start: u64 = parts[..i].iter().map(|p| p.size).sum();
    let count = i32::try_from(parts.len()).ok();
    Ok(((part.size > 0).then(|| start..start + part.size), count))
}

/// `x-amz-mp-parts-count` of a multipart object.
fn parts_count(rec: &ObjectRecord) -> Option<i32> {
    (!rec.details.parts.is_empty()).then(|| i32::try_from(rec.details.parts.len()).ok()).flatten()
}

/// The checksum fields a GET or HEAD returns: only with `x-amz-checksum-mode: ENABLED`;
/// for one part of a multipart object, that part's.
fn checksums(rec: &ObjectRecord, mode: Option<&ChecksumMode>, part: Option<u32>) -> super::checksum::Fields {
    if mode.is_none_or(|m| m.as_str() != ChecksumMode::ENABLED) {
        return super::checksum::Fields::default();
    }
    let c = match part {
        Some(n) if !rec.details.parts.is_empty() => {
            rec.details.parts.get(n as usize - 1).and_then(|p| p.checksum.as_ref())
        }
        _ => rec.details.checksum.as_ref(),
    };
    super::checksum::fields(c)
}
