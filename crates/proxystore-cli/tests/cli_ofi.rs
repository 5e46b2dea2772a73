//! `proxystore serve/put/get --connector ofi` across separate processes,
//! over libfabric's shm and tcp providers, and `bench --connector ofi`.

#![cfg(feature = "ofi")]
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use common::{bench_records, has};

const SECRET: &str = "cli-ofi-secret";

#[test]
fn serve_then_put_and_get_from_other_processes_over_shm_and_tcp() {
    for provider in ["shm", "tcp;ofi_rxm"] {
        let endpoint = format!("address=ofi://{provider}/");
        common::serve_put_get(
            "ofi",
            ("PROXYSTORE_OFI_SECRET", SECRET),
            &["--option", &endpoint],
            &format!("ofi://{provider}/"),
            format!("hello over {provider}").as_bytes(),
        );
    }
}

#[test]
fn bench_ofi_reports_put_and_get() {
    let records = bench_records("ofi");
    assert!(has(&records, "ofi", "get") && has(&records, "ofi", "put"));
}
