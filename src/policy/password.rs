//! Passwords of password-protected prefixes: argon2 hashes, constant-time checks, and a
//! small cache so that HTTP Basic (a check on every request) does not pay argon2 each time.

use crate::error::{Error, ErrorKind, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A rule's password as configured: an argon2 PHC string, or plain text from the config
/// file (which is already as secret as the password).
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// "$argon2id$…".
    Hashed(String),
    /// Plain text from the config file.
    Plain(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A config value: a PHC string is kept as a hash, anything else is plain text.
    pub fn from_config(s: &str) -> Secret {
        if s.starts_with("$argon2") { Secret::Hashed(s.to_owned()) } else { Secret::Plain(s.to_owned()) }
    }

    /// A short tag that changes when the password changes; login cookies carry it, so a
    /// new password logs everyone out. It reveals nothing usable about the password.
    pub fn generation(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"strata-password-generation\n");
        match self {
            Secret::Hashed(s) => h.update(s.as_bytes()),
            Secret::Plain(s) => {
                h.update(b"plain\n");
                h.update(s.as_bytes());
            }
        }
        hex::encode(&h.finalize()[..6])
    }
}

/// Hashes a new password with argon2id and a random salt.
pub fn hash(plain: &str) -> Result<String> {
    if plain.is_empty() {
        return Err(Error::new(ErrorKind::InvalidInput, "the password is empty"));
    }
    let bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&bytes).map_err(|e| Error::new(ErrorKind::Internal, format!("salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(plain.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::new(ErrorKind::Internal, format!("hash a password: {e}")))
}

/// Verified (secret, candidate) pairs, by digest, so argon2 runs once per distinct
/// candidate; bounded by `quick_cache`'s eviction.
pub struct Checker {
    ok: quick_cache::sync::Cache<[u8; 32], ()>,
}

const MAX_CACHED: usize = 10_000;

impl Default for Checker {
    fn default() -> Self {
        Self { ok: quick_cache::sync::Cache::new(MAX_CACHED) }
    }
}

impl Checker {
    /// Whether `candidate` is the password. Plain secrets compare digests in constant time
    /// (so neither content nor length leaks through timing); hashed ones use argon2's own
    /// constant-time verification, once per distinct candidate.
    pub fn check(&self, secret: &Secret, candidate: &str) -> bool {
        match secret {
            Secret::Plain(p) => {
                let (a, b) = (Sha256::digest(p.as_bytes()), Sha256::digest(candidate.as_bytes()));
                bool::from(a.ct_eq(&b))
            }
            Secret::Hashed(phc) => {
                let mut h = Sha256::new();
                h.update(phc.as_bytes());
                h.update(b"\n");
                h.update(candidate.as_bytes());
                let id: [u8; 32] = h.finalize().into();
                if self.ok.get(&id).is_some() {
                    return true;
                }
                let verify = || {
                    PasswordHash::new(phc).is_ok_and(|parsed| {
                        argon2::Argon2::default().verify_password(candidate.as_bytes(), &parsed).is_ok()
                    })
                };
                // argon2 takes tens of milliseconds of CPU: on a runtime worker, hand that
                // worker's other tasks to the rest first, so other clients are not held up.
                let multi = tokio::runtime::Handle::try_current()
                    .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
                let good = if multi { tokio::task::block_in_place(verify) } else { verify() };
                if good {
                    self.ok.insert(id, ());
                }
                good
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_hashed_passwords_check() {
        let c = Checker::default();
        let plain = Secret::from_config("hunter22");
        assert!(c.check(&plain, "hunter22"));
        for wrong in ["hunter2", "hunter222", "", "Hunter22"] {
            assert!(!c.check(&plain, wrong), "{wrong}");
        }
        let hashed = Secret::from_config(&hash("s3cret pass").unwrap());
        assert!(matches!(hashed, Secret::Hashed(_)));
        assert!(c.check(&hashed, "s3cret pass"));
        assert!(c.check(&hashed, "s3cret pass"), "second check comes from the cache");
        assert!(!c.check(&hashed, "s3cret pas"));
        assert!(!c.check(&Secret::Hashed("$argon2id$garbage".into()), "x"));
        assert_ne!(plain.generation(), hashed.generation());
        assert_eq!(plain.generation(), Secret::from_config("hunter22").generation());
        assert!(hash("").is_err());
    }
}
