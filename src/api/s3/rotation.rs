//! Two secrets for one key during a rotation's grace period.
//!
//! s3s asks for one secret per access key id, and checks the signature with it. While a
//! key has a previous secret that is still valid, a request is first shown, head only and
//! with an empty body, to a probe service whose access hook runs only after the signature
//! held and answers with a marker code. If the current secret did not hold, the request is
//! served with the previous one. s3s checks the signature before it reads any body and
//! checks the body's digest only while reading it, so the probe needs no body. Only keys
//! in a grace period pay for the probe; every other request is served once, as before.

use crate::auth::Keyring;
use http::Request;
use s3s::access::{S3Access, S3AccessContext};
use s3s::service::S3Service;
use s3s::{S3Error, S3ErrorCode, S3Result};

/// Which of a key's secrets s3s is given for the request under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    /// The current secret.
    Current,
    /// The one before the last rotation.
    Previous,
}

tokio::task_local! {
    /// The secret chosen for the request this task serves.
    pub static SECRET: Secret;
}

/// The code the probe answers with when the signature held.
const HELD: &str = "StrataSignatureHeld";

/// The access keys s3s checks signatures with. An unknown, disabled or expired key is
/// `InvalidAccessKeyId`, as S3 answers (s3s's own store says `NotSignedUp`).
pub struct Keys(pub Keyring);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<s3s::auth::SecretKey> {
        let Some((_, s)) = self.0.find(access_key).await else {
            return Err(s3s::s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            ));
        };
        let previous = SECRET.try_with(|c| *c == Secret::Previous).unwrap_or(false);
        Ok(if previous { s.previous.unwrap_or(s.current) } else { s.current }.into())
    }
}

/// The probe's access hook: says only that the signature held.
pub struct Probe;

#[async_trait::async_trait]
impl S3Access for Probe {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let code =
            if cx.credentials().is_some() { S3ErrorCode::Custom(HELD.into()) } else { S3ErrorCode::AccessDenied };
        Err(S3Error::new(code))
    }
}

/// The secret to serve `req`, which names key `key`, with (see the module's header).
pub async fn which_secret(keys: &Keyring, probe: &S3Service, req: &Request<s3s::Body>, key: Option<&str>) -> Secret {
    let in_grace = key.is_some_and(|id| keys.in_grace(id));
    if !in_grace {
        return Secret::Current;
    }
    let mut head = Request::new(s3s::Body::empty());
    *head.method_mut() = req.method().clone();
    *head.uri_mut() = req.uri().clone();
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();
    let held = match SECRET.scope(Secret::Current, probe.call(head)).await {
        Ok(resp) => resp.body().bytes().is_some_and(|b| {
            let code = format!("<Code>{HELD}</Code>");
            b.windows(code.len()).any(|w| w == code.as_bytes())
        }),
        Err(_) => false,
    };
    if held { Secret::Current } else { Secret::Previous }
}
