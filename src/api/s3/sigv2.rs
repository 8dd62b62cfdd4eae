//! SigV2 checking for the ready path (`ready.rs`): a GET presigned with
//! `AWSAccessKeyId`, `Expires` and `Signature` (aws cli v1's and boto3's default presigner),
//! computed as s3s computes it.
//!
//! As in `sigv4.rs`, this check may only ever accept less than s3s: a request with any
//! header SigV2 signs beyond the method and the resource (`Content-MD5`, `Content-Type`,
//! an `x-amz-` header), a query parameter that names a subresource, or a signature
//! escaped in any other way than once, declines, and the full path checks it.

use http::Request;
use percent_encoding::percent_decode_str;
use ring::hmac;
use std::borrow::Cow;

/// The parts of a SigV2 presigned URL, borrowed from the request.
#[derive(Debug, PartialEq, Eq)]
pub struct Signed<'a> {
    /// The access key id.
    pub key_id: &'a str,
    /// The `Expires` parameter, as sent (it is signed as sent).
    expires: &'a str,
    /// The signature, base64, unescaped.
    signature: Cow<'a, str>,
}

/// The signature of `req` when it is a SigV2-presigned GET that this check can handle.
pub fn parse<B>(req: &Request<B>) -> Option<Signed<'_>> {
    let headers = req.headers();
    let signs_more = headers.contains_key(http::header::AUTHORIZATION)
        || headers.contains_key(http::header::CONTENT_TYPE)
        || headers.contains_key("content-md5")
        || headers.keys().any(|n| n.as_str().starts_with("x-amz-"));
    if signs_more {
        return None;
    }
    let (mut key_id, mut expires, mut signature) = (None, None, None);
    for pair in req.uri().query()?.split('&') {
        let (name, value) = pair.split_once('=')?;
        let slot = match name {
            "AWSAccessKeyId" => &mut key_id,
            "Expires" => &mut expires,
            "Signature" => &mut signature,
            "x-id" if value == "GetObject" => continue,
            _ => return None,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    let plain = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    let (key_id, expires, signature) = (key_id?, expires?, signature?);
    (plain(key_id) && !expires.is_empty() && expires.bytes().all(|b| b.is_ascii_digit())).then_some(())?;
    // s3s reads `+` as a space before it unescapes; SDKs send `%2B`.
    if signature.contains('+') {
        return None;
    }
    let signature = percent_decode_str(signature).decode_utf8().ok()?;
    Some(Signed { key_id, expires, signature })
}

impl Signed<'_> {
    /// Whether the URL has not expired at `now` (Unix seconds).
    pub fn timely(&self, now: i64) -> bool {
        self.expires.parse::<i64>().is_ok_and(|e| now <= e)
    }

    /// The string to sign for `req`, whose bucket is named by its host when
    /// `host_bucket` is given (virtual-host style).
    pub fn string_to_sign<B>(&self, req: &Request<B>, host_bucket: Option<&str>) -> String {
        let mut s = String::with_capacity(64 + req.uri().path().len());
        s.push_str("GET\n\n\n");
        s.push_str(self.expires);
        s.push('\n');
        if let Some(b) = host_bucket {
            s.push('/');
            s.push_str(b);
        }
        // The path as sent: SigV2 signs it raw.
        s.push_str(req.uri().path());
        s
    }

    /// Whether the signature is that of `string_to_sign` with `secret` (compared in
    /// constant time).
    pub fn matches(&self, secret: &str, string_to_sign: &str) -> bool {
        use base64::Engine;
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
        let tag = hmac::sign(&key, string_to_sign.as_bytes());
        let expected = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
        crate::auth::constant_time_eq(expected.as_bytes(), self.signature.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn req(uri: &str) -> Request<()> {
        Request::builder().uri(uri).header("host", "johnsmith.s3.amazonaws.com").body(()).unwrap()
    }

    /// The presigned URL of AWS's SigV2 documentation ("Query string request
    /// authentication"), path style.
    const DOC: &str = "/johnsmith/photos/puppy.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&Expires=1175139620";

    #[test]
    fn accepts_aws_documented_url_and_nothing_else() {
        let r = req(DOC);
        let sig = parse(&r).unwrap();
        assert_eq!(sig.key_id, "AKIAIOSFODNN7EXAMPLE");
        let sts = sig.string_to_sign(&r, None);
        assert_eq!(sts, "GET\n\n\n1175139620\n/johnsmith/photos/puppy.jpg");
        assert!(sig.matches(SECRET, &sts));
        assert!(!sig.matches("another", &sts));
        assert!(sig.timely(1_175_139_620) && !sig.timely(1_175_139_621), "expired after Expires");
        // Virtual-host style signs the bucket before the path.
        let r = req(
            "/photos/puppy.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&Expires=1175139620",
        );
        let sig = parse(&r).unwrap();
        assert!(sig.matches(SECRET, &sig.string_to_sign(&r, Some("johnsmith"))));
        // Another object, a later expiry: the signature no longer holds (the key id is not
        // signed; it chooses the secret).
        for (from, to) in [("puppy", "kitty"), ("1175139620", "1175139999")] {
            let r = req(&DOC.replace(from, to));
            let sig = parse(&r).unwrap();
            assert!(!sig.matches(SECRET, &sig.string_to_sign(&r, None)), "{from} -> {to}");
        }
    }

    #[test]
    fn declines_what_s3s_would_sign_or_read_otherwise() {
        for uri in [
            format!("{DOC}&response-content-type=x"),
            DOC.replace("%2B", "+"),
            DOC.replace("Expires=1175139620", "Expires=-1"),
            "/b/k?AWSAccessKeyId=A&Expires=1".to_owned(),
        ] {
            assert_eq!(parse(&req(&uri)), None, "{uri}");
        }
        let mut r = req(DOC);
        r.headers_mut().insert("x-amz-meta-a", "1".parse().unwrap());
        assert_eq!(parse(&r), None, "an x-amz- header is signed in SigV2");
        let mut r = req(DOC);
        r.headers_mut().insert("content-type", "text/plain".parse().unwrap());
        assert_eq!(parse(&r), None);
    }
}
