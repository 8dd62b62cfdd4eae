//! S3 listing semantics (prefix, delimiter, marker, max-keys) over the catalog's ordered scan.
//!
//! Keys under a common prefix are rolled up into one entry and skipped with one jump of the
//! scan cursor, so a listing costs O(page) queries, not O(keys under the prefix).

use super::{Catalog, ObjectRecord};
use crate::error::Result;

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only keys starting with this.
    pub prefix: String,
    /// Roll keys up to the first occurrence of this after the prefix.
    pub delimiter: Option<String>,
    /// Only entries (keys or common prefixes) strictly after this.
    pub after: Option<String>,
    /// Most entries (objects plus common prefixes) returned.
    pub max_keys: usize,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Objects, in key order.
    pub objects: Vec<ObjectRecord>,
    /// Common prefixes, in order.
    pub common_prefixes: Vec<String>,
    /// Whether more entries follow.
    pub truncated: bool,
    /// The last entry returned (key or common prefix) when truncated: the next marker.
    pub next_marker: Option<String>,
}

enum Entry {
    Object(Box<ObjectRecord>),
    Prefix(String),
}

/// Scan rows fetched per query.
const SCAN_BATCH: usize = 1000;

impl Catalog {
    /// Lists `bucket` as S3's ListObjects does.
    pub async fn list(&self, bucket: &str, q: &ListQuery) -> Result<ListPage> {
        let mut entries: Vec<Entry> = Vec::new();
        let after = q.after.clone().unwrap_or_default();
        let mut cursor = after.clone();
        let mut last_prefix: Option<String> = None;
        let want = q.max_keys.saturating_add(1);
        'scan: while q.max_keys > 0 && entries.len() < want {
            let batch =
                self.scan_objects(bucket, &q.prefix, &cursor, SCAN_BATCH.min(want - entries.len()).max(1)).await?;
            if batch.is_empty() {
                break;
            }
            for row in batch {
                if !row.key.starts_with(&q.prefix) {
                    break 'scan;
                }
                cursor.clone_from(&row.key);
                let rolled = q.delimiter.as_deref().filter(|d| !d.is_empty()).and_then(|d| {
                    let rest = &row.key[q.prefix.len()..];
                    rest.find(d).map(|i| row.key[..q.prefix.len() + i + d.len()].to_owned())
                });
                match rolled {
                    Some(cp) => {
                        // Jump past every key under this prefix: U+10FFFF sorts after any
                        // continuation, and a key equal to the jump target rolls up anyway.
                        cursor = format!("{cp}\u{10FFFF}");
                        if cp > after && last_prefix.as_deref() != Some(cp.as_str()) {
                            last_prefix = Some(cp.clone());
                            entries.push(Entry::Prefix(cp));
                        }
                        continue 'scan;
                    }
                    None => entries.push(Entry::Object(Box::new(row))),
                }
                if entries.len() >= want {
                    break 'scan;
                }
            }
        }
        let truncated = entries.len() > q.max_keys;
        entries.truncate(q.max_keys);
        let mut page = ListPage { truncated, ..ListPage::default() };
        if truncated {
            page.next_marker = entries.last().map(|e| match e {
                Entry::Object(o) => o.key.clone(),
                Entry::Prefix(p) => p.clone(),
            });
        }
        for e in entries {
            match e {
                Entry::Object(o) => page.objects.push(*o),
                Entry::Prefix(p) => page.common_prefixes.push(p),
            }
        }
        Ok(page)
    }
}
