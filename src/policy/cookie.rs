//! Login cookies of password-protected prefixes.
//!
//! A cookie is `EXPIRES.MAC`: the MAC covers the bucket and the rule's prefix (its
//! scope), the expiry and the password's generation (which is not written out, so a leaked
//! cookie says nothing about the password), so a cookie made for another
//! bucket or prefix, or before the password changed, never verifies, whatever it is named
//! or wherever the browser sends it. The cookie is HttpOnly and SameSite=Lax, and its
//! Path narrows it to the scope.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The cookie name of a scope; distinct scopes get distinct names so they coexist.
pub fn name(bucket: &str, scope: &str) -> String {
    let mut h = Sha256::new();
    h.update(bucket.as_bytes());
    h.update(b"\0");
    h.update(scope.as_bytes());
    format!("strata_login_{}", hex::encode(&h.finalize()[..5]))
}

fn mac(key: &[u8], bucket: &str, scope: &str, expires: i64, generation: &str) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for f in ["strata-login-v1", bucket, scope, &expires.to_string(), generation] {
        m.update(&(f.len() as u64).to_be_bytes());
        m.update(f.as_bytes());
    }
    m
}

/// A cookie value for `bucket`/`scope`, valid until `expires` (Unix seconds).
pub fn make(key: &[u8], bucket: &str, scope: &str, expires: i64, generation: &str) -> String {
    let sig = mac(key, bucket, scope, expires, generation).finalize().into_bytes();
    format!("{expires}.{}", URL_SAFE_NO_PAD.encode(&sig[..16]))
}

/// Whether `value` is a live cookie for `bucket`/`scope` at `now` under `generation`.
pub fn verify(key: &[u8], value: &str, bucket: &str, scope: &str, now: i64, generation: &str) -> bool {
    let Some((exp, sig)) = value.split_once('.') else { return false };
    let (Ok(expires), Ok(sig)) = (exp.parse::<i64>(), URL_SAFE_NO_PAD.decode(sig.as_bytes())) else { return false };
    if sig.len() != 16 || key.is_empty() {
        return false;
    }
    mac(key, bucket, scope, expires, generation).verify_truncated_left(&sig).is_ok() && now < expires
}

/// Values of cookies named `name` in a `Cookie` header (parsed by the `cookie` crate;
/// pairs it cannot parse are skipped).
pub fn find<'a>(header: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    ::cookie::Cookie::split_parse(header)
        .filter_map(Result::ok)
        .filter(move |c| c.name() == name)
        .filter_map(|c| c.value_raw().map(|v| v.trim_matches('"')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_bound_to_scope_generation_and_time() {
        let key = b"cookie key 0123456789";
        let v = make(key, "pics", "albums/", 100, "g1");
        assert!(verify(key, &v, "pics", "albums/", 99, "g1"));
        assert!(!verify(key, &v, "pics", "albums/", 100, "g1"), "expired");
        assert!(!verify(key, &v, "other", "albums/", 1, "g1"), "another bucket");
        assert!(!verify(key, &v, "pics", "", 1, "g1"), "another scope");
        assert!(!verify(key, &v, "pics", "albums/", 1, "g2"), "password changed");
        assert!(!verify(b"another key 0123456789", &v, "pics", "albums/", 1, "g1"));
        assert!(!verify(key, &v.replace("100.", "999."), "pics", "albums/", 1, "g1"), "extended expiry");
        assert!(!v.contains("g1"), "the generation is not written out");
        for junk in ["", "1.2", "x.y.z", "100.!!!!", "100"] {
            assert!(!verify(key, junk, "pics", "albums/", 1, "g1"), "{junk}");
        }
        assert_ne!(name("pics", "albums/"), name("pics", ""));
        let header = format!("a=1; {}={v}; b=2", name("pics", "albums/"));
        assert_eq!(find(&header, &name("pics", "albums/")).collect::<Vec<_>>(), [v.as_str()]);
    }
}
