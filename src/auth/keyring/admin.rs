//! The keyring's admin operations. Each checks its input, refuses the root key (it lives
//! in the config), writes the catalog with an audit row naming `actor` in one
//! transaction, then rereads the keyring so the change holds here at once; other nodes
//! see it within `auth.refresh`.

use super::{GrantView, KeyView, Keyring, NewKey, audit, grant_view, parse_sources};
use crate::auth::rights::Rights;
use crate::catalog::{GrantRow, KeyRow};
use crate::clock::now_ms;
use crate::error::{Error, ErrorKind, Result};
use std::time::Duration;

fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidInput, msg).public()
}

fn no_such_key(id: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("no access key {id:?}")).public()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Keyring {
    fn changeable(&self, id: &str) -> Result<()> {
        if id == self.inner.root.access_key {
            return Err(Error::new(ErrorKind::Conflict, "the root key is set in the config; change it there").public());
        }
        Ok(())
    }

    async fn row(&self, id: &str) -> Result<KeyRow> {
        let rows = self.inner.catalog.access_keys().await?;
        rows.into_iter().find(|k| k.id == id).ok_or_else(|| no_such_key(id))
    }

    /// Makes a key with no grants; returns it and its secret (shown once, never stored
    /// in the clear).
    pub async fn create(&self, actor: &str, new: NewKey) -> Result<(KeyView, String)> {
        if !self.inner.may_seal {
            return Err(bad(
                "several nodes share this catalog: set auth.seal_key (or STRATA_SEAL_KEY) to the same key on every node before making access keys",
            ));
        }
        let name = new.name.trim();
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(bad("a key needs a name of 1 to 128 printable characters"));
        }
        let sources = parse_sources(&new.sources.join(",")).map_err(bad)?;
        let stored = self.inner.catalog.seal_probe(&self.inner.seal.probe()).await?;
        if !self.inner.seal.opens_probe(&stored) {
            // Another node sealed the first key under another seal key meanwhile.
            let why = super::other_seal(&self.inner.seal);
            return Err(Error::new(ErrorKind::Conflict, why.context().to_owned()).public());
        }
        // 20 characters as AWS's ids, 40 as its secrets.
        let (id, secret) =
            (format!("SK{}", crate::auth::random_string(18, true)), crate::auth::random_string(40, false));
        let now = now_ms();
        let row = KeyRow {
            id: id.clone(),
            name: name.to_owned(),
            secret_sealed: self.inner.seal.seal(&id, secret.as_bytes()),
            previous_sealed: None,
            previous_until_ms: None,
            created_ms: now,
            expires_ms: new.expires_in.map(|d| now.saturating_add(ms(d))),
            enabled: true,
            sources: sources.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            updated_ms: now,
        };
        let detail = format!("name={name:?} expires_ms={:?} sources={:?}", row.expires_ms, row.sources);
        if !self.inner.catalog.insert_access_key(&row, &audit(actor, "key.create", &id, detail)).await? {
            return Err(Error::new(ErrorKind::Conflict, "a key id collided; try again").public());
        }
        self.reload().await?;
        Ok((view(&row, &[]), secret))
    }

    /// Enables or disables key `id`.
    pub async fn set_enabled(&self, actor: &str, id: &str, enabled: bool) -> Result<KeyView> {
        self.changeable(id)?;
        let mut row = self.row(id).await?;
        row.enabled = enabled;
        row.updated_ms = now_ms();
        let action = if enabled { "key.enable" } else { "key.disable" };
        self.update(actor, action, row, String::new()).await
    }

    /// Gives key `id` a new secret; the old one stays valid for `grace`. Returns the new
    /// secret.
    pub async fn rotate(&self, actor: &str, id: &str, grace: Duration) -> Result<(KeyView, String)> {
        self.changeable(id)?;
        let mut row = self.row(id).await?;
        let secret = crate::auth::random_string(40, false);
        let now = now_ms();
        let sealed = self.inner.seal.seal(id, secret.as_bytes());
        row.previous_sealed = Some(std::mem::replace(&mut row.secret_sealed, sealed));
        row.previous_until_ms = Some(now.saturating_add(ms(grace)));
        row.updated_ms = now;
        let detail = format!("grace_ms={}", ms(grace));
        Ok((self.update(actor, "key.rotate", row, detail).await?, secret))
    }

    async fn update(&self, actor: &str, action: &str, row: KeyRow, detail: String) -> Result<KeyView> {
        let why = audit(actor, action, &row.id, detail);
        if !self.inner.catalog.update_access_key(&row, &why).await? {
            return Err(no_such_key(&row.id));
        }
        self.reload().await?;
        self.show(&row.id).await
    }

    /// Removes key `id` and its grants.
    pub async fn delete(&self, actor: &str, id: &str) -> Result<()> {
        self.changeable(id)?;
        if !self.inner.catalog.delete_access_key(id, &audit(actor, "key.delete", id, String::new())).await? {
            return Err(no_such_key(id));
        }
        self.reload().await
    }

    /// Sets key `id`'s rights on `bucket` (or `*`) under `prefix`, replacing that grant.
    pub async fn grant(
        &self,
        actor: &str,
        id: &str,
        (bucket, prefix): (&str, &str),
        rights: &str,
    ) -> Result<GrantView> {
        self.changeable(id)?;
        if bucket != "*" && !crate::names::valid_bucket_name(bucket) {
            return Err(bad(format!("{bucket:?} is neither a bucket name nor *")));
        }
        let rights = Rights::parse(rights).map_err(bad)?;
        self.row(id).await?;
        let g =
            GrantRow { key_id: id.into(), bucket: bucket.into(), prefix: prefix.into(), rights: rights.to_string() };
        let detail = format!("bucket={bucket:?} prefix={prefix:?} rights={rights}");
        self.inner.catalog.put_key_grant(&g, &audit(actor, "grant.add", id, detail)).await?;
        self.reload().await?;
        Ok(grant_view(&g))
    }

    /// Removes key `id`'s grant on `bucket` under `prefix`.
    pub async fn revoke(&self, actor: &str, id: &str, (bucket, prefix): (&str, &str)) -> Result<()> {
        self.changeable(id)?;
        let why = audit(actor, "grant.remove", id, format!("bucket={bucket:?} prefix={prefix:?}"));
        if !self.inner.catalog.delete_key_grant(id, bucket, prefix, &why).await? {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("key {id:?} has no grant on {bucket:?} under {prefix:?}"),
            )
            .public());
        }
        self.reload().await
    }

    /// Every stored key with its grants (the root key is not stored: the config holds it).
    pub async fn list(&self) -> Result<Vec<KeyView>> {
        let (rows, grants) = (self.inner.catalog.access_keys().await?, self.inner.catalog.key_grants().await?);
        Ok(rows.iter().map(|r| view(r, &grants)).collect())
    }

    /// Key `id` with its grants.
    pub async fn show(&self, id: &str) -> Result<KeyView> {
        self.list().await?.into_iter().find(|k| k.id == id).ok_or_else(|| no_such_key(id))
    }

    /// The grants of key `id`, or of every key.
    pub async fn grants(&self, id: Option<&str>) -> Result<Vec<GrantView>> {
        let all = self.inner.catalog.key_grants().await?;
        Ok(all.iter().filter(|g| id.is_none_or(|id| g.key_id == id)).map(grant_view).collect())
    }

    /// The last `limit` changes, newest first.
    pub async fn audit_trail(&self, limit: i64) -> Result<Vec<crate::catalog::AuditRow>> {
        self.inner.catalog.key_audit(limit).await
    }
}

fn view(r: &KeyRow, grants: &[GrantRow]) -> KeyView {
    KeyView {
        id: r.id.clone(),
        name: r.name.clone(),
        created_ms: r.created_ms,
        expires_ms: r.expires_ms,
        enabled: r.enabled,
        sources: r.sources.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        previous_until_ms: r.previous_until_ms.filter(|t| *t > now_ms()),
        grants: grants.iter().filter(|g| g.key_id == r.id).map(grant_view).collect(),
    }
}
