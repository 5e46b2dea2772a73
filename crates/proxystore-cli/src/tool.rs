//! Running a transport's own benchmark tool (`ucx_perftest`,
//! `fi_pingpong`) as a server and a client process on loopback: finding
//! it on `PATH`, a free control port, children always killed and reaped,
//! every wait bounded by [`RUN_LIMIT`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use crate::error::CliError;

/// How long one run of a tool may take before it is killed.
pub(crate) const RUN_LIMIT: Duration = Duration::from_secs(120);

/// `tool`'s path, if it is in a directory of `PATH`.
pub(crate) fn find_on_path(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// The file name of `tool`, for messages.
pub(crate) fn name(tool: &Path) -> String {
    tool.file_name()
        .unwrap_or(tool.as_os_str())
        .to_string_lossy()
        .into_owned()
}

/// A TCP port free on every address right now (the tools' servers listen
/// on all of them). It can be taken before the tool binds it: callers run
/// [`twice`].
pub(crate) fn free_port(tool: &Path) -> Result<String, CliError> {
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| CliError::new(1, format!("finding a free port for {}: {e}", name(tool))))?
        .port();
    Ok(port.to_string())
}

/// `f`, tried a second time if the first fails (a port taken between
/// choosing and binding it, a noisy run).
pub(crate) fn twice<T>(f: impl Fn() -> Result<T, CliError>) -> Result<T, CliError> {
    f().or_else(|_| f())
}

/// Starts `command` (a run of `tool`).
pub(crate) fn spawn(command: &mut Command, tool: &Path) -> Result<Child, CliError> {
    command
        .spawn()
        .map_err(|e| CliError::new(1, format!("starting {}: {e}", tool.display())))
}

/// A child process killed (and reaped) when dropped.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The output of `child` (a run of `tool`), reading both pipes as it runs
/// (so it never blocks on a full pipe); killed and reaped after
/// [`RUN_LIMIT`].
pub(crate) fn wait_limited(child: Child, tool: &Path) -> Result<Output, CliError> {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(RUN_LIMIT) {
        Ok(out) => out,
        Err(_) => {
            // SAFETY: kill(2) of our own child, not yet reaped: its waiter
            // thread is still in wait_with_output.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            let _ = waiter.join();
            return Err(CliError::new(
                1,
                format!("{} took longer than {RUN_LIMIT:?}", name(tool)),
            ));
        }
    };
    let _ = waiter.join();
    out.map_err(|e| CliError::new(1, format!("waiting for {}: {e}", name(tool))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_name_the_tool_and_children_are_reaped() {
        let sh = find_on_path("sh").expect("sh on PATH");
        assert_eq!(name(&sh), "sh");
        let mut echo = Command::new(&sh);
        echo.args(["-c", "echo hi"])
            .stdout(std::process::Stdio::piped());
        let child = spawn(&mut echo, &sh).unwrap();
        let out = wait_limited(child, &sh).unwrap();
        assert_eq!(out.stdout, b"hi\n");
        let missing = Path::new("/nonexistent/fi_pingpong");
        let err = spawn(&mut Command::new(missing), missing).unwrap_err();
        assert!(
            err.message.contains("/nonexistent/fi_pingpong"),
            "{}",
            err.message
        );
        let port: u16 = free_port(&sh).unwrap().parse().unwrap();
        assert_ne!(port, 0);
        let sleeper = KillOnDrop(spawn(Command::new(&sh).args(["-c", "sleep 60"]), &sh).unwrap());
        let pid = sleeper.0.id() as libc::pid_t;
        drop(sleeper);
        // SAFETY: signal 0 only checks whether the pid exists.
        assert_ne!(unsafe { libc::kill(pid, 0) }, 0, "the child was reaped");
    }
}
