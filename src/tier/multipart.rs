//! Multipart uploads: parts are staged on local disk, then streamed into the cold store as
//! one object at completion, so the store only ever sees whole objects under their keys.
//!
//! Layout: `<staging>/<upload id>/<part number>`, each written to a `.tmp` sibling, fsynced
//! and renamed, so a part file is either complete or absent.

use super::Tier;
use crate::catalog::{ObjectDetails, ObjectHeaders, ObjectRecord, PartInfo, PartRecord, UploadRecord};
use crate::clock::now_ms;
use crate::error::{Error, ErrorKind, Result};
use crate::names::validate_key;
use bytes::Bytes;
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// S3's smallest part size for every part but the last.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// S3's highest part number.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// Combines the checksums of an object's parts into the object's (S3's composite
/// checksum), or `None` when they do not all have one of one algorithm. The S3 front end
/// supplies it: the tier knows no checksum algorithm.
pub type CombineChecksums = dyn Fn(&[PartRecord]) -> Option<crate::catalog::Checksum> + Send + Sync;

/// A part as named by the client in CompleteMultipartUpload.
#[derive(Debug, Clone)]
pub struct CompletedPart {
    /// Part number.
    pub part_number: u32,
    /// ETag the client received for it (quotes allowed).
    pub etag: String,
}

impl Tier {
    fn upload_dir(&self, upload_id: &str) -> PathBuf {
        self.inner.staging.join(upload_id)
    }

    /// The upload `upload_id` of `bucket`/`key`, or `UploadNotFound`.
    pub async fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<UploadRecord> {
        self.bucket(bucket).await?;
        match self.inner.catalog.get_upload(upload_id).await? {
            Some(u) if u.bucket == bucket && u.key == key => Ok(u),
            _ => Err(Error::new(ErrorKind::UploadNotFound, format!("no upload {upload_id:?} for {key:?}"))),
        }
    }

    /// Starts a multipart upload and returns its id.
    pub async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        headers: ObjectHeaders,
        user_meta: BTreeMap<String, String>,
    ) -> Result<UploadRecord> {
        validate_key(key)?;
        self.writable()?;
        self.bucket(bucket).await?;
        let rec = UploadRecord {
            upload_id: uuid::Uuid::new_v4().simple().to_string(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            created_ms: now_ms(),
            headers,
            user_meta,
        };
        tokio::fs::create_dir_all(self.upload_dir(&rec.upload_id)).await?;
        self.inner.catalog.create_upload(&rec).await?;
        Ok(rec)
    }

    /// Stores one part (replacing an earlier upload of the same number).
    pub async fn upload_part(
        &self,
        (bucket, key, upload_id): (&str, &str, &str),
        part_number: u32,
        body: crate::backend::ByteStream,
        (content_length, content_md5, checksum): (Option<u64>, Option<[u8; 16]>, Option<super::ChecksumSlot>),
    ) -> Result<PartRecord> {
        if !(1..=MAX_PART_NUMBER).contains(&part_number) {
            return Err(Error::new(ErrorKind::InvalidInput, "part number must be between 1 and 10000"));
        }
        self.upload(bucket, key, upload_id).await?;
        let dir = self.upload_dir(upload_id);
        let tmp = dir.join(format!("{part_number}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let result = self.write_part_file(&tmp, body, content_length).await;
        let (size, md5) = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        if content_md5.is_some_and(|want| want != md5) {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(Error::new(ErrorKind::BadDigest, "Content-MD5 does not match the part"));
        }
        tokio::fs::rename(&tmp, dir.join(part_number.to_string())).await?;
        let part = PartRecord {
            upload_id: upload_id.to_owned(),
            part_number,
            size,
            etag: hex::encode(md5),
            last_modified_ms: now_ms(),
            checksum: checksum.and_then(|c| super::take_checksum(&c)),
        };
        self.inner.catalog.put_part(&part).await?;
        Ok(part)
    }

    async fn write_part_file(
        &self,
        path: &std::path::Path,
        body: crate::backend::ByteStream,
        expected: Option<u64>,
    ) -> Result<(u64, [u8; 16])> {
        let mut file = PartFile { file: tokio::fs::File::create(path).await? };
        let out = self.pump(body, &mut file, expected).await?;
        file.file.sync_all().await?;
        Ok(out)
    }

    /// Parts of an upload after `after`, up to `limit`.
    pub async fn list_parts(
        &self,
        (bucket, key, upload_id): (&str, &str, &str),
        after: u32,
        limit: usize,
    ) -> Result<Vec<PartRecord>> {
        self.upload(bucket, key, upload_id).await?;
        self.inner.catalog.list_parts(upload_id, after, limit).await
    }

    /// Uploads in progress, in key then id order, after the markers.
    pub async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        markers: (&str, &str),
        limit: usize,
    ) -> Result<Vec<UploadRecord>> {
        self.bucket(bucket).await?;
        self.inner.catalog.list_uploads(bucket, prefix, markers.0, markers.1, limit).await
    }

    /// Discards an upload and its parts.
    pub async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.upload(bucket, key, upload_id).await?;
        self.inner.catalog.delete_upload(upload_id).await?;
        let _ = tokio::fs::remove_dir_all(self.upload_dir(upload_id)).await;
        Ok(())
    }

    /// Assembles the named parts into one object in the cold store and publishes it.
    pub async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        (parts, cond, combine): (&[CompletedPart], &super::WriteCondition, &CombineChecksums),
    ) -> Result<ObjectRecord> {
        let up = match self.upload(bucket, key, upload_id).await {
            Ok(up) => up,
            Err(e) if e.kind() == ErrorKind::UploadNotFound => return self.completed(bucket, key, upload_id, e).await,
            Err(e) => return Err(e),
        };
        self.writable()?;
        self.precheck(bucket, key, cond).await?;
        let stored = self.check_parts(upload_id, parts).await?;
        let place = self.plan(bucket).await?;
        let path = place.path_of(key);
        let opts = crate::journal::write_options(&up.headers, &up.user_meta);
        let mut staged = self.begin_write(&place, &path, &opts).await?;
        let mut etag_md5 = Md5::new();
        let mut size = 0u64;
        for p in &stored {
            let file = self.upload_dir(upload_id).join(p.part_number.to_string());
            if let Err(e) = copy_file(&file, &mut staged).await {
                super::abort_quietly(Box::new(staged)).await;
                return Err(e);
            }
            etag_md5.update(hex::decode(&p.etag).unwrap_or_default());
            size += p.size;
        }
        let rec = ObjectRecord {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size,
            etag: format!("{}-{}", hex::encode(etag_md5.finalize()), stored.len()),
            last_modified_ms: now_ms(),
            backend: place.stores[0].clone(),
            headers: up.headers,
            user_meta: up.user_meta,
            details: ObjectDetails {
                parts: stored.iter().map(|p| PartInfo { size: p.size, checksum: p.checksum.clone() }).collect(),
                upload_id: Some(upload_id.to_owned()),
                checksum: combine(&stored),
            },
            ..Default::default()
        };
        let rec = self.commit_write(staged, rec, &place, (Some(upload_id), cond)).await?;
        let _ = tokio::fs::remove_dir_all(self.upload_dir(upload_id)).await;
        Ok(rec)
    }

    /// A CompleteMultipartUpload of an upload that is gone: S3 answers it again when that
    /// upload made the object that is there now; else `not_found`.
    async fn completed(&self, bucket: &str, key: &str, upload_id: &str, not_found: Error) -> Result<ObjectRecord> {
        match self.inner.catalog.get_object(bucket, key).await? {
            Some(rec) if rec.details.upload_id.as_deref() == Some(upload_id) => Ok(rec),
            _ => Err(not_found),
        }
    }

    /// Checks the client's part list against the stored parts: ascending numbers, known
    /// parts with matching ETags, and every part but the last at least 5 MiB.
    async fn check_parts(&self, upload_id: &str, parts: &[CompletedPart]) -> Result<Vec<PartRecord>> {
        if parts.is_empty() {
            return Err(Error::new(ErrorKind::InvalidInput, "CompleteMultipartUpload names no parts"));
        }
        if parts.windows(2).any(|w| w[0].part_number >= w[1].part_number) {
            return Err(Error::new(ErrorKind::InvalidPartOrder, "parts must be listed in ascending order"));
        }
        let all = self.inner.catalog.list_parts(upload_id, 0, MAX_PART_NUMBER as usize).await?;
        let by_number: BTreeMap<u32, &PartRecord> = all.iter().map(|p| (p.part_number, p)).collect();
        let mut chosen = Vec::with_capacity(parts.len());
        for (i, want) in parts.iter().enumerate() {
            let etag = want.etag.trim().trim_matches('"');
            let p = by_number.get(&want.part_number).filter(|p| p.etag == etag).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidPart,
                    format!("part {} was not uploaded or its ETag differs", want.part_number),
                )
            })?;
            if i + 1 < parts.len() && p.size < MIN_PART_SIZE {
                return Err(Error::new(ErrorKind::EntityTooSmall, format!("part {} is below 5 MiB", p.part_number)));
            }
            chosen.push((*p).clone());
        }
        Ok(chosen)
    }
}

async fn copy_file(path: &std::path::Path, w: &mut dyn crate::backend::ObjectWriter) -> Result<()> {
    let mut f = tokio::fs::File::open(path).await?;
    loop {
        let mut buf = vec![0u8; 1 << 20];
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        w.write(Bytes::from(buf)).await?;
    }
}

/// A staged part file seen as an [`ObjectWriter`](crate::backend::ObjectWriter), so parts
/// go through the same body pump (limits, timeouts, MD5) as whole objects.
struct PartFile {
    file: tokio::fs::File,
}

#[async_trait::async_trait]
impl crate::backend::ObjectWriter for PartFile {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        Ok(self.file.write_all(&chunk).await?)
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        Ok(self.file.sync_all().await?)
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
