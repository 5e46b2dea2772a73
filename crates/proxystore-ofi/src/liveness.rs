//! Whether the process behind an shm peer still runs.
//!
//! libfabric 1.17's shm provider takes a spin lock inside the *receiving*
//! endpoint's shared region for every send to it, and the receiver takes
//! the same lock on every progress poll. A receiver killed while it holds
//! the lock leaves it held for good, and the next send to it spins without
//! end (seen in CI: a reader stuck in `fi_send` after its owner was
//! SIGKILLed). A send is therefore preceded by a check that the peer's
//! process has not exited, which turns that case into a typed error. A
//! process that dies *while* a send spins on its lock is not caught; the
//! window is the lock's hold time (microseconds).

use std::os::fd::{FromRawFd, OwnedFd};

/// The process behind one shm peer.
pub(crate) struct ProcessWatch {
    pid: libc::pid_t,
    /// A pidfd, readable once the process exits (zombies included, and it
    /// cannot be fooled by a recycled pid); `None` where pidfds are not
    /// available (Linux < 5.3, no fds left): then `kill(pid, 0)`.
    pidfd: Option<OwnedFd>,
}

impl ProcessWatch {
    /// The process of the shm region `name`, which libfabric 1.17 names
    /// `<pid>:<...>` for endpoints it names itself; `None` for other names.
    pub(crate) fn of_region(name: &str) -> Option<ProcessWatch> {
        let pid: libc::pid_t = name.split(':').next()?.parse().ok()?;
        if pid <= 0 {
            return None;
        }
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or
        // -1; the fd is owned by the OwnedFd from here on.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let pidfd = i32::try_from(fd)
            .ok()
            .filter(|&fd| fd >= 0)
            // SAFETY: a fresh fd that nothing else owns.
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
        Some(ProcessWatch { pid, pidfd })
    }

    /// The peer's process id.
    pub(crate) fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Whether the process has exited (or no longer exists).
    pub(crate) fn exited(&self) -> bool {
        match &self.pidfd {
            Some(fd) => {
                use std::os::fd::AsRawFd;
                let mut p = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, no wait.
                let n = unsafe { libc::poll(&mut p, 1, 0) };
                n > 0 && p.revents & (libc::POLLIN | libc::POLLHUP) != 0
            }
            None => {
                // SAFETY: signal 0 only checks that the process exists.
                let rc = unsafe { libc::kill(self.pid, 0) };
                rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_without_a_pid_are_not_watched() {
        assert!(ProcessWatch::of_region("named-by-the-user").is_none());
        assert!(ProcessWatch::of_region("0:1").is_none());
        assert!(ProcessWatch::of_region("-5:1").is_none());
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_child_has_exited() {
        let me = ProcessWatch::of_region(&format!("{}:0:0", std::process::id())).unwrap();
        assert!(!me.exited());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let watch = ProcessWatch::of_region(&format!("{}:1", child.id())).unwrap();
        assert!(!watch.exited());
        child.kill().unwrap();
        // Killed but not yet reaped (a zombie) already counts as exited
        // through the pidfd.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !watch.exited() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(watch.exited());
        child.wait().unwrap();
        assert!(watch.exited());
        assert_eq!(watch.pid(), child.id() as libc::pid_t);
    }
}
