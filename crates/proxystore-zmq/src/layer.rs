//! ZeroMQ as a [`SocketLayer`]: a ROUTER socket per data server, a DEALER
//! socket per pooled client connection. Frames are ZeroMQ message parts;
//! received parts become [`Bytes`] without a copy.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use proxystore_core::{Error, Result};
use proxystore_peer::wire::Limits;
use proxystore_peer::{is_local_endpoint, ClientSocket, Frames, ServerSocket, SocketLayer};

use crate::curve::{Curve, Handshake};
use crate::zerocopy::send_frame;

/// The ZeroMQ socket layer: one ZeroMQ context (one I/O thread) for a
/// layer's client connections, and one per data server it binds (with
/// `server_threads` I/O threads).
#[derive(Clone)]
pub struct ZmqLayer {
    context: zmq::Context,
    curve: Curve,
}

impl std::fmt::Debug for ZmqLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZmqLayer")
            .field("curve", &self.curve)
            .finish()
    }
}

impl Default for ZmqLayer {
    /// A layer with its own ZeroMQ context. Registers the `zmq` kind (see
    /// [`crate::register`]): every `ZmqConnector` is built over one of
    /// these, so a process resolves the zmq proxies it made.
    fn default() -> Self {
        crate::register();
        ZmqLayer {
            context: zmq::Context::new(),
            curve: Curve::default(),
        }
    }
}

/// Maps a ZeroMQ error to the core error, naming what was done and where:
/// the one place libzmq's codes are translated.
fn zmq_error(what: &str, endpoint: &str, e: zmq::Error) -> Error {
    match e {
        zmq::Error::EADDRINUSE
        | zmq::Error::EINVAL
        | zmq::Error::EPROTONOSUPPORT
        | zmq::Error::ENODEV => Error::Config(format!("zmq: cannot {what} {endpoint}: {e}")),
        zmq::Error::EAGAIN | zmq::Error::EHOSTUNREACH | zmq::Error::ETERM => {
            Error::PeerUnreachable {
                address: endpoint.to_string(),
                reason: format!("{what}: {e}"),
            }
        }
        other => Error::Transport {
            connector: "zmq".into(),
            source: format!("{what} {endpoint}: {other}").into(),
        },
    }
}

fn millis(timeout: Duration) -> i64 {
    // Round up so a sub-millisecond wait is not a non-blocking poll.
    i64::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(i64::MAX)
}

fn socket(
    context: &zmq::Context,
    kind: zmq::SocketType,
    endpoint: &str,
    limits: &Limits,
) -> Result<zmq::Socket> {
    let s = context
        .socket(kind)
        .map_err(|e| zmq_error("create a socket for", endpoint, e))?;
    let max = i64::try_from(limits.max_frame()).unwrap_or(i64::MAX);
    // Frames over the limit are dropped by libzmq before they are buffered.
    s.set_maxmsgsize(max)
        .map_err(|e| zmq_error("set MAXMSGSIZE on", endpoint, e))?;
    s.set_linger(0)
        .map_err(|e| zmq_error("set LINGER on", endpoint, e))?;
    Ok(s)
}

/// Receives the remaining parts of a message whose first part is `first`.
fn recv_parts(s: &zmq::Socket, first: zmq::Message, endpoint: &str) -> Result<Vec<zmq::Message>> {
    let mut parts = vec![first];
    while s
        .get_rcvmore()
        .map_err(|e| zmq_error("read RCVMORE on", endpoint, e))?
    {
        parts.push(
            s.recv_msg(zmq::DONTWAIT)
                .map_err(|e| zmq_error("receive on", endpoint, e))?,
        );
    }
    Ok(parts)
}

/// Waits up to `timeout` for a message; `None` if none came. A blocking
/// receive with RCVTIMEO, not poll + receive: one wake-up per message.
fn timed_recv(
    s: &zmq::Socket,
    timeout: Duration,
    endpoint: &str,
) -> Result<Option<Vec<zmq::Message>>> {
    let ms = i32::try_from(millis(timeout)).unwrap_or(i32::MAX);
    s.set_rcvtimeo(ms)
        .map_err(|e| zmq_error("set RCVTIMEO on", endpoint, e))?;
    match s.recv_msg(0) {
        Ok(first) => recv_parts(s, first, endpoint).map(Some),
        Err(zmq::Error::EAGAIN) => Ok(None),
        Err(e) => Err(zmq_error("receive on", endpoint, e)),
    }
}

/// Owns a received ZeroMQ message so [`Bytes`] can point into it.
pub(crate) struct Part(pub(crate) zmq::Message);

impl AsRef<[u8]> for Part {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn to_bytes(parts: Vec<zmq::Message>) -> Frames {
    parts
        .into_iter()
        .map(|m| Bytes::from_owner(Part(m)))
        .collect()
}

fn send_parts(
    s: &mut zmq::Socket,
    lead: Option<&[u8]>,
    frames: &Frames,
    endpoint: &str,
) -> Result<()> {
    let last = frames.len().saturating_sub(1);
    if let Some(identity) = lead {
        let more = if frames.is_empty() { 0 } else { zmq::SNDMORE };
        s.send(identity, more)
            .map_err(|e| zmq_error("send to", endpoint, e))?;
    }
    for (i, frame) in frames.iter().enumerate() {
        let flags = if i == last { 0 } else { zmq::SNDMORE };
        send_frame(s, frame, flags).map_err(|e| zmq_error("send to", endpoint, e))?;
    }
    Ok(())
}

/// A data server's ROUTER socket.
pub struct ZmqServer {
    socket: zmq::Socket,
    address: String,
}

/// One pooled DEALER connection to a peer.
pub struct ZmqClient {
    socket: zmq::Socket,
    address: String,
    handshake: Option<Handshake>,
}

impl SocketLayer for ZmqLayer {
    type Server = ZmqServer;
    type Client = ZmqClient;

    const DEFAULT_ENDPOINT: Option<&'static str> = Some(crate::DEFAULT_ADDRESS);

    fn name(&self) -> &'static str {
        "zmq"
    }

    /// Reads the CURVE options (`curve`, `curve_server_key`; see
    /// [`crate::curve`]) with the keys in the environment.
    fn from_options(options: &BTreeMap<String, String>) -> Result<Self> {
        crate::register();
        Ok(ZmqLayer {
            context: zmq::Context::new(),
            curve: Curve::from_options(options)?,
        })
    }

    fn public_options(&self) -> Vec<(&'static str, String)> {
        self.curve.public_options()
    }

    fn bind(&self, endpoint: &str, limits: &Limits) -> Result<(ZmqServer, String)> {
        self.bind_with_threads(endpoint, limits, 1)
    }

    /// Binds a ROUTER socket in a context of its own with `threads` I/O
    /// threads: libzmq spreads the client connections over them, so the
    /// kernel's copies of replies to different clients run in parallel.
    /// (Its own context, not the layer's: the clients' I/O thread count
    /// stays what it was, and it must be set before a context's first
    /// socket.)
    fn bind_with_threads(
        &self,
        endpoint: &str,
        limits: &Limits,
        threads: usize,
    ) -> Result<(ZmqServer, String)> {
        let context = zmq::Context::new();
        let threads = i32::try_from(threads).unwrap_or(i32::MAX);
        context
            .set_io_threads(threads)
            .map_err(|e| zmq_error("set the I/O threads of the server context for", endpoint, e))?;
        let socket = socket(&context, zmq::ROUTER, endpoint, limits)?;
        let curve = self.curve.secure_server(&socket, endpoint)?;
        tracing::debug!(%endpoint, curve, threads, "zmq data server binding");
        socket.bind(endpoint).map_err(|e| match e {
            // zmq binds an IP or an interface name; a hostname it
            // looks up as an interface and finds no such device.
            zmq::Error::ENODEV => Error::Config(format!(
                "zmq: cannot bind {endpoint}: zmq binds an IP address or an interface name \
                     (tcp://127.0.0.1:5555, tcp://eth0:5555, tcp://*:5555), not a hostname"
            )),
            e => zmq_error("bind", endpoint, e),
        })?;
        let address = socket
            .get_last_endpoint()
            .map_err(|e| zmq_error("read the bound address of", endpoint, e))?
            .map_err(|_| Error::Config(format!("zmq: bound address of {endpoint} is not UTF-8")))?;
        Ok((
            ZmqServer {
                socket,
                address: address.clone(),
            },
            address,
        ))
    }

    fn any_port(&self, endpoint: &str) -> String {
        match endpoint.split_once("://") {
            Some(("tcp", rest)) => {
                let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
                format!("tcp://{host}:*")
            }
            // libzmq picks a fresh path for `ipc://*`.
            Some(("ipc", _)) => "ipc://*".into(),
            _ => endpoint.to_string(),
        }
    }

    fn connect(&self, address: &str, limits: &Limits) -> Result<ZmqClient> {
        let socket = socket(&self.context, zmq::DEALER, address, limits)?;
        // Queue nothing for a peer we are not connected to: a dead peer then
        // fails the send at its timeout instead of swallowing the request.
        socket
            .set_immediate(true)
            .map_err(|e| zmq_error("set IMMEDIATE on", address, e))?;
        let curve = self.curve.secure_client(&socket, address)?;
        // Off loopback a handshake can fail (keys that do not match, one
        // side without CURVE): watch it so that is a clear error.
        let handshake = if curve || !is_local_endpoint(address) {
            Some(
                Handshake::watch(&self.context, &socket, curve)
                    .map_err(|e| zmq_error("watch the handshake of", address, e))?,
            )
        } else {
            None
        };
        socket.connect(address).map_err(|e| match e {
            // The address (an owner's, from a key; or --address) is text
            // zmq cannot parse: the key is malformed, not the network.
            zmq::Error::EINVAL | zmq::Error::EPROTONOSUPPORT => Error::InvalidKey {
                text: address.chars().take(200).collect(),
                reason: "its address is not an endpoint zmq can connect to (tcp://HOST:PORT or ipc://PATH)",
            },
            e => zmq_error("connect to", address, e),
        })?;
        Ok(ZmqClient {
            socket,
            address: address.to_string(),
            handshake,
        })
    }
}

impl ServerSocket for ZmqServer {
    type Peer = zmq::Message;

    fn recv(&mut self, timeout: Duration) -> Result<Option<(zmq::Message, Frames)>> {
        let Some(mut parts) = timed_recv(&self.socket, timeout, &self.address)? else {
            return Ok(None);
        };
        if parts.len() < 2 {
            return Ok(None); // an identity with no message: nothing to answer
        }
        let frames = parts.split_off(1);
        match parts.pop() {
            Some(identity) => Ok(Some((identity, to_bytes(frames)))),
            None => Ok(None),
        }
    }

    fn send(&mut self, peer: zmq::Message, frames: Frames) -> Result<()> {
        send_parts(&mut self.socket, Some(&peer), &frames, &self.address)
    }
}

impl ClientSocket for ZmqClient {
    fn send(&mut self, frames: Frames, timeout: Duration) -> Result<()> {
        if let Some(h) = &mut self.handshake {
            if h.check(timeout, &self.address)? {
                if let Some(h) = self.handshake.take() {
                    h.stop(&mut self.socket);
                }
            }
        }
        let ms = i32::try_from(millis(timeout)).unwrap_or(i32::MAX);
        self.socket
            .set_sndtimeo(ms)
            .map_err(|e| zmq_error("set SNDTIMEO on", &self.address, e))?;
        send_parts(&mut self.socket, None, &frames, &self.address)
    }

    fn recv(&mut self, timeout: Duration) -> Result<Option<Frames>> {
        Ok(timed_recv(&self.socket, timeout, &self.address)?.map(to_bytes))
    }
}
