//! Threads as ranks: a window whose memory is this process's, a
//! read-write lock per rank for MPI's passive-target locks, and the peer
//! crate's channels for messages. The connector, the directory protocol
//! and the staging above it are the same code as under `mpirun`.
//!
//! The mock checks what MPI would leave undefined: a read outside every
//! region the target attached, or outside an epoch on the target, is an
//! error (so a protocol bug that reads detached memory fails a test
//! instead of reading garbage).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::Duration;

use proxystore_core::{Error, Result};

use crate::member::JobInfo;
use crate::member::{self, Member, Net};
use crate::window::{LockMode, Window};

/// Longest wait for a mock lock (MPI's would wait forever; a test should
/// fail instead).
const LOCK_WAIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct LockState {
    readers: u32,
    writer: bool,
}

#[derive(Default)]
struct RankLock {
    state: Mutex<LockState>,
    freed: Condvar,
}

struct World {
    /// Attached regions (base, len) of each rank.
    regions: Vec<Mutex<Vec<(usize, usize)>>>,
    locks: Vec<RankLock>,
    directories: Mutex<Vec<u64>>,
    barrier: Arc<Barrier>,
    reads: AtomicU64,
}

/// One mock rank's view of the job's window.
struct MockWindow {
    world: Arc<World>,
    rank: u32,
}

fn mock_error(what: String) -> Error {
    Error::Transport {
        connector: crate::KIND.into(),
        source: format!("mock window: {what}").into(),
    }
}

impl MockWindow {
    fn lock_of(&self, rank: u32) -> Result<&RankLock> {
        self.world
            .locks
            .get(rank as usize)
            .ok_or_else(|| mock_error(format!("rank {rank} does not exist")))
    }
}

impl Window for MockWindow {
    fn attach(&self, base: *mut u8, len: usize) -> Result<u64> {
        let mut regions = self.world.regions[self.rank as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        regions.push((base as usize, len));
        Ok(base as u64)
    }

    fn detach(&self, base: *mut u8) -> Result<()> {
        let mut regions = self.world.regions[self.rank as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let at = regions
            .iter()
            .position(|r| r.0 == base as usize)
            .ok_or_else(|| mock_error(format!("detach of {base:p}, which is not attached")))?;
        regions.swap_remove(at);
        Ok(())
    }

    fn lock(&self, rank: u32, mode: LockMode) -> Result<()> {
        let lock = self.lock_of(rank)?;
        let state = lock.state.lock().unwrap_or_else(|e| e.into_inner());
        let blocked = |s: &mut LockState| match mode {
            LockMode::Shared => s.writer,
            LockMode::Exclusive => s.writer || s.readers > 0,
        };
        let (mut state, waited) = lock
            .freed
            .wait_timeout_while(state, LOCK_WAIT, blocked)
            .unwrap_or_else(|e| e.into_inner());
        if waited.timed_out() {
            return Err(Error::Timeout {
                connector: crate::KIND.into(),
                op: "mock window lock",
                after: LOCK_WAIT,
            });
        }
        match mode {
            LockMode::Shared => state.readers += 1,
            LockMode::Exclusive => state.writer = true,
        }
        Ok(())
    }

    fn unlock(&self, rank: u32) -> Result<()> {
        let lock = self.lock_of(rank)?;
        let mut state = lock.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.writer {
            state.writer = false;
        } else if state.readers > 0 {
            state.readers -= 1;
        } else {
            return Err(mock_error(format!(
                "unlock of rank {rank}, which is not locked"
            )));
        }
        lock.freed.notify_all();
        Ok(())
    }

    fn read(&self, rank: u32, addr: u64, dst: &mut [u8]) -> Result<()> {
        {
            let state = self
                .lock_of(rank)?
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if state.readers == 0 && !state.writer {
                return Err(mock_error(format!("read of rank {rank} outside an epoch")));
            }
        }
        let regions = self.world.regions[rank as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (start, end) = (addr as usize, addr as usize + dst.len());
        if !regions.iter().any(|&(b, l)| start >= b && end <= b + l) {
            return Err(mock_error(format!(
                "read of {} bytes at {addr:#x} of rank {rank}, outside its attached memory",
                dst.len()
            )));
        }
        // SAFETY: the range lies in memory `rank` attached and has not
        // detached (the regions lock is held), which stays allocated while
        // attached; `dst` is a distinct, writable buffer.
        unsafe { std::ptr::copy_nonoverlapping(start as *const u8, dst.as_mut_ptr(), dst.len()) };
        self.world.reads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Runs `body(rank)` on `ranks` threads, each playing one rank of a new
/// mock job (connectors built on it join that rank), and returns their
/// results in rank order. Every rank passes a barrier before its job
/// state goes, so no rank tears down while another reads from it.
pub fn run<T: Send>(ranks: u32, body: impl Fn(u32) -> T + Sync) -> Result<Vec<T>> {
    let job = fastrand::u64(1..);
    let barrier = Arc::new(Barrier::new(ranks as usize));
    let world = Arc::new(World {
        regions: (0..ranks).map(|_| Mutex::default()).collect(),
        locks: (0..ranks).map(|_| RankLock::default()).collect(),
        directories: Mutex::new(vec![0; ranks as usize]),
        barrier: Arc::clone(&barrier),
        reads: AtomicU64::new(0),
    });
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..ranks)
            .map(|rank| {
                let world = Arc::clone(&world);
                let body = &body;
                scope.spawn(move || -> Result<T> {
                    let window = Arc::new(MockWindow {
                        world: Arc::clone(&world),
                        rank,
                    });
                    let exchange = |addr: u64| {
                        world.directories.lock().unwrap_or_else(|e| e.into_inner())
                            [rank as usize] = addr;
                        world.barrier.wait();
                        let all = world
                            .directories
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .clone();
                        Ok(all)
                    };
                    let info = JobInfo { job, rank, ranks };
                    let me = Member::new(
                        info,
                        window,
                        Net::Mock(Arc::clone(&world.barrier)),
                        exchange,
                    )?;
                    member::play(Some(me));
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(rank)));
                    world.barrier.wait();
                    member::play(None);
                    Ok(out.unwrap_or_else(|p| std::panic::resume_unwind(p)))
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}
