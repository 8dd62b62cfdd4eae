//! Starts strata in-process on port 0 over a chosen cold store, with an aws-sdk-s3 client.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use md5::Digest;
use std::net::SocketAddr;
use std::sync::Arc;
use strata::backend::{Backend, Backends};
use strata::config::{Config, Overrides};
use strata::server::Running;

pub const ACCESS_KEY: &str = "STRATAACCESSKEY";
pub const SECRET_KEY: &str = "strata-secret-key";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Cold {
    Fs,
    Garage,
}

pub struct GarageEnv {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

pub fn garage_env() -> GarageEnv {
    let var = |k: &str| {
        std::env::var(format!("STRATA_TEST_GARAGE_{k}")).unwrap_or_else(|_| {
            panic!("STRATA_TEST_GARAGE_{k} is not set: run the suite with scripts/test, which starts Garage (scripts/garage-up)")
        })
    };
    GarageEnv {
        endpoint: var("ENDPOINT"),
        region: var("REGION"),
        bucket: var("BUCKET"),
        access_key: var("ACCESS_KEY"),
        secret_key: var("SECRET_KEY"),
    }
}

/// A Garage started by `scripts/garage-up` for one test alone (so stopping it disturbs no
/// other test).
pub struct OwnGarage {
    pub env: std::collections::HashMap<String, String>,
}

impl OwnGarage {
    pub fn start() -> Self {
        let out = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/garage-up"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("scripts/garage-up runs");
        assert!(out.status.success(), "garage-up failed");
        let env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export STRATA_TEST_GARAGE_"))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        OwnGarage { env }
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill").args([sig, &self.env["PID"]]).status().unwrap();
        assert!(ok.success());
    }

    pub fn client(&self) -> Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.env["ENDPOINT"])
            .region(Region::new(self.env["REGION"].clone()))
            .credentials_provider(Credentials::new(&self.env["ACCESS_KEY"], &self.env["SECRET_KEY"], None, None, "g"))
            .force_path_style(true)
            .build();
        Client::from_conf(conf)
    }
}

impl Drop for OwnGarage {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.signal("-KILL");
        let _ = std::fs::remove_dir_all(&self.env["DIR"]);
    }
}

impl OwnGarage {
    /// Its settings, as the shared test Garage's are given.
    pub fn settings(&self) -> GarageEnv {
        GarageEnv {
            endpoint: self.env["ENDPOINT"].clone(),
            region: self.env["REGION"].clone(),
            bucket: self.env["BUCKET"].clone(),
            access_key: self.env["ACCESS_KEY"].clone(),
            secret_key: self.env["SECRET_KEY"].clone(),
        }
    }
}

/// Wraps the default backend (to count calls or inject faults).
pub type Wrap = Arc<dyn Fn(Arc<dyn Backend>) -> Arc<dyn Backend> + Send + Sync>;

/// Extra settings for [`Harness::start_opts`].
#[derive(Default, Clone)]
pub struct Opts {
    /// TOML appended to the generated config (sections such as `[hot]` or `[buckets.x]`).
    pub toml: String,
    /// Wraps the default backend.
    pub wrap: Option<Wrap>,
}

pub struct Harness {
    pub running: Option<Running>,
    pub cfg: Config,
    opts: Opts,
    pub client: Client,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    cold: Cold,
    /// For Garage: the run's prefix in the shared Garage bucket, and a client for Garage.
    garage: Option<(String, String, Client)>,
}

async fn launch(cfg: &Config, opts: &Opts) -> Running {
    let backends = Backends::from_config(cfg).unwrap();
    if let Some(wrap) = &opts.wrap {
        let inner = backends.get(&cfg.default_backend).unwrap().clone();
        backends.insert(wrap(inner));
    }
    let opened = strata::server::open_with(cfg, backends).await.expect("tier opens");
    strata::server::start_with(cfg, opened).await.expect("strata starts")
}

pub fn client(addr: SocketAddr, ak: &str, sk: &str, region: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(format!("http://{addr}"))
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new(ak, sk, None, None, "test"))
        .force_path_style(true)
        .build();
    Client::from_conf(conf)
}

/// A client of the real binary at `addr` with the test keys, no retries and an operation
/// timeout (the crash and cluster tests count every failure themselves).
pub fn client_no_retry(addr: SocketAddr, timeout: std::time::Duration) -> Client {
    use aws_sdk_s3::config::{retry::RetryConfig, timeout::TimeoutConfig};
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(format!("http://{addr}"))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .force_path_style(true)
        .retry_config(RetryConfig::disabled())
        .timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build())
        .build();
    Client::from_conf(conf)
}

/// A client of the test Garage itself.
pub fn garage_client(g: &GarageEnv) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&g.endpoint)
        .region(Region::new(g.region.clone()))
        .credentials_provider(Credentials::new(&g.access_key, &g.secret_key, None, None, "garage"))
        .force_path_style(true)
        .build();
    Client::from_conf(conf)
}

impl Harness {
    pub async fn start(cold: Cold) -> Harness {
        Self::start_opts(cold, Opts::default()).await
    }

    pub async fn start_opts(cold: Cold, opts: Opts) -> Harness {
        let _ = tracing_subscriber::fmt().with_env_filter("strata=warn").with_test_writer().try_init();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut toml = format!(
            "listen = \"127.0.0.1:0\"\n[credentials]\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n"
        );
        let mut garage = None;
        if cold == Cold::Garage {
            let g = garage_env();
            let prefix = format!("run-{}/", uuid::Uuid::new_v4().simple());
            toml = format!(
                "default_backend = \"garage\"\n{toml}[backends.garage]\ntype = \"s3\"\nendpoint = \"{}\"\nregion = \"{}\"\nbucket = \"{}\"\nprefix = \"{prefix}\"\naccess_key = \"{}\"\nsecret_key = \"{}\"\n",
                g.endpoint, g.region, g.bucket, g.access_key, g.secret_key
            );
            let client = garage_client(&g);
            garage = Some((g.bucket, prefix, client));
        }
        let toml = format!("{toml}\n{}", opts.toml);
        let overrides = Overrides { data_dir: Some(data), listen: None };
        let cfg = Config::parse(&toml).unwrap().resolve(&overrides, &|_| None).unwrap();
        cfg.validate().unwrap();
        let running = launch(&cfg, &opts).await;
        let addr = running.local_addr();
        Harness {
            client: client(addr, ACCESS_KEY, SECRET_KEY, "us-east-1"),
            running: Some(running),
            cfg,
            opts,
            addr,
            dir,
            cold,
            garage,
        }
    }

    /// Stops strata and starts it again on the same data directory (a new port), with
    /// `wrap` replacing the backend wrapper.
    pub async fn restart(&mut self, wrap: Option<Wrap>) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
        self.opts.wrap = wrap;
        let running = launch(&self.cfg, &self.opts).await;
        self.addr = running.local_addr();
        self.client = client(self.addr, ACCESS_KEY, SECRET_KEY, "us-east-1");
        self.running = Some(running);
    }

    pub fn tier(&self) -> &strata::tier::Tier {
        self.running.as_ref().unwrap().tier()
    }

    pub fn hot_stats(&self) -> strata::tier::hot::HotStats {
        self.tier().cache_stats().expect("hot tier enabled")
    }

    pub fn client_with(&self, ak: &str, sk: &str, region: &str) -> Client {
        client(self.addr, ak, sk, region)
    }

    pub async fn bucket(&self, name: &str) {
        self.client.create_bucket().bucket(name).send().await.unwrap();
    }

    /// PUTs and returns the quoted ETag.
    pub async fn put(&self, bucket: &str, key: &str, body: &[u8]) -> String {
        let r = self.client.put_object().bucket(bucket).key(key).body(ByteStream::from(body.to_vec())).send().await;
        r.unwrap().e_tag().unwrap().to_owned()
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let r = self.client.get_object().bucket(bucket).key(key).send().await.unwrap();
        r.body.collect().await.unwrap().into_bytes().to_vec()
    }

    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let r = self.client.list_objects_v2().bucket(bucket).send().await.unwrap();
        r.contents().iter().filter_map(|o| o.key.clone()).collect()
    }

    /// The root of the disk store, when the cold store is one.
    pub fn fs_root(&self) -> Option<std::path::PathBuf> {
        (self.cold == Cold::Fs).then(|| self.dir.path().join("data/cold"))
    }

    fn fs_path(&self, bucket: &str, key: &str) -> std::path::PathBuf {
        self.dir.path().join("data/cold").join(bucket).join(key)
    }

    /// Reads `bucket/key` straight from the cold store, bypassing strata.
    pub async fn cold_read_opt(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        match (&self.cold, &self.garage) {
            (Cold::Garage, Some((b, prefix, g))) => {
                let r = g.get_object().bucket(b).key(format!("{prefix}{bucket}/{key}")).send().await.ok()?;
                Some(r.body.collect().await.unwrap().into_bytes().to_vec())
            }
            _ => std::fs::read(self.fs_path(bucket, key)).ok(),
        }
    }

    /// Waits until the journal is empty: every store holds every acknowledged write.
    pub async fn drained(&self) {
        let catalog = self.running.as_ref().expect("running").catalog().clone();
        for _ in 0..300 {
            if catalog.journal_lag().await.unwrap().iter().all(|l| l.entries == 0) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // Each entry left, as the catalog holds it, says why: a backoff, a claim never
        // settled, an error.
        let url = self.cfg.catalog.clone().unwrap_or_default();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.unwrap();
        let sql = "SELECT seq, key, state, attempts, next_ms FROM journal ORDER BY seq";
        let mut left = String::new();
        for r in sqlx::query(sql).fetch_all(&mut conn).await.unwrap() {
            use sqlx::Row;
            let (seq, key, state): (i64, String, String) = (r.get(0), r.get(1), r.get(2));
            let (attempts, due_in) = (r.get::<i64, _>(3), r.get::<i64, _>(4) - strata::clock::now_ms());
            left += &format!("\n  entry {seq} of {key}: {state}, {attempts} attempts, due in {due_in} ms");
        }
        panic!("the journal did not drain in 30 s: {:?}; left:{left}", catalog.journal_lag().await.unwrap());
    }

    pub async fn cold_read(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.cold_read_opt(bucket, key).await.unwrap_or_else(|| panic!("{bucket}/{key} is not in the cold store"))
    }

    /// Writes `bucket/key` straight into the cold store, as another program would.
    pub async fn cold_write(&self, bucket: &str, key: &str, body: &[u8]) {
        match (&self.cold, &self.garage) {
            (Cold::Garage, Some((b, prefix, g))) => {
                let k = format!("{prefix}{bucket}/{key}");
                g.put_object().bucket(b).key(k).body(ByteStream::from(body.to_vec())).send().await.unwrap();
            }
            _ => {
                let p = self.fs_path(bucket, key);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, body).unwrap();
            }
        }
    }

    /// No file named "escape" appeared around the data directory but as a key stored in a
    /// disk store, under its escaped `..` segment.
    pub fn assert_nothing_outside_store(&self) {
        let stored = |p: &std::path::Path| p.components().any(|c| c.as_os_str() == ".strata~..");
        let found = walk(self.dir.path())
            .into_iter()
            .chain(walk(&self.dir.path().join("..")))
            .filter(|p| p.ends_with("escape"))
            .find(|p| !stored(p));
        assert!(found.is_none(), "a key escaped the store root: {found:?}");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) && p.starts_with(dir) && out.len() < 10_000 {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// The headers of an answer, sorted, but those in `per_answer` (which change between two
/// answers of one version: `date`, a request id, a cache marker).
pub fn stable_headers(r: &reqwest::Response, per_answer: &[&str]) -> Vec<(String, String)> {
    let mut v: Vec<_> = r
        .headers()
        .iter()
        .filter(|(n, _)| !per_answer.contains(&n.as_str()))
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    v.sort();
    v
}

pub fn quoted_md5(b: &[u8]) -> String {
    format!("\"{}\"", hex::encode(md5::Md5::digest(b)))
}

/// The S3 error code of a failed call.
pub fn code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    r: Result<T, SdkError<E, R>>,
) -> String {
    let e = r.expect_err("the call should fail");
    e.code().map(str::to_owned).unwrap_or_else(|| panic!("no error code in {e:?}"))
}

/// The HTTP status of a failed call.
pub fn status<T: std::fmt::Debug, E: std::fmt::Debug>(
    r: Result<T, SdkError<E, aws_smithy_runtime_api::http::Response>>,
) -> u16 {
    let e = r.expect_err("the call should fail");
    e.raw_response().map(|r| r.status().as_u16()).unwrap_or_else(|| panic!("no response in {e:?}"))
}

/// Starts the real binary as `strata serve ARGS` with `envs` and the test keys, its stderr
/// going to `stderr`; waits for the address it prints, and keeps draining its stdout so a
/// full pipe never blocks it.
pub fn serve_process(
    args: &[std::ffi::OsString],
    envs: &[(&str, &str)],
    stderr: std::process::Stdio,
) -> (std::process::Child, SocketAddr) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("serve")
        .args(args)
        .env("STRATA_ACCESS_KEY", ACCESS_KEY)
        .env("STRATA_SECRET_KEY", SECRET_KEY)
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "strata exited before listening");
        if let Some(a) = line.trim().strip_prefix("strata listening on http://") {
            break a.parse().unwrap();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (child, addr)
}

/// Starts the real binary as `strata serve ARGS` with the test keys, its stdout piped (the
/// first line names its address) and its stderr dropped.
pub fn strata_serve(args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("serve")
        .args(args)
        .env("STRATA_ACCESS_KEY", ACCESS_KEY)
        .env("STRATA_SECRET_KEY", SECRET_KEY)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs the real binary, stops it with SIGTERM, and checks it exits cleanly.
pub async fn sigterm_exits_cleanly() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = strata_serve(&["--listen", "127.0.0.1:0", "--data-dir", &dir.path().display().to_string()]);
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    for _ in 0..3 {
        out.read_line(&mut banner).unwrap();
    }
    let addr: SocketAddr = banner
        .lines()
        .find_map(|l| l.strip_prefix("strata listening on http://"))
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .parse()
        .unwrap();
    assert!(banner.contains(&format!("access key: {ACCESS_KEY}")), "{banner}");
    let c = client(addr, ACCESS_KEY, SECRET_KEY, "us-east-1");
    c.create_bucket().bucket("live").send().await.unwrap();
    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "strata exited with {status}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(rest.contains("strata stopped"), "{rest}");
}

/// A raw SigV4-signed request (for what an SDK will not send: an empty Content-MD5, a wrong
/// one, a huge XML body). `path` includes the query; `headers` are signed too.
pub async fn signed(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> reqwest::Response {
    signed_with(addr, (method, path, headers), &body.clone(), body).await
}

/// [`signed`], with the signature over `signed_body` and `body` sent.
pub async fn signed_with(
    addr: SocketAddr,
    (method, path, headers): (&str, &str, &[(&str, &str)]),
    signed_body: &[u8],
    body: Vec<u8>,
) -> reqwest::Response {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, UriPathNormalizationMode, sign,
    };
    let url = format!("http://{addr}{path}");
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let identity = Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(std::time::SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let signable =
        SignableRequest::new(method, url.clone(), headers.iter().copied(), SignableBody::Bytes(signed_body)).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::builder().method(method).uri(&url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(body).unwrap();
    instructions.apply_to_request_http1x(&mut req);
    reqwest::Client::new().execute(reqwest::Request::try_from(req).unwrap()).await.unwrap()
}
