//! The in-memory index of hot chunks: which exist, which are filling, who reads them, and
//! how many bytes they hold on disk.
//!
//! Owns the byte accounting that makes `hot.max_size` a hard bound: a fill reserves its
//! whole file size (header included) before writing a byte, and an evicted file's bytes
//! stay counted until the file is unlinked. It does no I/O itself (callers unlink the paths
//! it hands back, then call [`Index::freed`]) and it is only touched under one mutex, with
//! no `.await` inside.

use super::eviction::{self, Eviction, EvictionKind};
use super::fill::Fill;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A chunk of one object version: (version hash, chunk index).
pub type ChunkKey = (u128, u32);

/// Where a chunk's bytes are.
pub enum State {
    /// Being fetched from the cold store into a temporary file.
    Filling(Arc<Fill>),
    /// Complete, at its final path.
    Ready,
}

/// One chunk file.
pub struct Entry {
    /// Unique per file, so a replaced chunk never shares a path with its predecessor.
    pub id: u64,
    /// Bucket of the object.
    pub bucket: String,
    /// Key of the object.
    pub key: String,
    /// Bytes the file occupies (header plus data).
    pub file_len: u64,
    /// Filling or ready.
    pub state: State,
    /// Readers holding the file open.
    pub pins: u32,
}

/// A file that left the index while readers still held it; unlinked when the last goes.
struct Doomed {
    path: PathBuf,
    file_len: u64,
    pins: u32,
    filling: bool,
}

/// What a lookup found.
pub enum Found {
    /// A complete chunk file, pinned for the caller.
    Ready(PathBuf, u64),
    /// A fill in progress, pinned for the caller.
    Filling(Arc<Fill>, u64),
}

/// The outcome of a reservation. Victims must be unlinked by the caller, which then
/// calls [`Index::freed`] with their sizes, before it writes anything.
pub enum Reserve {
    /// Reserved, after evicting these victims.
    Granted(Vec<(PathBuf, u64)>),
    /// The chunk is there already, ready or filling (pinned for the caller).
    Found(Found),
    /// Everything that could be evicted is pinned, or the disk is too full.
    NoSpace(Vec<(PathBuf, u64)>),
}

/// The index. See the module docs for the locking rule.
pub struct Index {
    root: PathBuf,
    entries: HashMap<ChunkKey, Entry>,
    by_object: HashMap<(String, String), HashSet<ChunkKey>>,
    doomed: HashMap<u64, Doomed>,
    policy: Box<dyn Eviction<ChunkKey>>,
    used: u64,
    max: u64,
    pins: Vec<(String, String)>,
    /// Chunks evicted by the policy since start.
    pub evictions: u64,
    /// Bytes evicted by the policy since start.
    pub evicted_bytes: u64,
}

/// The final path of chunk `k` written as file `id`, under `root`.
pub fn chunk_path(root: &Path, k: ChunkKey, id: u64) -> PathBuf {
    let hash = format!("{:032x}", k.0);
    root.join(&hash[..2]).join(format!("{hash}-{}.{id:016x}", k.1))
}

impl Index {
    /// An empty index of files under `root`, bounded to `max` bytes.
    pub fn new(root: PathBuf, max: u64, kind: EvictionKind) -> Self {
        Self {
            root,
            entries: HashMap::new(),
            by_object: HashMap::new(),
            doomed: HashMap::new(),
            policy: eviction::build(kind, max),
            used: 0,
            max,
            pins: Vec::new(),
            evictions: 0,
            evicted_bytes: 0,
        }
    }

    /// Bytes counted against the bound: every indexed file, fills at their full size, and
    /// files removed from the index but not yet unlinked.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Number of ready chunks.
    pub fn ready_count(&self) -> usize {
        self.entries.values().filter(|e| matches!(e.state, State::Ready)).count()
    }

    /// The path of entry `k` (present or not).
    pub fn path(&self, k: ChunkKey, id: u64) -> PathBuf {
        chunk_path(&self.root, k, id)
    }

    /// Sets the operator pins (bucket, key prefix).
    pub fn set_pins(&mut self, pins: Vec<(String, String)>) {
        self.pins = pins;
    }

    /// Adds a ready file found at start. Returns false (caller deletes it) when `k` is
    /// already indexed by another file or the file does not fit.
    pub fn adopt(&mut self, k: ChunkKey, id: u64, bucket: &str, key: &str, file_len: u64) -> bool {
        if self.entries.contains_key(&k) || self.used + file_len > self.max {
            return false;
        }
        self.insert(k, Entry { id, bucket: bucket.into(), key: key.into(), file_len, state: State::Ready, pins: 0 });
        self.policy.insert(k, file_len);
        true
    }

    fn insert(&mut self, k: ChunkKey, e: Entry) {
        self.used += e.file_len;
        self.by_object.entry((e.bucket.clone(), e.key.clone())).or_default().insert(k);
        self.entries.insert(k, e);
    }

    fn unlink_entry(&mut self, k: &ChunkKey) -> Option<Entry> {
        let e = self.entries.remove(k)?;
        let obj = (e.bucket.clone(), e.key.clone());
        if let Some(set) = self.by_object.get_mut(&obj) {
            set.remove(k);
            if set.is_empty() {
                self.by_object.remove(&obj);
            }
        }
        self.policy.remove(k);
        Some(e)
    }

    /// Whether chunk `k` is indexed (ready or filling); no pin, no hit.
    pub fn contains(&self, k: ChunkKey) -> bool {
        self.entries.contains_key(&k)
    }

    /// Finds chunk `k` and pins it for the caller, counting a hit for the policy.
    pub fn lookup(&mut self, k: ChunkKey) -> Option<Found> {
        let e = self.entries.get_mut(&k)?;
        e.pins += 1;
        let id = e.id;
        match &e.state {
            State::Ready => {
                self.policy.hit(&k);
                Some(Found::Ready(chunk_path(&self.root, k, id), id))
            }
            State::Filling(f) => Some(Found::Filling(f.clone(), id)),
        }
    }

    /// Joins the fill of `k`, or reserves `file_len` bytes for `fill` (evicting as needed),
    /// unless `disk_ok(bytes)` says the disk cannot take `bytes` more. The caller is pinned
    /// on whatever it gets.
    pub fn reserve(
        &mut self,
        k: ChunkKey,
        (bucket, key): (&str, &str),
        file_len: u64,
        fill: Arc<Fill>,
        disk_ok: &mut dyn FnMut(u64) -> bool,
    ) -> Reserve {
        if let Some(found) = self.lookup(k) {
            return Reserve::Found(found);
        }
        let mut victims: Vec<(PathBuf, u64)> = Vec::new();
        loop {
            // Victims stay in `used` until unlinked (so concurrent reservations cannot
            // count their bytes twice); this caller unlinks them before writing, so it
            // may count them as free.
            let pending: u64 = victims.iter().map(|v| v.1).sum();
            let fits = self.used - pending + file_len <= self.max;
            if fits && disk_ok(file_len.saturating_sub(pending)) {
                break;
            }
            match self.evict_one() {
                Some(Some(victim)) => victims.push(victim),
                Some(None) => {}
                None => return Reserve::NoSpace(victims),
            }
        }
        let e = Entry {
            id: fill.id,
            bucket: bucket.into(),
            key: key.into(),
            file_len,
            state: State::Filling(fill),
            pins: 1,
        };
        self.insert(k, e);
        Reserve::Granted(victims)
    }

    /// Takes a new bound (a config reload) and evicts down to it; returns the victims,
    /// which the caller unlinks. Pinned, filling and read entries are kept, so the index
    /// can stay above a lowered bound until they are let go.
    pub fn set_max(&mut self, max: u64) -> Vec<(PathBuf, u64)> {
        self.max = max;
        self.policy.resize(max);
        let mut victims: Vec<(PathBuf, u64)> = Vec::new();
        while self.used - victims.iter().map(|v| v.1).sum::<u64>() > self.max {
            match self.evict_one() {
                Some(Some(victim)) => victims.push(victim),
                Some(None) => {}
                None => break,
            }
        }
        victims
    }

    /// Asks the policy for one victim it may take (ready, unread, unpinned) and drops it
    /// from the index: `Some(Some((path, bytes)))` for the caller to unlink, `Some(None)`
    /// when the policy named a key the index no longer has, `None` when nothing may go.
    fn evict_one(&mut self) -> Option<Option<(PathBuf, u64)>> {
        let (entries, pins) = (&self.entries, &self.pins);
        let evictable = &mut |c: &ChunkKey| {
            entries.get(c).is_some_and(|e| {
                e.pins == 0
                    && matches!(e.state, State::Ready)
                    && !pins.iter().any(|(b, p)| *b == e.bucket && e.key.starts_with(p.as_str()))
            })
        };
        let v = self.policy.evict(evictable)?;
        Some(self.unlink_entry(&v).map(|e| {
            self.evictions += 1;
            self.evicted_bytes += e.file_len;
            (chunk_path(&self.root, v, e.id), e.file_len)
        }))
    }

    /// The bound in force.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Doomed files nobody holds: the caller unlinks them and calls [`Index::freed`].
    pub fn take_unlinkable(&mut self) -> Vec<(PathBuf, u64)> {
        let ids: Vec<u64> = self.doomed.iter().filter(|(_, d)| d.pins == 0 && !d.filling).map(|(i, _)| *i).collect();
        ids.into_iter().filter_map(|i| self.doomed.remove(&i)).map(|d| (d.path, d.file_len)).collect()
    }

    /// Bytes of unlinked files leave the bound.
    pub fn freed(&mut self, bytes: u64) {
        self.used = self.used.saturating_sub(bytes);
    }

    /// A fill of `k` (file `id`) finished and its file is at its final path. Returns false
    /// when the entry was invalidated meanwhile: the caller unlinks the file (and the
    /// bytes are freed through `take_unlinkable`).
    pub fn complete(&mut self, k: ChunkKey, id: u64) -> bool {
        if let Some(e) = self.entries.get_mut(&k)
            && e.id == id
        {
            e.state = State::Ready;
            let len = e.file_len;
            self.policy.insert(k, len);
            return true;
        }
        if let Some(d) = self.doomed.get_mut(&id) {
            d.filling = false;
        }
        false
    }

    /// A fill of `k` failed: its reservation is dropped; its temporary file is unlinked by
    /// the caller, whose bytes are then freed with [`Index::freed`].
    pub fn fail(&mut self, k: ChunkKey, id: u64) {
        if self.entries.get(&k).is_some_and(|e| e.id == id) {
            if let Some(e) = self.unlink_entry(&k) {
                // The temp file is the caller's to unlink; the readers still pinning the
                // failed fill only need their pins to resolve to nothing.
                let (file_len, pins) = (e.file_len, e.pins);
                self.doomed.insert(id, Doomed { path: PathBuf::new(), file_len, pins, filling: false });
            }
        } else if let Some(d) = self.doomed.get_mut(&id) {
            d.filling = false;
            d.path = PathBuf::new();
        }
    }

    /// Drops a reader's pin on file `id` of `k`.
    pub fn unpin(&mut self, k: ChunkKey, id: u64) {
        if let Some(e) = self.entries.get_mut(&k)
            && e.id == id
        {
            e.pins = e.pins.saturating_sub(1);
        } else if let Some(d) = self.doomed.get_mut(&id) {
            d.pins = d.pins.saturating_sub(1);
        }
    }

    /// Removes chunk `k` if it is file `id` (corrupt or missing on disk).
    pub fn discard(&mut self, k: ChunkKey, id: u64) {
        if self.entries.get(&k).is_some_and(|e| e.id == id) {
            self.doom(k);
        }
    }

    /// Moves `k` out of the index; its file goes once no reader holds it.
    fn doom(&mut self, k: ChunkKey) {
        let Some(e) = self.unlink_entry(&k) else { return };
        let filling = matches!(e.state, State::Filling(_));
        let path = chunk_path(&self.root, k, e.id);
        self.doomed.insert(e.id, Doomed { path, file_len: e.file_len, pins: e.pins, filling });
    }

    /// Drops every chunk of `bucket`/`key` whose version hash is not `keep`.
    pub fn invalidate(&mut self, bucket: &str, key: &str, keep: Option<u128>) {
        let Some(set) = self.by_object.get(&(bucket.to_owned(), key.to_owned())) else { return };
        let gone: Vec<ChunkKey> = set.iter().filter(|c| Some(c.0) != keep).copied().collect();
        for k in gone {
            self.doom(k);
        }
    }

    /// Drops every chunk of objects in `bucket` whose key starts with `prefix`; returns
    /// how many chunks and bytes.
    pub fn evict_prefix(&mut self, bucket: &str, prefix: &str) -> (u64, u64) {
        let gone: Vec<ChunkKey> = self
            .by_object
            .iter()
            .filter(|((b, k), _)| b == bucket && k.starts_with(prefix))
            .flat_map(|(_, set)| set.iter().copied())
            .collect();
        let mut bytes = 0;
        for k in &gone {
            bytes += self.entries.get(k).map_or(0, |e| e.file_len);
            self.doom(*k);
        }
        (gone.len() as u64, bytes)
    }
}
