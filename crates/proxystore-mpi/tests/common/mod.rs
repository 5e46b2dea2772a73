//! Launching MPI jobs from tests: `mpirun` with the options this machine
//! and CI need, and a job run under a hard time limit that leaves no
//! process behind.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// `mpirun -n ranks [mca] program`, with stdout and stderr piped, or
/// `None` (with the reason printed as `SKIP: ...`) where MPI is not
/// installed or `mca` (Open MPI options) needs Open MPI's `mpirun`.
pub(crate) fn mpirun(ranks: u32, mca: &[&str], program: &Path) -> Option<Command> {
    let Ok(version) = Command::new("mpirun").arg("--version").output() else {
        println!("SKIP: mpirun not found (install openmpi-bin; ci/install-deps.sh does)");
        return None;
    };
    let open_mpi = String::from_utf8_lossy(&version.stdout).contains("Open MPI");
    let mut cmd = Command::new("mpirun");
    if open_mpi {
        // CI runs as root; more ranks than cores on a 2-core machine.
        cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .arg("--oversubscribe")
            .args(mca);
    } else if !mca.is_empty() {
        println!("SKIP: the Open MPI options {mca:?} need Open MPI's mpirun");
        return None;
    }
    cmd.args(["-n", &ranks.to_string()])
        .arg(program)
        // mpirun forwards stdin to rank 0; it has no terminal in its own
        // session.
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Some(cmd)
}

/// `mpirun` running this test binary's entry test `rank_main` on `ranks`
/// ranks in `role` (with Open MPI options `mca`), or `None` as [`mpirun`].
#[allow(dead_code)] // the task farm test launches its example instead
pub(crate) fn rank_job(ranks: u32, role: &str, mca: &[&str]) -> Option<Command> {
    let exe = std::env::current_exe().expect("this test binary");
    let mut cmd = mpirun(ranks, mca, &exe)?;
    cmd.args(["--exact", "rank_main", "--nocapture", "--test-threads=1"])
        .env(proxystore_core::testing::CHILD_ROLE, role);
    Some(cmd)
}

/// What a finished job printed.
pub(crate) struct Job {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `cmd` in a session of its own, killing the whole session (so
/// every rank, not only `mpirun`: Open MPI puts each rank in a process
/// group of its own, but they stay in mpirun's session) if it runs longer
/// than `limit`, and checks that no process of the session outlives it.
pub(crate) fn run_job(mut cmd: Command, limit: Duration) -> Job {
    // SAFETY: the closure runs in the forked child before exec and only
    // calls setsid, which is async-signal-safe and touches no memory of
    // the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let mut child = cmd.spawn().expect("spawn mpirun");
    // The new session's id is mpirun's pid.
    let session = child.id() as libc::pid_t;
    // Read both pipes while the job runs, so a chatty job never blocks.
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for mpirun") {
            break Some(s);
        }
        if start.elapsed() > limit {
            // mpirun ends its ranks on SIGTERM; whatever is left is killed.
            kill_session(session, libc::SIGTERM);
            std::thread::sleep(Duration::from_secs(3));
            kill_session(session, libc::SIGKILL);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // mpirun waits for its ranks; give stragglers a moment, then end them
    // (before reading the pipes to their end, which they may hold open).
    let settle = Instant::now();
    let mut stragglers = Vec::new();
    loop {
        let left = session_members(session);
        if left.is_empty() {
            break;
        }
        if settle.elapsed() > Duration::from_secs(5) {
            kill_session(session, libc::SIGKILL);
            stragglers = left;
            std::thread::sleep(Duration::from_millis(200));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stdout = stdout.map(join).unwrap_or_default();
    let stderr = stderr.map(join).unwrap_or_default();
    let Some(status) = status else {
        panic!("the MPI job did not finish within {limit:?}; killed it:\n{stdout}\n{stderr}");
    };
    assert!(
        stragglers.is_empty(),
        "processes {stragglers:?} of the MPI job outlived mpirun (killed them):\n{stdout}\n{stderr}"
    );
    Job {
        status,
        stdout,
        stderr,
    }
}

fn drain<R: std::io::Read + Send + 'static>(mut pipe: R) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn join(reader: std::thread::JoinHandle<String>) -> String {
    reader.join().unwrap_or_default()
}

/// The live (not zombie) processes of session `session`, from /proc.
fn session_members(session: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // After the command's closing parenthesis: state, ppid, pgrp,
            // session.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.len() > 3 && fields[0] != "Z" && fields[3] == session.to_string()
        })
        .collect()
}

fn kill_session(session: libc::pid_t, signal: libc::c_int) {
    for pid in session_members(session) {
        // SAFETY: kill has no memory preconditions; `pid` is a process of
        // the session this test created for its own mpirun.
        unsafe { libc::kill(pid, signal) };
    }
}
