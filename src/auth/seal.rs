//! Sealing access-key secrets for the catalog: AES-256-GCM under a 32-byte seal key that
//! is never in the catalog, so a copy of the catalog alone does not reveal a secret.
//!
//! SigV4 needs the plain secret to verify a signature (it is an HMAC key, not a password),
//! so a one-way hash would not do: whoever holds both the catalog and the seal key holds
//! every secret (`docs/design/keys.md` weighs this). A sealed value is
//! `v1:` + base64(nonce ‖ ciphertext ‖ tag) with a random 96-bit nonce; the key id is the
//! associated data, so a sealed secret copied onto another key's row does not open.

use crate::error::{Error, ErrorKind, Result};
use base64::Engine;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use std::path::Path;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// What the probe seals: a node whose seal key does not open it has another key.
const PROBE: &[u8] = b"strata seal probe";

/// The seal key.
pub struct Seal {
    key: LessSafeKey,
    /// Where the key came from, for messages.
    pub origin: String,
}

impl Seal {
    /// A seal from `bytes`; `origin` says where they came from.
    pub fn new(bytes: &[u8; 32], origin: &str) -> Result<Self> {
        let key =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| Error::new(ErrorKind::Config, "seal key rejected"))?;
        Ok(Self { key: LessSafeKey::new(key), origin: origin.to_owned() })
    }

    /// The seal key of the data directory's `seal.key` (32 bytes, base64, mode 0600),
    /// made on first use.
    pub fn from_data_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("seal.key");
        if !path.exists() {
            let bytes: [u8; 32] = rand::random();
            super::write_private(&path, B64.encode(bytes).as_bytes())?;
        }
        let text = std::fs::read_to_string(&path)?;
        let bytes = B64.decode(text.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok());
        let bytes = bytes
            .ok_or_else(|| Error::new(ErrorKind::Config, format!("{} is not a base64 32-byte key", path.display())))?;
        Self::new(&bytes, &path.display().to_string())
    }

    /// `plain` sealed for key `id`.
    pub fn seal(&self, id: &str, plain: &[u8]) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut buf = plain.to_vec();
        // Sealing fails only for inputs longer than GCM allows (64 GiB); secrets are short.
        if self
            .key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(id.as_bytes()), &mut buf)
            .is_err()
        {
            buf.clear();
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!("v1:{}", B64.encode(out))
    }

    /// The plain bytes of `sealed` for key `id`; `None` when it was sealed with another key,
    /// for another id, or is damaged.
    pub fn open(&self, id: &str, sealed: &str) -> Option<Vec<u8>> {
        let raw = B64.decode(sealed.strip_prefix("v1:")?).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = body.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(id.as_bytes()), &mut buf).ok()?;
        Some(plain.to_vec())
    }

    /// The sealed probe of this key.
    pub fn probe(&self) -> String {
        self.seal("", PROBE)
    }

    /// Whether `probe` was sealed with this key.
    pub fn opens_probe(&self, probe: &str) -> bool {
        self.open("", probe).is_some_and(|p| p == PROBE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_with_its_key_and_its_id() {
        let a = Seal::new(&[1; 32], "a").unwrap();
        let b = Seal::new(&[2; 32], "b").unwrap();
        let s = a.seal("AK1", b"secret");
        assert!(!s.contains("secret"));
        assert_eq!(a.open("AK1", &s).as_deref(), Some(&b"secret"[..]));
        assert_eq!(a.open("AK2", &s), None, "another key's row");
        assert_eq!(b.open("AK1", &s), None, "another seal key");
        assert_ne!(s, a.seal("AK1", b"secret"), "a fresh nonce each time");
        assert!(a.opens_probe(&a.probe()) && !b.opens_probe(&a.probe()));
        assert_eq!(a.open("AK1", "v1:!!"), None);
        assert_eq!(a.open("AK1", "v1:AAAA"), None);
    }

    #[test]
    fn the_data_directory_key_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = Seal::from_data_dir(dir.path()).unwrap();
        let b = Seal::from_data_dir(dir.path()).unwrap();
        assert!(b.opens_probe(&a.probe()));
    }
}
