//! `strata key create|list|show|disable|enable|delete|rotate|audit` and
//! `strata grant add|remove|list`: a running server's access keys and grants, through its
//! admin API (so a change holds at once there and reaches the other nodes through the
//! catalog). Secrets are printed once, by `create` and `rotate`, and never again.

use super::admin::{AdminClient, Target};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Make a key (no grants yet) and print its id and secret.
    Create {
        #[command(flatten)]
        target: Target,
        /// A name for people ("photo-upload").
        name: String,
        /// The key stops working after this long ("90d").
        #[arg(long)]
        expires_in: Option<String>,
        /// A network the key may be used from (CIDR); repeat for several.
        #[arg(long = "source")]
        sources: Vec<String>,
    },
    /// Print every stored key with its grants (never a secret).
    List(Target),
    /// Print one key with its grants.
    Show(KeyArg),
    /// Refuse a key from now on (on every node within `auth.refresh`).
    Disable(KeyArg),
    /// Accept a disabled key again.
    Enable(KeyArg),
    /// Remove a key and its grants.
    Delete(KeyArg),
    /// Give a key a new secret; the old one keeps working for the grace period.
    Rotate {
        #[command(flatten)]
        key: KeyArg,
        /// How long the old secret stays valid.
        #[arg(long, default_value = "1d")]
        grace: String,
    },
    /// Print the last changes to keys and grants, newest first, with who made them.
    Audit {
        #[command(flatten)]
        target: Target,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Args)]
pub(crate) struct KeyArg {
    #[command(flatten)]
    target: Target,
    /// The access key id.
    id: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum GrantCommand {
    /// Give KEY rights on BUCKET[/PREFIX] (`*` for every bucket), replacing that grant.
    Add {
        #[command(flatten)]
        target: Target,
        /// The access key id.
        key: String,
        /// BUCKET, BUCKET/PREFIX, or `*`.
        scope: String,
        /// Rights (read, write, delete, list, admin) or roles (readonly, readwrite,
        /// owner), comma-separated.
        #[arg(long)]
        rights: String,
    },
    /// Remove KEY's grant on BUCKET[/PREFIX].
    Remove {
        #[command(flatten)]
        target: Target,
        /// The access key id.
        key: String,
        /// BUCKET, BUCKET/PREFIX, or `*`.
        scope: String,
    },
    /// Print the grants of KEY, or of every key.
    List {
        #[command(flatten)]
        target: Target,
        /// The access key id.
        key: Option<String>,
    },
}

async fn print(
    c: &AdminClient,
    method: Method,
    route: &str,
    query: &[(&str, &str)],
    body: Option<Value>,
) -> anyhow::Result<()> {
    let v: Value = c.call_with(method, route, query, body).await?.json().await?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

pub(crate) async fn run_key(cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Create { target, name, expires_in, sources } => {
            let c = AdminClient::new(&target)?;
            let body = json!({ "name": name, "expires_in": expires_in, "sources": sources });
            let v: Value = c.call_with(Method::POST, "keys", &[], Some(body)).await?.json().await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            eprintln!("the secret is shown only now; grant rights with `strata grant add`");
            Ok(())
        }
        KeyCommand::List(t) => print(&AdminClient::new(&t)?, Method::GET, "keys", &[], None).await,
        KeyCommand::Show(k) => print(&AdminClient::new(&k.target)?, Method::GET, "keys", &[("id", &k.id)], None).await,
        KeyCommand::Disable(k) => {
            print(&AdminClient::new(&k.target)?, Method::POST, "keys/disable", &[("id", &k.id)], None).await
        }
        KeyCommand::Enable(k) => {
            print(&AdminClient::new(&k.target)?, Method::POST, "keys/enable", &[("id", &k.id)], None).await
        }
        KeyCommand::Delete(k) => {
            print(&AdminClient::new(&k.target)?, Method::DELETE, "keys", &[("id", &k.id)], None).await
        }
        KeyCommand::Rotate { key, grace } => {
            let q = [("id", key.id.as_str()), ("grace", grace.as_str())];
            print(&AdminClient::new(&key.target)?, Method::POST, "keys/rotate", &q, None).await
        }
        KeyCommand::Audit { target, limit } => {
            let limit = limit.to_string();
            print(&AdminClient::new(&target)?, Method::GET, "keys/audit", &[("limit", &limit)], None).await
        }
    }
}

/// `BUCKET/PREFIX` → (bucket, prefix).
fn scope(s: &str) -> (&str, &str) {
    s.split_once('/').unwrap_or((s, ""))
}

pub(crate) async fn run_grant(cmd: GrantCommand) -> anyhow::Result<()> {
    match cmd {
        GrantCommand::Add { target, key, scope: s, rights } => {
            let (b, p) = scope(&s);
            let q = [("key", key.as_str()), ("bucket", b), ("prefix", p), ("rights", rights.as_str())];
            print(&AdminClient::new(&target)?, Method::POST, "grants", &q, None).await
        }
        GrantCommand::Remove { target, key, scope: s } => {
            let (b, p) = scope(&s);
            print(
                &AdminClient::new(&target)?,
                Method::DELETE,
                "grants",
                &[("key", &key), ("bucket", b), ("prefix", p)],
                None,
            )
            .await
        }
        GrantCommand::List { target, key } => {
            let q: Vec<(&str, &str)> = key.as_deref().map(|k| vec![("key", k)]).unwrap_or_default();
            print(&AdminClient::new(&target)?, Method::GET, "grants", &q, None).await
        }
    }
}
