//! A backend wrapper that an outage test turns off: while `down`, every call fails at once
//! with `Unavailable`; while `hang`, every call waits forever (a store that accepts
//! connections and never answers, as a SIGSTOPped server does).

use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use strata::backend::{Backend, ByteStream, Layer, ObjectStat, ObjectWriter, WriteOptions};
use strata::error::{Error, ErrorKind, Result};

#[derive(Default)]
pub struct Power {
    pub down: AtomicBool,
    pub hang: AtomicBool,
}

impl Power {
    pub fn set_down(&self, on: bool) {
        self.down.store(on, SeqCst);
    }
    pub fn set_hang(&self, on: bool) {
        self.hang.store(on, SeqCst);
    }
    async fn check(&self) -> Result<()> {
        if self.hang.load(SeqCst) {
            futures::future::pending::<()>().await;
        }
        if self.down.load(SeqCst) {
            return Err(Error::new(ErrorKind::Unavailable, "switch: the store is off"));
        }
        Ok(())
    }
}

pub struct Switch {
    pub inner: Arc<dyn Backend>,
    pub power: Arc<Power>,
}

struct SwitchWriter {
    inner: Box<dyn ObjectWriter>,
    power: Arc<Power>,
}

#[async_trait]
impl ObjectWriter for SwitchWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.power.check().await?;
        self.inner.write(chunk).await
    }
    async fn commit(self: Box<Self>) -> Result<()> {
        self.power.check().await?;
        self.inner.commit().await
    }
    async fn abort(self: Box<Self>) -> Result<()> {
        self.inner.abort().await
    }
}

#[async_trait]
impl Layer for Switch {
    fn inner(&self) -> &dyn Backend {
        self.inner.as_ref()
    }
    async fn writer(&self, path: &str, opts: &WriteOptions) -> Result<Box<dyn ObjectWriter>> {
        self.power.check().await?;
        let inner = self.inner.writer(path, opts).await?;
        Ok(Box::new(SwitchWriter { inner, power: self.power.clone() }))
    }
    async fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<ByteStream> {
        self.power.check().await?;
        self.inner.read(path, range).await
    }
    async fn stat(&self, path: &str) -> Result<Option<ObjectStat>> {
        self.power.check().await?;
        self.inner.stat(path).await
    }
    async fn delete(&self, path: &str) -> Result<()> {
        self.power.check().await?;
        self.inner.delete(path).await
    }
}

/// A harness wrapper that puts the default backend behind `power`.
pub fn wrap(power: Arc<Power>) -> crate::harness::Wrap {
    Arc::new(move |inner| Arc::new(Switch { inner, power: power.clone() }) as Arc<dyn Backend>)
}
