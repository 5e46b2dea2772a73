//! The libfabric connector (`PeerConnector<OfiLayer>`) over real
//! libfabric: the shared conformance suite on `shm` and `tcp;ofi_rxm`,
//! owners and readers in one process, and its address errors.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::time::Duration;

use proxystore_core::testing::pattern;
use proxystore_core::{Connector, Error, Key};
use proxystore_ofi::{OfiConnector, PeerConfig, KIND};

const SECRET: &str = "ofi-test-secret";

/// A connector serving on `provider`, with the test secret (rebuilt
/// connectors read it from the environment, as proxies elsewhere would).
fn ofi(provider: &str) -> OfiConnector {
    std::env::set_var("PROXYSTORE_OFI_SECRET", SECRET);
    let mut config = PeerConfig::new(KIND, format!("ofi://{provider}/"));
    config.timeout = Duration::from_secs(20);
    OfiConnector::with_config(config).unwrap()
}

mod conformance_shm {
    proxystore_core::conformance_tests!(super::ofi("shm"));
}

mod conformance_tcp {
    proxystore_core::conformance_tests!(super::ofi("tcp;ofi_rxm"));
}

#[test]
fn keys_name_the_provider_and_another_connector_reads_them() {
    for provider in ["shm", "tcp;ofi_rxm"] {
        let owner = ofi(provider);
        let reader = ofi(provider);
        let key = owner.put(pattern(300 << 10, 1)).unwrap();
        let location = key.location().unwrap().to_string();
        assert!(
            location.starts_with(&format!("ofi://{provider}/")),
            "{location}"
        );
        assert_eq!(reader.get(&key).unwrap(), Some(pattern(300 << 10, 1)));
        assert!(reader.exists(&key).unwrap());
        reader.evict(&key).unwrap();
        assert_eq!(owner.get(&key).unwrap(), None);
    }
}

#[test]
fn damaged_or_foreign_addresses_are_refused_before_libfabric_sees_them() {
    let owner = ofi("shm");
    let reader = ofi("shm");
    let real = owner.put(pattern(10, 2)).unwrap();
    let location = real.location().unwrap().to_string();
    let mut flipped = location.clone().into_bytes();
    let mid = flipped.len() - 5;
    flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
    for bad in [
        location[..location.len() - 3].to_string(),
        String::from_utf8(flipped).unwrap(),
    ] {
        let key = Key::random().with_size(10).with_location(&bad).unwrap();
        match reader.get(&key) {
            Err(Error::InvalidKey { .. }) => {}
            other => panic!("{bad}: expected InvalidKey, got {other:?}"),
        }
    }
    // An owner on another provider than this process's endpoint.
    let foreign = location.replacen("ofi://shm/", "ofi://tcp;ofi_rxm/", 1);
    let key = Key::random().with_size(10).with_location(&foreign).unwrap();
    assert!(matches!(reader.get(&key), Err(Error::Config(_))));
    assert_eq!(reader.get(&real).unwrap(), Some(pattern(10, 2)));
}

#[test]
fn a_gone_owner_is_an_error_within_the_timeout() {
    let owner = ofi("tcp;ofi_rxm");
    let key = owner.put(pattern(100, 3)).unwrap();
    owner.close().unwrap();
    drop(owner);
    let mut config = PeerConfig::new(KIND, "ofi://tcp;ofi_rxm/");
    config.timeout = Duration::from_millis(1500);
    let reader = OfiConnector::with_config(config).unwrap();
    let started = std::time::Instant::now();
    let err = reader.get(&key).unwrap_err();
    assert!(
        matches!(
            err,
            Error::PeerUnreachable { .. } | Error::Timeout { .. } | Error::Transport { .. }
        ),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn large_gets_are_one_sided_reads_batches_mix_both_paths() {
    // Both read one-sided by default.
    for provider in ["shm", "tcp;ofi_rxm"] {
        let owner = ofi(provider);
        let reader = ofi(provider);
        let big = owner.put(pattern(3 << 20, 5)).unwrap();
        let small = owner.put(pattern(1000, 6)).unwrap();
        let before = proxystore_ofi::one_sided_reads();
        assert_eq!(reader.get(&big).unwrap(), Some(pattern(3 << 20, 5)));
        // Other tests of this binary read too: exact counts are checked
        // in a process of their own (tests/processes.rs).
        assert!(
            proxystore_ofi::one_sided_reads() > before,
            "{provider}: the 3 MiB object is read one-sided"
        );
        assert_eq!(reader.get(&small).unwrap(), Some(pattern(1000, 6)));
        // Batches mix both paths.
        let got = reader.get_batch(&[big.clone(), small.clone()]).unwrap();
        assert_eq!(got[0].as_ref().map(|b| b.len()), Some(3 << 20));
        assert_eq!(got[1], Some(pattern(1000, 6)));
        assert!(proxystore_ofi::one_sided_reads() >= before + 2);
    }
}
