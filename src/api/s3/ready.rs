//! Ready answers for signed GETs: the S3 side of the hot-hit fast path (issue 22,
//! `docs/design/hot-hits.md`). A GetObject of a whole small object that the memory tier
//! holds, signed with SigV4 in its header or a presigned URL, or presigned with SigV2, is
//! answered from the shared bytes and a response head kept per version, without s3s.
//!
//! The fast path only ever answers a request that the full path would answer with the same
//! 200: the signature is checked as s3s checks it (`sigv4.rs`, with the signing key of a
//! secret and day kept; `sigv2.rs`), the key's grants and source networks as `grants.rs` checks them,
//! and the head is the one the full path sent for this very version (learnt from its
//! answer, which GetObject marks with [`Whole`]). Anything it does not recognise (another
//! header that may change the answer, a query, a signature it cannot check, a key in no
//! loaded state, a version without a head, bytes not in memory) goes down the full path,
//! which also answers every error. It must not read stores or the catalog itself.

use super::sigv2;
use super::sigv4::{self, Signed};
use crate::auth::Keyring;
use crate::auth::rights::{Need, Right};
use crate::plan::Plans;
use crate::tier::Tier;
use http::{HeaderMap, Method, Request, Response};
use ring::hmac;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Heads kept (one per object version served so). About 1 KiB each.
const MAX_HEADS: usize = 10_000;

/// Signing keys kept before the cache starts afresh (one per key, day and region in use).
const MAX_SIGNING_KEYS: usize = 10_000;

/// The version a whole-object GetObject answer of the full path served, in the answer's
/// extensions: what a head learnt from that answer belongs to.
#[derive(Debug, Clone)]
pub struct Whole {
    etag: String,
    last_modified_ms: i64,
    size: u64,
    vh: u128,
}

impl Whole {
    /// The version of `rec`.
    pub fn of(rec: &crate::catalog::ObjectRecord) -> Self {
        let vh = crate::tier::version_of(rec).hash();
        Self { etag: rec.etag.clone(), last_modified_ms: rec.last_modified_ms, size: rec.size, vh }
    }
}

/// The full path's answer heads for one version of one object: without and with
/// `x-amz-checksum-mode: ENABLED` (which current SDKs send on every GetObject).
struct Head {
    etag: String,
    last_modified_ms: i64,
    size: u64,
    /// The version's hash (`Version::hash`), the memory tier's name for its bytes.
    vh: u128,
    headers: [Option<HeaderMap>; 2],
}

impl Head {
    fn fits(&self, rec: &crate::catalog::ObjectRecord) -> bool {
        self.etag == rec.etag && self.last_modified_ms == rec.last_modified_ms && self.size == rec.size
    }
}

/// A signing key and what it was derived from (the region is always this node's: a
/// request for another is declined before).
struct Signing {
    secret: String,
    day: String,
    key: hmac::Key,
}

/// Whether a secret signed the request under way.
type SecretCheck<'a> = Box<dyn Fn(&str) -> bool + 'a>;

/// What the fast path made of a request.
pub(super) enum Ready {
    /// The answer.
    Answer(Response<s3s::Body>),
    /// Not answered here, though the request qualifies: the full path's answer may teach
    /// the head of this (bucket, key) under this checksum mode.
    Learn(String, String, bool),
    /// Not for the fast path.
    Full,
}

/// The fast path's state: heads and signing keys.
pub(super) struct Answers {
    heads: quick_cache::sync::Cache<(String, String), Arc<Head>>,
    signing: Mutex<HashMap<String, Vec<Signing>>>,
    tier: Tier,
    keys: Keyring,
    plans: Plans,
    region: String,
}

impl Answers {
    pub(super) fn new(tier: Tier, keys: Keyring, plans: Plans, region: String) -> Self {
        let signing = Mutex::new(HashMap::new());
        Self { heads: quick_cache::sync::Cache::new(MAX_HEADS), signing, tier, keys, plans, region }
    }

    /// The ready answer to `req`, or why there is none.
    pub(super) async fn answer<B>(&self, req: &Request<B>) -> Ready {
        let Some(checksums) = plain_headers(req.headers()) else { return Ready::Full };
        let Some((bucket, key)) = self.authorised(req) else { return Ready::Full };
        let mut learn = false;
        let fits = |rec: &crate::catalog::ObjectRecord| {
            let head = self.heads.get(&crate::names::ObjectRef(&bucket, &key));
            let fitting = head.as_ref().filter(|h| h.fits(rec));
            match fitting.and_then(|h| Some((h.headers[usize::from(checksums)].as_ref()?, h.vh))) {
                Some((headers, vh)) => Some((headers.clone(), Some(vh))),
                None => {
                    learn = true;
                    None
                }
            }
        };
        let found = self.tier.get_small_hot(&bucket, &key, fits).await;
        match found {
            Ok(Some((headers, Some(data)))) => {
                let mut r = Response::new(s3s::Body::from(data));
                *r.headers_mut() = headers;
                Ready::Answer(r)
            }
            _ if learn => Ready::Learn(bucket.into_owned(), key.into_owned(), checksums),
            _ => Ready::Full,
        }
    }

    /// Keeps the head of `resp`, the full path's answer to a request for `bucket`/`key`
    /// (with checksum mode `checksums`) that [`Answers::answer`] let through, when it is a
    /// whole object's 200.
    pub(super) fn learn(&self, (bucket, key, checksums): (String, String, bool), resp: &Response<s3s::Body>) {
        let Some(whole) = resp.extensions().get::<Whole>() else { return };
        if resp.status() != http::StatusCode::OK {
            return;
        }
        let mut headers = resp.headers().clone();
        for per_request in ["x-amz-request-id", "x-amz-id-2", "date", "connection"] {
            headers.remove(per_request);
        }
        let names = (bucket, key);
        let kept = self.heads.get(&names).filter(|h| h.vh == whole.vh);
        let mut both = kept.map_or([None, None], |h| h.headers.clone());
        both[usize::from(checksums)] = Some(headers);
        let (etag, last_modified_ms, size, vh) = (whole.etag.clone(), whole.last_modified_ms, whole.size, whole.vh);
        let head = Head { etag, last_modified_ms, size, vh, headers: both };
        self.heads.insert(names, Arc::new(head));
    }

    /// The (bucket, key) of `req` when it is a plain GetObject signed by a key that may
    /// read it, checked; `None` sends it down the full path.
    fn authorised<'r, B>(&self, req: &'r Request<B>) -> Option<(Cow<'r, str>, Cow<'r, str>)> {
        if req.method() != Method::GET {
            return None;
        }
        let now = crate::clock::now_ms() / 1000;
        let path = sigv4::decoded_path(req.uri().path())?;
        let (bucket, key, host_bucket) = self.names(req, &path)?;
        // The string to sign, and how a secret is checked against it.
        let (key_id, check): (&str, SecretCheck<'_>) = match sigv4::parse(req) {
            Some(sig) => {
                (sig.region == self.region && sig.timely(now)).then_some(())?;
                let to_sign = sig.string_to_sign(req, &path)?;
                let id = sig.key_id;
                (id, Box::new(move |secret| sig.matches(&self.signing_key(&sig, secret), &to_sign)))
            }
            None => {
                let sig = sigv2::parse(req)?;
                sig.timely(now).then_some(())?;
                let to_sign = sig.string_to_sign(req, host_bucket.as_deref());
                let id = sig.key_id;
                (id, Box::new(move |secret| sig.matches(secret, &to_sign)))
            }
        };
        let peer = req.extensions().get::<crate::http::Peer>().map(|p| p.0.ip());
        let ok = self.keys.with_loaded(key_id, |who, current, previous| {
            let may =
                who.allows(Need::Object(Right::Read, &bucket, &key)) && peer.is_none_or(|ip| who.reaches_from(ip));
            may && [Some(current), previous].into_iter().flatten().any(&check)
        });
        ok?.then_some((bucket, key))
    }

    /// The bucket and key a GET of decoded path `path` names, and the bucket its host
    /// names (virtual-host style), if any.
    fn names<'p, B>(
        &self,
        req: &Request<B>,
        path: &Cow<'p, str>,
    ) -> Option<(Cow<'p, str>, Cow<'p, str>, Option<String>)> {
        let rest = path.strip_prefix('/')?;
        let hosts = self.plans.hosts();
        let host_bucket =
            if hosts.is_empty() { None } else { crate::http::request_host(req).and_then(|h| hosts.bucket_of(h)) };
        let (bucket, key): (Cow<'p, str>, Cow<'p, str>) = match (&host_bucket, path) {
            (Some(b), _) => (Cow::Owned(b.clone()), Cow::Owned(rest.to_owned())),
            (None, Cow::Borrowed(p)) => {
                let (b, k) = (*p).strip_prefix('/')?.split_once('/')?;
                (Cow::Borrowed(b), Cow::Borrowed(k))
            }
            (None, Cow::Owned(_)) => {
                let (b, k) = rest.split_once('/')?;
                (Cow::Owned(b.to_owned()), Cow::Owned(k.to_owned()))
            }
        };
        (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key, host_bucket))
    }

    /// The signing key of `secret` for the day and region of `sig`, kept once derived.
    fn signing_key(&self, sig: &Signed<'_>, secret: &str) -> hmac::Key {
        let mut cache = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        let kept = cache
            .get(sig.key_id)
            .and_then(|v| v.iter().find(|s| s.secret == secret && s.day == sig.day).map(|s| s.key.clone()));
        if let Some(k) = kept {
            return k;
        }
        let key = sigv4::signing_key(secret, sig.day, sig.region);
        if cache.len() >= MAX_SIGNING_KEYS {
            cache.clear();
        }
        let entries = cache.entry(sig.key_id.to_owned()).or_default();
        // Another day's keys are not needed again; two secrets are valid at most (a
        // rotation's grace period), so a third entry is a secret no longer in use.
        entries.retain(|s| s.day == sig.day);
        if entries.len() >= 2 {
            entries.remove(0);
        }
        entries.push(Signing { secret: secret.to_owned(), day: sig.day.to_owned(), key: key.clone() });
        key
    }
}

/// Whether a GET's headers leave the answer the whole object (no range, no conditional,
/// no customer key, no body, nor any other `x-amz-` header than the signature's, the
/// SDKs' own and the checksum mode), and then whether they ask for its checksums.
fn plain_headers(headers: &HeaderMap) -> Option<bool> {
    let mut checksums = false;
    for (name, value) in headers {
        let n = name.as_str();
        let ok = match n {
            "x-amz-date" | "x-amz-content-sha256" | "x-amz-user-agent" => true,
            "x-amz-checksum-mode" if value.as_bytes() == b"ENABLED" && !checksums => {
                checksums = true;
                true
            }
            // An empty Content-MD5 is refused by the full path (`precheck.rs`).
            "range" | "expect" | "transfer-encoding" | "content-md5" => false,
            "content-length" => value.as_bytes() == b"0",
            _ => !n.starts_with("x-amz-") && !n.starts_with("if-"),
        };
        ok.then_some(())?;
    }
    Some(checksums)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(http::HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_headers_that_leave_the_whole_object_qualify() {
        let sdk = [
            ("host", "localhost"),
            ("user-agent", "aws-sdk-rust"),
            ("x-amz-user-agent", "aws-sdk-rust"),
            ("x-amz-date", "20261204T120000Z"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
            ("amz-sdk-invocation-id", "x"),
            ("authorization", "AWS4-HMAC-SHA256 ..."),
        ];
        assert_eq!(plain_headers(&headers(&sdk)), Some(false));
        let mut with_mode = sdk.to_vec();
        with_mode.push(("x-amz-checksum-mode", "ENABLED"));
        assert_eq!(plain_headers(&headers(&with_mode)), Some(true));
        for extra in [
            ("range", "bytes=0-1"),
            ("if-none-match", "\"x\""),
            ("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT"),
            ("content-md5", ""),
            ("content-length", "5"),
            ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
            ("x-amz-expected-bucket-owner", "1"),
            ("x-amz-checksum-mode", "DISABLED"),
            ("x-amz-security-token", "t"),
        ] {
            let mut h = sdk.to_vec();
            h.push(extra);
            assert_eq!(plain_headers(&headers(&h)), None, "{extra:?}");
        }
        let mut twice = with_mode.clone();
        twice.push(("x-amz-checksum-mode", "ENABLED"));
        assert_eq!(plain_headers(&headers(&twice)), None, "a repeated mode");
    }
}
