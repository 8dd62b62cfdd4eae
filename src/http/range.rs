//! The `Range` request header (RFC 9110 §14): one byte range is honoured; several ranges,
//! other units or a malformed header mean "send the whole thing", as the RFC allows.

use std::ops::Range;

/// What a `Range` header asks of an object of a given size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// The whole object (no header, or one strata ignores).
    Full,
    /// These bytes: 206.
    Part(Range<u64>),
    /// Nothing of it can be served: 416.
    Unsatisfiable,
}

/// Reads `header` against an object of `size` bytes.
pub fn parse(header: Option<&str>, size: u64) -> Wanted {
    let Some(h) = header else { return Wanted::Full };
    let Some(spec) = h.trim().strip_prefix("bytes=") else { return Wanted::Full };
    if spec.contains(',') {
        return Wanted::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return Wanted::Full };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        // More digits than u64 holds still means "a very large number".
        Some(s.parse().unwrap_or(u64::MAX))
    };
    match (a.trim().is_empty(), num(a), num(b)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(0)) => Wanted::Unsatisfiable,
        (true, _, Some(n)) => Wanted::Part(size.saturating_sub(n)..size).nonempty(),
        (false, Some(first), last) if b.trim().is_empty() || last.is_some() => {
            if first >= size {
                return Wanted::Unsatisfiable;
            }
            match last {
                Some(l) if l < first => Wanted::Full,
                Some(l) => Wanted::Part(first..l.saturating_add(1).min(size)),
                None => Wanted::Part(first..size),
            }
        }
        _ => Wanted::Full,
    }
}

/// The one-range form of `header` to hand on to a parser that refuses what RFC 9110 lets
/// a server ignore (the S3 path: S3 answers an invalid Range with the whole object), or
/// `None` to drop it. A last byte past `u64` means "to the end".
pub fn canonical(header: &str) -> Option<String> {
    let spec = header.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    match (a.is_empty(), b.is_empty()) {
        (true, false) if digits(b) => Some(format!("bytes=-{}", b.parse::<u64>().unwrap_or(u64::MAX))),
        (false, true) if digits(a) => Some(format!("bytes={}-", a.parse::<u64>().ok()?)),
        (false, false) if digits(a) && digits(b) => {
            let first = a.parse::<u64>().ok()?;
            match b.parse::<u64>() {
                Ok(last) if last < first => None,
                Ok(last) => Some(format!("bytes={first}-{last}")),
                Err(_) => Some(format!("bytes={first}-")),
            }
        }
        _ => None,
    }
}

impl Wanted {
    fn nonempty(self) -> Wanted {
        match self {
            Wanted::Part(r) if r.is_empty() => Wanted::Unsatisfiable,
            w => w,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Regression (issue 14): the S3 path answered these with 400.
    #[test]
    fn canonical_forms_for_the_s3_path() {
        assert_eq!(canonical("bytes=5-1"), None);
        assert_eq!(canonical("bytes=0-1,5-6"), None);
        assert_eq!(canonical("items=0-1"), None);
        assert_eq!(canonical("bytes=x-"), None);
        assert_eq!(canonical("bytes=3-99999999999999999999999").as_deref(), Some("bytes=3-"));
        assert_eq!(canonical(" bytes=10-20 ").as_deref(), Some("bytes=10-20"));
        assert_eq!(canonical("bytes=-5").as_deref(), Some("bytes=-5"));
        assert_eq!(canonical("bytes=1000-").as_deref(), Some("bytes=1000-"), "unsatisfiable is 416, not ignored");
    }

    #[test]
    fn the_forms_of_rfc_9110() {
        let p = |h: &str| parse(Some(h), 1000);
        assert_eq!(parse(None, 10), Wanted::Full);
        assert_eq!(p("bytes=0-499"), Wanted::Part(0..500));
        assert_eq!(p("bytes=500-"), Wanted::Part(500..1000));
        assert_eq!(p("bytes=-200"), Wanted::Part(800..1000));
        assert_eq!(p("bytes=-2000"), Wanted::Part(0..1000));
        assert_eq!(p("bytes=900-5000"), Wanted::Part(900..1000));
        assert_eq!(p("bytes=1000-"), Wanted::Unsatisfiable);
        assert_eq!(p("bytes=-0"), Wanted::Unsatisfiable);
        assert_eq!(p("bytes=5-2"), Wanted::Full, "invalid: ignored");
        assert_eq!(p("bytes=0-1,5-6"), Wanted::Full, "several ranges: whole object");
        assert_eq!(p("items=0-1"), Wanted::Full);
        assert_eq!(p("bytes=a-b"), Wanted::Full);
        assert_eq!(p("bytes=0-99999999999999999999999"), Wanted::Part(0..1000));
        assert_eq!(parse(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-5"), 0), Wanted::Unsatisfiable);
    }

    proptest! {
        /// Whatever the header, a served range lies inside the object and is not empty.
        #[test]
        fn served_ranges_are_inside(h in "[ -~]{0,40}", size in 0u64..10_000) {
            if let Wanted::Part(r) = parse(Some(&h), size) {
                prop_assert!(r.start < r.end && r.end <= size, "{r:?} of {size}");
            }
        }

        /// Well-formed single ranges mean what they say.
        #[test]
        fn well_formed_ranges(a in 0u64..5000, len in 1u64..5000, size in 1u64..10_000) {
            let got = parse(Some(&format!("bytes={a}-{}", a + len - 1)), size);
            if a >= size {
                prop_assert_eq!(got, Wanted::Unsatisfiable);
            } else {
                prop_assert_eq!(got, Wanted::Part(a..(a + len).min(size)));
            }
        }
    }
}
