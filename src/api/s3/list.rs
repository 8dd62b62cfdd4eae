//! Listing operations: ListBuckets, ListObjects (v1), ListObjectsV2, and ListObjectVersions
//! as S3 answers it for a bucket that never had versioning (every object once, as version
//! `null`).

use super::StrataS3;
use super::convert::ts;
use super::error::IntoS3;
use crate::catalog::{ListPage, ListQuery, ObjectRecord};
use base64::Engine;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

/// What `encoding-type=url` leaves alone: RFC 3986 unreserved characters and '/'.
const KEY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

struct Encoder(bool);

impl Encoder {
    fn new(t: Option<&EncodingType>) -> S3Result<Self> {
        match t.map(EncodingType::as_str) {
            None => Ok(Encoder(false)),
            Some(EncodingType::URL) => Ok(Encoder(true)),
            Some(other) => Err(s3_error!(InvalidArgument, "Invalid Encoding Method specified in Request: {other}")),
        }
    }

    fn enc(&self, s: String) -> String {
        if self.0 { utf8_percent_encode(&s, KEY_ENCODE).to_string() } else { s }
    }

    fn opt(&self, s: Option<String>) -> Option<String> {
        s.map(|s| self.enc(s))
    }
}

fn max_keys(v: Option<i32>) -> S3Result<usize> {
    match v {
        None => Ok(1000),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok(usize::try_from(n).unwrap_or(1000).min(1000)),
    }
}

/// The one owner of every object and bucket.
fn owner() -> Owner {
    Owner { display_name: Some("strata".to_owned()), id: Some("strata".to_owned()) }
}

fn contents(page: &mut ListPage, e: &Encoder, with_owner: bool) -> (Option<Vec<Object>>, Option<Vec<CommonPrefix>>) {
    let objs = std::mem::take(&mut page.objects).into_iter().map(|o: ObjectRecord| Object {
        key: Some(e.enc(o.key)),
        size: Some(i64::try_from(o.size).unwrap_or(i64::MAX)),
        e_tag: Some(ETag::Strong(o.etag)),
        last_modified: Some(ts(o.last_modified_ms)),
        storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
        owner: with_owner.then(owner),
        ..Default::default()
    });
    (Some(objs.collect()), Some(prefixes(page, e)))
}

fn prefixes(page: &mut ListPage, e: &Encoder) -> Vec<CommonPrefix> {
    std::mem::take(&mut page.common_prefixes).into_iter().map(|p| CommonPrefix { prefix: Some(e.enc(p)) }).collect()
}

/// A delimiter as S3 echoes it: an empty one is no delimiter at all.
fn delimiter(d: Option<String>) -> Option<String> {
    d.filter(|d| !d.is_empty())
}

impl StrataS3 {
    pub(super) async fn do_list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let who = super::grants::Caller::of(&req.extensions);
        let buckets = self.tier.list_buckets().await.s3()?;
        let buckets = buckets
            .into_iter()
            .filter(|b| super::grants::Caller::sees(who.as_deref(), &b.name))
            .map(|b| Bucket { name: Some(b.name), creation_date: Some(ts(b.created_ms)), bucket_region: None })
            .collect();
        Ok(S3Response::new(ListBucketsOutput { buckets: Some(buckets), owner: Some(owner()), ..Default::default() }))
    }

    pub(super) async fn do_list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let i = req.input;
        let e = Encoder::new(i.encoding_type.as_ref())?;
        let token = match &i.continuation_token {
            None => None,
            Some(t) => Some(decode_token(t)?),
        };
        let after = match (token, i.start_after.clone()) {
            (Some(t), Some(s)) => Some(t.max(s)),
            (t, s) => t.or(s),
        };
        let q = ListQuery {
            prefix: i.prefix.clone().unwrap_or_default(),
            delimiter: delimiter(i.delimiter.clone()),
            after,
            max_keys: max_keys(i.max_keys)?,
        };
        let mut page = self.tier.list(&i.bucket, &q).await.s3()?;
        let (objs, cps) = contents(&mut page, &e, i.fetch_owner == Some(true));
        let count = objs.as_ref().map_or(0, Vec::len) + cps.as_ref().map_or(0, Vec::len);
        let out = ListObjectsV2Output {
            name: Some(i.bucket),
            prefix: Some(e.enc(q.prefix)),
            delimiter: e.opt(q.delimiter),
            start_after: e.opt(i.start_after),
            max_keys: Some(i32::try_from(q.max_keys).unwrap_or(1000)),
            key_count: Some(i32::try_from(count).unwrap_or(i32::MAX)),
            is_truncated: Some(page.truncated),
            continuation_token: i.continuation_token,
            next_continuation_token: page.next_marker.as_deref().map(encode_token),
            contents: objs,
            common_prefixes: cps,
            encoding_type: i.encoding_type,
            ..Default::default()
        };
        Ok(S3Response::new(out))
    }

    pub(super) async fn do_list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let i = req.input;
        let e = Encoder::new(i.encoding_type.as_ref())?;
        let q = ListQuery {
            prefix: i.prefix.clone().unwrap_or_default(),
            delimiter: delimiter(i.delimiter.clone()),
            after: i.marker.clone().filter(|m| !m.is_empty()),
            max_keys: max_keys(i.max_keys)?,
        };
        let mut page = self.tier.list(&i.bucket, &q).await.s3()?;
        let next_marker = e.opt(page.next_marker.clone());
        // ListObjects (v1) names each object's owner unasked, as S3 does.
        let (objs, cps) = contents(&mut page, &e, true);
        let out = ListObjectsOutput {
            name: Some(i.bucket),
            prefix: Some(e.enc(q.prefix)),
            delimiter: e.opt(q.delimiter),
            marker: Some(e.enc(i.marker.unwrap_or_default())),
            max_keys: Some(i32::try_from(q.max_keys).unwrap_or(1000)),
            is_truncated: Some(page.truncated),
            next_marker,
            contents: objs,
            common_prefixes: cps,
            encoding_type: i.encoding_type,
            ..Default::default()
        };
        Ok(S3Response::new(out))
    }
}

impl StrataS3 {
    pub(super) async fn do_list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let i = req.input;
        let e = Encoder::new(i.encoding_type.as_ref())?;
        // Each key has the one version `null`, so a version-id-marker adds nothing.
        let q = ListQuery {
            prefix: i.prefix.clone().unwrap_or_default(),
            delimiter: delimiter(i.delimiter.clone()),
            after: i.key_marker.clone().filter(|m| !m.is_empty()),
            max_keys: max_keys(i.max_keys)?,
        };
        let mut page = self.tier.list(&i.bucket, &q).await.s3()?;
        let versions = std::mem::take(&mut page.objects).into_iter().map(|o| ObjectVersion {
            key: Some(e.enc(o.key)),
            version_id: Some("null".to_owned()),
            is_latest: Some(true),
            size: Some(i64::try_from(o.size).unwrap_or(i64::MAX)),
            e_tag: Some(ETag::Strong(o.etag)),
            last_modified: Some(ts(o.last_modified_ms)),
            storage_class: Some(ObjectVersionStorageClass::from_static(ObjectVersionStorageClass::STANDARD)),
            owner: Some(owner()),
            ..Default::default()
        });
        let versions = Some(versions.collect());
        let out = ListObjectVersionsOutput {
            name: Some(i.bucket),
            prefix: Some(e.enc(q.prefix)),
            delimiter: e.opt(q.delimiter),
            key_marker: Some(e.enc(i.key_marker.unwrap_or_default())),
            version_id_marker: Some(i.version_id_marker.unwrap_or_default()),
            max_keys: Some(i32::try_from(q.max_keys).unwrap_or(1000)),
            is_truncated: Some(page.truncated),
            next_key_marker: e.opt(page.next_marker.clone()),
            next_version_id_marker: page.next_marker.is_some().then(|| "null".to_owned()),
            common_prefixes: Some(prefixes(&mut page, &e)),
            versions,
            encoding_type: i.encoding_type,
            ..Default::default()
        };
        Ok(S3Response::new(out))
    }
}

/// Continuation tokens are the last returned entry, base64-encoded so clients treat them
/// as opaque.
fn encode_token(last: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

fn decode_token(t: &str) -> S3Result<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "The continuation token provided is incorrect"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_and_rejects_garbage() {
        for k in ["a", "photos/2024/ü.jpg", ""] {
            assert_eq!(decode_token(&encode_token(k)).unwrap(), k);
        }
        assert!(decode_token("!!!").is_err());
    }

    #[test]
    fn url_encoding_keeps_slashes() {
        let e = Encoder(true);
        assert_eq!(e.enc("a b/ü+&.txt".to_owned()), "a%20b/%C3%BC%2B%26.txt");
        assert_eq!(Encoder(false).enc("a b".to_owned()), "a b");
    }
}
