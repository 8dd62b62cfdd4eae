//! Wall-clock time as the catalog and the journal store it.
//!
//! Owns one thing: milliseconds since the Unix epoch as an `i64`, the unit of every
//! timestamp column. It sits at the bottom of the module graph so that the catalog, the
//! journal and the policy can share it without importing the tier. It must not sleep or
//! keep state.

/// Milliseconds since the Unix epoch, now. A clock before 1970 reads 0; one past the year
/// 292 million reads `i64::MAX`.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Seconds since the Unix epoch, now (signed-link and presigned-URL expiries).
pub fn now_secs() -> i64 {
    now_ms() / 1000
}
