//! The socket layer a network connector plugs in, and the two loops written
//! once over it: the data server and the client's connection pool.
//!
//! A transport supplies only how frames move (ZeroMQ ROUTER/DEALER sockets,
//! in-process channels in the mock); the request handling, connection
//! caching, request-id matching, pipelining and timeouts live here.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proxystore_core::{Error, Result};

use crate::address::is_local_endpoint;
use crate::handler::Handler;
use crate::rma::{Exposures, OneSided};
use crate::wire::{Frames, Limits, Message};

/// How often a server loop wakes to check whether it should stop.
const SERVER_POLL: Duration = Duration::from_millis(50);

/// The lowest layer of a network connector: binding, connecting and moving
/// frames. Everything above it is shared.
pub trait SocketLayer: Send + Sync + 'static {
    /// The listening side.
    type Server: ServerSocket;
    /// One client connection to one peer.
    type Client: ClientSocket;

    /// The endpoint a connector serves on when its config names none
    /// (`tcp://127.0.0.1:*` for zmq); `None`: the config must name one.
    const DEFAULT_ENDPOINT: Option<&'static str> = None;

    /// Transport name for errors (`zmq`, `mock`).
    fn name(&self) -> &'static str;

    /// The layer a connector runs over, given the config options that are
    /// the transport's own ([`PeerConfig::transport`](crate::PeerConfig::transport)):
    /// an unknown or malformed one is a [`Error::Config`]. The default is
    /// [`Default`] and ignores them.
    fn from_options(options: &BTreeMap<String, String>) -> Result<Self>
    where
        Self: Default,
    {
        let _ = options;
        Ok(Self::default())
    }

    /// Binds `endpoint` and returns the socket with the address clients
    /// should use (an ephemeral port resolved). Frames larger than
    /// `limits.max_frame()` must be refused before they are buffered.
    fn bind(&self, endpoint: &str, limits: &Limits) -> Result<(Self::Server, String)>;

    /// Options of the layer's own that a connector rebuilt elsewhere needs
    /// (zmq: the CURVE public key it was given by the environment), added
    /// to [`Connector::config`](proxystore_core::Connector::config). Never
    /// anything secret: configs travel in proxies. Default: none.
    fn public_options(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Like [`SocketLayer::bind`], for a server whose transport may use
    /// `threads` threads (ZeroMQ: the I/O threads of the server's own
    /// context). The default ignores `threads`: the layer binds as
    /// [`SocketLayer::bind`] does.
    fn bind_with_threads(
        &self,
        endpoint: &str,
        limits: &Limits,
        threads: usize,
    ) -> Result<(Self::Server, String)> {
        let _ = threads;
        self.bind(endpoint, limits)
    }

    /// Answers requests with `handler` on the transport's own progress
    /// thread instead of a server thread, saving a thread hop per request.
    /// Returns what keeps it serving (dropping it stops) and the address,
    /// or `None` where the transport cannot (the default): then
    /// [`DataServer`] runs its own loop over [`SocketLayer::bind`].
    fn serve_inline(
        &self,
        endpoint: &str,
        handler: &Handler,
    ) -> Option<Result<(InlineServer, String)>> {
        let _ = (endpoint, handler);
        None
    }

    /// Opens a connection to the server at `address`.
    fn connect(&self, address: &str, limits: &Limits) -> Result<Self::Client>;

    /// The endpoint a connector rebuilt from a config should bind: like
    /// `endpoint` but on any free port or path, so a second connector
    /// (another process, or this one) never collides with the first.
    fn any_port(&self, endpoint: &str) -> String {
        endpoint.to_string()
    }

    /// Whether serving on `endpoint` without a shared secret would let
    /// strangers in: by default, any endpoint but loopback, `ipc://`,
    /// `inproc://` and `mock://` ([`is_local_endpoint`]). A layer whose
    /// endpoints only its own job reaches (MPI) says so here.
    fn needs_secret(&self, endpoint: &str) -> bool {
        !is_local_endpoint(endpoint)
    }

    /// This layer's one-sided reads, if it has them (as
    /// `Connector::as_deferrable` reaches deferrable keys); `None` (the
    /// default): every get carries the bytes in its reply.
    fn one_sided(&self) -> Option<&dyn OneSided> {
        None
    }
}

impl<L: SocketLayer> Exposures<L> {
    /// Registrations of objects served over the socket layer `layer`.
    pub fn for_layer(layer: Arc<L>) -> Self {
        Exposures::new(layer, L::one_sided)
    }
}

/// The listening side of a [`SocketLayer`].
pub trait ServerSocket: Send + 'static {
    /// Identifies the client a message came from.
    type Peer: Send;

    /// The next message, or `None` if none arrived within `timeout`.
    fn recv(&mut self, timeout: Duration) -> Result<Option<(Self::Peer, Frames)>>;

    /// Sends a reply to `peer`.
    fn send(&mut self, peer: Self::Peer, frames: Frames) -> Result<()>;
}

/// The listening side of a layer that only serves inline (see
/// [`SocketLayer::serve_inline`]); no value of it exists.
#[derive(Debug)]
pub enum NoServer {}

impl ServerSocket for NoServer {
    type Peer = ();

    fn recv(&mut self, _timeout: Duration) -> Result<Option<((), Frames)>> {
        match *self {}
    }

    fn send(&mut self, _peer: (), _frames: Frames) -> Result<()> {
        match *self {}
    }
}

/// One client connection of a [`SocketLayer`].
pub trait ClientSocket: Send + 'static {
    /// Queues a message for the server, waiting at most `timeout` for room.
    fn send(&mut self, frames: Frames, timeout: Duration) -> Result<()>;

    /// The next reply, or `None` if none arrived within `timeout`.
    fn recv(&mut self, timeout: Duration) -> Result<Option<Frames>>;
}

/// What keeps a [`SocketLayer::serve_inline`] server answering; dropping
/// it stops the server.
pub type InlineServer = Box<dyn Send + Sync>;

/// A data server: a thread answering requests on a bound socket (or the
/// transport's own thread, see [`SocketLayer::serve_inline`]) until
/// stopped (or dropped).
pub struct DataServer {
    address: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    inline: Option<InlineServer>,
}

impl fmt::Debug for DataServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataServer")
            .field("address", &self.address)
            .finish()
    }
}

impl DataServer {
    /// Binds `endpoint` with `layer` and answers requests with `handler` on
    /// a new thread; the transport may use `threads` threads of its own
    /// ([`SocketLayer::bind_with_threads`]).
    pub fn start<L: SocketLayer>(
        layer: &L,
        endpoint: &str,
        handler: Handler,
        threads: usize,
    ) -> Result<DataServer> {
        let exposures = handler.exposures().cloned();
        let releases_to = |address: &str| {
            if let (Some(o), Some(e)) = (layer.one_sided(), exposures) {
                o.accept_releases(address, e);
            }
        };
        if let Some(served) = layer.serve_inline(endpoint, &handler) {
            let (inline, address) = served?;
            releases_to(&address);
            return Ok(DataServer {
                address,
                stop: Arc::new(AtomicBool::new(true)),
                thread: None,
                inline: Some(inline),
            });
        }
        let (mut socket, address) =
            layer.bind_with_threads(endpoint, handler.limits(), threads.max(1))?;
        releases_to(&address);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let name = format!("proxystore-{}-server", layer.name());
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    match socket.recv(SERVER_POLL) {
                        Ok(Some((peer, frames))) => {
                            if let Some(reply) = handler.handle(frames) {
                                if let Err(e) = socket.send(peer, reply) {
                                    tracing::warn!(error = %e, "data server could not send a reply");
                                }
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "data server receive failed");
                            std::thread::sleep(SERVER_POLL);
                        }
                    }
                }
            })
            .map_err(|e| Error::io("spawning the data server thread", e))?;
        Ok(DataServer {
            address,
            stop,
            thread: Some(thread),
            inline: None,
        })
    }

    /// The address clients reach this server at (ephemeral ports resolved).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Stops answering and releases the socket. Idempotent.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.inline = None;
    }
}

impl Drop for DataServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Cached client connections, one pool per peer address; safe to use from
/// many threads (each call takes a connection out, then gives it back).
pub struct ClientPool<L: SocketLayer> {
    layer: Arc<L>,
    limits: Limits,
    idle: Mutex<HashMap<String, Vec<L::Client>>>,
    next_id: AtomicU64,
}

impl<L: SocketLayer> fmt::Debug for ClientPool<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientPool")
            .field("transport", &self.layer.name())
            .finish()
    }
}

/// Idle connections kept per peer; more concurrent callers open more, and
/// the surplus is closed when they finish.
const IDLE_PER_PEER: usize = 8;

impl<L: SocketLayer> ClientPool<L> {
    /// An empty pool over `layer`.
    pub fn new(layer: Arc<L>, limits: Limits) -> Self {
        ClientPool {
            layer,
            limits,
            idle: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// Sends every request to `address`, all before waiting for the first
    /// reply, and returns the replies in request order. The whole exchange
    /// is bounded by `timeout`; a silent peer is [`Error::PeerUnreachable`].
    pub fn call(
        &self,
        address: &str,
        mut requests: Vec<Message>,
        timeout: Duration,
    ) -> Result<Vec<Message>> {
        let deadline = Instant::now() + timeout;
        let mut conn = self.take(address)?;
        let mut order = HashMap::with_capacity(requests.len());
        for (i, req) in requests.iter_mut().enumerate() {
            req.request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
            order.insert(req.request_id, i);
        }
        let unreachable = |reason: String| Error::PeerUnreachable {
            address: address.to_string(),
            reason,
        };
        for req in &requests {
            conn.send(req.encode(), remaining(deadline))
                .map_err(|e| match e {
                    // The transport knows better than "unreachable" (a
                    // refused security handshake, a bad address).
                    e @ (Error::Unauthorized { .. } | Error::Config(_)) => e,
                    e => unreachable(format!("send failed: {e}")),
                })?;
        }
        let mut replies: Vec<Option<Message>> = requests.iter().map(|_| None).collect();
        let mut missing = replies.len();
        while missing > 0 {
            let left = remaining(deadline);
            let frames = match conn.recv(left)? {
                Some(f) => f,
                None if left.is_zero() || Instant::now() >= deadline => {
                    // The connection may still get the late replies: drop it.
                    return Err(unreachable(format!(
                        "no reply within {timeout:?} (peer dead or overloaded)"
                    )));
                }
                None => continue,
            };
            let reply = Message::decode(frames, &self.limits).map_err(|e| Error::Transport {
                connector: self.layer.name().into(),
                source: format!("malformed reply from {address}: {e}").into(),
            })?;
            // Replies to an earlier, timed-out exchange are skipped.
            if let Some(&i) = order.get(&reply.request_id) {
                if reply.response && replies[i].is_none() {
                    replies[i] = Some(reply);
                    missing -= 1;
                }
            }
        }
        self.give_back(address, conn);
        Ok(replies.into_iter().flatten().collect())
    }

    fn take(&self, address: &str) -> Result<L::Client> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(address)
            .and_then(Vec::pop);
        match pooled {
            Some(c) => Ok(c),
            None => self.layer.connect(address, &self.limits),
        }
    }

    fn give_back(&self, address: &str, conn: L::Client) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Addresses run to hundreds of bytes (UCX): copy one only for a new peer.
        match idle.get_mut(address) {
            Some(list) if list.len() >= IDLE_PER_PEER => {}
            Some(list) => list.push(conn),
            None => {
                idle.insert(address.to_string(), vec![conn]);
            }
        }
    }

    /// Closes every idle connection.
    pub fn clear(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}
