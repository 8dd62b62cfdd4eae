//! The crate's error type: a kind plus context.
//!
//! Owns the classification of failures (what went wrong, and whether retrying can help).
//! It must not know any wire protocol: mapping kinds to S3 codes lives in `api/s3/error.rs`.

use std::fmt;

/// What went wrong, independent of any protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object (key) does not exist.
    NotFound,
    /// The bucket does not exist.
    BucketNotFound,
    /// The multipart upload does not exist (never created, completed or aborted).
    UploadNotFound,
    /// The bucket already exists.
    BucketExists,
    /// The bucket still holds objects or uploads.
    BucketNotEmpty,
    /// The bucket name breaks the naming rules.
    InvalidBucketName,
    /// The key is longer than 1024 bytes.
    KeyTooLong,
    /// The key is empty or holds NUL, or a store refuses its name for good.
    InvalidKey,
    /// A request argument is malformed or out of range.
    InvalidInput,
    /// A part named in CompleteMultipartUpload is missing or its ETag differs.
    InvalidPart,
    /// Parts in CompleteMultipartUpload are not in ascending order.
    InvalidPartOrder,
    /// A non-final part is below the minimum part size.
    EntityTooSmall,
    /// The body exceeds the size limit.
    EntityTooLarge,
    /// The body ended before its declared length.
    IncompleteBody,
    /// A checksum or Content-MD5 did not match the bytes received.
    BadDigest,
    /// The body's SHA-256 differs from the one its signature covers.
    ContentHashMismatch,
    /// A conditional request's precondition does not hold.
    PreconditionFailed,
    /// A conditional GET whose representation has not changed.
    NotModified,
    /// The requested range cannot be satisfied.
    InvalidRange,
    /// The requested part (`partNumber`) is not one of the object's.
    InvalidPartNumber,
    /// A dependency (cold store, catalog) is down or overloaded; retrying may succeed.
    Unavailable,
    /// An operation or the client took too long; retrying may succeed.
    Timeout,
    /// The journal is full; retrying later may succeed.
    SlowDown,
    /// The server refuses writes for maintenance (the read-only switch).
    ReadOnly,
    /// The request cannot run in the server's present setup (a feature it needs is off,
    /// a bucket is not in the mode it asks for). Not retryable.
    Conflict,
    /// Configuration is invalid.
    Config,
    /// A bug or an unexpected state; not retryable.
    Internal,
}

/// An error: its kind, a human-readable context and an optional cause.
pub struct Error {
    kind: ErrorKind,
    context: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    /// The context may be shown to clients even where a kind's details are otherwise
    /// hidden (a 503 that names the node holding a version).
    public: bool,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a context message.
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        Self { kind, context: context.into(), source: None, public: false }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// An internal error with a cause.
    pub fn internal(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(ErrorKind::Internal, context).with_source(source)
    }

    /// Marks the context (not the cause) as fit for clients to read, whatever the kind.
    pub fn public(mut self) -> Self {
        self.public = true;
        self
    }

    /// Whether the context may be shown to clients (see [`Error::public`]).
    pub fn is_public(&self) -> bool {
        self.public
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The context message alone, without the cause.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// Whether the same operation may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::SlowDown | ErrorKind::ReadOnly)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)?;
        if let Some(src) = &self.source {
            write!(f, ": {src}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, "i/o error").with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_context_and_source() {
        let e = Error::new(ErrorKind::Unavailable, "cold store s3").with_source(std::io::Error::other("refused"));
        assert_eq!(e.to_string(), "cold store s3: refused");
        assert!(e.is_retryable());
        assert!(!Error::new(ErrorKind::InvalidKey, "k").is_retryable());
    }
}
