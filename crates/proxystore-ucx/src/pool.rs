//! Reused receive buffers. A large message lands in a buffer from this
//! pool and reaches the caller as `Bytes` that hand the buffer back when
//! dropped, so the next message of that size class lands in memory that is
//! already faulted in (and already in UCX's registration cache): a fresh
//! 64 MiB buffer costs ~16k first-touch page faults per message otherwise.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;

/// Messages below this size use plain allocations.
pub(crate) const POOLED_MIN: usize = 64 << 10;
/// Idle bytes the pool keeps at most; beyond that, returned buffers are freed.
const IDLE_MAX: usize = 1 << 30;

#[derive(Default)]
struct Pool {
    idle: HashMap<usize, Vec<Box<[u8]>>>,
    idle_bytes: usize,
}

fn pool() -> &'static Mutex<Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(Default::default)
}

/// A buffer of at least `len` bytes (its size class), reused if one is idle.
pub(crate) fn take(len: usize) -> Box<[u8]> {
    let class = len.next_power_of_two();
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(buf) = p.idle.get_mut(&class).and_then(Vec::pop) {
        p.idle_bytes -= class;
        return buf;
    }
    drop(p);
    vec![0u8; class].into_boxed_slice()
}

fn give(buf: Box<[u8]>) {
    let class = buf.len();
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    if p.idle_bytes + class <= IDLE_MAX {
        p.idle_bytes += class;
        p.idle.entry(class).or_default().push(buf);
    }
}

/// Owns a pooled buffer inside `Bytes`; returns it to the pool on drop.
struct Pooled(Option<Box<[u8]>>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        self.0.as_deref().unwrap_or(&[])
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(buf) = self.0.take() {
            give(buf);
        }
    }
}

/// The first `len` bytes of a pooled buffer, as `Bytes`.
pub(crate) fn into_bytes(buf: Box<[u8]>, len: usize) -> Bytes {
    Bytes::from_owner(Pooled(Some(buf))).slice(0..len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_and_are_reused() {
        let len = (1 << 20) + 3;
        let buf = take(len);
        assert_eq!(buf.len(), 2 << 20);
        let ptr = buf.as_ptr();
        let bytes = into_bytes(buf, len);
        assert_eq!(bytes.len(), len);
        drop(bytes);
        let again = take(len);
        assert_eq!(again.as_ptr(), ptr, "an idle buffer of the class is reused");
    }
}
