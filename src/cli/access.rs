//! `strata sign` (a signed link, made offline from the config and data directory) and
//! `strata access show|set|clear|direct` (a running server's access rules, through its
//! admin API, so the change applies at once and reaches other nodes through the catalog).

use super::admin::{AdminClient, Target};
use super::{Common, load};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;

/// Arguments of `strata sign`.
#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    #[command(flatten)]
    common: Common,
    /// The object, as BUCKET/KEY.
    object: String,
    /// How long the link works, e.g. "10m", "1h", "7d".
    #[arg(long, default_value = "1h")]
    expires: String,
    /// Only this client address may use the link.
    #[arg(long)]
    ip: Option<String>,
    /// Force a download (Content-Disposition: attachment), optionally under this file
    /// name (default: the key's last segment).
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    download: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AccessCommand {
    /// Print every access rule and serving mode.
    Show(Target),
    /// Change the rule of BUCKET[/PREFIX] (only the options given change).
    Set(SetArgs),
    /// Drop the runtime rule of BUCKET[/PREFIX]; the config's applies again.
    Clear {
        #[command(flatten)]
        target: Target,
        /// BUCKET or BUCKET/PREFIX.
        scope: String,
    },
    /// A direct, presigned cold-store URL for BUCKET/KEY (buckets in "direct" mode).
    Direct {
        #[command(flatten)]
        target: Target,
        /// BUCKET/KEY.
        object: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    #[command(flatten)]
    target: Target,
    /// BUCKET or BUCKET/PREFIX.
    scope: String,
    /// private, public-read, password or signed.
    #[arg(long, value_parser = ["private", "public-read", "password", "signed"])]
    access: Option<String>,
    /// The password of a password rule (stored as an argon2 hash).
    #[arg(long, env = "STRATA_ACCESS_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Cache-Control for public readers ("immutable" for a year, immutable).
    #[arg(long)]
    cache_control: Option<String>,
    /// proxy, redirect or direct (a whole bucket only).
    #[arg(long, value_parser = ["proxy", "redirect", "direct"])]
    serve: Option<String>,
}

pub(crate) fn sign(a: &SignArgs) -> anyhow::Result<()> {
    let cfg = load(&a.common, None)?;
    let Some((bucket, key)) = a.object.split_once('/') else { bail!("give the object as BUCKET/KEY") };
    crate::names::validate_key(key).map_err(|e| anyhow::anyhow!("{}", e.context()))?;
    let keys = crate::auth::link_keys(&cfg, true)?;
    let p = crate::policy::link::LinkParams::parse(&a.expires, a.ip.as_deref(), a.download.as_deref())
        .map_err(|e| anyhow::anyhow!(e))?;
    let url = crate::policy::link::link(&keys, cfg.web.base_url.as_deref(), bucket, key, &p).context("no link key")?;
    println!("{url}");
    Ok(())
}

pub(crate) async fn run(cmd: AccessCommand) -> anyhow::Result<()> {
    let (method, route, target, query, body) = match &cmd {
        AccessCommand::Show(t) => (reqwest::Method::GET, "access", t, vec![], None),
        AccessCommand::Set(s) => {
            let (b, p) = s.scope.split_once('/').unwrap_or((&s.scope, ""));
            // A null field (an option not given) leaves that field as it is.
            let body = json!({ "access": s.access, "password": s.password, "cache_control": s.cache_control, "serve": s.serve });
            (reqwest::Method::POST, "access", &s.target, vec![("bucket", b), ("prefix", p)], Some(body))
        }
        AccessCommand::Clear { target, scope } => {
            let (b, p) = scope.split_once('/').unwrap_or((scope, ""));
            (reqwest::Method::DELETE, "access", target, vec![("bucket", b), ("prefix", p)], None)
        }
        AccessCommand::Direct { target, object } => {
            let Some((b, k)) = object.split_once('/') else { bail!("give the object as BUCKET/KEY") };
            (reqwest::Method::GET, "direct", target, vec![("bucket", b), ("key", k)], None)
        }
    };
    let c = AdminClient::new(target)?;
    let resp = c.call_with(method, route, &query, body).await?;
    print!("{}", resp.text().await?);
    Ok(())
}
