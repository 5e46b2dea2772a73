//! The raw transport the connector is measured against: a plain libzmq
//! REQ/REP pair on tcp loopback moving the same payload, with the same
//! copies (one on send, none on receive).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use proxystore_core::registry::{RawBaseline, RawSession};
use proxystore_core::{Error, Result};

use crate::layer::Part;

fn raw_error(what: &str, e: zmq::Error) -> Error {
    Error::Transport {
        connector: "zmq-raw".into(),
        source: format!("{what}: {e}").into(),
    }
}

/// A REP server thread answering `put` (payload in, empty reply) and `get`
/// (empty request, payload out), and the REQ socket that drives it.
pub struct RawReqRep {
    req: zmq::Socket,
    stop: Arc<AtomicBool>,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RawReqRep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawReqRep")
    }
}

impl RawReqRep {
    /// Starts the server on `tcp://127.0.0.1:*`, serving `payload` to gets.
    pub fn start(payload: Bytes) -> Result<Self> {
        let ctx = zmq::Context::new();
        let rep = ctx
            .socket(zmq::REP)
            .map_err(|e| raw_error("REP socket", e))?;
        rep.set_linger(0).map_err(|e| raw_error("LINGER", e))?;
        rep.bind("tcp://127.0.0.1:*")
            .map_err(|e| raw_error("bind", e))?;
        let endpoint = rep
            .get_last_endpoint()
            .map_err(|e| raw_error("bound address", e))?
            .map_err(|_| raw_error("bound address", zmq::Error::EINVAL))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let server = std::thread::spawn(move || {
            while !flag.load(Ordering::Acquire) {
                if !matches!(rep.poll(zmq::POLLIN, 50), Ok(n) if n > 0) {
                    continue;
                }
                let Ok(parts) = rep.recv_multipart(0) else {
                    continue;
                };
                let reply: &[u8] = if parts.first().is_some_and(|p| p == b"G") {
                    &payload
                } else {
                    b""
                };
                let _ = rep.send(reply, 0);
            }
        });
        let req = ctx
            .socket(zmq::REQ)
            .map_err(|e| raw_error("REQ socket", e))?;
        req.set_linger(0).map_err(|e| raw_error("LINGER", e))?;
        req.set_rcvtimeo(30_000)
            .map_err(|e| raw_error("RCVTIMEO", e))?;
        req.connect(&endpoint)
            .map_err(|e| raw_error("connect", e))?;
        Ok(RawReqRep {
            req,
            stop,
            server: Some(server),
        })
    }

    /// Sends `data` and waits for the empty reply.
    pub fn put(&self, data: &[u8]) -> Result<()> {
        self.req
            .send_multipart([&b"P"[..], data], 0)
            .map_err(|e| raw_error("send", e))?;
        self.req.recv_msg(0).map_err(|e| raw_error("receive", e))?;
        Ok(())
    }

    /// Asks for the payload and receives it (no copy after libzmq's).
    pub fn get(&self) -> Result<Bytes> {
        self.req.send("G", 0).map_err(|e| raw_error("send", e))?;
        let msg = self.req.recv_msg(0).map_err(|e| raw_error("receive", e))?;
        Ok(Bytes::from_owner(Part(msg)))
    }
}

impl Drop for RawReqRep {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.server.take() {
            let _ = t.join();
        }
    }
}

/// The REQ/REP pair as `proxystore bench`'s raw baseline of the `zmq`
/// connector (`zmq-raw`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ZmqRaw;

impl RawBaseline for ZmqRaw {
    fn name(&self) -> &str {
        "zmq-raw"
    }

    fn start(&self, payload: &Bytes) -> Result<Box<dyn RawSession>> {
        Ok(Box::new(RawReqRep::start(payload.clone())?))
    }
}

impl RawSession for RawReqRep {
    fn put(&mut self, data: &Bytes) -> Result<()> {
        RawReqRep::put(self, data)
    }

    fn get(&mut self) -> Result<Option<Bytes>> {
        RawReqRep::get(self).map(Some)
    }
}
