//! One resolved plan per bucket: everything strata decides about a bucket from its
//! configuration, worked out once at start.
//!
//! A [`BucketPlan`] holds a bucket's stores (replicas, in read order), when its writes are
//! acknowledged, where its keys live in the stores, whether it reads through the hot tier
//! and with which fill mode, the origin it migrates from, and its configured serving mode.
//! It owns the one mapping from a key to a store path ([`BucketPlan::path_of`]). [`Plans`]
//! holds the plans of the configured buckets, the plan of any other bucket (one created
//! over S3 lives on the default backend alone), and the host names that name buckets.
//! `Plans` is one live handle shared by every holder: a config reload swaps the whole set
//! at once ([`Plans::replace`]), and a request that already took a plan keeps it.
//!
//! This module decides nothing at run time and touches no store: the tier, the journal,
//! the scrub and the front ends read plans. Runtime access rules and serving modes stay
//! the policy's (they change without a restart); a plan gives their configured defaults.

use crate::catalog::BucketRecord;
use crate::config::{Config, FillMode, ServeMode, WriteMode};
use std::collections::HashMap;
use std::sync::Arc;

/// Where a bucket migrates from: a read of a key the bucket lacks copies it in first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The backend to copy from.
    pub store: String,
    /// Where the bucket's keys live in it.
    pub prefix: String,
}

impl Origin {
    /// The path of `key` in the origin.
    pub fn path_of(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The key of an origin path under [`Origin::prefix`].
    pub fn key_of<'a>(&self, path: &'a str) -> Option<&'a str> {
        path.strip_prefix(self.prefix.as_str())
    }
}

/// Everything resolved about one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketPlan {
    /// The bucket's name.
    pub name: String,
    /// Where its keys live in each store ("" or ending in `/`).
    pub prefix: String,
    /// Backends that each hold every object (replicas), in read order; never empty.
    pub stores: Vec<String>,
    /// Through or back.
    pub write_mode: WriteMode,
    /// Never acknowledge from the journal.
    pub strict: bool,
    /// Stores that must hold a through-mode write before it is acknowledged.
    pub min_durable: usize,
    /// The fill mode of its hot-tier reads, or `None` when it bypasses the hot tier.
    pub hot: Option<FillMode>,
    /// The backend it migrates from on read, if any.
    pub origin: Option<Origin>,
    /// How anonymous GETs are served, until a runtime rule says otherwise.
    pub serve: ServeMode,
}

impl BucketPlan {
    /// The path of `key` in every store of the bucket. The key must have passed
    /// [`crate::names::validate_key`].
    pub fn path_of(&self, key: &str) -> String {
        crate::names::store_path(&self.prefix, key)
    }

    /// The key of a store path under the bucket's prefix, or `None` for a path outside it.
    pub fn key_of<'a>(&self, path: &'a str) -> Option<&'a str> {
        path.strip_prefix(self.prefix.as_str())
    }

    /// Whether more than one store holds the bucket (the scrub checks these).
    pub fn is_replicated(&self) -> bool {
        self.stores.len() > 1
    }
}

/// The host names that name a bucket by themselves: `bucket.<domain>` for each of
/// `web.domains`, and the custom domains of `web.hosts`. Any other host is path style.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    domains: Vec<String>,
    custom: HashMap<String, String>,
}

impl Hosts {
    /// Hosts from base domains and custom host → bucket pairs (any case).
    pub fn new<'a>(
        domains: impl IntoIterator<Item = &'a String>,
        custom: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Self {
        Self {
            domains: domains.into_iter().map(|d| d.to_ascii_lowercase()).collect(),
            custom: custom.into_iter().map(|(h, b)| (h.to_ascii_lowercase(), b.clone())).collect(),
        }
    }

    /// Whether no host names a bucket (every request is path style).
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.custom.is_empty()
    }

    /// The bucket a `Host` header names by itself (custom domain or virtual host).
    pub fn bucket_of(&self, host: &str) -> Option<String> {
        let host = host_name(host);
        if let Some(b) = self.custom.get(&host) {
            return Some(b.clone());
        }
        self.domains.iter().find_map(|d| {
            let b = host.strip_suffix(d.as_str())?.strip_suffix('.')?;
            crate::names::valid_bucket_name(b).then(|| b.to_owned())
        })
    }
}

/// A host header without its port, lowercased.
fn host_name(host: &str) -> String {
    let h = if host.starts_with('[') {
        host.split(']').next().map(|s| format!("{s}]")).unwrap_or_default()
    } else {
        host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|c| c.is_ascii_digit())).map_or(host, |(h, _)| h).to_owned()
    };
    h.to_ascii_lowercase()
}

/// The plans of one process: a live handle, cheap to clone; every clone sees a reload.
#[derive(Debug, Clone, Default)]
pub struct Plans {
    set: Arc<arc_swap::ArcSwap<PlanSet>>,
}

/// One config's plans.
#[derive(Debug, Default)]
struct PlanSet {
    configured: HashMap<String, Arc<BucketPlan>>,
    default_fill: FillMode,
    hosts: Arc<Hosts>,
}

impl Plans {
    /// Resolves every configured bucket of a validated `config`.
    pub fn from_config(config: &Config) -> Self {
        Self { set: Arc::new(arc_swap::ArcSwap::from_pointee(PlanSet::from_config(config))) }
    }

    /// No configured bucket, only host names (the router's and gateway's tests).
    pub fn from_hosts(hosts: Hosts) -> Self {
        let set = PlanSet { hosts: Arc::new(hosts), ..PlanSet::default() };
        Self { set: Arc::new(arc_swap::ArcSwap::from_pointee(set)) }
    }

    /// Replaces every plan with those of `config` (a reload), for every holder at once.
    pub fn replace(&self, config: &Config) {
        self.set.store(Arc::new(PlanSet::from_config(config)));
    }

    /// The plan of the bucket whose catalog row is `rec`. The row's prefix and backend are
    /// the truth for where its objects are (a bucket created over S3 has no config).
    pub fn of(&self, rec: &BucketRecord) -> Arc<BucketPlan> {
        self.set.load().of(rec)
    }

    /// The plan of configured bucket `name`, if it is one.
    pub fn configured(&self, name: &str) -> Option<Arc<BucketPlan>> {
        self.set.load().configured.get(name).cloned()
    }

    /// The configured buckets with more than one store.
    pub fn replicated(&self) -> Vec<Arc<BucketPlan>> {
        self.set.load().configured.values().filter(|p| p.is_replicated()).cloned().collect()
    }

    /// The host names that name buckets.
    pub fn hosts(&self) -> Arc<Hosts> {
        self.set.load().hosts.clone()
    }
}

impl PlanSet {
    fn from_config(config: &Config) -> Self {
        let configured = config
            .buckets
            .iter()
            .map(|(name, b)| {
                let prefix = config.bucket_prefix(name);
                let origin = b
                    .origin
                    .clone()
                    .map(|store| Origin { store, prefix: b.origin_prefix.clone().unwrap_or_else(|| prefix.clone()) });
                let plan = BucketPlan {
                    name: name.clone(),
                    stores: b.stores.clone(),
                    write_mode: b.write_mode,
                    strict: b.strict,
                    min_durable: b.min_durable.unwrap_or(b.stores.len()),
                    hot: b.hot.then(|| b.fill.unwrap_or(config.hot.fill)),
                    origin,
                    serve: b.serve,
                    prefix,
                };
                (name.clone(), Arc::new(plan))
            })
            .collect();
        let hosts = Arc::new(Hosts::new(&config.web.domains, &config.web.hosts));
        Self { configured, default_fill: config.hot.fill, hosts }
    }

    fn of(&self, rec: &BucketRecord) -> Arc<BucketPlan> {
        match self.configured.get(&rec.name) {
            Some(p) if p.prefix == rec.prefix => p.clone(),
            Some(p) => Arc::new(BucketPlan { prefix: rec.prefix.clone(), ..(**p).clone() }),
            None => Arc::new(BucketPlan {
                name: rec.name.clone(),
                prefix: rec.prefix.clone(),
                stores: vec![rec.backend.clone()],
                write_mode: WriteMode::Through,
                strict: false,
                min_durable: 1,
                hot: Some(self.default_fill),
                origin: None,
                serve: ServeMode::default(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, backend: &str, prefix: &str) -> BucketRecord {
        BucketRecord { name: name.into(), backend: backend.into(), prefix: prefix.into(), created_ms: 0 }
    }

    #[test]
    fn configured_and_runtime_buckets() {
        let toml = r#"
[backends.a]
type = "fs"
root = "/tmp/a"
[backends.b]
type = "fs"
root = "/tmp/b"
[backends.old]
type = "fs"
root = "/tmp/old"
[hot]
fill = "store-and-forward"
[web]
domains = ["media.test"]
hosts = { "CDN.example.com" = "pics" }
[buckets.pics]
stores = ["a", "b"]
min_durable = 1
prefix = ""
origin = "old"
serve = "redirect"
[buckets.cold]
backend = "a"
hot = false
"#;
        let c = Config::parse(toml).unwrap().resolve(&Default::default(), &|_: &str| None).unwrap();
        let plans = Plans::from_config(&c);
        let pics = plans.of(&rec("pics", "a", ""));
        assert_eq!(pics.stores, ["a", "b"]);
        assert_eq!((pics.min_durable, pics.path_of("x/y.jpg")), (1, "x/y.jpg".to_owned()));
        assert_eq!(pics.origin, Some(Origin { store: "old".into(), prefix: String::new() }));
        assert_eq!((pics.hot, pics.serve), (Some(FillMode::StoreAndForward), ServeMode::Redirect));
        assert_eq!(plans.of(&rec("cold", "a", "cold/")).hot, None);
        let made = plans.of(&rec("made", "b", "made/"));
        assert_eq!(
            (made.stores.clone(), made.path_of("k"), made.min_durable),
            (vec!["b".to_owned()], "made/k".into(), 1)
        );
        assert_eq!(made.key_of("made/k"), Some("k"));
        assert_eq!(plans.replicated().iter().map(|p| p.name.clone()).collect::<Vec<_>>(), ["pics"]);
        // The catalog row's prefix wins over the config's.
        assert_eq!(plans.of(&rec("pics", "a", "moved/")).path_of("k"), "moved/k");
        let h = plans.hosts();
        assert_eq!(h.bucket_of("cdn.example.com:443").as_deref(), Some("pics"));
        assert_eq!(h.bucket_of("Pics.Media.Test").as_deref(), Some("pics"));
        assert_eq!(h.bucket_of("media.test"), None);
        assert_eq!(h.bucket_of("x_y.media.test"), None);
        assert_eq!(host_name("[::1]:80"), "[::1]");
    }
}
