//! How a path (a bucket's prefix plus a key) is named inside a store, so that every key S3
//! accepts has exactly one name there and the name reads back as the key.
//!
//! Ordinary keys are stored under their own name. A segment (the text between two `/`)
//! is escaped only when a store or OpenDAL would rewrite or refuse it: an empty segment
//! (`a//b`, `/a`, `a/`), `.` and `..`, leading whitespace at the start of the path or
//! trailing whitespace at its end (OpenDAL trims them), and names this module reserves.
//! An escaped segment is [`ESCAPED`] followed by the segment with `~` and whitespace
//! written as `~XX` (hex of their UTF-8 bytes; not `%`, which some stores' URL handling
//! decodes twice). Disk stores ([`Shape::Tree`]) also split a segment longer than a file
//! name may be (255 bytes) into directories, each but the last named [`CONTINUED`] and
//! its piece. `docs/design/fs-layout.md` has the whole scheme.
//!
//! Pure functions only: placing an object whose key is also a directory (`a/b` beside
//! `a/b/c`) depends on what is on disk and belongs to the fs store.

/// Starts the name of an escaped segment (or of the last piece of a split one).
pub const ESCAPED: &str = ".strata~";
/// Starts every piece but the last of a segment split over several directories.
pub const CONTINUED: &str = ".strata+";
/// The file inside directory `a/b` that holds the object `a/b` itself.
pub const SELF_NAME: &str = ".strata=object";
/// The disk store's staging directory at its root.
pub const SCRATCH: &str = ".strata-tmp";
/// The longest file name a disk takes (Linux's NAME_MAX).
pub const NAME_MAX: usize = 255;

/// How a store lays names out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One flat namespace (S3, GCS, Azure Blob): segments joined by `/`, no length limit
    /// per segment.
    Flat,
    /// Directories and files (a disk): no segment longer than [`NAME_MAX`].
    Tree,
}

fn is_reserved(seg: &str) -> bool {
    seg.starts_with(ESCAPED) || seg.starts_with(CONTINUED) || seg.starts_with(".strata=") || seg == SCRATCH
}

fn needs_escape(seg: &str, first: bool, last: bool) -> bool {
    seg.is_empty()
        || seg == "."
        || seg == ".."
        || is_reserved(seg)
        || (first && seg.starts_with(char::is_whitespace))
        || (last && seg.ends_with(char::is_whitespace))
}

/// The escape character inside an escaped segment.
const ESC: char = '~';

/// `~` and whitespace as `~XX` of their UTF-8 bytes; everything else as it is.
fn encode(seg: &str) -> String {
    let mut out = String::with_capacity(seg.len() + 8);
    for c in seg.chars() {
        if c == ESC || c.is_whitespace() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("{ESC}{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == ESC as u8 {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Splits `text` into pieces of at most `max` bytes, never inside a character or a `~XX`.
fn pieces(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        // Step back over a `~` or `~X` that the cut would separate from its digits.
        if let Some(p) = rest[..cut].rfind(ESC)
            && p + 3 > cut
        {
            cut = p;
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out.push(rest);
    out
}

/// The names (directories, then the file) that hold `path` in a store of `shape`.
pub fn components(path: &str, shape: Shape) -> Vec<String> {
    let segs: Vec<&str> = path.split('/').collect();
    let n = segs.len();
    let mut out = Vec::with_capacity(n);
    for (i, seg) in segs.iter().enumerate() {
        let long = shape == Shape::Tree && seg.len() > NAME_MAX;
        if !long && !needs_escape(seg, i == 0, i + 1 == n) {
            out.push((*seg).to_owned());
            continue;
        }
        let text = encode(seg);
        let max = match shape {
            Shape::Flat => usize::MAX,
            Shape::Tree => NAME_MAX - ESCAPED.len(),
        };
        let parts = pieces(&text, max);
        let last = parts.len() - 1;
        for (j, p) in parts.into_iter().enumerate() {
            out.push(format!("{}{p}", if j == last { ESCAPED } else { CONTINUED }));
        }
    }
    out
}

/// The store's name of `path` in a flat store.
pub fn flat_name(path: &str) -> String {
    components(path, Shape::Flat).join("/")
}

/// The path a store's names stand for, or `None` when they are not a name this module
/// gives (a directory, or a file strata did not write such as its staging directory).
/// A trailing [`SELF_NAME`] stands for its directory.
pub fn path_of<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut segs: Vec<String> = Vec::new();
    let mut pending: Option<String> = None;
    let mut self_named = false;
    for name in names {
        if self_named {
            return None;
        }
        if let Some(piece) = name.strip_prefix(CONTINUED) {
            pending.get_or_insert_with(String::new).push_str(piece);
        } else if let Some(piece) = name.strip_prefix(ESCAPED) {
            let mut text = pending.take().unwrap_or_default();
            text.push_str(piece);
            segs.push(decode(&text)?);
        } else if name == SELF_NAME {
            self_named = true;
        } else if is_reserved(name) || pending.is_some() {
            return None;
        } else {
            segs.push(name.to_owned());
        }
    }
    if pending.is_some() || segs.is_empty() {
        return None;
    }
    Some(segs.join("/"))
}

/// Whether a directory named `name` can hold names this module gives (so a listing walks
/// into it): not the staging directory nor another reserved name.
pub fn is_walkable_dir(name: &str) -> bool {
    !is_reserved(name) || name.starts_with(CONTINUED) || name.starts_with(ESCAPED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(path: &str, shape: Shape) -> Option<String> {
        let names = components(path, shape);
        path_of(names.iter().map(String::as_str))
    }

    #[test]
    fn ordinary_keys_keep_their_names() {
        for p in ["a", "photos/2024/cat.jpg", "b/ünï code (1).txt", "100%", "a b/c d", ".hidden", ".strata"] {
            assert_eq!(flat_name(p), p);
            assert_eq!(components(p, Shape::Tree).join("/"), p);
        }
    }

    #[test]
    fn irregular_segments_are_escaped_and_read_back() {
        let cases = [
            (" ", ".strata~~20"),
            ("a//b", "a/.strata~/b"),
            ("/a", ".strata~/a"),
            ("dir/", "dir/.strata~"),
            (".", ".strata~."),
            ("a/../b", "a/.strata~../b"),
            (".strata-tmp/x", ".strata~.strata-tmp/x"),
            (" lead/trail ", ".strata~~20lead/.strata~trail~20"),
            ("50%/x~ ", "50%/.strata~x~7E~20"),
        ];
        for (path, name) in cases {
            assert_eq!(flat_name(path), name, "{path:?}");
            assert_eq!(round_trip(path, Shape::Flat).as_deref(), Some(path), "{path:?}");
            assert_eq!(round_trip(path, Shape::Tree).as_deref(), Some(path), "{path:?}");
        }
    }

    #[test]
    fn long_segments_split_on_disks_only() {
        let long = format!("{}/tail", "é".repeat(200));
        let names = components(&long, Shape::Tree);
        assert!(names.iter().all(|n| n.len() <= NAME_MAX), "{names:?}");
        assert!(names[0].starts_with(CONTINUED) && names[1].starts_with(ESCAPED));
        assert_eq!(round_trip(&long, Shape::Tree).as_deref(), Some(long.as_str()));
        assert_eq!(flat_name(&long), long, "a flat store takes the segment as it is");
    }

    #[test]
    fn foreign_names_are_not_objects() {
        assert_eq!(path_of([SCRATCH, "abc"]), None);
        assert_eq!(path_of([".strata+abc"]), None, "a dangling piece is a directory");
        assert_eq!(path_of(["a", SELF_NAME]).as_deref(), Some("a"));
        assert_eq!(path_of(["a", SELF_NAME, "b"]), None);
        assert!(!is_walkable_dir(SCRATCH));
        assert!(is_walkable_dir("photos") && is_walkable_dir(".strata~x"));
    }

    proptest! {
        /// Every key round-trips, no name is empty, `.`, `..` or longer than a file name,
        /// and two different paths never get the same names.
        #[test]
        fn names_are_faithful(a in "[a/. %é\\-~+=s]{0,40}|( |a|/|.|%|x{90}|é{70}){1,8}", b in "[a/. ]{0,6}") {
            for shape in [Shape::Flat, Shape::Tree] {
                let names = components(&a, shape);
                prop_assert_eq!(round_trip(&a, shape), Some(a.clone()));
                let joined = names.join("/");
                prop_assert!(joined.trim() == joined && !joined.starts_with('/') && !joined.ends_with('/'));
                for n in &names {
                    prop_assert!(!n.is_empty() && n != "." && n != "..");
                    if shape == Shape::Tree {
                        prop_assert!(n.len() <= NAME_MAX, "{} bytes", n.len());
                    }
                }
                if a != b && !b.is_empty() && !a.is_empty() {
                    prop_assert_ne!(names, components(&b, shape));
                }
            }
        }
    }
}
