//! `[buckets.NAME]`: where a configured bucket's objects live (its stores, in read order),
//! how its writes are acknowledged, and how it reads (hot tier, origin).

use super::web::{AccessMode, RuleConfig, ServeMode};
use super::{FillMode, WriteMode, yes};
use serde::Deserialize;

/// A bucket declared in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    /// Name of the backend that holds this bucket's objects; shorthand for a one-element
    /// `stores`. Give `backend` or `stores`, not both.
    #[serde(default)]
    pub backend: String,
    /// Backends that each hold every object of this bucket (replicas), in read order.
    /// Default: `[backend]`.
    #[serde(default)]
    pub stores: Vec<String>,
    /// When writes are acknowledged: "through" or "back". Default "through".
    #[serde(default)]
    pub write_mode: WriteMode,
    /// Never fall back to the journal: a write that `min_durable` stores did not take gets
    /// 503. Only with `write_mode = "through"`. Default false.
    #[serde(default)]
    pub strict: bool,
    /// Stores that must hold a write before a through-mode acknowledgement; the rest are
    /// written from the journal. Default: all of `stores`.
    #[serde(default)]
    pub min_durable: Option<usize>,
    /// Where the bucket's keys live inside the backend: "" maps the bucket onto the
    /// backend's root, "photos/" onto that folder. Default "<bucket name>/".
    #[serde(default)]
    pub prefix: Option<String>,
    /// Whether reads of this bucket go through the hot tier. Default true.
    #[serde(default = "yes")]
    pub hot: bool,
    /// Fill mode for this bucket ("stream" or "store-and-forward"). Default: `hot.fill`.
    #[serde(default)]
    pub fill: Option<FillMode>,
    /// A backend to migrate from: a read of a key this bucket lacks is copied in from
    /// there first (copy-on-read). Default: none.
    #[serde(default)]
    pub origin: Option<String>,
    /// Where the keys live in the origin. Default: this bucket's `prefix`.
    #[serde(default)]
    pub origin_prefix: Option<String>,
    /// Who may read over plain HTTP: "private", "public-read", "password" or "signed"
    /// (the rule for prefix ""). Default "private".
    #[serde(default)]
    pub access: Option<AccessMode>,
    /// Password for `access = "password"` (plain text or an argon2 PHC string). Default none.
    #[serde(default)]
    pub password: Option<String>,
    /// Cache-Control for anonymous readers of the bucket's public objects. Default: the
    /// object's own, else `web.public_cache_control`.
    #[serde(default)]
    pub cache_control: Option<String>,
    /// How anonymous GETs are served: "proxy", "redirect" or "direct". Default "proxy".
    #[serde(default)]
    pub serve: ServeMode,
    /// Access rules for prefixes of the bucket (`[[buckets.NAME.rules]]`). Default none.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

impl BucketConfig {
    /// Fills `stores` from `backend` (or `backend` from the first store).
    pub(super) fn resolve_stores(&mut self) -> Result<(), String> {
        match (self.backend.is_empty(), self.stores.is_empty()) {
            (true, true) => Err("backend: give `backend` or `stores`".into()),
            (false, true) => {
                self.stores = vec![self.backend.clone()];
                Ok(())
            }
            (true, false) => {
                self.backend = self.stores[0].clone();
                Ok(())
            }
            (false, false) if self.stores[0] == self.backend => Ok(()),
            (false, false) => Err("stores: give `backend` or `stores`, not both".into()),
        }
    }

    /// The access rules, with the bucket-level fields as the rule for prefix "".
    pub fn access_rules(&self) -> Vec<RuleConfig> {
        let mut rules = self.rules.clone();
        if self.access.is_some() || self.password.is_some() || self.cache_control.is_some() {
            rules.push(RuleConfig {
                prefix: String::new(),
                access: self.access,
                password: self.password.clone(),
                cache_control: self.cache_control.clone(),
            });
        }
        rules
    }

    /// Checks the access settings.
    pub(super) fn validate_access(&self) -> Result<(), String> {
        let top = self.access.is_some() || self.password.is_some() || self.cache_control.is_some();
        if top && self.rules.iter().any(|r| r.prefix.is_empty()) {
            return Err("rules: a rule for prefix \"\" repeats the bucket's own access fields".into());
        }
        super::web::validate_rules(&self.access_rules())
    }

    /// Checks the write settings against `stores`.
    pub(super) fn validate_writes(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = self.stores.iter().find(|s| !seen.insert(s.as_str())) {
            return Err(format!("stores: {dup:?} is named twice"));
        }
        if let Some(n) = self.min_durable
            && (n == 0 || n > self.stores.len())
        {
            return Err(format!("min_durable: must be between 1 and {} (the number of stores)", self.stores.len()));
        }
        if self.strict && self.write_mode == WriteMode::Back {
            return Err("strict: only applies to write_mode = \"through\"".into());
        }
        Ok(())
    }
}
