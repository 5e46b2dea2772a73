//! A process that built a `DaosConnector` resolves configs of its kind
//! without `proxystore::register_connectors()`. Its own test binary, so no
//! other test registers the kind first.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use proxystore_core::{connector_from_config, registered_connectors, Bytes, Connector};
use proxystore_daos::{DaosConnector, KIND};

#[test]
fn a_constructed_daos_connector_registers_its_kind() {
    assert!(!registered_connectors().iter().any(|k| k == KIND));
    let pool = format!("mock://{}", proxystore_core::ObjectId::random());
    let c = DaosConnector::open(&pool, "cont").unwrap();
    let key = c.put(Bytes::from_static(b"hello")).unwrap();
    let rebuilt = connector_from_config(&c.config()).unwrap();
    assert_eq!(rebuilt.kind(), KIND);
    assert_eq!(rebuilt.get(&key).unwrap().as_deref(), Some(&b"hello"[..]));
}
