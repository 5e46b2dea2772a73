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
