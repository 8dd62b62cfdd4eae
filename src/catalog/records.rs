//! Row types of the catalog and their (de)serialisation to database columns.

use super::col;
use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use std::collections::BTreeMap;

/// A bucket: where its objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketRecord {
    /// S3 bucket name.
    pub name: String,
    /// Backend holding its objects.
    pub backend: String,
    /// Prefix of its keys inside the backend ("" or ending in "/").
    pub prefix: String,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: i64,
}

/// Standard headers stored with an object and returned on GET/HEAD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectHeaders {
    /// `Content-Type`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `Cache-Control`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `Content-Disposition`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    /// `Content-Encoding`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// `Content-Language`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// `Expires`, as ms since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<i64>,
}

impl ObjectHeaders {
    pub(super) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    fn from_json(s: &str) -> Result<Self> {
        serde_json::from_str(s)
            .map_err(|e| Error::new(ErrorKind::Internal, "catalog: bad headers column").with_source(e))
    }
}

pub(super) fn map_to_json(m: &BTreeMap<String, String>) -> String {
    serde_json::to_string(m).unwrap_or_else(|_| "{}".to_owned())
}

fn map_from_json(s: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(s).map_err(|e| Error::new(ErrorKind::Internal, "catalog: bad user_meta column").with_source(e))
}

fn to_u64(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::new(ErrorKind::Internal, "catalog: negative size"))
}

/// A checksum as S3 returns it: the algorithm's name and the base64 value, with `-N` after
/// a composite checksum of N parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checksum {
    /// `CRC32`, `CRC32C`, `SHA1`, `SHA256` or `CRC64NVME`.
    pub algorithm: String,
    /// Base64 of the checksum (and `-N` when composite).
    pub value: String,
    /// A checksum of the parts' checksums (S3's `COMPOSITE`), not of the bytes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub composite: bool,
}

impl Checksum {
    /// `ALGORITHM:value`, as a part's checksum column holds it.
    pub fn to_column(&self) -> String {
        format!("{}:{}", self.algorithm, self.value)
    }

    /// The inverse of [`Checksum::to_column`]; `None` for `''`.
    pub fn from_column(s: &str) -> Option<Self> {
        let (algorithm, value) = s.split_once(':')?;
        Some(Self { algorithm: algorithm.to_owned(), value: value.to_owned(), composite: false })
    }
}

/// One part of a multipart object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartInfo {
    /// Length in bytes.
    pub size: u64,
    /// The part's checksum, when its upload carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
}

/// What an object keeps beyond its headers (the `details` column).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectDetails {
    /// The parts of a multipart object, in order; empty for one written in one piece.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartInfo>,
    /// The multipart upload that made it, so a repeated CompleteMultipartUpload gets the
    /// same answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    /// The checksum the client declared and strata verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
}

impl ObjectDetails {
    pub(super) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    fn from_json(s: &str) -> Result<Self> {
        serde_json::from_str(s)
            .map_err(|e| Error::new(ErrorKind::Internal, "catalog: bad details column").with_source(e))
    }
}

/// One object's metadata: the authoritative answer to HEAD and to listings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectRecord {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Length in bytes.
    pub size: u64,
    /// ETag without quotes: hex MD5, or `md5-of-md5s-N` for multipart objects.
    pub etag: String,
    /// Last modification, ms since the Unix epoch.
    pub last_modified_ms: i64,
    /// Backend holding the bytes.
    pub backend: String,
    /// Standard headers.
    pub headers: ObjectHeaders,
    /// `x-amz-meta-*` values, names lower-cased without the prefix.
    pub user_meta: BTreeMap<String, String>,
    /// The journal staging file holding this version's bytes, while some store lacks it.
    pub staging: Option<String>,
    /// Stores that do not hold this version yet (reads skip them).
    pub behind: Vec<String>,
    /// Parts, upload and checksum.
    pub details: ObjectDetails,
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    /// Opaque id handed to the client.
    pub upload_id: String,
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Initiation time, ms since the Unix epoch.
    pub created_ms: i64,
    /// Headers the completed object will carry.
    pub headers: ObjectHeaders,
    /// User metadata the completed object will carry.
    pub user_meta: BTreeMap<String, String>,
}

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRecord {
    /// Upload it belongs to.
    pub upload_id: String,
    /// 1..=10000.
    pub part_number: u32,
    /// Length in bytes.
    pub size: u64,
    /// Hex MD5 of the part.
    pub etag: String,
    /// Upload time, ms since the Unix epoch.
    pub last_modified_ms: i64,
    /// The part's checksum, when its upload carried one.
    pub checksum: Option<Checksum>,
}

impl BucketRecord {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            name: col(r, "name")?,
            backend: col(r, "backend")?,
            prefix: col(r, "prefix")?,
            created_ms: col(r, "created_ms")?,
        })
    }
}

impl ObjectRecord {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            bucket: col(r, "bucket")?,
            key: col(r, "key")?,
            size: to_u64(col(r, "size")?)?,
            etag: col(r, "etag")?,
            last_modified_ms: col(r, "last_modified_ms")?,
            backend: col(r, "backend")?,
            headers: ObjectHeaders::from_json(&col::<String>(r, "headers")?)?,
            user_meta: map_from_json(&col::<String>(r, "user_meta")?)?,
            staging: col(r, "staging")?,
            behind: split_stores(&col::<String>(r, "behind")?),
            details: ObjectDetails::from_json(&col::<String>(r, "details")?)?,
        })
    }
}

/// `"a,b"` → `["a", "b"]`; `""` → `[]`. Backend names never contain commas.
pub(super) fn split_stores(s: &str) -> Vec<String> {
    s.split(',').filter(|p| !p.is_empty()).map(str::to_owned).collect()
}

impl UploadRecord {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            upload_id: col(r, "upload_id")?,
            bucket: col(r, "bucket")?,
            key: col(r, "key")?,
            created_ms: col(r, "created_ms")?,
            headers: ObjectHeaders::from_json(&col::<String>(r, "headers")?)?,
            user_meta: map_from_json(&col::<String>(r, "user_meta")?)?,
        })
    }
}

impl PartRecord {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self> {
        let n: i64 = col(r, "part_number")?;
        Ok(Self {
            upload_id: col(r, "upload_id")?,
            part_number: u32::try_from(n).map_err(|_| Error::new(ErrorKind::Internal, "catalog: bad part number"))?,
            size: to_u64(col(r, "size")?)?,
            etag: col(r, "etag")?,
            last_modified_ms: col(r, "last_modified_ms")?,
            checksum: Checksum::from_column(&col::<String>(r, "checksum")?),
        })
    }
}
