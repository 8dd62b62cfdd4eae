//! `[auth]`: the access keys kept in the catalog (`docs/design/keys.md`): the key that seals
//! their secrets and how often a node rereads them. The keys themselves are `crate::auth`'s.

use super::HumanDuration;
use serde::Deserialize;
use std::time::Duration;

/// `[auth]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The key that seals access-key secrets in the catalog: 32 bytes, base64. Every node
    /// of a shared (PostgreSQL) catalog needs the same one. `STRATA_SEAL_KEY` overrides it.
    /// Default: none, and a single node generates one into `<data_dir>/seal.key`.
    pub seal_key: Option<String>,
    /// How often a node rereads the keys and grants, so a change made on another node
    /// takes effect here within this lag. Default "1s"; between 100ms and 60s.
    pub refresh: HumanDuration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self { seal_key: None, refresh: HumanDuration(Duration::from_secs(1)) }
    }
}

impl std::fmt::Debug for AuthConfig {
    // The seal key is a secret: a reload's comparison sees only a digest of it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use sha2::Digest;
        let digest = self.seal_key.as_ref().map(|k| hex::encode(&sha2::Sha256::digest(k.as_bytes())[..6]));
        f.debug_struct("AuthConfig").field("seal_key", &digest).field("refresh", &self.refresh).finish()
    }
}

impl AuthConfig {
    /// The seal key's bytes, when one is set.
    pub fn seal_key_bytes(&self) -> Result<Option<[u8; 32]>, String> {
        let Some(text) = &self.seal_key else { return Ok(None) };
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| "seal_key: not base64 (make one with `openssl rand -base64 32`)".to_owned())?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Some)
            .map_err(|_| format!("seal_key: must be 32 bytes, is {}", bytes.len()))
    }

    /// Checks the fields.
    pub fn validate(&self) -> Result<(), String> {
        self.seal_key_bytes()?;
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&self.refresh.0) {
            return Err("refresh: must be between 100ms and 60s".into());
        }
        Ok(())
    }
}
