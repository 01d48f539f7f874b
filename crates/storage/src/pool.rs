//! The disk pool: a few threads that do all reads, writes and hashing, fed through a bounded
//! queue so that a slow disk slows the producer down instead of growing memory.
//!
//! It is runtime-agnostic: jobs are closures, completion is whatever the closure does (call a
//! callback, send on a `tokio::sync::oneshot`, ...). From async code use [`DiskPool::try_submit`]
//! (it never blocks; on `Full`, wait for a completion and retry) or call [`DiskPool::submit`]
//! from a thread that may block.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::error::StorageError;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why [`DiskPool::try_submit`] refused a job; the job is handed back.
pub enum TrySubmitError<F> {
    /// The queue is full: back off and retry after a completion.
    Full(F),
    /// The pool has shut down.
    Closed(F),
}

impl<F> std::fmt::Debug for TrySubmitError<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrySubmitError::Full(_) => f.write_str("Full"),
            TrySubmitError::Closed(_) => f.write_str("Closed"),
        }
    }
}

/// A fixed set of worker threads with a bounded job queue.
pub struct DiskPool {
    tx: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl DiskPool {
    /// Start `threads` workers (at least one) behind a queue of at most `queue` waiting jobs.
    pub fn new(threads: usize, queue: usize) -> DiskPool {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("shoal-disk-{i}"))
                    .spawn(move || worker(rx))
                    .expect("spawning a disk thread")
            })
            .collect();
        DiskPool {
            tx: Some(tx),
            workers,
        }
    }

    /// Queue a job, blocking while the queue is full (this is the back-pressure).
    pub fn submit<F>(&self, job: F) -> Result<(), StorageError>
    where
        F: FnOnce() + Send + 'static,
    {
        let tx = self.tx.as_ref().ok_or(StorageError::PoolClosed)?;
        tx.send(Box::new(job)).map_err(|_| StorageError::PoolClosed)
    }

    /// Queue a job if there is room, never blocking.
    pub fn try_submit<F>(&self, job: F) -> Result<(), TrySubmitError<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        let Some(tx) = self.tx.as_ref() else {
            return Err(TrySubmitError::Closed(job));
        };
        // Box only once we know where it goes, so the caller gets its own closure back.
        let slot = Arc::new(Mutex::new(Some(job)));
        let inner = slot.clone();
        let boxed: Job = Box::new(move || {
            let job = inner.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(job) = job {
                job()
            }
        });
        match tx.try_send(boxed) {
            Ok(()) => Ok(()),
            Err(e) => {
                let job = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                // `job` is always there: the boxed closure was not run.
                match (e, job) {
                    (TrySendError::Full(_), Some(j)) => Err(TrySubmitError::Full(j)),
                    (TrySendError::Disconnected(_), Some(j)) => Err(TrySubmitError::Closed(j)),
                    (_, None) => Ok(()),
                }
            }
        }
    }

    /// Run `work` on the pool and hand its result to `done` (on the pool thread).
    pub fn run<T, W, D>(&self, work: W, done: D) -> Result<(), StorageError>
    where
        W: FnOnce() -> T + Send + 'static,
        D: FnOnce(T) + Send + 'static,
    {
        self.submit(move || done(work()))
    }

    /// Finish the queued jobs and stop the threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for DiskPool {
    fn drop(&mut self) {
        self.stop();
    }
}

fn worker(rx: Arc<Mutex<Receiver<Job>>>) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        match job {
            // A panicking job must not take a disk thread down with it.
            Ok(job) => {
                let _ = catch_unwind(AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::channel;

    #[test]
    fn runs_jobs_and_applies_back_pressure() {
        let pool = DiskPool::new(1, 2);
        let (gate_tx, gate_rx) = channel::<()>();
        let gate_rx = Mutex::new(gate_rx);
        let gate_rx = Arc::new(gate_rx);
        let g = gate_rx.clone();
        let (started_tx, started_rx) = channel::<()>();
        // Block the only worker so the queue fills up.
        pool.submit(move || {
            let _ = started_tx.send(());
            let _ = g.lock().unwrap().recv();
        })
        .unwrap();
        started_rx.recv().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let mut accepted = 0;
        let mut refused = 0;
        for _ in 0..10 {
            let c = count.clone();
            match pool.try_submit(move || {
                c.fetch_add(1, Ordering::SeqCst);
            }) {
                Ok(()) => accepted += 1,
                Err(TrySubmitError::Full(_)) => refused += 1,
                Err(TrySubmitError::Closed(_)) => panic!("closed"),
            }
        }
        assert_eq!(accepted, 2, "the queue holds two jobs");
        assert_eq!(accepted + refused, 10);
        gate_tx.send(()).unwrap();
        let (tx, rx) = channel();
        pool.run(|| 41 + 1, move |v| tx.send(v).unwrap()).unwrap();
        assert_eq!(rx.recv().unwrap(), 42);
        pool.shutdown();
        assert_eq!(count.load(Ordering::SeqCst), accepted);
    }

    #[test]
    fn survives_a_panicking_job() {
        let pool = DiskPool::new(1, 4);
        pool.submit(|| panic!("boom")).unwrap();
        let (tx, rx) = channel();
        pool.submit(move || tx.send(7).unwrap()).unwrap();
        assert_eq!(rx.recv().unwrap(), 7);
    }
}
