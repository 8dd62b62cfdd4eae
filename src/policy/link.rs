//! Signed expiring links: `?se=EXPIRES&sk=KEYID&ss=SIGNATURE` (plus `sip` to bind a client
//! address and `sd` to force a download), verified in constant time.
//!
//! The signature is HMAC-SHA256 over the bucket, key, expiry, address and download name,
//! cut to 128 bits and base64url-encoded (22 characters). Keys have ids, so a new key can
//! sign while older ones still verify. A bad or foreign signature is 403; a good one past
//! its expiry is 410, as nginx's secure_link does.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::IpAddr;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the signature kept (from the left of the HMAC).
const SIG_LEN: usize = 16;

/// What a link grants besides the object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkParams {
    /// Expiry, in seconds since the Unix epoch.
    pub expires: i64,
    /// Only this client address may use the link.
    pub ip: Option<IpAddr>,
    /// Serve with `Content-Disposition: attachment; filename=…`.
    pub download: Option<String>,
}

impl LinkParams {
    /// Link parameters from `expires` (a duration such as "1h", from now), `ip` and
    /// `download`, as `strata sign` and the admin API take them; the error says which
    /// argument is wrong.
    pub fn parse(expires: &str, ip: Option<&str>, download: Option<&str>) -> Result<LinkParams, String> {
        let ttl = humantime::parse_duration(expires).map_err(|e| format!("expires: {e} (write e.g. \"1h\")"))?;
        if ttl.is_zero() || ttl > std::time::Duration::from_secs(10 * 365 * 86400) {
            return Err("expires: must be between 1s and 10 years".into());
        }
        let ip = match ip.filter(|s| !s.is_empty()) {
            Some(s) => Some(s.parse().map_err(|_| format!("ip: {s:?} is not an IP address"))?),
            None => None,
        };
        let now = crate::clock::now_secs();
        let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        Ok(LinkParams { expires: now.saturating_add(secs), ip, download: download.map(str::to_owned) })
    }
}

/// Why a link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// Malformed, unknown key, wrong signature or another client address: 403.
    Forbidden,
    /// Genuine but expired: 410.
    Expired,
}

/// The keys that sign and verify links; the first one signs.
#[derive(Clone)]
pub struct LinkKeys {
    keys: Vec<(String, Vec<u8>)>,
}

impl LinkKeys {
    /// Keys as (id, secret); the first signs. An empty list signs nothing and verifies
    /// nothing.
    pub fn new(keys: Vec<(String, Vec<u8>)>) -> Self {
        Self { keys }
    }

    /// A secret derived from the signing key for `purpose` (login cookies use one), so a
    /// rotation of the signing key rotates it too.
    pub fn derive(&self, purpose: &str) -> Vec<u8> {
        let Some((_, secret)) = self.keys.first() else { return Vec::new() };
        let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        m.update(b"strata-derive\n");
        m.update(purpose.as_bytes());
        m.finalize().into_bytes().to_vec()
    }

    /// A signature of `fields` for `purpose` by the signing key: (key id, 22 characters
    /// of base64url). Other signed URLs (image derivatives) use it; each field is
    /// length-prefixed, so no two field lists share a message.
    pub fn sign_fields(&self, purpose: &str, fields: &[&str]) -> Option<(String, String)> {
        let (id, secret) = self.keys.first()?;
        let mac = fields_mac(secret, purpose, fields).finalize().into_bytes();
        Some((id.clone(), URL_SAFE_NO_PAD.encode(&mac[..SIG_LEN])))
    }

    /// Whether `sig` is the signature of `fields` for `purpose` by key `id`, compared in
    /// constant time. An unknown key id or a malformed signature is `false`.
    pub fn verify_fields(&self, purpose: &str, fields: &[&str], id: &str, sig: &str) -> bool {
        let Some((_, secret)) = self.keys.iter().find(|(k, _)| k == id) else { return false };
        let Ok(sig) = URL_SAFE_NO_PAD.decode(sig.as_bytes()) else { return false };
        sig.len() == SIG_LEN && fields_mac(secret, purpose, fields).verify_truncated_left(&sig).is_ok()
    }

    /// The query string (without `?`) that makes `bucket`/`key` readable under `p`.
    pub fn sign(&self, bucket: &str, key: &str, p: &LinkParams) -> Option<String> {
        let (id, secret) = self.keys.first()?;
        let mac = mac(secret, bucket, key, p).finalize().into_bytes();
        let mut q = format!("se={}&sk={id}", p.expires);
        if let Some(ip) = p.ip {
            q.push_str(&format!("&sip={ip}"));
        }
        if let Some(d) = &p.download {
            q.push_str("&sd=");
            q.push_str(&percent_encoding::utf8_percent_encode(d, QUERY).to_string());
        }
        q.push_str("&ss=");
        q.push_str(&URL_SAFE_NO_PAD.encode(&mac[..SIG_LEN]));
        Some(q)
    }

    /// Checks the link parameters in `query` for `bucket`/`key`, used at `now` (Unix
    /// seconds) by `peer`. `Ok(None)` when the query carries no link at all.
    pub fn verify(
        &self,
        bucket: &str,
        key: &str,
        query: &str,
        now: i64,
        peer: IpAddr,
    ) -> Result<Option<LinkParams>, LinkError> {
        let mut fields: [Option<String>; 5] = Default::default();
        let mut any = false;
        // `form_urlencoded` as in `http::query` (policy sits below http).
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "se" => 0,
                "sk" => 1,
                "ss" => 2,
                "sip" => 3,
                "sd" => 4,
                _ => continue,
            };
            any = true;
            if fields[slot].replace(v.into_owned()).is_some() {
                return Err(LinkError::Forbidden); // a repeated field is never ours
            }
        }
        if !any {
            return Ok(None);
        }
        let [Some(expires), Some(id), Some(sig), ip, download] = fields else { return Err(LinkError::Forbidden) };
        let expires: i64 = expires.parse().map_err(|_| LinkError::Forbidden)?;
        let ip = match ip {
            Some(s) => Some(s.parse::<IpAddr>().map_err(|_| LinkError::Forbidden)?),
            None => None,
        };
        let secret = self.keys.iter().find(|(k, _)| *k == id).map(|(_, s)| s).ok_or(LinkError::Forbidden)?;
        let sig = URL_SAFE_NO_PAD.decode(sig.as_bytes()).map_err(|_| LinkError::Forbidden)?;
        if sig.len() != SIG_LEN {
            return Err(LinkError::Forbidden);
        }
        let p = LinkParams { expires, ip, download };
        // `verify_truncated_left` compares in constant time.
        mac(secret, bucket, key, &p).verify_truncated_left(&sig).map_err(|_| LinkError::Forbidden)?;
        if p.ip.is_some_and(|ip| ip != peer) {
            return Err(LinkError::Forbidden);
        }
        if now >= p.expires {
            return Err(LinkError::Expired);
        }
        Ok(Some(p))
    }
}

/// Characters escaped in a key's path segments (the `/` between them stays).
const PATH: &percent_encoding::AsciiSet = &QUERY.remove(b'/');

/// A signed link to `bucket`/`key` for `ttl` from `now` (Unix seconds): absolute under
/// `base` (e.g. "https://media.example.com"), else a path. Path style, which every
/// strata answers whatever its host settings.
pub fn link(keys: &LinkKeys, base: Option<&str>, bucket: &str, key: &str, p: &LinkParams) -> Option<String> {
    let q = keys.sign(bucket, key, p)?;
    let path = percent_encoding::utf8_percent_encode(key, PATH);
    Some(format!("{}/{bucket}/{path}?{q}", base.unwrap_or("").trim_end_matches('/')))
}

fn mac(secret: &[u8], bucket: &str, key: &str, p: &LinkParams) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    let ip = p.ip.map(|i| i.to_string()).unwrap_or_default();
    // Each field is length-prefixed, so no two different tuples share a message.
    for field in [bucket, key, &p.expires.to_string(), &ip, p.download.as_deref().unwrap_or("\u{0}none")] {
        m.update(&(field.len() as u64).to_be_bytes());
        m.update(field.as_bytes());
    }
    m
}

fn fields_mac(secret: &[u8], purpose: &str, fields: &[&str]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    // The purpose first, so a signature made for one kind of URL never verifies another.
    for field in std::iter::once(purpose).chain(fields.iter().copied()) {
        m.update(&(field.len() as u64).to_be_bytes());
        m.update(field.as_bytes());
    }
    m
}

/// Characters escaped in query values.
pub const QUERY: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> LinkKeys {
        LinkKeys::new(vec![
            ("k2".into(), b"second-secret-0123456789".to_vec()),
            ("k1".into(), b"first-secret-0123456789".to_vec()),
        ])
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn round_trip_expiry_and_binding() {
        let k = keys();
        let p = LinkParams { expires: 1000, ip: None, download: Some("my file.mp3".into()) };
        let q = k.sign("b", "a/k.mp3", &p).unwrap();
        assert!(q.contains("sk=k2") && q.len() < 120, "{q}");
        assert_eq!(k.verify("b", "a/k.mp3", &q, 999, PEER), Ok(Some(p.clone())));
        assert_eq!(k.verify("b", "a/k.mp3", &q, 1000, PEER), Err(LinkError::Expired));
        assert_eq!(k.verify("b", "a/k.mp4", &q, 1, PEER), Err(LinkError::Forbidden), "another key");
        assert_eq!(k.verify("c", "a/k.mp3", &q, 1, PEER), Err(LinkError::Forbidden), "another bucket");
        assert_eq!(k.verify("b", "a/k.mp3", "x=1", 1, PEER), Ok(None));
        assert_eq!(k.verify("b", "a/k.mp3", &q.replace("se=1000", "se=9999"), 1, PEER), Err(LinkError::Forbidden));
        assert_eq!(k.verify("b", "a/k.mp3", &format!("{q}&se=1000"), 1, PEER), Err(LinkError::Forbidden));
        let bound = LinkParams { ip: Some("10.0.0.7".parse().unwrap()), ..p };
        let q = k.sign("b", "k", &bound).unwrap();
        assert_eq!(k.verify("b", "k", &q, 1, PEER), Err(LinkError::Forbidden));
        assert!(k.verify("b", "k", &q, 1, "10.0.0.7".parse().unwrap()).is_ok());
        assert_eq!(k.verify("b", "k", &q.replace("&sip=10.0.0.7", ""), 1, PEER), Err(LinkError::Forbidden));
    }

    #[test]
    fn links_are_absolute_under_a_base_url() {
        let p = LinkParams { expires: 7, ..Default::default() };
        let abs = link(&keys(), Some("https://media.example.com/"), "b", "a dir/ü.jpg", &p).unwrap();
        assert!(abs.starts_with("https://media.example.com/b/a%20dir/%C3%BC.jpg?se=7&sk=k2&ss="), "{abs}");
        let path = link(&keys(), None, "b", "k", &p).unwrap();
        assert!(path.starts_with("/b/k?se=7"), "{path}");
        assert!(link(&LinkKeys::new(Vec::new()), None, "b", "k", &p).is_none(), "no key, no link");
    }

    #[test]
    fn rotated_keys_still_verify_and_unknown_ids_do_not() {
        let old = LinkKeys::new(vec![("k1".into(), b"first-secret-0123456789".to_vec())]);
        let q = old.sign("b", "k", &LinkParams { expires: 50, ..Default::default() }).unwrap();
        assert!(keys().verify("b", "k", &q, 1, PEER).unwrap().is_some(), "k1 still verifies after k2 took over");
        let other = LinkKeys::new(vec![("k1".into(), b"another-secret-0123456789".to_vec())]);
        assert_eq!(other.verify("b", "k", &q, 1, PEER), Err(LinkError::Forbidden), "same id, other secret");
        assert_eq!(keys().verify("b", "k", &q.replace("sk=k1", "sk=k9"), 1, PEER), Err(LinkError::Forbidden));
    }

    #[test]
    fn every_flipped_signature_character_is_refused() {
        let k = keys();
        let q = k.sign("b", "k", &LinkParams { expires: 50, ..Default::default() }).unwrap();
        let sig = q.rsplit_once("ss=").unwrap().1.to_owned();
        for i in 0..sig.len() {
            let mut bad = sig.clone().into_bytes();
            bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
            let bad = q.replace(&sig, std::str::from_utf8(&bad).unwrap());
            assert_eq!(k.verify("b", "k", &bad, 1, PEER), Err(LinkError::Forbidden), "position {i}");
        }
    }

    proptest! {
        /// Random queries never verify and never panic.
        #[test]
        fn random_queries_are_refused(q in "[a-z=&%0-9A-Z_+-]{0,120}") {
            let r = keys().verify("b", "k", &q, 1, PEER);
            prop_assert!(matches!(r, Ok(None) | Err(LinkError::Forbidden)));
        }

        /// Any signed link verifies for exactly its own object.
        #[test]
        fn signed_links_verify(key in "[a-zA-Z0-9/ ._-]{1,40}", exp in 2i64..4_000_000_000, dl in proptest::option::of("[ -~]{0,20}")) {
            let p = LinkParams { expires: exp, ip: None, download: dl };
            let q = keys().sign("bk", &key, &p).unwrap();
            prop_assert_eq!(keys().verify("bk", &key, &q, exp - 1, PEER), Ok(Some(p)));
            prop_assert_eq!(keys().verify("bk", &format!("{key}x"), &q, exp - 1, PEER), Err(LinkError::Forbidden));
        }
    }
}
