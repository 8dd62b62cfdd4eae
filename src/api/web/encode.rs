//! Representations: the Content-Type of an object (stored, else guessed from its
//! extension), whether it is worth compressing, which coding a client asked for, and the
//! compressing stream.
//!
//! Why not `tower-http`'s `CompressionLayer`: it wraps a response after the fact, so it
//! would keep the object's strong ETag on a different representation (a cache would then
//! serve gzip bytes to a client that asked for none), could not answer a conditional
//! request per coding (304 for the coded ETag), and would need a tower stack that the
//! server does not otherwise have. The negotiation here is a few lines; the compression
//! itself is `async-compression`'s, which `tower-http` uses too.

use crate::backend::ByteStream;
use crate::error::Error;
use futures::TryStreamExt;

/// A content coding strata produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// Brotli.
    Br,
    /// Gzip.
    Gzip,
}

impl Coding {
    /// The header token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }
}

/// Objects smaller than this are sent as they are: compressing them gains nothing.
pub const MIN_COMPRESS: u64 = 256;

/// The object's Content-Type: as stored, else guessed from the key's extension. The
/// generic types SDKs fill in when the uploader gave none count as none.
pub fn content_type(stored: Option<&str>, key: &str) -> String {
    match stored {
        Some(t) if !t.is_empty() && t != "application/octet-stream" && t != "binary/octet-stream" => t.to_owned(),
        _ => mime_guess::from_path(key).first_raw().unwrap_or("application/octet-stream").to_owned(),
    }
}

/// Whether a type compresses well (text and text-like formats; never images, audio,
/// video or archives, which are compressed already).
pub fn compressible(ctype: &str) -> bool {
    let t = ctype.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    t.starts_with("text/")
        || t.ends_with("+json")
        || t.ends_with("+xml")
        || matches!(
            t.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/wasm"
                | "application/x-javascript"
                | "image/svg+xml"
                | "application/manifest+json"
                | "font/ttf"
                | "font/otf"
        )
}

/// The coding to use for an `Accept-Encoding` value: br, else gzip, when accepted with a
/// non-zero q (an explicit `q=0` refuses, `*` accepts both).
pub fn negotiate(accept: Option<&str>) -> Option<Coding> {
    let accept = accept?;
    let q_of = |name: &str| -> Option<f32> {
        accept.split(',').find_map(|part| {
            let mut it = part.split(';');
            let token = it.next()?.trim().to_ascii_lowercase();
            if token != name {
                return None;
            }
            let q = it.find_map(|p| p.trim().strip_prefix("q=").and_then(|v| v.trim().parse::<f32>().ok()));
            Some(q.unwrap_or(1.0))
        })
    };
    let accepts = |name: &str| q_of(name).or_else(|| q_of("*")).is_some_and(|q| q > 0.0);
    if accepts("br") {
        Some(Coding::Br)
    } else if accepts("gzip") {
        Some(Coding::Gzip)
    } else {
        None
    }
}

/// `body` compressed with `coding`, as it streams (quality chosen for speed: brotli 5,
/// gzip 6).
pub fn compress(body: ByteStream, coding: Coding) -> ByteStream {
    use async_compression::Level;
    use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder};
    use futures::StreamExt;
    let reader = tokio_util::io::StreamReader::new(body.map_err(std::io::Error::other));
    let out: ByteStream = match coding {
        Coding::Br => tokio_util::io::ReaderStream::new(BrotliEncoder::with_quality(reader, Level::Precise(5)))
            .map_err(Error::from)
            .boxed(),
        Coding::Gzip => tokio_util::io::ReaderStream::new(GzipEncoder::with_quality(reader, Level::Precise(6)))
            .map_err(Error::from)
            .boxed(),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_negotiation() {
        assert_eq!(content_type(None, "a/b.jpg"), "image/jpeg");
        assert_eq!(content_type(None, "song.mp3"), "audio/mpeg");
        assert_eq!(content_type(Some("text/x-mine"), "a.jpg"), "text/x-mine");
        assert_eq!(content_type(None, "noext"), "application/octet-stream");
        assert_eq!(content_type(Some("binary/octet-stream"), "a.png"), "image/png");
        assert_eq!(content_type(Some("application/octet-stream"), "a.wav"), "audio/wav");
        assert!(compressible("text/html; charset=utf-8") && compressible("image/svg+xml"));
        assert!(compressible("application/ld+json"));
        assert!(!compressible("image/jpeg") && !compressible("audio/mpeg") && !compressible("application/zip"));
        assert_eq!(negotiate(Some("gzip, deflate, br")), Some(Coding::Br));
        assert_eq!(negotiate(Some("gzip, br;q=0")), Some(Coding::Gzip));
        assert_eq!(negotiate(Some("identity")), None);
        assert_eq!(negotiate(Some("*")), Some(Coding::Br));
        assert_eq!(negotiate(Some("*;q=0, gzip")), Some(Coding::Gzip));
        assert_eq!(negotiate(None), None);
    }

    #[tokio::test]
    async fn compressed_streams_decompress_to_the_original() {
        use futures::StreamExt;
        use tokio::io::AsyncReadExt;
        let text = "the quick brown fox jumps over the lazy dog\n".repeat(2000);
        for coding in [Coding::Br, Coding::Gzip] {
            let src: ByteStream = futures::stream::iter(
                text.as_bytes().chunks(1000).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect::<Vec<_>>(),
            )
            .boxed();
            let packed = compress(src, coding)
                .try_fold(Vec::new(), |mut v, b| async move {
                    v.extend_from_slice(&b);
                    Ok(v)
                })
                .await
                .unwrap();
            assert!(packed.len() < text.len() / 10, "{coding:?}: {} bytes", packed.len());
            let mut out = Vec::new();
            match coding {
                Coding::Br => {
                    async_compression::tokio::bufread::BrotliDecoder::new(&packed[..]).read_to_end(&mut out).await
                }
                Coding::Gzip => {
                    async_compression::tokio::bufread::GzipDecoder::new(&packed[..]).read_to_end(&mut out).await
                }
            }
            .unwrap();
            assert_eq!(out, text.as_bytes());
        }
    }
}
