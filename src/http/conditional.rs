//! Conditional requests (RFC 9110 §13): If-Match, If-Unmodified-Since, If-None-Match,
//! If-Modified-Since and If-Range, evaluated in the RFC's order.

use http::HeaderMap;
use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The outcome of the preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Serve the request.
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// The validators of a representation.
pub struct Validators<'a> {
    /// The quoted entity tag, e.g. `"abc"`.
    pub etag: &'a str,
    /// Last modification, in ms since the epoch.
    pub last_modified_ms: i64,
}

impl Validators<'_> {
    fn modified(&self) -> SystemTime {
        // HTTP dates have whole seconds.
        UNIX_EPOCH + Duration::from_secs(u64::try_from(self.last_modified_ms / 1000).unwrap_or(0))
    }
}

fn header(h: &HeaderMap, name: http::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Whether `list` (a header value such as `"a", W/"b"`) names `etag`. `weak` allows weak
/// tags to match (If-None-Match); strong comparison (If-Match) never matches them.
fn matches(list: &str, etag: &str, weak: bool) -> bool {
    if list.trim() == "*" {
        return true;
    }
    list.split(',').map(str::trim).any(|t| match t.strip_prefix("W/") {
        Some(w) => weak && w == etag,
        None => t == etag,
    })
}

/// Evaluates the preconditions of a GET or HEAD.
pub fn evaluate(h: &HeaderMap, v: &Validators<'_>) -> Outcome {
    if let Some(im) = header(h, IF_MATCH) {
        if !matches(im, v.etag, false) {
            return Outcome::Failed;
        }
    } else if let Some(t) = header(h, IF_UNMODIFIED_SINCE).and_then(|s| httpdate::parse_http_date(s).ok())
        && v.modified() > t
    {
        return Outcome::Failed;
    }
    if let Some(inm) = header(h, IF_NONE_MATCH) {
        if matches(inm, v.etag, true) {
            return Outcome::NotModified;
        }
    } else if let Some(t) = header(h, IF_MODIFIED_SINCE).and_then(|s| httpdate::parse_http_date(s).ok())
        && v.modified() <= t
    {
        return Outcome::NotModified;
    }
    Outcome::Proceed
}

/// Whether a `Range` may be honoured under `If-Range` (absent, or naming this exact
/// representation by strong ETag or by an exact date).
pub fn range_applies(h: &HeaderMap, v: &Validators<'_>) -> bool {
    match header(h, IF_RANGE) {
        None => true,
        Some(s) if s.starts_with('"') => s == v.etag,
        Some(s) => httpdate::parse_http_date(s).is_ok_and(|t| t == v.modified()),
    }
}

/// An HTTP date for `ms` since the epoch.
pub fn http_date(ms: i64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(u64::try_from(ms / 1000).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(pairs: &[(&str, &str)]) -> Outcome {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        evaluate(&h, &Validators { etag: "\"e1\"", last_modified_ms: 1_700_000_000_500 })
    }

    #[test]
    fn rfc_order_and_comparisons() {
        let lm = http_date(1_700_000_000_500);
        let before = http_date(1_600_000_000_000);
        assert_eq!(eval(&[]), Outcome::Proceed);
        assert_eq!(eval(&[("if-none-match", "\"e1\"")]), Outcome::NotModified);
        assert_eq!(eval(&[("if-none-match", "W/\"e1\"")]), Outcome::NotModified, "weak comparison");
        assert_eq!(eval(&[("if-none-match", "\"x\", \"e1\"")]), Outcome::NotModified);
        assert_eq!(eval(&[("if-none-match", "*")]), Outcome::NotModified);
        assert_eq!(eval(&[("if-none-match", "\"x\"")]), Outcome::Proceed);
        assert_eq!(eval(&[("if-modified-since", &lm)]), Outcome::NotModified);
        assert_eq!(eval(&[("if-modified-since", &before)]), Outcome::Proceed);
        assert_eq!(eval(&[("if-none-match", "\"x\""), ("if-modified-since", &lm)]), Outcome::Proceed, "INM wins");
        assert_eq!(eval(&[("if-match", "\"x\"")]), Outcome::Failed);
        assert_eq!(eval(&[("if-match", "W/\"e1\"")]), Outcome::Failed, "strong comparison");
        assert_eq!(eval(&[("if-match", "\"e1\"")]), Outcome::Proceed);
        assert_eq!(eval(&[("if-unmodified-since", &before)]), Outcome::Failed);
        assert_eq!(eval(&[("if-modified-since", "garbage")]), Outcome::Proceed);
    }

    #[test]
    fn if_range() {
        let v = Validators { etag: "\"e1\"", last_modified_ms: 1_700_000_000_500 };
        let with = |val: &str| {
            let mut h = HeaderMap::new();
            h.insert(IF_RANGE, val.parse().unwrap());
            range_applies(&h, &v)
        };
        assert!(range_applies(&HeaderMap::new(), &v));
        assert!(with("\"e1\""));
        assert!(!with("\"e2\""));
        assert!(!with("W/\"e1\""));
        assert!(with(&http_date(1_700_000_000_000)));
        assert!(!with(&http_date(1_600_000_000_000)));
    }
}
