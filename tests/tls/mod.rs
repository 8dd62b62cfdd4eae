//! HTTPS on strata's own listeners (issue 21): aws-sdk-s3 and plain HTTP clients over TLS
//! with a test CA made here by rcgen, HTTP/2 by ALPN beside HTTP/1.1, SNI, certificate
//! reloads (a broken one refused), and the plain listener's redirect.

use crate::harness::{ACCESS_KEY, Cold, Harness, Opts, SECRET_KEY};
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A test CA and the PEM of the certificates it signs.
pub(crate) struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pub(crate) pem: String,
}

impl Ca {
    pub(crate) fn new() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "strata test CA");
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { params, key, pem }
    }

    /// A leaf for `names`, written as `<stem>.crt` and `<stem>.key` under `dir`; returns
    /// the certificate's DER.
    pub(crate) fn leaf(&self, dir: &Path, stem: &str, names: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{stem}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }
}

struct Tls {
    h: Harness,
    ca: Ca,
    dir: tempfile::TempDir,
    /// DER of the default (localhost) and the SNI (media.test) certificates.
    default_der: Vec<u8>,
    media_der: Vec<u8>,
}

fn path(dir: &Path, file: &str) -> PathBuf {
    dir.join(file)
}

async fn start(extra: &str) -> Tls {
    start_watching(extra, "0s").await
}

async fn start_watching(extra: &str, watch: &str) -> Tls {
    start_full(extra, watch, "").await
}

/// TLS with `extra` lines in `[tls]`, files checked every `watch`, and `tail` (more
/// sections) after.
async fn start_full(extra: &str, watch: &str, tail: &str) -> Tls {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let default_der = ca.leaf(d, "default", &["localhost", "127.0.0.1"]);
    let media_der = ca.leaf(d, "media", &["media.test", "*.media.test"]);
    let toml = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nwatch = {watch:?}\n{extra}\n[[tls.sni]]\ncert = {:?}\nkey = {:?}\n{tail}\n",
        path(d, "default.crt"),
        path(d, "default.key"),
        path(d, "media.crt"),
        path(d, "media.key"),
    );
    let h = Harness::start_opts(Cold::Fs, Opts { toml, ..Default::default() }).await;
    Tls { h, ca, dir, default_der, media_der }
}

impl Tls {
    fn addr(&self) -> SocketAddr {
        self.h.addr
    }

    fn s3(&self) -> aws_sdk_s3::Client {
        use aws_smithy_http_client::tls;
        let trust = tls::TrustStore::empty().with_native_roots(false).with_pem_certificate(self.ca.pem.as_bytes());
        let ctx = tls::TlsContext::builder().with_trust_store(trust).build().unwrap();
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
            .tls_context(ctx)
            .build_https();
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(format!("https://localhost:{}", self.addr().port()))
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
            .force_path_style(true)
            .http_client(http)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// A plain HTTP client that trusts the test CA and reaches `media.test` here.
    fn http(&self, h1_only: bool) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca.pem.as_bytes()).unwrap();
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .tls_info(true)
            .resolve("media.test", self.addr())
            .resolve("pics.media.test", self.addr());
        if h1_only {
            b = b.http1_only();
        }
        b.build().unwrap()
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.addr().port())
    }
}

fn peer_der(resp: &reqwest::Response) -> Vec<u8> {
    let info = resp.extensions().get::<reqwest::tls::TlsInfo>().expect("tls info");
    info.peer_certificate().expect("a peer certificate").to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_and_http_over_tls_with_http2_and_http1() {
    let t = start("").await;
    let s3 = t.s3();
    s3.create_bucket().bucket("secure").send().await.unwrap();
    let body = vec![7u8; 300_000];
    s3.put_object().bucket("secure").key("a/b.bin").body(ByteStream::from(body.clone())).send().await.unwrap();
    let got = s3.get_object().bucket("secure").key("a/b.bin").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), body.as_slice());
    for (h1, want) in [(false, reqwest::Version::HTTP_2), (true, reqwest::Version::HTTP_11)] {
        let r = t.http(h1).get(t.url("localhost", "/health")).send().await.unwrap();
        assert_eq!((r.status().as_u16(), r.version()), (200, want), "h1 only: {h1}");
    }
    let plain = reqwest::Client::new().get(format!("http://{}/health", t.addr())).send().await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()), "plain HTTP is not served on TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sni_picks_the_certificate() {
    let t = start("").await;
    let c = t.http(true);
    let r = c.get(t.url("localhost", "/health")).send().await.unwrap();
    assert!(peer_der(&r) == t.default_der, "localhost gets the default certificate");
    for host in ["media.test", "pics.media.test"] {
        let r = c.get(t.url(host, "/health")).send().await.unwrap();
        assert!(peer_der(&r) == t.media_der, "{host} gets the SNI certificate");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_swaps_the_certificate_while_an_old_download_finishes() {
    let t = start("").await;
    let s3 = t.s3();
    s3.create_bucket().bucket("big").send().await.unwrap();
    let body: Vec<u8> = (0..(6u32 << 20)).map(|i| (i % 253) as u8).collect();
    s3.put_object().bucket("big").key("f").body(ByteStream::from(body.clone())).send().await.unwrap();
    let mut download = s3.get_object().bucket("big").key("f").send().await.unwrap().body;
    let first = download.next().await.expect("a first chunk").unwrap();
    // New files, then a reload (what SIGHUP does): new handshakes get the new certificate.
    let new_der = t.ca.leaf(t.dir.path(), "default", &["localhost", "127.0.0.1"]);
    t.h.running.as_ref().unwrap().tls_certs().expect("tls is on").reload().expect("the new pair loads");
    let r = t.http(true).get(t.url("localhost", "/health")).send().await.unwrap();
    assert!(peer_der(&r) == new_der && new_der != t.default_der, "a new connection sees the new certificate");
    let mut got = first.to_vec();
    while let Some(chunk) = download.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert!(got == body, "the download on the old connection completes intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_certificate_is_refused_and_the_old_one_kept() {
    let t = start("").await;
    let certs = t.h.running.as_ref().unwrap().tls_certs().expect("tls is on");
    std::fs::write(t.dir.path().join("default.crt"), "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let e = certs.reload().expect_err("a broken certificate does not load");
    assert!(e.to_string().contains("default.crt"), "the error names the file: {e}");
    // A key of another certificate is refused too.
    t.ca.leaf(t.dir.path(), "other", &["localhost"]);
    std::fs::copy(t.dir.path().join("other.crt"), t.dir.path().join("default.crt")).unwrap();
    let e = certs.reload().expect_err("a certificate with a foreign key does not load");
    assert!(e.to_string().contains("does not belong"), "{e}");
    let r = t.http(true).get(t.url("localhost", "/health")).send().await.unwrap();
    assert!(peer_der(&r) == t.default_der, "the old certificate stays in force");
    let metrics = t.http(true).get(t.url("localhost", "/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("strata_tls_cert_expiry_seconds{cert=\"localhost\"}"), "expiry is exported");
    let doc = include_str!("../../docs/metrics.md");
    let section = doc.split("\n## TLS\n").nth(1).expect("a TLS section").split("\n## ").next().unwrap_or("");
    let names: Vec<&str> = section.lines().filter_map(|l| l.strip_prefix("| `")?.split('`').next()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for n in names {
        assert!(metrics.lines().any(|l| l.starts_with(n)), "{n} is documented but not in /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_plain_listener_redirects_to_https() {
    let t = start("plain_listen = \"127.0.0.1:0\"").await;
    let plain = t.h.running.as_ref().unwrap().plain_addr().expect("a plain listener");
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = c
        .put(format!("http://{plain}/b/k?x=1"))
        .header("host", format!("media.test:{}", plain.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 308);
    let want = format!("https://media.test:{}/b/k?x=1", t.addr().port());
    assert_eq!(r.headers()["location"].to_str().unwrap(), want);
}

/// A store reached over HTTPS with a private CA: here another strata with the test
/// certificate, as its S3 cold store would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_behind_a_private_ca_is_reached_with_its_bundle() {
    use strata::backend::{BreakerSettings, WriteOptions, stack};
    use strata::config::{BackendConfig, Limits, S3Backend};
    let t = start("").await;
    t.s3().create_bucket().bucket("cold").send().await.unwrap();
    let ca_path = t.dir.path().join("ca.pem");
    std::fs::write(&ca_path, &t.ca.pem).unwrap();
    let cfg = |ca_bundle: Option<PathBuf>| {
        BackendConfig::S3(S3Backend {
            endpoint: Some(format!("https://localhost:{}", t.addr().port())),
            region: "us-east-1".into(),
            bucket: "cold".into(),
            prefix: String::new(),
            access_key: Some(ACCESS_KEY.into()),
            secret_key: Some(SECRET_KEY.into()),
            virtual_host_style: false,
            ca_bundle,
        })
    };
    let breaker = BreakerSettings {
        latency_budget: std::time::Duration::from_secs(10),
        io_budget: std::time::Duration::from_secs(10),
        failures: 100,
        cooldown: std::time::Duration::from_secs(1),
    };
    let limits = Limits { backend_retries: 0, ..Default::default() };
    let trusted = stack("private", &cfg(Some(ca_path.clone())), &limits, &breaker).unwrap().backend;
    let mut w = trusted.writer("over/tls", &WriteOptions::default()).await.unwrap();
    w.write(bytes::Bytes::from_static(b"through a private CA")).await.unwrap();
    w.commit().await.unwrap();
    let got = t.s3().get_object().bucket("cold").key("over/tls").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), b"through a private CA");
    let untrusted = stack("public-roots", &cfg(None), &limits, &breaker).unwrap().backend;
    assert!(untrusted.stat("over/tls").await.is_err(), "without the bundle the certificate is not trusted");
    std::fs::write(&ca_path, "no certificate here").unwrap();
    let e = stack("broken", &cfg(Some(ca_path)), &limits, &breaker).err().expect("a bundle without certificates");
    assert!(e.to_string().contains("ca_bundle"), "{e}");
}

/// Polls `url` until its peer certificate is `want` (at most 10 s). Each try is a new
/// client: one client would resume its TLS session, and a resumed session keeps the
/// certificate it was first made with.
async fn until_served(client: impl Fn() -> reqwest::Client, url: &str, want: &[u8]) {
    for _ in 0..100 {
        if let Ok(r) = client().get(url).send().await
            && peer_der(&r) == want
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{url} never served the new certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changed_files_are_picked_up_without_a_signal() {
    let t = start_watching("", "100ms").await;
    let new_der = t.ca.leaf(t.dir.path(), "media", &["media.test", "*.media.test"]);
    until_served(|| t.http(true), &t.url("media.test", "/health"), &new_der).await;
}

/// The real binary: SIGHUP rereads the certificates.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_reloads_the_certificates_of_the_binary() {
    use std::io::BufRead;
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let first = ca.leaf(d, "default", &["localhost"]);
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\nwatch = \"0s\"\n",
        d.join("default.crt"),
        d.join("default.key")
    );
    std::fs::write(d.join("strata.toml"), toml).unwrap();
    let (config, data) = (d.join("strata.toml").display().to_string(), d.join("data").display().to_string());
    let mut child = crate::harness::strata_serve(&["--config", &config, "--data-dir", &data]);
    let stdout = child.stdout.take().unwrap();
    let child = KillOnDrop(child);
    let mut out = std::io::BufReader::new(stdout);
    let mut banner = String::new();
    out.read_line(&mut banner).unwrap();
    let addr: SocketAddr = banner
        .trim()
        .strip_prefix("strata listening on https://")
        .unwrap_or_else(|| panic!("no https address in {banner:?}"))
        .parse()
        .unwrap();
    let c = || {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
            .tls_info(true)
            .build()
            .unwrap()
    };
    let url = format!("https://localhost:{}/health", addr.port());
    until_served(c, &url, &first).await;
    let second = ca.leaf(d, "default", &["localhost"]);
    let hup = std::process::Command::new("kill").args(["-HUP", &child.0.id().to_string()]).status().unwrap();
    assert!(hup.success());
    until_served(c, &url, &second).await;
    let term = std::process::Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(term.success());
    let mut child = child;
    assert!(child.0.wait().unwrap().success());
}

/// Kills the child when the test fails before it stops it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The base64 SHA-256 of a certificate's public key, as Chromium's
/// `--ignore-certificate-errors-spki-list` takes it (trust this key, and only it).
fn spki_hash(der: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let spki = cert.tbs_certificate.subject_pki.raw;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(spki))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_image_and_the_status_page_over_https_in_chromium() {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| std::process::Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("headless Chromium is needed: scripts/test installs Debian's chromium package");
    let t = start_full("", "0s", "[web]\naccess_log = \"access.log\"\naccess_log_format = \"json\"").await;
    let s3 = t.s3();
    s3.create_bucket().bucket("site").send().await.unwrap();
    let put = |key: &'static str, body: Vec<u8>, ctype: &'static str| {
        s3.put_object().bucket("site").key(key).content_type(ctype).body(ByteStream::from(body)).send()
    };
    put("private/photo.png", crate::web::browser::png(64, 48), "image/png").await.unwrap();
    let admin = |method: reqwest::Method, route: &str| {
        t.http(false)
            .request(method, t.url("localhost", &format!("/_strata/{route}")))
            .basic_auth(ACCESS_KEY, Some(SECRET_KEY))
    };
    let r = admin(reqwest::Method::POST, "access?bucket=site&prefix=")
        .json(&serde_json::json!({ "access": "public-read" }));
    assert!(r.send().await.unwrap().status().is_success());
    let r = admin(reqwest::Method::POST, "access?bucket=site&prefix=private/")
        .json(&serde_json::json!({ "access": "signed" }));
    assert!(r.send().await.unwrap().status().is_success());
    let signed: serde_json::Value = admin(reqwest::Method::POST, "sign?bucket=site&key=private/photo.png&expires=10m")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let link = signed["url"].as_str().expect("a signed link").to_owned();
    let page = format!(
        "<!doctype html><html><body><img id=\"i\" src=\"{link}\"><script>const i = document.getElementById('i');\
         const done = w => fetch('/site/report?w=' + w); i.onload = () => done(i.naturalWidth); i.onerror = () => done('error');\
         if (i.complete && i.naturalWidth) done(i.naturalWidth);</script></body></html>"
    );
    put("index.html", page.into_bytes(), "text/html").await.unwrap();
    let trust = format!("--ignore-certificate-errors-spki-list={}", spki_hash(&t.default_der));
    let run = |url: String, extra: &[&str]| {
        let profile = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new(chromium);
        cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", &trust])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url);
        (cmd, profile)
    };
    let (mut cmd, _profile) = run(t.url("localhost", "/site/index.html"), &[]);
    let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let log = t.h.cfg.web.access_log.clone().unwrap();
    let mut report = None;
    for _ in 0..300 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        report = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|l| l["uri"].as_str()?.strip_prefix("/site/report?w=").map(str::to_owned));
        if report.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    if report.is_none() {
        let (mut cmd, _p) =
            run(t.url("localhost", "/site/index.html"), &["--dump-dom", "--enable-logging=stderr", "--v=0"]);
        let out = cmd.output().unwrap();
        println!("dom: {}\nstderr: {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(report.as_deref(), Some("64"), "the signed image loads over HTTPS in Chromium");
    let status = format!("https://{ACCESS_KEY}:{SECRET_KEY}@localhost:{}/_strata/status", t.addr().port());
    let (mut cmd, _profile) = run(status, &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned();
    assert!(dom.contains("<table id=\"certificates\""), "no certificates table in {dom}");
    assert!(dom.contains("<td>localhost</td>") && dom.contains("media.test"), "both certificates are listed: {dom}");
}
