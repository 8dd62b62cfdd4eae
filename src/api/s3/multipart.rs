//! Multipart operations: Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts,
//! ListMultipartUploads.

use super::StrataS3;
use super::checksum::set_checksums;
use super::convert::{Checksums, body_stream, headers_from, md5_header, meta_from, ts};
use super::error::IntoS3;
use crate::tier::CompletedPart;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

/// `x-amz-copy-source-range`: `bytes=first-last`, both given, as S3 requires.
fn copy_range(v: &str) -> S3Result<Range> {
    let bad = || s3_error!(InvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last");
    let (a, b) = v.trim().strip_prefix("bytes=").and_then(|r| r.split_once('-')).ok_or_else(bad)?;
    let (first, last) = (a.parse::<u64>().map_err(|_| bad())?, b.parse::<u64>().map_err(|_| bad())?);
    if first > last {
        return Err(bad());
    }
    Ok(Range::Int { first, last: Some(last) })
}

fn limit(v: Option<i32>, what: &str) -> S3Result<usize> {
    match v {
        None => Ok(1000),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "{what} must not be negative")),
        Some(n) => Ok(usize::try_from(n).unwrap_or(1000).min(1000)),
    }
}

impl StrataS3 {
    pub(super) async fn do_create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let i = req.input;
        let h = headers_from(
            i.content_type,
            i.cache_control,
            i.content_disposition,
            i.content_encoding,
            i.content_language,
            i.expires,
        );
        let up = self.tier.create_upload(&i.bucket, &i.key, h, meta_from(i.metadata)).await.s3()?;
        let out = CreateMultipartUploadOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(up.upload_id),
            ..Default::default()
        };
        Ok(S3Response::new(out))
    }

    pub(super) async fn do_upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let trailers = req.trailing_headers.clone();
        let i = req.input;
        let body = i.body.ok_or_else(|| s3_error!(IncompleteBody, "UploadPart needs a body"))?;
        let part_number = u32::try_from(i.part_number).map_err(|_| s3_error!(InvalidArgument, "bad part number"))?;
        let want = Checksums {
            algorithm: i.checksum_algorithm,
            crc32: i.checksum_crc32,
            crc32c: i.checksum_crc32c,
            sha1: i.checksum_sha1,
            sha256: i.checksum_sha256,
            crc64nvme: i.checksum_crc64nvme,
        };
        let (body, slot) = body_stream(body, want, trailers);
        let part = self
            .tier
            .upload_part(
                (&i.bucket, &i.key, &i.upload_id),
                part_number,
                body,
                (
                    i.content_length.map(|n| u64::try_from(n).unwrap_or(0)),
                    md5_header(i.content_md5.as_deref())?,
                    Some(slot),
                ),
            )
            .await
            .s3()?;
        let sums = super::checksum::fields(part.checksum.as_ref());
        let mut out = UploadPartOutput { e_tag: Some(ETag::Strong(part.etag)), ..Default::default() };
        let _ = set_checksums!(out, sums);
        Ok(S3Response::new(out))
    }

    pub(super) async fn do_upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let i = req.input;
        let part_number = u32::try_from(i.part_number).map_err(|_| s3_error!(InvalidArgument, "bad part number"))?;
        let (src_bucket, src_key) = super::object::copy_source(&i.copy_source)?;
        let range = i.copy_source_range.as_deref().map(copy_range).transpose()?;
        let conds = (
            i.copy_source_if_match,
            i.copy_source_if_none_match,
            i.copy_source_if_modified_since,
            i.copy_source_if_unmodified_since,
        );
        // The upload must exist before the source is read.
        self.tier.upload(&i.bucket, &i.key, &i.upload_id).await.s3()?;
        let check = |r: &crate::catalog::ObjectRecord| {
            if let Some(Range::Int { last: Some(last), .. }) = &range
                && *last >= r.size
            {
                let msg = format!("Range specified is not valid for source object of size: {}", r.size);
                return Err(crate::error::Error::new(crate::error::ErrorKind::InvalidInput, msg));
            }
            super::object::copy_source_check(r, &conds, range.as_ref())
        };
        let (src, served, body) = self.tier.get(&src_bucket, &src_key, check).await.s3()?;
        let len = served.as_ref().map_or(src.size, |r| r.end - r.start);
        let part = self
            .tier
            .upload_part((&i.bucket, &i.key, &i.upload_id), part_number, body, (Some(len), None, None))
            .await
            .s3()?;
        let result = CopyPartResult {
            e_tag: Some(ETag::Strong(part.etag)),
            last_modified: Some(ts(part.last_modified_ms)),
            ..Default::default()
        };
        Ok(S3Response::new(UploadPartCopyOutput { copy_part_result: Some(result), ..Default::default() }))
    }

    pub(super) async fn do_complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let i = req.input;
        let mut parts = Vec::new();
        for p in i.multipart_upload.and_then(|m| m.parts).unwrap_or_default() {
            let n = p
                .part_number
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| s3_error!(InvalidPart, "part without a number"))?;
            let etag = p
                .e_tag
                .map(|e| e.value().to_owned())
                .ok_or_else(|| s3_error!(InvalidPart, "part {n} without an ETag"))?;
            parts.push(CompletedPart { part_number: n, etag });
        }
        if parts.is_empty() {
            return Err(s3_error!(MalformedXML, "CompleteMultipartUpload names no parts"));
        }
        let cond = super::convert::write_condition(i.if_match, i.if_none_match)?;
        let combine = super::checksum::combine;
        let rec = self.tier.complete_upload(&i.bucket, &i.key, &i.upload_id, (&parts, &cond, &combine)).await.s3()?;
        let sums = super::checksum::fields(rec.details.checksum.as_ref());
        let mut out = CompleteMultipartUploadOutput {
            bucket: Some(i.bucket.clone()),
            key: Some(i.key.clone()),
            e_tag: Some(ETag::Strong(rec.etag)),
            location: Some(format!("/{}/{}", i.bucket, i.key)),
            ..Default::default()
        };
        set_checksums!(out, sums, typed);
        Ok(S3Response::new(out))
    }

    pub(super) async fn do_abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let i = req.input;
        self.tier.abort_upload(&i.bucket, &i.key, &i.upload_id).await.s3()?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(super) async fn do_list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let i = req.input;
        let max = limit(i.max_parts, "max-parts")?;
        let after = u32::try_from(i.part_number_marker.unwrap_or(0)).unwrap_or(0);
        let mut parts = self.tier.list_parts((&i.bucket, &i.key, &i.upload_id), after, max + 1).await.s3()?;
        let truncated = parts.len() > max;
        parts.truncate(max);
        let next = parts.last().filter(|_| truncated).map(|p| i32::try_from(p.part_number).unwrap_or(0));
        let parts = parts
            .into_iter()
            .map(|p| Part {
                part_number: i32::try_from(p.part_number).ok(),
                size: i64::try_from(p.size).ok(),
                e_tag: Some(ETag::Strong(p.etag)),
                last_modified: Some(ts(p.last_modified_ms)),
                ..Default::default()
            })
            .collect();
        let out = ListPartsOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(i.upload_id),
            max_parts: Some(i32::try_from(max).unwrap_or(1000)),
            part_number_marker: i.part_number_marker,
            next_part_number_marker: next,
            is_truncated: Some(truncated),
            parts: Some(parts),
            ..Default::default()
        };
        Ok(S3Response::new(out))
    }

    pub(super) async fn do_list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let i = req.input;
        let max = limit(i.max_uploads, "max-uploads")?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let markers = (i.key_marker.as_deref().unwrap_or(""), i.upload_id_marker.as_deref().unwrap_or(""));
        let mut ups = self.tier.list_uploads(&i.bucket, &prefix, markers, max + 1).await.s3()?;
        let truncated = ups.len() > max;
        ups.truncate(max);
        let last = ups.last().filter(|_| truncated).map(|u| (u.key.clone(), u.upload_id.clone()));
        let uploads = ups
            .into_iter()
            .map(|u| MultipartUpload {
                key: Some(u.key),
                upload_id: Some(u.upload_id),
                initiated: Some(ts(u.created_ms)),
                storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                ..Default::default()
            })
            .collect();
        let out = ListMultipartUploadsOutput {
            bucket: Some(i.bucket),
            prefix: i.prefix,
            key_marker: i.key_marker,
            upload_id_marker: i.upload_id_marker,
            max_uploads: Some(i32::try_from(max).unwrap_or(1000)),
            is_truncated: Some(truncated),
            next_key_marker: last.as_ref().map(|l| l.0.clone()),
            next_upload_id_marker: last.map(|l| l.1),
            uploads: Some(uploads),
            ..Default::default()
        };
        Ok(S3Response::new(out))
    }
}
