//! The socket layer a network connector plugs in, and the data server loop
//! written once over it (the client side is [`crate::clients`]).
//!
//! A transport supplies only how frames move (ZeroMQ ROUTER/DEALER sockets,
//! in-process channels in the mock); the request handling lives here, and
//! connection caching, request-id matching, pipelining and timeouts in
//! [`crate::clients`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use proxystore_core::{Error, Result};

use crate::address::is_local_endpoint;
use crate::handler::Handler;
use crate::rma::{Exposures, OneSided};
use crate::wire::{Frames, Limits};

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
