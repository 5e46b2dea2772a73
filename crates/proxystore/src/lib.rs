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

/// Tasks with proxied arguments and results: `StoreExecutor`, executor
/// adapters and the control channel between processes.
pub use proxystore_exec as exec;

#[cfg(feature = "file")]
pub use proxystore_file::{self as file, FileConnector};

#[cfg(feature = "zmq")]
pub use proxystore_zmq::{self as zmq, ZmqConnector, ZmqConnectorExt};

#[cfg(feature = "redis")]
pub use proxystore_redis::{self as redis, RedisConfig, RedisConnector};

#[cfg(feature = "daos")]
pub use proxystore_daos::{self as daos, DaosConfig, DaosConnector};
#[cfg(feature = "mpi")]
pub use proxystore_mpi::{self as mpi, MpiConnector};
#[cfg(feature = "ofi")]
pub use proxystore_ofi::{self as ofi, OfiConnector};
#[cfg(feature = "ucx")]
pub use proxystore_ucx::{self as ucx, UcxConnector, UcxConnectorExt};

/// Lists the connector crates, one line each under its Cargo feature: the
/// only place the facade names them. Expands to [`CONNECTOR_FEATURES`] and
/// [`compiled_descriptors`].
macro_rules! connector_crates {
    ($($feature:literal => $krate:ident),* $(,)?) => {
        /// Every Cargo feature of this crate that compiles a connector in,
        /// whether or not this build turned it on.
        pub const CONNECTOR_FEATURES: &[&str] = &[$($feature),*];

        /// The descriptors of every connector compiled into this build:
        /// `local` and `multi`, then each enabled feature's, in
        /// [`CONNECTOR_FEATURES`] order.
        pub fn compiled_descriptors() -> Vec<&'static ConnectorDescriptor> {
            #[allow(unused_mut)] // with no connector feature, only `local`
            let mut out: Vec<&'static ConnectorDescriptor> = vec![&registry::LOCAL, &registry::MULTI];
            $(
                #[cfg(feature = $feature)]
                out.extend($krate::DESCRIPTORS.iter().copied());
            )*
            out
        }
    };
}

connector_crates! {
    "file" => proxystore_file,
    "zmq" => proxystore_zmq,
    "redis" => proxystore_redis,
    "ucx" => proxystore_ucx,
    "ofi" => proxystore_ofi,
    "mpi" => proxystore_mpi,
    "daos" => proxystore_daos,
}

/// Connectors the design plans that no crate implements yet: `(kind, what
/// it will need)`. No Cargo feature builds them; `proxystore info` shows
/// them as planned.
pub const PLANNED_CONNECTORS: &[(&str, &str)] = &[];

/// Names of the connectors compiled into this build, in
/// [`compiled_descriptors`] order.
pub fn compiled_connectors() -> Vec<&'static str> {
    compiled_descriptors().iter().map(|d| d.kind).collect()
}

/// Registers every compiled-in connector kind, so proxies naming any of
/// them can be resolved in this process and the CLI can find their
/// descriptors. Idempotent and cheap.
pub fn register_connectors() {
    for descriptor in compiled_descriptors() {
        registry::register(descriptor);
    }
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
            let d = super::registry::descriptor(kind).expect("descriptor registered");
            assert_eq!(d.kind, kind);
        }
    }

    #[test]
    fn compiled_kinds_follow_the_features() {
        let kinds = super::compiled_connectors();
        assert_eq!(kinds[0], "local");
        assert_eq!(kinds.contains(&"zmq"), cfg!(feature = "zmq"));
        assert_eq!(kinds.contains(&"shm"), cfg!(feature = "file"));
        for d in super::compiled_descriptors() {
            if let Some(feature) = d.feature {
                assert!(super::CONNECTOR_FEATURES.contains(&feature), "{feature}");
            }
        }
        for (planned, _) in super::PLANNED_CONNECTORS {
            assert!(!kinds.contains(planned), "{planned} is not implemented");
            assert!(!super::CONNECTOR_FEATURES.contains(planned));
        }
    }
}

// The README's example compiles and runs as a doctest, so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
