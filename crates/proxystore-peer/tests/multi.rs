//! The shared conformance suite on a `MultiConnector` over `local`, `file`
//! and the peer mock: puts are routed by size, so the suite's objects land
//! on all three, and every get, batch and rebuilt config follows the key
//! to the child that holds it.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::sync::Arc;

use proxystore_core::multi::Child;
use proxystore_core::testing::{self, CASES};
use proxystore_core::{Connector, LocalConnector, MultiConnector, Policy};
use proxystore_file::FileConnector;

/// A multi over: the mock for objects up to 1000 bytes, `file` above
/// 64 KiB, `local` in between (and for keys of unknown size).
fn multi(dir: &std::path::Path, local: &LocalConnector) -> MultiConnector {
    proxystore_peer::mock::register();
    let mock = proxystore_peer::mock::mock_connector().unwrap();
    let child = |name: &str, config, policy| Child {
        name: name.into(),
        config,
        policy,
    };
    MultiConnector::new(vec![
        child(
            "mock",
            mock.config(),
            Policy {
                priority: 2,
                max_size_bytes: 1000,
                ..Policy::default()
            },
        ),
        child(
            "file",
            FileConnector::new(dir).unwrap().config(),
            Policy {
                priority: 1,
                min_size_bytes: 64 << 10,
                ..Policy::default()
            },
        ),
        child("local", local.config(), Policy::default()),
    ])
    .unwrap()
}

#[test]
fn conformance_on_a_multi_over_local_file_and_the_peer_mock() {
    for (name, case) in CASES {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalConnector::new();
        println!("case {name}");
        case(Arc::new(testing::WithGuard::new(
            multi(dir.path(), &local),
            dir,
        )));
        drop(local);
    }
}

#[test]
fn objects_land_on_the_child_their_size_chooses() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalConnector::new();
    let m = multi(dir.path(), &local);
    for (len, child) in [(10, "mock"), (5000, "local"), (100_000, "file")] {
        let key = m.put(testing::pattern(len, 1)).unwrap();
        assert!(
            key.location().unwrap().starts_with(&format!("{child}~")),
            "{len}: {key}"
        );
        assert_eq!(m.get(&key).unwrap(), Some(testing::pattern(len, 1)));
    }
    // The file child put a file in the directory.
    assert!(std::fs::read_dir(dir.path()).unwrap().count() > 0);
}
