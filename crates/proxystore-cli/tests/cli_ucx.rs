//! `proxystore serve/put/get --connector ucx` across separate processes,
//! and `bench --connector ucx` with its raw baselines.

#![cfg(feature = "ucx")]
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use common::{bench_records, has};

const SECRET: &str = "cli-ucx-secret";

#[test]
fn serve_then_put_and_get_from_other_processes() {
    common::serve_put_get(
        "ucx",
        ("PROXYSTORE_UCX_SECRET", SECRET),
        &[],
        "ucx://",
        b"hello over ucx",
    );
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

#[test]
fn a_put_without_a_server_is_refused_not_a_dead_key() {
    common::put_without_server_is_refused("ucx", ("PROXYSTORE_UCX_SECRET", SECRET));
}

#[test]
fn serve_refuses_an_address_it_would_ignore() {
    let o = common::proxystore_with_env(
        &["serve", "--connector", "ucx", "--address", "ucx://AAAA"],
        b"",
        &[("PROXYSTORE_UCX_SECRET", SECRET)],
    );
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("serve does not take it"), "{err}");
}

/// A get from a killed server fails in one line of ours: UCX's own
/// `UCX ERROR` lines (which UCX writes to stdout, where `get` writes the
/// object) stay out unless `UCX_LOG_LEVEL` asks for them.
#[test]
fn a_dead_server_is_one_error_line_unless_ucx_log_level_is_set() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let env = ("PROXYSTORE_UCX_SECRET", SECRET);
    let mut server = common::KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_proxystore"))
            .args(["serve", "--connector", "ucx"])
            .env(env.0, env.1)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let banner = BufReader::new(server.0.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let address = banner
        .split_whitespace()
        .find(|w| w.starts_with("ucx://"))
        .unwrap();
    let put = common::proxystore_with_env(
        &["put", "--connector", "ucx", "--address", address],
        b"x",
        &[env],
    );
    assert!(put.status.success(), "{}", common::stderr(&put));
    let key = String::from_utf8(put.stdout).unwrap().trim().to_string();
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let get = [
        "get",
        "--connector",
        "ucx",
        "--timeout-ms",
        "3000",
        key.as_str(),
    ];
    let quiet = common::proxystore_with_env(&get, b"", &[env]);
    assert_eq!(quiet.status.code(), Some(1));
    let err = common::stderr(&quiet);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("proxystore: "), "{err}");
    let out = String::from_utf8_lossy(&quiet.stdout);
    assert!(out.is_empty(), "UCX's log reached stdout: {out}");
    let loud = common::proxystore_with_env(&get, b"", &[env, ("UCX_LOG_LEVEL", "error")]);
    assert_eq!(loud.status.code(), Some(1));
    let out = String::from_utf8_lossy(&loud.stdout);
    assert!(
        out.contains("UCX  ERROR"),
        "UCX's own log, asked for: {out}"
    );
}
