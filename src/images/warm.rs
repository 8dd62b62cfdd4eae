//! Warming: render the derivatives of presets for every image under a prefix ahead of
//! the first request (the worker-fleet job of a photo host), at bounded concurrency.
//!
//! It walks the bucket's listing page by page and makes each (image, preset, format)
//! through the same path as a request, so it shares single flight with live traffic and
//! what it makes lands in the hot tier. Originals are read past the hot tier unless it
//! holds them already ([`HotUse::IfHot`]), once per image for all its presets: a warm
//! must not evict the working set to keep them. A preset whose format is `auto` is
//! warmed in both formats `Accept` can select (WebP and JPEG). Resuming is cheap: a
//! derivative already held is a hot-tier hit, not a render, and `after` starts the walk
//! past the last key a progress line reported as done.

use super::{ImageError, Images, Original, SharedOriginal, options::Options};
use crate::catalog::{ListQuery, ObjectRecord};
use crate::config::Format;
use crate::error::{Error, ErrorKind, Result};
use crate::tier::HotUse;
use futures::StreamExt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to warm.
#[derive(Debug, Clone)]
pub struct WarmPlan {
    /// Bucket.
    pub bucket: String,
    /// Only keys under this.
    pub prefix: String,
    /// Preset names.
    pub presets: Vec<String>,
    /// Derivatives made at once.
    pub concurrency: usize,
    /// Start after this key (a previous run's `last_key`).
    pub after: Option<String>,
}

/// Progress and the final summary.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WarmStats {
    /// Images seen.
    pub images: u64,
    /// Objects skipped: not images by their type.
    pub skipped: u64,
    /// Derivatives rendered now.
    pub rendered: u64,
    /// Derivatives already in the hot tier.
    pub cached: u64,
    /// Derivatives that failed, by reason.
    pub failed: BTreeMap<String, u64>,
    /// Bytes of the derivatives.
    pub bytes: u64,
    /// The last key whose derivatives are all done: resume with `after` = this.
    pub last_key: Option<String>,
    /// Seconds since the start.
    pub seconds: f64,
}

/// Pages of the listing walked at a time.
const PAGE: usize = 500;

impl Images {
    /// Warms `plan`, calling `progress` after each page; returns the summary.
    pub async fn warm(&self, plan: &WarmPlan, mut progress: impl FnMut(&WarmStats)) -> Result<WarmStats> {
        let cfg = self.config();
        let mut asks = Vec::new();
        for name in &plan.presets {
            let preset = cfg.presets.get(name).ok_or_else(|| {
                Error::new(ErrorKind::InvalidInput, format!("no preset {name:?} in [images.presets]"))
            })?;
            let o = Options::of_preset(preset);
            match o.format {
                Format::Auto => asks.extend([o.resolve(Some("image/webp"), cfg), o.resolve(None, cfg)]),
                _ => asks.push(o.resolve(None, cfg)),
            }
        }
        if asks.is_empty() {
            return Err(Error::new(ErrorKind::InvalidInput, "name at least one preset"));
        }
        let started = Instant::now();
        let mut stats = WarmStats::default();
        let mut after = plan.after.clone();
        loop {
            let q = ListQuery { prefix: plan.prefix.clone(), delimiter: None, after: after.clone(), max_keys: PAGE };
            let page = self.inner.tier.list(&plan.bucket, &q).await?;
            let images: Vec<&ObjectRecord> = page.objects.iter().filter(|r| is_image(r)).collect();
            stats.skipped += (page.objects.len() - images.len()) as u64;
            stats.images += images.len() as u64;
            // Each job owns what it uses: a future borrowing the page across the stream
            // defeats the compiler's proof that the whole walk is `Send`. The jobs of one
            // image share its original, read once by the first that renders.
            let jobs: Vec<(ObjectRecord, super::options::Resolved, Arc<SharedOriginal>)> = images
                .iter()
                .flat_map(|rec| {
                    let original = Arc::new(SharedOriginal::new());
                    asks.iter().map(move |r| ((*rec).clone(), r.clone(), original.clone()))
                })
                .collect();
            let mut done = futures::stream::iter(jobs)
                .map(|(rec, r, original)| {
                    let this = self.clone();
                    async move { this.warm_one(&rec, &r, &original).await }
                })
                .buffer_unordered(plan.concurrency.max(1));
            while let Some(out) = done.next().await {
                match out {
                    Ok(d) => {
                        stats.bytes += d.bytes.len() as u64;
                        if d.hit { stats.cached += 1 } else { stats.rendered += 1 }
                    }
                    Err(e) => *stats.failed.entry(e.reason().to_owned()).or_default() += 1,
                }
            }
            drop(done);
            stats.last_key = page.objects.last().map(|r| r.key.clone()).or(stats.last_key.take());
            stats.seconds = started.elapsed().as_secs_f64();
            progress(&stats);
            match page.next_marker {
                Some(m) if page.truncated => after = Some(m),
                _ => break,
            }
        }
        Ok(stats)
    }

    /// One derivative; a full render queue (live traffic beside the warm) is waited out.
    async fn warm_one(
        &self,
        rec: &ObjectRecord,
        r: &super::options::Resolved,
        original: &SharedOriginal,
    ) -> Result<super::Derivative, ImageError> {
        let (tag, mut wait) = (r.tag(), Duration::from_millis(50));
        loop {
            match self.derivative_as(rec, r, &tag, Original::Shared(original, HotUse::IfHot)).await {
                Err(ImageError::Busy) if wait < Duration::from_secs(5) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                other => return other,
            }
        }
    }
}

/// Whether `rec` is an image by its stored type, else by its name.
fn is_image(rec: &ObjectRecord) -> bool {
    match &rec.headers.content_type {
        Some(t) if t != "application/octet-stream" && t != "binary/octet-stream" => t.starts_with("image/"),
        _ => mime_guess::from_path(&rec.key).first().is_some_and(|m| m.type_() == mime_guess::mime::IMAGE),
    }
}
