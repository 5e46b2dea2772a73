//! libfabric as a [`SocketLayer`]: the data server and client connections
//! of the shared peer connector, carried by the engine's framed messages
//! (requests to [`SERVER_ROUTE`], replies to each connection's own route).
//!
//! The provider travels in the addresses: a server bound at
//! `ofi://<provider>/` (or `ofi://`, libfabric's choice, which honours
//! `FI_PROVIDER`) is reached at `ofi://<provider>/<base64url>`, and a
//! process that only reads opens its endpoint with the provider of the
//! first owner it connects to. One endpoint per layer, opened on first use.
//!
//! One-sided reads: where the provider grants FI_RMA (and
//! `PROXYSTORE_OFI_ONE_SIDED` is not `off`), objects of 64 KiB and more
//! are staged at put in registered slabs, owners answer gets with
//! descriptors and readers `fi_read` the bytes (see `rma`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use proxystore_core::{Error, Result};
use proxystore_peer::rma::{Expose, OneSided, Region, Registration};
use proxystore_peer::wire::Limits;
use proxystore_peer::{ClientSocket, Frames, ServerSocket, SocketLayer};

use crate::{Engine, Message, SERVER_ROUTE};

/// The scheme of every libfabric address and endpoint.
pub const SCHEME: &str = "ofi://";

/// The libfabric socket layer.
#[derive(Default)]
pub struct OfiLayer {
    engine: Mutex<Option<Arc<Engine>>>,
}

impl std::fmt::Debug for OfiLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let engine = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("OfiLayer")
            .field(
                "provider",
                &engine.as_ref().map(|e| e.provider().to_owned()),
            )
            .finish()
    }
}

/// The provider an endpoint or address names: `Some("shm")` for
/// `ofi://shm/...`, `None` for `ofi://` (libfabric's choice).
fn provider_of(text: &str) -> Result<Option<&str>> {
    let rest = text.strip_prefix(SCHEME).ok_or_else(|| {
        Error::Config(format!(
            "'{}' is not a libfabric endpoint (ofi://<provider>/)",
            proxystore_peer::address::abbreviate(text)
        ))
    })?;
    Ok(match rest.split_once('/') {
        Some(("", _)) | None => None,
        Some((provider, _)) => Some(provider),
    })
}

impl OfiLayer {
    /// This layer's endpoint, opened with `provider` on first use; later
    /// calls naming another provider get [`Error::Config`].
    fn engine(&self, provider: Option<&str>) -> Result<Arc<Engine>> {
        let mut slot = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = slot.as_ref() {
            return match provider {
                Some(p) if p != e.provider() => Err(Error::Config(format!(
                    "this process's libfabric endpoint uses provider '{}', not '{p}'",
                    e.provider()
                ))),
                _ => Ok(Arc::clone(e)),
            };
        }
        let e = Arc::new(Engine::open(provider)?);
        // Each server and connection raises it to what its limits allow.
        e.set_max_message(0);
        *slot = Some(Arc::clone(&e));
        Ok(e)
    }

    /// This layer's endpoint if it is open (never opens one).
    fn current(&self) -> Option<Arc<Engine>> {
        self.engine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The endpoint for `address` (opened with its provider on first use)
    /// and the raw address it names.
    fn endpoint_for(&self, address: &str) -> Result<(Arc<Engine>, Vec<u8>)> {
        let engine = self.engine(provider_of(address)?)?;
        let raw = engine.parse_address(address)?;
        Ok((engine, raw))
    }
}

/// A data server's stream of requests.
pub struct OfiServer {
    engine: Arc<Engine>,
    requests: Receiver<Result<Message>>,
}

/// Where a request came from: the client's endpoint and its route.
#[derive(Debug)]
pub struct ReplyTo {
    from: Vec<u8>,
    route: u64,
}

/// One client connection: the owner's endpoint and this connection's route.
pub struct OfiClient {
    engine: Arc<Engine>,
    owner: Vec<u8>,
    route: u64,
    replies: Receiver<Result<Message>>,
}

impl SocketLayer for OfiLayer {
    type Server = OfiServer;
    type Client = OfiClient;

    const DEFAULT_ENDPOINT: Option<&'static str> = Some(crate::ADDRESS);

    fn name(&self) -> &'static str {
        "ofi"
    }

    fn bind(&self, endpoint: &str, limits: &Limits) -> Result<(OfiServer, String)> {
        let engine = self.engine(provider_of(endpoint)?)?;
        // Announced requests over the limit are refused before any
        // buffer is allocated for them.
        engine.raise_max_message(limits.max_frame());
        let requests = engine.listen()?;
        let address = engine.address();
        Ok((OfiServer { engine, requests }, address))
    }

    fn connect(&self, address: &str, limits: &Limits) -> Result<OfiClient> {
        let (engine, owner) = self.endpoint_for(address)?;
        engine.raise_max_message(limits.max_frame());
        let (route, replies) = engine.open_route();
        Ok(OfiClient {
            engine,
            owner,
            route,
            replies,
        })
    }

    fn any_port(&self, endpoint: &str) -> String {
        match self.current() {
            Some(e) => format!("{SCHEME}{}/", e.provider()),
            None => endpoint.to_string(),
        }
    }

    fn one_sided(&self) -> Option<&dyn OneSided> {
        Some(self)
    }
}

impl OneSided for OfiLayer {
    /// As [`reads_one_sided`](crate::reads_one_sided) says for this layer's provider (its endpoint
    /// is open by then: the put that stages, or the first get, opened it).
    fn reads_one_sided(&self) -> bool {
        self.current().is_some_and(|e| e.reads_one_sided())
    }

    /// Opens the endpoint for the owner's provider (as the get's connection
    /// is about to) and asks it.
    fn reads_one_sided_from(&self, owner: &str) -> bool {
        match self.engine(provider_of(owner).ok().flatten()) {
            Ok(e) => e.reads_one_sided(),
            Err(_) => false,
        }
    }

    fn stage(&self, data: Bytes) -> Bytes {
        match self.current() {
            Some(e) => e.stage(&data).unwrap_or(data),
            None => data,
        }
    }

    fn register(&self, data: &Bytes) -> Result<Registration> {
        self.current()
            .ok_or_else(|| Error::Config("no libfabric endpoint is open to register with".into()))?
            .register(data)
    }

    fn read(&self, address: &str, region: Region, timeout: Duration) -> Result<Bytes> {
        let (engine, owner) = self.endpoint_for(address)?;
        ONE_SIDED_READS.fetch_add(1, Ordering::Relaxed);
        engine.read(&owner, region, timeout)
    }

    fn send_release(&self, address: &str, release: Bytes) {
        if let Ok((engine, owner)) = self.endpoint_for(address) {
            engine.send_release(&owner, release);
        }
    }

    fn accept_releases(&self, _address: &str, exposures: Arc<dyn Expose>) {
        // One server per endpoint: its releases arrive on this engine.
        if let Some(engine) = self.current() {
            engine.accept_releases(exposures);
        }
    }
}

/// One-sided reads started by this process (see [`one_sided_reads`]).
static ONE_SIDED_READS: AtomicU64 = AtomicU64::new(0);

/// How many gets of this process were served by one-sided reads.
pub fn one_sided_reads() -> u64 {
    ONE_SIDED_READS.load(Ordering::Relaxed)
}

/// The next message on `rx` within `timeout`; `None` if none came.
fn next(
    engine: &Engine,
    rx: &Receiver<Result<Message>>,
    timeout: Duration,
) -> Result<Option<Message>> {
    match engine.wait(rx, timeout) {
        Ok(m) => Ok(Some(m)),
        Err(Error::Timeout { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

impl ServerSocket for OfiServer {
    type Peer = ReplyTo;

    fn recv(&mut self, timeout: Duration) -> Result<Option<(ReplyTo, Frames)>> {
        match next(&self.engine, &self.requests, timeout) {
            Ok(Some(m)) => Ok(Some((
                ReplyTo {
                    from: m.from,
                    route: m.reply_route,
                },
                m.frames,
            ))),
            Ok(None) => Ok(None),
            // A failed reply to a client that went away arrives here: not
            // the server's error, and no request is lost.
            Err(e) => {
                tracing::debug!(error = %e, "ofi data server: a reply could not be sent");
                Ok(None)
            }
        }
    }

    fn send(&mut self, peer: ReplyTo, frames: Frames) -> Result<()> {
        self.engine
            .send(&peer.from, peer.route, SERVER_ROUTE, frames)
    }
}

impl Drop for OfiServer {
    fn drop(&mut self) {
        self.engine.close_route(SERVER_ROUTE);
        self.engine.stop_releases();
    }
}

impl ClientSocket for OfiClient {
    fn send(&mut self, frames: Frames, timeout: Duration) -> Result<()> {
        // Within the request's timeout when the engine's send wait is longer.
        self.engine
            .send_within(&self.owner, SERVER_ROUTE, self.route, frames, timeout)
    }

    fn recv(&mut self, timeout: Duration) -> Result<Option<Frames>> {
        Ok(next(&self.engine, &self.replies, timeout)?.map(|m| m.frames))
    }
}

impl Drop for OfiClient {
    fn drop(&mut self) {
        self.engine.close_route(self.route);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_name_their_provider() {
        assert_eq!(provider_of("ofi://").unwrap(), None);
        assert_eq!(provider_of("ofi://shm/").unwrap(), Some("shm"));
        assert_eq!(
            provider_of("ofi://tcp;ofi_rxm/abc").unwrap(),
            Some("tcp;ofi_rxm")
        );
        assert!(matches!(
            provider_of("tcp://1.2.3.4:5"),
            Err(Error::Config(_))
        ));
    }
}
