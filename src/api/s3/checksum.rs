//! Checksums (CRC32, CRC32C, SHA-1, SHA-256, CRC64NVME) as S3 stores and returns them:
//! the one a client declared for a body, verified and kept with the object or part, and
//! the composite checksum of a multipart object (the checksum of its parts' checksums,
//! then `-N`).
//!
//! Verifying a body is `convert::body_stream`'s; this file only names, combines and returns
//! checksums. It must not read bodies.

use crate::catalog::{Checksum, PartRecord};
use base64::Engine;
use s3s::dto::{ChecksumAlgorithm, ChecksumType};

/// Moves [`Fields`] into an S3 output's `checksum_*` fields (every output type names them
/// alike); with `typed`, also `checksum_type`.
macro_rules! set_checksums {
    ($out:expr, $f:expr) => {{
        let f: $crate::api::s3::checksum::Fields = $f;
        $out.checksum_crc32 = f.crc32;
        $out.checksum_crc32c = f.crc32c;
        $out.checksum_sha1 = f.sha1;
        $out.checksum_sha256 = f.sha256;
        $out.checksum_crc64nvme = f.crc64nvme;
        f.kind
    }};
    ($out:expr, $f:expr, typed) => {{
        $out.checksum_type = set_checksums!($out, $f);
    }};
}
pub(super) use set_checksums;

/// The five checksum fields of an S3 output, as s3s names them.
#[derive(Debug, Default)]
pub struct Fields {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub crc64nvme: Option<String>,
    pub kind: Option<ChecksumType>,
}

/// The output fields for `c` (all empty for `None`).
pub fn fields(c: Option<&Checksum>) -> Fields {
    let Some(c) = c else { return Fields::default() };
    let v = Some(c.value.clone());
    let kind = if c.composite { ChecksumType::COMPOSITE } else { ChecksumType::FULL_OBJECT };
    let mut f = Fields { kind: Some(ChecksumType::from_static(kind)), ..Fields::default() };
    match c.algorithm.as_str() {
        ChecksumAlgorithm::CRC32 => f.crc32 = v,
        ChecksumAlgorithm::CRC32C => f.crc32c = v,
        ChecksumAlgorithm::SHA1 => f.sha1 = v,
        ChecksumAlgorithm::SHA256 => f.sha256 = v,
        ChecksumAlgorithm::CRC64NVME => f.crc64nvme = v,
        _ => f.kind = None,
    }
    f
}

/// The checksum to keep from a verified body: the declared algorithm's, else the first
/// one the client sent a value for.
pub fn chosen(declared: Option<&str>, got: &s3s::dto::Checksum, sent: [bool; 5]) -> Option<Checksum> {
    let all = [
        (ChecksumAlgorithm::CRC32, &got.checksum_crc32),
        (ChecksumAlgorithm::CRC32C, &got.checksum_crc32c),
        (ChecksumAlgorithm::SHA1, &got.checksum_sha1),
        (ChecksumAlgorithm::SHA256, &got.checksum_sha256),
        (ChecksumAlgorithm::CRC64NVME, &got.checksum_crc64nvme),
    ];
    let pick = all.iter().zip(sent).find(|((name, v), sent)| v.is_some() && (declared == Some(*name) || *sent));
    let ((name, value), _) = pick?;
    Some(Checksum { algorithm: (*name).to_owned(), value: (*value).clone()?, composite: false })
}

/// S3's composite checksum of `parts`: every part has a checksum of one algorithm, and
/// the object's is that algorithm over their concatenated bytes, then `-N`.
pub fn combine(parts: &[PartRecord]) -> Option<Checksum> {
    let first = parts.first()?.checksum.as_ref()?;
    let mut h = hasher(&first.algorithm)?;
    for p in parts {
        let c = p.checksum.as_ref().filter(|c| c.algorithm == first.algorithm)?;
        h.update(&base64::engine::general_purpose::STANDARD.decode(&c.value).ok()?);
    }
    let done = h.finalize();
    let value =
        [done.checksum_crc32, done.checksum_crc32c, done.checksum_sha1, done.checksum_sha256, done.checksum_crc64nvme]
            .into_iter()
            .flatten()
            .next()?;
    Some(Checksum { algorithm: first.algorithm.clone(), value: format!("{value}-{}", parts.len()), composite: true })
}

fn hasher(algorithm: &str) -> Option<s3s::checksum::ChecksumHasher> {
    let mut h = s3s::checksum::ChecksumHasher::default();
    enable(&mut h, algorithm).then_some(h)
}

/// Turns on `algorithm` in `h`; false for a name S3 does not know.
pub fn enable(h: &mut s3s::checksum::ChecksumHasher, algorithm: &str) -> bool {
    match algorithm {
        ChecksumAlgorithm::CRC32 => h.crc32 = Some(Default::default()),
        ChecksumAlgorithm::CRC32C => h.crc32c = Some(Default::default()),
        ChecksumAlgorithm::SHA1 => h.sha1 = Some(Default::default()),
        ChecksumAlgorithm::SHA256 => h.sha256 = Some(Default::default()),
        ChecksumAlgorithm::CRC64NVME => h.crc64nvme = Some(Default::default()),
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(n: u32, algorithm: &str, value: &str) -> PartRecord {
        PartRecord {
            upload_id: "u".into(),
            part_number: n,
            size: 1,
            etag: String::new(),
            last_modified_ms: 0,
            checksum: Some(Checksum { algorithm: algorithm.into(), value: value.into(), composite: false }),
        }
    }

    /// The composite CRC32 of two parts, as S3 computes it: CRC32 of the parts' raw CRC32s.
    #[test]
    fn composite_is_the_checksum_of_the_checksums() {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let (a, b) = (crc32fast::hash(b"hello "), crc32fast::hash(b"world"));
        let parts = [part(1, "CRC32", &b64(&a.to_be_bytes())), part(2, "CRC32", &b64(&b.to_be_bytes()))];
        let mut raw = a.to_be_bytes().to_vec();
        raw.extend(b.to_be_bytes());
        let want = format!("{}-2", b64(&crc32fast::hash(&raw).to_be_bytes()));
        assert_eq!(combine(&parts).map(|c| (c.value, c.composite)), Some((want, true)));
        let mixed = [part(1, "CRC32", "AAAAAA=="), part(2, "SHA256", "AAAAAA==")];
        assert_eq!(combine(&mixed), None, "parts of different algorithms have no composite");
    }
}
