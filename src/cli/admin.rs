//! The admin API's client, shared by every command that talks to a running server
//! (`cache`, `status`, `access`, `sign`, `migrate`, `replicate`): which server, its
//! credentials, the calls, and following a streamed job.

use crate::config::Config;
use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// Which server to talk to.
#[derive(Debug, Args)]
pub struct Target {
    #[command(flatten)]
    common: super::Common,
    /// Base URL of the server's operator endpoints (default: http:// plus the config's
    /// `admin.listen`, else its `listen` address).
    #[arg(long)]
    endpoint: Option<String>,
    /// An admin key's id to call with (default: the config's key pair). Its secret comes
    /// from `STRATA_ADMIN_SECRET`.
    #[arg(long, env = "STRATA_ADMIN_KEY")]
    admin_key: Option<String>,
}

/// The admin API's client, for every command that talks to a running server: Basic auth
/// with the config's S3 keys, errors turned into messages.
pub(super) struct AdminClient {
    http: reqwest::Client,
    base: String,
    user: String,
    pass: String,
}

impl AdminClient {
    pub(super) fn new(t: &Target) -> anyhow::Result<AdminClient> {
        let cfg: Config = super::load(&t.common, None)?;
        let creds = match &t.admin_key {
            Some(id) => crate::config::Credentials {
                access_key: id.clone(),
                secret_key: std::env::var("STRATA_ADMIN_SECRET")
                    .context("--admin-key needs its secret in STRATA_ADMIN_SECRET")?,
            },
            None => crate::auth::load(&cfg)?,
        };
        let base = match &t.endpoint {
            Some(e) => e.trim_end_matches('/').to_owned(),
            None => format!("http://{}", cfg.admin.listen.or(cfg.listen).context("listen address is not resolved")?),
        };
        Ok(AdminClient { http: reqwest::Client::new(), base, user: creds.access_key, pass: creds.secret_key })
    }

    /// One client per live node that shares the config's catalog, with the node's id
    /// (`--cluster`): the registry gives their addresses.
    pub(super) async fn cluster(t: &Target) -> anyhow::Result<Vec<(String, AdminClient)>> {
        let cfg: Config = super::load(&t.common, None)?;
        let creds = crate::auth::load(&cfg)?;
        let catalog = crate::catalog::Catalog::connect(cfg.catalog.as_deref().unwrap_or_default()).await?;
        let view = crate::cluster::status(&catalog).await?;
        catalog.close().await;
        let scheme = if cfg.tls.enabled() { "https" } else { "http" };
        let nodes = view.nodes.into_iter().filter(|n| n.live).map(|n| {
            let c = AdminClient {
                http: reqwest::Client::new(),
                base: format!("{scheme}://{}", n.node.address),
                user: creds.access_key.clone(),
                pass: creds.secret_key.clone(),
            };
            (n.node.id, c)
        });
        Ok(nodes.collect())
    }

    pub(super) fn base(&self) -> &str {
        &self.base
    }

    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        route: &str,
        scope: Option<(&str, &str)>,
    ) -> anyhow::Result<reqwest::Response> {
        let query: Vec<(&str, &str)> = scope.map(|(b, p)| vec![("bucket", b), ("prefix", p)]).unwrap_or_default();
        self.call_with(method, route, &query, None).await
    }

    /// Like [`AdminClient::call`] with any query and an optional JSON body.
    pub(super) async fn call_with(
        &self,
        method: reqwest::Method,
        route: &str,
        query: &[(&str, &str)],
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{}{route}", self.base, crate::api::router::ADMIN_PREFIX);
        let mut req = self.http.request(method, &url).basic_auth(&self.user, Some(&self.pass)).query(query);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach strata at {}", self.base))?;
        if !resp.status().is_success() {
            let status = resp.status();
            bail!("{route}: {status}: {}", resp.text().await.unwrap_or_default().trim());
        }
        Ok(resp)
    }
}

/// Follows a streamed admin job: progress lines (shown by `describe`) on a spinner or as
/// plain lines; returns its last line (the caller prints it).
pub(super) async fn follow(
    mut resp: reqwest::Response,
    what: &str,
    describe: impl Fn(&serde_json::Value) -> Option<String>,
) -> anyhow::Result<serde_json::Value> {
    let tty = std::io::stderr().is_terminal();
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}")?);
    if !tty {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut pending = Vec::new();
    let mut last: Option<serde_json::Value> = None;
    while let Some(chunk) = resp.chunk().await? {
        pending.extend_from_slice(&chunk);
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let v: serde_json::Value = serde_json::from_slice(&line)?;
            if let Some(e) = v.get("error") {
                bar.abandon();
                bail!("{what} failed: {e}");
            }
            if let Some(msg) = describe(&v) {
                if tty {
                    bar.set_message(msg);
                    bar.tick();
                } else {
                    eprintln!("{msg}");
                }
            }
            last = Some(v);
        }
    }
    bar.finish_and_clear();
    match last {
        Some(v) if v.get("done").is_some() => Ok(v),
        _ => bail!("the server ended the {what} without a result"),
    }
}
