//! A process that built a connector resolves configs of its kind without
//! `register_connectors()`: every connector registers its kind when
//! constructed. Nothing in this test binary calls `register_connectors`.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use proxystore::{connector_from_config, registered_connectors, Bytes, Connector};

fn registered(kind: &str) -> bool {
    registered_connectors().iter().any(|k| k == kind)
}

/// Puts through `c`, rebuilds it from its config, reads the value back.
fn rebuilt_reads(c: &dyn Connector) {
    let key = c.put(Bytes::from_static(b"hello")).unwrap();
    let rebuilt = connector_from_config(&c.config()).unwrap();
    assert_eq!(rebuilt.kind(), c.kind());
    assert_eq!(rebuilt.get(&key).unwrap().as_deref(), Some(&b"hello"[..]));
    c.evict(&key).unwrap();
}

#[test]
fn a_local_connector_registers_its_kind() {
    rebuilt_reads(&proxystore::LocalConnector::new());
}

#[cfg(feature = "file")]
#[test]
fn file_and_shm_connectors_register_their_kinds() {
    assert!(!registered("file") && !registered("shm"));
    let dir = tempfile::tempdir().unwrap();
    rebuilt_reads(&proxystore::FileConnector::new(dir.path()).unwrap());
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let config = proxystore::file::FileConfig {
        kind: "shm".into(),
        ..proxystore::file::FileConfig::new(shm.path())
    };
    rebuilt_reads(&proxystore::FileConnector::with_config(config).unwrap());
}

#[cfg(feature = "zmq")]
#[test]
fn a_zmq_connector_registers_its_kind() {
    use proxystore::ZmqConnectorExt;
    assert!(!registered("zmq"));
    rebuilt_reads(&proxystore::ZmqConnector::loopback().unwrap());
}

#[cfg(feature = "redis")]
#[test]
fn a_redis_connector_registers_its_kind() {
    // The `mock` feature's in-process server, or a real one if this build
    // has no mock: either way the kind must resolve without registration.
    assert!(!registered("redis"));
    if cfg!(feature = "mock") {
        let url = format!("mock://{}", proxystore::ObjectId::random());
        rebuilt_reads(&proxystore::RedisConnector::open(&url).unwrap());
    } else if proxystore::redis::server::available() {
        let server = proxystore::redis::server::LocalRedisServer::start().unwrap();
        rebuilt_reads(&proxystore::RedisConnector::open(&server.url()).unwrap());
    }
}

#[cfg(feature = "ucx")]
#[test]
fn a_ucx_connector_registers_its_kind() {
    use proxystore::UcxConnectorExt;
    assert!(!registered("ucx"));
    // A UCP worker is reachable over the network: serving needs a secret,
    // which rebuilt connectors read from the environment.
    std::env::set_var("PROXYSTORE_UCX_SECRET", "self-registration-test");
    rebuilt_reads(&proxystore::UcxConnector::open().unwrap());
}
