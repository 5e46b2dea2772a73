//! Memory registration for one-sided reads, as the provider's `mr_mode`
//! asks:
//!
//! - `FI_MR_PROV_KEY`: the provider picks the key (`fi_mr_key`); otherwise
//!   this process does, from a counter unique within the domain.
//! - `FI_MR_VIRT_ADDR`: readers name the owner's virtual address; otherwise
//!   an offset into the registration. The remote key carries the base to
//!   subtract, so a reader needs no knowledge of the owner's mode.
//! - `FI_MR_ENDPOINT` (CXI): the registration is bound to the endpoint and
//!   enabled before use.
//! - `FI_MR_ALLOCATED`: only allocated memory is registered (slabs from the
//!   buffer pool, objects' own buffers).
//!
//! A remote key is `[key u64][base u64]`, little endian
//! ([`REMOTE_KEY_LEN`] bytes), after the descriptor's
//! `[address][length][token]` (docs/wire.md).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use libfabric_sys as sys;
use proxystore_core::{Error, Result};
use proxystore_peer::arena::{self, Mapped, SlabMemory};
use proxystore_peer::pool::{self, Buf};

use crate::fabric::{error, Domain};

/// Bytes of a remote key: the registration's key and the base address
/// readers subtract from a descriptor's address.
pub(crate) const REMOTE_KEY_LEN: usize = 16;

/// Free slab bytes kept at most; beyond that, trims let them go.
pub(crate) const IDLE_MAX: usize = 1 << 30;

/// One registration; closed when dropped, from any thread (the domain is
/// FI_THREAD_SAFE), before its domain (which it holds).
pub(crate) struct Mr {
    mr: *mut sys::fid_mr,
    _domain: Arc<Domain>,
}

// SAFETY: the handle is only closed (once, in Drop); the domain is thread safe.
unsafe impl Send for Mr {}
// SAFETY: as above; nothing is called through `&Mr`.
unsafe impl Sync for Mr {}

impl Drop for Mr {
    fn drop(&mut self) {
        // SAFETY: a registration opened by `register`, closed once.
        let rc = unsafe { sys::fi_close(&mut (*self.mr).fid) };
        if rc != 0 {
            tracing::debug!(rc, "fi_close of a memory registration failed");
        }
    }
}

/// Registers `len` bytes at `addr` for reads by peers.
///
/// # Safety
/// `addr..addr + len` must stay allocated while the returned [`Mr`] lives;
/// `ep` must be the live endpoint of `domain` (bound to the registration
/// where the provider wants FI_MR_ENDPOINT).
pub(crate) unsafe fn register(
    domain: &Arc<Domain>,
    ep: *mut sys::fid_ep,
    addr: *const u8,
    len: usize,
) -> Result<(Mr, Bytes)> {
    let mode = domain.mr_mode;
    let requested = if mode & sys::FI_MR_PROV_KEY != 0 {
        0
    } else {
        domain.next_key.fetch_add(1, Ordering::Relaxed)
    };
    let mut raw: *mut sys::fid_mr = std::ptr::null_mut();
    // SAFETY: the caller's contract; on success `raw` is a registration
    // closed by the Mr below (also on the error paths after it).
    let rc = unsafe {
        sys::fi_mr_reg(
            domain.domain,
            addr.cast(),
            len,
            u64::from(sys::FI_REMOTE_READ),
            0,
            requested,
            0,
            &mut raw,
            std::ptr::null_mut(),
        )
    };
    if rc != 0 {
        return Err(error(i64::from(rc), "fi_mr_reg", None));
    }
    let mr = Mr {
        mr: raw,
        _domain: Arc::clone(domain),
    };
    if mode & sys::FI_MR_ENDPOINT != 0 {
        // SAFETY: a fresh registration and the live endpoint (the contract).
        unsafe {
            let rc = sys::fi_mr_bind(raw, &mut (*ep).fid, 0);
            if rc != 0 {
                return Err(error(i64::from(rc), "fi_mr_bind", None));
            }
            let rc = sys::fi_mr_enable(raw);
            if rc != 0 {
                return Err(error(i64::from(rc), "fi_mr_enable", None));
            }
        }
    }
    // SAFETY: a live, enabled registration.
    let key = unsafe { sys::fi_mr_key(raw) };
    if key == u64::MAX {
        // FI_KEY_NOTAVAIL: the key is wider than 64 bits (FI_MR_RAW).
        return Err(Error::Unsupported {
            connector: crate::KIND.into(),
            op: "memory keys wider than 64 bits (FI_MR_RAW)",
        });
    }
    let base = if mode & sys::FI_MR_VIRT_ADDR != 0 {
        0
    } else {
        addr as u64
    };
    let mut remote_key = Vec::with_capacity(REMOTE_KEY_LEN);
    remote_key.extend_from_slice(&key.to_le_bytes());
    remote_key.extend_from_slice(&base.to_le_bytes());
    Ok((mr, Bytes::from(remote_key)))
}

/// The key and the address to `fi_read` for `addr` of a region whose
/// remote key is `remote_key`; `None` if the key is malformed or the
/// address lies below the registration's base.
pub(crate) fn target(remote_key: &[u8], addr: u64) -> Option<(u64, u64)> {
    if remote_key.len() != REMOTE_KEY_LEN {
        return None;
    }
    let key = u64::from_le_bytes(remote_key[..8].try_into().ok()?);
    let base = u64::from_le_bytes(remote_key[8..].try_into().ok()?);
    Some((key, addr.checked_sub(base)?))
}

/// Slabs of pooled memory registered with the domain.
pub(crate) struct OfiMemory;

/// A slab's registration and memory (closed in that order).
pub(crate) struct Slab {
    _mr: Mr,
    _buf: Buf,
}

impl SlabMemory for OfiMemory {
    type Handle = Slab;

    fn unmap(&self, slab: Slab) {
        drop(slab);
    }
}

/// The slabs of one engine.
pub(crate) type Arena = arena::Arena<OfiMemory>;

/// A new registered slab of `class` bytes, or `None` (logged) if the
/// provider would not register it.
///
/// # Safety
/// `ep` must be the live endpoint of `domain`.
pub(crate) unsafe fn map_slab(
    domain: &Arc<Domain>,
    ep: *mut sys::fid_ep,
    class: usize,
) -> Option<Mapped<Slab>> {
    let mut buf = pool::take(class)?;
    let base = buf.as_mut_ptr();
    // SAFETY: the buffer lives in the Slab beside (and after) its registration.
    match unsafe { register(domain, ep, base, class) } {
        Ok((mr, remote_key)) => Some(Mapped {
            base: base as usize,
            remote_key,
            handle: Slab { _mr: mr, _buf: buf },
        }),
        Err(e) => {
            tracing::debug!(error = %e, class, "could not register a slab");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_keys_give_key_and_offset() {
        let mut k = 7u64.to_le_bytes().to_vec();
        k.extend_from_slice(&0x1000u64.to_le_bytes());
        assert_eq!(target(&k, 0x1040), Some((7, 0x40)));
        assert_eq!(target(&k, 0x0fff), None, "below the base");
        assert_eq!(target(&k[..15], 0x1040), None, "truncated");
        let virt = [9u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(target(&virt, 0xdead), Some((9, 0xdead)));
    }
}
