//! `strata images warm` (a running server renders the derivatives of presets for every
//! image under a prefix, with progress and a summary) and `strata images sign` (a signed
//! derivative URL, made offline from the config and data directory).

use super::admin::{AdminClient, Target, follow};
use super::{Common, load};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub(crate) enum ImagesCommand {
    /// Render the derivatives of presets for every image under BUCKET[/PREFIX] ahead of
    /// the first request. Resumable: what is already made is skipped, and `--after` starts
    /// past the last key a run reported.
    Warm(WarmArgs),
    /// Print a signed URL of a derivative of BUCKET/KEY with OPTIONS (e.g. "w400,webp").
    Sign(SignArgs),
}

#[derive(Debug, Args)]
pub(crate) struct WarmArgs {
    #[command(flatten)]
    target: Target,
    /// BUCKET or BUCKET/PREFIX.
    path: String,
    /// Presets to render, comma-separated (names under `[images.presets]`).
    #[arg(long, required = true)]
    preset: String,
    /// Derivatives made at once (default: the server's `images.concurrency`, at least 2).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Start after this key (the `last_key` of an interrupted run).
    #[arg(long)]
    after: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    #[command(flatten)]
    common: Common,
    /// The original, as BUCKET/KEY.
    object: String,
    /// The options, e.g. "w400,h300,cover,webp,q75,dpr2".
    options: String,
    /// Let the URL stop working after this long, e.g. "7d" (default: never).
    #[arg(long)]
    expires: Option<String>,
}

pub(crate) async fn run(cmd: ImagesCommand) -> anyhow::Result<()> {
    match cmd {
        ImagesCommand::Warm(w) => warm(&w).await,
        ImagesCommand::Sign(s) => sign(&s),
    }
}

async fn warm(w: &WarmArgs) -> anyhow::Result<()> {
    let (bucket, prefix) = w.path.split_once('/').unwrap_or((&w.path, ""));
    let c = AdminClient::new(&w.target)?;
    let concurrency = w.concurrency.map(|n| n.to_string()).unwrap_or_default();
    let mut q = vec![("bucket", bucket), ("prefix", prefix), ("presets", w.preset.as_str())];
    if !concurrency.is_empty() {
        q.push(("concurrency", &concurrency));
    }
    if let Some(a) = &w.after {
        q.push(("after", a));
    }
    let resp = c.call_with(reqwest::Method::POST, "images/warm", &q, None).await?;
    let last = follow(resp, "warm", |v| {
        v.get("images").map(|_| {
            format!(
                "{} images, {} rendered, {} already made, {} failed, last key {}",
                v["images"],
                v["rendered"],
                v["cached"],
                v["failed"].as_object().map_or(0, |f| f.values().filter_map(|n| n.as_u64()).sum::<u64>()),
                v["last_key"]
            )
        })
    })
    .await?;
    let s = &last["stats"];
    let secs = s["seconds"].as_f64().unwrap_or(0.0);
    let made = s["rendered"].as_u64().unwrap_or(0);
    println!(
        "{} images: {made} derivatives rendered ({:.1}/s), {} already made, {} skipped (not images), {} of derivatives, in {secs:.1}s",
        s["images"],
        made as f64 / secs.max(0.001),
        s["cached"],
        s["skipped"],
        indicatif::HumanBytes(s["bytes"].as_u64().unwrap_or(0)),
    );
    if let Some(failed) = s["failed"].as_object().filter(|f| !f.is_empty()) {
        println!("failed: {}", serde_json::Value::Object(failed.clone()));
        bail!("some derivatives could not be made");
    }
    Ok(())
}

fn sign(s: &SignArgs) -> anyhow::Result<()> {
    let cfg = load(&s.common, None)?;
    let Some((bucket, key)) = s.object.split_once('/') else { bail!("give the original as BUCKET/KEY") };
    crate::names::validate_key(key).map_err(|e| anyhow::anyhow!("{}", e.context()))?;
    let opts = crate::images::options::Options::parse(&s.options, cfg.images.max_output_side).map_err(|e| {
        let crate::images::options::Refusal::Invalid(m) = e else { return anyhow::anyhow!("invalid options") };
        anyhow::anyhow!("{m}")
    })?;
    let expires = match &s.expires {
        Some(e) => {
            let d = humantime::parse_duration(e).map_err(|e| anyhow::anyhow!("--expires: {e}"))?;
            Some(crate::clock::now_secs().saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)))
        }
        None => None,
    };
    let keys = crate::auth::link_keys(&cfg, true)?;
    let q = crate::images::options::sign(&keys, bucket, key, &opts, expires).context("no link key")?;
    const PATH: &percent_encoding::AsciiSet = &crate::policy::link::QUERY.remove(b'/');
    let path = percent_encoding::utf8_percent_encode(key, PATH);
    println!("{}/{bucket}/{path}?{q}", cfg.web.base_url.as_deref().unwrap_or("").trim_end_matches('/'));
    Ok(())
}
