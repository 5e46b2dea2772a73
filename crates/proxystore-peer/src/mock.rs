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
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use proxystore_core::{Error, Result};

use crate::rma::{Expose, OneSided, Region, Registration};
use crate::transport::{ClientSocket, ServerSocket, SocketLayer};
use crate::wire::{Frames, Limits};

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

/// The mock layer with one-sided reads. Registered memory is a
/// process-wide table keyed by (address, length) standing in for the
/// NIC's view of it; registrations are cheap, so a descriptor stops being
/// readable once its reader releases it, as a UCX slab's does. Releases go
/// to the owner's data server through a process-wide table of servers.
#[derive(Clone, Copy, Debug, Default)]
pub struct MockRmaLayer;

/// Registered memory: (address, length) -> bytes.
fn registered() -> &'static Mutex<HashMap<(u64, usize), Bytes>> {
    static MEM: OnceLock<Mutex<HashMap<(u64, usize), Bytes>>> = OnceLock::new();
    MEM.get_or_init(Default::default)
}

/// Where releases for a server address go.
fn release_sinks() -> &'static Mutex<HashMap<String, Weak<dyn Expose>>> {
    static SINKS: OnceLock<Mutex<HashMap<String, Weak<dyn Expose>>>> = OnceLock::new();
    SINKS.get_or_init(Default::default)
}

/// Regions of objects [`MockRmaLayer`] staged that are still alive.
fn staged() -> &'static Mutex<std::collections::HashSet<(u64, usize)>> {
    static STAGED: OnceLock<Mutex<std::collections::HashSet<(u64, usize)>>> = OnceLock::new();
    STAGED.get_or_init(Default::default)
}

thread_local! {
    static RMA_READS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    static LAST_READ_TIMEOUT: std::cell::Cell<Duration> =
        const { std::cell::Cell::new(Duration::ZERO) };
}

/// One-sided reads done through [`MockRmaLayer`] by this thread (tests
/// run in parallel; a thread's own count is exact).
pub fn rma_reads() -> u64 {
    RMA_READS.with(std::cell::Cell::get)
}

/// Whether `data` is an object [`MockRmaLayer`] staged (moved into its
/// stand-in for registered memory).
pub fn is_staged(data: &Bytes) -> bool {
    staged()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&(data.as_ptr() as u64, data.len()))
}

/// A staged copy; forgets its region when freed.
struct StagedBuf(Vec<u8>);

impl AsRef<[u8]> for StagedBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for StagedBuf {
    fn drop(&mut self) {
        staged()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(self.0.as_ptr() as u64, self.0.len()));
    }
}

/// The time budget the last [`MockRmaLayer`] read of this thread was given.
pub fn last_read_timeout() -> Duration {
    LAST_READ_TIMEOUT.with(std::cell::Cell::get)
}

/// Whether `data`'s memory is registered with [`MockRmaLayer`] now.
pub fn is_registered(data: &Bytes) -> bool {
    registered()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&(data.as_ptr() as u64, data.len()))
}

/// Deregisters its region when dropped.
struct MockRegistration((u64, usize));

impl Drop for MockRegistration {
    fn drop(&mut self) {
        registered()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
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

    fn one_sided(&self) -> Option<&dyn OneSided> {
        Some(self)
    }
}

impl OneSided for MockRmaLayer {
    /// Copies the object, as a transport staging into registered slabs does.
    fn stage(&self, data: Bytes) -> Bytes {
        let copy = StagedBuf(data.to_vec());
        staged()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((copy.0.as_ptr() as u64, copy.0.len()));
        Bytes::from_owner(copy)
    }

    fn register(&self, data: &Bytes) -> Result<Registration> {
        let region = (data.as_ptr() as u64, data.len());
        registered()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(region, data.clone());
        Ok(Registration {
            remote_key: Bytes::from_static(b"mock"),
            cheap: true,
            keep: Box::new(MockRegistration(region)),
        })
    }

    fn read(&self, address: &str, region: Region, timeout: Duration) -> Result<Bytes> {
        LAST_READ_TIMEOUT.with(|t| t.set(timeout));
        let data = registered()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(region.addr, region.len))
            .cloned()
            .filter(|_| region.remote_key.as_ref() == b"mock")
            .ok_or_else(|| Error::Transport {
                connector: "mock-rma".into(),
                source: format!(
                    "one-sided read from {address}: no such registered memory (released or never exposed)"
                )
                .into(),
            })?;
        RMA_READS.with(|n| n.set(n.get() + 1));
        // A copy into the reader's memory, as a real read lands.
        Ok(Bytes::copy_from_slice(&data))
    }

    fn send_release(&self, address: &str, release: Bytes) {
        let sink = release_sinks()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(address)
            .and_then(Weak::upgrade);
        if let Some(sink) = sink {
            sink.release(&release);
        }
    }

    fn accept_releases(&self, address: &str, exposures: Arc<dyn Expose>) {
        let mut sinks = release_sinks().lock().unwrap_or_else(|e| e.into_inner());
        sinks.retain(|_, s| s.strong_count() > 0);
        sinks.insert(address.to_string(), Arc::downgrade(&exposures));
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
