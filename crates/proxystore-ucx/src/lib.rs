//! UCX connector.
//!
//! Each process that puts runs a UCP worker and serves its objects from
//! memory; keys name the owner's worker address
//! (`<id>.<size>@ucx://<base64url>`), and `get`/`exists`/`evict` from any
//! process go to the owner as UCP active messages over cached endpoints.
//! Transports and devices come from UCX's own environment (`UCX_TLS`,
//! `UCX_NET_DEVICES`).
//!
//! The data path:
//! - A thread waiting for a reply or a read progresses the worker itself
//!   (the worker sits behind one lock, in UCX's serialized mode), so a get
//!   crosses no thread; a background thread progresses it otherwise, and
//!   requests are answered wherever progress delivers them.
//! - Where one-sided reads are on (`UCX_TLS` naming no tcp transport, or
//!   `PROXYSTORE_UCX_ONE_SIDED=on`), objects of [`ONE_SIDED_MIN`] and more
//!   are copied at put into registered slabs UCX allocated, the owner
//!   answers a get with a descriptor (address, length, rkey, token), and
//!   the reader `ucp_get`s the bytes and releases the descriptor; on
//!   shared memory the get is a memcpy from the mapped slab.
//! - Otherwise the reply carries the bytes as an active message (eager for
//!   small ones, rendezvous for large ones) into a pooled, reused buffer.
//!
//! The request handling, pooling, batching, timeouts and the one-sided
//! protocol (descriptors, pins, releases) are `proxystore-peer`'s, shared
//! with ZeroMQ and run in CI on its in-process mock layers; this crate
//! supplies the UCP calls: the socket layer and the one-sided memory calls.

mod am;
mod arena;
#[cfg(feature = "baseline")]
pub mod baseline;
mod descriptor;
mod engine;
#[doc(hidden)]
pub mod fuzzing;
mod layer;
mod progress;
mod rma;
mod worker;

use std::sync::Arc;

pub use descriptor::{DESCRIPTOR, DESCRIPTORS};
pub use layer::{one_sided_reads, reads_one_sided, UcxClient, UcxLayer};
use proxystore_core::Result;
pub use proxystore_peer::PeerConfig;
use proxystore_peer::{DataServer, PeerConnector};

/// The connector kind, Cargo feature and CLI name.
pub const KIND: &str = "ucx";

/// Gets of objects at least this big are one-sided reads where those are
/// on (see [`reads_one_sided`]); smaller ones ride in the reply.
pub const ONE_SIDED_MIN: usize = proxystore_peer::REMOTE_MIN;

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
        register();
        Self::with_config(PeerConfig::new(KIND, ADDRESS))
    }
}

/// Starts a standalone data server (what `proxystore serve --connector
/// ucx` runs); it answers until stopped or dropped.
pub fn serve(config: &PeerConfig) -> Result<DataServer> {
    register();
    proxystore_peer::serve(Arc::new(UcxLayer::default()), config)
}

/// Registers the `ucx` kind so proxies naming it resolve in this process.
/// Idempotent and cheap; [`UcxConnectorExt::open`] and [`serve`] call it.
pub fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| proxystore_core::registry::register(&DESCRIPTOR));
}

/// The version of the libucp this process is linked against.
pub fn libucp_version() -> (u32, u32, u32) {
    let (mut major, mut minor, mut release) = (0, 0, 0);
    // SAFETY: ucp_get_version only writes the three integers.
    unsafe { ucx_sys::ucp_get_version(&mut major, &mut minor, &mut release) };
    (major, minor, release)
}

/// Keeps UCX's own log lines (warnings and errors, such as the several
/// `UCX ERROR` lines UCX prints when a peer died) off stderr, unless
/// `UCX_LOG_LEVEL` is set: UCX's global log level becomes `fatal`. For
/// command-line tools whose stderr is one error line (`proxystore` runs it
/// at start); a library should leave UCX's logging to the application.
pub fn quiet_ucx_log() {
    if std::env::var_os("UCX_LOG_LEVEL").is_some() {
        return;
    }
    // SAFETY: both arguments are NUL-terminated C strings that outlive the
    // call; ucs_global_opts_set_value copies the value it parses.
    let status =
        unsafe { ucx_sys::ucs_global_opts_set_value(c"LOG_LEVEL".as_ptr(), c"fatal".as_ptr()) };
    if status != ucx_sys::ucs_status_t_UCS_OK {
        tracing::debug!(?status, "could not lower UCX's log level");
    }
}
