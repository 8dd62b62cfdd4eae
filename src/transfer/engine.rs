//! The pipeline of one run: the source listing streams page by page into `checkers`
//! concurrent checks (checkpoint, then a stat of the destination), whose results stream
//! into `transfers` concurrent copies. Nothing waits for the whole listing, and no stage
//! holds more than its concurrency in objects.

use super::checkpoint::{Checkpoint, Mark};
use super::limit::Pace;
use super::{Failure, Location, Mode, Options, Stats, Summary};
use crate::backend::{ListEntry, ObjectStat};
use crate::error::{Error, ErrorKind, Result};
use futures::StreamExt;
use md5::{Digest, Md5};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// What is known about one key: after the check stage, `Copy` means "not done yet";
/// after [`Run::decide`], it means "copy it".
enum Plan {
    /// Copy it (or, before `decide`, find out whether to), with what the source listing
    /// said of it when that is enough to decide (size, and an ETag or mtime).
    Copy(String, Option<ObjectStat>),
    /// After `decide`: copy it. The source's stat is in hand; `true` when it came from a
    /// stat (with headers and metadata), `false` when only from the listing.
    Transfer(String, ObjectStat, bool),
    /// Already there.
    Skip(String),
    /// Verify: a finding.
    Finding(String, Finding),
    /// The check failed.
    Failed(String, Error),
}

enum Finding {
    Same,
    Missing,
    Different,
}

struct Run {
    mode: Mode,
    src: Location,
    dst: Location,
    opts: Options,
    stats: Arc<Stats>,
    bytes_pace: Option<Pace>,
    ops_pace: Option<Pace>,
    ckpt: Checkpoint,
}

/// Runs `mode` from `src` to `dst`, updating `stats` as it goes.
pub async fn run(mode: Mode, src: Location, dst: Location, opts: Options, stats: Arc<Stats>) -> Result<Summary> {
    let started = Instant::now();
    let name = format!("{mode:?} {} -> {}", src.label, dst.label);
    // A dry run keeps its own scratch checkpoint (it needs the seen-keys table for sync),
    // so it neither reads nor spoils a real run's progress.
    let mut opts = opts;
    if opts.dry_run {
        let mut p = opts.checkpoint.clone().into_os_string();
        p.push(".dry-run");
        opts.checkpoint = p.into();
        let _ = std::fs::remove_file(&opts.checkpoint);
    }
    let ckpt = Checkpoint::open(&opts.checkpoint, &name, opts.checkers + opts.transfers, dst.backend.clone()).await?;
    let bytes_pace = opts.max_rate.map(Pace::new);
    let ops_pace = opts.max_tps.map(|n| Pace::new(u64::from(n)));
    let mut run = Run { mode, src, dst, opts, stats, bytes_pace, ops_pace, ckpt };
    let mut summary =
        Summary { mode: format!("{mode:?}").to_lowercase(), dry_run: run.opts.dry_run, ..Default::default() };
    run.index_destination().await?;
    run.main_pass(&mut summary).await?;
    if matches!(mode, Mode::Sync | Mode::Verify) && summary.failed == 0 {
        run.ckpt.flush().await?;
        run.extras(&mut summary).await?;
    }
    summary.listed = run.stats.listed.load(Relaxed);
    summary.copied = run.stats.copied.load(Relaxed);
    summary.skipped = run.stats.skipped.load(Relaxed);
    summary.deleted = run.stats.deleted.load(Relaxed);
    summary.bytes = run.stats.bytes.load(Relaxed);
    summary.server_side = run.stats.server_side.load(Relaxed);
    summary.failed = run.stats.failed.load(Relaxed);
    summary.seconds = started.elapsed().as_secs_f64();
    // A complete, clean run (and any dry run) leaves no checkpoint: the next starts afresh.
    if summary.failed == 0 || run.opts.dry_run {
        run.ckpt.finish().await?;
    } else {
        run.ckpt.flush().await?;
    }
    Ok(summary)
}

impl Run {
    async fn main_pass(&mut self, summary: &mut Summary) -> Result<()> {
        let this = &*self;
        let listing = this.src.backend.list(&this.src.prefix);
        let checked = listing
            .map(|entry| async move {
                match entry {
                    Ok(e) => Some(this.check(e).await),
                    Err(e) => Some(Plan::Failed("(listing)".into(), e)),
                }
            })
            .buffer_unordered(this.opts.checkers.max(1))
            .filter_map(futures::future::ready);
        let mut done =
            checked.map(|plan| async move { this.act(plan).await }).buffer_unordered(this.opts.transfers.max(1));
        while let Some(outcome) = done.next().await {
            match outcome {
                Outcome::Ok => {}
                Outcome::Failed(f) => {
                    this.stats.failed.fetch_add(1, Relaxed);
                    if summary.failures.len() < 100 {
                        summary.failures.push(f);
                    }
                }
                Outcome::Missing(k) => summary.missing.push(k),
                Outcome::Different(k) => summary.different.push(k),
            }
        }
        this.stats.listing_done.store(1, Relaxed);
        Ok(())
    }

    /// The cheap, local part of a check: the checkpoint. Network stats happen in the
    /// transfer stage (see [`Run::decide`]), so requests to the stores never exceed
    /// `transfers` at once.
    async fn check(&self, e: ListEntry) -> Plan {
        let Some(key) = e.path.strip_prefix(&self.src.prefix).map(str::to_owned) else {
            return Plan::Failed(e.path, Error::new(ErrorKind::Internal, "listed outside the prefix"));
        };
        self.stats.listed.fetch_add(1, Relaxed);
        if let Err(err) = self.ckpt.mark(&key, Mark::Seen).await {
            return Plan::Failed(key, err);
        }
        match self.ckpt.is_done(&key).await {
            Ok(true) if self.mode != Mode::Verify => Plan::Skip(key),
            Ok(_) => Plan::Copy(key, listed_stat(&e)),
            Err(err) => Plan::Failed(key, err),
        }
    }

    /// Lists the destination once into the checkpoint, so deciding needs no request to
    /// the destination for keys it lacks, nor for keys whose listing gives size and ETag.
    async fn index_destination(&self) -> Result<()> {
        self.ckpt.reset_dst().await?;
        let mut listing = self.dst.backend.list(&self.dst.prefix);
        let mut page = Vec::with_capacity(1000);
        while let Some(e) = listing.next().await {
            let e = e?;
            if let Some(key) = e.path.strip_prefix(&self.dst.prefix) {
                page.push((key.to_owned(), e.size, e.etag, e.last_modified_ms));
            }
            if page.len() == 1000 {
                self.ckpt.add_dst(&page).await?;
                page.clear();
            }
        }
        self.ckpt.add_dst(&page).await
    }

    /// The destination's view of `key`: from the listing index when it says enough, else
    /// a stat.
    async fn dst_stat(&self, key: &str) -> Result<Option<ObjectStat>> {
        match self.ckpt.dst(key).await? {
            None => Ok(None),
            Some((Some(size), etag, mtime)) if etag.is_some() || mtime.is_some() => Ok(Some(ObjectStat {
                size,
                etag,
                last_modified_ms: mtime,
                content_type: None,
                headers: Default::default(),
            })),
            Some(_) => self.dst.backend.stat(&self.dst.path(key)).await,
        }
    }

    /// Stats both sides of `key` (the source only when its listing did not say enough)
    /// and decides: copy, skip, or (verify) a finding.
    async fn decide(&self, key: String, listed: Option<ObjectStat>) -> Plan {
        let full = listed.is_none();
        let src_stat = async {
            match listed {
                Some(s) => Ok(Some(s)),
                None => self.src.backend.stat(&self.src.path(&key)).await,
            }
        };
        let (src, dst) = match futures::join!(src_stat, self.dst_stat(&key)) {
            (Ok(Some(s)), Ok(d)) => (s, d),
            (Ok(None), _) => return Plan::Failed(key, Error::new(ErrorKind::NotFound, "vanished from the source")),
            (Err(err), _) | (_, Err(err)) => return Plan::Failed(key, err),
        };
        if self.mode == Mode::Verify {
            return match dst {
                None => Plan::Finding(key, Finding::Missing),
                Some(d) if d.size != src.size => Plan::Finding(key, Finding::Different),
                Some(d) => match self.same_bytes(&key, &src, &d).await {
                    Ok(true) => Plan::Finding(key, Finding::Same),
                    Ok(false) => Plan::Finding(key, Finding::Different),
                    Err(err) => Plan::Failed(key, err),
                },
            };
        }
        match dst {
            Some(d) if self.unchanged(&key, &src, &d).await => Plan::Skip(key),
            _ => Plan::Transfer(key, src, full),
        }
    }

    /// Size equal, and then: equal MD5 ETags when both have one, else (or with
    /// `--checksum`) equal content hashes, else a destination at least as new.
    async fn unchanged(&self, key: &str, s: &ObjectStat, d: &ObjectStat) -> bool {
        if s.size != d.size {
            return false;
        }
        if let (Some(a), Some(b)) = (md5_etag(s), md5_etag(d)) {
            return a == b;
        }
        if self.opts.checksum {
            return self.same_bytes(key, s, d).await.unwrap_or(false);
        }
        matches!((s.last_modified_ms, d.last_modified_ms), (Some(a), Some(b)) if b >= a)
    }

    async fn same_bytes(&self, key: &str, s: &ObjectStat, d: &ObjectStat) -> Result<bool> {
        if let (Some(a), Some(b)) = (md5_etag(s), md5_etag(d)) {
            return Ok(a == b);
        }
        let (sp, dp) = (self.src.path(key), self.dst.path(key));
        let (a, b) = futures::try_join!(md5_of(&*self.src.backend, &sp), md5_of(&*self.dst.backend, &dp))?;
        Ok(a == b)
    }

    async fn act(&self, plan: Plan) -> Outcome {
        let plan = match plan {
            Plan::Copy(key, listed) => self.decide(key, listed).await,
            other => other,
        };
        match plan {
            Plan::Skip(key) => {
                self.stats.skipped.fetch_add(1, Relaxed);
                self.finish_key(&key).await
            }
            Plan::Failed(key, e) => Outcome::Failed(Failure { key, error: e.to_string() }),
            Plan::Finding(key, Finding::Same) => self.finish_key(&key).await,
            Plan::Finding(key, Finding::Missing) => Outcome::Missing(key),
            Plan::Finding(key, Finding::Different) => Outcome::Different(key),
            Plan::Copy(key, _) => Outcome::Failed(Failure { key, error: "internal: undecided".into() }),
            Plan::Transfer(..) if self.opts.dry_run => {
                self.stats.copied.fetch_add(1, Relaxed);
                Outcome::Ok
            }
            Plan::Transfer(key, stat, full) => match self.copy(&key, stat, full).await {
                Ok(n) => {
                    self.stats.copied.fetch_add(1, Relaxed);
                    self.stats.bytes.fetch_add(n, Relaxed);
                    self.finish_key(&key).await
                }
                Err(e) => Outcome::Failed(Failure { key, error: e.to_string() }),
            },
        }
    }

    /// The key is at the destination: a move deletes the source, then the key is done.
    async fn finish_key(&self, key: &str) -> Outcome {
        if self.mode == Mode::Move && !self.opts.dry_run {
            self.pace_op().await;
            if let Err(e) = self.src.backend.delete(&self.src.path(key)).await {
                return Outcome::Failed(Failure { key: key.to_owned(), error: e.to_string() });
            }
            self.stats.deleted.fetch_add(1, Relaxed);
        }
        if self.opts.dry_run {
            return Outcome::Ok;
        }
        match self.ckpt.mark(key, Mark::Done).await {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Failed(Failure { key: key.to_owned(), error: e.to_string() }),
        }
    }

    async fn pace_op(&self) {
        if let Some(p) = &self.ops_pace {
            p.take(1).await;
        }
    }

    /// Streams one object across with its headers and metadata. The destination sees it
    /// only once complete (the backend's writer is atomic).
    async fn copy(&self, key: &str, stat: ObjectStat, full: bool) -> Result<u64> {
        self.pace_op().await;
        let from = self.src.path(key);
        // Two buckets of one S3 endpoint: the store copies (headers and metadata too), and
        // no byte passes through here.
        let (src, dst) = (&*self.src.backend, &*self.dst.backend);
        if crate::backend::copy_inside(src, &from, dst, &self.dst.path(key), stat.size).await? {
            self.stats.server_side.fetch_add(1, Relaxed);
            return Ok(stat.size);
        }
        // A streamed copy writes the headers itself: it needs the source's full stat.
        let stat = match full {
            true => stat,
            false => {
                src.stat(&from).await?.ok_or_else(|| Error::new(ErrorKind::NotFound, "vanished from the source"))?
            }
        };
        let stat = &stat;
        let mut body = self.src.backend.read(&from, None).await?;
        let mut w = self.dst.backend.writer(&self.dst.path(key), &stat.headers).await?;
        let mut n = 0u64;
        let res: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                if let Some(p) = &self.bytes_pace {
                    p.take(chunk.len() as u64).await;
                }
                n += chunk.len() as u64;
                w.write(chunk).await?;
            }
            if n != stat.size {
                return Err(Error::new(ErrorKind::Unavailable, format!("read {n} of {} bytes", stat.size)));
            }
            Ok(())
        }
        .await;
        match res {
            Ok(()) => w.commit().await.map(|()| n),
            Err(e) => {
                let _ = w.abort().await;
                Err(e)
            }
        }
    }

    /// Sync deletes, and verify reports, destination objects the source does not have.
    async fn extras(&self, summary: &mut Summary) -> Result<()> {
        let mut listing = self.dst.backend.list(&self.dst.prefix);
        while let Some(e) = listing.next().await {
            let e = e?;
            let Some(key) = e.path.strip_prefix(&self.dst.prefix) else { continue };
            if self.ckpt.was_seen(key).await? {
                continue;
            }
            match self.mode {
                Mode::Verify => summary.extra.push(key.to_owned()),
                _ if self.opts.dry_run => {
                    self.stats.deleted.fetch_add(1, Relaxed);
                }
                _ => {
                    self.pace_op().await;
                    self.dst.backend.delete(&e.path).await?;
                    self.stats.deleted.fetch_add(1, Relaxed);
                }
            }
        }
        Ok(())
    }
}

enum Outcome {
    Ok,
    Failed(Failure),
    Missing(String),
    Different(String),
}

/// The ETag when it is a plain MD5 (a single-part upload), else `None`.
fn md5_etag(s: &ObjectStat) -> Option<&str> {
    s.etag.as_deref().filter(|e| e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit()))
}

async fn md5_of(b: &dyn crate::backend::Backend, path: &str) -> Result<[u8; 16]> {
    let mut s = b.read(path, None).await?;
    let mut h = Md5::new();
    while let Some(c) = s.next().await {
        h.update(&c?);
    }
    Ok(h.finalize().into())
}

/// What a listing entry says of an object, when it is enough to decide (a size, and an
/// ETag or a modification time); headers are not in listings.
fn listed_stat(e: &ListEntry) -> Option<ObjectStat> {
    let size = e.size?;
    (e.etag.is_some() || e.last_modified_ms.is_some()).then(|| ObjectStat {
        size,
        etag: e.etag.clone(),
        last_modified_ms: e.last_modified_ms,
        content_type: None,
        headers: Default::default(),
    })
}
