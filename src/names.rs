//! Which bucket names and object keys strata accepts, and the path of a key under a
//! bucket's prefix.
//!
//! Keys are what S3 takes: any UTF-8 up to 1024 bytes, with `/`, empty, `.` and `..`
//! segments, whitespace and a trailing `/` (a folder) all allowed. Only NUL is refused,
//! since the catalog's text columns cannot hold it. Each store names a path so that
//! nothing is rewritten or escapes its root (`backend::keymap`). This module sits at the
//! bottom of the module graph (config, policy, tier and the front ends all check names);
//! it must not know buckets' settings or any protocol.

use crate::error::{Error, ErrorKind, Result};

/// S3's key length limit, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 1024;

/// Accepts a key or says why not.
pub fn validate_key(key: &str) -> Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::new(
            ErrorKind::KeyTooLong,
            format!("key is {} bytes; the limit is {MAX_KEY_LEN}", key.len()),
        ));
    }
    if key.is_empty() {
        return Err(Error::new(ErrorKind::InvalidKey, "invalid key: empty"));
    }
    if key.contains('\0') {
        return Err(Error::new(ErrorKind::InvalidKey, "invalid key: NUL byte"));
    }
    Ok(())
}

/// Whether `name` is a valid S3 bucket name (3 to 63 characters of lowercase letters,
/// digits, `.` and `-`, starting and ending with a letter or digit, no `..`, not an IPv4
/// address, no `.-` or `-.`, none of S3's reserved prefixes and suffixes). Names starting
/// with `_` are never buckets, so `/_strata/` is free for strata.
pub fn valid_bucket_name(name: &str) -> bool {
    let ok_chars = name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-');
    let edges = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && ok_chars
        && edges(name.bytes().next())
        && edges(name.bytes().last())
        && !name.contains("..")
        && !name.contains(".-")
        && !name.contains("-.")
        && !name.starts_with("xn--")
        && !name.starts_with("sthree-")
        && !name.ends_with("-s3alias")
        && !name.ends_with("--ol-s3")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

/// The path of `key` in a store, under the bucket's `prefix`.
pub fn store_path(prefix: &str, key: &str) -> String {
    format!("{prefix}{key}")
}

/// An object's bucket and key, borrowed: looks up a cache keyed by the owned
/// `(String, String)` without allocating. It hashes as the owned pair does (a tuple hashes
/// its fields in order, and so does this).
#[derive(Hash)]
pub struct ObjectRef<'a>(pub &'a str, pub &'a str);

impl quick_cache::Equivalent<(String, String)> for ObjectRef<'_> {
    fn equivalent(&self, k: &(String, String)) -> bool {
        self.0 == k.0 && self.1 == k.1
    }
}

#[cfg(test)]
mod tests {
    /// A borrowed (bucket, key) finds exactly its owned pair: the caches that look rows
    /// up this way are only right if it hashes and compares as the owned pair does.
    #[test]
    fn a_borrowed_object_ref_finds_its_owned_pair_only() {
        let c = quick_cache::sync::Cache::<(String, String), u8>::new(10);
        c.insert(("b".into(), "k/x".into()), 1);
        c.insert(("bk".into(), "/x".into()), 2);
        assert_eq!(c.get(&ObjectRef("b", "k/x")), Some(1));
        assert_eq!(c.get(&ObjectRef("bk", "/x")), Some(2));
        assert_eq!(c.get(&ObjectRef("b", "k")), None);
        assert_eq!(c.get(&ObjectRef("b", "k/x/")), None);
    }

    use super::*;

    #[test]
    fn accepts_every_key_s3_does() {
        for k in
            ["a", "photos/2024/cat.jpg", "weird name (1).txt", "ünïcødé/ключ", "a//b", "/lead", "dir/", " ", ".", ".."]
        {
            assert!(validate_key(k).is_ok(), "{k:?}");
        }
        assert_eq!(validate_key("").unwrap_err().kind(), ErrorKind::InvalidKey);
        assert_eq!(validate_key("a\0b").unwrap_err().kind(), ErrorKind::InvalidKey);
        assert_eq!(validate_key(&"k".repeat(1025)).unwrap_err().kind(), ErrorKind::KeyTooLong);
        assert!(validate_key(&"k".repeat(1024)).is_ok());
    }

    #[test]
    fn bucket_names() {
        assert!(valid_bucket_name("my-bucket.1"));
        // Regression (issue 14): `foo.-bar` and `foo-.bar` were accepted.
        for bad in ["ab", "-abc", "abc-", "ABC", "a..b", "192.168.1.1", "a_b", "foo.-bar", "foo-.bar", "xn--abc"] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }
}
