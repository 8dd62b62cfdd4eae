//! `[web]` and the access fields of `[buckets.NAME]`: anonymous HTTP serving (hosts,
//! access modes, signed links, serving modes, cache headers, the access log).
//!
//! Only the shapes and their checks live here; `policy` turns them into decisions.

use super::HumanDuration;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Who may read objects over plain HTTP (without S3 credentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AccessMode {
    /// Only S3 credentials or a presigned URL (and strata signed links).
    #[default]
    Private,
    /// Anyone.
    PublicRead,
    /// Anyone with the rule's password (HTTP Basic or the login page's cookie), or a
    /// signed link.
    Password,
    /// Only a strata signed link (or S3 credentials).
    Signed,
}

impl AccessMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::PublicRead => "public-read",
            Self::Password => "password",
            Self::Signed => "signed",
        }
    }

    /// Parses the config spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Private, Self::PublicRead, Self::Password, Self::Signed].into_iter().find(|m| m.as_str() == s)
    }
}

/// How a permitted anonymous GET gets its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ServeMode {
    /// strata streams the object (through the hot tier).
    #[default]
    Proxy,
    /// A 302 to a short-lived presigned URL on the cold store, after the access check.
    Redirect,
    /// strata still proxies, and the admin API hands out direct cold-store URLs.
    Direct,
}

impl ServeMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proxy => "proxy",
            Self::Redirect => "redirect",
            Self::Direct => "direct",
        }
    }

    /// Parses the config spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Proxy, Self::Redirect, Self::Direct].into_iter().find(|m| m.as_str() == s)
    }
}

/// An access rule for the keys of a bucket under `prefix`. The longest matching prefix
/// decides; a field it leaves out comes from the next shorter rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Key prefix the rule covers, e.g. "albums/2024/". Default "" (the whole bucket).
    #[serde(default)]
    pub prefix: String,
    /// Access mode. Default: the next shorter rule's, else "private".
    #[serde(default)]
    pub access: Option<AccessMode>,
    /// Password for `access = "password"`, in plain text or as an argon2 PHC string
    /// ("$argon2id$…"). Default none.
    #[serde(default)]
    pub password: Option<String>,
    /// Cache-Control sent to anonymous readers of public objects. "immutable" stands for
    /// "public, max-age=31536000, immutable". Default: the object's own, else
    /// `web.public_cache_control`. Password and signed content always get
    /// "private, no-store".
    #[serde(default)]
    pub cache_control: Option<String>,
}

/// One key that signs links. Links name the key by id, so keys can be rotated.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkKey {
    /// Key id written into links (1-16 of a-z A-Z 0-9 _ -). No default.
    pub id: String,
    /// Secret, at least 16 bytes. No default.
    pub secret: String,
}

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Access log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Apache/nginx "combined", plus the cache status and the duration.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

/// `[web]`: anonymous HTTP serving.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Base domains for virtual-host addressing: a request for
    /// `photos.media.example.com` with "media.example.com" here reads bucket "photos". Also
    /// applies to S3 requests. Default none (path style only).
    pub domains: Vec<String>,
    /// Custom domains, each mapped to one bucket, as a CDN origin: `"cdn.example.com" =
    /// "photos"` serves `cdn.example.com/KEY` from bucket photos. Default none.
    pub hosts: BTreeMap<String, String>,
    /// Public base URL for links printed by `strata sign`, e.g. "https://media.example.com".
    /// Default none: links are printed as paths.
    pub base_url: Option<String>,
    /// Keys that sign links; the first signs new ones, all verify. Default: one key
    /// generated once and kept in `<data_dir>/link-keys.json`.
    pub link_keys: Vec<LinkKey>,
    /// Cache-Control for public objects without their own or a rule's. Default
    /// "public, max-age=3600".
    pub public_cache_control: String,
    /// How long a password login (the cookie) lasts. Default "12h".
    pub login_ttl: HumanDuration,
    /// Lifetime of the presigned cold-store URLs of redirect and direct modes. Default "5m".
    pub redirect_ttl: HumanDuration,
    /// Compress compressible types (text, JSON, JS, SVG, …) with gzip or br when the client
    /// asks. Default true.
    pub compress: bool,
    /// The access log file; a relative path is relative to the data directory. Default
    /// none (no access log).
    pub access_log: Option<PathBuf>,
    /// "combined" or "json". Default "combined".
    pub access_log_format: LogFormat,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            domains: Vec::new(),
            hosts: BTreeMap::new(),
            base_url: None,
            link_keys: Vec::new(),
            public_cache_control: "public, max-age=3600".to_owned(),
            login_ttl: HumanDuration(Duration::from_secs(12 * 3600)),
            redirect_ttl: HumanDuration(Duration::from_secs(300)),
            compress: true,
            access_log: None,
            access_log_format: LogFormat::Combined,
        }
    }
}

impl WebConfig {
    /// Checks the section against the declared buckets.
    pub(super) fn validate(&self, buckets: &BTreeMap<String, super::BucketConfig>) -> Result<(), String> {
        for d in &self.domains {
            if d.is_empty() || d.contains(['/', ':', ' ']) || d.starts_with('.') {
                return Err(format!("domains: {d:?} is not a bare domain name"));
            }
        }
        for (host, bucket) in &self.hosts {
            if host.contains(['/', ' ']) {
                return Err(format!("hosts: {host:?} is not a host name"));
            }
            if !buckets.contains_key(bucket) && !crate::names::valid_bucket_name(bucket) {
                return Err(format!("hosts.{host:?}: {bucket:?} is not a bucket name"));
            }
        }
        if let Some(u) = &self.base_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(format!("base_url: {u:?} must start with http:// or https://"));
        }
        for k in &self.link_keys {
            if k.id.is_empty()
                || k.id.len() > 16
                || !k.id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
            {
                return Err(format!("link_keys: id {:?} must be 1-16 of a-z A-Z 0-9 _ -", k.id));
            }
            if k.secret.len() < 16 {
                return Err(format!("link_keys: the secret of {:?} must be at least 16 bytes", k.id));
            }
        }
        if self.redirect_ttl.0.is_zero() || self.redirect_ttl.0 > Duration::from_secs(7 * 86400) {
            return Err("redirect_ttl: must be between 1s and 7d (presigned URLs last at most a week)".into());
        }
        if self.login_ttl.0.is_zero() {
            return Err("login_ttl: must be more than 0s".into());
        }
        Ok(())
    }
}

/// Checks the access rules of one bucket.
pub(super) fn validate_rules(rules: &[RuleConfig]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for r in rules {
        if !seen.insert(r.prefix.as_str()) {
            return Err(format!("rules: prefix {:?} appears twice", r.prefix));
        }
        if r.access == Some(AccessMode::Password) && r.password.as_deref().is_none_or(str::is_empty) {
            return Err(format!("rules: prefix {:?} is password-protected but has no password", r.prefix));
        }
        if let Some(p) = r.password.as_deref().filter(|p| p.starts_with("$argon2"))
            && argon2::password_hash::PasswordHash::new(p).map_or(true, |h| h.hash.is_none() || h.salt.is_none())
        {
            return Err(format!("rules: the password of {:?} looks like an argon2 hash but does not parse", r.prefix));
        }
        if r.cache_control.as_deref().is_some_and(|c| c.contains(['\r', '\n'])) {
            return Err(format!("rules: cache_control of {:?} has a line break", r.prefix));
        }
    }
    Ok(())
}
