//! The [`Backend`] implementation on Apache OpenDAL: S3, GCS and Azure Blob.
//!
//! Owns the translation between OpenDAL and strata types and errors; every path becomes
//! its [`keymap::flat_name`] before OpenDAL sees it, since OpenDAL rewrites some keys. It
//! must not retry or time out by itself: those are OpenDAL layers added in [`build`].

use super::keymap;
use super::{Backend, ByteStream, Capability, ListEntry, ObjectStat, ObjectWriter, WriteOptions};
use crate::config::{BackendConfig, Limits};
use crate::error::{Error, ErrorKind, Result};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{Operator, services};
use std::ops::Range;
use std::sync::Arc;

/// The longest object name S3, GCS and Azure Blob take, in bytes.
const MAX_NAME: usize = 1024;
/// Part size for multipart writes to object stores; objects below it go in one PUT.
const WRITE_CHUNK: usize = 8 << 20;
/// Parts in flight per object write: one. OpenDAL 0.55's concurrent writer keeps every
/// finished part's bytes until the writer closes (its task queue holds up to 8192
/// results, inputs included; fixed upstream in 0.59, apache/opendal#8224 and #8327), so a
/// 1 GiB PUT to an S3 store held 1 GiB of memory. With one part at a time the writer
/// holds one 8 MiB chunk; parts still overlap with reading the body.
const WRITE_CONCURRENCY: usize = 1;

struct OpendalBackend {
    name: String,
    op: Operator,
    cap: Capability,
    /// Bytes the configured prefix adds to every object name.
    root_len: usize,
    /// Sent when a write names no Content-Type. GCS stores `application/octet-stream` for
    /// such an object anyway; saying so keeps emulators that store a null type (and then
    /// answer JSON OpenDAL cannot read) in line with the real service.
    default_type: Option<&'static str>,
}

pub(super) fn build(name: &str, cfg: &BackendConfig, limits: &Limits) -> Result<Arc<dyn Backend>> {
    let mut op = operator(name, cfg)?;
    let ca = ca_bundle(name, cfg)?;
    if let Some((client, _)) = &ca {
        op = op.layer(opendal::layers::HttpClientLayer::new(opendal::raw::HttpClient::with(client.clone())));
    }
    // Timeout inside retry: each attempt gets its own deadline, and a timed-out attempt is
    // retried like any other temporary failure.
    let op = op
        .layer(TimeoutLayer::new().with_timeout(limits.backend_timeout.0).with_io_timeout(limits.backend_io_timeout.0))
        .layer(RetryLayer::new().with_jitter().with_max_times(limits.backend_retries));
    let cap = Capability {
        presign: op.info().full_capability().presign_read && !matches!(cfg, BackendConfig::Gcs(g) if g.anonymous),
        server_side_copy: s3_place(cfg, ca.map(|(_, pem)| pem)),
        native_headers: true,
    };
    let default_type = matches!(cfg, BackendConfig::Gcs(_)).then_some("application/octet-stream");
    let root_len = match cfg {
        BackendConfig::S3(s) => s.prefix.len(),
        BackendConfig::Gcs(g) => g.prefix.len(),
        BackendConfig::Azblob(a) => a.prefix.len(),
        BackendConfig::Fs(_) => 0,
    };
    Ok(Arc::new(OpendalBackend { name: name.to_owned(), op, cap, root_len, default_type }))
}

/// The OpenDAL operator of one store's config, without layers.
fn operator(name: &str, cfg: &BackendConfig) -> Result<Operator> {
    let conf_err = |e: opendal::Error| Error::new(ErrorKind::Config, format!("backend {name}")).with_source(e);
    let op = match cfg {
        BackendConfig::Fs(_) => {
            return Err(Error::new(ErrorKind::Internal, format!("backend {name}: disks are not OpenDAL stores here")));
        }
        BackendConfig::S3(s) => {
            let mut b = services::S3::default()
                .root(&format!("/{}", s.prefix))
                .bucket(&s.bucket)
                .region(&s.region)
                .disable_ec2_metadata();
            if let Some(e) = &s.endpoint {
                b = b.endpoint(e);
            }
            if let (Some(ak), Some(sk)) = (&s.access_key, &s.secret_key) {
                b = b.access_key_id(ak).secret_access_key(sk).disable_config_load();
            }
            if s.virtual_host_style {
                b = b.enable_virtual_host_style();
            }
            Operator::new(b).map_err(conf_err)?.finish()
        }
        BackendConfig::Gcs(g) => {
            let mut b = services::Gcs::default().root(&format!("/{}", g.prefix)).bucket(&g.bucket);
            if let Some(c) = &g.credential {
                b = b.credential(c);
            }
            if let Some(e) = &g.endpoint {
                b = b.endpoint(e);
            }
            if g.anonymous {
                b = b.allow_anonymous().disable_vm_metadata().disable_config_load();
            }
            Operator::new(b).map_err(conf_err)?.finish()
        }
        BackendConfig::Azblob(a) => {
            let mut b = services::Azblob::default()
                .root(&format!("/{}", a.prefix))
                .container(&a.container)
                .endpoint(&a.endpoint);
            if let Some(n) = &a.account_name {
                b = b.account_name(n);
            }
            if let Some(k) = &a.account_key {
                b = b.account_key(k);
            }
            Operator::new(b).map_err(conf_err)?.finish()
        }
    };
    Ok(op)
}

/// The HTTP client of a store with a `ca_bundle`, and the bundle: the public roots plus
/// every certificate of the file.
fn ca_bundle(name: &str, cfg: &BackendConfig) -> Result<Option<(reqwest::Client, Arc<[u8]>)>> {
    let path = match cfg {
        BackendConfig::S3(s) => s.ca_bundle.as_ref(),
        BackendConfig::Gcs(g) => g.ca_bundle.as_ref(),
        BackendConfig::Azblob(a) => a.ca_bundle.as_ref(),
        BackendConfig::Fs(_) => None,
    };
    let Some(path) = path else { return Ok(None) };
    let conf = |what: String| Error::new(ErrorKind::Config, format!("backends.{name}.ca_bundle: {what}"));
    let pem = std::fs::read(path).map_err(|e| conf(format!("cannot read {}: {e}", path.display())))?;
    let client = super::s3copy::client_trusting(&pem).map_err(|e| conf(format!("{}: {e}", path.display())))?;
    Ok(Some((client, pem.into())))
}

/// An S3 store with explicit keys and path-style addressing, for server-side copies.
fn s3_place(cfg: &BackendConfig, ca: Option<Arc<[u8]>>) -> Option<super::S3Place> {
    let BackendConfig::S3(s) = cfg else { return None };
    if s.virtual_host_style {
        return None;
    }
    let endpoint = s.endpoint.clone().unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", s.region));
    let root = s.prefix.trim_matches('/');
    Some(super::S3Place {
        endpoint: endpoint.trim_end_matches('/').to_owned(),
        region: s.region.clone(),
        bucket: s.bucket.clone(),
        root: if root.is_empty() { String::new() } else { format!("{root}/") },
        access_key: s.access_key.clone()?,
        secret_key: s.secret_key.clone()?,
        ca,
    })
}

fn map_err(backend: &str, what: &str, path: &str, e: opendal::Error) -> Error {
    use opendal::ErrorKind as K;
    let kind = match e.kind() {
        K::NotFound => ErrorKind::NotFound,
        K::ConditionNotMatch => ErrorKind::PreconditionFailed,
        K::RangeNotSatisfied => ErrorKind::InvalidRange,
        K::IsADirectory | K::NotADirectory => ErrorKind::InvalidKey,
        // A policy or credential on the store's side can change without strata: retry.
        K::ConfigInvalid | K::Unsupported => ErrorKind::Internal,
        _ => ErrorKind::Unavailable,
    };
    Error::new(kind, format!("backend {backend}: {what} {path:?}")).with_source(e)
}

fn from_io(backend: &str, path: &str, e: std::io::Error) -> Error {
    // OpenDAL wraps its own error inside the io::Error its byte streams yield.
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<opendal::Error>()).map(|oe| oe.kind());
    let kind = match inner {
        Some(opendal::ErrorKind::NotFound) => ErrorKind::NotFound,
        _ => ErrorKind::Unavailable,
    };
    Error::new(kind, format!("backend {backend}: read {path:?}")).with_source(e)
}

struct OpendalWriter {
    backend: String,
    path: String,
    inner: opendal::Writer,
}

#[async_trait]
impl ObjectWriter for OpendalWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.inner.write(chunk).await.map_err(|e| map_err(&self.backend, "write", &self.path, e))
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.inner.close().await.map(|_| ()).map_err(|e| map_err(&self.backend, "commit", &self.path, e))
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.inner.abort().await.map_err(|e| map_err(&self.backend, "abort", &self.path, e))
    }
}

#[async_trait]
impl Backend for OpendalBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn capability(&self) -> &Capability {
        &self.cap
    }

    fn check_path(&self, path: &str) -> Result<()> {
        let len = self.root_len + keymap::flat_name(path).len();
        if len > MAX_NAME {
            return Err(Error::new(
                ErrorKind::KeyTooLong,
                format!(
                    "backend {}: the name of {path:?} in the store would be {len} bytes; it takes {MAX_NAME}",
                    self.name
                ),
            ));
        }
        Ok(())
    }

    async fn writer(&self, path: &str, opts: &WriteOptions) -> Result<Box<dyn ObjectWriter>> {
        self.check_path(path)?;
        let name = keymap::flat_name(path);
        let mut w = self.op.writer_with(&name).chunk(WRITE_CHUNK).concurrent(WRITE_CONCURRENCY);
        if let Some(v) = opts.content_type.as_deref().or(self.default_type) {
            w = w.content_type(v);
        }
        if let Some(v) = &opts.cache_control {
            w = w.cache_control(v);
        }
        if let Some(v) = &opts.content_disposition {
            w = w.content_disposition(v);
        }
        if let Some(v) = &opts.content_encoding {
            w = w.content_encoding(v);
        }
        if !opts.user_metadata.is_empty() {
            w = w.user_metadata(opts.user_metadata.clone());
        }
        let inner = w.await.map_err(|e| map_err(&self.name, "open writer", path, e))?;
        Ok(Box::new(OpendalWriter { backend: self.name.clone(), path: path.to_owned(), inner }))
    }

    async fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<ByteStream> {
        let reader =
            self.op.reader(&keymap::flat_name(path)).await.map_err(|e| map_err(&self.name, "read", path, e))?;
        let stream = match range {
            Some(r) => reader.into_bytes_stream(r).await,
            None => reader.into_bytes_stream(..).await,
        }
        .map_err(|e| map_err(&self.name, "read", path, e))?;
        let (name, p) = (self.name.clone(), path.to_owned());
        Ok(stream.map_err(move |e| from_io(&name, &p, e)).boxed())
    }

    async fn stat(&self, path: &str) -> Result<Option<ObjectStat>> {
        match self.op.stat(&keymap::flat_name(path)).await {
            Ok(m) if m.is_dir() => Ok(None),
            Ok(m) => Ok(Some(ObjectStat {
                size: m.content_length(),
                etag: m.etag().map(|e| e.trim_matches('"').to_owned()),
                last_modified_ms: m.last_modified().map(|t| t.into_inner().as_millisecond()),
                content_type: m.content_type().map(str::to_owned),
                headers: WriteOptions {
                    content_type: m.content_type().map(str::to_owned),
                    cache_control: m.cache_control().map(str::to_owned),
                    content_disposition: m.content_disposition().map(str::to_owned),
                    content_encoding: m.content_encoding().map(str::to_owned),
                    user_metadata: m
                        .user_metadata()
                        .map(|u| u.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                        .unwrap_or_default(),
                },
            })),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(map_err(&self.name, "stat", path, e)),
        }
    }

    async fn delete(&self, path: &str) -> Result<()> {
        // OpenDAL's delete already treats a missing path as success.
        self.op.delete(&keymap::flat_name(path)).await.map_err(|e| map_err(&self.name, "delete", path, e))
    }

    async fn presign_read(
        &self,
        path: &str,
        expires: std::time::Duration,
        disposition: Option<&str>,
    ) -> Result<Option<String>> {
        if !self.cap.presign {
            return Ok(None);
        }
        let opts = opendal::options::ReadOptions {
            override_content_disposition: disposition.map(str::to_owned),
            ..Default::default()
        };
        let req = self
            .op
            .presign_read_options(&keymap::flat_name(path), expires, opts)
            .await
            .map_err(|e| map_err(&self.name, "presign", path, e))?;
        Ok(Some(req.uri().to_string()))
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ListEntry>> {
        // Names under the prefix's last full segment, read back as paths and filtered by
        // the prefix itself (escaping can change the name of the prefix's last segment).
        let dir_part = prefix.rfind('/').map_or("", |i| &prefix[..=i]);
        let from = keymap::flat_name(&format!("{dir_part}x"));
        let from = from[..from.len() - 1].to_owned();
        let (op, name, prefix) = (self.op.clone(), self.name.clone(), prefix.to_owned());
        async_stream(async move {
            let lister = op.lister_with(&from).recursive(true).await.map_err(|e| map_err(&name, "list", &from, e))?;
            Ok(lister.map_err(move |e| map_err(&name, "list", &from, e)).try_filter_map(move |entry| {
                let path = (!entry.path().ends_with('/')).then(|| keymap::path_of(entry.path().split('/'))).flatten();
                let out = path.filter(|p| p.starts_with(&prefix)).map(|path| {
                    let m = entry.metadata();
                    let known = m.mode().is_file() && m.content_length() > 0;
                    ListEntry {
                        path,
                        size: known.then(|| m.content_length()),
                        etag: m.etag().map(|e| e.trim_matches('"').to_owned()),
                        last_modified_ms: m.last_modified().map(|t| t.into_inner().as_millisecond()),
                    }
                });
                futures::future::ready(Ok(out))
            }))
        })
    }
}

/// Flattens a future that yields a stream into a stream (the first item carries the
/// future's error).
fn async_stream<S>(fut: impl Future<Output = Result<S>> + Send + 'static) -> BoxStream<'static, Result<ListEntry>>
where
    S: futures::Stream<Item = Result<ListEntry>> + Send + 'static,
{
    futures::stream::once(fut)
        .map(|r| match r {
            Ok(s) => s.boxed(),
            Err(e) => futures::stream::once(futures::future::ready(Err(e))).boxed(),
        })
        .flatten()
        .boxed()
}

#[cfg(test)]
mod tests {
    /// Regression: with OpenDAL's default features off, its HTTP client had no TLS, so
    /// every `https://` store (AWS S3, GCS, Azure) failed with "scheme is not http". The
    /// crate now turns on reqwest's rustls, which OpenDAL's client shares.
    #[tokio::test]
    async fn https_stores_are_reachable() {
        let e = reqwest::Client::new().get("https://127.0.0.1:9/").send().await.expect_err("nothing listens on port 9");
        // Without TLS the connector refuses the scheme before dialling; with it, the dial
        // itself is refused.
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        let mut refused = false;
        while let Some(s) = source {
            refused |=
                s.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
            source = s.source();
        }
        assert!(refused, "https must be dialled (connection refused), not refused as a scheme: {e:?}");
    }
}
