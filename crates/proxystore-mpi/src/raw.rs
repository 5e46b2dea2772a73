//! The MPI handles and checks every module that calls MPI shares: handles
//! that cross threads, return codes as typed errors, and the guard that
//! keeps calls off freed handles after `finalize`.

use std::ffi::c_int;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use mpi::ffi;
use proxystore_core::{Error, Result};

/// An MPI handle shared between threads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Handle<T>(pub(crate) T);

// SAFETY: MPI handles are process-wide names of MPI objects, valid on any
// thread; the job state requires MPI_THREAD_MULTIPLE (checked in `init`),
// under which MPI may be called from every thread at once.
unsafe impl<T> Send for Handle<T> {}
// SAFETY: as for Send.
unsafe impl<T> Sync for Handle<T> {}

/// Whether the job state's MPI objects may still be used.
#[derive(Debug)]
pub(crate) struct Live(RwLock<bool>);

impl Live {
    pub(crate) fn new() -> Self {
        Live(RwLock::new(true))
    }

    /// Waits for the calls in flight, then refuses every later one; the
    /// caller frees the handles while it holds the returned guard.
    pub(crate) fn end(&self) -> RwLockWriteGuard<'_, bool> {
        let mut live = self.0.write().unwrap_or_else(|e| e.into_inner());
        *live = false;
        live
    }

    /// Holds off [`finalize`] for the length of one MPI call.
    pub(crate) fn enter(&self) -> Result<RwLockReadGuard<'_, bool>> {
        let live = self.0.read().unwrap_or_else(|e| e.into_inner());
        if !*live {
            return Err(finalized());
        }
        Ok(live)
    }
}

fn finalized() -> Error {
    Error::Config(
        "mpi: the job's connector state was finalized (proxystore_mpi::finalize); \
         MPI connectors cannot be used after it"
            .into(),
    )
}

/// An MPI return code as a result; `what` names the call.
pub(crate) fn check(rc: c_int, what: &str) -> Result<()> {
    if rc == ffi::MPI_SUCCESS as c_int {
        return Ok(());
    }
    let mut buf = vec![0u8; ffi::MPI_MAX_ERROR_STRING as usize + 1];
    let mut len: c_int = 0;
    // SAFETY: `buf` holds MPI_MAX_ERROR_STRING bytes as MPI_Error_string
    // requires; `len` is a valid out-pointer.
    unsafe { ffi::MPI_Error_string(rc, buf.as_mut_ptr().cast(), &mut len) };
    buf.truncate(len.max(0) as usize);
    Err(Error::Transport {
        connector: crate::KIND.into(),
        source: format!(
            "{what} failed: {} (code {rc})",
            String::from_utf8_lossy(&buf)
        )
        .into(),
    })
}
