//! Posted operations and their completions: the endpoint's state behind
//! the engine lock, what each posted operation is, and what a completion
//! does (messages to routes, announced transfers, reads, refusals,
//! releases). Who reads the completion queue is `progress`'s.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use libfabric_sys as sys;
use proxystore_core::{Error, Result};
use proxystore_peer::address;
use proxystore_peer::pool::{self, Buf};
use proxystore_peer::rma::Expose;

use crate::fabric::{error, scheme, zeroed_context, Fabric, ADDR_UNSPEC};
use crate::liveness::ProcessWatch;
use crate::wire::{self, Kind, RELEASE_ROUTE};
use crate::Message;

/// Receive buffers kept posted, and their size.
pub(crate) const RECV_BUFFERS: usize = 16;
/// Size of each posted receive buffer: messages up to this size are inline.
pub(crate) const RECV_SIZE: usize = 64 << 10;

/// What a posted operation is, found again from its completion.
pub(crate) enum Op {
    /// A posted receive buffer.
    Recv(Buf),
    /// One frame of a large message (the transfer is keyed by its tag).
    TaggedRecv { tag: u64 },
    /// A send whose bytes must live until it completes; errors go to
    /// `reply_route` naming `peer`.
    Send {
        _keep: Bytes,
        /// The frame tag of a tagged send (cancelled if refused).
        tag: Option<u64>,
        reply_route: u64,
        /// The peer's address as text, shared with the peer cache.
        peer: Arc<str>,
    },
    /// A one-sided read into `buf`; the bytes (or the error, naming `peer`)
    /// go to `route`.
    Read {
        buf: Buf,
        len: usize,
        route: u64,
        peer: Arc<str>,
    },
}

/// The heap context of one posted operation: the provider's scratch space
/// first (FI_CONTEXT/FI_CONTEXT2), then what the operation is.
#[repr(C)]
pub(crate) struct OpCtx {
    ctx: sys::fi_context2,
    op: Op,
}

/// A large message being received: frames land in one pooled buffer.
struct Incoming {
    buf: Buf,
    lens: Vec<usize>,
    left: usize,
    to_route: u64,
    reply_route: u64,
    from: Vec<u8>,
}

/// A peer in the AV: its entry, its address as text, and for shm peers
/// the process to check before each send (see `liveness`).
struct Peer {
    addr: sys::fi_addr_t,
    text: Arc<str>,
    process: Option<ProcessWatch>,
}

impl Peer {
    /// An error if the peer's process has exited: a send to it could spin
    /// for good in libfabric 1.17's shm provider.
    fn check_alive(&self) -> Result<()> {
        match &self.process {
            Some(p) if p.exited() => Err(Error::PeerUnreachable {
                address: address::abbreviate(&self.text),
                reason: format!("its process ({}) has exited", p.pid()),
            }),
            _ => Ok(()),
        }
    }
}

/// Route ids to the channels their messages go to.
pub(crate) type Routes = Mutex<HashMap<u64, Sender<Result<Message>>>>;

/// Everything that calls libfabric; only touched under the lock.
pub(crate) struct State {
    pub(crate) fabric: Fabric,
    /// Peers inserted into the AV, by raw address.
    peers: HashMap<Vec<u8>, Peer>,
    // Fields drop in order: the endpoint closes before the memory its
    // operations may still point at is freed.
    /// Contexts of operations in flight.
    pending: Pending,
    /// Buffers of abandoned large receives, kept until the endpoint closes.
    orphans: Vec<Buf>,
    /// Large messages being received, by their first tag.
    incoming: HashMap<u64, Incoming>,
    /// First tags of the frames' tagged receives, by frame tag.
    frame_of: HashMap<u64, u64>,
    pub(crate) next_tag: u64,
    /// Buffers allocated for announced messages so far.
    pub(crate) large_receives: u64,
    /// Where releases of descriptors this endpoint handed out go.
    pub(crate) releases: Option<Arc<dyn Expose>>,
    /// Operations in flight other than the posted receive buffers (sends,
    /// tagged receives, reads): while there are any, the CQ needs
    /// progress even when no caller waits.
    pub(crate) busy: usize,
}

// SAFETY: the raw libfabric handles and contexts are only used by the
// thread holding the mutex around State (the domain's default threading
// allows any one thread at a time).
unsafe impl Send for State {}

impl State {
    /// Wraps an open fabric and posts the receive buffers.
    pub(crate) fn new(fabric: Fabric) -> Result<State> {
        let mut st = State {
            fabric,
            peers: HashMap::new(),
            pending: Pending::default(),
            orphans: Vec::new(),
            incoming: HashMap::new(),
            frame_of: HashMap::new(),
            // Random high bits keep tags of different senders apart.
            next_tag: u64::from(fastrand::u32(..)) << 32,
            large_receives: 0,
            releases: None,
            busy: 0,
        };
        for _ in 0..RECV_BUFFERS {
            let buf = pool::take(RECV_SIZE).ok_or(Error::TooLarge {
                what: "receive buffer",
                size: RECV_SIZE as u64,
                limit: 0,
            })?;
            st.post_recv(buf)?;
        }
        Ok(st)
    }

    fn post_recv(&mut self, mut buf: Buf) -> Result<()> {
        let (ptr, len) = (buf.as_mut_ptr(), buf.len());
        let ctx = self.track(Op::Recv(buf));
        // SAFETY: live endpoint; the buffer is owned by the context, which
        // lives until its completion (or the endpoint's close).
        let rc = unsafe {
            sys::fi_recv(
                self.fabric.ep,
                ptr.cast(),
                len,
                std::ptr::null_mut(),
                ADDR_UNSPEC,
                ctx.cast(),
            )
        };
        self.posted(rc, ctx, "fi_recv", None)
    }

    /// Boxes `op` with a zeroed provider context and tracks it.
    pub(crate) fn track(&mut self, op: Op) -> *mut OpCtx {
        if !matches!(op, Op::Recv(_)) {
            self.busy += 1;
        }
        let ctx = Box::into_raw(Box::new(OpCtx {
            ctx: zeroed_context(),
            op,
        }));
        self.pending.0.insert(ctx);
        ctx
    }

    /// Frees `ctx` if posting failed and maps the error.
    pub(crate) fn posted(
        &mut self,
        rc: isize,
        ctx: *mut OpCtx,
        call: &str,
        peer: Option<&str>,
    ) -> Result<()> {
        if rc == 0 {
            return Ok(());
        }
        // The provider did not take it (the post failed): freed here.
        drop(self.take(ctx));
        Err(error(rc as i64, call, peer))
    }

    /// Posts a tagged receive of `len` bytes at `ptr` for frame tag `tag`.
    fn post_trecv(&mut self, ptr: *mut u8, len: usize, tag: u64) -> Result<()> {
        let ctx = self.track(Op::TaggedRecv { tag });
        // SAFETY: `ptr..ptr+len` lies in the pooled buffer of an Incoming
        // that stays in `self.incoming` until all its frames completed or
        // the endpoint is closed.
        let rc = unsafe {
            sys::fi_trecv(
                self.fabric.ep,
                ptr.cast(),
                len,
                std::ptr::null_mut(),
                ADDR_UNSPEC,
                tag,
                0,
                ctx.cast(),
            )
        };
        self.posted(rc, ctx, "fi_trecv", None)
    }

    /// Reads completions once; returns how many there were. Messages and
    /// errors go to their routes; `limit` bounds announced sizes.
    pub(crate) fn progress(&mut self, routes: &Routes, limit: u64) -> usize {
        let mut entries = [sys::fi_cq_tagged_entry::default(); 16];
        // SAFETY: live CQ of FI_CQ_FORMAT_TAGGED; room for 16 entries.
        let rc =
            unsafe { sys::fi_cq_read(self.fabric.cq, entries.as_mut_ptr().cast(), entries.len()) };
        if rc == -(sys::FI_EAVAIL as isize) {
            self.read_error(routes);
            return 1;
        }
        let n = usize::try_from(rc).unwrap_or(0);
        for e in &entries[..n] {
            self.complete(e.op_context.cast(), e.len, routes, limit);
        }
        n
    }

    /// The operation of a tracked context the provider is done with (its
    /// completion was read, or its post failed).
    fn take(&mut self, ctx: *mut OpCtx) -> Option<Op> {
        if !self.pending.0.remove(&ctx) {
            return None;
        }
        // SAFETY: tracked, so from Box::into_raw in `track`, and the
        // provider is done with it.
        let op = unsafe { Box::from_raw(ctx) }.op;
        if !matches!(op, Op::Recv(_)) {
            self.busy -= 1;
        }
        Some(op)
    }

    fn read_error(&mut self, routes: &Routes) {
        let mut e = sys::fi_cq_err_entry::default();
        // SAFETY: live CQ; one error entry written.
        let rc = unsafe { sys::fi_cq_readerr(self.fabric.cq, &mut e, 0) };
        if rc != 1 {
            return;
        }
        match self.take(e.op_context.cast()) {
            // A truncated (oversized inline) message: the buffer goes back.
            Some(Op::Recv(buf)) => {
                tracing::debug!(err = e.err, "a receive failed; reposted");
                if let Err(err) = self.post_recv(buf) {
                    tracing::warn!(error = %err, "could not repost a receive buffer");
                }
            }
            Some(Op::TaggedRecv { tag }) => {
                if let Some(first) = self.frame_of.remove(&tag) {
                    if let Some(inc) = self.incoming.remove(&first) {
                        self.forget_frames(first, inc.lens.len());
                        // Other frames may still be posted into it.
                        self.orphans.push(inc.buf);
                        let err = error(i64::from(e.err), "fi_trecv", None);
                        deliver(routes, inc.to_route, Err(err));
                    }
                }
            }
            // A send cancelled after its announcement was refused: the
            // sender heard of it from the refusal already.
            Some(Op::Send { .. }) if e.err == sys::FI_ECANCELED as i32 => {}
            Some(Op::Send {
                reply_route, peer, ..
            }) => {
                let err = error(i64::from(e.err), "fi_send", Some(&peer));
                deliver(routes, reply_route, Err(err));
            }
            Some(Op::Read { route, peer, .. }) => {
                let err = error(i64::from(e.err), "fi_read", Some(&peer));
                deliver(routes, route, Err(err));
            }
            None => tracing::debug!(err = e.err, "a completion error of no operation"),
        }
    }

    fn forget_frames(&mut self, first: u64, count: usize) {
        for i in 0..count as u64 {
            self.frame_of.remove(&first.wrapping_add(i));
        }
    }

    fn complete(&mut self, ctx: *mut OpCtx, len: usize, routes: &Routes, limit: u64) {
        match self.take(ctx) {
            Some(Op::Recv(buf)) => {
                let msg = pool::into_bytes(buf, len);
                // The buffer travels with the message; a fresh (pooled)
                // one takes its place.
                match pool::take(RECV_SIZE) {
                    Some(buf) => {
                        if let Err(e) = self.post_recv(buf) {
                            tracing::warn!(error = %e, "could not repost a receive buffer");
                        }
                    }
                    None => tracing::warn!("no memory for a receive buffer"),
                }
                self.arrived(msg, routes, limit);
            }
            Some(Op::TaggedRecv { tag }) => {
                let Some(first) = self.frame_of.remove(&tag) else {
                    return;
                };
                let done = match self.incoming.get_mut(&first) {
                    Some(inc) => {
                        inc.left -= 1;
                        inc.left == 0
                    }
                    None => false,
                };
                if done {
                    if let Some(inc) = self.incoming.remove(&first) {
                        let total = inc.lens.iter().sum();
                        let all = pool::into_bytes(inc.buf, total);
                        let message = Message {
                            from: inc.from,
                            reply_route: inc.reply_route,
                            frames: split(&all, 0, &inc.lens),
                        };
                        deliver(routes, inc.to_route, Ok(message));
                    }
                }
            }
            Some(Op::Read {
                buf, len, route, ..
            }) => {
                let message = Message {
                    from: Vec::new(),
                    reply_route: 0,
                    frames: vec![pool::into_bytes(buf, len)],
                };
                deliver(routes, route, Ok(message));
            }
            Some(Op::Send { .. }) | None => {}
        }
    }

    /// Handles one received message (inline or announcement).
    fn arrived(&mut self, msg: Bytes, routes: &Routes, limit: u64) {
        let Some(h) = wire::decode(&msg) else {
            tracing::debug!(len = msg.len(), "a malformed message was dropped");
            return;
        };
        if h.to_route == RELEASE_ROUTE && h.kind == Kind::Inline {
            // Releases are handled here, not by a route's reader: a reader
            // that finished with a descriptor unpins it at once.
            if let Some(exposures) = &self.releases {
                for release in split(&msg, h.body, &h.lens) {
                    exposures.release(&release);
                }
            }
            return;
        }
        if h.kind == Kind::Refused {
            let &[size, limit, frames] = h.lens.as_slice() else {
                return;
            };
            let (size, limit) = (size as u64, limit as u64);
            // Cancelled even if the waiting route is gone meanwhile.
            self.cancel_frames(h.tag, frames as u64);
            let err = Error::TooLarge {
                what: "message (refused by its receiver)",
                size,
                limit,
            };
            deliver(routes, h.to_route, Err(err));
            return;
        }
        if !routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&h.to_route)
        {
            tracing::debug!(route = h.to_route, "a message for no route was dropped");
            return;
        }
        if h.kind == Kind::Inline {
            let message = Message {
                frames: split(&msg, h.body, &h.lens),
                from: h.from,
                reply_route: h.reply_route,
            };
            deliver(routes, h.to_route, Ok(message));
            return;
        }
        // An announcement: check the size before allocating anything.
        let total = h
            .lens
            .iter()
            .try_fold(0u64, |a, &l| a.checked_add(l as u64));
        let total = match total {
            Some(t) if t <= limit => t as usize,
            t => {
                let size = t.unwrap_or(u64::MAX);
                // The sender waits for an answer: tell it, not just us.
                self.refuse(&h, size, limit);
                let err = Error::TooLarge {
                    what: "announced message",
                    size,
                    limit,
                };
                deliver(routes, h.to_route, Err(err));
                return;
            }
        };
        let Some(mut buf) = pool::take(total) else {
            let err = Error::TooLarge {
                what: "announced message (no memory for it)",
                size: total as u64,
                limit,
            };
            deliver(routes, h.to_route, Err(err));
            return;
        };
        self.large_receives += 1;
        let base = buf.as_mut_ptr();
        let mut at = 0;
        let mut posts = Vec::new();
        for (i, &len) in h.lens.iter().enumerate() {
            if len > 0 {
                // SAFETY: at + len <= total <= buf.len().
                posts.push((unsafe { base.add(at) }, len, h.tag.wrapping_add(i as u64)));
            }
            at += len;
        }
        let first = h.tag;
        let inc = Incoming {
            buf,
            left: posts.len(),
            lens: h.lens,
            to_route: h.to_route,
            reply_route: h.reply_route,
            from: h.from,
        };
        if posts.is_empty() {
            let message = Message {
                frames: inc.lens.iter().map(|_| Bytes::new()).collect(),
                from: inc.from,
                reply_route: inc.reply_route,
            };
            deliver(routes, inc.to_route, Ok(message));
            return;
        }
        let (count, to_route) = (inc.lens.len(), inc.to_route);
        self.incoming.insert(first, inc);
        for (ptr, len, tag) in posts {
            self.frame_of.insert(tag, first);
            if let Err(e) = self.post_trecv(ptr, len, tag) {
                // Frames already posted complete into a buffer that stays
                // until the endpoint closes; the caller hears of it now.
                if let Some(inc) = self.incoming.remove(&first) {
                    self.forget_frames(first, count);
                    self.orphans.push(inc.buf);
                }
                deliver(routes, to_route, Err(e));
                return;
            }
        }
    }
}

impl State {
    /// The AV entry of the endpoint at raw address `peer` and its text form
    /// (for errors), inserting it and encoding the text the first time
    /// only: sends to a known peer do neither. An shm peer whose process
    /// has exited is refused before anything is sent to it.
    pub(crate) fn peer(&mut self, peer: &[u8]) -> Result<(sys::fi_addr_t, Arc<str>)> {
        if let Some(p) = self.peers.get(peer) {
            p.check_alive()?;
            return Ok((p.addr, Arc::clone(&p.text)));
        }
        let text = address::encode(&scheme(&self.fabric.provider), peer);
        if !crate::fabric::same_format(&self.fabric.address, peer) {
            // An address of another provider or format: never handed to it.
            return Err(Error::PeerUnreachable {
                address: address::abbreviate(&text),
                reason: format!(
                    "not a {} address like this endpoint's ({} bytes; this one is {})",
                    self.fabric.provider,
                    self.fabric.address.len(),
                    peer.len()
                ),
            });
        }
        let process = crate::fabric::shm_region_name(peer).and_then(ProcessWatch::of_region);
        let text: Arc<str> = text.into();
        let entry = Peer {
            addr: ADDR_UNSPEC,
            text,
            process,
        };
        entry.check_alive()?;
        let addr = self.fabric.insert(peer, &entry.text)?;
        let entry = Peer { addr, ..entry };
        let text = Arc::clone(&entry.text);
        self.peers.insert(peer.to_vec(), entry);
        Ok((addr, text))
    }

    /// Tells the sender of announcement `h` that it was refused (best
    /// effort: a refusal that cannot be sent at once is dropped, and the
    /// sender's wait ends at its timeout instead).
    fn refuse(&mut self, h: &wire::Header, size: u64, limit: u64) {
        if h.kind != Kind::Announce || h.reply_route == RELEASE_ROUTE {
            return;
        }
        let Ok((dest, peer)) = self.peer(&h.from) else {
            return;
        };
        let numbers = [size, limit, h.lens.len() as u64];
        let msg = Bytes::from(wire::refusal(
            &self.fabric.address,
            h.reply_route,
            h.tag,
            numbers,
        ));
        let (ptr, len) = (msg.as_ptr(), msg.len());
        let ctx = self.track(Op::Send {
            _keep: msg,
            tag: None,
            // Errors of this send go nowhere.
            reply_route: RELEASE_ROUTE,
            peer,
        });
        // SAFETY: live endpoint; the bytes are owned by the context.
        let rc = unsafe {
            sys::fi_send(
                self.fabric.ep,
                ptr.cast(),
                len,
                std::ptr::null_mut(),
                dest,
                ctx.cast(),
            )
        };
        if let Err(e) = self.posted(rc, ctx, "fi_send", None) {
            tracing::debug!(error = %e, "a refusal could not be sent");
        }
    }

    /// Cancels this endpoint's tagged sends of the frames of refused
    /// announcement `first` (up to `count` frames): they would otherwise
    /// wait for a receive that never comes.
    fn cancel_frames(&mut self, first: u64, count: u64) {
        let count = count.min(wire::MAX_FRAMES as u64);
        let ours: Vec<*mut OpCtx> = self
            .pending
            .0
            .iter()
            .copied()
            .filter(|&ctx| {
                // SAFETY: tracked contexts are live boxes.
                matches!(unsafe { &(*ctx).op }, Op::Send { tag: Some(t), .. }
                    if t.wrapping_sub(first) < count)
            })
            .collect();
        for ctx in ours {
            // SAFETY: live endpoint; a context of a send posted on it. A
            // cancelled send completes with FI_ECANCELED (handled above).
            let rc = unsafe { sys::fi_cancel(&mut (*self.fabric.ep).fid, ctx.cast()) };
            if rc != 0 {
                tracing::debug!(rc, "a refused frame's send could not be cancelled");
            }
        }
    }
}

/// Contexts of operations in flight; freed when dropped, which `State`
/// does after its fabric (so after the endpoint closed and cancelled them).
#[derive(Default)]
struct Pending(HashSet<*mut OpCtx>);

impl Drop for Pending {
    fn drop(&mut self) {
        for ctx in self.0.drain() {
            // SAFETY: from Box::into_raw; the endpoint is closed (State's
            // fabric field drops first), so the provider no longer uses it.
            drop(unsafe { Box::from_raw(ctx) });
        }
    }
}

/// `lens` consecutive frames of `all` from `at`, as slices (no copies).
fn split(all: &Bytes, mut at: usize, lens: &[usize]) -> Vec<Bytes> {
    lens.iter()
        .map(|&len| {
            let f = all.slice(at..at + len);
            at += len;
            f
        })
        .collect()
}

pub(crate) fn deliver(routes: &Routes, route: u64, msg: Result<Message>) {
    let routes = routes.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = routes.get(&route) {
        let _ = tx.send(msg);
    }
}
