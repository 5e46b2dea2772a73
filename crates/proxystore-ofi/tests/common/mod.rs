//! Shared by the engine tests: which providers to run, and opening them.

#![allow(dead_code)]

use proxystore_ofi::Engine;

/// The providers every test runs on.
pub(crate) const PROVIDERS: [&str; 2] = ["shm", "tcp;ofi_rxm"];

/// An engine of `provider`, or `None` (with the reason printed) when
/// libfabric has no such provider here.
pub(crate) fn engine(provider: &str) -> Option<Engine> {
    match Engine::open(Some(provider)) {
        Ok(e) => Some(e),
        Err(proxystore_core::Error::Config(reason)) => {
            eprintln!("skipping {provider}: {reason}");
            None
        }
        Err(e) => panic!("opening a {provider} endpoint: {e}"),
    }
}

/// Removes the shm regions (`/dev/shm/<pid>:...`) of a killed process:
/// libfabric unlinks them when an endpoint closes or its process exits,
/// which a SIGKILL prevents.
pub(crate) fn forget_regions(pid: u32) {
    let prefix = format!("{pid}:");
    for entry in std::fs::read_dir("/dev/shm")
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
