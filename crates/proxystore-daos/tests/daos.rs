//! The DAOS connector on the in-process mock layer (DAOS cannot run
//! here): the conformance suite, the key layout and size query, DAOS's
//! error codes as typed errors, injected faults and delays, and what a
//! build without DAOS says about a real pool.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::time::Duration;

use proxystore_core::testing::pattern;
use proxystore_core::{
    connector_from_config, Bytes, Connector, ConnectorConfig, DeferrableConnector, Error, Key,
};
use proxystore_daos::mock::MockDaos;
use proxystore_daos::{DaosConfig, DaosConnector};

fn url() -> String {
    format!("mock://{}", proxystore_core::ObjectId::random())
}

fn mock() -> DaosConnector {
    proxystore_daos::register();
    DaosConnector::open(&url(), "cont").unwrap()
}

mod conformance_mock {
    proxystore_core::conformance_tests!(super::mock());
}

#[test]
fn keys_are_hex_dot_size_and_a_rebuilt_connector_reads_them() {
    let c = mock();
    let key = c.put(pattern(1000, 3)).unwrap();
    let text = key.to_string();
    let (hex, size) = text.split_once('.').unwrap();
    assert_eq!(hex.len(), 32);
    assert_eq!(size, "1000");
    let rebuilt = connector_from_config(&c.config()).unwrap();
    assert_eq!(
        rebuilt.get(&text.parse().unwrap()).unwrap(),
        Some(pattern(1000, 3))
    );
}

#[test]
fn a_key_without_a_size_is_read_through_the_size_query() {
    let c = mock();
    let key = c.put(pattern(5000, 7)).unwrap();
    let bare: Key = key.id().to_string().parse().unwrap();
    assert_eq!(bare.size(), None);
    assert_eq!(c.get(&bare).unwrap(), Some(pattern(5000, 7)));
    assert!(c.exists(&bare).unwrap());
    // Deferred keys carry no size either.
    let deferred = c.new_key().unwrap();
    assert_eq!(c.get(&deferred).unwrap(), None);
    c.set(&deferred, pattern(300, 1)).unwrap();
    assert_eq!(c.get(&deferred).unwrap(), Some(pattern(300, 1)));
    let empty = c.new_key().unwrap();
    c.set(&empty, Bytes::new()).unwrap();
    assert_eq!(c.get(&empty).unwrap(), Some(Bytes::new()));
    assert!(c.exists(&empty).unwrap());
    c.evict(&empty).unwrap();
    assert!(!c.exists(&empty).unwrap());
}

#[test]
fn a_value_longer_than_its_key_says_is_rec2big_and_a_shorter_one_is_named() {
    let url = url();
    let c = DaosConnector::open(&url, "cont").unwrap();
    let key = c.put(pattern(100, 1)).unwrap();
    assert!(MockDaos::overwrite(
        &url,
        &key.id().to_string(),
        pattern(200, 1)
    ));
    match c.get(&key) {
        Err(Error::TooLarge { size, limit, .. }) => assert_eq!((size, limit), (200, 100)),
        other => panic!("expected TooLarge (DER_REC2BIG), got {other:?}"),
    }
    MockDaos::overwrite(&url, &key.id().to_string(), pattern(50, 1));
    let err = c.get(&key).unwrap_err().to_string();
    assert!(err.contains("holds 50 bytes but the key says 100"), "{err}");
}

#[test]
fn a_pool_going_down_is_unreachable_naming_the_pool_and_code() {
    let url = url();
    let c = DaosConnector::open(&url, "cont").unwrap();
    let key = c.put(pattern(10, 1)).unwrap();
    MockDaos::set_down(&url, true);
    match c.get(&key) {
        Err(Error::PeerUnreachable { address, reason }) => {
            assert!(address.contains(&url), "{address}");
            assert!(reason.contains("DER_UNREACH"), "{reason}");
        }
        other => panic!("expected PeerUnreachable, got {other:?}"),
    }
    assert!(matches!(
        DaosConnector::open(&url, "cont"),
        Err(Error::PeerUnreachable { .. })
    ));
    MockDaos::set_down(&url, false);
    assert_eq!(c.get(&key).unwrap(), Some(pattern(10, 1)));
}

#[test]
fn batches_are_one_round_of_events_and_waits_are_bounded() {
    let url = url();
    let mut config = DaosConfig::new(&url, "cont");
    config.timeout = Duration::from_millis(200);
    let c = DaosConnector::with_config(config).unwrap();
    // 16 events of 20 ms each fit in the 200 ms bound only if the batch
    // launches them all before waiting: one round, not a loop.
    MockDaos::set_delay(&url, Duration::from_millis(20));
    let data: Vec<Bytes> = (0..16).map(|i| pattern(64 + i, i as u64)).collect();
    let keys = c.put_batch(data.clone()).unwrap();
    let got = c.get_batch(&keys).unwrap();
    assert_eq!(got, data.into_iter().map(Some).collect::<Vec<_>>());
    MockDaos::set_delay(&url, Duration::from_secs(5));
    match c.get(&keys[0]) {
        Err(Error::Timeout { connector, .. }) => assert_eq!(connector, "daos"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    MockDaos::set_delay(&url, Duration::ZERO);
    assert_eq!(c.get(&keys[1]).unwrap(), Some(pattern(65, 1)));
}

#[test]
fn namespaces_are_separate_objects() {
    let url = url();
    let a = DaosConnector::open(&url, "cont").unwrap();
    let mut config = DaosConfig::new(&url, "cont");
    config.namespace = "other".into();
    let b = DaosConnector::with_config(config).unwrap();
    let key = a.put(pattern(10, 1)).unwrap();
    assert_eq!(b.get(&key).unwrap(), None);
    assert_eq!(
        DaosConnector::open(&url, "cont")
            .unwrap()
            .get(&key)
            .unwrap(),
        Some(pattern(10, 1))
    );
}

#[test]
fn config_options_and_env_defaults() {
    let config = ConnectorConfig::new("daos")
        .with("pool", "mock://x")
        .with("container", "c")
        .with("namespace", "ns")
        .with("oclass", "SX")
        .with("timeout_ms", 1234)
        .with("max_object_bytes", 99);
    let parsed = DaosConfig::from_connector_config(&config).unwrap();
    assert_eq!(parsed.namespace, "ns");
    assert_eq!(parsed.oclass, "SX");
    assert_eq!(parsed.timeout, Duration::from_millis(1234));
    assert_eq!(
        DaosConfig::from_connector_config(&parsed.to_connector_config()).unwrap(),
        parsed
    );
    if std::env::var_os("DAOS_POOL").is_none() {
        let err = DaosConfig::from_connector_config(&ConnectorConfig::new("daos")).unwrap_err();
        assert!(err.to_string().contains("DAOS_POOL"), "{err}");
    }
    let c = DaosConnector::with_config(DaosConfig {
        max_object: 10,
        ..DaosConfig::new(url(), "c")
    })
    .unwrap();
    assert!(matches!(c.put(pattern(11, 1)), Err(Error::TooLarge { .. })));
}

#[test]
fn a_real_pool_without_daos_linked_is_unsupported_naming_daos_dir() {
    if proxystore_daos::daos_linked() {
        eprintln!("DAOS is linked: the unlinked message is not reachable");
        return;
    }
    let err = DaosConnector::open("some-pool", "some-cont").unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("DAOS_DIR"), "{text}");
    assert!(text.contains("mock://"), "{text}");
}

#[test]
fn the_raw_baseline_runs_on_the_mock() {
    use proxystore_core::registry::RawBaseline;
    let raw = proxystore_daos::baseline::DaosRaw::new(DaosConfig::new(url(), "c"));
    assert_eq!(raw.name(), "daos-mock-raw");
    let payload = pattern(4096, 9);
    let mut session = raw.start(&payload).unwrap();
    assert_eq!(session.get().unwrap(), Some(payload.clone()));
    session.put(&pattern(4096, 2)).unwrap();
    assert_eq!(session.get().unwrap(), Some(pattern(4096, 2)));
}
