//! ZeroMQ peer-to-peer connector.
//!
//! Each process that puts runs a data server (a thread with a ROUTER socket)
//! on `tcp://<interface>:<port>` or `ipc://<path>`; `put` keeps the bytes in
//! the process and returns a key naming that server, and `get`, `exists`,
//! `evict` from any process go to the owner over pooled DEALER connections.
//! Everything above the sockets (wire format, server loop, client pool,
//! timeouts, batching) is `proxystore-peer`, shared with the other network
//! connectors and run in CI on its in-process mock layer.
//!
//! ```no_run
//! use proxystore_core::{Bytes, Connector};
//! use proxystore_zmq::{ZmqConnector, ZmqConnectorExt};
//!
//! let c = ZmqConnector::loopback()?; // tcp://127.0.0.1, any free port
//! let key = c.put(Bytes::from_static(b"hello"))?;
//! println!("{key}"); // <id>.5@tcp://127.0.0.1:PORT
//! # Ok::<(), proxystore_core::Error>(())
//! ```

#[cfg(feature = "baseline")]
pub mod baseline;
pub mod curve;
mod layer;
mod zerocopy;

use std::sync::Arc;

pub use layer::{ZmqClient, ZmqLayer, ZmqServer};
use proxystore_core::registry::{
    self, BenchEnv, BenchSetup, CliOption, ConnectorDescriptor, FlagUse, ServerHandle,
};
use proxystore_core::{ConnectorConfig, Result};
pub use proxystore_peer::PeerConfig;
use proxystore_peer::{peer_factory, DataServer, PeerConnector};

/// The connector kind, Cargo feature and CLI name.
pub const KIND: &str = "zmq";

/// Default endpoint of a data server: loopback, any free port.
pub const DEFAULT_ADDRESS: &str = "tcp://127.0.0.1:*";

/// The ZeroMQ connector.
pub type ZmqConnector = PeerConnector<ZmqLayer>;

/// Builds ZeroMQ connectors.
pub trait ZmqConnectorExt: Sized {
    /// Serves from this process on `address` (`tcp://host:port`, `:*` for
    /// any free port, or `ipc://path`).
    fn bind(address: &str) -> Result<Self>;
    /// Serves from this process on loopback, any free port.
    fn loopback() -> Result<Self>;
}

impl ZmqConnectorExt for ZmqConnector {
    fn bind(address: &str) -> Result<Self> {
        Self::with_config(PeerConfig::new(KIND, address))
    }

    fn loopback() -> Result<Self> {
        Self::bind(DEFAULT_ADDRESS)
    }
}

/// Starts a standalone data server on `config.address` (what `proxystore
/// serve --connector zmq` runs); it answers until stopped or dropped.
pub fn serve(config: &PeerConfig) -> Result<DataServer> {
    use proxystore_peer::SocketLayer;
    proxystore_peer::serve(Arc::new(ZmqLayer::from_options(&config.transport)?), config)
}

/// The `zmq` kind: what it needs, its flags (`--address`: the standalone
/// data server puts go to, and what `serve` binds; `--timeout-ms`), its
/// server, bench setup and `info` line.
pub static DESCRIPTOR: ConnectorDescriptor =
    ConnectorDescriptor::new(KIND, Some("zmq"), "libzmq", peer_factory::<ZmqLayer>)
        .with_defaults(&[("address", DEFAULT_ADDRESS)])
        .with_cli_options(&[
            CliOption::new("address", "server", FlagUse::RequiredToServe)
                .example("tcp://HOST:PORT"),
            CliOption::new("timeout-ms", "timeout_ms", FlagUse::Optional),
        ])
        .with_serve(serve_from_config)
        .with_bench(bench)
        .with_status(|| {
            let (major, minor, patch) = libzmq_version();
            format!("libzmq {major}.{minor}.{patch}")
        });

/// The kinds this crate implements.
pub static DESCRIPTORS: &[&ConnectorDescriptor] = &[&DESCRIPTOR];

/// `proxystore serve`: a data server bound where puts are sent (option
/// `server`).
fn serve_from_config(config: &ConnectorConfig) -> Result<ServerHandle> {
    let mut peer = PeerConfig::from_connector_config(config)?;
    peer.address = config.require("server")?.to_string();
    let server = serve(&peer)?;
    Ok(ServerHandle::new(server.address().to_string(), server))
}

/// Two connectors on loopback (gets cross the socket; the writer's server
/// has `env.server_threads` I/O threads), beside libzmq's plain REQ/REP
/// when the `baseline` feature is on.
fn bench(env: &BenchEnv) -> Result<BenchSetup> {
    let mut writer = PeerConfig::new(KIND, DEFAULT_ADDRESS);
    if let Some(threads) = env.server_threads {
        writer.server_threads = threads;
    }
    let setup =
        BenchSetup::new(ZmqConnector::with_config(writer)?).with_reader(ZmqConnector::loopback()?);
    #[cfg(feature = "baseline")]
    let setup = setup.with_baseline(baseline::ZmqRaw);
    Ok(setup)
}

/// Registers the `zmq` kind so proxies naming it resolve in this process.
/// Idempotent and cheap; every ZeroMQ layer (so every `ZmqConnector` and
/// server) calls it when built.
pub fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| registry::register(&DESCRIPTOR));
}

/// The version of the libzmq this process is linked against.
pub fn libzmq_version() -> (i32, i32, i32) {
    zmq::version()
}
