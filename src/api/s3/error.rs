//! The one place where strata errors become S3 error codes.

use crate::error::{Error, ErrorKind};
use s3s::{S3Error, S3ErrorCode};

/// Maps a strata error to the S3 error a client expects. Internal details are logged, not
/// sent: the client sees the code and a short message.
pub fn to_s3(e: Error) -> S3Error {
    use ErrorKind as K;
    let code = match e.kind() {
        K::NotFound => S3ErrorCode::NoSuchKey,
        K::BucketNotFound => S3ErrorCode::NoSuchBucket,
        K::UploadNotFound => S3ErrorCode::NoSuchUpload,
        K::BucketExists => S3ErrorCode::BucketAlreadyOwnedByYou,
        K::BucketNotEmpty => S3ErrorCode::BucketNotEmpty,
        K::InvalidBucketName => S3ErrorCode::InvalidBucketName,
        K::KeyTooLong => S3ErrorCode::KeyTooLongError,
        K::InvalidKey | K::InvalidInput => S3ErrorCode::InvalidArgument,
        K::InvalidPart => S3ErrorCode::InvalidPart,
        K::InvalidPartOrder => S3ErrorCode::InvalidPartOrder,
        K::EntityTooSmall => S3ErrorCode::EntityTooSmall,
        K::EntityTooLarge => S3ErrorCode::EntityTooLarge,
        K::IncompleteBody => S3ErrorCode::IncompleteBody,
        K::BadDigest => S3ErrorCode::BadDigest,
        K::ContentHashMismatch => S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
        K::PreconditionFailed => S3ErrorCode::PreconditionFailed,
        K::NotModified => S3ErrorCode::NotModified,
        K::InvalidRange => S3ErrorCode::InvalidRange,
        K::InvalidPartNumber => S3ErrorCode::Custom("InvalidPartNumber".into()),
        K::Timeout => S3ErrorCode::RequestTimeout,
        K::Unavailable => S3ErrorCode::ServiceUnavailable,
        K::SlowDown => S3ErrorCode::SlowDown,
        K::ReadOnly => S3ErrorCode::ServiceUnavailable,
        K::Conflict => S3ErrorCode::InvalidRequest,
        K::Config | K::Internal => S3ErrorCode::InternalError,
    };
    // A refusal by the read-only switch is deliberate: say why, and do not log it as a fault.
    let internal =
        matches!(code, S3ErrorCode::InternalError | S3ErrorCode::ServiceUnavailable) && e.kind() != K::ReadOnly;
    if internal {
        tracing::error!(error = %e, "request failed");
        crate::telemetry::record_error("s3", &e.to_string());
    } else {
        tracing::debug!(error = %e, "request refused");
    }
    let message = if internal && !e.is_public() {
        "the server could not complete the request".to_owned()
    } else {
        e.context().to_owned()
    };
    // Retry-After goes on every 503 in `S3Gateway::handle`, with its server's setting.
    let mut out = S3Error::with_message(code, message);
    match e.kind() {
        K::ContentHashMismatch => out.set_status_code(http::StatusCode::BAD_REQUEST),
        K::InvalidPartNumber => out.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE),
        _ => {}
    }
    out
}

/// Shorthand for `map_err(to_s3)`.
pub trait IntoS3<T> {
    /// Converts the error side to an S3 error.
    fn s3(self) -> s3s::S3Result<T>;
}

impl<T> IntoS3<T> for crate::error::Result<T> {
    fn s3(self) -> s3s::S3Result<T> {
        self.map_err(to_s3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses() {
        let cases = [
            (ErrorKind::NotFound, "NoSuchKey", 404),
            (ErrorKind::BucketNotFound, "NoSuchBucket", 404),
            (ErrorKind::BucketNotEmpty, "BucketNotEmpty", 409),
            (ErrorKind::KeyTooLong, "KeyTooLongError", 400),
            (ErrorKind::PreconditionFailed, "PreconditionFailed", 412),
            (ErrorKind::NotModified, "NotModified", 304),
            (ErrorKind::InvalidRange, "InvalidRange", 416),
            (ErrorKind::Unavailable, "ServiceUnavailable", 503),
            (ErrorKind::SlowDown, "SlowDown", 503),
            (ErrorKind::ReadOnly, "ServiceUnavailable", 503),
            (ErrorKind::ContentHashMismatch, "XAmzContentSHA256Mismatch", 400),
            (ErrorKind::InvalidPartNumber, "InvalidPartNumber", 416),
        ];
        for (kind, code, status) in cases {
            let e = to_s3(Error::new(kind, "x"));
            assert_eq!(e.code().as_str(), code);
            let got = e.status_code().or_else(|| e.code().status_code());
            assert_eq!(got.map(|s| s.as_u16()), Some(status), "{code}");
        }
    }

    #[test]
    fn internal_details_are_not_leaked() {
        let e = to_s3(Error::new(ErrorKind::Internal, "secret path /var/lib/x"));
        assert!(!e.message().unwrap_or_default().contains("/var/lib"));
    }
}
