//! The miss log: one JSON line per hot-tier miss, rotated by size.
//!
//! Lines are `{"ts":"<RFC 3339>","bucket":…,"key":…,"size":…,"reason":…}`. When the file
//! passes its size limit it becomes `misses.log.1` (replacing the previous one), so the log
//! never takes more than twice the limit. Writes are small appends under a mutex; a failed
//! write is logged and dropped, never failing the request that missed.

use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

/// Why a read missed the hot tier.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MissReason {
    /// Not in the hot tier (never fetched, or evicted).
    Absent,
    /// The hot file failed its checksum or vanished.
    Corrupt,
    /// The hot tier could not make room (all pinned, or the disk is full): served uncached.
    NoSpace,
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    bucket: &'a str,
    key: &'a str,
    size: u64,
    reason: MissReason,
}

/// An append-only, size-rotated JSON-lines file.
pub struct MissLog {
    path: PathBuf,
    max: u64,
    state: Mutex<Option<(std::fs::File, u64)>>,
}

impl MissLog {
    /// A log at `path` rotated past `max` bytes (0 turns it off).
    pub fn new(path: PathBuf, max: u64) -> Self {
        Self { path, max, state: Mutex::new(None) }
    }

    /// The log's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Appends one miss.
    pub fn record(&self, bucket: &str, key: &str, size: u64, reason: MissReason) {
        if self.max == 0 {
            return;
        }
        let ts =
            time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let Ok(mut line) = serde_json::to_vec(&Line { ts, bucket, key, size, reason }) else { return };
        line.push(b'\n');
        if let Err(e) = self.append(&line) {
            tracing::warn!(error = %e, path = %self.path.display(), "cannot write the miss log");
        }
    }

    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_some_and(|(_, len)| *len + line.len() as u64 > self.max) {
            *guard = None;
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            std::fs::rename(&self.path, rotated)?;
        }
        if guard.is_none() {
            let f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
            let len = f.metadata()?.len();
            *guard = Some((f, len));
        }
        if let Some((f, len)) = guard.as_mut() {
            f.write_all(line)?;
            *len += line.len() as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_past_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("misses.log");
        let log = MissLog::new(path.clone(), 1000);
        for i in 0..40 {
            log.record("b", &format!("key-{i}"), i, MissReason::Absent);
        }
        let cur = std::fs::read_to_string(&path).unwrap();
        let old = std::fs::read_to_string(dir.path().join("misses.log.1")).unwrap();
        assert!(cur.len() <= 1000 && old.len() <= 1000);
        let last: serde_json::Value = serde_json::from_str(cur.lines().last().unwrap()).unwrap();
        assert_eq!(last["key"], "key-39");
        assert_eq!(last["reason"], "absent");
        assert!(old.lines().count() > 5);
    }
}
