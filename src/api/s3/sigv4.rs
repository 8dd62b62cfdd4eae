//! SigV4 checking for the ready path (`ready.rs`): the signature of a GET signed in its
//! `Authorization` header or in a presigned URL, computed as s3s computes it, with the
//! derived signing key of a (secret, day, region) kept instead of four HMACs per request.
//!
//! This check may only ever *accept less* than s3s: whatever it cannot parse, whatever
//! s3s would treat in some special way (a `+` in the query, a missing signed header, a
//! session token, another service, a path only the raw-path fallback would match) makes it
//! say no, and the request takes the full path, where s3s checks it and answers every
//! error. It never answers an error itself.

use http::{HeaderMap, Request};
use percent_encoding::percent_decode_str;
use ring::hmac;
use std::borrow::Cow;

/// What presigned URLs and headers may claim as the request's time beyond the server's
/// clock (s3s allows 15 minutes; less here only sends more requests to s3s).
const MAX_SKEW_SECS: i64 = 5 * 60;

/// Longest validity of a presigned URL (seven days, as S3).
const MAX_EXPIRES_SECS: i64 = 7 * 24 * 3600;

/// The parts of a SigV4 signature that the check needs, borrowed from the request.
#[derive(Debug, PartialEq, Eq)]
pub struct Signed<'a> {
    /// The access key id.
    pub key_id: &'a str,
    /// `YYYYMMDD` of the credential scope.
    pub day: &'a str,
    /// The region of the credential scope.
    pub region: &'a str,
    /// `YYYYMMDDTHHMMSSZ`.
    amz_date: &'a str,
    /// Sorted, lowercase, `;`-separated.
    signed_headers: Cow<'a, str>,
    /// 64 lowercase hex digits.
    signature: &'a str,
    /// Seconds a presigned URL is valid; `None` for a header signature.
    expires: Option<i64>,
    /// The payload hash of the canonical request.
    payload: &'a str,
}

/// The signature of `req` when it is a SigV4 GET with no body that this check can handle.
pub fn parse<B>(req: &Request<B>) -> Option<Signed<'_>> {
    match req.headers().get(http::header::AUTHORIZATION) {
        Some(auth) => from_header(auth.to_str().ok()?, req.headers(), req.uri().query()),
        None => from_query(req.uri().query()?),
    }
}

fn from_header<'a>(auth: &'a str, headers: &'a HeaderMap, query: Option<&str>) -> Option<Signed<'a>> {
    // The SDKs add `x-id=GetObject` to the path of a GetObject; nothing else is handled.
    if query.is_some_and(|q| q != "x-id=GetObject") {
        return None;
    }
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=')?;
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return None,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    let (key_id, day, region) = scope(credential?, "/")?;
    let amz_date = headers.get("x-amz-date")?.to_str().ok()?;
    let payload = headers.get("x-amz-content-sha256")?.to_str().ok()?;
    // A GET has no body: its payload is the empty string's hash or unsigned.
    if payload != EMPTY_SHA256 && payload != "UNSIGNED-PAYLOAD" {
        return None;
    }
    let (signed_headers, signature) = (Cow::Borrowed(signed_headers?), signature?);
    Some(Signed { key_id, day, region, amz_date, signed_headers, signature, expires: None, payload })
}

/// The SHA-256 of nothing, in hex.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn from_query(query: &str) -> Option<Signed<'_>> {
    let (mut algorithm, mut credential, mut amz_date, mut expires, mut signed_headers, mut signature) =
        (None, None, None, None, None, None);
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=')?;
        let slot = match name {
            "X-Amz-Algorithm" => &mut algorithm,
            "X-Amz-Credential" => &mut credential,
            "X-Amz-Date" => &mut amz_date,
            "X-Amz-Expires" => &mut expires,
            "X-Amz-SignedHeaders" => &mut signed_headers,
            "X-Amz-Signature" => &mut signature,
            "x-id" if value == "GetObject" => continue,
            // A session token, response overrides, a version: the full path's.
            _ => return None,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    (algorithm? == "AWS4-HMAC-SHA256").then_some(())?;
    let (key_id, day, region) = scope(credential?, "%2F")?;
    let plain = |v: &str| v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let (amz_date, signature, signed_headers) = (amz_date?, signature?, decode(signed_headers?)?);
    (plain(amz_date) && plain(signature)).then_some(())?;
    Some(Signed {
        key_id,
        day,
        region,
        amz_date,
        signed_headers,
        signature,
        expires: Some(expires?.parse().ok()?),
        payload: "UNSIGNED-PAYLOAD",
    })
}

/// `KEY<sep>YYYYMMDD<sep>REGION<sep>s3<sep>aws4_request` → (key, day, region): `/` in a
/// header, `%2F` in a query (where nothing else may be escaped, so the parts are borrowed
/// from the request as sent).
fn scope<'a>(credential: &'a str, sep: &str) -> Option<(&'a str, &'a str, &'a str)> {
    let mut it = credential.split(sep);
    let (key_id, day, region) = (it.next()?, it.next()?, it.next()?);
    (it.next()? == "s3" && it.next()? == "aws4_request" && it.next().is_none()).then_some(())?;
    let plain = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    (plain(key_id) && day.len() == 8 && day.bytes().all(|b| b.is_ascii_digit()) && plain(region))
        .then_some((key_id, day, region))
}

impl Signed<'_> {
    /// Whether the request's time and a presigned URL's validity hold at `now` (Unix
    /// seconds), and the scope's day is the request's.
    pub fn timely(&self, now: i64) -> bool {
        let Some(at) = unix_of(self.amz_date) else { return false };
        if !self.amz_date.starts_with(self.day) || at - now > MAX_SKEW_SECS {
            return false;
        }
        match self.expires {
            Some(e) => (1..=MAX_EXPIRES_SECS).contains(&e) && now - at <= e,
            None => now - at <= MAX_SKEW_SECS,
        }
    }

    /// The string to sign for `req` (path `path`, already percent-decoded); `None` when a
    /// signed header is missing or the names are not sorted and distinct.
    pub fn string_to_sign<B>(&self, req: &Request<B>, path: &str) -> Option<String> {
        let mut c = String::with_capacity(512);
        c.push_str("GET\n");
        match as_sent(req.uri().path(), false) {
            true => c.push_str(req.uri().path()),
            false => uri_encode(&mut c, path, false),
        }
        c.push('\n');
        self.canonical_query(&mut c, req.uri().query().unwrap_or(""))?;
        let mut last = "";
        for name in self.signed_headers.split(';') {
            if name <= last || name.bytes().any(|b| b.is_ascii_uppercase()) || name == "authorization" {
                return None;
            }
            last = name;
            c.push_str(name);
            c.push(':');
            let mut values = req.headers().get_all(name).iter().peekable();
            if values.peek().is_none() {
                // HTTP/2 carries the host as `:authority`.
                (name == "host").then_some(())?;
                normalize(&mut c, req.uri().authority()?.as_str());
            }
            for (i, v) in values.enumerate() {
                if i > 0 {
                    c.push(',');
                }
                normalize(&mut c, v.to_str().ok()?);
            }
            c.push('\n');
        }
        c.push('\n');
        c.push_str(&self.signed_headers);
        c.push('\n');
        c.push_str(self.payload);
        let digest = ring::digest::digest(&ring::digest::SHA256, c.as_bytes());
        let mut s = String::with_capacity(128);
        s.push_str("AWS4-HMAC-SHA256\n");
        s.push_str(self.amz_date);
        s.push('\n');
        for part in [self.day, "/", self.region, "/s3/aws4_request\n"] {
            s.push_str(part);
        }
        s.push_str(&hex::encode(digest.as_ref()));
        Some(s)
    }

    /// The sorted, re-encoded query without the signature (s3s's canonical query). SDKs
    /// send it already in canonical form, so each part is copied as sent when re-encoding
    /// would not change it, and decoded and re-encoded only otherwise.
    fn canonical_query(&self, c: &mut String, query: &str) -> Option<()> {
        let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::with_capacity(8);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if name == "X-Amz-Signature" {
                continue;
            }
            pairs.push((canonical(name, true)?, canonical(value, true)?));
        }
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        for (i, (n, v)) in pairs.iter().enumerate() {
            if i > 0 {
                c.push('&');
            }
            c.push_str(n);
            c.push('=');
            c.push_str(v);
        }
        c.push('\n');
        Some(())
    }

    /// Whether the signature is that of `string_to_sign` under `key` (compared in
    /// constant time).
    pub fn matches(&self, key: &hmac::Key, string_to_sign: &str) -> bool {
        let tag = hmac::sign(key, string_to_sign.as_bytes());
        let mut hex = [0u8; 64];
        for (i, b) in tag.as_ref().iter().enumerate() {
            hex[2 * i] = HEX[usize::from(b >> 4)];
            hex[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        crate::auth::constant_time_eq(&hex, self.signature.as_bytes())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The signing key of `secret` for `day` and `region` (four HMACs: worth keeping).
pub fn signing_key(secret: &str, day: &str, region: &str) -> hmac::Key {
    let mut k = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, format!("AWS4{secret}").as_bytes()), day.as_bytes());
    for part in [region, "s3", "aws4_request"] {
        k = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, k.as_ref()), part.as_bytes());
    }
    hmac::Key::new(hmac::HMAC_SHA256, k.as_ref())
}

/// A query value or name, percent-decoded; `None` for a `+` (s3s reads it as a space,
/// SDKs never send one) or bytes that are not UTF-8.
fn decode(s: &str) -> Option<Cow<'_, str>> {
    if s.contains('+') {
        return None;
    }
    percent_decode_str(s).decode_utf8().ok()
}

/// The path of `raw` percent-decoded, as s3s decodes it; `None` if it is not UTF-8 or has
/// bytes that s3s would sign raw (its fallback, which this check does not try).
pub fn decoded_path(raw: &str) -> Option<Cow<'_, str>> {
    let plain = raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~/%".contains(&b));
    plain.then_some(())?;
    percent_decode_str(raw).decode_utf8().ok()
}

/// `raw` (escaped as sent) in SigV4's canonical encoding: itself when re-encoding its
/// decoded form would give it back, else that re-encoding; `None` if it does not decode.
fn canonical(raw: &str, slash: bool) -> Option<Cow<'_, str>> {
    if as_sent(raw, slash) {
        return Some(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len() + 8);
    uri_encode(&mut out, &decode(raw)?, slash);
    Some(Cow::Owned(out))
}

/// Whether `raw` is already in SigV4's encoding: unreserved bytes (and `/` unless
/// `slash`), and `%XX` in upper case for every other byte and only for them.
fn as_sent(raw: &str, slash: bool) -> bool {
    let b = raw.as_bytes();
    let unreserved = |c: u8| c.is_ascii_alphanumeric() || b"_-~.".contains(&c);
    let upper_hex = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c if unreserved(c) || (c == b'/' && !slash) => i += 1,
            b'%' if i + 2 < b.len() && upper_hex(b[i + 1]) && upper_hex(b[i + 2]) => {
                let v = u8::from_str_radix(&raw[i + 1..i + 3], 16).unwrap_or(b'A');
                // A query's non-ASCII escapes are decoded, so that bytes which are not
                // UTF-8 are declined as s3s would not read them (a path is checked before).
                if unreserved(v) || (v == b'/' && !slash) || (slash && v >= 0x80) {
                    return false;
                }
                i += 3;
            }
            _ => return false,
        }
    }
    true
}

/// SigV4's URI encoding: unreserved bytes kept, `/` kept unless `slash`, the rest `%XX`.
fn uri_encode(out: &mut String, input: &str, slash: bool) {
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    for &b in input.as_bytes() {
        if b.is_ascii_alphanumeric() || b"_-~.".contains(&b) || (b == b'/' && !slash) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(UPPER[usize::from(b >> 4)]));
            out.push(char::from(UPPER[usize::from(b & 15)]));
        }
    }
}

/// A header value trimmed, its inner runs of whitespace made one space.
fn normalize(out: &mut String, value: &str) {
    for (i, word) in value.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
}

/// `YYYYMMDDTHHMMSSZ` → Unix seconds.
fn unix_of(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    (b.len() == 16 && b[8] == b'T' && b[15] == b'Z').then_some(())?;
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<u32>().ok();
    let month = time::Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(num(0..4)?).ok()?, month, u8::try_from(num(6..8)?).ok()?);
    let hms = (u8::try_from(num(9..11)?).ok()?, u8::try_from(num(11..13)?).ok()?, u8::try_from(num(13..15)?).ok()?);
    let time = time::Time::from_hms(hms.0, hms.1, hms.2).ok()?;
    Some(time::PrimitiveDateTime::new(date.ok()?, time).assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
        UriPathNormalizationMode, sign,
    };
    use aws_sigv4::sign::v4;
    use proptest::prelude::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// What SDKs leave unescaped in a key.
    const SDK_PATH: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    /// 2026-12-04T12:00:00Z.
    const AT: u64 = 1_796_385_600;

    /// `uri` signed by the AWS SDK's signer at `AT`, in the header or the query.
    fn signed(uri: &str, presigned: bool, extra: &[(&str, &str)]) -> Request<()> {
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        if presigned {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(Duration::from_secs(600));
        } else {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let identity = aws_credential_types::Credentials::new("AKID", SECRET, None, None, "t").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(UNIX_EPOCH + Duration::from_secs(AT))
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let mut headers = vec![("host", "localhost:9000")];
        headers.extend_from_slice(extra);
        let body = if presigned { SignableBody::UnsignedPayload } else { SignableBody::Bytes(&[]) };
        let signable = SignableRequest::new("GET", uri, headers.iter().copied(), body).unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut req = Request::builder().method("GET").uri(uri);
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(()).unwrap();
        instructions.apply_to_request_http1x(&mut req);
        req
    }

    fn accepted(req: &Request<()>, secret: &str, now: u64) -> bool {
        let Some(sig) = parse(req) else { return false };
        let path = decoded_path(req.uri().path()).unwrap();
        let Some(sts) = sig.string_to_sign(req, &path) else { return false };
        sig.timely(now as i64) && sig.matches(&signing_key(secret, sig.day, sig.region), &sts)
    }

    #[test]
    fn accepts_what_the_sdk_signs_in_headers_and_urls() {
        for presigned in [false, true] {
            for uri in ["http://localhost:9000/b/k", "http://localhost:9000/b/a%20dir/%C3%A9t%C3%A9.jpg?x-id=GetObject"]
            {
                let req = signed(uri, presigned, &[]);
                assert!(accepted(&req, SECRET, AT + 1), "{uri} presigned={presigned}");
                assert!(!accepted(&req, "another secret", AT + 1), "the secret matters");
            }
        }
        let with_ua = signed("http://localhost:9000/b/k", false, &[("x-amz-user-agent", "a  b ")]);
        assert!(accepted(&with_ua, SECRET, AT), "signed extra headers are normalised as the signer does");
    }

    #[test]
    fn refuses_late_early_and_tampered_requests() {
        let url = signed("http://localhost:9000/b/k", true, &[]);
        assert!(accepted(&url, SECRET, AT + 600));
        assert!(!accepted(&url, SECRET, AT + 601), "expired");
        assert!(!accepted(&url, SECRET, AT - 301), "too far in the future");
        let hdr = signed("http://localhost:9000/b/k", false, &[]);
        assert!(!accepted(&hdr, SECRET, AT + 301), "a header signature is good for five minutes");
        // Another key, object or query, and a header the signature names but the request
        // lacks.
        for (from, to) in [("/b/k", "/b/j"), ("X-Amz-Expires=600", "X-Amz-Expires=6000"), ("AKID", "AKIE")] {
            let mut r = url.clone_without_body();
            *r.uri_mut() = url.uri().to_string().replace(from, to).parse().unwrap();
            assert!(!accepted(&r, SECRET, AT + 1), "{from} -> {to}");
        }
        let mut r = hdr.clone_without_body();
        r.headers_mut().remove("x-amz-date");
        assert!(!accepted(&r, SECRET, AT));
        let mut r = hdr.clone_without_body();
        r.headers_mut().insert("host", "elsewhere:9000".parse().unwrap());
        assert!(!accepted(&r, SECRET, AT), "the host is signed");
    }

    #[test]
    fn declines_what_s3s_would_treat_specially() {
        let url = signed("http://localhost:9000/b/k?response-content-type=x", true, &[]);
        assert_eq!(parse(&url), None, "response overrides take the full path");
        let plus = signed("http://localhost:9000/b/a+b", false, &[]);
        assert!(decoded_path(plus.uri().path()).is_none(), "a raw `+` takes the full path");
        let token = Request::builder().uri("/b/k?X-Amz-Security-Token=t&X-Amz-Signature=s").body(()).unwrap();
        assert_eq!(parse(&token), None, "session tokens take the full path");
    }

    trait CloneWithoutBody {
        fn clone_without_body(&self) -> Request<()>;
    }

    impl CloneWithoutBody for Request<()> {
        fn clone_without_body(&self) -> Request<()> {
            let mut r = Request::builder().method(self.method()).uri(self.uri()).body(()).unwrap();
            *r.headers_mut() = self.headers().clone();
            r
        }
    }

    proptest! {
        /// Copying a part as sent gives what decoding and re-encoding it gives (the
        /// bytes s3s signs).
        #[test]
        fn a_part_copied_as_sent_is_its_re_encoding(raw in "([a-zA-Z0-9/_.~+-]|%[0-9A-Fa-f]{2}){0,12}", slash: bool) {
            // (A path that is not UTF-8 once decoded is declined before, by `decoded_path`.)
            if let (true, Some(decoded)) = (as_sent(&raw, slash), decode(&raw)) {
                let mut again = String::new();
                uri_encode(&mut again, &decoded, slash);
                prop_assert_eq!(again, raw);
            }
        }

        /// Any object name the SDK signs (path-encoded as SDKs encode it) is accepted, and
        /// the check never panics on what it is sent.
        #[test]
        fn any_key_the_sdk_signs_is_accepted(key in "[a-zA-Z0-9 ._~!*'()/é-]{1,40}", presigned: bool) {
            let enc = percent_encoding::utf8_percent_encode(&key, SDK_PATH).to_string();
            let req = signed(&format!("http://localhost:9000/b/{enc}"), presigned, &[]);
            prop_assert!(decoded_path(req.uri().path()).is_none_or(|_| accepted(&req, SECRET, AT)));
        }

        #[test]
        fn garbage_is_declined_without_a_panic(q in "[A-Za-z0-9=&%+/-]{0,80}", auth in "[ -~]{0,80}") {
            let r = Request::builder().uri(format!("/b/k?{q}")).header("authorization", auth).body(()).unwrap();
            if let Some(sig) = parse(&r) {
                let _ = sig.string_to_sign(&r, "/b/k");
                let _ = sig.timely(AT as i64);
            }
            let r = Request::builder().uri(format!("/b/k?{q}")).body(()).unwrap();
            let _ = parse(&r).map(|s| s.timely(AT as i64));
        }
    }
}
