//! Runs blocking closures on one shared, bounded pool of threads and
//! awaits them from any async runtime, so proxy resolution never blocks an
//! executor thread and a burst of async resolutions never starts a thread
//! each: at most [`BLOCKING_THREADS`] run at once, the rest queue. Threads
//! start on demand and leave after [`IDLE_EXIT`] without work.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Most threads the shared pool runs at once.
pub const BLOCKING_THREADS: usize = 16;
/// How long an idle pool thread waits for work before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(30);

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Pool {
    queue: Mutex<VecDeque<Job>>,
    work: Condvar,
    /// Threads alive, and those waiting for work.
    threads: AtomicUsize,
    idle: AtomicUsize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(Pool::default)
}

/// Threads the shared pool has alive now (for tests and diagnostics).
pub fn blocking_threads() -> usize {
    pool().threads.load(Ordering::Relaxed)
}

impl Pool {
    fn submit(&'static self, job: Job) -> std::io::Result<()> {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(job);
        if self.idle.load(Ordering::Acquire) == 0 && self.grow() {
            if let Err(e) = std::thread::Builder::new()
                .name("proxystore-blocking".into())
                .spawn(move || self.work_loop())
            {
                self.threads.fetch_sub(1, Ordering::AcqRel);
                // Queued work still runs if any thread is alive.
                if self.threads.load(Ordering::Acquire) == 0 {
                    return Err(e);
                }
            }
        }
        self.work.notify_one();
        Ok(())
    }

    /// Counts a new thread if the pool may have one more.
    fn grow(&self) -> bool {
        self.threads
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < BLOCKING_THREADS).then_some(n + 1)
            })
            .is_ok()
    }

    fn work_loop(&self) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(job) = queue.pop_front() {
                drop(queue);
                job();
                queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            self.idle.fetch_add(1, Ordering::AcqRel);
            let (q, waited) = self
                .work
                .wait_timeout(queue, IDLE_EXIT)
                .unwrap_or_else(|e| e.into_inner());
            self.idle.fetch_sub(1, Ordering::AcqRel);
            queue = q;
            if waited.timed_out() && queue.is_empty() {
                self.threads.fetch_sub(1, Ordering::AcqRel);
                return;
            }
        }
    }
}

#[derive(Debug)]
struct Slot<R> {
    /// The closure's value, or its panic (re-raised in the awaiting task,
    /// so a panicking job never leaves its waiter hanging).
    result: Option<std::thread::Result<R>>,
    waker: Option<Waker>,
}

/// A future of the result of a closure running on the shared pool.
#[derive(Debug)]
pub(crate) struct BlockingTask<R> {
    slot: Arc<Mutex<Slot<R>>>,
}

/// Queues `f` on the shared pool.
pub(crate) fn spawn_blocking<R, F>(f: F) -> std::io::Result<BlockingTask<R>>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    let slot = Arc::new(Mutex::new(Slot {
        result: None,
        waker: None,
    }));
    let theirs = Arc::clone(&slot);
    pool().submit(Box::new(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let waker = {
            let mut s = theirs.lock().unwrap_or_else(|e| e.into_inner());
            s.result = Some(result);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }))?;
    Ok(BlockingTask { slot })
}

impl<R> Future for BlockingTask<R> {
    type Output = R;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        let mut s = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        match s.result.take() {
            Some(Ok(r)) => Poll::Ready(r),
            Some(Err(panic)) => {
                drop(s);
                std::panic::resume_unwind(panic)
            }
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_panicking_job_panics_its_awaiter_instead_of_hanging_it() {
        let task = spawn_blocking(|| -> u8 { panic!("job failed on purpose") }).unwrap();
        let caught =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pollster::block_on(task)));
        assert!(caught.is_err());
        // The pool still runs jobs.
        assert_eq!(pollster::block_on(spawn_blocking(|| 5u8).unwrap()), 5);
    }
}
