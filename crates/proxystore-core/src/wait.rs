//! Waiting for a future's key to be set, blocking or async.
//!
//! A set in this process wakes waiters at once (`wake`). A set in another
//! process is seen by polling the connector: the first polls come fast
//! ([`FIRST_POLL_INTERVAL`], doubling), then one every
//! [`MAX_POLL_INTERVAL`], so a waiter costs its connector at most
//! 1 / `MAX_POLL_INTERVAL` gets per second once it has waited a while.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::Store;
use crate::wake;

/// The pause after the first poll that finds the key unset.
pub const FIRST_POLL_INTERVAL: Duration = Duration::from_micros(50);
/// The longest pause between polls, so a value set by another process is
/// seen at most this late.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_millis(10);

fn timed_out(store: &Store, timeout: Duration) -> Error {
    Error::Timeout {
        connector: store.connector().kind().to_owned(),
        op: "wait for future result",
        after: timeout,
    }
}

/// Blocks until `key` has data or `timeout` passes.
pub(crate) fn poll_until_set(store: &Store, key: &Key, timeout: Duration) -> Result<Bytes> {
    let deadline = Instant::now() + timeout;
    let mut watch = wake::watch(store.name(), key);
    let mut pause = FIRST_POLL_INTERVAL;
    loop {
        if let Some(data) = store.get_bytes(key)? {
            return Ok(data);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out(store, timeout));
        }
        // A set here ends the pause at once; then poll without growing it.
        if !watch.wait(pause.min(deadline - now)) {
            pause = (pause * 2).min(MAX_POLL_INTERVAL);
        }
    }
}

/// The async form of [`poll_until_set`]: each poll runs on the blocking
/// pool, and the pauses between them hold no thread.
pub(crate) async fn poll_until_set_async(
    store: &Store,
    key: &Key,
    timeout: Duration,
) -> Result<Bytes> {
    let deadline = Instant::now() + timeout;
    let mut watch = wake::watch(store.name(), key);
    let mut pause = FIRST_POLL_INTERVAL;
    loop {
        if let Some(data) = store.get_bytes_async(key).await? {
            return Ok(data);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out(store, timeout));
        }
        if !watch.pause(now + pause.min(deadline - now)).await {
            pause = (pause * 2).min(MAX_POLL_INTERVAL);
        }
    }
}
