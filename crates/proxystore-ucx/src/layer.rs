//! UCX as a [`SocketLayer`]: the data server and client connections of the
//! shared peer connector, carried by UCP active messages (see `engine`).
//! Addresses are `ucx://<base64url of the UCP worker address and its
//! 64-bit FNV-1a checksum>`: UCX parses a worker address without knowing
//! its length and aborts the process on a malformed one, so nothing from a
//! key reaches UCX unless it is intact.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use proxystore_core::{Error, ObjectId, Result};
use proxystore_peer::wire::Limits;
use proxystore_peer::{ClientSocket, Frames, Handler, InlineServer, ServerSocket, SocketLayer};

use crate::engine::{Engine, ReplyTo};

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

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// A data server's stream of requests.
pub struct UcxServer {
    engine: Arc<Engine>,
    requests: Receiver<(ReplyTo, Frames)>,
    max_frame: u64,
}

/// One client connection: an endpoint and the route its replies take.
pub struct UcxClient {
    engine: Arc<Engine>,
    address: String,
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
    type Server = UcxServer;
    type Client = UcxClient;

    fn name(&self) -> &'static str {
        "ucx"
    }

    fn bind(&self, endpoint: &str, limits: &Limits) -> Result<(UcxServer, String)> {
        check_endpoint(endpoint)?;
        let engine = self.engine()?;
        let requests = engine
            .take_requests()
            .ok_or_else(|| Error::Config("this UCX worker already has a data server".into()))?;
        let address = encode_address(engine.address());
        Ok((
            UcxServer {
                engine,
                requests,
                max_frame: limits.max_frame(),
            },
            address,
        ))
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
                Box::new(move |frames, expose| {
                    h.handle_exposing(frames, &mut |_, data| expose(data))
                }),
                handler.limits().max_frame(),
            )?;
            let address = encode_address(engine.address());
            Ok((Box::new(Serving(engine)) as InlineServer, address))
        });
        Some(served)
    }

    fn any_port(&self, _endpoint: &str) -> String {
        SCHEME.into()
    }

    fn expose(&self, _id: ObjectId, data: &Bytes) -> Option<Bytes> {
        self.engine().ok()?.expose(data.clone())
    }

    fn stage(&self, data: Bytes) -> Bytes {
        if data.len() < crate::ONE_SIDED_MIN || !reads_one_sided() {
            return data;
        }
        match self.engine() {
            Ok(engine) => engine.stage(&data).unwrap_or(data),
            Err(_) => data,
        }
    }

    fn reads_remote(&self) -> bool {
        reads_one_sided()
    }

    fn read_remote(&self, address: &str, desc: &Bytes, timeout: Duration) -> Result<Bytes> {
        let blob = worker_address(address)?;
        ONE_SIDED_READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.engine()?
            .read(blob, desc.clone(), timeout.min(crate::rma::READ_MAX))
            .map_err(|e| match e {
                Error::PeerUnreachable { reason, .. } => Error::PeerUnreachable {
                    address: abbreviate(address),
                    reason,
                },
                other => other,
            })
    }

    fn connect(&self, address: &str, limits: &Limits) -> Result<UcxClient> {
        let blob = worker_address(address)?;
        let engine = self.engine()?;
        engine.allow_replies(limits);
        let ep = engine.connect(&blob).map_err(|e| Error::PeerUnreachable {
            address: abbreviate(address),
            reason: format!("connect: {e}"),
        })?;
        let (conn, replies) = engine.open_route();
        Ok(UcxClient {
            engine,
            address: address.to_string(),
            ep,
            conn,
            replies,
        })
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

/// FNV-1a, 64 bits: a checksum every build computes alike.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `ucx://` and the worker address with its checksum, base64url.
fn encode_address(worker: &[u8]) -> String {
    let mut blob = Vec::with_capacity(worker.len() + 8);
    blob.extend_from_slice(worker);
    blob.extend_from_slice(&fnv1a(worker).to_le_bytes());
    format!("{SCHEME}{}", b64().encode(blob))
}

/// The worker address inside `ucx://<base64url>`, if intact.
fn worker_address(address: &str) -> Result<Vec<u8>> {
    let invalid = |reason| Error::InvalidKey {
        text: address.chars().take(200).collect(),
        reason,
    };
    let mut blob = address
        .strip_prefix(SCHEME)
        .and_then(|b| b64().decode(b).ok())
        .ok_or_else(|| invalid("a ucx owner address is ucx://<base64url worker address>"))?;
    if blob.len() <= 8 {
        return Err(invalid("ucx owner address too short"));
    }
    let sum = blob.split_off(blob.len() - 8);
    if sum != fnv1a(&blob).to_le_bytes() {
        return Err(invalid(
            "ucx owner address fails its checksum (truncated or corrupted)",
        ));
    }
    Ok(blob)
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

/// Worker addresses run to hundreds of characters; messages show the start.
fn abbreviate(address: &str) -> String {
    if address.chars().count() > 48 {
        format!("{}...", address.chars().take(48).collect::<String>())
    } else {
        address.to_string()
    }
}

impl ServerSocket for UcxServer {
    type Peer = ReplyTo;

    fn recv(&mut self, timeout: Duration) -> Result<Option<(ReplyTo, Frames)>> {
        loop {
            match self.requests.recv_timeout(timeout) {
                Ok((peer, frames)) => {
                    if frames.iter().any(|f| f.len() as u64 > self.max_frame) {
                        continue; // over the limit: not handled
                    }
                    return Ok(Some((peer, frames)));
                }
                Err(_) => return Ok(None),
            }
        }
    }

    fn send(&mut self, peer: ReplyTo, frames: Frames) -> Result<()> {
        self.engine.reply(peer, frames)
    }
}

impl ClientSocket for UcxClient {
    fn send(&mut self, frames: Frames, _timeout: Duration) -> Result<()> {
        // Never blocks: UCX queues the message; a failure arrives as an
        // error on this connection's replies.
        self.engine
            .send(self.ep, self.conn, frames)
            .map_err(|e| self.name_peer(e))
    }

    fn recv(&mut self, timeout: Duration) -> Result<Option<Frames>> {
        self.engine
            .wait(&self.replies, timeout)
            .transpose()
            .map_err(|e| self.name_peer(e))
    }
}

impl UcxClient {
    /// Puts the peer's address into errors the engine could not name.
    fn name_peer(&self, e: Error) -> Error {
        match e {
            Error::PeerUnreachable { reason, .. } => Error::PeerUnreachable {
                address: abbreviate(&self.address),
                reason,
            },
            other => other,
        }
    }
}

impl Drop for UcxClient {
    fn drop(&mut self) {
        self.engine.close(self.ep, self.conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_and_damage_is_caught() {
        let worker: Vec<u8> = (0..150u8).collect();
        let address = encode_address(&worker);
        assert_eq!(worker_address(&address).unwrap(), worker);
        // Every truncation and every single-character change is refused.
        for cut in SCHEME.len()..address.len() {
            assert!(worker_address(&address[..cut]).is_err(), "cut at {cut}");
        }
        for at in SCHEME.len()..address.len() {
            let mut damaged = address.clone().into_bytes();
            damaged[at] = if damaged[at] == b'A' { b'B' } else { b'A' };
            let damaged = String::from_utf8(damaged).unwrap();
            assert!(worker_address(&damaged).is_err(), "change at {at}");
        }
        assert!(worker_address("ucx://").is_err());
        assert!(worker_address("tcp://1.2.3.4:5").is_err());
    }

    #[test]
    fn long_addresses_are_cut_on_character_boundaries() {
        let address = format!("ucx://{}", "é".repeat(60));
        assert_eq!(abbreviate(&address).chars().count(), 51);
        assert_eq!(abbreviate("ucx://short"), "ucx://short");
    }
}
