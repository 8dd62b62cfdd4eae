//! GetObjectAttributes: an object's ETag, size, storage class, checksum and parts, from the
//! catalog alone (no store is asked).

use super::StrataS3;
use super::checksum::set_checksums;
use super::convert::ts;
use super::error::IntoS3;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

impl StrataS3 {
    pub(super) async fn do_get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let i = req.input;
        if i.version_id.as_deref().is_some_and(|v| v != "null") {
            return Err(s3s::s3_error!(NoSuchVersion, "only version null exists"));
        }
        let rec = self.tier.head(&i.bucket, &i.key).await.s3()?;
        let wants = |a: &str| i.object_attributes.iter().any(|x| x.as_str() == a);
        let mut checksum = Checksum::default();
        set_checksums!(checksum, super::checksum::fields(rec.details.checksum.as_ref()), typed);
        let parts = &rec.details.parts;
        let after = i.part_number_marker.unwrap_or(0).max(0) as usize;
        let max = i.max_parts.map_or(1000, |m| m.clamp(0, 1000) as usize);
        let listed: Vec<ObjectPart> = parts
            .iter()
            .enumerate()
            .skip(after)
            .take(max)
            .map(|(n, p)| {
                let mut part = ObjectPart {
                    part_number: i32::try_from(n + 1).ok(),
                    size: i64::try_from(p.size).ok(),
                    ..Default::default()
                };
                let _ = set_checksums!(part, super::checksum::fields(p.checksum.as_ref()));
                part
            })
            .collect();
        let last = after + listed.len();
        let object_parts = (!parts.is_empty()).then(|| GetObjectAttributesParts {
            total_parts_count: i32::try_from(parts.len()).ok(),
            part_number_marker: i32::try_from(after).ok(),
            next_part_number_marker: i32::try_from(last).ok(),
            max_parts: i32::try_from(max).ok(),
            is_truncated: Some(last < parts.len()),
            parts: Some(listed),
        });
        let out = GetObjectAttributesOutput {
            e_tag: wants(ObjectAttributes::ETAG).then(|| ETag::Strong(rec.etag.clone())),
            object_size: wants(ObjectAttributes::OBJECT_SIZE).then(|| i64::try_from(rec.size).unwrap_or(i64::MAX)),
            storage_class: wants(ObjectAttributes::STORAGE_CLASS)
                .then(|| StorageClass::from_static(StorageClass::STANDARD)),
            checksum: (wants(ObjectAttributes::CHECKSUM) && rec.details.checksum.is_some()).then_some(checksum),
            object_parts: object_parts.filter(|_| wants(ObjectAttributes::OBJECT_PARTS)),
            last_modified: Some(ts(rec.last_modified_ms)),
            ..Default::default()
        };
        Ok(S3Response::new(out))
    }
}
