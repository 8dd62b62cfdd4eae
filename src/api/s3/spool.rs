//! Bodies of unknown length (`Transfer-Encoding: chunked` without Content-Length), which
//! s3s refuses with 411: written to an unlinked scratch file, bounded by
//! `limits.max_object_size` and the body idle timeout, then handed on with their length.
//!
//! The file is unlinked as soon as it is open, so it is gone when the request ends, even
//! after a crash. It must not be used for bodies s3s can take as they come (a declared
//! length, or aws-chunked bodies with `x-amz-decoded-content-length`).

use bytes::Bytes;
use futures::TryStreamExt;
use http::{HeaderValue, Method, Request, header};
use http_body::Frame;
use http_body_util::BodyExt;
use s3s::{S3Error, S3Result, s3_error};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// Where and how far bodies of unknown length are spooled.
#[derive(Debug, Clone)]
pub struct Spool {
    /// Scratch directory (on the data disk).
    pub dir: PathBuf,
    /// Longest body taken, in bytes.
    pub max: u64,
    /// Longest pause between two body chunks.
    pub idle: Duration,
}

impl Spool {
    /// Whether `req` is a PUT whose body s3s would refuse for want of a length.
    pub(super) fn needs(req: &Request<s3s::Body>) -> bool {
        let h = req.headers();
        req.method() == Method::PUT
            && !h.contains_key(header::CONTENT_LENGTH)
            && !h.contains_key("x-amz-decoded-content-length")
            && !http_body::Body::is_end_stream(req.body())
    }

    /// Reads the whole body into a scratch file and returns the request with that body
    /// and its Content-Length (SigV4 does not sign a header the client did not send).
    pub(super) async fn take(&self, req: Request<s3s::Body>) -> S3Result<Request<s3s::Body>> {
        let (mut parts, mut body) = req.into_parts();
        let internal = |e: std::io::Error| S3Error::with_source(s3s::S3ErrorCode::InternalError, Box::new(e));
        tokio::fs::create_dir_all(&self.dir).await.map_err(internal)?;
        let path = self.dir.join(format!("spool-{}", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::options().read(true).write(true).create_new(true).open(&path).map_err(internal)?;
        let _ = std::fs::remove_file(&path);
        let mut file = tokio::io::BufWriter::new(tokio::fs::File::from_std(file));
        let mut n = 0u64;
        loop {
            let frame = tokio::time::timeout(self.idle, body.frame())
                .await
                .map_err(|_| s3_error!(RequestTimeout, "client sent no body data within the idle timeout"))?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| s3_error!(IncompleteBody, "reading the request body: {e}"))?;
            let Ok(data) = frame.into_data() else { continue };
            n += data.len() as u64;
            if n > self.max {
                return Err(s3_error!(EntityTooLarge, "body exceeds the {}-byte limit", self.max));
            }
            file.write_all(&data).await.map_err(internal)?;
        }
        file.flush().await.map_err(internal)?;
        let mut file = file.into_inner();
        file.rewind().await.map_err(internal)?;
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        parts.headers.remove(header::TRANSFER_ENCODING);
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20).map_ok(Frame::<Bytes>::data);
        let body = s3s::Body::http_body(http_body_util::StreamBody::new(stream));
        Ok(Request::from_parts(parts, body))
    }
}
