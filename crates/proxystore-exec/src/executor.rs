//! The executor trait (spawn a boxed job) and its in-process adapters: std
//! threads, a rayon `ThreadPool` (feature `rayon`) and a tokio `Handle`
//! (feature `tokio`). Worker processes are [`ProcessPool`](crate::ProcessPool).

use std::any::Any;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use proxystore_core::{Error, Result};

/// A unit of work an executor runs once, on some thread.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Anything that runs jobs: a thread pool, a runtime.
pub trait Executor: Send + Sync + 'static {
    /// Queues `job` to run. Fails only if the executor cannot take work
    /// (shut down, out of threads).
    fn spawn(&self, job: Job) -> Result<()>;

    /// The adapter as `Any`, so [`StoreExecutor`](crate::StoreExecutor) can
    /// reach what only some adapters offer (tokio's async tasks).
    fn as_any(&self) -> &dyn Any;
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closing: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

/// A fixed pool of std threads taking jobs from one queue. Dropping it
/// runs the jobs already queued, then joins the threads.
pub struct ThreadPoolExecutor {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl ThreadPoolExecutor {
    /// Starts `threads` threads (at least one).
    pub fn new(threads: usize) -> Result<Self> {
        let shared = Arc::new(Shared::default());
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let theirs = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("proxystore-exec-{i}"))
                .spawn(move || work(&theirs))
                .map_err(|e| Error::io("starting an executor thread", e))?;
            handles.push(handle);
        }
        Ok(ThreadPoolExecutor {
            shared,
            threads: handles,
        })
    }

    /// How many threads run jobs.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }
}

fn work(shared: &Shared) {
    let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = queue.jobs.pop_front() {
            drop(queue);
            // A panicking job must not take the thread with it; the
            // StoreExecutor reports the panic to the task's handle.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        } else if queue.closing {
            return;
        } else {
            queue = shared.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Executor for ThreadPoolExecutor {
    fn spawn(&self, job: Job) -> Result<()> {
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.closing {
            return Err(Error::Closed {
                connector: "thread pool executor".to_owned(),
            });
        }
        queue.jobs.push_back(job);
        drop(queue);
        self.shared.ready.notify_one();
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for ThreadPoolExecutor {
    fn drop(&mut self) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closing = true;
        self.shared.ready.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for ThreadPoolExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPoolExecutor")
            .field("threads", &self.threads.len())
            .finish()
    }
}

/// Runs jobs on a rayon `ThreadPool`.
#[cfg(feature = "rayon")]
#[derive(Debug, Clone)]
pub struct RayonExecutor {
    pool: Arc<rayon::ThreadPool>,
}

#[cfg(feature = "rayon")]
impl RayonExecutor {
    /// Wraps `pool`.
    pub fn new(pool: Arc<rayon::ThreadPool>) -> Self {
        RayonExecutor { pool }
    }

    /// The pool jobs run on.
    pub fn pool(&self) -> &Arc<rayon::ThreadPool> {
        &self.pool
    }
}

#[cfg(feature = "rayon")]
impl Executor for RayonExecutor {
    fn spawn(&self, job: Job) -> Result<()> {
        self.pool.spawn(job);
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Runs jobs on a tokio runtime: synchronous task bodies on its blocking
/// pool (`spawn_blocking`), async ones
/// ([`StoreExecutor::submit_async`](crate::StoreExecutor::submit_async)) as
/// tasks (`spawn`).
#[cfg(feature = "tokio")]
#[derive(Debug, Clone)]
pub struct TokioExecutor {
    handle: tokio::runtime::Handle,
}

#[cfg(feature = "tokio")]
impl TokioExecutor {
    /// Wraps the runtime behind `handle`.
    pub fn new(handle: tokio::runtime::Handle) -> Self {
        TokioExecutor { handle }
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

#[cfg(feature = "tokio")]
impl Executor for TokioExecutor {
    fn spawn(&self, job: Job) -> Result<()> {
        drop(self.handle.spawn_blocking(job));
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_queued_job_runs_before_the_pool_is_dropped_even_after_a_panic() {
        let ran = Arc::new(AtomicUsize::new(0));
        let pool = ThreadPoolExecutor::new(2).unwrap();
        pool.spawn(Box::new(|| panic!("a job failing on purpose")))
            .unwrap();
        for _ in 0..100 {
            let ran = Arc::clone(&ran);
            pool.spawn(Box::new(move || {
                ran.fetch_add(1, Ordering::Relaxed);
            }))
            .unwrap();
        }
        drop(pool);
        assert_eq!(ran.load(Ordering::Relaxed), 100);
    }
}
