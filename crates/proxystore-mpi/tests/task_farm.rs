//! The task farm example (`examples/task_farm.rs`) under
//! `mpirun --oversubscribe -n 4`: every task of the `shm`, `zmq` and `mpi`
//! stores verified, nothing left in the stores, in `/dev/shm` or in the
//! process table; and a wrong result ends the job with an error instead
//! of a hang.
//!
//! `cargo test` builds the example before it runs tests; this test only
//! looks for it beside its own executable.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Longest a farm job may take before it is killed.
const JOB_LIMIT: Duration = Duration::from_secs(120);

/// Tasks per store.
const TASKS: u64 = 8;

/// The example binary cargo built for this test run
/// (`target/<profile>/examples/task_farm`).
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let path = deps.join("../examples/task_farm");
    assert!(
        path.exists(),
        "{} not found: `cargo test -p proxystore-mpi` builds the examples first \
         (a `--test task_farm` filter alone does not; `cargo build --example task_farm \
         -p proxystore-mpi` does)",
        path.display()
    );
    // A `--test task_farm` run does not rebuild the example either.
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/task_farm.rs");
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).unwrap();
    assert!(
        modified(&path) >= modified(&source),
        "{} is older than {}: rebuild it (`cargo test -p proxystore-mpi` does)",
        path.display(),
        source.display()
    );
    path
}

/// A new directory name under /dev/shm for one job's `shm` store.
fn shm_dir(case: &str) -> PathBuf {
    PathBuf::from(format!(
        "/dev/shm/proxystore-farm-test-{case}-{}",
        std::process::id()
    ))
}

/// `mpirun -n 4 task_farm --tasks TASKS --shm-dir DIR extra...`.
fn farm(dir: &std::path::Path, extra: &[&str]) -> Option<Command> {
    let mut cmd = common::mpirun(4, &[], &example())?;
    cmd.args(["--tasks", &TASKS.to_string()])
        .arg("--shm-dir")
        .arg(dir)
        .args(extra);
    Some(cmd)
}

#[test]
fn four_ranks_farm_tasks_through_shm_zmq_and_mpi() {
    let dir = shm_dir("ok");
    let Some(cmd) = farm(&dir, &[]) else { return };
    let job = common::run_job(cmd, JOB_LIMIT);
    let left = dir.exists();
    let _ = std::fs::remove_dir_all(&dir);
    let (stdout, stderr) = (&job.stdout, &job.stderr);
    assert!(
        job.status.success(),
        "task farm failed ({}):\n{stdout}\n{stderr}",
        job.status
    );
    for kind in ["shm", "zmq", "mpi"] {
        let line = format!("FARM store={kind} tasks={TASKS}/{TASKS} verified ");
        assert!(
            stdout.lines().any(|l| l.starts_with(&line)),
            "no `{line}` line:\n{stdout}\n{stderr}"
        );
    }
    let all = format!("FARM_OK stores=3 tasks={} ", 3 * TASKS);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&all) && l.ends_with(" leftover=0")),
        "no `{all}... leftover=0` line:\n{stdout}\n{stderr}"
    );
    assert!(!left, "the job left {}", dir.display());
}

#[test]
fn a_wrong_result_aborts_the_job() {
    let dir = shm_dir("fail");
    let Some(cmd) = farm(&dir, &["--fail-task", "3"]) else {
        return;
    };
    let job = common::run_job(cmd, JOB_LIMIT);
    // An aborted job leaves its shm objects behind.
    let _ = std::fs::remove_dir_all(&dir);
    let (stdout, stderr) = (&job.stdout, &job.stderr);
    assert!(
        !job.status.success(),
        "a wrong result passed:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("verification failed: task 3 "),
        "no reason printed:\n{stdout}\n{stderr}"
    );
    assert!(!stdout.contains("FARM_OK"), "{stdout}");
}
