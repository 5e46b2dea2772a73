//! The layer over libdaos (daos-sys). In a build without DAOS (daos-sys's
//! unlinked mode) the connector never gets here: it refuses real pools
//! with `Error::Unsupported` naming `DAOS_DIR` first.
//!
//! Not run against a real DAOS system in this project's CI: it is
//! type-checked against the minimal DAOS 2.6.4 header in every build, and
//! against the installed headers where DAOS is found.

use std::ffi::{CStr, CString};
use std::ptr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use daos_sys as d;

use crate::layer::{der_name, rc, Completion, DaosLayer, EventQueue, Handle, KvOp};

/// libdaos, initialized once per process on first use.
#[derive(Debug, Default)]
pub struct RealDaos;

fn h(handle: Handle) -> d::daos_handle_t {
    d::daos_handle_t { cookie: handle.0 }
}

fn cstring(s: &str) -> Result<CString, i32> {
    CString::new(s).map_err(|_| rc(d::daos_errno_DER_INVAL))
}

impl DaosLayer for RealDaos {
    fn init(&self) -> i32 {
        static INIT: OnceLock<i32> = OnceLock::new();
        // SAFETY: daos_init takes no arguments; the OnceLock makes it once
        // per process (DAOS reference-counts further calls anyway).
        *INIT.get_or_init(|| unsafe { d::daos_init() })
    }

    fn pool_connect(&self, pool: &str) -> Result<Handle, i32> {
        let label = cstring(pool)?;
        let mut poh = d::daos_handle_t::default();
        // SAFETY: `label` is NUL-terminated and outlives the blocking call
        // (no event); `poh` is a valid out-pointer; info and sys may be NULL.
        let code = unsafe {
            d::daos_pool_connect2(
                label.as_ptr(),
                ptr::null(),
                d::DAOS_PC_RW,
                &mut poh,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if code == 0 {
            Ok(Handle(poh.cookie))
        } else {
            Err(code)
        }
    }

    fn cont_open(&self, pool: Handle, container: &str) -> Result<Handle, i32> {
        let label = cstring(container)?;
        let mut coh = d::daos_handle_t::default();
        // SAFETY: as for pool_connect: a blocking call with valid pointers.
        let code = unsafe {
            d::daos_cont_open2(
                h(pool),
                label.as_ptr(),
                d::DAOS_COO_RW,
                &mut coh,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if code == 0 {
            Ok(Handle(coh.cookie))
        } else {
            Err(code)
        }
    }

    fn kv_open(&self, container: Handle, oid: (u64, u64), oclass: &str) -> Result<Handle, i32> {
        let cid = if oclass.is_empty() {
            0 // OC_UNKNOWN: the container's default class
        } else {
            let name = cstring(oclass)?;
            // SAFETY: `name` is NUL-terminated and lives across the call.
            let id = unsafe { d::daos_oclass_name2id(name.as_ptr()) };
            if id <= 0 {
                return Err(rc(d::daos_errno_DER_INVAL));
            }
            id as d::daos_oclass_id_t
        };
        let mut id = d::daos_obj_id_t {
            lo: oid.0,
            hi: oid.1,
        };
        // SAFETY: `id` is a valid in/out pointer for the blocking call.
        let code = unsafe {
            d::daos_obj_generate_oid2(
                h(container),
                &mut id,
                d::daos_otype_t_DAOS_OT_KV_HASHED,
                cid,
                0,
                0,
            )
        };
        if code != 0 {
            return Err(code);
        }
        let mut oh = d::daos_handle_t::default();
        // The anonymous enum's bindgen type is `c_uint` from both headers;
        // the cast keeps this line right if DAOS ever gives it another.
        #[allow(clippy::unnecessary_cast)]
        let mode = d::DAOS_OO_RW as u32;
        // SAFETY: blocking open (no event) with a valid out-pointer.
        let code = unsafe { d::daos_kv_open(h(container), id, mode, &mut oh, ptr::null_mut()) };
        if code == 0 {
            Ok(Handle(oh.cookie))
        } else {
            Err(code)
        }
    }

    fn eq_create(&self, kv: Handle) -> Result<Box<dyn EventQueue>, i32> {
        let mut eqh = d::daos_handle_t::default();
        // SAFETY: `eqh` is a valid out-pointer.
        let code = unsafe { d::daos_eq_create(&mut eqh) };
        if code != 0 {
            return Err(code);
        }
        Ok(Box::new(RealQueue {
            eqh,
            kv: h(kv),
            slots: Vec::new(),
        }))
    }

    fn close(&self, pool: Handle, container: Handle, kv: Handle) {
        // SAFETY: blocking closes of handles this layer opened; DAOS
        // rejects invalid ones with -DER_NO_HDL, which is ignored here.
        unsafe {
            d::daos_kv_close(h(kv), ptr::null_mut());
            d::daos_cont_close(h(container), ptr::null_mut());
            d::daos_pool_disconnect(h(pool), ptr::null_mut());
        }
    }

    fn errstr(&self, code: i32) -> String {
        // SAFETY: d_errstr returns a static string (never NULL in DAOS;
        // checked anyway) for any code.
        let s = unsafe { d::d_errstr(code) };
        if s.is_null() || !d::DAOS_LINKED {
            return der_name(code);
        }
        // SAFETY: non-null, NUL-terminated, static.
        unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
    }
}

/// Which call a slot launched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Put,
    Get,
    Remove,
}

/// One operation in flight: its event and every buffer DAOS holds a
/// pointer to, boxed so they do not move until the event is reaped.
struct Slot {
    ev: d::daos_event_t,
    tag: usize,
    kind: Kind,
    key: CString,
    value: Bytes,
    buf: Vec<u8>,
    size: d::daos_size_t,
}

/// A DAOS event queue and the slots of its operations in flight.
struct RealQueue {
    eqh: d::daos_handle_t,
    kv: d::daos_handle_t,
    /// Boxed: DAOS holds pointers into each slot, and the vector moves
    /// its elements when it grows or removes one.
    #[allow(clippy::vec_box)]
    slots: Vec<Box<Slot>>,
}

// SAFETY: the queue's slots are owned (boxed) and only touched through
// `&mut self`; DAOS event queues may be used from any thread, one at a time.
unsafe impl Send for RealQueue {}

/// How long dropping a queue waits for aborted events to be reaped.
const REAP: Duration = Duration::from_secs(10);

/// Events reaped per `daos_eq_poll` call.
const POLL_BATCH: usize = 64;

impl RealQueue {
    /// Calls the slot's operation with its event.
    fn start(&self, slot: &mut Slot) -> i32 {
        let ev: *mut d::daos_event_t = &mut slot.ev;
        match slot.kind {
            // SAFETY: key, value and event live in the boxed slot, which
            // stays in `self.slots` (not moved, not freed) until the event
            // is reaped by poll or abort.
            Kind::Put => unsafe {
                d::daos_kv_put(
                    self.kv,
                    d::DAOS_TX_NONE,
                    0,
                    slot.key.as_ptr(),
                    slot.value.len() as d::daos_size_t,
                    slot.value.as_ptr().cast(),
                    ev,
                )
            },
            Kind::Get => {
                let buf = if slot.buf.is_empty() {
                    ptr::null_mut() // the size query
                } else {
                    slot.buf.as_mut_ptr().cast()
                };
                // SAFETY: as for put; `size` and `buf` are in the slot too,
                // `buf` holds `size` bytes.
                unsafe {
                    d::daos_kv_get(
                        self.kv,
                        d::DAOS_TX_NONE,
                        0,
                        slot.key.as_ptr(),
                        &mut slot.size,
                        buf,
                        ev,
                    )
                }
            }
            // SAFETY: as for put.
            Kind::Remove => unsafe {
                d::daos_kv_remove(self.kv, d::DAOS_TX_NONE, 0, slot.key.as_ptr(), ev)
            },
        }
    }

    /// Takes the slot whose event is `ev` out of the in-flight list.
    fn take(&mut self, ev: *mut d::daos_event_t) -> Option<Box<Slot>> {
        let i = self
            .slots
            .iter()
            .position(|s| ptr::eq(&s.ev as *const d::daos_event_t, ev))?;
        Some(self.slots.swap_remove(i))
    }
}

impl EventQueue for RealQueue {
    fn launch(&mut self, tag: usize, op: KvOp) -> i32 {
        let (kind, key, value, size) = match op {
            KvOp::Put { key, value } => (Kind::Put, key, value, 0),
            KvOp::Get { key, size } => (Kind::Get, key, Bytes::new(), size),
            KvOp::Remove { key } => (Kind::Remove, key, Bytes::new(), 0),
        };
        let buf = match usize::try_from(size) {
            Ok(n) if kind == Kind::Get => vec![0u8; n],
            Ok(_) => Vec::new(),
            Err(_) => return rc(d::daos_errno_DER_NOMEM),
        };
        let mut slot = Box::new(Slot {
            ev: d::daos_event_t::default(),
            tag,
            kind,
            key,
            value,
            buf,
            size,
        });
        // SAFETY: the event is fresh (zeroed) memory in the boxed slot.
        let code = unsafe { d::daos_event_init(&mut slot.ev, self.eqh, ptr::null_mut()) };
        if code != 0 {
            return code;
        }
        let code = self.start(&mut slot);
        if code != 0 {
            // A failed launch never completes: release the event now.
            // SAFETY: initialized above and not in flight.
            unsafe { d::daos_event_fini(&mut slot.ev) };
            return code;
        }
        self.slots.push(slot);
        0
    }

    fn poll(&mut self, timeout: Duration, out: &mut Vec<Completion>) -> i32 {
        let mut events = [ptr::null_mut::<d::daos_event_t>(); POLL_BATCH];
        let micros = i64::try_from(timeout.as_micros())
            .unwrap_or(i64::MAX)
            .max(1);
        // SAFETY: `events` has room for POLL_BATCH pointers.
        let n =
            unsafe { d::daos_eq_poll(self.eqh, 1, micros, POLL_BATCH as u32, events.as_mut_ptr()) };
        if n < 0 {
            return n;
        }
        for &ev in events.iter().take(n as usize) {
            let Some(mut slot) = self.take(ev) else {
                continue;
            };
            let code = slot.ev.ev_error;
            // SAFETY: the event completed (poll returned it), so DAOS no
            // longer touches the slot; finish it before the box is freed.
            unsafe { d::daos_event_fini(&mut slot.ev) };
            let data = (slot.kind == Kind::Get && !slot.buf.is_empty() && code == 0).then(|| {
                let mut buf = std::mem::take(&mut slot.buf);
                buf.truncate(usize::try_from(slot.size).unwrap_or(buf.len()));
                buf
            });
            out.push(Completion {
                tag: slot.tag,
                rc: code,
                size: if slot.kind == Kind::Get { slot.size } else { 0 },
                data,
            });
        }
        n
    }

    fn in_flight(&self) -> usize {
        self.slots.len()
    }

    fn abort(&mut self) {
        for slot in &mut self.slots {
            // SAFETY: the event is in flight in this queue.
            unsafe { d::daos_event_abort(&mut slot.ev) };
        }
        let deadline = Instant::now() + REAP;
        let mut sink = Vec::new();
        while !self.slots.is_empty() && Instant::now() < deadline {
            if self.poll(Duration::from_millis(100), &mut sink) < 0 {
                break;
            }
            sink.clear();
        }
        // Events DAOS never gave back may still be written to: leak their
        // slots rather than free memory DAOS holds pointers to.
        for slot in self.slots.drain(..) {
            std::mem::forget(slot);
        }
    }
}

impl Drop for RealQueue {
    fn drop(&mut self) {
        if !self.slots.is_empty() {
            self.abort();
        }
        // SAFETY: no event of this queue is in flight any more (reaped or
        // leaked above); the handle is not used after this.
        unsafe { d::daos_eq_destroy(self.eqh, 0) };
    }
}
