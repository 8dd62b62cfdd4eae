//! Config reload (SIGHUP and `strata reload`; `docs/design/reload.md`): rereads the config
//! file, refuses a change that needs a restart, and applies the rest to the running
//! server. The live pieces are handles that every holder shares, so one swap reaches them
//! all: the buckets' plans and host names (`Plans`), the access rules and link keys
//! (`Policy`), the web settings (`Web`), the stores (`Backends`, new ones only),
//! read-only mode, the log filter, and the journal's and hot tier's bounds.
//!
//! Everything that can fail is done before the first swap: a config that does not parse
//! or validate, or that changes a field which needs a restart, changes nothing. A request
//! under way keeps what it already took. It must not restart anything itself.

use crate::api::web::{Web, WebSettings};
use crate::backend::Backends;
use crate::catalog::{BucketRecord, Catalog};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::plan::Plans;
use crate::policy::Policy;
use crate::tier::Tier;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// How the running server reads its config again: the same file, environment and
/// command-line overrides as at its start, resolved and validated.
pub type Source = Arc<dyn Fn() -> Result<Config> + Send + Sync>;

/// The running config and the live pieces a reload changes.
pub struct Reloader {
    /// `None` until the server's starter sets it (a server started from code has no file).
    source: std::sync::RwLock<Option<Source>>,
    current: tokio::sync::Mutex<Config>,
    generation: AtomicU64,
    plans: Plans,
    policy: Policy,
    web: Web,
    backends: Backends,
    catalog: Catalog,
    tier: Tier,
}

/// What one reload changed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The config generation now in force (1 at start).
    pub generation: u64,
    /// The fields that changed (`buckets.photos`, `web.domains`, …).
    pub changed: Vec<String>,
}

/// The parts of a running server a reload reaches.
pub struct Live {
    /// The buckets' plans.
    pub plans: Plans,
    /// The access rules.
    pub policy: Policy,
    /// The web front end (its settings).
    pub web: Web,
    /// The stores.
    pub backends: Backends,
    /// The catalog (new buckets are entered in it).
    pub catalog: Catalog,
    /// The tier (read-only mode).
    pub tier: Tier,
}

impl Reloader {
    /// A reloader of `running` (the config in force); it rereads once it has a source.
    pub fn new(running: Config, live: Live) -> Reloader {
        ::metrics::gauge!("strata_config_generation").set(1.0);
        ::metrics::gauge!("strata_config_reload_timestamp_seconds").set(crate::clock::now_ms() as f64 / 1000.0);
        for result in ["ok", "invalid", "refused"] {
            ::metrics::counter!("strata_config_reloads_total", "result" => result).increment(0);
        }
        let Live { plans, policy, web, backends, catalog, tier } = live;
        Reloader {
            source: std::sync::RwLock::new(None),
            current: tokio::sync::Mutex::new(running),
            generation: AtomicU64::new(1),
            plans,
            policy,
            web,
            backends,
            catalog,
            tier,
        }
    }

    /// Sets how the config is read again (`strata serve`: its file, environment and flags).
    pub fn set_source(&self, source: Source) {
        *self.source.write().unwrap_or_else(|p| p.into_inner()) = Some(source);
    }

    /// Rereads the config and applies it. `InvalidInput` (nothing changed) when it does not
    /// parse or validate, `Conflict` naming the field when it changes one that needs a
    /// restart. Reloads run one at a time.
    pub async fn reload(&self) -> Result<Report> {
        let mut current = self.current.lock().await;
        let source = self.source.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(source) = source else {
            return Err(Error::new(ErrorKind::Conflict, "this server has no config file to reread").public());
        };
        let new = match source() {
            Ok(c) => c,
            Err(e) => {
                return Err(self.failed("invalid", ErrorKind::InvalidInput, format!("the config is not valid: {e}")));
            }
        };
        if let Some(field) = needs_restart(&current, &new).into_iter().next() {
            let why = format!("{field}: needs a restart; the running config stays in force");
            return Err(self.failed("refused", ErrorKind::Conflict, why));
        }
        let changed = changed_live(&current, &new);
        // What can fail comes first: the link keys, the new stores, the new buckets' rows.
        let links = crate::auth::link_keys(&new, false)?;
        let stores = self.backends.add_new(&new)?;
        crate::telemetry::register(&stores);
        for (name, _) in new.buckets.iter().filter(|(n, _)| !current.buckets.contains_key(*n)) {
            let b = &new.buckets[name];
            let rec = BucketRecord {
                name: name.clone(),
                backend: b.backend.clone(),
                prefix: new.bucket_prefix(name),
                created_ms: crate::clock::now_ms(),
            };
            self.catalog.ensure_bucket(&rec).await?;
        }
        self.plans.replace(&new);
        self.policy.reconfigure(&new, &self.plans, links).await?;
        self.web.reconfigure(WebSettings::from_config(&new));
        if new.read_only != current.read_only {
            self.tier.set_read_only(new.read_only);
        }
        if new.log != current.log {
            crate::logging::set_filter(new.log.as_deref())?;
        }
        if (new.journal.max_size.0, new.journal.min_free.0) != (current.journal.max_size.0, current.journal.min_free.0)
        {
            self.tier.set_journal_limits(new.journal.max_size.0, new.journal.min_free.0);
        }
        if (new.hot.max_size.0, new.hot.min_free.0) != (current.hot.max_size.0, current.hot.min_free.0) {
            self.tier.set_hot_limits(new.hot.max_size.0, new.hot.min_free.0);
        }
        *current = new;
        let generation = self.generation.fetch_add(1, SeqCst) + 1;
        ::metrics::gauge!("strata_config_generation").set(generation as f64);
        ::metrics::gauge!("strata_config_reload_timestamp_seconds").set(crate::clock::now_ms() as f64 / 1000.0);
        ::metrics::counter!("strata_config_reloads_total", "result" => "ok").increment(1);
        tracing::info!(generation, ?changed, "config reloaded");
        Ok(Report { generation, changed })
    }

    fn failed(&self, result: &'static str, kind: ErrorKind, why: String) -> Error {
        ::metrics::counter!("strata_config_reloads_total", "result" => result).increment(1);
        tracing::error!(why, "config reload refused");
        Error::new(kind, why).public()
    }
}

/// Fields of otherwise fixed sections that a reload applies.
const LIVE: [&str; 4] = ["journal.max_size", "journal.min_free", "hot.max_size", "hot.min_free"];

/// The fields whose change needs a restart, as `section.field`: everything but the
/// buckets, the web settings other than the access log, new stores, read-only mode, the
/// log filter and the journal's and hot tier's bounds (so `[images]` needs one).
pub fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut top = |name: &str, a: &dyn Debug, b: &dyn Debug| {
        let fields = changed_fields(a, b);
        // Not a struct (an address, a path): the value itself.
        if fields.is_empty() && format!("{a:?}") != format!("{b:?}") {
            out.push(name.to_owned());
        }
        let named = fields.into_iter().map(|f| format!("{name}.{f}"));
        out.extend(named.filter(|f| !LIVE.contains(&f.as_str())));
    };
    top("listen", &old.listen, &new.listen);
    top("data_dir", &old.data_dir, &new.data_dir);
    top("region", &old.region, &new.region);
    top("catalog", &old.catalog, &new.catalog);
    top("default_backend", &old.default_backend, &new.default_backend);
    top("limits", &old.limits, &new.limits);
    top("hot", &old.hot, &new.hot);
    top("admin", &old.admin, &new.admin);
    top("journal", &old.journal, &new.journal);
    top("failover", &old.failover, &new.failover);
    top("cluster", &old.cluster, &new.cluster);
    top("tls", &old.tls, &new.tls);
    top("auth", &old.auth, &new.auth);
    top("images", &old.images, &new.images);
    if old.credentials != new.credentials {
        out.push("credentials".to_owned());
    }
    let (ow, nw) = (&old.web, &new.web);
    if ow.access_log != nw.access_log {
        out.push("web.access_log".to_owned());
    }
    if format!("{:?}", ow.access_log_format) != format!("{:?}", nw.access_log_format) {
        out.push("web.access_log_format".to_owned());
    }
    for (name, b) in &old.backends {
        match new.backends.get(name) {
            None => out.push(format!("backends.{name} (removing a store)")),
            Some(n) if format!("{n:?}") != format!("{b:?}") => out.push(format!("backends.{name} (changing a store)")),
            Some(_) => {}
        }
    }
    out
}

/// The live fields that differ: buckets and stores by name, web settings by field.
fn changed_live(old: &Config, new: &Config) -> Vec<String> {
    let mut out: Vec<String> = changed_fields(&old.web, &new.web).into_iter().map(|f| format!("web.{f}")).collect();
    let names = old.buckets.keys().chain(new.buckets.keys().filter(|n| !old.buckets.contains_key(*n)));
    for name in names {
        let (a, b) = (old.buckets.get(name), new.buckets.get(name));
        if format!("{a:?}") != format!("{b:?}") {
            out.push(format!("buckets.{name}"));
        }
    }
    out.extend(new.backends.keys().filter(|n| !old.backends.contains_key(*n)).map(|n| format!("backends.{n}")));
    if old.read_only != new.read_only {
        out.push("read_only".to_owned());
    }
    if old.log != new.log {
        out.push("log".to_owned());
    }
    let journal = changed_fields(&old.journal, &new.journal).into_iter().map(|f| format!("journal.{f}"));
    let hot = changed_fields(&old.hot, &new.hot).into_iter().map(|f| format!("hot.{f}"));
    out.extend(journal.chain(hot).filter(|f| LIVE.contains(&f.as_str())));
    out
}

/// The names of the fields of two structs whose values differ, read off their pretty
/// `Debug` forms (each field starts a line indented by four spaces). Empty when the
/// values are not structs.
fn changed_fields(a: &dyn Debug, b: &dyn Debug) -> Vec<String> {
    fn fields(v: &dyn Debug) -> Vec<(String, String)> {
        let text = format!("{v:#?}");
        let mut out: Vec<(String, String)> = Vec::new();
        for line in text.lines().skip(1) {
            let starts_field =
                line.strip_prefix("    ").filter(|l| !l.starts_with(' ')).and_then(|l| l.split_once(':'));
            match (starts_field, out.last_mut()) {
                (Some((name, _)), _) if name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') => {
                    out.push((name.to_owned(), line.to_owned()));
                }
                (_, Some(last)) => last.1.push_str(line),
                (None, None) => {}
                (Some(_), None) => {}
            }
        }
        out
    }
    let (fa, fb) = (fields(a), fields(b));
    let mut names: Vec<String> = fa
        .iter()
        .filter(|(n, v)| fb.iter().find(|(m, _)| m == n).is_none_or(|(_, w)| w != v))
        .map(|(n, _)| n.clone())
        .collect();
    names.extend(fb.iter().filter(|(n, _)| !fa.iter().any(|(m, _)| m == n)).map(|(n, _)| n.clone()));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let toml = format!("{extra}\n[backends.a]\ntype = \"fs\"\nroot = \"/tmp/a\"\n");
        let c = Config::parse(&toml).unwrap();
        let c = c.resolve(&Default::default(), &|_: &str| None).unwrap();
        c.validate().unwrap();
        c
    }

    #[test]
    fn restart_fields_are_named_and_live_fields_are_not() {
        let base = config("[hot]\nmax_size = \"1GiB\"\n");
        assert!(needs_restart(&base, &base).is_empty());
        let moved = config("[hot]\nmax_size = \"2GiB\"\nchunk_size = \"1MiB\"\n");
        assert_eq!(needs_restart(&base, &moved), ["hot.chunk_size"], "the bound is live, the chunk size is not");
        assert_eq!(changed_live(&base, &moved), ["hot.max_size"]);
        let listen = config("listen = \"127.0.0.1:9999\"\n[hot]\nmax_size = \"1GiB\"\n");
        assert_eq!(needs_restart(&base, &listen), ["listen"]);
        let data = config("data_dir = \"/elsewhere\"\n[hot]\nmax_size = \"1GiB\"\n");
        let named = needs_restart(&base, &data);
        assert!(named.contains(&"data_dir".to_owned()), "{named:?}");
        // Buckets, web settings and a new store are live.
        let live = config(
            "[hot]\nmax_size = \"1GiB\"\n[web]\ndomains = [\"m.test\"]\n[backends.b]\ntype = \"fs\"\nroot = \"/tmp/b\"\n\
             [buckets.pics]\nbackend = \"b\"\n[[buckets.pics.rules]]\nprefix = \"\"\naccess = \"public-read\"\n",
        );
        assert!(needs_restart(&base, &live).is_empty(), "{:?}", needs_restart(&base, &live));
        assert_eq!(changed_live(&base, &live), ["web.domains", "buckets.pics", "backends.b"]);
        // The journal's bounds are live; its other fields are not.
        let bounds = config("[hot]\nmax_size = \"1GiB\"\n[journal]\nmax_size = \"20GiB\"\nmin_free = \"2GiB\"\n");
        assert!(needs_restart(&base, &bounds).is_empty(), "{:?}", needs_restart(&base, &bounds));
        assert_eq!(changed_live(&base, &bounds), ["journal.max_size", "journal.min_free"]);
        let uploads = config("[hot]\nmax_size = \"1GiB\"\n[journal]\nuploads = 3\n");
        assert_eq!(needs_restart(&base, &uploads), ["journal.uploads"]);
        // Changing or removing a store is not.
        let changed = config("[hot]\nmax_size = \"1GiB\"\n").backends;
        let mut other = base.clone();
        other.backends = changed;
        if let Some(crate::config::BackendConfig::Fs(fs)) = other.backends.get_mut("a") {
            fs.root = "/tmp/z".into();
        }
        assert_eq!(needs_restart(&base, &other), ["backends.a (changing a store)"]);
        other.backends.remove("a");
        assert_eq!(needs_restart(&base, &other), ["backends.a (removing a store)"]);
    }
}
