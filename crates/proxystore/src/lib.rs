//! proxystore: move task data out of band.
//!
//! A producer puts an object into a [`Store`] and passes a small [`Proxy`]
//! (store config + key) to a consumer, through whatever control channel the
//! application has (a task queue, an RPC, an MPI message). The consumer's
//! first use of the proxy fetches and decodes the object through the store's
//! connector, in whatever process or node it runs.
//!
//! Connectors are chosen with Cargo features (one per connector, `file` on
//! by default); the in-process [`LocalConnector`] is always there.
//!
//! ```
//! use proxystore::{FileConnector, Proxy, Store};
//!
//! # fn main() -> proxystore::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::new("example", FileConnector::new(dir.path())?);
//! let proxy: Proxy<Vec<f64>> = store.proxy(&vec![1.0, 2.0, 3.0])?;
//! // Ship `proxy` anywhere with serde; there, first use fetches the data:
//! assert_eq!(proxy.iter().sum::<f64>(), 6.0);
//! # Ok(())
//! # }
//! ```
//!
//! A process that only receives proxies calls [`register_connectors`] once
//! so it can rebuild every compiled-in connector from a proxy's config.

pub use proxystore_core::*;

#[cfg(feature = "file")]
pub use proxystore_file::{self as file, FileConnector};

#[cfg(feature = "zmq")]
pub use proxystore_zmq::{self as zmq, ZmqConnector, ZmqConnectorExt};

#[cfg(feature = "redis")]
pub use proxystore_redis::{self as redis, RedisConfig, RedisConnector};

#[cfg(feature = "ucx")]
pub use proxystore_ucx::{self as ucx, UcxConnector, UcxConnectorExt};

/// Names of the connectors compiled into this build, in matrix order.
pub fn compiled_connectors() -> Vec<&'static str> {
    let mut out = vec!["local"];
    if cfg!(feature = "file") {
        out.extend(["file", "shm"]);
    }
    if cfg!(feature = "zmq") {
        out.push("zmq");
    }
    if cfg!(feature = "redis") {
        out.push("redis");
    }
    if cfg!(feature = "ucx") {
        out.push("ucx");
    }
    out
}

/// Registers every compiled-in connector kind, so proxies naming any of
/// them can be resolved in this process. Idempotent and cheap.
pub fn register_connectors() {
    #[cfg(feature = "file")]
    proxystore_file::register();
    #[cfg(feature = "zmq")]
    proxystore_zmq::register();
    #[cfg(feature = "redis")]
    proxystore_redis::register();
    #[cfg(feature = "ucx")]
    proxystore_ucx::register();
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_compiled_connector_is_registered() {
        super::register_connectors();
        let registered = super::registered_connectors();
        for kind in super::compiled_connectors() {
            assert!(
                registered.iter().any(|k| k == kind),
                "{kind} not registered"
            );
        }
    }
}

// The README's example compiles and runs as a doctest, so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
