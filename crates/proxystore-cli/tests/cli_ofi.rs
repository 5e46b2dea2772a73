//! `proxystore serve/put/get --connector ofi` across separate processes,
//! over libfabric's shm and tcp providers, and `bench --connector ofi`
//! with libfabric's own fi_pingpong beside it.

#![cfg(feature = "ofi")]
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use common::{bench_records, has};

const SECRET: &str = "cli-ofi-secret";

#[test]
fn serve_then_put_and_get_from_other_processes_over_shm_and_tcp() {
    // 200 KiB is above the one-sided minimum: the server stages the put
    // object in a registered slab and the reading process fi_reads it.
    let large: Vec<u8> = (0..200u32 << 10).map(|i| (i % 251) as u8).collect();
    for provider in ["shm", "tcp;ofi_rxm"] {
        let endpoint = format!("address=ofi://{provider}/");
        let small = format!("hello over {provider}");
        for payload in [small.as_bytes(), &large] {
            common::serve_put_get(
                "ofi",
                ("PROXYSTORE_OFI_SECRET", SECRET),
                &["--option", &endpoint],
                &format!("ofi://{provider}/"),
                payload,
            );
        }
    }
}

#[test]
fn bench_ofi_reports_put_and_get() {
    let records = bench_records("ofi");
    assert!(has(&records, "ofi", "get") && has(&records, "ofi", "put"));
    // The bare loops of the same provider (feature `baseline`).
    for (name, op) in [
        ("ofi-raw", "get"),
        ("ofi-raw", "put"),
        ("ofi-raw-msg", "get"),
    ] {
        assert!(has(&records, name, op), "no {name} {op}: {records:?}");
    }
    // libfabric-bin is installed by ci/install-deps.sh: libfabric's own
    // fi_pingpong runs beside the connector there.
    let pingpong_on_path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("fi_pingpong").is_file());
    if pingpong_on_path {
        assert!(has(&records, "ofi-pingpong", "get"), "{records:?}");
    } else {
        eprintln!(
            "SKIP: fi_pingpong (libfabric-bin) is not on PATH: the ofi-pingpong row is not checked"
        );
    }
}

#[test]
fn info_names_the_libfabric_version_and_the_provider_ofi_gets() {
    for (provider, name) in [("shm", "shm"), ("tcp", "tcp;ofi_rxm")] {
        let o = common::proxystore_with_env(&["info"], b"", &[("FI_PROVIDER", provider)]);
        assert!(o.status.success(), "{}", common::stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with("ofi "))
            .unwrap_or_else(|| panic!("no ofi line: {out}"));
        assert!(line.contains("libfabric 1."), "{line}");
        assert!(
            line.contains(&format!("provider {name} (one-sided reads on)")),
            "{line}"
        );
    }
}

#[test]
fn a_put_without_a_server_is_refused_not_a_dead_key() {
    common::put_without_server_is_refused("ofi", ("PROXYSTORE_OFI_SECRET", SECRET));
}
