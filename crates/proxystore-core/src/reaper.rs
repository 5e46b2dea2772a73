//! The process's one eviction reaper: a background thread that runs the
//! evictions `Drop` implementations hand it, so dropping an owned proxy or a
//! scope never waits on the network.
//!
//! The queue is bounded ([`QUEUE_CAPACITY`] jobs). When it is full, or the
//! thread could not be started, [`Reaper::submit`] hands the job back and
//! the caller runs it inline (with a warning): slower, but memory stays
//! bounded and no eviction is dropped.

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A unit of background work.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// Jobs the reaper queue holds before submitters run theirs inline.
pub(crate) const QUEUE_CAPACITY: usize = 4096;

/// The sending side of a reaper thread's queue.
#[derive(Debug)]
pub(crate) struct Reaper {
    queue: Option<SyncSender<Job>>,
}

impl Reaper {
    /// Starts a reaper thread with a queue of `capacity` jobs. If the thread
    /// cannot be started, every submission is handed back.
    pub(crate) fn start(capacity: usize) -> Reaper {
        let (tx, rx) = sync_channel::<Job>(capacity);
        let spawned = std::thread::Builder::new()
            .name("proxystore-reaper".into())
            .spawn(move || {
                // Ends when every sender is gone, i.e. never for the global one.
                while let Ok(job) = rx.recv() {
                    // A panicking connector must not take the reaper (and every
                    // later eviction of the process) down with it.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::warn!("an eviction panicked on the reaper thread");
                    }
                }
            });
        match spawned {
            Ok(_) => Reaper { queue: Some(tx) },
            Err(e) => {
                tracing::warn!(error = %e, "could not start the eviction reaper; evicting inline");
                Reaper { queue: None }
            }
        }
    }

    /// The reaper of this process, started on first use.
    pub(crate) fn global() -> &'static Reaper {
        static GLOBAL: OnceLock<Reaper> = OnceLock::new();
        GLOBAL.get_or_init(|| Reaper::start(QUEUE_CAPACITY))
    }

    /// Queues `job`; never blocks. `Err(job)` if the queue is full or there
    /// is no reaper thread: the caller runs it itself.
    pub(crate) fn submit(&self, job: Job) -> Result<(), Job> {
        let Some(queue) = &self.queue else {
            return Err(job);
        };
        match queue.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => Err(job),
        }
    }
}

/// A count of jobs not yet finished that can be waited on.
#[derive(Debug, Default)]
pub(crate) struct Outstanding {
    count: Mutex<usize>,
    idle: Condvar,
}

impl Outstanding {
    /// No job outstanding.
    pub(crate) const fn new() -> Self {
        Outstanding {
            count: Mutex::new(0),
            idle: Condvar::new(),
        }
    }

    /// One more job.
    pub(crate) fn add(&self) {
        *self.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    /// One job finished.
    pub(crate) fn done(&self) {
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.idle.notify_all();
        }
    }

    /// Waits until no job is outstanding; `false` if `timeout` passed first.
    pub(crate) fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        while *count > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            count = self
                .idle
                .wait_timeout(count, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::sync::Arc;

    #[test]
    fn a_full_queue_hands_the_job_back_instead_of_blocking() {
        let reaper = Reaper::start(1);
        let (release, blocked) = channel::<()>();
        let (started_tx, started) = channel::<()>();
        let running = Box::new(move || {
            let _ = started_tx.send(());
            let _ = blocked.recv_timeout(Duration::from_secs(10));
        });
        assert!(reaper.submit(running).is_ok());
        started
            .recv_timeout(Duration::from_secs(10))
            .expect("job ran");
        assert!(reaper.submit(Box::new(|| {})).is_ok(), "one fits the queue");
        let start = Instant::now();
        assert!(reaper.submit(Box::new(|| {})).is_err(), "queue full");
        assert!(start.elapsed() < Duration::from_secs(1));
        release.send(()).expect("release");
    }

    #[test]
    fn outstanding_jobs_are_waited_for_with_a_bound() {
        let reaper = Reaper::start(8);
        let pending = Arc::new(Outstanding::default());
        pending.add();
        let theirs = Arc::clone(&pending);
        let job = Box::new(move || {
            std::thread::sleep(Duration::from_millis(100));
            theirs.done();
        });
        assert!(reaper.submit(job).is_ok());
        assert!(!pending.wait_idle(Duration::from_millis(1)));
        assert!(pending.wait_idle(Duration::from_secs(10)));
    }

    #[test]
    fn a_panicking_job_does_not_stop_the_reaper() {
        let reaper = Reaper::start(8);
        assert!(reaper.submit(Box::new(|| panic!("boom"))).is_ok());
        let (tx, rx) = channel();
        assert!(reaper
            .submit(Box::new(move || {
                let _ = tx.send(());
            }))
            .is_ok());
        assert!(rx.recv_timeout(Duration::from_secs(10)).is_ok());
    }
}
