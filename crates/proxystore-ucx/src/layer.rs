//! UCX as a [`SocketLayer`] and [`OneSided`]: the data server and client
//! connections of the shared peer connector, carried by UCP active
//! messages, and one-sided reads of registered memory (see `engine`).
//! Addresses are `ucx://<base64url of the UCP worker address and its
//! checksum>` (`proxystore_peer::address`): UCX parses a worker address
//! without knowing its length and aborts the process on a malformed one,
//! so nothing from a key reaches UCX unless it is intact.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use proxystore_core::{Error, Result};
use proxystore_peer::address::{self, abbreviate};
use proxystore_peer::rma::{Expose, OneSided, Region, Registration};
use proxystore_peer::wire::Limits;
use proxystore_peer::{ClientSocket, Frames, Handler, InlineServer, NoServer, SocketLayer};

use crate::engine::Engine;

const SCHEME: &str = "ucx://";

/// The UCX socket layer: one engine (UCP worker and its thread) per layer,
/// started on first use.
#[derive(Default)]
pub struct UcxLayer {
    engine: Mutex<Option<Arc<Engine>>>,
}

impl std::fmt::Debug for UcxLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UcxLayer")
    }
}

impl UcxLayer {
    fn engine(&self) -> Result<Arc<Engine>> {
        let mut slot = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = slot.as_ref() {
            return Ok(Arc::clone(e));
        }
        let e = Engine::start()?;
        *slot = Some(Arc::clone(&e));
        Ok(e)
    }
}

/// One client connection: an endpoint and the route its replies take.
pub struct UcxClient {
    engine: Arc<Engine>,
    ep: u64,
    conn: u64,
    replies: Receiver<Result<Frames>>,
}

/// Keeps a worker answering requests (see [`SocketLayer::serve_inline`]).
struct Serving(Arc<Engine>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.stop_serving();
    }
}

impl SocketLayer for UcxLayer {
    type Server = NoServer;
    type Client = UcxClient;

    const DEFAULT_ENDPOINT: Option<&'static str> = Some(crate::ADDRESS);

    fn name(&self) -> &'static str {
        "ucx"
    }

    /// UCX serves only inline (see [`SocketLayer::serve_inline`]).
    fn bind(&self, _endpoint: &str, _limits: &Limits) -> Result<(NoServer, String)> {
        Err(Error::Unsupported {
            connector: "ucx".into(),
            op: "a server loop of its own (UCX answers on its progress thread)",
        })
    }

    /// Requests are answered wherever the worker is progressed: by the
    /// engine's background thread, or by a thread of this process waiting
    /// for its own reply.
    fn serve_inline(
        &self,
        endpoint: &str,
        handler: &Handler,
    ) -> Option<Result<(InlineServer, String)>> {
        let served = check_endpoint(endpoint).and_then(|()| {
            let engine = self.engine()?;
            let h = handler.clone();
            engine.serve(
                Arc::new(move |frames| h.handle(frames)),
                handler.limits().max_frame(),
            )?;
            let address = address::encode(SCHEME, engine.address());
            Ok((Box::new(Serving(engine)) as InlineServer, address))
        });
        Some(served)
    }

    fn any_port(&self, _endpoint: &str) -> String {
        SCHEME.into()
    }

    fn connect(&self, address: &str, limits: &Limits) -> Result<UcxClient> {
        let blob = address::decode(SCHEME, address)?;
        let engine = self.engine()?;
        engine.allow_replies(limits);
        let peer = abbreviate(address);
        let ep = engine.connect(&blob, &peer)?;
        let (conn, replies) = engine.open_route(&peer);
        Ok(UcxClient {
            engine,
            ep,
            conn,
            replies,
        })
    }

    fn one_sided(&self) -> Option<&dyn OneSided> {
        Some(self)
    }
}

impl OneSided for UcxLayer {
    fn reads_one_sided(&self) -> bool {
        reads_one_sided()
    }

    fn stage(&self, data: Bytes) -> Bytes {
        match self.engine() {
            Ok(engine) => engine.stage(&data).unwrap_or(data),
            Err(_) => data,
        }
    }

    fn register(&self, data: &Bytes) -> Result<Registration> {
        self.engine()?.register(data)
    }

    fn read(&self, address: &str, region: Region, timeout: Duration) -> Result<Bytes> {
        let blob = address::decode(SCHEME, address)?;
        ONE_SIDED_READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.engine()?
            .read(&blob, &abbreviate(address), region, timeout)
    }

    fn send_release(&self, address: &str, release: Bytes) {
        if let (Ok(blob), Ok(engine)) = (address::decode(SCHEME, address), self.engine()) {
            engine.send_release(&blob, &abbreviate(address), release);
        }
    }

    fn accept_releases(&self, _address: &str, exposures: Arc<dyn Expose>) {
        // One server per worker: its releases arrive on this engine.
        if let Ok(engine) = self.engine() {
            engine.accept_releases(exposures);
        }
    }
}

/// One-sided reads started by this process (see [`one_sided_reads`]).
static ONE_SIDED_READS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many gets of this process were served by one-sided reads.
pub fn one_sided_reads() -> u64 {
    ONE_SIDED_READS.load(std::sync::atomic::Ordering::Relaxed)
}

fn check_endpoint(endpoint: &str) -> Result<()> {
    if endpoint != SCHEME {
        return Err(Error::Config(format!(
            "ucx endpoint '{endpoint}': only '{SCHEME}' (this process's UCP worker) can be served; choose transports with UCX_TLS and devices with UCX_NET_DEVICES"
        )));
    }
    Ok(())
}

/// Whether this process's gets use one-sided reads (for objects of
/// [`ONE_SIDED_MIN`](crate::ONE_SIDED_MIN) and more):
/// `PROXYSTORE_UCX_ONE_SIDED=on|off`, else on only when `UCX_TLS` is set and
/// names no tcp transport. Measured here (UCX 1.13, two processes):
/// shared memory 64 MiB 11.9 ms one-sided vs 24.4 ms by active message; over
/// tcp, and with UCX_TLS unset, UCX serves `ucp_get` by an emulated lane
/// (1.5 ms at 1 MiB vs 0.58 ms by active message). UCX 1.13 cannot say which
/// transports an endpoint uses, hence a rule on `UCX_TLS`. Read once per
/// process, at first use (UCX reads `UCX_TLS` once too).
pub fn reads_one_sided() -> bool {
    static ONE_SIDED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ONE_SIDED.get_or_init(one_sided_from_env)
}

fn one_sided_from_env() -> bool {
    match std::env::var("PROXYSTORE_UCX_ONE_SIDED").as_deref() {
        Ok("on") => return true,
        Ok("off") => return false,
        _ => {}
    }
    let Ok(tls) = std::env::var("UCX_TLS") else {
        return false;
    };
    let names: Vec<&str> = tls
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    !tls.starts_with('^')
        && !names.is_empty()
        && !names.iter().any(|n| n.starts_with("tcp") || *n == "all")
}

impl ClientSocket for UcxClient {
    fn send(&mut self, frames: Frames, _timeout: Duration) -> Result<()> {
        // Never blocks: UCX queues the message; a failure arrives as an
        // error on this connection's replies.
        self.engine.send(self.ep, self.conn, frames)
    }

    fn recv(&mut self, timeout: Duration) -> Result<Option<Frames>> {
        self.engine.wait(&self.replies, timeout).transpose()
    }
}

impl Drop for UcxClient {
    fn drop(&mut self) {
        self.engine.close(self.ep, self.conn);
    }
}
