//! What a key may do: rights, grants, roles, and the one decision of whether a set of
//! grants allows what a request needs. Pure: no I/O, no protocol (`api::s3::grants` says
//! what each S3 operation needs).
//!
//! A grant gives rights on one bucket, or on `*` (every bucket, also those made later),
//! under a key prefix ("" for the whole bucket). Grants only add: there is no deny, so the
//! answer is "some grant covers it". An object right needs a grant whose prefix starts the
//! key; a listing needs a grant whose prefix starts the listing's prefix (a listing may not
//! reach past its grant); a bucket-level call needs any grant on the bucket; bucket admin
//! (create, delete) needs `admin` on the bucket's whole; server admin (the admin API) needs
//! `admin` on `*` with no prefix.

use std::fmt;

/// One right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Right {
    /// GET and HEAD of objects.
    Read,
    /// PUT, copy onto, multipart uploads.
    Write,
    /// DELETE of objects.
    Delete,
    /// Listing keys and uploads.
    List,
    /// Creating and deleting buckets; on `*`, the admin API.
    Admin,
}

impl Right {
    /// Every right, in the order they are spelled.
    pub const ALL: [Right; 5] = [Right::Read, Right::Write, Right::Delete, Right::List, Right::Admin];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// The spelling in grants and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Right::Read => "read",
            Right::Write => "write",
            Right::Delete => "delete",
            Right::List => "list",
            Right::Admin => "admin",
        }
    }
}

/// A set of rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Rights(u8);

/// The named roles and the rights each stands for.
pub const ROLES: [(&str, &[Right]); 3] = [
    ("readonly", &[Right::Read, Right::List]),
    ("readwrite", &[Right::Read, Right::Write, Right::Delete, Right::List]),
    ("owner", &Right::ALL),
];

impl Rights {
    /// The set of `rights`.
    pub fn of(rights: &[Right]) -> Self {
        Self(rights.iter().fold(0, |acc, r| acc | r.bit()))
    }

    /// Whether `r` is in the set.
    pub fn has(self, r: Right) -> bool {
        self.0 & r.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parses `read,list` or role names (`readonly`), mixed; unknown words are errors.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut set = Rights::default();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            if let Some(r) = Right::ALL.iter().find(|r| r.as_str() == word) {
                set.0 |= r.bit();
            } else if let Some((_, rs)) = ROLES.iter().find(|(name, _)| *name == word) {
                set.0 |= Rights::of(rs).0;
            } else {
                return Err(format!(
                    "unknown right {word:?}: rights are read, write, delete, list, admin; roles are readonly, readwrite, owner"
                ));
            }
        }
        if set.is_empty() {
            return Err("no rights given".into());
        }
        Ok(set)
    }
}

impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Right::ALL.iter().filter(|r| self.has(**r)).map(|r| r.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

/// Rights on one bucket (or `*`) under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// A bucket name, or `*`.
    pub bucket: String,
    /// Key prefix; "" for the whole bucket.
    pub prefix: String,
    /// What it allows.
    pub rights: Rights,
}

/// What one request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// `right` on object `key` of `bucket`.
    Object(Right, &'a str, &'a str),
    /// Listing `bucket` under a prefix.
    List(&'a str, &'a str),
    /// Any right in `bucket` (HeadBucket, GetBucketLocation, GetBucketVersioning).
    Bucket(&'a str),
    /// `admin` on the whole of `bucket` (CreateBucket, DeleteBucket).
    BucketAdmin(&'a str),
    /// `admin` on `*` with no prefix: the admin API.
    Server,
}

impl Grant {
    fn on(&self, bucket: &str) -> bool {
        self.bucket == "*" || self.bucket == bucket
    }
}

/// Whether `grants` allow `need`.
pub fn allows(grants: &[Grant], need: Need<'_>) -> bool {
    grants.iter().any(|g| match need {
        Need::Object(r, b, key) => g.on(b) && g.rights.has(r) && key.starts_with(&g.prefix),
        Need::List(b, prefix) => g.on(b) && g.rights.has(Right::List) && prefix.starts_with(&g.prefix),
        Need::Bucket(b) => g.on(b) && !g.rights.is_empty(),
        Need::BucketAdmin(b) => g.on(b) && g.rights.has(Right::Admin) && g.prefix.is_empty(),
        Need::Server => g.bucket == "*" && g.rights.has(Right::Admin) && g.prefix.is_empty(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(bucket: &str, prefix: &str, rights: &str) -> Grant {
        Grant { bucket: bucket.into(), prefix: prefix.into(), rights: Rights::parse(rights).unwrap() }
    }

    #[test]
    fn rights_and_roles_parse_and_print() {
        assert_eq!(Rights::parse("readonly").unwrap().to_string(), "read,list");
        assert_eq!(Rights::parse("write, read").unwrap().to_string(), "read,write");
        assert_eq!(Rights::parse("owner").unwrap().to_string(), "read,write,delete,list,admin");
        assert!(Rights::parse("readd").unwrap_err().contains("unknown right"));
        assert!(Rights::parse(" , ").is_err());
    }

    #[test]
    fn prefixes_bound_objects_and_listings() {
        let gs = [g("pics", "u1/", "read,list"), g("*", "", "write")];
        assert!(allows(&gs, Need::Object(Right::Read, "pics", "u1/a.jpg")));
        assert!(!allows(&gs, Need::Object(Right::Read, "pics", "u2/a.jpg")));
        assert!(!allows(&gs, Need::Object(Right::Read, "other", "u1/a.jpg")));
        assert!(allows(&gs, Need::Object(Right::Write, "other", "x")), "* is every bucket");
        assert!(allows(&gs, Need::List("pics", "u1/2024")));
        assert!(!allows(&gs, Need::List("pics", "u1")), "a listing may not reach past its grant");
        assert!(!allows(&gs, Need::List("pics", "")));
        assert!(allows(&gs, Need::Bucket("pics")) && allows(&gs, Need::Bucket("any")));
        assert!(!allows(&gs, Need::BucketAdmin("pics")) && !allows(&gs, Need::Server));
        assert!(allows(&[g("*", "", "admin")], Need::Server));
        assert!(!allows(&[g("pics", "", "admin")], Need::Server), "bucket admin is not server admin");
        assert!(!allows(&[g("*", "x/", "admin")], Need::BucketAdmin("pics")));
    }
}
