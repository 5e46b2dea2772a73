//! UCX connector.
//!
//! Each process that puts runs a UCP worker on its own thread and serves
//! its objects from memory; keys name the owner's worker address
//! (`<id>.<size>@ucx://<base64url>`), and `get`/`exists`/`evict` from any
//! process go to the owner as UCP active messages over cached endpoints.
//! UCX picks the protocol per message: eager for small ones, rendezvous
//! (zero-copy where the transport allows) for large ones. Transports and
//! devices come from UCX's own environment (`UCX_TLS`, `UCX_NET_DEVICES`).
//!
//! The request handling, pooling, batching and timeouts are
//! `proxystore-peer`'s, shared with ZeroMQ and run in CI on its in-process
//! mock layer; this crate supplies the UCX socket layer.
//!
//! Status: active-message data path. One-sided `ucp_get` of registered
//! memory (for shared memory and RDMA transports) is the next step.

mod am;
mod arena;
pub mod baseline;
mod engine;
mod layer;
mod pool;
mod rma;
mod worker;

use std::sync::Arc;

pub use engine::ReplyTo;
pub use layer::{one_sided_reads, UcxClient, UcxLayer, UcxServer};
use proxystore_core::Result;
pub use proxystore_peer::PeerConfig;
use proxystore_peer::{DataServer, PeerConnector};

/// The connector kind, Cargo feature and CLI name.
pub const KIND: &str = "ucx";

/// The endpoint of a process's data server: its UCP worker.
pub const ADDRESS: &str = "ucx://";

/// The UCX connector.
pub type UcxConnector = PeerConnector<UcxLayer>;

/// Builds UCX connectors.
pub trait UcxConnectorExt: Sized {
    /// A connector with default settings (secret from
    /// `PROXYSTORE_UCX_SECRET`, which UCX's network reach requires).
    fn open() -> Result<Self>;
}

impl UcxConnectorExt for UcxConnector {
    fn open() -> Result<Self> {
        Self::with_config(PeerConfig::new(KIND, ADDRESS))
    }
}

/// Starts a standalone data server (what `proxystore serve --connector
/// ucx` runs); it answers until stopped or dropped.
pub fn serve(config: &PeerConfig) -> Result<DataServer> {
    proxystore_peer::serve(Arc::new(UcxLayer::default()), config)
}

/// Registers the `ucx` kind so proxies naming it resolve in this process.
pub fn register() {
    proxystore_peer::register_kind::<UcxLayer>(KIND);
}

/// The version of the libucp this process is linked against.
pub fn libucp_version() -> (u32, u32, u32) {
    let (mut major, mut minor, mut release) = (0, 0, 0);
    // SAFETY: ucp_get_version only writes the three integers.
    unsafe { ucx_sys::ucp_get_version(&mut major, &mut minor, &mut release) };
    (major, minor, release)
}
