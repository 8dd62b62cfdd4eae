//! The TOML configuration tree: parse, then resolve, then validate.
//!
//! Owns the shape of `strata.toml`, its defaults, environment overrides for secrets and the
//! checks that reject a bad file with a message naming the field. It must not open stores,
//! sockets or databases: other modules build those from a validated [`Config`].

mod auth;
mod backend;
mod bucket;
mod images;
mod journal;
mod tls;
mod units;
mod web;

pub use auth::AuthConfig;
pub use backend::{AzblobBackend, BackendConfig, FsBackend, GcsBackend, S3Backend};
pub use bucket::BucketConfig;
pub use images::{Fit, Format, ImagesConfig, Preset};
pub use journal::{ClusterConfig, FailoverConfig, JournalConfig, WriteMode};
pub use tls::{CertPair, PlainMode, TlsConfig};
pub use units::{ByteSize, HumanDuration};
pub use web::{AccessMode, LinkKey, LogFormat, RuleConfig, ServeMode, WebConfig};

use crate::error::{Error, ErrorKind, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The documented default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// The name of the local-disk backend that exists when the config declares none of that name.
pub const LOCAL_BACKEND: &str = "local";

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the S3/HTTP listener. Default "127.0.0.1:7070"; `--listen` overrides it.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Directory for the catalog, credentials, local cold store and staging files.
    /// Default "./strata-data"; `--data-dir` overrides it.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// The S3 region strata answers for; requests signed for another region are refused.
    /// Default "us-east-1".
    #[serde(default = "default_region")]
    pub region: String,
    /// Catalog database URL: "sqlite://PATH" or "postgres://…".
    /// Default "sqlite://<data_dir>/catalog.db".
    #[serde(default)]
    pub catalog: Option<String>,
    /// The log filter (`tracing` directives such as "info,strata=debug"), applied at start
    /// and at every reload. Default: none, `STRATA_LOG` or "info".
    #[serde(default)]
    pub log: Option<String>,
    /// Backend that holds buckets created through the API (CreateBucket). Default "local".
    #[serde(default = "default_backend")]
    pub default_backend: String,
    /// S3 credentials. Default: `STRATA_ACCESS_KEY`/`STRATA_SECRET_KEY`, else generated once
    /// and kept in `<data_dir>/credentials.json`.
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// Limits against careless or hostile clients and slow stores.
    #[serde(default)]
    pub limits: Limits,
    /// The hot tier: local-disk copies of recently read objects.
    #[serde(default)]
    pub hot: HotConfig,
    /// Where the operator endpoints listen.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The journal of writes not yet in every cold store.
    #[serde(default)]
    pub journal: JournalConfig,
    /// When reads move to the next replica.
    #[serde(default)]
    pub failover: FailoverConfig,
    /// This node among the others that share a PostgreSQL catalog.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Refuse every write with 503 (maintenance); reads go on. Can be flipped at runtime
    /// through `POST /_strata/read-only`. Default false.
    #[serde(default)]
    pub read_only: bool,
    /// Named cold stores. A local-disk backend named "local" rooted at `<data_dir>/cold` is
    /// added when none of that name is declared.
    #[serde(default)]
    pub backends: BTreeMap<String, BackendConfig>,
    /// Anonymous HTTP serving: virtual hosts, custom domains, signed links, the access log.
    #[serde(default)]
    pub web: WebConfig,
    /// HTTPS on the listeners (see `docs/design/tls.md`).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Access keys in the catalog: the seal key of their secrets, the reread interval.
    #[serde(default)]
    pub auth: AuthConfig,
    /// `[images]`: derivatives on the web front end.
    #[serde(default)]
    pub images: ImagesConfig,
    /// Buckets declared up front, each mapped to a backend. Buckets can also be created
    /// through the S3 API; those live on `default_backend`.
    #[serde(default)]
    pub buckets: BTreeMap<String, BucketConfig>,
}

/// An S3 access key pair.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Access key id. No default. `STRATA_ACCESS_KEY` overrides it.
    pub access_key: String,
    /// Secret key. No default. `STRATA_SECRET_KEY` overrides it.
    pub secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("access_key", &self.access_key).finish_non_exhaustive()
    }
}

/// Limits on clients and cold-store calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most client connections served at once; further ones wait in the kernel backlog.
    /// Default 1024 (connections).
    pub max_connections: usize,
    /// Largest request head (request line plus headers); larger gets 431. Default "64KiB".
    pub max_header_size: ByteSize,
    /// Time a client has to send a complete request head, also the keep-alive idle limit.
    /// Default "30s".
    pub header_read_timeout: HumanDuration,
    /// Longest pause between two pieces of a request body before the request is failed.
    /// Default "60s".
    pub body_idle_timeout: HumanDuration,
    /// Largest single PUT or part. Default "5GiB" (S3's limit).
    pub max_object_size: ByteSize,
    /// Time in-flight requests get to finish after SIGTERM. Default "30s".
    pub shutdown_grace: HumanDuration,
    /// After SIGTERM (or a successor taking over), how long open HTTP/1.1 connections stay
    /// open, each next request answered with `Connection: close`, before idle ones are
    /// closed: a client that is sending is told to go, not cut off. Default "1s"; at most
    /// `shutdown_grace`.
    pub drain_linger: HumanDuration,
    /// Timeout of one cold-store call that moves no data (stat, delete, list). Default "60s".
    pub backend_timeout: HumanDuration,
    /// Longest wait for progress of one cold-store read or write. Default "60s".
    pub backend_io_timeout: HumanDuration,
    /// Retries of a failed cold-store call, with exponential backoff and jitter. Default 4.
    pub backend_retries: usize,
    /// Streams one HTTP/2 connection may have open at once. Default 256.
    pub h2_max_streams: u32,
    /// Failed authentications (S3 signatures, admin logins, passwords) one client address
    /// may make in a burst before it is refused for a while; 0 turns the brake off.
    /// Default 10.
    pub auth_burst: u32,
    /// How long until one failure is forgiven: after a burst, one more try per this long.
    /// Default "6s".
    pub auth_refill: HumanDuration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_header_size: ByteSize(64 << 10),
            header_read_timeout: HumanDuration(Duration::from_secs(30)),
            body_idle_timeout: HumanDuration(Duration::from_secs(60)),
            max_object_size: ByteSize(5 << 30),
            shutdown_grace: HumanDuration(Duration::from_secs(30)),
            drain_linger: HumanDuration(Duration::from_secs(1)),
            backend_timeout: HumanDuration(Duration::from_secs(60)),
            backend_io_timeout: HumanDuration(Duration::from_secs(60)),
            backend_retries: 4,
            h2_max_streams: 256,
            auth_burst: 10,
            auth_refill: HumanDuration(Duration::from_secs(6)),
        }
    }
}

/// The operator endpoints: `/metrics`, `/health`, `/ready` and `/_strata/` (status page,
/// cache controls).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// A separate listener for them, e.g. "127.0.0.1:9090"; when set they leave the main
    /// listener. Default: none (they answer on `listen`).
    pub listen: Option<SocketAddr>,
}

/// The hot tier (see `docs/design/hot-tier.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HotConfig {
    /// Whether the hot tier exists at all. Default true.
    pub enabled: bool,
    /// Directory of chunk files. Default "<data_dir>/hot".
    pub dir: Option<PathBuf>,
    /// Hard bound on the bytes of chunk files (headers included). Default "10GiB".
    pub max_size: ByteSize,
    /// Free disk space the tier always leaves on its filesystem. Default "1GiB".
    pub min_free: ByteSize,
    /// Objects are cached in chunks of this size; a range read fetches only the chunks it
    /// covers. Default "8MiB"; between 64KiB and 1GiB.
    pub chunk_size: ByteSize,
    /// Chunks of one read fetched from the cold store in parallel. Default 4.
    pub fill_concurrency: usize,
    /// Times a broken cold-store stream is resumed before the fill fails. Default 3.
    pub fill_retries: u32,
    /// Eviction policy: "s3-fifo" or "lru". Default "s3-fifo".
    pub policy: EvictionKind,
    /// When a reader gets its first byte on a miss: "stream" (as it arrives) or
    /// "store-and-forward" (after the whole range is fetched and checked). Default "stream";
    /// buckets can override it.
    pub fill: FillMode,
    /// Check a cached object against the cold store once it has gone this long unchecked,
    /// to catch changes made behind strata's back. Default: off (trust the catalog).
    pub revalidate_after: Option<HumanDuration>,
    /// The miss log (`<dir>/misses.log`) rotates past this size; "0B" turns it off.
    /// Default "64MiB".
    pub miss_log_max: ByteSize,
    /// Memory for small chunks (up to 256 KiB each) on top of their files, so hits on
    /// small hot objects skip the disk. "0B" turns it off. Default "64MiB".
    pub memory_size: ByteSize,
    /// Also keep larger chunks in that memory, from their second read from a hot file
    /// on, each at most a quarter of `memory_size`: hits on large hot objects then skip
    /// the disk reads and their checks. Default false.
    pub memory_large: bool,
}

impl Default for HotConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: None,
            max_size: ByteSize(10 << 30),
            min_free: ByteSize(1 << 30),
            chunk_size: ByteSize(8 << 20),
            fill_concurrency: 4,
            fill_retries: 3,
            policy: EvictionKind::S3Fifo,
            fill: FillMode::Stream,
            revalidate_after: None,
            miss_log_max: ByteSize(64 << 20),
            memory_size: ByteSize(64 << 20),
            memory_large: false,
        }
    }
}

/// Which policy orders hot-tier evictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvictionKind {
    /// S3-FIFO: scan-resistant, the default.
    S3Fifo,
    /// Least recently used.
    Lru,
}

/// When a reader gets its first byte on a hot-tier miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FillMode {
    /// As soon as the cold store sends it.
    #[default]
    Stream,
    /// After the whole range is in the hot tier (and the ETag checked, for whole objects).
    StoreAndForward,
}

pub(super) fn yes() -> bool {
    true
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

fn default_backend() -> String {
    LOCAL_BACKEND.to_owned()
}

/// Values from the command line that take precedence over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
}

impl Config {
    /// Parses a TOML document. Unknown fields and bad values are errors naming the field.
    pub fn parse(text: &str) -> Result<Config> {
        toml::from_str(text).map_err(|e| Error::new(ErrorKind::Config, format!("invalid configuration: {e}")))
    }

    /// Reads and parses `path`, or returns the empty (all-defaults) configuration.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        match path {
            None => Config::parse(""),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    Error::new(ErrorKind::Config, format!("cannot read config {}", p.display())).with_source(e)
                })?;
                Config::parse(&text).map_err(|e| Error::new(ErrorKind::Config, format!("{}: {e}", p.display())))
            }
        }
    }

    /// Fills in defaults that depend on other values, applies command-line overrides and
    /// environment overrides for secrets (`env` is `std::env::var` outside tests).
    pub fn resolve(mut self, overrides: &Overrides, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        if let Some(d) = &overrides.data_dir {
            self.data_dir = Some(d.clone());
        }
        if let Some(l) = overrides.listen {
            self.listen = Some(l);
        }
        let data_dir = self.data_dir.get_or_insert_with(|| PathBuf::from("./strata-data")).clone();
        self.listen.get_or_insert_with(|| DEFAULT_LISTEN.parse().expect("constant address parses"));
        if self.catalog.is_none() {
            self.catalog = Some(format!("sqlite://{}", data_dir.join("catalog.db").display()));
        }
        self.backends
            .entry(LOCAL_BACKEND.to_owned())
            .or_insert_with(|| BackendConfig::Fs(FsBackend { root: data_dir.join("cold"), deferred_sync: false }));
        match (env("STRATA_ACCESS_KEY"), env("STRATA_SECRET_KEY")) {
            (Some(access_key), Some(secret_key)) => self.credentials = Some(Credentials { access_key, secret_key }),
            (None, None) => {}
            _ => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "STRATA_ACCESS_KEY and STRATA_SECRET_KEY must be set together",
                ));
            }
        }
        if let Some(k) = env("STRATA_SEAL_KEY") {
            self.auth.seal_key = Some(k);
        }
        if let Some(log) = self.web.access_log.take() {
            self.web.access_log = Some(if log.is_relative() { data_dir.join(log) } else { log });
        }
        self.tls.resolve(&data_dir);
        for (name, b) in &mut self.buckets {
            b.resolve_stores().map_err(|m| Error::new(ErrorKind::Config, format!("buckets.{name}.{m}")))?;
        }
        for (name, b) in &mut self.backends {
            let var = |suffix: &str| env(&format!("STRATA_BACKEND_{}_{suffix}", env_name(name)));
            match b {
                BackendConfig::S3(s3) => {
                    s3.access_key = var("ACCESS_KEY").or(s3.access_key.take());
                    s3.secret_key = var("SECRET_KEY").or(s3.secret_key.take());
                }
                BackendConfig::Gcs(g) => g.credential = var("CREDENTIAL").or(g.credential.take()),
                BackendConfig::Azblob(a) => a.account_key = var("ACCOUNT_KEY").or(a.account_key.take()),
                BackendConfig::Fs(_) => {}
            }
        }
        Ok(self)
    }

    /// Checks cross-field rules. Call after [`Config::resolve`].
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::new(ErrorKind::Config, msg));
        if !self.backends.contains_key(&self.default_backend) {
            return bad(format!("default_backend: no backend named {:?}", self.default_backend));
        }
        if self.limits.max_connections == 0 {
            return bad("limits.max_connections: must be at least 1".into());
        }
        if self.limits.max_header_size.0 < 8192 {
            return bad("limits.max_header_size: must be at least 8KiB".into());
        }
        if self.limits.max_object_size.0 == 0 || self.limits.max_object_size.0 > 5 << 40 {
            return bad("limits.max_object_size: must be between 1B and 5TiB".into());
        }
        if let Some(c) = &self.catalog
            && !(c.starts_with("sqlite:") || c.starts_with("postgres://") || c.starts_with("postgresql://"))
        {
            return bad(format!("catalog: {c:?} is neither sqlite://PATH nor postgres://…"));
        }
        if let Some(c) = &self.credentials
            && (c.access_key.len() < 3 || c.secret_key.len() < 8)
        {
            return bad("credentials: access_key needs 3+ characters and secret_key 8+".into());
        }
        for (name, b) in &self.backends {
            b.validate(name)?;
        }
        self.validate_hot()?;
        self.web.validate(&self.buckets).map_err(|m| Error::new(ErrorKind::Config, format!("web.{m}")))?;
        self.tls.validate().map_err(|m| Error::new(ErrorKind::Config, format!("tls.{m}")))?;
        self.auth.validate().map_err(|m| Error::new(ErrorKind::Config, format!("auth.{m}")))?;
        self.images.validate().map_err(|m| Error::new(ErrorKind::Config, format!("images.{m}")))?;
        if let Some(s) = self.images.store.as_ref().filter(|s| !self.backends.contains_key(*s)) {
            return bad(format!("images.store: no backend named {s:?} in [backends]"));
        }
        if self.journal.max_size.0 < self.limits.max_object_size.0 {
            // Every write is staged in the journal first, so a smaller journal would turn
            // away the largest objects even with every store healthy.
            return bad("journal.max_size: must be at least limits.max_object_size (every write is staged)".into());
        }
        if self.journal.segment_threshold.0 > 16 << 20 {
            return bad("journal.segment_threshold: at most 16MiB (such bodies are held in memory)".into());
        }
        if self.journal.uploads == 0 || self.journal.uploads > 64 {
            return bad("journal.uploads: must be between 1 and 64".into());
        }
        let postgres = self.catalog.as_deref().is_some_and(|c| c.starts_with("postgres"));
        if self.journal.peer_copies > 0 && !postgres {
            return bad("journal.peer_copies: needs several nodes on a PostgreSQL catalog".into());
        }
        if self.cluster.shared_hot && !postgres {
            return bad("cluster.shared_hot: needs several nodes on a PostgreSQL catalog".into());
        }
        if self.cluster.heartbeat.0.is_zero() || self.cluster.lease.0 < 2 * self.cluster.heartbeat.0 {
            return bad("cluster.lease: must be at least twice cluster.heartbeat (and the heartbeat above 0)".into());
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&self.cluster.invalidation_lag.0) {
            return bad("cluster.invalidation_lag: must be between 10ms and 10s".into());
        }
        if let Some(l) = &self.log
            && let Err(e) = tracing_subscriber::EnvFilter::try_new(l)
        {
            return bad(format!("log: {l:?} is not a log filter: {e}"));
        }
        if self.limits.drain_linger.0 > self.limits.shutdown_grace.0 {
            return bad("limits.drain_linger: must be at most limits.shutdown_grace".into());
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&self.cluster.peer_timeout.0) {
            return bad("cluster.peer_timeout: must be between 100ms and 60s".into());
        }
        if self.failover.failures == 0 {
            return bad("failover.failures: must be at least 1".into());
        }
        if let (Some(a), Some(l)) = (self.admin.listen, self.listen)
            && a == l
            && a.port() != 0
        {
            return bad(format!("admin.listen: {a} is already the main listen address"));
        }
        let mut taken: Vec<(&str, String, &str)> = Vec::new();
        for (name, b) in &self.buckets {
            if !crate::names::valid_bucket_name(name) {
                return bad(format!("buckets.{name}: not a valid S3 bucket name (3-63 of a-z 0-9 . -)"));
            }
            if let Some(s) = b.stores.iter().find(|s| !self.backends.contains_key(*s)) {
                return bad(format!("buckets.{name}.backend (or stores): no backend named {s:?}"));
            }
            b.validate_writes().map_err(|m| Error::new(ErrorKind::Config, format!("buckets.{name}.{m}")))?;
            b.validate_access().map_err(|m| Error::new(ErrorKind::Config, format!("buckets.{name}.{m}")))?;
            if let Some(o) = &b.origin
                && (!self.backends.contains_key(o) || (o == &b.backend && b.origin_prefix.is_none()))
            {
                return bad(format!(
                    "buckets.{name}.origin: {o:?} is not another backend (or the same one under another origin_prefix)"
                ));
            }
            let prefix = self.bucket_prefix(name);
            if prefix.starts_with('/') || !(prefix.is_empty() || prefix.ends_with('/')) || prefix.contains("//") {
                return bad(format!(
                    "buckets.{name}.prefix: must be \"\" or a path ending in \"/\" with no leading \"/\""
                ));
            }
            for store in &b.stores {
                if let Some((other, _, _)) = taken
                    .iter()
                    .find(|(_, p, be)| *be == store && (p.starts_with(&prefix) || prefix.starts_with(p.as_str())))
                {
                    return bad(format!("buckets.{name}.prefix: overlaps bucket {other} on backend {store}"));
                }
            }
            for store in &b.stores {
                taken.push((name, prefix.clone(), store));
            }
        }
        Ok(())
    }

    fn validate_hot(&self) -> Result<()> {
        let h = &self.hot;
        let bad = |msg: &str| Err(Error::new(ErrorKind::Config, format!("hot.{msg}")));
        if !(64 << 10..=1 << 30).contains(&h.chunk_size.0) {
            return bad("chunk_size: must be between 64KiB and 1GiB");
        }
        if h.enabled && h.max_size.0 < 2 * h.chunk_size.0 {
            return bad("max_size: must hold at least two chunks (2 × hot.chunk_size)");
        }
        if h.fill_concurrency == 0 || h.fill_concurrency > 64 {
            return bad("fill_concurrency: must be between 1 and 64");
        }
        Ok(())
    }

    /// The journal's directory.
    pub fn journal_dir(&self) -> PathBuf {
        self.journal.dir.clone().unwrap_or_else(|| self.data_dir().join("journal"))
    }

    /// The hot tier's directory.
    pub fn hot_dir(&self) -> PathBuf {
        self.hot.dir.clone().unwrap_or_else(|| self.data_dir().join("hot"))
    }

    /// The prefix inside its backend of a bucket declared in the config.
    pub fn bucket_prefix(&self, bucket: &str) -> String {
        self.buckets.get(bucket).and_then(|b| b.prefix.clone()).unwrap_or_else(|| format!("{bucket}/"))
    }

    /// The resolved data directory.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.as_deref().unwrap_or(Path::new("./strata-data"))
    }
}

/// `s3-main` → `S3_MAIN`, for environment variable names.
pub fn env_name(backend: &str) -> String {
    backend.to_ascii_uppercase().replace('-', "_")
}

#[cfg(test)]
mod tests;
