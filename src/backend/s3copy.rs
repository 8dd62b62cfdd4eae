//! Server-side copy between two S3 stores on one endpoint: a signed CopyObject, so the
//! bytes never pass through strata.
//!
//! OpenDAL copies only inside one bucket, so this sends the request itself, signed with
//! `aws-sigv4` (the AWS SDK's signer). It owns [`S3Place`], the little a copy needs to
//! know about each side, and nothing else: every other call goes through OpenDAL.

use crate::error::{Error, ErrorKind, Result};
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, UriPathNormalizationMode,
    sign,
};
use aws_sigv4::sign::v4;
use std::sync::OnceLock;
use std::time::SystemTime;

/// Largest object one CopyObject may copy (S3's limit); larger ones are streamed.
pub const MAX_COPY: u64 = 5 << 30;

/// Where an S3 store lives: enough to address and sign a CopyObject.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Place {
    /// Endpoint URL without a trailing `/`.
    pub endpoint: String,
    /// Signing region.
    pub region: String,
    /// Bucket.
    pub bucket: String,
    /// Key prefix of the store inside the bucket ("" or ending in `/`).
    pub root: String,
    /// Access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
    /// The store's CA bundle (PEM), when it is trusted beyond the public roots.
    pub ca: Option<std::sync::Arc<[u8]>>,
}

impl std::fmt::Debug for S3Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Place")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl S3Place {
    /// Whether a CopyObject signed for `self` can read from `src`: same endpoint, region
    /// and keys.
    pub fn can_copy_from(&self, src: &S3Place) -> bool {
        self.endpoint == src.endpoint && self.region == src.region && self.access_key == src.access_key
    }
}

/// Path characters S3 keys keep unescaped in a URL (RFC 3986 unreserved plus `/`).
const KEY: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

fn client() -> &'static reqwest::Client {
    static C: OnceLock<reqwest::Client> = OnceLock::new();
    C.get_or_init(reqwest::Client::new)
}

/// A client that trusts the public roots and every certificate of the PEM `bundle`.
pub fn client_trusting(bundle: &[u8]) -> std::result::Result<reqwest::Client, String> {
    let certs = reqwest::Certificate::from_pem_bundle(bundle).map_err(|e| format!("not a PEM bundle: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the bundle".into());
    }
    let b = certs.into_iter().fold(reqwest::Client::builder(), |b, c| b.add_root_certificate(c));
    b.build().map_err(|e| e.to_string())
}

/// The client for requests to `place`: the shared one, or one per CA bundle (made once).
fn client_for(place: &S3Place) -> Result<reqwest::Client> {
    type Clients = std::sync::Mutex<std::collections::HashMap<Vec<u8>, reqwest::Client>>;
    let Some(ca) = &place.ca else { return Ok(client().clone()) };
    static BY_CA: OnceLock<Clients> = OnceLock::new();
    let mut map = BY_CA.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = map.get(ca.as_ref()) {
        return Ok(c.clone());
    }
    let c = client_trusting(ca).map_err(|e| Error::new(ErrorKind::Config, format!("the store's CA bundle: {e}")))?;
    map.insert(ca.to_vec(), c.clone());
    Ok(c)
}

/// Copies `src`'s `src_path` to `dst`'s `dst_path` with CopyObject, keeping the source's
/// headers and metadata (`x-amz-metadata-directive: COPY`). Atomic like any S3 PUT.
pub async fn copy_object(src: &S3Place, src_path: &str, dst: &S3Place, dst_path: &str) -> Result<()> {
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, KEY).to_string();
    let url = format!("{}/{}/{}", dst.endpoint, enc(&dst.bucket), enc(&format!("{}{dst_path}", dst.root)));
    let source = format!("/{}/{}", enc(&src.bucket), enc(&format!("{}{src_path}", src.root)));
    let headers = [("x-amz-copy-source", source.as_str()), ("x-amz-metadata-directive", "COPY")];
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let identity =
        aws_credential_types::Credentials::new(&dst.access_key, &dst.secret_key, None, None, "strata").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&dst.region)
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| Error::internal("signing a CopyObject", e))?
        .into();
    let bad = |e: aws_sigv4::http_request::SigningError| Error::internal("signing a CopyObject", e);
    let signable =
        SignableRequest::new("PUT", url.clone(), headers.iter().copied(), SignableBody::Bytes(&[])).map_err(bad)?;
    let (instructions, _) = sign(signable, &params).map_err(bad)?.into_parts();
    let mut req = http::Request::builder().method("PUT").uri(&url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let mut req = req.body(Vec::new()).map_err(|e| Error::internal("building a CopyObject", e))?;
    instructions.apply_to_request_http1x(&mut req);
    let req = reqwest::Request::try_from(req).map_err(|e| Error::internal("building a CopyObject", e))?;
    let what = || format!("CopyObject {source} to {url}");
    let resp =
        client_for(dst)?.execute(req).await.map_err(|e| Error::new(ErrorKind::Unavailable, what()).with_source(e))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| Error::new(ErrorKind::Unavailable, what()).with_source(e))?;
    // S3 may answer 200 and still fail the copy, with an <Error> body.
    if status.is_success() && !body.contains("<Error>") {
        return Ok(());
    }
    let kind = match status.as_u16() {
        404 => ErrorKind::NotFound,
        500..=599 | 200 => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    Err(Error::new(kind, format!("{}: {status}: {}", what(), body.chars().take(300).collect::<String>())))
}
