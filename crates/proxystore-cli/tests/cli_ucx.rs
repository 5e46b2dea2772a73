//! `proxystore serve/put/get --connector ucx` across separate processes,
//! and `bench --connector ucx` with its raw baselines.

#![cfg(feature = "ucx")]
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{bench_records, has};

const SECRET: &str = "cli-ucx-secret";

fn run(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_proxystore"))
        .args(args)
        .env("PROXYSTORE_UCX_SECRET", SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn serve_then_put_and_get_from_other_processes() {
    let mut server = Command::new(env!("CARGO_BIN_EXE_proxystore"))
        .args(["serve", "--connector", "ucx"])
        .env("PROXYSTORE_UCX_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let banner = BufReader::new(server.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let address = banner
        .split_whitespace()
        .find(|w| w.starts_with("ucx://"))
        .unwrap()
        .to_string();
    let put = run(
        &["put", "--connector", "ucx", "--address", &address],
        b"hello over ucx",
    );
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let key = String::from_utf8(put.stdout).unwrap().trim().to_string();
    let get = run(&["get", "--connector", "ucx", &key], b"");
    assert_eq!(
        get.stdout,
        b"hello over ucx",
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert!(Command::new("kill")
        .args(["-INT", &server.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(server.wait().unwrap().success());
}

#[test]
fn bench_ucx_reports_the_raw_baseline() {
    let records = bench_records("ucx");
    assert!(has(&records, "ucx", "get") && has(&records, "ucx", "put"));
    assert!(has(&records, "ucx-raw", "put") && has(&records, "ucx-raw", "get"));
    // ucx-utils is installed by ci/install-deps.sh: UCX's own perftest
    // runs beside them there.
    let perftest_on_path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("ucx_perftest").is_file());
    if perftest_on_path {
        assert!(has(&records, "ucx-perftest", "get"), "{records:?}");
    } else {
        eprintln!("ucx_perftest not on PATH: the ucx-perftest row is not checked");
    }
}
