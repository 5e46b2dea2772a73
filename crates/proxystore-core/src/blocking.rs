//! Runs blocking closures on one shared, bounded pool of threads and
//! awaits them from any async runtime, so proxy resolution never blocks an
//! executor thread and a burst of async resolutions never starts a thread
//! each: at most [`BLOCKING_THREADS`] run at once, the rest queue. Threads
//! start on demand and leave after [`IDLE_EXIT`] without work.
//!
//! A hop to a sleeping thread and back costs two wake-ups, 9 to 15 µs on a
//! small VM, more than many fetches it carries (docs/benchmarks.md). So
//! both ends spin briefly before they sleep: a pool thread that finished a
//! job watches the queue for [`SPIN_FOR_JOB`] (one thread at a time, so at
//! most one core is burnt), and an awaiting task watches for its result for
//! [`SPIN_FOR_RESULT`] before it returns `Pending` (it holds its executor
//! thread that long at most, about what the fetch would have taken there).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Most threads the shared pool runs at once.
pub const BLOCKING_THREADS: usize = 16;
/// How long an idle pool thread waits for work before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(30);
/// How long a pool thread that finished a job watches for the next one
/// before it sleeps.
pub(crate) const SPIN_FOR_JOB: Duration = Duration::from_micros(50);
/// How long an awaiting task watches for its job's result before it
/// returns `Pending` and sleeps until woken.
pub(crate) const SPIN_FOR_RESULT: Duration = Duration::from_micros(20);

/// Spins until `done` says so or `limit` has passed; whether it did.
fn spin_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if done() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= limit {
            return done();
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Pool {
    queue: Mutex<VecDeque<Job>>,
    work: Condvar,
    /// Threads alive, and those waiting for work (asleep or spinning).
    threads: AtomicUsize,
    idle: AtomicUsize,
    /// Jobs queued and not taken yet, read by a spinning thread without the
    /// queue's lock.
    queued: AtomicUsize,
    /// Whether a thread is spinning for the next job.
    spinning: AtomicBool,
    /// Threads asleep on `work` (counted under the queue's lock), so a
    /// submit wakes one only when one sleeps: a `notify_one` is a syscall.
    sleeping: AtomicUsize,
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
        {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.push_back(job);
            // Counted under the lock, so a pop never counts it down first.
            self.queued.fetch_add(1, Ordering::SeqCst);
        }
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
        // A thread that went to sleep before the push above counted itself
        // under the lock the push took; one that looks after it finds the
        // job. A spinning thread takes one job for sure (it looks under the
        // lock after its spin), so a sleeper is woken only for more.
        let spinner = usize::from(self.spinning.load(Ordering::SeqCst));
        if self.sleeping.load(Ordering::SeqCst) > 0 && self.queued.load(Ordering::SeqCst) > spinner
        {
            self.work.notify_one();
        }
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

    /// Watches the queue for up to [`SPIN_FOR_JOB`], counted idle so that
    /// a job queued meanwhile starts no new thread; the caller then takes
    /// the queue's lock and looks, so no job is missed when the spin ends.
    /// One thread spins at a time.
    fn spin_for_job(&self) {
        if self
            .spinning
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        self.idle.fetch_add(1, Ordering::AcqRel);
        spin_until(SPIN_FOR_JOB, || self.queued.load(Ordering::SeqCst) > 0);
        self.idle.fetch_sub(1, Ordering::AcqRel);
        self.spinning.store(false, Ordering::SeqCst);
    }

    fn work_loop(&self) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(job) = queue.pop_front() {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                drop(queue);
                job();
                self.spin_for_job();
                queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            self.idle.fetch_add(1, Ordering::AcqRel);
            self.sleeping.fetch_add(1, Ordering::SeqCst);
            let (q, waited) = self
                .work
                .wait_timeout(queue, IDLE_EXIT)
                .unwrap_or_else(|e| e.into_inner());
            self.sleeping.fetch_sub(1, Ordering::AcqRel);
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

/// What a job and its awaiting task share.
#[derive(Debug)]
struct Shared<R> {
    /// Set once `slot.result` is, read without the lock while spinning.
    ready: AtomicBool,
    slot: Mutex<Slot<R>>,
}

/// A future of the result of a closure running on the shared pool.
#[derive(Debug)]
pub(crate) struct BlockingTask<R> {
    shared: Arc<Shared<R>>,
}

/// Queues `f` on the shared pool.
pub(crate) fn spawn_blocking<R, F>(f: F) -> std::io::Result<BlockingTask<R>>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    let shared = Arc::new(Shared {
        ready: AtomicBool::new(false),
        slot: Mutex::new(Slot {
            result: None,
            waker: None,
        }),
    });
    let theirs = Arc::clone(&shared);
    pool().submit(Box::new(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let waker = {
            let mut s = theirs.slot.lock().unwrap_or_else(|e| e.into_inner());
            s.result = Some(result);
            theirs.ready.store(true, Ordering::Release);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }))?;
    Ok(BlockingTask { shared })
}

impl<R> Future for BlockingTask<R> {
    type Output = R;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        let shared = &self.shared;
        spin_until(SPIN_FOR_RESULT, || shared.ready.load(Ordering::Acquire));
        let mut s = shared.slot.lock().unwrap_or_else(|e| e.into_inner());
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

    #[test]
    fn jobs_queued_around_the_end_of_a_spin_all_run() {
        // Gaps between jobs around SPIN_FOR_JOB and SPIN_FOR_RESULT, from
        // several submitters at once: a job queued just as a spinning thread
        // gives up must still run (a lost one would hang its awaiter, so
        // the whole run is bounded).
        let (tx, rx) = std::sync::mpsc::channel();
        for t in 0..3u64 {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..600u64 {
                    let gap = (i * 7 + t * 13) % 90;
                    std::thread::sleep(Duration::from_micros(gap));
                    let want = t * 1000 + i;
                    let work = Duration::from_micros(i % 30);
                    let got = pollster::block_on(
                        spawn_blocking(move || {
                            spin_until(work, || false);
                            want
                        })
                        .unwrap(),
                    );
                    assert_eq!(got, want);
                }
                tx.send(t).unwrap();
            });
        }
        drop(tx);
        for _ in 0..3 {
            rx.recv_timeout(Duration::from_secs(60))
                .expect("a submitter finished (no job lost)");
        }
    }
}
