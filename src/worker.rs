//! Background loops: one [`Worker`] shape, run by one [`Supervisor`].
//!
//! A worker does one bounded step per tick. The supervisor runs each worker on its own
//! interval and logs failed ticks (a failed tick never stops the loop). At shutdown one
//! cancellation reaches every worker at once (a tick under way is dropped), and the
//! supervisor waits for each task, last started first. Owns no domain logic: the workers
//! live with the state they touch (`health`, `telemetry`, the journal's uploader, the
//! replication scrub, the policy refresh).

use crate::error::Result;
use async_trait::async_trait;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A background loop, one step at a time.
#[async_trait]
pub trait Worker: Send + 'static {
    /// A short name for logs.
    fn name(&self) -> &'static str;
    /// Time between the end of one tick and the start of the next.
    fn interval(&self) -> Duration;
    /// One step. An error is logged and the loop goes on. Cancelled (dropped) at shutdown,
    /// so a tick must leave no half-done state that the next start cannot handle.
    async fn tick(&mut self) -> Result<()>;
}

/// Runs workers until shutdown.
#[derive(Default)]
pub struct Supervisor {
    token: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Supervisor {
    /// Starts `w`: a first tick at once, then one per interval.
    pub fn spawn(&mut self, mut w: impl Worker) {
        let token = self.token.child_token();
        let name = w.name();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    r = w.tick() => if let Err(e) = r {
                        tracing::warn!(worker = name, error = %e, "worker tick failed");
                    },
                }
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep(w.interval()) => {}
                }
            }
        });
        self.tasks.push((name, task));
    }

    /// Stops every worker, last started first, and waits for each.
    pub async fn shutdown(mut self) {
        self.token.cancel();
        while let Some((name, task)) = self.tasks.pop() {
            if let Err(e) = task.await {
                tracing::error!(worker = name, error = %e, "worker panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

    struct Count(Arc<AtomicU32>, bool);

    #[async_trait]
    impl Worker for Count {
        fn name(&self) -> &'static str {
            "count"
        }
        fn interval(&self) -> Duration {
            Duration::from_millis(5)
        }
        async fn tick(&mut self) -> Result<()> {
            self.0.fetch_add(1, SeqCst);
            if self.1 {
                return Err(crate::error::Error::new(crate::error::ErrorKind::Unavailable, "always fails"));
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn ticks_through_errors_and_stops() {
        let (ok, bad) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let mut s = Supervisor::default();
        s.spawn(Count(ok.clone(), false));
        s.spawn(Count(bad.clone(), true));
        tokio::time::sleep(Duration::from_millis(60)).await;
        s.shutdown().await;
        let (a, b) = (ok.load(SeqCst), bad.load(SeqCst));
        assert!(a >= 3 && b >= 3, "{a} {b}: a failing tick must not stop its loop");
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(ok.load(SeqCst), a, "no tick after shutdown");
    }
}
