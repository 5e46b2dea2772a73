//! The one place libfabric objects are set up and torn down: fabric,
//! domain, address vector (FI_AV_TABLE), completion queue and one FI_EP_RDM
//! endpoint for a provider chosen by name; and the one function that turns
//! libfabric's error codes into [`proxystore_core::Error`].

use std::ffi::{CStr, CString};
use std::fmt;
use std::ptr;
use std::time::Duration;

use libfabric_sys as sys;
use proxystore_core::{Error, Result};

/// The connector kind errors name.
pub(crate) const CONNECTOR: &str = "ofi";

/// `FI_ADDR_UNSPEC` (`(uint64_t)-1`), a macro bindgen cannot carry.
pub(crate) const ADDR_UNSPEC: sys::fi_addr_t = u64::MAX;

/// A libfabric call that failed: what was called and `fi_strerror`'s text.
#[derive(Debug)]
pub struct OfiError {
    /// The call (and its object) that failed.
    pub call: String,
    /// The positive `FI_E*` code.
    pub code: i32,
    /// `fi_strerror(code)`.
    pub text: String,
}

impl fmt::Display for OfiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed: {} (FI_E {})",
            self.call, self.text, self.code
        )
    }
}

impl std::error::Error for OfiError {}

/// `fi_strerror`'s text for a (positive or negative) code.
fn strerror(code: i32) -> String {
    // SAFETY: fi_strerror returns a static NUL-terminated string for any code.
    unsafe { CStr::from_ptr(sys::fi_strerror(code)) }
        .to_string_lossy()
        .into_owned()
}

/// The error for libfabric code `rc` (a negative return or a positive
/// `fi_cq_err_entry::err`) from `call`; `peer` (an address's text form)
/// is named when the code says the peer could not be reached.
pub(crate) fn error(rc: i64, call: &str, peer: Option<&str>) -> Error {
    let code = i32::try_from(rc.unsigned_abs()).unwrap_or(i32::MAX);
    let text = strerror(code);
    let unreachable = [
        sys::FI_EHOSTUNREACH,
        sys::FI_ENETUNREACH,
        sys::FI_ECONNREFUSED,
        sys::FI_ECONNRESET,
        sys::FI_ECONNABORTED,
        sys::FI_ENOTCONN,
        sys::FI_EADDRNOTAVAIL,
    ];
    match peer {
        Some(address) if unreachable.iter().any(|&c| c as i32 == code) => Error::PeerUnreachable {
            address: proxystore_peer::address::abbreviate(address),
            reason: format!("{call}: {text}"),
        },
        _ => Error::Transport {
            connector: CONNECTOR.into(),
            source: Box::new(OfiError {
                call: call.into(),
                code,
                text,
            }),
        },
    }
}

/// The scheme (and provider) every address of `provider` starts with.
pub(crate) fn scheme(provider: &str) -> String {
    format!("ofi://{provider}/")
}

/// The error for a wait on `op` that ran out of time.
pub(crate) fn timeout(op: &'static str, after: Duration) -> Error {
    Error::Timeout {
        connector: CONNECTOR.into(),
        op,
        after,
    }
}

/// `Ok` for a zero return, the mapped error otherwise.
fn check(rc: i32, call: &str) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(error(i64::from(rc), call, None))
    }
}

/// What every posted operation's context starts with: providers whose
/// `mode` has FI_CONTEXT/FI_CONTEXT2 use these bytes while it is in flight.
pub(crate) fn zeroed_context() -> sys::fi_context2 {
    sys::fi_context2::default()
}

/// An open fabric and domain (with the `fi_info` they came from), shared
/// by the endpoint and by every memory registration: registrations may
/// outlive the endpoint (a staged object still held after its connector is
/// gone), and the domain closes after the last of them.
pub(crate) struct Domain {
    info: *mut sys::fi_info,
    fabric: *mut sys::fid_fabric,
    pub(crate) domain: *mut sys::fid_domain,
    /// The registration modes the provider requires (`FI_MR_*`).
    pub(crate) mr_mode: u32,
    /// The next key of a registration whose key this process chooses
    /// (providers without `FI_MR_PROV_KEY`).
    pub(crate) next_key: std::sync::atomic::AtomicU64,
}

// SAFETY: the domain is opened FI_THREAD_SAFE, so its calls (registration,
// close) may come from any thread; the pointers are never dereferenced in
// Rust after setup.
unsafe impl Send for Domain {}
// SAFETY: as above.
unsafe impl Sync for Domain {}

impl Drop for Domain {
    fn drop(&mut self) {
        // SAFETY: the endpoint and every registration are closed (each
        // held this domain); children before parents, each once.
        unsafe {
            for fid in [self.domain.cast::<sys::fid>(), self.fabric.cast()] {
                if !fid.is_null() {
                    let rc = sys::fi_close(fid);
                    if rc != 0 {
                        tracing::debug!(rc, "fi_close failed");
                    }
                }
            }
            sys::fi_freeinfo(self.info);
        }
    }
}

/// An enabled RDM endpoint with its AV and CQ, in a [`Domain`].
pub(crate) struct Fabric {
    pub(crate) domain: std::sync::Arc<Domain>,
    av: *mut sys::fid_av,
    pub(crate) cq: *mut sys::fid_cq,
    pub(crate) ep: *mut sys::fid_ep,
    /// The provider's name as libfabric reports it (`shm`, `tcp;ofi_rxm`).
    pub(crate) provider: String,
    /// This endpoint's raw address (`fi_getname`).
    pub(crate) address: Vec<u8>,
    /// Whether FI_RMA | FI_READ | FI_REMOTE_READ were granted.
    pub(crate) one_sided: bool,
    /// The provider's largest message.
    pub(crate) max_msg_size: usize,
    /// The CQ's wait file descriptor, if the provider gave one.
    pub(crate) wait_fd: Option<i32>,
}

const CAPS_MSG: u64 = (sys::FI_MSG | sys::FI_TAGGED) as u64;
const CAPS_RMA: u64 = (sys::FI_RMA | sys::FI_READ | sys::FI_REMOTE_READ) as u64;

/// Providers matching `provider` (any if `None`) with `caps`; `Ok(None)`
/// when there are none.
///
/// # Safety
/// The returned list is the caller's to free with `fi_freeinfo`.
unsafe fn getinfo(provider: Option<&CStr>, caps: u64) -> Result<Option<*mut sys::fi_info>> {
    // SAFETY: fi_allocinfo returns zeroed, owned hints (with attr structs);
    // prov_name is strdup'd because fi_freeinfo frees it; the hints are
    // freed here once fi_getinfo has copied what it needs.
    unsafe {
        let hints = sys::fi_allocinfo();
        if hints.is_null() {
            return Err(error(-(sys::FI_ENOMEM as i64), "fi_allocinfo", None));
        }
        (*hints).caps = caps;
        // We give every operation a context, so either mode is fine.
        (*hints).mode = sys::FI_CONTEXT | sys::FI_CONTEXT2;
        (*(*hints).ep_attr).type_ = sys::fi_ep_type_FI_EP_RDM;
        // Registrations are closed from whichever thread drops the last
        // Bytes of an object; the endpoint is serialized by our lock anyway.
        (*(*hints).domain_attr).threading = sys::fi_threading_FI_THREAD_SAFE;
        // The modes `mr` handles. Not FI_MR_LOCAL (every send and receive
        // buffer would need a descriptor; rxm registers for verbs itself,
        // CXI does not require it) nor FI_MR_RAW (keys wider than 64 bits).
        (*(*hints).domain_attr).mr_mode = (sys::FI_MR_VIRT_ADDR
            | sys::FI_MR_ALLOCATED
            | sys::FI_MR_PROV_KEY
            | sys::FI_MR_ENDPOINT) as i32;
        if let Some(name) = provider {
            (*(*hints).fabric_attr).prov_name = libc::strdup(name.as_ptr());
        }
        let mut info = ptr::null_mut();
        let version = sys::fi_version_of(sys::FI_MAJOR_VERSION, sys::FI_MINOR_VERSION);
        let rc = sys::fi_getinfo(version, ptr::null(), ptr::null(), 0, hints, &mut info);
        sys::fi_freeinfo(hints);
        match rc {
            0 if !info.is_null() => Ok(Some(info)),
            0 => Ok(None),
            rc if rc == -(sys::FI_ENODATA as i32) => Ok(None),
            rc => Err(error(i64::from(rc), "fi_getinfo", None)),
        }
    }
}

/// The provider an endpoint `ofi://` would get here (libfabric's first
/// choice, honouring `FI_PROVIDER`) and whether it grants one-sided reads;
/// `None` if libfabric has no usable provider.
pub(crate) fn default_provider() -> Option<(String, bool)> {
    // SAFETY: the list is read and freed here.
    unsafe {
        let (info, one_sided) = first_info(None).ok()??;
        let name = CStr::from_ptr((*(*info).fabric_attr).prov_name)
            .to_string_lossy()
            .into_owned();
        sys::fi_freeinfo(info);
        Some((name, one_sided))
    }
}

/// The first provider matching `provider` (any if `None`) with one-sided
/// reads, else without them; `Ok(None)` when there is none.
///
/// # Safety
/// The returned list is the caller's to free with `fi_freeinfo`.
unsafe fn first_info(provider: Option<&CStr>) -> Result<Option<(*mut sys::fi_info, bool)>> {
    // SAFETY: the caller's contract.
    unsafe {
        if let Some(info) = getinfo(provider, CAPS_MSG | CAPS_RMA)? {
            return Ok(Some((info, true)));
        }
        Ok(getinfo(provider, CAPS_MSG)?.map(|info| (info, false)))
    }
}

impl Fabric {
    /// Opens an endpoint of `provider` (`None`: libfabric's choice, which
    /// honours `FI_PROVIDER`), asking for one-sided reads where offered.
    pub(crate) fn open(provider: Option<&str>) -> Result<Fabric> {
        let name = provider
            .map(CString::new)
            .transpose()
            .map_err(|_| Error::Config("a provider name has no NUL bytes".into()))?;
        // SAFETY: each list from getinfo is either freed here or owned by
        // the Fabric (freed in Drop).
        let (info, one_sided) = unsafe { first_info(name.as_deref())? }.ok_or_else(|| {
            Error::Config(format!(
                "libfabric has no provider {} with reliable datagram endpoints and tagged \
                 messages (see fi_info)",
                provider.unwrap_or("(any)")
            ))
        })?;
        // SAFETY: `info` is the head of a live list (getinfo's).
        let mr_mode = unsafe { (*(*info).domain_attr).mr_mode } as u32;
        let mut domain = Domain {
            info,
            fabric: ptr::null_mut(),
            domain: ptr::null_mut(),
            mr_mode,
            next_key: std::sync::atomic::AtomicU64::new(1),
        };
        // SAFETY: `info` is live; on error `domain` is dropped and closes
        // what was opened.
        unsafe {
            check(
                sys::fi_fabric((*info).fabric_attr, &mut domain.fabric, ptr::null_mut()),
                "fi_fabric",
            )?;
            check(
                sys::fi_domain(domain.fabric, info, &mut domain.domain, ptr::null_mut()),
                "fi_domain",
            )?;
        }
        let mut f = Fabric {
            domain: std::sync::Arc::new(domain),
            av: ptr::null_mut(),
            cq: ptr::null_mut(),
            ep: ptr::null_mut(),
            provider: String::new(),
            address: Vec::new(),
            one_sided,
            max_msg_size: 0,
            wait_fd: None,
        };
        // SAFETY: `info` is the head of a live list; on error `f` is dropped
        // and closes what was opened.
        unsafe { f.open_objects()? };
        Ok(f)
    }

    /// # Safety
    /// Call once, on a Fabric whose domain is open and objects null.
    unsafe fn open_objects(&mut self) -> Result<()> {
        // SAFETY: `info` is live (the domain's); every out pointer is a
        // field of self, closed in Drop if set.
        unsafe {
            let info = self.domain.info;
            let domain = self.domain.domain;
            self.provider = CStr::from_ptr((*(*info).fabric_attr).prov_name)
                .to_string_lossy()
                .into_owned();
            self.max_msg_size = (*(*info).ep_attr).max_msg_size;
            let mut av_attr = sys::fi_av_attr {
                type_: sys::fi_av_type_FI_AV_TABLE,
                ..Default::default()
            };
            check(
                sys::fi_av_open(domain, &mut av_attr, &mut self.av, ptr::null_mut()),
                "fi_av_open",
            )?;
            // A file descriptor to sleep on where the provider has one (the
            // progress thread then wakes on traffic, not after a timer).
            let mut cq_attr = sys::fi_cq_attr {
                format: sys::fi_cq_format_FI_CQ_FORMAT_TAGGED,
                wait_obj: sys::fi_wait_obj_FI_WAIT_FD,
                size: 1024,
                ..Default::default()
            };
            if sys::fi_cq_open(domain, &mut cq_attr, &mut self.cq, ptr::null_mut()) == 0 {
                let mut fd: i32 = -1;
                let rc = sys::fi_control(
                    &mut (*self.cq).fid,
                    sys::FI_GETWAIT as i32,
                    (&mut fd as *mut i32).cast(),
                );
                if rc == 0 && fd >= 0 {
                    self.wait_fd = Some(fd);
                }
            } else {
                self.cq = ptr::null_mut();
                cq_attr.wait_obj = sys::fi_wait_obj_FI_WAIT_NONE;
                check(
                    sys::fi_cq_open(domain, &mut cq_attr, &mut self.cq, ptr::null_mut()),
                    "fi_cq_open",
                )?;
            }
            check(
                sys::fi_endpoint(domain, info, &mut self.ep, ptr::null_mut()),
                "fi_endpoint",
            )?;
            check(
                sys::fi_ep_bind(self.ep, &mut (*self.av).fid, 0),
                "fi_ep_bind(av)",
            )?;
            check(
                sys::fi_ep_bind(
                    self.ep,
                    &mut (*self.cq).fid,
                    u64::from(sys::FI_TRANSMIT | sys::FI_RECV),
                ),
                "fi_ep_bind(cq)",
            )?;
            check(sys::fi_enable(self.ep), "fi_enable")?;
            let mut buf = vec![0u8; 256];
            let mut len = buf.len();
            let ep_fid = &mut (*self.ep).fid as *mut sys::fid;
            let mut rc = sys::fi_getname(ep_fid, buf.as_mut_ptr().cast(), &mut len);
            if rc == -(sys::FI_ETOOSMALL as i32) {
                buf.resize(len, 0);
                rc = sys::fi_getname(ep_fid, buf.as_mut_ptr().cast(), &mut len);
            }
            check(rc, "fi_getname")?;
            buf.truncate(len);
            self.address = buf;
        }
        Ok(())
    }

    /// Inserts a peer's raw address into the AV; `peer` names it in errors.
    pub(crate) fn insert(&mut self, raw: &[u8], peer: &str) -> Result<sys::fi_addr_t> {
        if !shm_region_exists(raw) {
            // libfabric 1.17's shm provider crashes inserting the address
            // of an endpoint whose region is gone (its process exited).
            return Err(Error::PeerUnreachable {
                address: proxystore_peer::address::abbreviate(peer),
                reason: "its shared memory region is gone (the process exited?)".into(),
            });
        }
        let mut addr: sys::fi_addr_t = ADDR_UNSPEC;
        // SAFETY: live AV; `raw` was checksummed by its text form or came in
        // a message header, and has this provider's address format (checked
        // by the caller, `same_format`); one address is written to `addr`.
        let rc = unsafe {
            sys::fi_av_insert(
                self.av,
                raw.as_ptr().cast(),
                1,
                &mut addr,
                0,
                ptr::null_mut(),
            )
        };
        if rc == 1 {
            Ok(addr)
        } else {
            Err(Error::PeerUnreachable {
                address: proxystore_peer::address::abbreviate(peer),
                reason: format!("fi_av_insert refused the address ({rc})"),
            })
        }
    }
}

/// The region name in an shm address (`fi_shm://<name>\0`): `Some` for an
/// shm address (empty or unusable names as `Some("")`), `None` otherwise.
pub(crate) fn shm_region_name(raw: &[u8]) -> Option<&str> {
    let name = raw.strip_prefix(b"fi_shm://")?;
    let name = name.split(|&b| b == 0).next().unwrap_or_default();
    Some(match std::str::from_utf8(name) {
        Ok(n) if !n.contains('/') => n,
        _ => "",
    })
}

/// Longest shm address accepted from a peer: libfabric's shm provider
/// names an endpoint's region in at most 256 bytes (`SMR_NAME_MAX`).
const SHM_ADDRESS_MAX: usize = 9 + 256;

/// Whether `peer` has the form of `own`'s provider's addresses, so it may
/// be handed to `fi_av_insert`: the same length, except for shm, whose
/// addresses are NUL-terminated names of varying length
/// (`fi_shm://<pid>:<n>:<m>`: a longer pid, or a process's tenth endpoint,
/// makes a longer one), so a peer's must be `fi_shm://`, a name, then
/// only NULs (at least one: the provider reads a C string), at most
/// [`SHM_ADDRESS_MAX`] bytes.
pub(crate) fn same_format(own: &[u8], peer: &[u8]) -> bool {
    if shm_region_name(own).is_none() {
        return peer.len() == own.len();
    }
    if peer.len() > SHM_ADDRESS_MAX || !peer.starts_with(b"fi_shm://") {
        return false;
    }
    match peer.iter().position(|&b| b == 0) {
        Some(end) => peer[end..].iter().all(|&b| b == 0),
        None => false,
    }
}

/// For an shm address, whether its region `/dev/shm/<name>` exists; `true`
/// for every other address. (A region can still vanish between this check
/// and the insert.)
fn shm_region_exists(raw: &[u8]) -> bool {
    match shm_region_name(raw) {
        None => true,
        Some("") => false,
        Some(n) => std::path::Path::new("/dev/shm").join(n).exists(),
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        // SAFETY: children before parents, each once; unset ones are null.
        // Closing the endpoint cancels what is still posted on it. The
        // domain closes with its last holder.
        unsafe {
            for fid in [self.ep.cast::<sys::fid>(), self.av.cast(), self.cq.cast()] {
                // Every fid_* struct starts with its `struct fid`.
                if !fid.is_null() {
                    let rc = sys::fi_close(fid);
                    if rc != 0 {
                        tracing::debug!(rc, "fi_close failed");
                    }
                }
            }
        }
    }
}

/// Sleeps on a CQ's wait file descriptor (see `Fabric::waiter`).
pub(crate) struct Waiter {
    fabric: *mut sys::fid_fabric,
    cq: *mut sys::fid,
    fd: i32,
}

// SAFETY: fi_trywait and poll on objects of a FI_THREAD_SAFE domain; the
// pointers outlive the waiter (both live in the engine's shared state,
// whose progress thread is the only user and is joined before it drops).
unsafe impl Send for Waiter {}
// SAFETY: as above.
unsafe impl Sync for Waiter {}

impl Waiter {
    /// Returns when the CQ may have completions, or after `at_most`
    /// (`fi_trywait` first: sleeping on the descriptor is only allowed
    /// once it says nothing is pending).
    pub(crate) fn sleep(&self, at_most: Duration) {
        let mut fids = [self.cq];
        // SAFETY: live fabric and CQ (see the Send impl).
        if unsafe { sys::fi_trywait(self.fabric, fids.as_mut_ptr(), 1) } != 0 {
            return;
        }
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(at_most.as_millis())
            .unwrap_or(i32::MAX)
            .max(1);
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, ms) };
    }
}

impl Fabric {
    /// A waiter on this endpoint's CQ, if the provider gave a descriptor.
    pub(crate) fn waiter(&self) -> Option<Waiter> {
        Some(Waiter {
            fabric: self.domain.fabric,
            cq: self.cq.cast(),
            fd: self.wait_fd?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shm_addresses_of_any_name_length_are_one_format() {
        let own = b"fi_shm://4242:0:9\0";
        for ok in [
            &b"fi_shm://4242:0:10\0"[..],
            b"fi_shm://123456:0:0\0",
            b"fi_shm://1:0:0\0",
            b"fi_shm://1:0:0\0\0\0", // padded by a provider
        ] {
            assert!(same_format(own, ok), "{}", String::from_utf8_lossy(ok));
        }
        let too_long = [b"fi_shm://".as_slice(), &[b'7'; 257], b"\0"].concat();
        for bad in [
            &b"fi_shm://4242:0:10"[..],  // no NUL: fi_av_insert would read on
            b"fi_shm://42\0:0:10\0",     // a NUL inside
            b"fi_sockets://4242:0:10\0", // another scheme
            b"",
            &too_long,
        ] {
            assert!(!same_format(own, bad), "{}", String::from_utf8_lossy(bad));
        }
        // Other providers' addresses have one length.
        let tcp = [2u8; 16];
        assert!(same_format(&tcp, &[3u8; 16]));
        assert!(!same_format(&tcp, &[3u8; 17]));
        assert!(!same_format(&tcp, b"fi_shm://4242:0:9\0"));
    }

    #[test]
    fn codes_map_to_unreachable_peers_timeouts_and_transport_errors() {
        let refused = -(sys::FI_ECONNREFUSED as i64);
        match error(refused, "fi_send", Some("ofi://tcp;ofi_rxm/AAAA")) {
            Error::PeerUnreachable { address, reason } => {
                assert_eq!(address, "ofi://tcp;ofi_rxm/AAAA");
                assert!(reason.starts_with("fi_send: "), "{reason}");
            }
            e => panic!("{e}"),
        }
        // A positive code (a CQ error entry's) maps alike.
        let from_cq = error(sys::FI_EHOSTUNREACH as i64, "fi_send", Some("p"));
        assert!(matches!(from_cq, Error::PeerUnreachable { .. }));
        // Without a peer, or with another code: a transport error naming
        // the call and fi_strerror's text.
        let e = error(refused, "fi_av_open", None);
        assert!(matches!(e, Error::Transport { ref connector, .. } if connector == "ofi"));
        let text = error(-(sys::FI_ENOMEM as i64), "fi_cq_open", Some("p")).to_string();
        assert!(text.contains("fi_cq_open") && text.contains(&strerror(sys::FI_ENOMEM as i32)));
        assert!(matches!(
            timeout("x", Duration::from_millis(1)),
            Error::Timeout { .. }
        ));
    }

    #[test]
    fn only_intact_shm_names_are_looked_up() {
        assert!(shm_region_exists(b"\x02\x00\x1f\x90"), "not an shm address");
        assert!(!shm_region_exists(b"fi_shm://../etc\0"));
        assert!(!shm_region_exists(b"fi_shm://\0"));
        assert!(!shm_region_exists(b"fi_shm://no-such-region-here\0"));
    }
}
