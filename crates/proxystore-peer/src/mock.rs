//! An in-process [`SocketLayer`]: channels instead of sockets, so the data
//! server, client pool, wire format and connector run in tests with no
//! network library. Addresses are `mock://<name>`; `mock://` alone picks a
//! fresh name. Like ZeroMQ's MAXMSGSIZE, a server drops messages with a
//! frame over its limit before handling them.
//!
//! [`MockRmaLayer`] adds one-sided reads, as UCX's registered memory and
//! `ucp_get` give them: owners answer gets with descriptors and readers
//! fetch the bytes themselves, so the connector's descriptor path runs
//! without RDMA hardware too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use proxystore_core::{Error, ObjectId, Result};

use crate::transport::{ClientSocket, Frames, ServerSocket, SocketLayer};
use crate::wire::Limits;

type Envelope = (Frames, Sender<Frames>);

fn network() -> &'static Mutex<HashMap<String, Sender<Envelope>>> {
    static NET: OnceLock<Mutex<HashMap<String, Sender<Envelope>>>> = OnceLock::new();
    NET.get_or_init(Default::default)
}

/// The mock socket layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct MockLayer;

/// A mock server socket; unregisters its address when dropped, after which
/// clients see the peer as gone.
#[derive(Debug)]
pub struct MockServer {
    address: String,
    inbox: Receiver<Envelope>,
    max_frame: u64,
}

/// A mock client connection.
#[derive(Debug)]
pub struct MockClient {
    address: String,
    server: Sender<Envelope>,
    reply_to: Sender<Frames>,
    replies: Receiver<Frames>,
}

impl SocketLayer for MockLayer {
    type Server = MockServer;
    type Client = MockClient;

    fn name(&self) -> &'static str {
        "mock"
    }

    fn bind(&self, endpoint: &str, limits: &Limits) -> Result<(MockServer, String)> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let name = endpoint.strip_prefix("mock://").ok_or_else(|| {
            Error::Config(format!(
                "mock endpoint '{endpoint}' must start with mock://"
            ))
        })?;
        let address = if name.is_empty() {
            format!(
                "mock://{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            )
        } else {
            endpoint.to_string()
        };
        let mut net = network().lock().unwrap_or_else(|e| e.into_inner());
        if net.contains_key(&address) {
            return Err(Error::Config(format!("{address} is already bound")));
        }
        let (tx, inbox) = channel();
        net.insert(address.clone(), tx);
        let server = MockServer {
            address: address.clone(),
            inbox,
            max_frame: limits.max_frame(),
        };
        Ok((server, address))
    }

    fn any_port(&self, _endpoint: &str) -> String {
        "mock://".into()
    }

    fn connect(&self, address: &str, _limits: &Limits) -> Result<MockClient> {
        let server = network()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(address)
            .cloned()
            .ok_or_else(|| Error::PeerUnreachable {
                address: address.to_string(),
                reason: "no server bound there".into(),
            })?;
        let (reply_to, replies) = channel();
        Ok(MockClient {
            address: address.to_string(),
            server,
            reply_to,
            replies,
        })
    }
}

impl ServerSocket for MockServer {
    type Peer = Sender<Frames>;

    fn recv(&mut self, timeout: Duration) -> Result<Option<(Sender<Frames>, Frames)>> {
        loop {
            match self.inbox.recv_timeout(timeout) {
                Ok((frames, peer)) => {
                    if frames.iter().any(|f| f.len() as u64 > self.max_frame) {
                        continue; // refused before handling, like ZMQ_MAXMSGSIZE
                    }
                    return Ok(Some((peer, frames)));
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return Ok(None),
            }
        }
    }

    fn send(&mut self, peer: Sender<Frames>, frames: Frames) -> Result<()> {
        // A client that went away is not the server's error.
        let _ = peer.send(frames);
        Ok(())
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        network()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.address);
    }
}

impl ClientSocket for MockClient {
    fn send(&mut self, frames: Frames, _timeout: Duration) -> Result<()> {
        self.server
            .send((frames, self.reply_to.clone()))
            .map_err(|_| Error::PeerUnreachable {
                address: self.address.clone(),
                reason: "server is gone".into(),
            })
    }

    fn recv(&mut self, timeout: Duration) -> Result<Option<Frames>> {
        match self.replies.recv_timeout(timeout) {
            Ok(f) => Ok(Some(f)),
            Err(_) => Ok(None),
        }
    }
}

/// The mock layer with one-sided reads. Exposed objects sit in a
/// process-wide table standing in for registered memory; a descriptor is
/// an 8-byte token and is good for one read, as a UCX
/// descriptor is until its reader releases it.
#[derive(Clone, Copy, Debug, Default)]
pub struct MockRmaLayer;

/// Registered memory: token -> bytes.
fn exposed() -> &'static Mutex<HashMap<u64, Bytes>> {
    static MEM: OnceLock<Mutex<HashMap<u64, Bytes>>> = OnceLock::new();
    MEM.get_or_init(Default::default)
}

static RMA_READS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static LAST_READ_TIMEOUT: std::cell::Cell<Duration> =
        const { std::cell::Cell::new(Duration::ZERO) };
}

/// One-sided reads done through [`MockRmaLayer`] in this process.
pub fn rma_reads() -> u64 {
    RMA_READS.load(Ordering::Relaxed)
}

/// The time budget the last [`MockRmaLayer`] read of this thread was given.
pub fn last_read_timeout() -> Duration {
    LAST_READ_TIMEOUT.with(std::cell::Cell::get)
}

impl SocketLayer for MockRmaLayer {
    type Server = MockServer;
    type Client = MockClient;

    fn name(&self) -> &'static str {
        "mock-rma"
    }

    fn bind(&self, endpoint: &str, limits: &Limits) -> Result<(MockServer, String)> {
        MockLayer.bind(endpoint, limits)
    }

    fn any_port(&self, endpoint: &str) -> String {
        MockLayer.any_port(endpoint)
    }

    fn connect(&self, address: &str, limits: &Limits) -> Result<MockClient> {
        MockLayer.connect(address, limits)
    }

    fn expose(&self, _id: ObjectId, data: &Bytes) -> Option<Bytes> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let token = NEXT.fetch_add(1, Ordering::Relaxed);
        exposed()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token, data.clone());
        Some(Bytes::copy_from_slice(&token.to_le_bytes()))
    }

    fn reads_remote(&self) -> bool {
        true
    }

    fn read_remote(&self, address: &str, desc: &Bytes, timeout: Duration) -> Result<Bytes> {
        LAST_READ_TIMEOUT.with(|t| t.set(timeout));
        let bad = |reason: &str| Error::Transport {
            connector: "mock-rma".into(),
            source: format!("one-sided read from {address}: {reason}").into(),
        };
        let token: [u8; 8] = desc
            .as_ref()
            .try_into()
            .map_err(|_| bad("descriptor is not 8 bytes"))?;
        let data = exposed()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&u64::from_le_bytes(token))
            .ok_or_else(|| bad("no such registered memory (released or never exposed)"))?;
        RMA_READS.fetch_add(1, Ordering::Relaxed);
        Ok(data)
    }
}

/// A peer connector on the mock layer, serving at a fresh `mock://` address.
pub fn mock_connector() -> Result<crate::PeerConnector<MockLayer>> {
    register();
    crate::PeerConnector::new(
        std::sync::Arc::new(MockLayer),
        crate::PeerConfig::new("mock", "mock://"),
    )
}

/// A peer connector on [`MockRmaLayer`], serving at a fresh `mock://` address.
pub fn mock_rma_connector() -> Result<crate::PeerConnector<MockRmaLayer>> {
    register();
    crate::PeerConnector::new(
        std::sync::Arc::new(MockRmaLayer),
        crate::PeerConfig::new("mock-rma", "mock://"),
    )
}

/// Registers the `mock` and `mock-rma` connector kinds, so configs naming
/// them rebuild.
pub fn register() {
    crate::register_kind::<MockLayer>("mock");
    crate::register_kind::<MockRmaLayer>("mock-rma");
}
