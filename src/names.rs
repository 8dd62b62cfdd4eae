//! Which bucket names and object keys strata accepts, and how a key maps to a path in a
//! cold store.
//!
//! A key must map to exactly one path that the store keeps verbatim: stores normalise
//! `a//b`, `a/./b` and `a/../b`, and a disk would let `..` escape its root. This module
//! sits at the bottom of the module graph (config, policy, tier and the front ends all
//! check names); it must not know buckets' settings or any protocol.

use crate::error::{Error, ErrorKind, Result};

/// S3's key length limit, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 1024;

/// Accepts a key or says why not.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::new(ErrorKind::InvalidKey, format!("invalid key: {why}")));
    if key.len() > MAX_KEY_LEN {
        return Err(Error::new(
            ErrorKind::KeyTooLong,
            format!("key is {} bytes; the limit is {MAX_KEY_LEN}", key.len()),
        ));
    }
    if key.is_empty() {
        return bad("empty");
    }
    if key.starts_with('/') {
        return bad("leading '/'");
    }
    if key.ends_with('/') {
        return bad("trailing '/' (directory markers are not stored)");
    }
    if key.contains('\0') {
        return bad("NUL byte");
    }
    if key.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return bad("empty, '.' or '..' path segment");
    }
    Ok(())
}

/// Whether `name` is a valid S3 bucket name (3 to 63 characters of lowercase letters,
/// digits, `.` and `-`, starting and ending with a letter or digit, no `..`, not an IPv4
/// address). Names starting with `_` are never buckets, so `/_strata/` is free for strata.
pub fn valid_bucket_name(name: &str) -> bool {
    let ok_chars = name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-');
    let edges = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && ok_chars
        && edges(name.bytes().next())
        && edges(name.bytes().last())
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

/// The path of `key` in a store, under the bucket's `prefix`.
pub fn store_path(prefix: &str, key: &str) -> String {
    format!("{prefix}{key}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_keys() {
        for k in ["a", "photos/2024/cat.jpg", "weird name (1).txt", "ünïcødé/ключ", "a.b/c..d", "..a", "a.."] {
            assert!(validate_key(k).is_ok(), "{k}");
        }
    }

    #[test]
    fn rejects_escaping_keys() {
        for k in ["", "/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "a/", "a\0b", ".", ".."] {
            assert_eq!(validate_key(k).unwrap_err().kind(), ErrorKind::InvalidKey, "{k:?}");
        }
        assert_eq!(validate_key(&"k".repeat(1025)).unwrap_err().kind(), ErrorKind::KeyTooLong);
        assert!(validate_key(&"k".repeat(1024)).is_ok());
    }

    #[test]
    fn bucket_names() {
        assert!(valid_bucket_name("my-bucket.1"));
        for bad in ["ab", "-abc", "abc-", "ABC", "a..b", "192.168.1.1", "a_b"] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    proptest! {
        /// No accepted key, joined under a prefix, can climb out of it.
        #[test]
        fn accepted_keys_stay_under_prefix(key in "[a-z./\\\\]{1,12}") {
            if validate_key(&key).is_ok() {
                let p = std::path::Path::new("/root/bucket").join(store_path("", &key));
                let normal: Vec<_> = p.components().collect();
                prop_assert!(normal.iter().all(|c| !matches!(c, std::path::Component::ParentDir | std::path::Component::CurDir)));
                prop_assert!(p.starts_with("/root/bucket"));
            }
        }
    }
}
