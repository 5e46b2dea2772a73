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
