//! Query strings and form bodies (`a=b&c=d`).
//!
//! Every front end reads its parameters through here, decoded once by `form_urlencoded`
//! (percent escapes and `+`), so that a key written as `X%2DAmz%2DSignature` is the same
//! key everywhere: routing, the access log's redaction and the handlers agree on it.

use std::borrow::Cow;

/// The decoded `(name, value)` pairs of `query`, in order. Empty segments are skipped.
pub fn pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    form_urlencoded::parse(query.as_bytes())
}

/// The decoded parameter names of `query`, in order; values are not decoded (routing asks
/// only for names, on every request, so it should not pay for decoding signatures).
pub fn names(query: &str) -> impl Iterator<Item = Cow<'_, str>> {
    query.split('&').filter(|kv| !kv.is_empty()).map(|kv| {
        let raw = kv.split_once('=').map_or(kv, |(k, _)| k);
        if raw.bytes().any(|b| b == b'%' || b == b'+') {
            pairs(raw).next().map_or(Cow::Borrowed(""), |(k, _)| Cow::Owned(k.into_owned()))
        } else {
            Cow::Borrowed(raw)
        }
    })
}

/// Whether `query` has a parameter called `name` (with or without a value).
pub fn has(query: &str, name: &str) -> bool {
    names(query).any(|k| k == name)
}

/// The first value of `name` in `query`.
pub fn value(query: &str, name: &str) -> Option<String> {
    pairs(query).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// `query` with the values of the parameters in `secret` replaced by `REDACTED`; every
/// other byte is kept as sent.
pub fn redact(query: &str, secret: &[&str]) -> String {
    query
        .split('&')
        .map(|kv| {
            let raw = kv.split_once('=').map_or(kv, |(k, _)| k);
            let is_secret = pairs(raw).next().is_some_and(|(k, _)| secret.contains(&k.as_ref()));
            if is_secret { format!("{raw}=REDACTED") } else { kv.to_owned() }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_once_for_every_caller() {
        let q = "bucket=b&prefix=a%2Fb+c&x";
        let all: Vec<_> = pairs(q).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        assert_eq!(
            all,
            [("bucket".into(), "b".into()), ("prefix".into(), "a/b c".into()), ("x".into(), String::new())]
        );
        assert!(has(q, "x") && has(q, "bucket") && !has(q, "buck"));
        assert_eq!(names("a=1&b%2Dc=2&&d+e").collect::<Vec<_>>(), ["a", "b-c", "d e"]);
        assert_eq!(value(q, "prefix").as_deref(), Some("a/b c"));
        assert_eq!(value("X%2DAmz%2DCredential=k%2F1", "X-Amz-Credential").as_deref(), Some("k/1"));
    }

    /// Issue 13: a percent-encoded secret name is redacted too.
    #[test]
    fn redaction_sees_encoded_names() {
        let secret = ["X-Amz-Signature", "ss"];
        assert_eq!(redact("a=1&X-Amz-Signature=abc&b=%20", &secret), "a=1&X-Amz-Signature=REDACTED&b=%20");
        assert_eq!(redact("X%2DAmz%2DSignature=abc", &secret), "X%2DAmz%2DSignature=REDACTED");
        assert_eq!(redact("ss=1&flag", &secret), "ss=REDACTED&flag");
    }
}
