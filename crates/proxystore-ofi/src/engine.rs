//! The engine: one endpoint behind one lock (see `progress` for who reads
//! its completion queue), routes that messages are delivered to, a peer
//! cache, and sending.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfabric_sys as sys;
use proxystore_core::{Error, Result};
use proxystore_peer::address;

use crate::fabric::{timeout, Fabric};
use crate::mr::{Arena, OfiMemory};
use crate::progress::{run, Shared};
use crate::state::{Op, OpCtx, State, RECV_SIZE};
use crate::wire::{self, Kind, SERVER_ROUTE};
use crate::Message;

/// Largest message (header included) sent in one piece into a posted
/// receive buffer; larger ones are announced and sent tagged.
pub const INLINE_MAX: usize = RECV_SIZE;
/// Largest announced message an engine accepts unless told otherwise.
pub const DEFAULT_MAX_MESSAGE: u64 = 1 << 30;
/// How long a send may keep being told to try again (full queues, or a
/// connection rxm cannot make: it retries a refused one silently) unless
/// set otherwise.
pub const DEFAULT_SEND_WAIT: Duration = Duration::from_secs(5);

/// A libfabric endpoint moving framed messages between routes.
pub struct Engine {
    pub(crate) shared: Arc<Shared>,
    address: Vec<u8>,
    provider: String,
    one_sided: bool,
    max_msg_size: usize,
    next_route: Mutex<u64>,
    send_wait: Mutex<Duration>,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    /// Opens an endpoint of `provider` (`"tcp;ofi_rxm"`, `"shm"`; `None`
    /// lets libfabric choose, honouring `FI_PROVIDER`), posts its receive
    /// buffers and starts its progress thread.
    pub fn open(provider: Option<&str>) -> Result<Engine> {
        let fabric = Fabric::open(provider)?;
        let (address, provider, one_sided, max_msg_size) = (
            fabric.address.clone(),
            fabric.provider.clone(),
            fabric.one_sided,
            fabric.max_msg_size,
        );
        let arena = Arena::new(OfiMemory);
        let shared = Arc::new(Shared::new(State::new(fabric)?, DEFAULT_MAX_MESSAGE, arena));
        let shm = provider == "shm";
        if shm {
            let mut graves = shm_graves().lock().unwrap_or_else(|e| e.into_inner());
            graves.live += 1;
            remember_region(&mut graves, &address);
        }
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("proxystore-ofi".into())
            .spawn(move || run(&thread_shared))
            .map_err(|e| {
                if shm {
                    bury(Arc::clone(&shared));
                }
                Error::io("spawning the libfabric progress thread", e)
            })?;
        let _ = shared.thread.set(thread.thread().clone());
        Ok(Engine {
            shared,
            address,
            provider,
            one_sided,
            max_msg_size,
            next_route: Mutex::new(SERVER_ROUTE + 1),
            send_wait: Mutex::new(DEFAULT_SEND_WAIT),
            thread: Some(thread),
        })
    }

    /// The provider's name as libfabric reports it.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Whether the provider granted one-sided reads (FI_RMA, FI_READ,
    /// FI_REMOTE_READ).
    pub fn one_sided(&self) -> bool {
        self.one_sided
    }

    /// This endpoint's raw address (`fi_getname`).
    pub fn raw_address(&self) -> &[u8] {
        &self.address
    }

    /// This endpoint's address as text: `ofi://<provider>/<base64url>`.
    pub fn address(&self) -> String {
        address::encode(&self.scheme(), &self.address)
    }

    fn scheme(&self) -> String {
        crate::fabric::scheme(&self.provider)
    }

    /// The raw address in `text`: [`Error::Config`] if it names another
    /// provider than this endpoint's, [`Error::InvalidKey`] if damaged.
    pub fn parse_address(&self, text: &str) -> Result<Vec<u8>> {
        let provider = text
            .strip_prefix("ofi://")
            .and_then(|rest| rest.split_once('/'))
            .map(|(p, _)| p);
        match provider {
            Some(p) if p != self.provider => Err(Error::Config(format!(
                "{} is an address of libfabric provider '{p}'; this endpoint uses '{}'",
                address::abbreviate(text),
                self.provider
            ))),
            _ => address::decode(&self.scheme(), text),
        }
    }

    /// Sets the largest announced message this engine accepts (larger
    /// ones are refused before anything is allocated).
    pub fn set_max_message(&self, bytes: u64) {
        self.shared.limit.store(bytes, Ordering::Relaxed);
    }

    /// Raises the largest announced message this engine accepts to at
    /// least `bytes` (several users of one endpoint: the largest counts).
    pub fn raise_max_message(&self, bytes: u64) {
        self.shared.limit.fetch_max(bytes, Ordering::Relaxed);
    }

    /// How many buffers this engine allocated for announced (larger than
    /// [`INLINE_MAX`]) messages so far.
    pub fn large_receives(&self) -> u64 {
        self.shared.lock().large_receives
    }

    /// Sets how long [`Engine::send`] may wait for the provider to take a
    /// message before it gives up with [`Error::Timeout`].
    pub fn set_send_wait(&self, wait: Duration) {
        *self.send_wait.lock().unwrap_or_else(|e| e.into_inner()) = wait;
    }

    /// A new route; messages sent to it (and errors of sends whose reply
    /// route it is) arrive on the receiver.
    pub fn open_route(&self) -> (u64, Receiver<Result<Message>>) {
        let id = {
            let mut next = self.next_route.lock().unwrap_or_else(|e| e.into_inner());
            *next += 1;
            *next - 1
        };
        (id, self.add_route(id))
    }

    /// Receives messages sent to [`SERVER_ROUTE`]; one listener at a time.
    pub fn listen(&self) -> Result<Receiver<Result<Message>>> {
        let routes = self.shared.routes.lock().unwrap_or_else(|e| e.into_inner());
        if routes.contains_key(&SERVER_ROUTE) {
            return Err(Error::Config("this endpoint already has a listener".into()));
        }
        drop(routes);
        Ok(self.add_route(SERVER_ROUTE))
    }

    fn add_route(&self, id: u64) -> Receiver<Result<Message>> {
        let (tx, rx) = channel();
        self.shared
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        rx
    }

    /// Forgets a route: later messages to it are dropped.
    pub fn close_route(&self, id: u64) {
        self.shared
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Reads the completion queue once on this thread (delivering what
    /// arrived to its routes); returns how many completions there were.
    /// For loops that must keep an endpoint progressed (a software-RMA
    /// provider serves reads of this endpoint's memory only while it is).
    pub fn poll(&self) -> usize {
        let mut st = self.shared.lock();
        self.shared.progress(&mut st)
    }

    /// The next message (or error) on `rx` within `after`, reading the
    /// completion queue on this thread while the wait is short;
    /// [`Error::Timeout`] when nothing came.
    pub fn wait(&self, rx: &Receiver<Result<Message>>, after: Duration) -> Result<Message> {
        self.shared.wait(rx, after)
    }

    /// Sends `frames` to route `to_route` of the endpoint at raw address
    /// `peer`; the reply (and any later error of this send, naming the
    /// peer) goes to `reply_route` here. Returns once the send is posted;
    /// a provider that keeps saying "try again" (see
    /// [`Engine::set_send_wait`]) makes it [`Error::Timeout`].
    pub fn send(
        &self,
        peer: &[u8],
        to_route: u64,
        reply_route: u64,
        frames: Vec<Bytes>,
    ) -> Result<()> {
        self.send_within(peer, to_route, reply_route, frames, Duration::MAX)
    }

    /// [`Engine::send`], giving up with [`Error::Timeout`] after `wait`
    /// when that is shorter than the engine's send wait: what a caller with
    /// a deadline of its own (a request's timeout) uses.
    pub fn send_within(
        &self,
        peer: &[u8],
        to_route: u64,
        reply_route: u64,
        frames: Vec<Bytes>,
        wait: Duration,
    ) -> Result<()> {
        let wait = wait.min(*self.send_wait.lock().unwrap_or_else(|e| e.into_inner()));
        let deadline = std::time::Instant::now() + wait;
        if frames.len() > wire::MAX_FRAMES {
            return Err(Error::TooLarge {
                what: "frame count",
                size: frames.len() as u64,
                limit: wire::MAX_FRAMES as u64,
            });
        }
        if let Some(f) = frames.iter().find(|f| f.len() > self.max_msg_size) {
            return Err(Error::TooLarge {
                what: "frame (the provider's largest message)",
                size: f.len() as u64,
                limit: self.max_msg_size as u64,
            });
        }
        let total: usize = frames.iter().map(Bytes::len).sum();
        let inline = wire::header_len(self.address.len(), frames.len()) + total
            <= INLINE_MAX.min(self.max_msg_size);
        // The peer and the message's tags under the lock; each post takes
        // it again (see `post_op`).
        let (dest, peer_text, tag) = {
            let mut st = self.shared.lock();
            let (dest, peer_text) = st.peer(peer)?;
            let tag = st.next_tag;
            if !inline {
                st.next_tag = tag.wrapping_add(frames.len() as u64);
            }
            (dest, peer_text, tag)
        };
        let to = SendTo {
            dest,
            peer: &peer_text,
            deadline,
        };
        if inline {
            let msg = wire::encode(
                Kind::Inline,
                &self.address,
                to_route,
                reply_route,
                0,
                &frames,
            );
            return self.post(&to, None, msg.into(), reply_route);
        }
        let msg = wire::encode(
            Kind::Announce,
            &self.address,
            to_route,
            reply_route,
            tag,
            &frames,
        );
        self.post(&to, None, msg.into(), reply_route)?;
        for (i, frame) in frames.into_iter().enumerate() {
            if !frame.is_empty() {
                let t = tag.wrapping_add(i as u64);
                self.post(&to, Some(t), frame, reply_route)?;
            }
        }
        Ok(())
    }

    /// Posts one send (tagged if `tag` is given), retrying while the
    /// provider says to try again (until `deadline`) and reading
    /// completions meanwhile.
    fn post(&self, to: &SendTo<'_>, tag: Option<u64>, data: Bytes, reply_route: u64) -> Result<()> {
        let SendTo {
            dest,
            peer,
            deadline,
        } = *to;
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        let (ptr, len) = (data.as_ptr(), data.len());
        let op = Op::Send {
            _keep: data,
            tag,
            reply_route,
            peer: Arc::clone(peer),
        };
        let what = "send (the provider kept saying try again)";
        self.post_op(op, "fi_send", what, peer, wait, |st, ctx| {
            // SAFETY: live endpoint; the bytes are owned by the context,
            // which lives until the send completes or the endpoint closes.
            unsafe {
                match tag {
                    None => sys::fi_send(
                        st.fabric.ep,
                        ptr.cast(),
                        len,
                        std::ptr::null_mut(),
                        dest,
                        ctx.cast(),
                    ),
                    Some(t) => sys::fi_tsend(
                        st.fabric.ep,
                        ptr.cast(),
                        len,
                        std::ptr::null_mut(),
                        dest,
                        t,
                        ctx.cast(),
                    ),
                }
            }
        })
    }

    /// Tracks `op` and issues it with `issue` (libfabric `call`), retrying
    /// for at most `wait` while the provider says to try again and reading
    /// completions meanwhile; then [`Error::Timeout`] naming `what`.
    ///
    /// Takes the engine lock itself and lets go of it between retries: to
    /// a vanished or stopped peer the provider can say "try again" until
    /// `wait` ends, and holding the lock that long stalled every other
    /// call of this engine (a get from a healthy peer, the progress
    /// thread) behind it. The caller must not hold the lock.
    pub(crate) fn post_op(
        &self,
        op: Op,
        call: &str,
        what: &'static str,
        peer: &Arc<str>,
        wait: Duration,
        mut issue: impl FnMut(&State, *mut OpCtx) -> isize,
    ) -> Result<()> {
        let deadline = Instant::now() + wait;
        let mut st = self.shared.lock();
        // Boxed: the pointer stays valid while the lock is let go.
        let ctx = st.track(op);
        loop {
            let rc = issue(&st, ctx);
            if rc != -(sys::FI_EAGAIN as isize) {
                return st.posted(rc, ctx, call, Some(peer));
            }
            if Instant::now() >= deadline {
                let _ = st.posted(rc, ctx, call, Some(peer));
                return Err(timeout(what, wait));
            }
            self.shared.progress(&mut st);
            drop(st);
            std::thread::yield_now();
            st = self.shared.lock();
        }
    }
}

/// Where one message's sends go, and until when they may retry.
#[derive(Clone, Copy)]
struct SendTo<'a> {
    dest: sys::fi_addr_t,
    peer: &'a Arc<str>,
    deadline: std::time::Instant,
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            // The last owner can go on the progress thread itself (the
            // exposures its housekeeping was sweeping): a thread cannot
            // join itself; it sees `stop` and ends, and the state goes
            // with its Arc.
            if t.thread().id() == std::thread::current().id() {
                drop(t);
            } else if t.join().is_err() {
                tracing::warn!("the libfabric progress thread panicked");
            }
        }
        self.shared
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        if self.provider == "shm" {
            bury(Arc::clone(&self.shared));
        }
        // Otherwise the state (and the endpoint) goes with the last Arc.
    }
}

/// libfabric 1.17's shm provider hands endpoints in one process each
/// other's shared memory region directly (not a mapping of their own), so
/// closing one while another may still touch it crashes the other's
/// progress. Closed shm engines of a process are therefore kept (stopped,
/// not progressed) until its last shm engine closes. Separate processes
/// map each other's regions and are not affected.
#[derive(Default)]
struct Graves {
    live: usize,
    dead: Vec<Arc<Shared>>,
    /// `/dev/shm` names of this process's shm regions, unlinked at exit.
    regions: Vec<std::ffi::CString>,
}

/// Notes the region of an shm endpoint at `address` and, the first time,
/// asks for every noted region to be unlinked at exit: shm endpoints kept
/// in the graves (or in a connector never dropped) are never closed, and
/// libfabric 1.17 unlinks a region only when its endpoint closes, so each
/// process would leave files in /dev/shm. (A killed process still does.)
fn remember_region(graves: &mut Graves, address: &[u8]) {
    let Some(name) = crate::fabric::shm_region_name(address).filter(|n| !n.is_empty()) else {
        return;
    };
    let Ok(name) = std::ffi::CString::new(format!("/{name}")) else {
        return;
    };
    if graves.regions.is_empty() {
        // SAFETY: registers a plain extern "C" fn with no arguments.
        if unsafe { libc::atexit(unlink_regions) } != 0 {
            tracing::debug!("could not register the shm cleanup at exit");
        }
    }
    graves.regions.push(name);
}

/// Unlinks this process's shm regions (at exit; an endpoint closed before
/// unlinked its own, and unlinking again only fails).
extern "C" fn unlink_regions() {
    // try_lock: at exit another thread may hold it forever.
    let Ok(graves) = shm_graves().try_lock() else {
        return;
    };
    for name in &graves.regions {
        // SAFETY: a NUL-terminated name.
        unsafe { libc::shm_unlink(name.as_ptr()) };
    }
}

fn shm_graves() -> &'static Mutex<Graves> {
    static GRAVES: std::sync::OnceLock<Mutex<Graves>> = std::sync::OnceLock::new();
    GRAVES.get_or_init(Mutex::default)
}

/// Keeps a stopped shm engine's state until the process's last one goes.
fn bury(shared: Arc<Shared>) {
    let dead = {
        let mut g = shm_graves().lock().unwrap_or_else(|e| e.into_inner());
        g.live = g.live.saturating_sub(1);
        g.dead.push(shared);
        if g.live > 0 {
            return;
        }
        std::mem::take(&mut g.dead)
    };
    // Closed outside the lock: closing may take a while.
    drop(dead);
}
