//! The raw transport the connector is measured against: the same UCX
//! active-message path (engine, caller-driven progress, contiguous send,
//! eager/rendezvous receive) with a bare responder answering where the
//! worker is progressed, instead of the peer protocol, object table and
//! store. `put` sends the payload and waits for an empty reply; `get` sends
//! an empty request and receives the payload.

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proxystore_core::{Error, Result};

use crate::am::Frames;
use crate::engine::Engine;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A responder engine and a client endpoint to it.
pub struct RawAm {
    client: Arc<Engine>,
    ep: u64,
    conn: u64,
    replies: Receiver<Result<Frames>>,
    _server: Arc<Engine>,
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
        server.serve(
            Arc::new(move |frames: Frames| {
                // A non-empty request is a put: acknowledge it empty.
                Some(vec![if frames.first().is_some_and(|f| !f.is_empty()) {
                    Bytes::new()
                } else {
                    payload.clone()
                }])
            }),
            u64::MAX,
        )?;
        let client = Engine::start()?;
        client.allow_replies(&proxystore_peer::wire::Limits::default());
        let ep = client.connect(server.address(), "ucx-raw responder")?;
        let (conn, replies) = client.open_route("ucx-raw responder");
        Ok(RawAm {
            client,
            ep,
            conn,
            replies,
            _server: server,
        })
    }

    fn exchange(&self, frame: Bytes) -> Result<Bytes> {
        self.client.send(self.ep, self.conn, vec![frame])?;
        let mut reply = self
            .client
            .wait(&self.replies, TIMEOUT)
            .ok_or(Error::Timeout {
                connector: "ucx-raw".into(),
                op: "reply",
                after: TIMEOUT,
            })??;
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
    }
}

/// `proxystore bench` times these calls (`ucx-raw`).
#[cfg(feature = "baseline")]
impl proxystore_core::registry::RawSession for RawAm {
    fn put(&mut self, data: &Bytes) -> Result<()> {
        RawAm::put(self, data.clone())
    }

    fn get(&mut self) -> Result<Option<Bytes>> {
        RawAm::get(self).map(Some)
    }
}
