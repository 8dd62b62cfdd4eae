//! `[backends.NAME]`: the cold stores, one `type` each (fs, s3, gcs, azblob), and how
//! each is checked. Building a store from these is the `backend` module's.

use super::default_region;
use crate::error::{Error, ErrorKind, Result};
use serde::Deserialize;
use std::path::PathBuf;

/// One cold store. `type` selects the kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BackendConfig {
    /// A directory on local disk.
    Fs(FsBackend),
    /// Amazon S3 or any S3-compatible store (Garage, MinIO, Ceph RGW, R2, …).
    S3(S3Backend),
    /// Google Cloud Storage.
    Gcs(GcsBackend),
    /// Azure Blob Storage.
    Azblob(AzblobBackend),
}

/// A local-disk cold store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsBackend {
    /// Root directory; relative paths are relative to the working directory. No default
    /// (the built-in "local" backend uses `<data_dir>/cold`).
    pub root: PathBuf,
    /// Skip the fsyncs of each write; [`crate::backend::Backend::sync`] makes them durable
    /// in one go. Only `strata copy` sets it (`--sync batch`); a server's stores never do,
    /// since an acknowledgement must mean durable. Not in the config file.
    #[serde(skip)]
    pub deferred_sync: bool,
}

/// An S3-compatible cold store.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Backend {
    /// Endpoint URL, e.g. "https://s3.eu-west-1.amazonaws.com" or "http://127.0.0.1:3900".
    /// Default: AWS for `region`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region of the store. Default "us-east-1".
    #[serde(default = "default_region")]
    pub region: String,
    /// Bucket in the store. No default.
    pub bucket: String,
    /// Key prefix inside the store's bucket, e.g. "strata/". Default "" (the bucket root).
    #[serde(default)]
    pub prefix: String,
    /// Access key id. Default none; `STRATA_BACKEND_<NAME>_ACCESS_KEY` overrides it.
    #[serde(default)]
    pub access_key: Option<String>,
    /// Secret key. Default none; `STRATA_BACKEND_<NAME>_SECRET_KEY` overrides it.
    #[serde(default)]
    pub secret_key: Option<String>,
    /// Address buckets as `bucket.endpoint` instead of `endpoint/bucket`. Default false.
    #[serde(default)]
    pub virtual_host_style: bool,
    /// A PEM bundle of CA certificates to trust for this store's HTTPS (a private S3 or
    /// Garage), in addition to the public roots. Default none.
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A Google Cloud Storage cold store.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsBackend {
    /// Bucket in GCS. No default.
    pub bucket: String,
    /// Key prefix inside the bucket. Default "".
    #[serde(default)]
    pub prefix: String,
    /// Service-account key JSON, base64-encoded. Default none (ambient credentials);
    /// `STRATA_BACKEND_<NAME>_CREDENTIAL` overrides it.
    #[serde(default)]
    pub credential: Option<String>,
    /// Endpoint URL. Default "https://storage.googleapis.com".
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Send requests unsigned, loading no ambient credentials (an emulator, or a bucket
    /// open to anyone). Such a store cannot presign URLs. Default false.
    #[serde(default)]
    pub anonymous: bool,
    /// A PEM bundle of CA certificates to trust for this store's HTTPS (a private S3 or
    /// Garage), in addition to the public roots. Default none.
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
}

impl std::fmt::Debug for GcsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsBackend").field("bucket", &self.bucket).field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// An Azure Blob Storage cold store.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzblobBackend {
    /// Container name. No default.
    pub container: String,
    /// Endpoint URL, e.g. "https://ACCOUNT.blob.core.windows.net". No default.
    pub endpoint: String,
    /// Key prefix inside the container. Default "".
    #[serde(default)]
    pub prefix: String,
    /// Storage account name. Default none.
    #[serde(default)]
    pub account_name: Option<String>,
    /// Storage account key. Default none; `STRATA_BACKEND_<NAME>_ACCOUNT_KEY` overrides it.
    #[serde(default)]
    pub account_key: Option<String>,
    /// A PEM bundle of CA certificates to trust for this store's HTTPS (a private S3 or
    /// Garage), in addition to the public roots. Default none.
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
}

impl std::fmt::Debug for AzblobBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzblobBackend")
            .field("container", &self.container)
            .field("endpoint", &self.endpoint)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl BackendConfig {
    /// Checks one store's settings; `name` is its key under `[backends]`.
    pub(super) fn validate(&self, name: &str) -> Result<()> {
        let b = self;
        let bad = |msg: String| Err(Error::new(ErrorKind::Config, format!("backends.{name}.{msg}")));
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(Error::new(ErrorKind::Config, format!("backends.{name}: names use a-z, 0-9, '-' and '_'")));
        }
        let prefix = match b {
            BackendConfig::Fs(f) if f.root.as_os_str().is_empty() => return bad("root: must not be empty".into()),
            BackendConfig::Fs(_) => "",
            BackendConfig::S3(s) if s.bucket.is_empty() => return bad("bucket: must not be empty".into()),
            BackendConfig::S3(s) if s.access_key.is_some() != s.secret_key.is_some() => {
                return bad("secret_key: access_key and secret_key go together".into());
            }
            BackendConfig::S3(s) => &s.prefix,
            BackendConfig::Gcs(g) if g.bucket.is_empty() => return bad("bucket: must not be empty".into()),
            BackendConfig::Gcs(g) => &g.prefix,
            BackendConfig::Azblob(a) if a.container.is_empty() => return bad("container: must not be empty".into()),
            BackendConfig::Azblob(a) => &a.prefix,
        };
        if prefix.starts_with('/') || prefix.contains("..") {
            return bad("prefix: must not start with \"/\" or contain \"..\"".into());
        }
        Ok(())
    }
}
