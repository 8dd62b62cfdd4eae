//! The keyring: every access key this node accepts, held in memory for the signature
//! checks, and the admin operations that change keys and grants.
//!
//! The config's key pair (`[credentials]`, `STRATA_ACCESS_KEY`, `credentials.json`) is the
//! root key: every right, never in the catalog, changed only in the config. Every other key
//! lives in the catalog with its grants; a node rereads them every `auth.refresh` (the
//! `key-refresh` worker), at once after a change it made itself, and on a lookup of an id
//! it does not know or a request the loaded grants refuse (at most every [`MISS_REREAD`]),
//! so a key or grant made on another node works at once and a disabled one stops within
//! `auth.refresh`. What it must not do: check
//! signatures (s3s does) or map operations to rights (`api::s3::grants`).

use super::rights::{Grant, Need, Rights};
use super::seal::Seal;
use crate::catalog::{AuditRow, Catalog, GrantRow, KeyRow};
use crate::clock::now_ms;
use crate::config::{Config, Credentials};
use crate::error::{Error, ErrorKind, Result};
use arc_swap::ArcSwap;
use ipnet::IpNet;
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Least time between two rereads caused by unknown key ids (so random ids cannot make a
/// node query the catalog for every request).
const MISS_REREAD: Duration = Duration::from_millis(250);

/// Who a request is, once its key is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The access key id.
    pub id: String,
    /// The config's key: every right.
    pub root: bool,
    /// What the key may do.
    pub grants: Vec<Grant>,
    /// Networks the key may be used from; empty for anywhere.
    pub sources: Vec<IpNet>,
}

impl Principal {
    /// Whether the key may do what `need` names.
    pub fn allows(&self, need: Need<'_>) -> bool {
        self.root || super::rights::allows(&self.grants, need)
    }

    /// Whether the key may be used from `ip`.
    pub fn reaches_from(&self, ip: IpAddr) -> bool {
        self.sources.is_empty() || self.sources.iter().any(|n| n.contains(&ip))
    }
}

/// The secrets a key is valid with now: the current one, and during a rotation's grace
/// period the one before.
#[derive(Clone)]
pub struct Secrets {
    /// The current secret.
    pub current: String,
    /// The secret before the last rotation, while its grace period lasts.
    pub previous: Option<String>,
}

struct Entry {
    principal: Arc<Principal>,
    secret: String,
    previous: Option<(String, i64)>,
    expires_ms: Option<i64>,
    enabled: bool,
}

/// A key as the admin API shows it: never its secrets.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    /// Access key id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Made at, ms since the epoch.
    pub created_ms: i64,
    /// Expires at, ms since the epoch.
    pub expires_ms: Option<i64>,
    /// Enabled or disabled.
    pub enabled: bool,
    /// Source networks; empty for anywhere.
    pub sources: Vec<String>,
    /// End of the previous secret's grace period, while it lasts.
    pub previous_until_ms: Option<i64>,
    /// Its grants.
    pub grants: Vec<GrantView>,
}

/// A grant as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GrantView {
    /// The key.
    pub key: String,
    /// Bucket or `*`.
    pub bucket: String,
    /// Prefix.
    pub prefix: String,
    /// Rights, comma-separated.
    pub rights: String,
}

/// What `create` makes.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    /// Name.
    pub name: String,
    /// Lifetime from now.
    pub expires_in: Option<Duration>,
    /// Source networks (CIDR).
    pub sources: Vec<String>,
}

/// The keys this node accepts; cheap to clone.
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Inner>,
}

struct Inner {
    root: Credentials,
    /// The root key as the checks see it, built once.
    root_principal: Arc<Principal>,
    catalog: Catalog,
    seal: Seal,
    /// Whether the seal key may seal new keys: on a shared catalog only a configured one
    /// (every node must hold it).
    may_seal: bool,
    refresh: Duration,
    keys: ArcSwap<HashMap<String, Entry>>,
    reread: tokio::sync::Mutex<Instant>,
}

impl Keyring {
    /// The keyring of `config` over `catalog`: the root key, the seal key (the config's or
    /// the data directory's), checked against the catalog's probe, and the stored keys.
    pub async fn open(config: &Config, catalog: Catalog) -> Result<Keyring> {
        let root = super::load_or_create(config)?;
        let configured =
            config.auth.seal_key_bytes().map_err(|m| Error::new(ErrorKind::Config, format!("auth.{m}")))?;
        let seal = match &configured {
            Some(bytes) => Seal::new(bytes, "auth.seal_key")?,
            None => Seal::from_data_dir(config.data_dir())?,
        };
        if let Some(probe) = catalog.read_seal_probe().await?
            && !seal.opens_probe(&probe)
        {
            return Err(other_seal(&seal));
        }
        let may_seal = configured.is_some() || !catalog.is_shared();
        let root_principal =
            Arc::new(Principal { id: root.access_key.clone(), root: true, grants: Vec::new(), sources: Vec::new() });
        let inner = Inner {
            root,
            root_principal,
            catalog,
            seal,
            may_seal,
            refresh: config.auth.refresh.0,
            keys: ArcSwap::from_pointee(HashMap::new()),
            // So the first unknown id rereads at once.
            reread: tokio::sync::Mutex::new(Instant::now().checked_sub(MISS_REREAD).unwrap_or_else(Instant::now)),
        };
        let ring = Keyring { inner: Arc::new(inner) };
        ring.reload().await?;
        Ok(ring)
    }

    /// The root key pair (the peers' and the CLI's).
    pub fn root(&self) -> &Credentials {
        &self.inner.root
    }

    /// How often the keys are reread.
    pub fn refresh_interval(&self) -> Duration {
        self.inner.refresh
    }

    /// Rereads every key and grant from the catalog. A key whose secret does not open is
    /// left out and logged (it was sealed with another seal key).
    pub async fn reload(&self) -> Result<()> {
        let (rows, grants) = (self.inner.catalog.access_keys().await?, self.inner.catalog.key_grants().await?);
        let mut by_key: HashMap<String, Vec<Grant>> = HashMap::new();
        for g in grants {
            // A right spelled by a newer node is dropped: grants only add.
            let rights = Rights::parse(&g.rights).unwrap_or_default();
            by_key.entry(g.key_id).or_default().push(Grant { bucket: g.bucket, prefix: g.prefix, rights });
        }
        let mut keys = HashMap::with_capacity(rows.len());
        for row in rows {
            let Some(entry) = self.entry_of(&row, by_key.remove(&row.id).unwrap_or_default()) else {
                ::metrics::counter!("strata_auth_key_errors_total").increment(1);
                tracing::error!(key = %row.id, "an access key's secret does not open with this node's seal key; the key is refused here");
                continue;
            };
            keys.insert(row.id, entry);
        }
        self.inner.keys.store(Arc::new(keys));
        Ok(())
    }

    fn entry_of(&self, row: &KeyRow, grants: Vec<Grant>) -> Option<Entry> {
        let open = |s: &str| self.inner.seal.open(&row.id, s).and_then(|b| String::from_utf8(b).ok());
        let secret = open(&row.secret_sealed)?;
        let previous = match (&row.previous_sealed, row.previous_until_ms) {
            (Some(s), Some(until)) => Some((open(s)?, until)),
            _ => None,
        };
        let sources = parse_sources(&row.sources).ok()?;
        let principal = Arc::new(Principal { id: row.id.clone(), root: false, grants, sources });
        Some(Entry { principal, secret, previous, expires_ms: row.expires_ms, enabled: row.enabled })
    }

    /// The key `id` and the secrets it is valid with now, or `None` when it is unknown,
    /// disabled or expired. An unknown id makes the node reread the catalog first (see
    /// the module's header).
    pub async fn find(&self, id: &str) -> Option<(Arc<Principal>, Secrets)> {
        if let Some(found) = self.find_loaded(id) {
            return Some(found);
        }
        if self.inner.root.access_key == id {
            return None;
        }
        self.reread_soon().await;
        self.find_loaded(id)
    }

    /// Rereads the keys unless a reread of this kind ran in the last [`MISS_REREAD`]: for
    /// an unknown key id, or a request its key's loaded grants refuse (a grant just made
    /// on another node).
    pub async fn reread_soon(&self) {
        let mut last = self.inner.reread.lock().await;
        if last.elapsed() >= MISS_REREAD {
            *last = Instant::now();
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "rereading access keys failed");
            }
        }
    }

    /// As [`Keyring::find`], from what is loaded.
    fn find_loaded(&self, id: &str) -> Option<(Arc<Principal>, Secrets)> {
        self.with_loaded(id, |p, current, previous| {
            let secrets = Secrets { current: current.to_owned(), previous: previous.map(str::to_owned) };
            (p.clone(), secrets)
        })
    }

    /// The key `id` while it is valid, from what is loaded; no secret is copied (the
    /// access check of every signed request).
    pub fn principal(&self, id: &str) -> Option<Arc<Principal>> {
        self.with_loaded(id, |p, _, _| p.clone())
    }

    /// `f` of key `id`, its current secret and its previous one while its grace period
    /// lasts, from what is loaded, copying no secret (the ready path's signature check);
    /// `None` when the key is unknown, disabled or expired.
    pub fn with_loaded<T>(&self, id: &str, f: impl FnOnce(&Arc<Principal>, &str, Option<&str>) -> T) -> Option<T> {
        if self.inner.root.access_key == id {
            return Some(f(&self.inner.root_principal, &self.inner.root.secret_key, None));
        }
        let keys = self.inner.keys.load();
        let e = keys.get(id)?;
        let now = now_ms();
        if !e.enabled || e.expires_ms.is_some_and(|t| t <= now) {
            return None;
        }
        let previous = e.previous.as_ref().filter(|(_, until)| *until > now).map(|(s, _)| s.as_str());
        Some(f(&e.principal, &e.secret, previous))
    }

    /// Whether key `id` is valid and in a rotation's grace period (two secrets), from what
    /// is loaded; cheap enough for every request.
    pub fn in_grace(&self, id: &str) -> bool {
        self.with_loaded(id, |_, _, previous| previous.is_some()).unwrap_or(false)
    }

    /// The key of a Basic-auth pair (`user` the key id, `pass` a secret it is valid with),
    /// compared in constant time.
    pub fn basic(&self, user: &str, pass: &str) -> Option<Arc<Principal>> {
        let eq = |a: &str| super::constant_time_eq(a.as_bytes(), pass.as_bytes());
        // Both secrets are compared, whatever the first says.
        let (p, ok) =
            self.with_loaded(user, |p, current, previous| (p.clone(), eq(current) | previous.is_some_and(eq)))?;
        ok.then_some(p)
    }

    /// The ids of the stored keys this node knows (for bounded per-key metrics).
    pub fn knows(&self, id: &str) -> bool {
        self.inner.root.access_key == id || self.inner.keys.load().contains_key(id)
    }
}

fn other_seal(seal: &Seal) -> Error {
    Error::new(
        ErrorKind::Config,
        format!(
            "the catalog's access keys were sealed with another seal key than this node's ({}); \
             set auth.seal_key (or STRATA_SEAL_KEY) to the same value on every node",
            seal.origin
        ),
    )
}

/// Parses comma-separated CIDRs (a bare address is one host).
pub fn parse_sources(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{s:?} is not a network (CIDR such as 10.0.0.0/8) or an address"))
        })
        .collect()
}

/// The admin operations: each writes the catalog with its audit row, logs it, then
/// rereads, so the change holds on this node at once (`admin.rs`).
mod admin;

/// An audit row of `actor` doing `action` to `subject`.
fn audit(actor: &str, action: &str, subject: &str, detail: String) -> AuditRow {
    tracing::info!(target: "strata::audit", actor, action, subject, detail = %detail, "access keys changed");
    AuditRow {
        at_ms: now_ms(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        subject: subject.to_owned(),
        detail,
    }
}

fn grant_view(g: &GrantRow) -> GrantView {
    GrantView { key: g.key_id.clone(), bucket: g.bucket.clone(), prefix: g.prefix.clone(), rights: g.rights.clone() }
}
