//! Which right each S3 operation needs, checked by s3s's access hook after the signature
//! and before the body is read or any store or catalog work is done (so a refusal never
//! reveals whether a bucket or key exists: it is `AccessDenied`, never `NoSuchBucket`).
//!
//! | operation | needs |
//! |---|---|
//! | GetObject, HeadObject, GetObjectAttributes | `read` on the key |
//! | PutObject, multipart (create, part, complete, abort, list parts) | `write` on the key |
//! | CopyObject, UploadPartCopy | `write` on the target and `read` on the source |
//! | DeleteObject | `delete` on the key |
//! | DeleteObjects | a grant on the bucket; then `delete` on each key, refused one by one |
//! | ListObjects(V2), ListObjectVersions, ListMultipartUploads | `list` covering the request's prefix |
//! | HeadBucket, GetBucketLocation, GetBucketVersioning | any grant on the bucket |
//! | CreateBucket, DeleteBucket, anything else on a bucket | `admin` on the whole bucket |
//! | ListBuckets | nothing; it shows only the buckets the key has a grant on |
//!
//! The key's source networks are checked here too. The [`Principal`] is left in the
//! request's extensions for the handlers that filter (ListBuckets, DeleteObjects).

use crate::auth::Keyring;
use crate::auth::keyring::Principal;
use crate::auth::rights::{Need, Right};
use s3s::access::{S3Access, S3AccessContext};
use s3s::path::S3Path;
use s3s::{S3Result, s3_error};
use std::sync::Arc;

/// The access hook.
pub struct Access(pub Keyring);

/// The request's key, put into the extensions by [`Access`].
#[derive(Clone)]
pub struct Caller(pub Arc<Principal>);

/// What `op` needs on `path`; `prefix` is a listing's prefix and `source` a copy's
/// (bucket, key). An empty answer needs nothing (ListBuckets, DeleteObjects' first step
/// aside); `None` is a request no grant can allow.
pub fn needs<'a>(
    op: &str,
    path: &'a S3Path,
    prefix: &'a str,
    source: Option<(&'a str, &'a str)>,
) -> Option<Vec<Need<'a>>> {
    let obj = |r: Right| match path {
        S3Path::Object { bucket, key } => Some(vec![Need::Object(r, bucket, key)]),
        _ => None,
    };
    let bucket = match path {
        S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => Some(&**bucket),
        S3Path::Root => None,
    };
    match op {
        "ListBuckets" => Some(Vec::new()),
        "GetObject" | "HeadObject" | "GetObjectAttributes" => obj(Right::Read),
        "PutObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "CompleteMultipartUpload"
        | "AbortMultipartUpload"
        | "ListParts" => obj(Right::Write),
        "CopyObject" | "UploadPartCopy" => {
            let (sb, sk) = source?;
            let mut n = obj(Right::Write)?;
            n.push(Need::Object(Right::Read, sb, sk));
            Some(n)
        }
        "DeleteObject" => obj(Right::Delete),
        "DeleteObjects" | "HeadBucket" | "GetBucketLocation" | "GetBucketVersioning" => {
            Some(vec![Need::Bucket(bucket?)])
        }
        "ListObjects" | "ListObjectsV2" | "ListObjectVersions" | "ListMultipartUploads" => {
            Some(vec![Need::List(bucket?, prefix)])
        }
        _ => Some(vec![bucket.map_or(Need::Server, Need::BucketAdmin)]),
    }
}

impl Caller {
    /// The key of a request [`Access`] let through; `None` only for requests served
    /// without a signature check, which are then allowed nothing (fail closed).
    pub fn of(ext: &http::Extensions) -> Option<Arc<Principal>> {
        ext.get::<Caller>().map(|c| c.0.clone())
    }

    /// Whether the request's key may see `bucket` in ListBuckets.
    pub fn sees(who: Option<&Principal>, bucket: &str) -> bool {
        who.is_some_and(|w| w.allows(Need::Bucket(bucket)))
    }

    /// Whether the request's key may delete `key` of `bucket` (DeleteObjects, per key).
    pub fn may_delete(who: Option<&Principal>, bucket: &str, key: &str) -> bool {
        who.is_some_and(|w| w.allows(Need::Object(Right::Delete, bucket, key)))
    }
}

fn denied() -> s3s::S3Error {
    s3_error!(AccessDenied, "Access Denied")
}

impl Access {
    /// Whether `who` may make the request of `cx`.
    fn allowed(&self, who: &Principal, cx: &S3AccessContext<'_>) -> bool {
        let query = cx.uri().query().unwrap_or("");
        let prefix = crate::http::query::value(query, "prefix").unwrap_or_default();
        let copy = cx.headers().get("x-amz-copy-source").and_then(|v| v.to_str().ok());
        let source = copy.map(s3s::dto::CopySource::parse);
        let source = match &source {
            Some(Ok(s3s::dto::CopySource::Bucket { bucket, key, .. })) => Some((&**bucket, &**key)),
            _ => None,
        };
        needs(cx.s3_op().name(), cx.s3_path(), &prefix, source).is_some_and(|ns| ns.into_iter().all(|n| who.allows(n)))
    }
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(id) = cx.credentials().map(|c| c.access_key.clone()) else {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        };
        // s3s has just checked the signature with this key's secret, so it is loaded.
        let Some(mut who) = self.0.principal(&id) else { return Err(denied()) };
        let ip = cx.extensions_mut().get::<crate::http::Peer>().map(|p| p.0.ip());
        if !ip.is_none_or(|ip| who.reaches_from(ip)) {
            return Err(s3_error!(AccessDenied, "this key may not be used from your address"));
        }
        if !who.root && !self.allowed(&who, cx) {
            // A grant made on another node moments ago: reread once, then decide.
            self.0.reread_soon().await;
            let again = self.0.principal(&id);
            match again {
                Some(w) if self.allowed(&w, cx) => who = w,
                _ => return Err(denied()),
            }
        }
        cx.extensions_mut().insert(Caller(who));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::rights::{Grant, Rights};
    use proptest::prelude::*;

    /// The rules of the module's table, written out once more per operation, without
    /// `Need` or `rights::allows`: the model the property test holds the code to.
    fn model(grants: &[Grant], op: &str, bucket: &str, key: &str, prefix: &str, src: (&str, &str)) -> bool {
        let on = |g: &Grant, b: &str| g.bucket == "*" || g.bucket == b;
        let has = |g: &Grant, r: &str| g.rights.to_string().split(',').any(|x| x == r);
        let object =
            |r: &str, b: &str, k: &str| grants.iter().any(|g| on(g, b) && has(g, r) && k.starts_with(&g.prefix));
        let any_in = |b: &str| grants.iter().any(|g| on(g, b));
        match op {
            "GetObject" | "HeadObject" => object("read", bucket, key),
            "PutObject" | "UploadPart" | "CompleteMultipartUpload" => object("write", bucket, key),
            "CopyObject" => object("write", bucket, key) && object("read", src.0, src.1),
            "DeleteObject" => object("delete", bucket, key),
            "DeleteObjects" | "HeadBucket" => any_in(bucket),
            "ListObjectsV2" => grants.iter().any(|g| on(g, bucket) && has(g, "list") && prefix.starts_with(&g.prefix)),
            "CreateBucket" => grants.iter().any(|g| on(g, bucket) && has(g, "admin") && g.prefix.is_empty()),
            _ => unreachable!("the strategy draws only the operations above"),
        }
    }

    const OPS: [&str; 10] = [
        "GetObject",
        "HeadObject",
        "PutObject",
        "UploadPart",
        "CompleteMultipartUpload",
        "CopyObject",
        "DeleteObject",
        "DeleteObjects",
        "ListObjectsV2",
        "CreateBucket",
    ];

    fn grant() -> impl Strategy<Value = Grant> {
        let bucket = prop::sample::select(vec!["a", "b", "*"]);
        let prefix = prop::sample::select(vec!["", "x/", "x/y", "z"]);
        (bucket, prefix, 1u8..32).prop_map(|(b, p, bits)| {
            let rs: Vec<Right> = Right::ALL.iter().copied().filter(|r| bits & (1 << (*r as u8)) != 0).collect();
            Grant { bucket: b.into(), prefix: p.into(), rights: Rights::of(&rs) }
        })
    }

    proptest! {
        #[test]
        fn random_grants_decide_as_the_model(
            grants in prop::collection::vec(grant(), 0..5),
            op in prop::sample::select(OPS.to_vec()),
            bucket in prop::sample::select(vec!["a", "b"]),
            key in prop::sample::select(vec!["x/y/1", "x/2", "z", "zz/3", ""]),
            prefix in prop::sample::select(vec!["", "x/", "x/y/", "x", "z"]),
            src in (prop::sample::select(vec!["a", "b"]), prop::sample::select(vec!["x/y/1", "z"])),
        ) {
            let path = if op == "CreateBucket" || op.starts_with("List") || op == "DeleteObjects" {
                S3Path::Bucket { bucket: bucket.into() }
            } else {
                S3Path::Object { bucket: bucket.into(), key: key.into() }
            };
            let who = Principal { id: "k".into(), root: false, grants: grants.clone(), sources: vec![] };
            let got = needs(op, &path, prefix, Some(src)).is_some_and(|ns| ns.into_iter().all(|n| who.allows(n)));
            prop_assert_eq!(got, model(&grants, op, bucket, key, prefix, src));
        }
    }

    #[test]
    fn a_copy_without_a_source_and_an_object_call_on_a_bucket_are_refused() {
        let path = S3Path::Bucket { bucket: "a".into() };
        assert_eq!(needs("GetObject", &path, "", None), None);
        let obj = S3Path::Object { bucket: "a".into(), key: "k".into() };
        assert_eq!(needs("CopyObject", &obj, "", None), None);
        assert_eq!(needs("PutBucketPolicy", &path, "", None), Some(vec![Need::BucketAdmin("a")]));
        assert_eq!(needs("ListBuckets", &S3Path::Root, "", None), Some(vec![]));
    }
}
