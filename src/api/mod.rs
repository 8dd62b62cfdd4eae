//! Protocol front ends: the S3 API, plain HTTP for browsers and CDNs (`web`), the admin
//! endpoints and the status page.

pub mod access;
pub mod admin;
pub mod replication;
pub mod s3;
pub mod status;
pub mod web;

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// Seconds sent in `Retry-After` with a 503 (`failover.retry_after`).
static RETRY_AFTER: AtomicU32 = AtomicU32::new(5);

/// Sets the `Retry-After` of 503 answers (called once at start).
pub fn set_retry_after(secs: u32) {
    RETRY_AFTER.store(secs, Relaxed);
}

/// The `Retry-After` value of 503 answers.
pub fn retry_after() -> http::HeaderValue {
    http::HeaderValue::from(RETRY_AFTER.load(Relaxed))
}
