//! libfabric connector (foundation): a reliable-datagram endpoint of a
//! chosen provider (`tcp;ofi_rxm`, `shm`, later `verbs;ofi_rxm`, `cxi`)
//! and an [`Engine`] that moves framed messages between such endpoints.
//!
//! - `fabric`: the libfabric objects (fabric, domain, AV, CQ, endpoint)
//!   and the one function mapping libfabric errors.
//! - [`Engine`]: the endpoint behind one lock; messages up to
//!   [`INLINE_MAX`] ride in one send into a pre-posted receive buffer;
//!   larger ones are announced (size checked against the receiver's limit
//!   before anything is allocated) and then moved as tagged messages into
//!   a pooled buffer.
//! - Addresses: `ofi://<provider>/<base64url of fi_getname + checksum>`
//!   ([`Engine::address`], [`Engine::parse_address`]).
//!
//! - [`OfiLayer`]: the engine as the peer connector's socket layer, so
//!   [`OfiConnector`] is `PeerConnector<OfiLayer>`: keys
//!   `<id>.<size>@ofi://<provider>/<base64url>`, requests and replies as
//!   engine messages, gets carrying the bytes.
//!
//! - One-sided reads (`rma`, `mr`): objects of 64 KiB and more are staged
//!   at put in registered slabs; owners answer gets with descriptors and
//!   readers `fi_read` them ([`one_sided_reads`] counts them).
//! - [`baseline::RawRead`]: the bare `fi_read` and send loops
//!   `proxystore bench` measures the connector against (`ofi-raw`).

pub mod baseline;
mod descriptor;
mod engine;
mod fabric;
mod layer;
mod liveness;
mod mr;
mod progress;
mod rma;
mod state;
mod wire;

use bytes::Bytes;

pub use descriptor::{register, ADDRESS, DESCRIPTOR, DESCRIPTORS};
pub use engine::{Engine, DEFAULT_MAX_MESSAGE, DEFAULT_SEND_WAIT, INLINE_MAX};
pub use fabric::OfiError;
pub use layer::{one_sided_reads, OfiClient, OfiLayer, OfiServer, ReplyTo, SCHEME};
pub use proxystore_peer::PeerConfig;
pub use rma::reads_one_sided;
pub use wire::{RELEASE_ROUTE, SERVER_ROUTE};

/// The libfabric connector: the shared peer connector over [`OfiLayer`].
/// Build it with `OfiConnector::with_config(PeerConfig::new(KIND,
/// "ofi://<provider>/"))`; serving needs a secret (`PROXYSTORE_OFI_SECRET`
/// or [`PeerConfig::secret`]), and a process reading from or putting to
/// another needs the same one.
pub type OfiConnector = proxystore_peer::PeerConnector<OfiLayer>;

/// The connector kind, Cargo feature and CLI name.
pub const KIND: &str = "ofi";

/// A message that arrived on a route.
#[derive(Debug, Clone)]
pub struct Message {
    /// The sender's raw endpoint address (to reply to).
    pub from: Vec<u8>,
    /// The route on the sender the reply goes to.
    pub reply_route: u64,
    /// The frames, as sent.
    pub frames: Vec<Bytes>,
}
