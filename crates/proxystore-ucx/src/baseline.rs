//! The raw transport the connector is measured against: the same UCX
//! active-message path (engine, iov send, eager/rendezvous receive) with a
//! bare responder instead of the peer protocol, object table and store.
//! `put` sends the payload and waits for an empty reply; `get` sends an
//! empty request and receives the payload.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use proxystore_core::{Error, Result};

use crate::engine::Engine;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A responder engine and a client endpoint to it.
pub struct RawAm {
    client: Arc<Engine>,
    ep: u64,
    conn: u64,
    replies: std::sync::mpsc::Receiver<Vec<Bytes>>,
    _server: Arc<Engine>,
    responder: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RawAm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawAm")
    }
}

impl RawAm {
    /// Starts a responder serving `payload` to gets, and connects to it.
    pub fn start(payload: Bytes) -> Result<Self> {
        let server = Engine::start()?;
        let requests = server
            .take_requests()
            .ok_or_else(|| Error::Config("fresh engine without requests".into()))?;
        // Weak: the responder must not keep the server engine alive.
        let responder_engine = Arc::downgrade(&server);
        let responder = std::thread::spawn(move || {
            // Ends when the server engine stops (its request sender drops).
            while let Ok((to, frames)) = requests.recv() {
                let reply = if frames.first().is_some_and(|f| !f.is_empty()) {
                    Bytes::new()
                } else {
                    payload.clone()
                };
                let Some(engine) = responder_engine.upgrade() else {
                    break;
                };
                if engine.reply(to, vec![reply]).is_err() {
                    break;
                }
            }
        });
        let client = Engine::start()?;
        let ep = client.connect(server.address().to_vec(), TIMEOUT)?;
        let (conn, replies) = client.open_route();
        Ok(RawAm {
            client,
            ep,
            conn,
            replies,
            _server: server,
            responder: Some(responder),
        })
    }

    fn exchange(&self, frame: Bytes) -> Result<Bytes> {
        self.client.send(self.ep, self.conn, vec![frame], TIMEOUT)?;
        let mut reply = self
            .replies
            .recv_timeout(TIMEOUT)
            .map_err(|_| Error::Timeout {
                connector: "ucx-raw".into(),
                op: "reply",
                after: TIMEOUT,
            })?;
        Ok(reply.pop().unwrap_or_default())
    }

    /// Sends `data`; returns when the responder has acknowledged it.
    pub fn put(&self, data: Bytes) -> Result<()> {
        self.exchange(data).map(drop)
    }

    /// Receives the payload.
    pub fn get(&self) -> Result<Bytes> {
        self.exchange(Bytes::new())
    }
}

impl Drop for RawAm {
    fn drop(&mut self) {
        self.client.close(self.ep, self.conn);
        // The responder exits when the server engine drops with `self`;
        // detach rather than join to avoid ordering on drop.
        drop(self.responder.take());
    }
}
