//! The shared conformance suite on an `shm` connector with its arena on.
//! The arena is small (1 MiB: objects up to 256 KiB, 64 slots), so the
//! suite runs both paths: small objects go to the arena, the 64 MiB case
//! and the overflow of the concurrent case go to files.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use proxystore_core::testing::WithGuard;
use proxystore_file::{FileConfig, FileConnector};

fn arena_connector() -> WithGuard<FileConnector, tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("proxystore-test-")
        .tempdir_in("/dev/shm")
        .expect("shm dir");
    let config = FileConfig {
        dir: dir.path().into(),
        arena_bytes: 1 << 20,
        ..FileConfig::shm()
    };
    WithGuard::new(
        FileConnector::with_config(config).expect("arena connector"),
        dir,
    )
}

mod arena {
    proxystore_core::conformance_tests!(super::arena_connector());
}
