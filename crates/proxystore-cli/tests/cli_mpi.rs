//! `proxystore bench --connector mpi` under `mpirun -n 2` (rank 1 owns,
//! rank 0 measures and writes the records, `mpi-raw` beside), and the
//! one-shot commands refusing mpi from a shell.

#![cfg(feature = "mpi")]
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{has, proxystore, stderr};

#[test]
fn bench_mpi_under_mpirun_reports_mpi_and_mpi_raw() {
    let Ok(version) = Command::new("mpirun").arg("--version").output() else {
        println!("SKIP: mpirun not found (install openmpi-bin; ci/install-deps.sh does)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let mut cmd = Command::new("mpirun");
    if String::from_utf8_lossy(&version.stdout).contains("Open MPI") {
        cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .arg("--oversubscribe");
    }
    let mut child = cmd
        .args([
            "-n",
            "2",
            env!("CARGO_BIN_EXE_proxystore"),
            "bench",
            "--connector",
            "mpi",
        ])
        .args(["--sizes", "1KiB,1MiB", "--iterations", "5", "--json"])
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("mpirun bench did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, err) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(out.status.success(), "{stdout}\n{err}");
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for op in ["put", "get", "roundtrip", "get-owned", "get-view"] {
        assert!(has(&records, "mpi", op), "no mpi {op}: {records:?}");
    }
    assert!(has(&records, "mpi-raw", "get"), "{records:?}");
    assert!(!has(&records, "mpi-raw", "put"), "{records:?}");
    // One report: rank 1 only served.
    assert_eq!(stdout.matches("mpi-raw").count(), 2, "{stdout}");
}

#[test]
fn one_shot_commands_refuse_mpi_from_a_shell() {
    let key = "00000000000000000000000000000001.3@mpi://00000000000000aa/1/1";
    for args in [
        vec!["put", "--connector", "mpi"],
        vec!["get", "--connector", "mpi", key],
        vec!["exists", "--connector", "mpi", key],
        vec!["evict", "--connector", "mpi", key],
        vec!["serve", "--connector", "mpi"],
    ] {
        let o = proxystore(&args, b"abc");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("one MPI job") || e.contains("no server"),
            "{args:?}: {e}"
        );
    }
}

#[test]
fn bench_mpi_outside_mpirun_says_how_to_launch_it() {
    let o = proxystore(&["bench", "--connector", "mpi", "--sizes", "1KiB"], b"");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("mpirun -n 2 proxystore bench --connector mpi"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty(), "no report from a one-rank job");
}

#[test]
fn info_names_the_mpi_library_in_plain_text() {
    let o = proxystore(&["info"], b"");
    let out = String::from_utf8(o.stdout).unwrap();
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("mpi "))
        .unwrap();
    assert!(
        line.contains("Open MPI") || line.contains("MPICH"),
        "{line}"
    );
    assert!(!line.contains('\0'), "{line:?}");
}
