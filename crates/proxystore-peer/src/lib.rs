//! Peer-to-peer machinery shared by the network connectors (ZeroMQ now;
//! UCX, libfabric and MPI carry the same requests).
//!
//! - [`wire`]: the versioned request/response vocabulary and framing, with
//!   limits checked before any allocation.
//! - [`Handler`]: what a data server does with a request (over the core's
//!   [`ObjectTable`](proxystore_core::ObjectTable)).
//! - [`SocketLayer`]: the only part a transport writes; [`DataServer`] and
//!   [`ClientPool`] are the server loop and the cached, pipelined client
//!   written once over it.
//! - [`PeerConnector`]: the connector over any socket layer; [`serve`] the
//!   standalone data server behind `proxystore serve`.
//! - [`rma`]: one-sided reads (descriptors, pins, releases, deadlines)
//!   for transports that implement [`OneSided`]; they write only their
//!   memory calls. [`arena`]: the registered slabs objects are staged in.
//! - [`address`]: the checksummed text form of binary peer addresses
//!   (`ucx://<base64url>`), and [`pool`]: reused, page-aligned receive
//!   buffers handed out as `Bytes`.
//! - [`mock::MockLayer`]: in-process channels as the socket layer, so all
//!   of the above runs in tests without a network library;
//!   [`mock::MockRmaLayer`] adds one-sided reads (descriptors instead of
//!   bytes), the path RDMA transports take.

pub mod address;
pub mod arena;
mod clients;
mod connector;
#[doc(hidden)]
pub mod fuzzing;
mod handler;
#[cfg(any(test, feature = "mock"))]
pub mod mock;
pub mod pool;
pub mod rma;
mod served;
mod transport;
pub mod wire;

pub use address::is_local_endpoint;
pub use clients::{ClientPool, PoolLimits};
pub use connector::{
    peer_factory, register_kind, serve, PeerConfig, PeerConnector, MAX_SERVER_THREADS,
};
pub use handler::Handler;
pub use rma::{OneSided, Region, Registration, REMOTE_MIN};
pub use transport::{ClientSocket, DataServer, InlineServer, NoServer, ServerSocket, SocketLayer};
pub use wire::Frames;
