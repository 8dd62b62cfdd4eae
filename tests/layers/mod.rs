//! The module graph stays the one ARCHITECTURE.md draws (issue 13).
//!
//! ARCHITECTURE.md has a fenced `layers` block: one line per layer, top first, each naming
//! modules (`tier`, `api::web`). A module may use modules on lower lines only; modules on
//! one line never use each other, so the graph has no cycle. A file belongs to the longest
//! listed module that contains it (`src/tier/hot/fill.rs` is `tier::hot`). This test reads
//! every file under `src/`, finds each `crate::…` and `super::…` path outside comments, and
//! fails on any that points sideways or up, or names a module the block does not list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers of ARCHITECTURE.md: module → rank (0 is the top).
fn layers(doc: &str) -> BTreeMap<String, usize> {
    let block = doc.split("```layers\n").nth(1).and_then(|b| b.split("```").next()).expect("a ```layers block");
    let mut ranks = BTreeMap::new();
    for (rank, line) in block.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        for m in line.split_whitespace() {
            assert!(ranks.insert(m.to_owned(), rank).is_none(), "{m} is listed twice");
        }
    }
    ranks
}

/// The module path of a source file (`src/api/web/mod.rs` → `["api", "web"]`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src").with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The listed module that owns `path` (the longest listed prefix).
fn unit(ranks: &BTreeMap<String, usize>, path: &[String]) -> Option<String> {
    (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|m| ranks.contains_key(m))
}

/// Source text without comments and string literals (a doc comment may name any module).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if !in_str && c == '/' && chars.peek() == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                out.push(c);
            }
            prev = c;
        }
        out.push('\n');
    }
    out
}

/// Every module path a file's code names through `crate::` or `super::`, resolved from
/// `me` (the file's own module path), with `use` groups expanded one level. Past an inline
/// `mod tests {`, `super` is the file's own module.
fn references(code: &str, me: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let inline = code.find("mod tests {").unwrap_or(code.len());
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start).map(|i| i + from) {
            from = i + start.len();
            if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':') {
                continue;
            }
            let mut base: Vec<String> = match start {
                "crate::" => Vec::new(),
                _ if i > inline => me.to_vec(),
                _ => me[..me.len().saturating_sub(1)].to_vec(),
            };
            let mut rest = &code[from..];
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            for tail in expand(rest) {
                // `super::*` (a test module's glob) names no module of its own.
                if tail.is_empty() {
                    continue;
                }
                let mut p = base.clone();
                p.extend(tail);
                found.push(p);
            }
        }
    }
    found
}

/// The paths of `a::b::{c, d::e}` after the prefix: `[a, b, c]`, `[a, b, d, e]`.
fn expand(rest: &str) -> Vec<Vec<String>> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut path = Vec::new();
    let mut s = rest;
    loop {
        if let Some(group) = s.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            return inner
                .split(',')
                .map(|item| {
                    let mut p = path.clone();
                    p.extend(item.trim().split("::").map(ident).filter(|i| !i.is_empty()));
                    p
                })
                .collect();
        }
        let id = ident(s);
        if id.is_empty() {
            return vec![path];
        }
        s = &s[id.len()..];
        path.push(id);
        match s.strip_prefix("::") {
            Some(r) => s = r,
            None => return vec![path],
        }
    }
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_follow_the_documented_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ranks = layers(&std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md"));
    let src = root.join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let me = module_of(&src, file);
        if me == ["lib"] || me == ["main"] {
            continue;
        }
        let Some(from) = unit(&ranks, &me) else {
            wrong.push(format!("{}: module {} is not in the layers block", file.display(), me.join("::")));
            continue;
        };
        let code = code_only(&std::fs::read_to_string(file).expect("a source file"));
        for path in references(&code, &me) {
            let Some(to) = unit(&ranks, &path) else { continue };
            let owned_below = to.starts_with(&format!("{from}::"));
            if to == from || owned_below || ranks[&to] > ranks[&from] {
                continue;
            }
            wrong.push(format!("{}: {from} uses {to} ({})", file.display(), path.join("::")));
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(wrong.is_empty(), "imports against ARCHITECTURE.md's layers:\n{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_what_it_must() {
    let me: Vec<String> = ["api", "web", "serve"].iter().map(|s| s.to_string()).collect();
    let code = code_only(
        "use super::{Body, Web};\nuse crate::{tier::Tier, catalog};\nlet x = super::super::admin::PREFIX; // crate::server\n\"crate::cli\";\nmod tests {\nuse super::Plan;\n}",
    );
    let refs: Vec<String> = references(&code, &me).iter().map(|p| p.join("::")).collect();
    assert!(refs.contains(&"api::web::Body".to_owned()), "{refs:?}");
    assert!(refs.contains(&"tier::Tier".to_owned()) && refs.contains(&"catalog".to_owned()), "{refs:?}");
    assert!(refs.contains(&"api::admin::PREFIX".to_owned()), "{refs:?}");
    assert!(refs.contains(&"api::web::serve::Plan".to_owned()), "a test module's super: {refs:?}");
    assert!(!refs.iter().any(|r| r.starts_with("server") || r.starts_with("cli")), "comments and strings: {refs:?}");
}
