//! Protocol front ends: the S3 API, plain HTTP for browsers and CDNs (`web`), the admin
//! endpoints and the status page.

pub mod access;
pub mod admin;
pub mod replication;
pub mod s3;
pub mod status;
pub mod web;

/// Adds `Retry-After: secs` to a 503 that has none (`failover.retry_after`): a client that
/// honours it backs off instead of hammering a store that is down. Each front end applies
/// its own server's value, so two servers in one process never share it.
pub fn with_retry_after<B>(resp: &mut http::Response<B>, secs: u32) {
    if resp.status() == http::StatusCode::SERVICE_UNAVAILABLE && !resp.headers().contains_key(http::header::RETRY_AFTER)
    {
        resp.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn retry_after_goes_on_503s_only_and_keeps_an_existing_one() {
        let mut r = http::Response::new(());
        *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        super::with_retry_after(&mut r, 7);
        assert_eq!(r.headers()["retry-after"], "7");
        super::with_retry_after(&mut r, 9);
        assert_eq!(r.headers()["retry-after"], "7");
        let mut ok = http::Response::new(());
        super::with_retry_after(&mut ok, 7);
        assert!(ok.headers().get("retry-after").is_none());
    }
}
