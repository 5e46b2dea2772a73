//! `proxystore --connector daos`: the bench on the mock pool (records named
//! `daos-mock` and `daos-mock-raw`, never `daos`), and the one-line errors
//! of a build without DAOS or a command without a pool.

#![cfg(feature = "daos")]
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use common::{bench_records, has, proxystore_with_env, stderr};

#[test]
fn bench_runs_on_the_mock_beside_the_raw_mock_loop() {
    if ::proxystore::daos::daos_linked() {
        eprintln!("DAOS is linked: bench uses DAOS_POOL/DAOS_CONT, not run here");
        return;
    }
    let records = bench_records("daos");
    for op in ["put", "get", "roundtrip", "get-owned", "get-view"] {
        assert!(has(&records, "daos-mock", op), "{records:?}");
    }
    assert!(has(&records, "daos-mock-raw", "put") && has(&records, "daos-mock-raw", "get"));
    assert!(
        !records.iter().any(|r| r["connector"] == "daos"),
        "{records:?}"
    );
}

#[test]
fn a_real_pool_in_a_build_without_daos_names_daos_dir() {
    if ::proxystore::daos::daos_linked() {
        return;
    }
    let o = proxystore_with_env(
        &[
            "put",
            "--connector",
            "daos",
            "--pool",
            "tank",
            "--container",
            "c",
        ],
        b"x",
        &[],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("DAOS_DIR") && err.trim_end().lines().count() == 1,
        "{err}"
    );
}

#[test]
fn a_command_without_a_pool_names_the_variable() {
    let o = proxystore_with_env(
        &["put", "--connector", "daos"],
        b"x",
        &[("DAOS_POOL", ""), ("DAOS_CONT", "")],
    );
    let err = stderr(&o);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("DAOS_POOL"), "{err}");
}
