//! Layers: a backend that wraps another and forwards every call it does not change.
//!
//! As OpenDAL's `LayeredAccess` does, a layer implements [`Layer`] (its `inner` store plus
//! the methods it changes), and every `Layer` is a [`Backend`] through one blanket impl
//! whose methods default to the inner store's. A method added to `Backend` is added here
//! once, with its forwarding default, so no layer (nor a test's wrapper) can silently drop
//! it, as the hand-written forwards once dropped `presign_read`.

use super::{Backend, ByteStream, Capability, ListEntry, ObjectStat, ObjectWriter, WriteOptions};
use crate::error::Result;
use async_trait::async_trait;
use futures::stream::BoxStream;
use std::ops::Range;
use std::time::Duration;

/// A backend wrapped around another. Each method's contract is [`Backend`]'s; the defaults
/// forward to [`Layer::inner`].
#[async_trait]
pub trait Layer: Send + Sync + 'static {
    /// The store this layer wraps.
    fn inner(&self) -> &dyn Backend;

    /// See [`Backend::name`].
    fn name(&self) -> &str {
        self.inner().name()
    }

    /// See [`Backend::capability`].
    fn capability(&self) -> &Capability {
        self.inner().capability()
    }

    /// See [`Backend::check_path`].
    fn check_path(&self, path: &str) -> Result<()> {
        self.inner().check_path(path)
    }

    /// See [`Backend::writer`].
    async fn writer(&self, path: &str, opts: &WriteOptions) -> Result<Box<dyn ObjectWriter>> {
        self.inner().writer(path, opts).await
    }

    /// See [`Backend::read`].
    async fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<ByteStream> {
        self.inner().read(path, range).await
    }

    /// See [`Backend::stat`].
    async fn stat(&self, path: &str) -> Result<Option<ObjectStat>> {
        self.inner().stat(path).await
    }

    /// See [`Backend::delete`].
    async fn delete(&self, path: &str) -> Result<()> {
        self.inner().delete(path).await
    }

    /// See [`Backend::list`].
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ListEntry>> {
        self.inner().list(prefix)
    }

    /// See [`Backend::presign_read`].
    async fn presign_read(&self, path: &str, expires: Duration, disposition: Option<&str>) -> Result<Option<String>> {
        self.inner().presign_read(path, expires, disposition).await
    }

    /// See [`Backend::sync`].
    async fn sync(&self) -> Result<()> {
        self.inner().sync().await
    }
}

#[async_trait]
impl<L: Layer> Backend for L {
    fn name(&self) -> &str {
        Layer::name(self)
    }

    fn capability(&self) -> &Capability {
        Layer::capability(self)
    }

    fn check_path(&self, path: &str) -> Result<()> {
        Layer::check_path(self, path)
    }

    async fn writer(&self, path: &str, opts: &WriteOptions) -> Result<Box<dyn ObjectWriter>> {
        Layer::writer(self, path, opts).await
    }

    async fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<ByteStream> {
        Layer::read(self, path, range).await
    }

    async fn stat(&self, path: &str) -> Result<Option<ObjectStat>> {
        Layer::stat(self, path).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        Layer::delete(self, path).await
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ListEntry>> {
        Layer::list(self, prefix)
    }

    async fn presign_read(&self, path: &str, expires: Duration, disposition: Option<&str>) -> Result<Option<String>> {
        Layer::presign_read(self, path, expires, disposition).await
    }

    async fn sync(&self) -> Result<()> {
        Layer::sync(self).await
    }
}
