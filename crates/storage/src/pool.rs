//! The disk pool: a few threads that do all reads, writes and hashing, fed through a bounded
//! queue so that a slow disk slows the producer down instead of growing memory.
//!
//! It is runtime-agnostic: jobs are closures, completion is whatever the closure does (call a
//! callback, send on a `tokio::sync::oneshot`, ...). From async code use [`DiskPool::try_submit`]
//! (it never blocks; on `Full`, wait for a completion and retry) or call [`DiskPool::submit`]
//! from a thread that may block.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::error::StorageError;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Slots the queue keeps once it drains. A burst (a thousand torrents checked at once) may queue
/// thousands of jobs; a queue that kept its peak would hold that memory for good, and a
/// preallocated one holds it from the start (8,192 slots were 192 KiB of a 1,000-torrent
/// daemon's 6 MiB).
const KEPT_SLOTS: usize = 64;

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
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a job is queued or the pool closes; workers wait on it.
    job_ready: Condvar,
    /// Signalled when a job leaves a full queue or the pool closes; [`DiskPool::submit`] waits.
    room: Condvar,
    capacity: usize,
}

struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
    /// Workers waiting for a job, and submitters waiting for room: a notification costs a
    /// system call, so it is only sent to someone who waits.
    idle_workers: usize,
    waiting_submitters: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        crate::lock(&self.queue)
    }

    /// Queues `job` (the caller checked for room) and wakes a waiting worker.
    fn push(&self, mut queue: MutexGuard<'_, Queue>, job: Job) {
        queue.jobs.push_back(job);
        let wake = queue.idle_workers > 0;
        drop(queue);
        if wake {
            self.job_ready.notify_one();
        }
    }
}

impl DiskPool {
    /// Start `threads` workers (at least one) behind a queue of at most `queue` waiting jobs.
    /// They are named `shoal-disk-0`, `shoal-disk-1`, ...
    pub fn new(threads: usize, queue: usize) -> DiskPool {
        Self::named("shoal-disk", threads, queue)
    }

    /// [`DiskPool::new`] with threads named `{name}-0`, `{name}-1`, ... (what `top -H` and
    /// profiles show).
    pub fn named(name: &str, threads: usize, queue: usize) -> DiskPool {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
                idle_workers: 0,
                waiting_submitters: 0,
            }),
            job_ready: Condvar::new(),
            room: Condvar::new(),
            capacity: queue.max(1),
        });
        let workers = (0..threads.max(1))
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || worker(&shared))
                    .expect("spawning a disk thread")
            })
            .collect();
        DiskPool { shared, workers }
    }

    /// Queue a job, blocking while the queue is full (this is the back-pressure).
    pub fn submit<F>(&self, job: F) -> Result<(), StorageError>
    where
        F: FnOnce() + Send + 'static,
    {
        let mut queue = self.shared.lock();
        while queue.jobs.len() >= self.shared.capacity && !queue.closed {
            queue.waiting_submitters += 1;
            queue = self
                .shared
                .room
                .wait(queue)
                .unwrap_or_else(|e| e.into_inner());
            queue.waiting_submitters -= 1;
        }
        if queue.closed {
            return Err(StorageError::PoolClosed);
        }
        self.shared.push(queue, Box::new(job));
        Ok(())
    }

    /// Queue a job if there is room, never blocking.
    pub fn try_submit<F>(&self, job: F) -> Result<(), TrySubmitError<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        let queue = self.shared.lock();
        if queue.closed {
            return Err(TrySubmitError::Closed(job));
        }
        if queue.jobs.len() >= self.shared.capacity {
            return Err(TrySubmitError::Full(job));
        }
        self.shared.push(queue, Box::new(job));
        Ok(())
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
        self.shared.lock().closed = true;
        self.shared.job_ready.notify_all();
        self.shared.room.notify_all();
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

/// Runs jobs until the pool is closed and its queue is empty.
fn worker(shared: &Shared) {
    let mut queue = shared.lock();
    loop {
        if let Some(job) = queue.jobs.pop_front() {
            if queue.jobs.is_empty() && queue.jobs.capacity() > KEPT_SLOTS {
                queue.jobs.shrink_to(KEPT_SLOTS);
            }
            let wake = queue.waiting_submitters > 0;
            drop(queue);
            if wake {
                shared.room.notify_one();
            }
            // A panicking job must not take a disk thread down with it.
            let _ = catch_unwind(AssertUnwindSafe(job));
            queue = shared.lock();
        } else if queue.closed {
            return;
        } else {
            queue.idle_workers += 1;
            queue = shared
                .job_ready
                .wait(queue)
                .unwrap_or_else(|e| e.into_inner());
            queue.idle_workers -= 1;
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
    fn a_blocked_submit_goes_on_when_a_job_leaves_and_shutdown_finishes_the_queue() {
        let pool = Arc::new(DiskPool::new(1, 1));
        let (gate_tx, gate_rx) = channel::<()>();
        let (started_tx, started_rx) = channel::<()>();
        pool.submit(move || {
            let _ = started_tx.send(());
            let _ = gate_rx.recv();
        })
        .unwrap();
        started_rx.recv().unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        pool.submit(move || {
            d.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap(); // fills the queue
        let (p, d) = (pool.clone(), done.clone());
        let blocked = std::thread::spawn(move || {
            p.submit(move || {
                d.fetch_add(10, Ordering::SeqCst);
            })
        });
        // The third submit waits for room until the worker is let go.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !blocked.is_finished(),
            "submit returned while the queue was full"
        );
        gate_tx.send(()).unwrap();
        blocked.join().unwrap().unwrap();
        Arc::into_inner(pool).unwrap().shutdown();
        assert_eq!(
            done.load(Ordering::SeqCst),
            11,
            "queued jobs ran before shutdown"
        );
    }

    #[test]
    fn a_drained_queue_gives_its_burst_memory_back() {
        let pool = DiskPool::new(1, 10_000);
        let (gate_tx, gate_rx) = channel::<()>();
        pool.submit(move || {
            let _ = gate_rx.recv();
        })
        .unwrap();
        for _ in 0..5_000 {
            pool.try_submit(|| {}).unwrap();
        }
        assert!(pool.shared.lock().jobs.capacity() >= 5_000);
        gate_tx.send(()).unwrap();
        let (tx, rx) = channel();
        pool.submit(move || tx.send(()).unwrap()).unwrap();
        rx.recv().unwrap();
        assert!(pool.shared.lock().jobs.capacity() <= KEPT_SLOTS);
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
