//! Child-process roles shared by the UCX test binaries (`ucx.rs`,
//! `hosts.rs`): the owner puts two objects and serves them; readers take
//! their keys from `KEYS`.

use std::time::Duration;

use proxystore_core::testing::pattern;
use proxystore_core::{Bytes, Connector, Key};
use proxystore_ucx::UcxConnector;

/// The owner's objects: one above the one-sided threshold, one small.
pub(crate) fn owner_objects() -> Vec<Bytes> {
    vec![pattern(3 << 20, 7), pattern(100, 8)]
}

/// Puts [`owner_objects`], prints their keys as `OWNER_KEYS=k1 k2` and
/// serves them until the parent kills this process (60 s at most).
pub(crate) fn serve_as_owner(c: &UcxConnector) {
    let keys: Vec<String> = owner_objects()
        .into_iter()
        .map(|data| c.put(data).unwrap().to_string())
        .collect();
    println!("OWNER_KEYS={}", keys.join(" "));
    std::thread::sleep(Duration::from_secs(60));
}

/// The keys the parent passed in `KEYS` (space separated).
pub(crate) fn keys_from_env() -> Vec<Key> {
    std::env::var("KEYS")
        .unwrap()
        .split(' ')
        .map(|k| k.parse().unwrap())
        .collect()
}
