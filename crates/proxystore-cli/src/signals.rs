//! Waiting for SIGINT/SIGTERM without a signal handler: block them in
//! every thread, then take them synchronously with `sigwait`.

use crate::error::CliError;

/// SIGINT and SIGTERM, blocked in this thread and every thread it starts.
pub(crate) struct StopSignals {
    set: libc::sigset_t,
}

impl StopSignals {
    /// Blocks SIGINT and SIGTERM. Call before starting threads.
    pub(crate) fn block() -> Result<Self, CliError> {
        // SAFETY: `set` is a plain C struct initialized by sigemptyset before
        // use; the calls only read and write it and the thread's mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(CliError::new(
                    1,
                    format!("blocking signals failed: error {rc}"),
                ));
            }
            Ok(StopSignals { set })
        }
    }

    /// Waits for one of the signals and names it.
    pub(crate) fn wait(&self) -> Result<&'static str, CliError> {
        let mut signal: libc::c_int = 0;
        // SAFETY: `self.set` was initialized in `block`; `signal` is a valid
        // out-pointer for the duration of the call.
        let rc = unsafe { libc::sigwait(&self.set, &mut signal) };
        if rc != 0 {
            return Err(CliError::new(
                1,
                format!("waiting for a signal failed: error {rc}"),
            ));
        }
        Ok(if signal == libc::SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        })
    }
}
