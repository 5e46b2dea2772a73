//! The window calls the directory protocol and direct gets are written
//! over: one rank's view of a dynamic RMA window. MPI implements it with
//! `MPI_Win_*` and `MPI_Get` ([`crate::world`]); the mock with threads as
//! ranks and a read-write lock per rank (`crate::mock`), so the protocol
//! above runs in tests without `mpirun`.

use std::sync::{Mutex, MutexGuard};

use proxystore_core::Result;

/// A passive-target lock's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockMode {
    /// Many readers at once (`MPI_LOCK_SHARED`).
    Shared,
    /// One holder, no reader (`MPI_LOCK_EXCLUSIVE`).
    Exclusive,
}

/// One rank's view of a dynamic window.
pub(crate) trait Window: Send + Sync + 'static {
    /// Makes `len` bytes at `base` readable by other ranks and returns the
    /// address readers name them by (`MPI_Win_attach`, `MPI_Get_address`).
    fn attach(&self, base: *mut u8, len: usize) -> Result<u64>;

    /// Stops exposing the region attached at `base` (`MPI_Win_detach`).
    fn detach(&self, base: *mut u8) -> Result<()>;

    /// Starts a passive-target epoch on `rank`'s memory; on this rank's
    /// own memory an exclusive lock waits until every reader has left.
    fn lock(&self, rank: u32, mode: LockMode) -> Result<()>;

    /// Ends the epoch [`Window::lock`] started.
    fn unlock(&self, rank: u32) -> Result<()>;

    /// Reads `dst.len()` bytes at `addr` of `rank`'s attached memory and
    /// returns once they are in `dst` (`MPI_Get`, then `MPI_Win_flush`).
    /// Only inside an epoch on `rank`.
    fn read(&self, rank: u32, addr: u64, dst: &mut [u8]) -> Result<()>;
}

/// An epoch on one rank, ended when dropped (so an error path never leaves
/// a rank locked).
///
/// MPI forbids two epochs of one process on the same target at once, and
/// its threads share the process's epochs: `turn` (one mutex per target
/// rank in this process) makes threads take turns.
pub(crate) struct Epoch<'w> {
    window: &'w dyn Window,
    rank: u32,
    _turn: MutexGuard<'w, ()>,
}

impl<'w> Epoch<'w> {
    /// Locks `rank` in `mode`, after this process's other epochs on it.
    pub(crate) fn new(
        window: &'w dyn Window,
        turn: &'w Mutex<()>,
        rank: u32,
        mode: LockMode,
    ) -> Result<Self> {
        let turn = turn.lock().unwrap_or_else(|e| e.into_inner());
        window.lock(rank, mode)?;
        Ok(Epoch {
            window,
            rank,
            _turn: turn,
        })
    }

    /// See [`Window::read`].
    pub(crate) fn read(&self, addr: u64, dst: &mut [u8]) -> Result<()> {
        self.window.read(self.rank, addr, dst)
    }
}

impl Drop for Epoch<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.window.unlock(self.rank) {
            tracing::warn!(rank = self.rank, error = %e, "could not end an RMA epoch");
        }
    }
}
