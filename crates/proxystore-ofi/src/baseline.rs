//! The raw transport the connector is measured against: the same engine
//! and provider with nothing of the peer protocol, object table or store.
//! [`RawRead::get`] is one `fi_read` of a registered slab holding the
//! payload (what a one-sided get costs at least, without its request,
//! descriptor and release); [`RawRead::get_message`] is an empty request
//! answered with the payload (what a get whose reply carries the bytes
//! costs at least); `put` sends the payload to a bare responder and waits
//! for its empty acknowledgement. The responder spins on its endpoint, so
//! reads and requests are served at once: the transport's best case.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use proxystore_core::{Error, Result};
use proxystore_peer::rma::{Region, Registration};

use crate::{Engine, Message, SERVER_ROUTE};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A responder endpoint holding the payload, and a client endpoint of the
/// same provider that reads it or sends to it.
pub struct RawRead {
    client: Engine,
    server: Arc<Engine>,
    region: Region,
    route: u64,
    replies: Receiver<Result<Message>>,
    stop: Arc<AtomicBool>,
    responder: Option<JoinHandle<()>>,
    // Dropped after the endpoints' users: the payload's registration.
    _registration: Registration,
    _payload: Bytes,
}

impl std::fmt::Debug for RawRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRead")
            .field("provider", &self.client.provider())
            .finish()
    }
}

impl RawRead {
    /// Opens both endpoints on `provider` (`None`: libfabric's choice,
    /// which honours `FI_PROVIDER`) and registers `payload` for reads.
    pub fn start(provider: Option<&str>, payload: Bytes) -> Result<Self> {
        let server = Arc::new(Engine::open(provider)?);
        let client = Engine::open(Some(server.provider()))?;
        // Staged in a slab where the provider reads one-sided, as the
        // connector stages a put object.
        let payload = server.stage(&payload).unwrap_or(payload);
        let registration = server.register(&payload)?;
        let region = Region {
            addr: payload.as_ptr() as u64,
            len: payload.len(),
            remote_key: registration.remote_key.clone(),
        };
        let requests = server.listen()?;
        let stop = Arc::new(AtomicBool::new(false));
        let responder = {
            let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
            let served = payload.clone();
            std::thread::Builder::new()
                .name("ofi-raw responder".into())
                .spawn(move || {
                    // Spins: the target of a read is progressed at once,
                    // as providers that emulate RMA in software (tcp) need.
                    while !stop.load(Ordering::Acquire) {
                        server.poll();
                        while let Ok(Ok(m)) = requests.try_recv() {
                            // An empty request is a get: answer with the
                            // payload; a put gets an empty acknowledgement.
                            let is_get = m.frames.iter().all(Bytes::is_empty);
                            let reply = if is_get { vec![served.clone()] } else { vec![] };
                            let _ = server.send(&m.from, m.reply_route, SERVER_ROUTE, reply);
                        }
                    }
                })
                .map_err(|e| Error::io("spawning the ofi-raw responder", e))?
        };
        let (route, replies) = client.open_route();
        Ok(RawRead {
            client,
            server,
            region,
            route,
            replies,
            stop,
            responder: Some(responder),
            _registration: registration,
            _payload: payload,
        })
    }

    /// The provider both endpoints use.
    pub fn provider(&self) -> &str {
        self.client.provider()
    }

    /// Reads the payload with one `fi_read`.
    pub fn get(&self) -> Result<Bytes> {
        self.client
            .read(self.server.raw_address(), self.region.clone(), TIMEOUT)
    }

    /// Sends `data`; returns when the responder has acknowledged it.
    pub fn put(&self, data: Bytes) -> Result<()> {
        self.exchange(data).map(drop)
    }

    /// Sends an empty request; the responder's reply carries the payload.
    pub fn get_message(&self) -> Result<Bytes> {
        self.exchange(Bytes::new())
    }

    fn exchange(&self, frame: Bytes) -> Result<Bytes> {
        self.client.send(
            self.server.raw_address(),
            SERVER_ROUTE,
            self.route,
            vec![frame],
        )?;
        let reply = self.client.wait(&self.replies, TIMEOUT)?;
        Ok(reply.frames.into_iter().next().unwrap_or_default())
    }
}

impl Drop for RawRead {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.responder.take() {
            let _ = t.join();
        }
        self.client.close_route(self.route);
    }
}

/// `proxystore bench` times these calls (`ofi-raw`).
#[cfg(feature = "baseline")]
impl proxystore_core::registry::RawSession for RawRead {
    fn put(&mut self, data: &Bytes) -> Result<()> {
        RawRead::put(self, data.clone())
    }

    fn get(&mut self) -> Result<Option<Bytes>> {
        RawRead::get(self).map(Some)
    }
}

/// A [`RawRead`] whose gets are a request and a reply carrying the payload
/// (`ofi-raw-msg`).
#[derive(Debug)]
pub struct MessageGets(pub RawRead);

/// `proxystore bench` times these calls (`ofi-raw-msg`).
#[cfg(feature = "baseline")]
impl proxystore_core::registry::RawSession for MessageGets {
    fn put(&mut self, data: &Bytes) -> Result<()> {
        self.0.put(data.clone())
    }

    fn get(&mut self) -> Result<Option<Bytes>> {
        self.0.get_message().map(Some)
    }
}
