//! Certificates of strata's own HTTPS listeners: loading the PEM files, choosing one per
//! connection by the client's server name (SNI), swapping them when the files change, and
//! telling operators when they expire.
//!
//! [`Certs`] is the live set; the rustls server config holds it as its certificate
//! resolver, so a reload reaches every new handshake at once while connections already
//! open keep the certificate they started with. A new set replaces the old one only when
//! every file of it loads and every key matches its certificate: a broken file keeps the
//! old set in force (`strata_tls_reload_errors_total`, an error in the log). [`Watch`] is
//! the worker that looks at the files' modification times; SIGHUP calls [`Certs::reload`].
//! Only TLS 1.2 and 1.3 with rustls's default (modern) suites are offered, with ALPN h2 and
//! http/1.1. This module knows no HTTP and no S3.

use crate::config::{CertPair, TlsConfig};
use crate::error::{Error, ErrorKind, Result};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// One loaded certificate: the names it serves and when it expires.
#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// DNS names and IP addresses from its subject alternative names, lowercased; a
    /// leading `*.` matches one label.
    names: Vec<String>,
    /// What operators call it: its first name, else its file.
    label: String,
    /// Expiry, in seconds since the Unix epoch.
    not_after: i64,
}

/// A certificate as the status page shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CertView {
    /// Its first name (or file).
    pub name: String,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
}

struct Set {
    loaded: Vec<Loaded>,
    stamps: Vec<Option<SystemTime>>,
}

/// The live certificates of one server; cheap to clone.
#[derive(Clone)]
pub struct Certs {
    inner: Arc<Inner>,
}

struct Inner {
    pairs: Vec<CertPair>,
    provider: Arc<CryptoProvider>,
    set: RwLock<Arc<Set>>,
}

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certs").field("pairs", &self.inner.pairs).finish_non_exhaustive()
    }
}

fn bad(pair: &CertPair, what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Config, format!("tls: {} / {}: {what}", pair.cert.display(), pair.key.display()))
}

fn load_pair(pair: &CertPair, provider: &CryptoProvider) -> Result<Loaded> {
    let cert_pem = std::fs::read(&pair.cert).map_err(|e| bad(pair, format!("cannot read the certificate: {e}")))?;
    let key_pem = std::fs::read(&pair.key).map_err(|e| bad(pair, format!("cannot read the key: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(pair, format!("the certificate is not PEM: {e}")))?;
    let Some(leaf) = chain.first() else { return Err(bad(pair, "no certificate in the file")) };
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad(pair, format!("the key is not a PEM private key: {e}")))?;
    let signing = provider.key_provider.load_private_key(key_der).map_err(|e| bad(pair, format!("the key: {e}")))?;
    let key = CertifiedKey::new(chain.clone(), signing);
    key.keys_match().map_err(|e| bad(pair, format!("the key does not belong to the certificate: {e}")))?;
    let (_, x509) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| bad(pair, format!("the certificate: {e}")))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_ascii_lowercase()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => {
                    let addr = match ip.len() {
                        4 => <[u8; 4]>::try_from(*ip).ok().map(|b| std::net::IpAddr::from(b).to_string()),
                        16 => <[u8; 16]>::try_from(*ip).ok().map(|b| std::net::IpAddr::from(b).to_string()),
                        _ => None,
                    };
                    names.extend(addr);
                }
                _ => {}
            }
        }
    }
    let label = names.first().cloned().unwrap_or_else(|| pair.cert.display().to_string());
    let not_after = x509.validity().not_after.timestamp();
    Ok(Loaded { key: Arc::new(key), names, label, not_after })
}

fn stamps(pairs: &[CertPair]) -> Vec<Option<SystemTime>> {
    let m = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    pairs.iter().flat_map(|p| [m(&p.cert), m(&p.key)]).collect()
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(rest) => name.split_once('.').is_some_and(|(label, tail)| !label.is_empty() && tail == rest),
        None => pattern == name,
    }
}

impl Certs {
    /// Loads every certificate of `tls` (which must be enabled); an error names the file.
    pub fn load(tls: &TlsConfig) -> Result<Certs> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pairs = tls.pairs();
        let set = Self::read(&pairs, &provider)?;
        publish(&set.loaded);
        // Both counters exist from the start, so a dashboard sees 0 rather than nothing.
        ::metrics::counter!("strata_tls_reloads_total").increment(0);
        ::metrics::counter!("strata_tls_reload_errors_total").increment(0);
        Ok(Certs { inner: Arc::new(Inner { pairs, provider, set: RwLock::new(Arc::new(set)) }) })
    }

    fn read(pairs: &[CertPair], provider: &CryptoProvider) -> Result<Set> {
        let before = stamps(pairs);
        let loaded = pairs.iter().map(|p| load_pair(p, provider)).collect::<Result<Vec<_>>>()?;
        Ok(Set { loaded, stamps: before })
    }

    fn current(&self) -> Arc<Set> {
        self.inner.set.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Rereads every file. On any error the certificates in force stay, and the error is
    /// returned (and counted).
    pub fn reload(&self) -> Result<()> {
        match Self::read(&self.inner.pairs, &self.inner.provider) {
            Ok(set) => {
                publish(&set.loaded);
                *self.inner.set.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
                ::metrics::counter!("strata_tls_reloads_total").increment(1);
                tracing::info!("tls: certificates reloaded");
                Ok(())
            }
            Err(e) => {
                ::metrics::counter!("strata_tls_reload_errors_total").increment(1);
                tracing::error!(error = %e, "tls: the new certificates do not load; the old ones stay in force");
                Err(e)
            }
        }
    }

    /// The files' modification times now, when they differ from the set in force's.
    fn changed(&self) -> Option<Vec<Option<SystemTime>>> {
        let now = stamps(&self.inner.pairs);
        (now != self.current().stamps).then_some(now)
    }

    /// The certificates in force, for the status page.
    pub fn views(&self) -> Vec<CertView> {
        self.current().loaded.iter().map(|l| CertView { name: l.label.clone(), not_after: l.not_after }).collect()
    }

    /// A rustls server config that takes its certificate from this set at every handshake.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let mut c = rustls::ServerConfig::builder_with_provider(self.inner.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::new(ErrorKind::Config, format!("tls: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(self.clone()));
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(c))
    }
}

/// The expiry gauges of the set in force.
fn publish(loaded: &[Loaded]) {
    for l in loaded {
        ::metrics::gauge!("strata_tls_cert_expiry_seconds", "cert" => l.label.clone()).set(l.not_after as f64);
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.current();
        let name = hello.server_name().map(str::to_ascii_lowercase);
        let chosen = name.and_then(|n| set.loaded.iter().find(|l| l.names.iter().any(|p| matches(p, &n))));
        chosen.or(set.loaded.first()).map(|l| l.key.clone())
    }
}

/// The worker that reloads the certificates when their files change.
pub struct Watch {
    certs: Certs,
    every: Duration,
    /// The files' times when a reload last failed: not tried again until they change.
    failed: Option<Vec<Option<SystemTime>>>,
}

impl Watch {
    /// Checks `certs`' files every `every`.
    pub fn new(certs: Certs, every: Duration) -> Self {
        Self { certs, every, failed: None }
    }
}

#[async_trait::async_trait]
impl crate::worker::Worker for Watch {
    fn name(&self) -> &'static str {
        "tls watch"
    }

    fn interval(&self) -> Duration {
        self.every
    }

    async fn tick(&mut self) -> Result<()> {
        let Some(now) = self.certs.changed() else { return Ok(()) };
        if self.failed.as_ref() == Some(&now) {
            return Ok(());
        }
        // A pair caught half-written fails here and loads at the next change of its files.
        let r = self.certs.reload();
        self.failed = r.is_err().then_some(now);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_one_label() {
        assert!(matches("media.test", "media.test"));
        assert!(matches("*.media.test", "pics.media.test"));
        assert!(!matches("*.media.test", "media.test"));
        assert!(!matches("*.media.test", "a.pics.media.test"));
        assert!(!matches("media.test", "other.test"));
    }
}
