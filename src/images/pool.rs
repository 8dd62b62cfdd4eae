//! The render pool: a fixed set of threads of its own, fed through a bounded queue, so
//! that decoding and encoding never run on the async runtime's threads and never take
//! more than `images.concurrency` cores however many requests arrive.
//!
//! A full queue refuses the job at once ([`Busy`]): the client gets 503 with Retry-After
//! rather than a wait nobody bounds. A job that waited past its deadline is dropped
//! unrun: its requester has already been answered. A panic in a job (a decoder bug on a
//! hostile file) is caught and becomes that job's error; the thread lives on. This module
//! must not know what a job does.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// The queue was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// How a job ended, when it did not return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// It panicked (the message).
    Panicked(String),
    /// It waited in the queue past its deadline and was not run.
    Late,
}

/// A fixed pool of render threads.
pub struct Pool {
    tx: SyncSender<Job>,
}

impl Pool {
    /// `threads` threads named `strata-render-N`, with `queue` jobs waiting at most.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<Pool> {
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("strata-render-{n}")).spawn(move || run(&rx))?;
        }
        Ok(Pool { tx })
    }

    /// Queues `f`, to be run before `deadline`; the receiver gets its result. Dropping the
    /// receiver does not stop a job already running (CPU work cannot be interrupted).
    pub fn submit<T, F>(&self, deadline: Instant, f: F) -> Result<oneshot::Receiver<Result<T, Lost>>, Busy>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            if Instant::now() >= deadline || tx.is_closed() {
                let _ = tx.send(Err(Lost::Late));
                return;
            }
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
                let msg =
                    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
                Lost::Panicked(msg.unwrap_or_else(|| "a render panicked".into()))
            });
            let _ = tx.send(out);
        });
        match self.tx.try_send(job) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}

fn run(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, never while running one.
        let job = match rx.lock() {
            Ok(r) => r.recv(),
            Err(p) => p.into_inner().recv(),
        };
        match job {
            Ok(job) => job(),
            Err(_) => return, // the pool is gone
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn runs_jobs_refuses_when_full_and_survives_a_panic() {
        let pool = Pool::new(1, 1).unwrap();
        let later = Instant::now() + Duration::from_secs(30);
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let blocker = pool.submit(later, move || go_rx.recv().is_ok()).unwrap();
        // Wait until the thread took the blocker, so the queue's one place is free.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let queued = pool.submit(later, || 7).unwrap();
        assert_eq!(pool.submit(later, || 8).err(), Some(Busy), "the queue holds one job");
        go_tx.send(()).unwrap();
        assert_eq!(blocker.await.unwrap(), Ok(true));
        assert_eq!(queued.await.unwrap(), Ok(7));
        let boom = pool.submit(later, || -> u32 { panic!("decoder bug") }).unwrap();
        assert_eq!(boom.await.unwrap(), Err(Lost::Panicked("decoder bug".into())));
        assert_eq!(pool.submit(later, || 9).unwrap().await.unwrap(), Ok(9), "the thread lives on");
        let late = pool.submit(Instant::now() - Duration::from_millis(1), || 10).unwrap();
        assert_eq!(late.await.unwrap(), Err(Lost::Late));
    }
}
