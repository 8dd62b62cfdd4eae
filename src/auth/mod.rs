//! Who may call strata: access keys and what each may do.
//!
//! Owns where the root key pair comes from: the config or
//! `STRATA_ACCESS_KEY`/`STRATA_SECRET_KEY` (already folded into the config by `resolve`),
//! else a pair generated once and kept in `<data_dir>/credentials.json` (mode 0600), the
//! way MinIO does. Likewise the keys that sign links: `web.link_keys`, else one generated
//! once into `<data_dir>/link-keys.json`. The other access keys, their grants and the
//! sealing of their secrets are in [`keyring`], [`rights`] and [`seal`]
//! (`docs/design/keys.md`). Signature checking itself is s3s's job; which right an S3
//! operation needs is `api::s3::grants`'; anonymous access rules are `policy`'s.

pub mod keyring;
pub mod rights;
pub mod seal;

pub use keyring::{Keyring, Principal};

/// Compares two byte strings in time independent of where they differ (`subtle`, as the
/// password checks do).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// Rereads the keys and grants every `auth.refresh`: changes made on other nodes.
pub struct Refresh(pub Keyring);

#[async_trait::async_trait]
impl crate::worker::Worker for Refresh {
    fn name(&self) -> &'static str {
        "key-refresh"
    }

    fn interval(&self) -> std::time::Duration {
        self.0.refresh_interval()
    }

    async fn tick(&mut self) -> Result<()> {
        self.0.reload().await
    }
}

use crate::config::{Config, Credentials};
use crate::error::{Error, ErrorKind, Result};
use crate::policy::link::LinkKeys;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Serialize, Deserialize)]
struct Stored {
    access_key: String,
    secret_key: String,
}

/// The credentials a running strata uses, for clients such as the CLI; never creates any.
pub fn load(config: &Config) -> Result<Credentials> {
    if let Some(c) = &config.credentials {
        return Ok(c.clone());
    }
    let path = config.data_dir().join("credentials.json");
    if !path.exists() {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "no credentials: set STRATA_ACCESS_KEY/STRATA_SECRET_KEY or point --data-dir at strata's ({} is missing)",
                path.display()
            ),
        ));
    }
    read(&path)
}

/// The credentials strata serves with, creating and persisting a pair on first start.
pub fn load_or_create(config: &Config) -> Result<Credentials> {
    if let Some(c) = &config.credentials {
        return Ok(c.clone());
    }
    let path = config.data_dir().join("credentials.json");
    if path.exists() {
        return read(&path);
    }
    let creds = Credentials { access_key: random_string(20, true), secret_key: random_string(40, false) };
    write(&path, &creds)?;
    Ok(creds)
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    id: String,
    secret: String,
}

/// The keys that sign and verify links (the first signs). With `create`, a key is
/// generated and persisted when neither the config nor the data directory has one.
pub fn link_keys(config: &Config, create: bool) -> Result<LinkKeys> {
    let keys = &config.web.link_keys;
    if !keys.is_empty() {
        return Ok(LinkKeys::new(keys.iter().map(|k| (k.id.clone(), k.secret.as_bytes().to_vec())).collect()));
    }
    let path = config.data_dir().join("link-keys.json");
    let stored: Vec<StoredKey> = if path.exists() {
        let text = std::fs::read_to_string(&path)?;
        serde_json::from_str(&text).map_err(|e| {
            Error::new(ErrorKind::Config, format!("{} is not valid link-keys JSON", path.display())).with_source(e)
        })?
    } else if create {
        let k = vec![StoredKey { id: "k1".into(), secret: random_string(43, false) }];
        let body = serde_json::to_string_pretty(&k).map_err(|e| Error::internal("encode link keys", e))?;
        write_private(&path, body.as_bytes())?;
        k
    } else {
        return Err(Error::new(
            ErrorKind::Config,
            format!("no link keys: set web.link_keys or point --data-dir at strata's ({} is missing)", path.display()),
        ));
    };
    Ok(LinkKeys::new(stored.into_iter().map(|k| (k.id, k.secret.into_bytes())).collect()))
}

fn read(path: &Path) -> Result<Credentials> {
    let text = std::fs::read_to_string(path)?;
    let s: Stored = serde_json::from_str(&text).map_err(|e| {
        Error::new(ErrorKind::Config, format!("{} is not valid credentials JSON", path.display())).with_source(e)
    })?;
    Ok(Credentials { access_key: s.access_key, secret_key: s.secret_key })
}

fn write(path: &Path, c: &Credentials) -> Result<()> {
    let body =
        serde_json::to_string_pretty(&Stored { access_key: c.access_key.clone(), secret_key: c.secret_key.clone() })
            .map_err(|e| Error::internal("encode credentials", e))?;
    write_private(path, body.as_bytes())
}

/// Writes a secret file (mode 0600) atomically: temporary file, fsync, rename.
fn write_private(path: &Path, body: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn random_string(len: usize, upper_alnum: bool) -> String {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const ANY: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let set = if upper_alnum { UPPER } else { ANY };
    let mut rng = rand::thread_rng();
    (0..len).map(|_| set[rng.gen_range(0..set.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let o = Overrides { data_dir: Some(dir.path().to_owned()), listen: None };
        let cfg = Config::parse("").unwrap().resolve(&o, &|_| None).unwrap();
        let a = load_or_create(&cfg).unwrap();
        let b = load_or_create(&cfg).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.access_key.len(), 20);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("credentials.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(link_keys(&cfg, false).is_err(), "nothing is made without create");
        let k = link_keys(&cfg, true).unwrap();
        let q = k.sign("b", "k", &crate::policy::link::LinkParams { expires: 9, ..Default::default() }).unwrap();
        let again = link_keys(&cfg, false).unwrap();
        assert!(again.verify("b", "k", &q, 1, std::net::Ipv4Addr::LOCALHOST.into()).unwrap().is_some());
    }
}
