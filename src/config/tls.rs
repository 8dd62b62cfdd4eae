//! `[tls]`: HTTPS on strata's own listeners (certificates, SNI, the plain listener beside
//! it, reload), and how it is checked. Reading the files is the `tls` module's.

use super::HumanDuration;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CertPair {
    /// The chain, leaf first. No default.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1). No default.
    pub key: PathBuf,
}

/// What the plain-HTTP listener beside TLS does.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PlainMode {
    /// Answers every request with a 308 to the same URL over HTTPS (the default).
    #[default]
    Redirect,
    /// Serves exactly as the TLS listener does.
    Serve,
}

/// `[tls]`. Without `cert` and `key` every listener speaks plain HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The default certificate chain (PEM), used when no `[[tls.sni]]` certificate names
    /// the client's server name. Default none (no TLS).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM). Default none.
    pub key: Option<PathBuf>,
    /// More certificates, each chosen for the names it carries (SNI): custom domains and
    /// `web.hosts`. Default none.
    pub sni: Vec<CertPair>,
    /// A plain-HTTP listener beside the TLS one, e.g. "0.0.0.0:80". Default none.
    pub plain_listen: Option<SocketAddr>,
    /// What it does: "redirect" (to https, the default) or "serve".
    pub plain: PlainMode,
    /// How often the certificate files are checked for changes ("0s": only on SIGHUP).
    /// Default "2s".
    pub watch: HumanDuration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            sni: Vec::new(),
            plain_listen: None,
            plain: PlainMode::Redirect,
            watch: HumanDuration(Duration::from_secs(2)),
        }
    }
}

impl TlsConfig {
    /// Whether TLS is on.
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }

    /// Every certificate pair: the default one first, then the SNI ones.
    pub fn pairs(&self) -> Vec<CertPair> {
        let first = self.cert.clone().zip(self.key.clone()).map(|(cert, key)| CertPair { cert, key });
        first.into_iter().chain(self.sni.iter().cloned()).collect()
    }

    /// Makes relative paths relative to `base` (the data directory).
    pub(super) fn resolve(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.cert.iter_mut().chain(self.key.iter_mut()).for_each(abs);
        for s in &mut self.sni {
            abs(&mut s.cert);
            abs(&mut s.key);
        }
    }

    /// Checks that the settings fit together (the files are read at start).
    pub(super) fn validate(&self) -> Result<(), String> {
        match (&self.cert, &self.key) {
            (Some(_), None) => return Err("key: give the certificate's key too".into()),
            (None, Some(_)) => return Err("cert: give the certificate for the key".into()),
            (None, _) if !self.sni.is_empty() || self.plain_listen.is_some() => {
                return Err("cert: sni and plain_listen need a default cert and key".into());
            }
            _ => {}
        }
        Ok(())
    }
}
