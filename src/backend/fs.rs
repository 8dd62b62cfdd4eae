//! The disk store: objects as plain files under a root directory, laid out so that every
//! key S3 accepts has a place (`docs/design/fs-layout.md`).
//!
//! Owns the on-disk layout: names from [`keymap`] in [`Shape::Tree`], and the one rule
//! that depends on what is on disk: an object whose path is also a directory (`a/b`
//! beside `a/b/c`) lives in that directory as [`SELF_NAME`]. Writes stage in
//! [`SCRATCH`], are fsynced, then renamed into place under one lock per store, so placing
//! a file and turning a file into a directory never interleave; the directory is fsynced
//! after the lock is let go. A store opened with `deferred_sync` (`strata copy --sync
//! batch`) skips both fsyncs and makes everything durable at [`Backend::sync`] (`syncfs`). Deletes remove the
//! directories they leave empty. It must not retry: the journal does.
//!
//! Why not OpenDAL's fs service: it rewrites paths (trims whitespace, drops empty
//! segments, treats a trailing `/` as a directory) and cannot move a file into the
//! directory that replaces it, so some keys it acknowledged could never be stored.

use super::keymap::{self, SCRATCH, SELF_NAME, Shape};
use super::{Backend, ByteStream, Capability, ListEntry, ObjectStat, ObjectWriter, WriteOptions};
use crate::error::{Error, ErrorKind, Result};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::io::ErrorKind as Io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The longest absolute path the kernel takes (Linux's PATH_MAX, less its NUL).
const PATH_MAX: usize = 4095;
/// Age past which a scratch file is a dead write's (see [`FsStore::open`]).
const STALE_SCRATCH: Duration = Duration::from_secs(3600);
/// Bytes per chunk of a read.
const READ_CHUNK: usize = 256 << 10;

struct Shared {
    name: String,
    root: PathBuf,
    /// Held while names change on disk: a file renamed into place, a file turned into a
    /// directory, a delete and the removal of the directories it empties.
    placing: tokio::sync::Mutex<()>,
    /// Skip the per-write fsyncs (see the module's header).
    deferred: bool,
}

/// The entries of `dir` with UTF-8 names and their metadata (following links, as a
/// stat does); entries that vanish meanwhile are skipped.
fn entries_of(dir: &Path) -> std::io::Result<Vec<(String, std::fs::Metadata)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        match std::fs::metadata(entry.path()) {
            Ok(m) => found.push((name, m)),
            Err(e) if e.kind() == Io::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}

/// A file opened for a read: small reads are done at once.
enum Opened {
    /// The bytes asked for.
    Whole(Bytes),
    /// The file, at the offset to start at, and the length to read.
    File(std::fs::File, u64),
}

/// The disk store of one `[backends.*]` entry of type `fs`.
pub(super) struct FsStore {
    shared: Arc<Shared>,
    cap: Capability,
}

impl FsStore {
    /// Opens (creating) the store at `root`.
    pub(super) fn open(name: &str, root: &Path, deferred: bool) -> Result<Self> {
        let conf = |what: &str, e: std::io::Error| {
            Error::new(ErrorKind::Config, format!("backend {name}: cannot {what} {}", root.display())).with_source(e)
        };
        std::fs::create_dir_all(root).map_err(|e| conf("create", e))?;
        let root = root.canonicalize().map_err(|e| conf("open", e))?;
        std::fs::create_dir_all(root.join(SCRATCH)).map_err(|e| conf("create the scratch directory in", e))?;
        // A scratch file untouched for an hour is a write that died with its process (a
        // live one is written to at least every `body_idle_timeout`): nothing refers to
        // it. Younger ones may belong to another process on this root (`strata import`).
        let scratch = std::fs::read_dir(root.join(SCRATCH)).map_err(|e| conf("read the scratch directory in", e))?;
        for e in scratch.flatten() {
            let idle = e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
            if idle.is_some_and(|d| d > STALE_SCRATCH) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let shared = Shared { name: name.to_owned(), root, placing: tokio::sync::Mutex::new(()), deferred };
        let cap = Capability { presign: false, server_side_copy: None, native_headers: false };
        Ok(Self { shared: Arc::new(shared), cap })
    }
}

impl Shared {
    fn target(&self, path: &str) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(keymap::components(path, Shape::Tree));
        p
    }

    fn err(&self, what: &str, path: &str, e: std::io::Error) -> Error {
        Error::new(classify(&e), format!("backend {}: {what} {path:?}", self.name)).with_source(e)
    }

    /// The file that holds `path` now, if any: the target itself, or the [`SELF_NAME`]
    /// file inside it when it is a directory. One trip to the blocking pool.
    async fn locate(self: &Arc<Self>, path: &str) -> Result<Option<(PathBuf, std::fs::Metadata)>> {
        let (me, p) = (self.clone(), path.to_owned());
        tokio::task::spawn_blocking(move || me.locate_now(&p))
            .await
            .map_err(|e| Error::internal("fs locate task", e))?
    }

    /// [`Shared::locate`], blocking.
    fn locate_now(&self, path: &str) -> Result<Option<(PathBuf, std::fs::Metadata)>> {
        let target = self.target(path);
        let inside = target.join(SELF_NAME);
        for candidate in [target, inside] {
            match std::fs::metadata(&candidate) {
                Ok(m) if m.is_file() => return Ok(Some((candidate, m))),
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), Io::NotFound | Io::NotADirectory) => return Ok(None),
                Err(e) => return Err(self.err("stat", path, e)),
            }
        }
        Ok(None)
    }

    /// Opens `path` for reading `range` (whole when `None`), blocking: a small read is
    /// done at once, so reading a small object is one trip to the blocking pool instead
    /// of one per open, seek and read.
    fn open_now(&self, path: &str, range: Option<Range<u64>>) -> Result<Opened> {
        let not_found = || Error::new(ErrorKind::NotFound, format!("backend {}: no {path:?}", self.name));
        let (file, meta) = self.locate_now(path)?.ok_or_else(not_found)?;
        let f = std::fs::File::open(&file).map_err(|e| self.err("open", path, e))?;
        let size = meta.len();
        let r = range.unwrap_or(0..size);
        if r.start > size || r.start > r.end {
            return Err(Error::new(ErrorKind::InvalidRange, format!("{r:?} of a {size}-byte object")));
        }
        let len = r.end.min(size) - r.start;
        if len <= READ_CHUNK as u64 {
            let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, r.start).map_err(|e| self.err("read", path, e))?;
            return Ok(Opened::Whole(Bytes::from(buf)));
        }
        let mut f = f;
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(r.start)).map_err(|e| self.err("seek", path, e))?;
        Ok(Opened::File(f, len))
    }

    /// Moves the staged file `tmp` to where `path` lives; returns the directory it went
    /// into, still to be fsynced. Blocking: the caller holds `placing` on a blocking
    /// thread, so a placement is one thread hop, not one per directory level.
    fn place(&self, tmp: &Path, path: &str) -> std::io::Result<PathBuf> {
        let names = keymap::components(path, Shape::Tree);
        let mut dir = self.root.clone();
        for name in &names[..names.len() - 1] {
            dir.push(name);
            match std::fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => self.file_to_dir(&dir)?,
                Err(e) if e.kind() == Io::NotFound => match std::fs::create_dir(&dir) {
                    Err(e) if e.kind() != Io::AlreadyExists => return Err(e),
                    _ => {}
                },
                Err(e) => return Err(e),
            }
        }
        let target = dir.join(&names[names.len() - 1]);
        let dest = match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => target.join(SELF_NAME),
            _ => target,
        };
        std::fs::rename(tmp, &dest)?;
        Ok(dest.parent().unwrap_or(&self.root).to_owned())
    }

    /// Turns the file at `dir` into a directory holding it as [`SELF_NAME`].
    fn file_to_dir(&self, dir: &Path) -> std::io::Result<()> {
        let aside = self.root.join(SCRATCH).join(format!("move-{}", uuid::Uuid::new_v4().simple()));
        std::fs::rename(dir, &aside)?;
        std::fs::create_dir(dir)?;
        std::fs::rename(&aside, dir.join(SELF_NAME))?;
        sync_dir(dir)?;
        sync_dir(dir.parent().unwrap_or(&self.root))
    }

    /// Writes `body` (when given) to `tmp`, fsyncs it unless deferred, places it at `path`
    /// under `placing` and fsyncs its directory unless deferred. Blocking.
    fn store(&self, tmp: &Path, path: &str, body: Option<&[u8]>) -> std::io::Result<()> {
        if let Some(body) = body {
            let mut f = std::fs::File::create(tmp)?;
            std::io::Write::write_all(&mut f, body)?;
            if !self.deferred {
                f.sync_all()?;
            }
        }
        let dir = {
            let _guard = self.placing.blocking_lock();
            self.place(tmp, path)?
        };
        if self.deferred {
            return Ok(());
        }
        // A directory a concurrent delete emptied and removed meanwhile needs no fsync.
        match sync_dir(&dir) {
            Err(e) if e.kind() == Io::NotFound => Ok(()),
            other => other,
        }
    }

    /// Removes `from` and its ancestors while they are empty, up to the root.
    async fn prune(&self, mut from: PathBuf) {
        while from != self.root && from.starts_with(&self.root) {
            if tokio::fs::remove_dir(&from).await.is_err() {
                return;
            }
            if !from.pop() {
                return;
            }
        }
    }
}

/// Whether an I/O failure can pass: a full disk or a busy one may recover, a name the
/// file system refuses never does.
fn classify(e: &std::io::Error) -> ErrorKind {
    match e.kind() {
        Io::NotFound => ErrorKind::NotFound,
        Io::InvalidFilename | Io::IsADirectory | Io::NotADirectory | Io::InvalidInput => ErrorKind::InvalidKey,
        Io::TimedOut => ErrorKind::Timeout,
        _ => ErrorKind::Unavailable,
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Bodies up to this size stay in memory until the commit, which writes, syncs and places
/// them in one blocking call (a few system calls instead of a thread hop for each).
const SMALL_WRITE: usize = 1 << 20;

struct FsWriter {
    shared: Arc<Shared>,
    path: String,
    tmp: PathBuf,
    /// The body while it is small.
    buf: Option<Vec<u8>>,
    /// The scratch file, once the body outgrew `SMALL_WRITE`.
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[async_trait]
impl ObjectWriter for FsWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        if let Some(buf) = self.buf.as_mut() {
            if buf.len() + chunk.len() <= SMALL_WRITE {
                buf.extend_from_slice(&chunk);
                return Ok(());
            }
            let file =
                tokio::fs::File::create(&self.tmp).await.map_err(|e| self.shared.err("create", &self.path, e))?;
            let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
            let buf = self.buf.take().unwrap_or_default();
            file.write_all(&buf).await.map_err(|e| self.shared.err("write", &self.path, e))?;
            self.file = Some(file);
        }
        let Some(f) = self.file.as_mut() else { return Err(Error::new(ErrorKind::Internal, "write after close")) };
        f.write_all(&chunk).await.map_err(|e| self.shared.err("write", &self.path, e))
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        let body = match (self.buf.take(), self.file.take()) {
            (Some(buf), _) => Some(buf),
            (None, Some(mut f)) => {
                let flushed = async {
                    f.flush().await?;
                    if !self.shared.deferred {
                        f.get_mut().sync_all().await?;
                    }
                    Ok::<_, std::io::Error>(())
                };
                if let Err(e) = flushed.await {
                    let _ = tokio::fs::remove_file(&self.tmp).await;
                    return Err(self.shared.err("commit", &self.path, e));
                }
                None
            }
            (None, None) => return Err(Error::new(ErrorKind::Internal, "commit twice")),
        };
        let (shared, tmp, path) = (self.shared.clone(), self.tmp.clone(), self.path.clone());
        let done = tokio::task::spawn_blocking(move || {
            let r = shared.store(&tmp, &path, body.as_deref());
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        done.map_err(|e| self.shared.err("commit", &self.path, e))
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.buf = None;
        if self.file.take().is_some() {
            let _ = tokio::fs::remove_file(&self.tmp).await;
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for FsStore {
    async fn sync(&self) -> Result<()> {
        if !self.shared.deferred {
            return Ok(());
        }
        let root = self.shared.root.clone();
        let synced = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let dir = std::fs::File::open(&root)?;
            rustix::fs::syncfs(&dir).map_err(std::io::Error::from)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        synced.map_err(|e| self.shared.err("sync", "", e))
    }

    fn name(&self) -> &str {
        &self.shared.name
    }

    fn capability(&self) -> &Capability {
        &self.cap
    }

    fn check_path(&self, path: &str) -> Result<()> {
        let names = keymap::components(path, Shape::Tree);
        let len = self.shared.root.as_os_str().len() + names.iter().map(|n| n.len() + 1).sum::<usize>();
        // The longest name is the SELF_NAME file a directory may come to hold.
        if len + SELF_NAME.len() + 1 > PATH_MAX {
            return Err(Error::new(
                ErrorKind::KeyTooLong,
                format!("backend {}: the path of {path:?} would be longer than the disk allows", self.shared.name),
            ));
        }
        Ok(())
    }

    async fn writer(&self, path: &str, _opts: &WriteOptions) -> Result<Box<dyn ObjectWriter>> {
        self.check_path(path)?;
        let tmp = self.shared.root.join(SCRATCH).join(uuid::Uuid::new_v4().simple().to_string());
        let (buf, file) = (Some(Vec::new()), None);
        Ok(Box::new(FsWriter { shared: self.shared.clone(), path: path.to_owned(), tmp, buf, file }))
    }

    async fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<ByteStream> {
        let (shared, p) = (self.shared.clone(), path.to_owned());
        let opened = tokio::task::spawn_blocking(move || shared.open_now(&p, range))
            .await
            .map_err(|e| Error::internal("fs read task", e))??;
        let (f, len) = match opened {
            Opened::Whole(b) if b.is_empty() => return Ok(futures::stream::empty().boxed()),
            Opened::Whole(b) => return Ok(futures::stream::once(async move { Ok(b) }).boxed()),
            Opened::File(f, len) => (tokio::fs::File::from_std(f), len),
        };
        let body = f.take(len);
        let (shared, p) = (self.shared.clone(), path.to_owned());
        let stream = tokio_util::io::ReaderStream::with_capacity(body, READ_CHUNK);
        Ok(stream.map(move |r| r.map_err(|e| shared.err("read", &p, e))).boxed())
    }

    async fn stat(&self, path: &str) -> Result<Option<ObjectStat>> {
        let Some((_, meta)) = self.shared.locate(path).await? else { return Ok(None) };
        Ok(Some(ObjectStat {
            size: meta.len(),
            etag: None,
            last_modified_ms: modified_ms(&meta),
            content_type: None,
            headers: WriteOptions::default(),
        }))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let _guard = self.shared.placing.lock().await;
        let Some((file, _)) = self.shared.locate(path).await? else { return Ok(()) };
        match tokio::fs::remove_file(&file).await {
            Ok(()) => {}
            Err(e) if e.kind() == Io::NotFound => return Ok(()),
            Err(e) => return Err(self.shared.err("delete", path, e)),
        }
        if let Some(parent) = file.parent() {
            self.shared.prune(parent.to_owned()).await;
        }
        Ok(())
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ListEntry>> {
        // Walk from the directory that holds the prefix's last full segment.
        let dir_part = prefix.rfind('/').map_or("", |i| &prefix[..=i]);
        let mut names = keymap::components(&format!("{dir_part}x"), Shape::Tree);
        names.pop();
        let start = Walk { dir: self.shared.root.join(names.iter().collect::<PathBuf>()), names };
        let state =
            ListState { shared: self.shared.clone(), prefix: prefix.to_owned(), stack: vec![start], ready: Vec::new() };
        futures::stream::unfold(state, ListState::next).boxed()
    }

    async fn presign_read(&self, _: &str, _: Duration, _: Option<&str>) -> Result<Option<String>> {
        Ok(None)
    }
}

fn modified_ms(meta: &std::fs::Metadata) -> Option<i64> {
    let t = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(t.as_millis()).ok()
}

/// A directory still to read, and the names that lead to it from the root.
struct Walk {
    dir: PathBuf,
    names: Vec<String>,
}

struct ListState {
    shared: Arc<Shared>,
    prefix: String,
    stack: Vec<Walk>,
    /// Entries of the last directory read, in reverse order (popped from the end).
    ready: Vec<ListEntry>,
}

impl ListState {
    async fn next(mut self) -> Option<(Result<ListEntry>, Self)> {
        loop {
            if let Some(e) = self.ready.pop() {
                return Some((Ok(e), self));
            }
            let walk = self.stack.pop()?;
            if let Err(e) = self.read_dir(walk).await {
                self.stack.clear();
                return Some((Err(e), self));
            }
        }
    }

    /// Reads one directory: its files that are objects under the prefix go to `ready`,
    /// its directories onto the stack.
    async fn read_dir(&mut self, walk: Walk) -> Result<()> {
        // The whole directory in one trip to the blocking pool (it is sorted whole anyway),
        // not one per entry and per stat.
        let dir = walk.dir.clone();
        let listed = tokio::task::spawn_blocking(move || entries_of(&dir))
            .await
            .map_err(|e| Error::internal("fs list task", e))?;
        let mut found = match listed {
            Ok(found) => found,
            Err(e) if matches!(e.kind(), Io::NotFound | Io::NotADirectory) => return Ok(()),
            Err(e) => return Err(self.shared.err("list", &self.prefix, e)),
        };
        found.sort_by(|a, b| b.0.cmp(&a.0));
        for (name, meta) in found {
            let mut names = walk.names.clone();
            names.push(name);
            if meta.is_dir() {
                if keymap::is_walkable_dir(names.last().map_or("", String::as_str)) {
                    self.stack.push(Walk { dir: walk.dir.join(names.last().map_or("", String::as_str)), names });
                }
                continue;
            }
            let Some(path) = keymap::path_of(names.iter().map(String::as_str)) else { continue };
            if path.starts_with(&self.prefix) {
                self.ready.push(ListEntry {
                    path,
                    size: Some(meta.len()),
                    etag: None,
                    last_modified_ms: modified_ms(&meta),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    async fn put(b: &FsStore, path: &str, body: &[u8]) {
        let mut w = b.writer(path, &WriteOptions::default()).await.unwrap();
        w.write(Bytes::copy_from_slice(body)).await.unwrap();
        w.commit().await.unwrap();
    }

    async fn get(b: &FsStore, path: &str) -> Vec<u8> {
        let chunks: Vec<Bytes> = b.read(path, None).await.unwrap().try_collect().await.unwrap();
        chunks.concat()
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just(String::new()),
            Just(" ".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just(SELF_NAME.to_owned()),
            Just(SCRATCH.to_owned()),
            Just("é".repeat(140)),
        ]
    }

    #[test]
    fn leftovers_in_scratch_go_at_open() {
        let dir = tempfile::tempdir().unwrap();
        FsStore::open("fs", dir.path(), false).unwrap();
        let (dead, live) = (dir.path().join(SCRATCH).join("dead-write"), dir.path().join(SCRATCH).join("live-write"));
        std::fs::write(&dead, b"x").unwrap();
        std::fs::write(&live, b"y").unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::options().write(true).open(&dead).unwrap().set_modified(old).unwrap();
        FsStore::open("fs", dir.path(), false).unwrap();
        assert!(!dead.exists(), "a dead write's file goes");
        assert!(live.exists(), "a recent one may be another process's write in progress");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        /// Random keys S3 accepts, clashing ones included (`a` beside `a/b`, folders,
        /// long segments): every key reads back its last write, the listing is exactly
        /// the keys, and deleting them all leaves only the scratch directory.
        #[test]
        fn every_key_round_trips_and_lists(keys in proptest::collection::vec(proptest::collection::vec(segment(), 1..4), 1..12)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let b = FsStore::open("fs", dir.path(), false).unwrap();
                let mut want = BTreeMap::new();
                for (i, segs) in keys.iter().enumerate() {
                    let key = segs.join("/");
                    let body = format!("{i}");
                    put(&b, &key, body.as_bytes()).await;
                    want.insert(key, body);
                }
                for (k, body) in &want {
                    assert_eq!(get(&b, k).await, body.as_bytes(), "{k:?}");
                }
                let mut listed: Vec<String> = b.list("").map_ok(|e| e.path).try_collect().await.unwrap();
                listed.sort();
                assert_eq!(listed, want.keys().cloned().collect::<Vec<_>>());
                for k in want.keys() {
                    b.delete(k).await.unwrap();
                }
                let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
                assert_eq!(left, [SCRATCH], "deletes leave no directories");
            });
        }
    }
}
