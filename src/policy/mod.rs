//! Who may read what over plain HTTP, and how it is served.
//!
//! Owns the access rules (per bucket and key prefix: private, public-read, password,
//! signed), the serving mode per bucket (proxy, redirect, direct), the Cache-Control a
//! rule asks for, signed links and login cookies. Rules come from the config and from the
//! catalog's `access_rules` table (set at runtime); a catalog row overrides the config's
//! rule of the same prefix field by field. Every node rereads the table every
//! [`REFRESH`], and at once after a change it made itself.
//!
//! It must not read objects or speak HTTP: `api::web` asks it for a [`Decision`] and acts.

pub mod cookie;
pub mod link;
pub mod password;

use crate::catalog::{AccessRow, Catalog};
use crate::config::{AccessMode, Config, ServeMode};
use crate::error::{Error, ErrorKind, Result};
use crate::plan::Plans;
use link::LinkKeys;
use password::{Checker, Secret};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often each node rereads runtime rules that other nodes may have changed.
pub const REFRESH: Duration = Duration::from_secs(2);

/// One merged rule.
#[derive(Debug, Clone, Default)]
struct Rule {
    prefix: String,
    access: Option<AccessMode>,
    password: Option<Secret>,
    cache_control: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct BucketRules {
    /// Longest prefix first.
    rules: Vec<Rule>,
    serve: ServeMode,
}

/// What applies to one key.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Access mode.
    pub access: AccessMode,
    /// The prefix of the rule that set the access mode (the scope of a login).
    pub scope: String,
    /// The password of a password rule.
    pub password: Option<Secret>,
    /// Cache-Control a rule asks for (already expanded).
    pub cache_control: Option<String>,
}

/// A rule as shown to operators.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleView {
    /// Bucket.
    pub bucket: String,
    /// Key prefix.
    pub prefix: String,
    /// Access mode, when the rule sets one.
    pub access: Option<AccessMode>,
    /// Whether it carries a password.
    pub password: bool,
    /// Cache-Control, when the rule sets one.
    pub cache_control: Option<String>,
    /// Whether a runtime row (catalog) changes it.
    pub runtime: bool,
}

/// A runtime change to one rule; `None` fields are left as they are.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleChange {
    /// New access mode.
    pub access: Option<AccessMode>,
    /// New password, in plain text (stored as an argon2 hash).
    pub password: Option<String>,
    /// New Cache-Control.
    pub cache_control: Option<String>,
    /// New serving mode (prefix "" only).
    pub serve: Option<ServeMode>,
}

/// The access rules of every bucket; cheap to clone.
#[derive(Clone)]
pub struct Policy {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Catalog,
    /// What the config says; a reload replaces it whole ([`Policy::reconfigure`]).
    config: RwLock<Arc<Configured>>,
    table: RwLock<Arc<HashMap<String, BucketRules>>>,
    runtime: RwLock<Vec<AccessRow>>,
    checker: Checker,
}

/// The rules and keys of one config.
struct Configured {
    rules: HashMap<String, BucketRules>,
    links: Arc<LinkKeys>,
    cookie_key: Arc<[u8]>,
}

impl Configured {
    fn new(config: &Config, plans: &Plans, links: LinkKeys) -> Configured {
        let mut rules = HashMap::new();
        for (name, b) in &config.buckets {
            let list = b
                .access_rules()
                .into_iter()
                .map(|r| Rule {
                    prefix: r.prefix,
                    access: r.access,
                    password: r.password.as_deref().map(Secret::from_config),
                    cache_control: r.cache_control.as_deref().map(expand_cache_control),
                })
                .collect();
            let serve = plans.configured(name).map_or(ServeMode::default(), |p| p.serve);
            rules.insert(name.clone(), BucketRules { rules: list, serve });
        }
        let cookie_key = links.derive("login-cookie").into();
        Configured { rules, links: Arc::new(links), cookie_key }
    }
}

/// "immutable" is shorthand for a year-long immutable public cache.
pub fn expand_cache_control(cc: &str) -> String {
    if cc == "immutable" { "public, max-age=31536000, immutable".to_owned() } else { cc.to_owned() }
}

impl Policy {
    /// The policy of `config`'s buckets (their serving modes as `plans` resolved them)
    /// plus the catalog's runtime rules.
    pub async fn load(config: &Config, plans: &Plans, catalog: Catalog, links: LinkKeys) -> Result<Policy> {
        let inner = Inner {
            catalog,
            config: RwLock::new(Arc::new(Configured::new(config, plans, links))),
            table: RwLock::default(),
            runtime: RwLock::default(),
            checker: Checker::default(),
        };
        let p = Policy { inner: Arc::new(inner) };
        p.reload().await?;
        Ok(p)
    }

    /// Takes the rules and link keys of a reloaded `config` (its plans already replaced)
    /// and merges the runtime rules over them again.
    /// The catalog is read first: when that fails, nothing changes.
    pub async fn reconfigure(&self, config: &Config, plans: &Plans, links: LinkKeys) -> Result<()> {
        let rows = self.inner.catalog.access_rules().await?;
        let configured = Arc::new(Configured::new(config, plans, links));
        let table = merge(&configured.rules, &rows);
        *self.inner.config.write().unwrap_or_else(|p| p.into_inner()) = configured;
        *self.inner.runtime.write().unwrap_or_else(|p| p.into_inner()) = rows;
        *self.inner.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        Ok(())
    }

    fn configured(&self) -> Arc<Configured> {
        self.inner.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Rereads the runtime rules from the catalog.
    pub async fn reload(&self) -> Result<()> {
        let rows = self.inner.catalog.access_rules().await?;
        let table = merge(&self.configured().rules, &rows);
        *self.inner.runtime.write().unwrap_or_else(|p| p.into_inner()) = rows;
        *self.inner.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        Ok(())
    }

    fn table(&self) -> Arc<HashMap<String, BucketRules>> {
        self.inner.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The rule that applies to `bucket`/`key`.
    pub fn decide(&self, bucket: &str, key: &str) -> Decision {
        let table = self.table();
        let rules = table.get(bucket).map(|b| b.rules.as_slice()).unwrap_or_default();
        let mut d = Decision { access: AccessMode::Private, scope: String::new(), password: None, cache_control: None };
        let mut found_access = false;
        for r in rules.iter().filter(|r| key.starts_with(&r.prefix)) {
            if !found_access && let Some(a) = r.access {
                (d.access, d.scope, found_access) = (a, r.prefix.clone(), true);
            }
            if d.password.is_none() && found_access {
                d.password.clone_from(&r.password);
            }
            if d.cache_control.is_none() {
                d.cache_control.clone_from(&r.cache_control);
            }
        }
        d
    }

    /// The serving mode of `bucket`.
    pub fn serve_mode(&self, bucket: &str) -> ServeMode {
        self.table().get(bucket).map(|b| b.serve).unwrap_or_default()
    }

    /// The link keys.
    pub fn links(&self) -> Arc<LinkKeys> {
        self.configured().links.clone()
    }

    /// The key that signs login cookies.
    pub fn cookie_key(&self) -> Arc<[u8]> {
        self.configured().cookie_key.clone()
    }

    /// Whether `candidate` is the password of `d`.
    pub fn check_password(&self, d: &Decision, candidate: &str) -> bool {
        d.password.as_ref().is_some_and(|s| self.inner.checker.check(s, candidate))
    }

    /// Every rule, config and runtime, for operators.
    pub fn rules(&self) -> Vec<RuleView> {
        let runtime = self.inner.runtime.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = Vec::new();
        let table = self.table();
        let mut names: Vec<_> = table.keys().cloned().collect();
        names.sort();
        for b in names {
            for r in table[&b].rules.iter().rev() {
                out.push(RuleView {
                    bucket: b.clone(),
                    prefix: r.prefix.clone(),
                    access: r.access,
                    password: r.password.is_some(),
                    cache_control: r.cache_control.clone(),
                    runtime: runtime.iter().any(|x| x.bucket == b && x.prefix == r.prefix),
                });
            }
        }
        out
    }

    /// The serving mode of every bucket that has rules.
    pub fn serve_modes(&self) -> Vec<(String, ServeMode)> {
        let mut v: Vec<_> = self.table().iter().map(|(b, r)| (b.clone(), r.serve)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Changes the runtime rule of `bucket`/`prefix` (stored in the catalog, so it outlives
    /// a restart and reaches every node).
    pub async fn change(&self, bucket: &str, prefix: &str, c: RuleChange) -> Result<()> {
        if !crate::names::valid_bucket_name(bucket) {
            return Err(Error::new(ErrorKind::InvalidInput, format!("{bucket:?} is not a bucket name")));
        }
        if prefix.starts_with('/') || prefix.len() > crate::names::MAX_KEY_LEN {
            return Err(Error::new(ErrorKind::InvalidInput, "the prefix must not start with \"/\" (and fit a key)"));
        }
        if c.serve.is_some() && !prefix.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the serving mode is set for a whole bucket (prefix \"\")",
            ));
        }
        if c.cache_control.as_deref().is_some_and(|v| v.contains(['\r', '\n'])) {
            return Err(Error::new(ErrorKind::InvalidInput, "cache_control must be one line"));
        }
        let current = self.inner.runtime.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut row = current.into_iter().find(|r| r.bucket == bucket && r.prefix == prefix).unwrap_or_else(|| {
            AccessRow { bucket: bucket.to_owned(), prefix: prefix.to_owned(), ..Default::default() }
        });
        if let Some(a) = c.access {
            row.access = Some(a.as_str().to_owned());
        }
        if let Some(p) = c.password {
            row.password_hash = Some(password::hash(&p)?);
        }
        if let Some(cc) = c.cache_control {
            row.cache_control = Some(cc);
        }
        if let Some(s) = c.serve {
            row.serve = Some(s.as_str().to_owned());
        }
        row.updated_ms = crate::clock::now_ms();
        self.inner.catalog.put_access_rule(&row).await?;
        self.reload().await?;
        let d = self.decide(bucket, prefix);
        if d.access == AccessMode::Password && d.password.is_none() {
            tracing::warn!(bucket, prefix, "password access without a password: nobody can log in");
        }
        Ok(())
    }

    /// Drops the runtime rule of `bucket`/`prefix` (the config's applies again).
    pub async fn clear(&self, bucket: &str, prefix: &str) -> Result<bool> {
        let gone = self.inner.catalog.delete_access_rule(bucket, prefix).await?;
        self.reload().await?;
        Ok(gone)
    }
}

/// Config rules with the catalog's rows laid over them.
fn merge(config: &HashMap<String, BucketRules>, rows: &[AccessRow]) -> HashMap<String, BucketRules> {
    let mut table = config.clone();
    for row in rows {
        let b = table.entry(row.bucket.clone()).or_default();
        let at = match b.rules.iter().position(|r| r.prefix == row.prefix) {
            Some(i) => i,
            None => {
                b.rules.push(Rule { prefix: row.prefix.clone(), ..Default::default() });
                b.rules.len() - 1
            }
        };
        let r = &mut b.rules[at];
        if let Some(a) = row.access.as_deref() {
            match AccessMode::parse(a) {
                Some(m) => r.access = Some(m),
                // An unknown mode from a newer node: the safe reading is private.
                None => r.access = Some(AccessMode::Private),
            }
        }
        if let Some(h) = &row.password_hash {
            r.password = Some(Secret::Hashed(h.clone()));
        }
        if let Some(cc) = &row.cache_control {
            r.cache_control = Some(expand_cache_control(cc));
        }
        if let Some(s) = row.serve.as_deref().and_then(ServeMode::parse) {
            b.serve = s;
        }
    }
    for b in table.values_mut() {
        b.rules.sort_by(|x, y| y.prefix.len().cmp(&x.prefix.len()).then_with(|| x.prefix.cmp(&y.prefix)));
    }
    table
}

/// Rereads runtime rules every [`REFRESH`] (other nodes' changes).
pub struct Refresh(pub Policy);

#[async_trait::async_trait]
impl crate::worker::Worker for Refresh {
    fn name(&self) -> &'static str {
        "policy-refresh"
    }

    fn interval(&self) -> Duration {
        REFRESH
    }

    async fn tick(&mut self) -> Result<()> {
        self.0.reload().await
    }
}

#[cfg(test)]
mod tests;
