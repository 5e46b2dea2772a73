//! Core of proxystore-rs.
//!
//! A producer puts an object into a [`Store`] and hands a small [`Proxy`]
//! (store config + key) to a consumer; the consumer's first use of the proxy
//! fetches the bytes through the store's [`Connector`] and decodes them, in
//! whatever process it runs. Connectors (file, Redis, ZeroMQ, UCX, ...) live
//! in their own crates; [`LocalConnector`] is built in.

mod asynchronous;
mod blocking;
mod cache;
pub mod codec;
pub mod connector;
pub mod error;
pub mod future;
#[doc(hidden)]
pub mod fuzzing;
pub mod key;
pub mod lifetime;
pub mod local;
pub mod metrics;
pub mod multi;
pub mod ownership;
pub mod pattern;
pub mod pod;
pub mod proxy;
mod reaper;
pub mod registry;
pub mod store;
pub mod support;
pub mod table;
#[cfg(feature = "testing")]
pub mod testing;
mod timer;
mod wait;
mod wake;

pub use asynchronous::INLINE_DECODE_MAX;
pub use blocking::{blocking_threads, BLOCKING_THREADS};
pub use bytes::Bytes;
pub use cache::DEFAULT_CACHE_BYTES;
pub use codec::{Codec, NdArray};
pub use connector::{
    connector_from_config, register_connector, registered_connectors, Capabilities, Connector,
    ConnectorConfig, ConnectorFactory, DeferrableConnector, PutHints,
};
pub use error::{Error, Result};
pub use future::StoreFuture;
pub use key::{Key, ObjectId};
pub use lifetime::{LeaseLifetime, Lifetime, ScopeLifetime, StaticLifetime};
pub use local::LocalConnector;
pub use metrics::{MetricsSnapshot, Op, OpStats};
pub use multi::{MultiConnector, Policy};
pub use ownership::{OwnedProxy, RefProxy};
pub use pod::PodArray;
pub use proxy::{Proxy, ProxyFactory};
pub use registry::ConnectorDescriptor;
pub use store::{
    flush_all_evictions, get_or_create_store, get_store, register_store, unregister_store, Store,
    StoreBuilder, StoreConfig, CLOSE_FLUSH_TIMEOUT,
};
pub use support::{put_via_batch, ClosedFlag};
pub use table::ObjectTable;
pub use wait::{FIRST_POLL_INTERVAL, MAX_POLL_INTERVAL};
