//! Shared by the engine tests: which providers to run, and opening them.

#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use proxystore_core::testing::pattern;
use proxystore_ofi::{Engine, SERVER_ROUTE};

/// How long a test waits for a message that should come.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

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

/// A request of `len` pattern bytes from `client` to `server`'s listener
/// and a reply of the same size back, each checked (sender, route, bytes).
pub(crate) fn round_trip(client: &Engine, server: &Engine, len: usize, seed: u64) {
    let listener = server.listen().ok();
    let (route, replies) = client.open_route();
    let request = vec![Bytes::from_static(b"get"), pattern(len, seed)];
    client
        .send(server.raw_address(), SERVER_ROUTE, route, request)
        .unwrap();
    let requests = listener.as_ref().unwrap();
    let got = server.wait(requests, WAIT).unwrap();
    assert_eq!(got.from, client.raw_address());
    assert_eq!(got.reply_route, route);
    assert_eq!(got.frames.len(), 2);
    assert_eq!(&got.frames[0][..], b"get");
    assert!(got.frames[1] == pattern(len, seed), "request of {len} B");
    let reply = vec![pattern(len, seed + 1), Bytes::new()];
    server.send(&got.from, got.reply_route, 0, reply).unwrap();
    let back = client.wait(&replies, WAIT).unwrap();
    assert_eq!(back.frames.len(), 2);
    assert!(back.frames[0] == pattern(len, seed + 1), "reply of {len} B");
    assert!(back.frames[1].is_empty());
    client.close_route(route);
}
