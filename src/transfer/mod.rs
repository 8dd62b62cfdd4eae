//! Bulk moves between any two stores: `strata copy`, `sync`, `move` and `verify`.
//!
//! Owns naming a location (`BACKEND:PREFIX`, `s3://bucket/prefix`, or a local directory),
//! the streaming pipeline (list → check → transfer, each stage bounded), the checkpoint
//! that makes a run resumable, rate limits and the summary. It works on backends directly,
//! without a server and without the catalog. It must not hold a whole listing in memory:
//! memory is bounded by `checkers + transfers` objects in flight.

mod checkpoint;
mod engine;
mod limit;

pub use engine::run;

use crate::backend::Backend;
use crate::config::{BackendConfig, Config, FsBackend, Limits, S3Backend};
use crate::error::{Error, ErrorKind, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Copy what is missing or changed.
    Copy,
    /// Copy, then delete destination objects the source does not have.
    Sync,
    /// Copy, then delete each source object once it is safely copied.
    Move,
    /// Compare listings and checksums; change nothing.
    Verify,
}

/// One side of a transfer.
#[derive(Clone)]
pub struct Location {
    /// The store.
    pub backend: Arc<dyn Backend>,
    /// Key prefix inside it ("" or ending in "/").
    pub prefix: String,
    /// As the user wrote it.
    pub label: String,
}

impl Location {
    /// Parses `BACKEND:PREFIX` (a backend of `config`), `s3://BUCKET/PREFIX` (endpoint and
    /// keys from `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`) or a local directory.
    pub fn parse(s: &str, config: &Config, env: &dyn Fn(&str) -> Option<String>) -> Result<Location> {
        Self::parse_with(s, config, env, false)
    }

    /// [`Location::parse`]; with `deferred_sync`, a disk store skips each write's fsyncs
    /// and is synced in batches (`--sync batch`: the checkpoint syncs it before it records
    /// objects as done).
    pub fn parse_with(
        s: &str,
        config: &Config,
        env: &dyn Fn(&str) -> Option<String>,
        deferred_sync: bool,
    ) -> Result<Location> {
        let (mut cfg, prefix, name) = if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::new(ErrorKind::InvalidInput, format!("{s}: no bucket in the URL")));
            }
            let cfg = BackendConfig::S3(S3Backend {
                endpoint: env("AWS_ENDPOINT_URL"),
                region: env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".into()),
                bucket: bucket.to_owned(),
                prefix: String::new(),
                access_key: env("AWS_ACCESS_KEY_ID"),
                secret_key: env("AWS_SECRET_ACCESS_KEY"),
                virtual_host_style: false,
                ca_bundle: None,
            });
            (cfg, prefix.to_owned(), format!("s3-{bucket}"))
        } else if let Some((name, prefix)) = s.split_once(':')
            && let Some(cfg) = config.backends.get(name)
        {
            (cfg.clone(), prefix.to_owned(), name.to_owned())
        } else {
            let root = PathBuf::from(s);
            if !root.is_dir() && root.exists() {
                return Err(Error::new(ErrorKind::InvalidInput, format!("{s}: not a directory")));
            }
            (BackendConfig::Fs(FsBackend { root, deferred_sync: false }), String::new(), "dir".to_owned())
        };
        if let BackendConfig::Fs(f) = &mut cfg {
            f.deferred_sync = deferred_sync;
        }
        let prefix = normalise_prefix(&prefix)?;
        let breaker = crate::backend::BreakerSettings::from_config(config);
        let backend = crate::backend::stack(&name, &cfg, &Limits::default(), &breaker)?.backend;
        Ok(Location { backend, prefix, label: s.to_owned() })
    }

    /// The store path of `key` (relative to the prefix).
    pub fn path(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

fn normalise_prefix(p: &str) -> Result<String> {
    let p = p.trim_start_matches('/');
    if p.split('/').any(|seg| seg == "..") {
        return Err(Error::new(ErrorKind::InvalidInput, format!("prefix {p:?} contains \"..\"")));
    }
    Ok(if p.is_empty() || p.ends_with('/') { p.to_owned() } else { format!("{p}/") })
}

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Objects moved at once.
    pub transfers: usize,
    /// Objects checked (stat, compare) at once.
    pub checkers: usize,
    /// Report what would change; change nothing.
    pub dry_run: bool,
    /// Bytes per second across all transfers.
    pub max_rate: Option<u64>,
    /// Object operations (copies, deletes) per second.
    pub max_tps: Option<u32>,
    /// Compare checksums (MD5) even where sizes and times agree.
    pub checksum: bool,
    /// The checkpoint file.
    pub checkpoint: PathBuf,
}

/// Live counters, for a progress display.
#[derive(Debug, Default)]
pub struct Stats {
    /// Source objects listed.
    pub listed: AtomicU64,
    /// Objects copied.
    pub copied: AtomicU64,
    /// Objects already at the destination (or finished by an earlier run).
    pub skipped: AtomicU64,
    /// Objects that failed.
    pub failed: AtomicU64,
    /// Bytes copied.
    pub bytes: AtomicU64,
    /// Of the copied objects, those the store copied itself (S3 CopyObject).
    pub server_side: AtomicU64,
    /// Objects deleted (sync extras, moved sources).
    pub deleted: AtomicU64,
    /// Whether the source listing has ended.
    pub listing_done: AtomicU64,
}

/// One failed object.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Key, relative to the prefix.
    pub key: String,
    /// Why.
    pub error: String,
}

/// What a run did, printed as JSON at the end.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Summary {
    /// "copy", "sync", "move" or "verify".
    pub mode: String,
    /// Source objects listed.
    pub listed: u64,
    /// Objects copied (or, with `--dry-run`, that would be).
    pub copied: u64,
    /// Objects left alone because the destination already has them.
    pub skipped: u64,
    /// Objects deleted (or that would be).
    pub deleted: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Of the copied objects, those the store copied itself (S3 CopyObject, same endpoint).
    pub server_side: u64,
    /// Failed objects (the first 100; `failed` counts all).
    pub failures: Vec<Failure>,
    /// Objects that failed.
    pub failed: u64,
    /// Verify: objects missing at the destination.
    pub missing: Vec<String>,
    /// Verify: objects whose size or checksum differ.
    pub different: Vec<String>,
    /// Verify: objects only the destination has.
    pub extra: Vec<String>,
    /// Wall time.
    pub seconds: f64,
    /// Whether nothing changed because of `--dry-run`.
    pub dry_run: bool,
}

impl Summary {
    /// Whether the run found no problem (the exit status).
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.missing.is_empty() && self.different.is_empty() && self.extra.is_empty()
    }
}
