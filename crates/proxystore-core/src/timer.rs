//! One timer thread per process that runs tasks at their deadlines (lease
//! expiries), instead of one sleeping thread per lease.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A task the timer runs at its deadline. It returns a later deadline to run
/// again then (a lease that was extended), or `None` when it is finished.
pub(crate) type Task = Box<dyn FnMut() -> Option<Instant> + Send + 'static>;

struct Entry {
    at: Instant,
    seq: u64,
    task: Task,
}

// Ordered so that the max-heap pops the earliest deadline first.
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Entry>,
    next_seq: u64,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    changed: Condvar,
}

/// The idle timer thread still wakes this often; nothing depends on it.
const IDLE_WAKE: Duration = Duration::from_secs(3600);

fn run(shared: &Shared) {
    let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        let wait = match queue.heap.peek() {
            Some(e) if e.at <= now => None,
            Some(e) => Some(e.at - now),
            None => Some(IDLE_WAKE),
        };
        if let Some(wait) = wait {
            queue = shared
                .changed
                .wait_timeout(queue, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        let Some(mut entry) = queue.heap.pop() else {
            continue;
        };
        // Tasks run without the lock, so they may schedule others.
        drop(queue);
        let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (entry.task)()))
            .unwrap_or_else(|_| {
                tracing::warn!("a timer task panicked");
                None
            });
        queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = again {
            entry.at = at;
            queue.heap.push(entry);
        }
    }
}

/// The process's timer, started on first use. A failed start is retried by
/// the next call.
fn timer() -> std::io::Result<Arc<Shared>> {
    static TIMER: Mutex<Option<Arc<Shared>>> = Mutex::new(None);
    let mut slot = TIMER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(shared) = &*slot {
        return Ok(Arc::clone(shared));
    }
    let shared = Arc::new(Shared::default());
    let theirs = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("proxystore-timer".into())
        .spawn(move || run(&theirs))?;
    *slot = Some(Arc::clone(&shared));
    Ok(shared)
}

/// Runs `task` on the timer thread at `at` (and again at each deadline it
/// returns). Fails only if the timer thread cannot be started.
pub(crate) fn schedule(at: Instant, task: Task) -> std::io::Result<()> {
    let shared = timer()?;
    let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
    let seq = queue.next_seq;
    queue.next_seq += 1;
    queue.heap.push(Entry { at, seq, task });
    shared.changed.notify_all();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn tasks_run_in_deadline_order_and_can_run_again() {
        let (tx, rx) = channel();
        let now = Instant::now();
        for (name, ms) in [("late", 120u64), ("early", 20)] {
            let tx = tx.clone();
            schedule(
                now + Duration::from_millis(ms),
                Box::new(move || {
                    let _ = tx.send(name);
                    None
                }),
            )
            .expect("schedule");
        }
        let mut runs = 0;
        schedule(
            now + Duration::from_millis(50),
            Box::new(move || {
                runs += 1;
                let _ = tx.send(if runs == 1 { "again-1" } else { "again-2" });
                (runs == 1).then(|| Instant::now() + Duration::from_millis(20))
            }),
        )
        .expect("schedule");
        let order: Vec<&str> = (0..4)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).expect("task ran"))
            .collect();
        assert_eq!(order, ["early", "again-1", "again-2", "late"]);
        assert!(now.elapsed() >= Duration::from_millis(120));
    }
}
