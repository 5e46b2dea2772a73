//! The shared conformance suite on a temporary directory and on /dev/shm.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use proxystore_core::testing::WithGuard;
use proxystore_file::{FileConfig, FileConnector};

fn file_connector() -> WithGuard<FileConnector, tempfile::TempDir> {
    let dir = tempfile::tempdir().expect("temp dir");
    WithGuard::new(FileConnector::new(dir.path()).expect("file connector"), dir)
}

fn shm_connector() -> WithGuard<FileConnector, tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("proxystore-test-")
        .tempdir_in("/dev/shm")
        .expect("shm dir");
    let config = FileConfig {
        dir: dir.path().into(),
        ..FileConfig::shm()
    };
    WithGuard::new(
        FileConnector::with_config(config).expect("shm connector"),
        dir,
    )
}

mod file {
    proxystore_core::conformance_tests!(super::file_connector());
}

mod shm {
    proxystore_core::conformance_tests!(super::shm_connector());
}

mod small_mmap_threshold {
    // Every non-empty object goes through the mmap path.
    proxystore_core::conformance_tests!({
        let dir = tempfile::tempdir().expect("temp dir");
        let config = proxystore_file::FileConfig {
            mmap_threshold: 1,
            ..proxystore_file::FileConfig::new(dir.path())
        };
        proxystore_core::testing::WithGuard::new(
            proxystore_file::FileConnector::with_config(config).expect("file connector"),
            dir,
        )
    });
}
