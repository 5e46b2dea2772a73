//! The shared conformance suite on a temporary directory, on /dev/shm, and
//! on /dev/shm with the arena on.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use proxystore_core::testing::WithGuard;
use proxystore_file::{FileConfig, FileConnector};

fn file_connector() -> WithGuard<FileConnector, tempfile::TempDir> {
    let dir = tempfile::tempdir().expect("temp dir");
    WithGuard::new(FileConnector::new(dir.path()).expect("file connector"), dir)
}

/// An `shm` connector on a fresh directory under /dev/shm, with an arena of
/// `arena_bytes` (0: none).
fn shm_connector(arena_bytes: usize) -> WithGuard<FileConnector, tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("proxystore-test-")
        .tempdir_in("/dev/shm")
        .expect("shm dir");
    let config = FileConfig {
        dir: dir.path().into(),
        arena_bytes,
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
    proxystore_core::conformance_tests!(super::shm_connector(0));
}

/// The arena is small (1 MiB: objects up to 256 KiB, 64 slots), so the
/// suite runs both paths: small objects go to the arena, the 64 MiB case
/// and the overflow of the concurrent case go to files.
mod arena {
    proxystore_core::conformance_tests!(super::shm_connector(1 << 20));
}

mod small_mmap_threshold {
    // Every non-empty object goes through the mmap path, and its mapping
    // is kept for the next read (a 4 MiB cache: the large cases push the
    // small ones out).
    proxystore_core::conformance_tests!({
        let dir = tempfile::tempdir().expect("temp dir");
        let config = proxystore_file::FileConfig {
            mmap_threshold: 1,
            map_cache_bytes: 4 << 20,
            ..proxystore_file::FileConfig::new(dir.path())
        };
        proxystore_core::testing::WithGuard::new(
            proxystore_file::FileConnector::with_config(config).expect("file connector"),
            dir,
        )
    });
}

mod python_layout {
    // Python ProxyStore's flat `<uuid>` + `<uuid>.ready` layout.
    proxystore_core::conformance_tests!({
        let dir = tempfile::tempdir().expect("temp dir");
        let config = proxystore_file::FileConfig {
            layout: proxystore_file::FileLayout::Python,
            ..proxystore_file::FileConfig::new(dir.path())
        };
        proxystore_core::testing::WithGuard::new(
            proxystore_file::FileConnector::with_config(config).expect("file connector"),
            dir,
        )
    });
}
