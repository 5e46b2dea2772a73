//! The peer connector's own code (wire format, data server, client pool,
//! owner routing) on the in-process mock socket layer.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxystore_core::testing::pattern;
use proxystore_core::{Connector, ConnectorConfig, Error, Key};
use proxystore_peer::mock::{mock_connector, MockLayer};
use proxystore_peer::wire::{Item, Limits, Message, Op, Status, Value};
use proxystore_peer::{serve, ClientPool, PeerConfig, PeerConnector, PoolLimits, SocketLayer};

mod conformance {
    proxystore_core::conformance_tests!(proxystore_peer::mock::mock_connector().unwrap());
}

fn connector(config: PeerConfig) -> PeerConnector<MockLayer> {
    PeerConnector::new(Arc::new(MockLayer), config).unwrap()
}

#[test]
fn keys_name_the_owner_and_other_peers_fetch_from_it() {
    let owner = mock_connector().unwrap();
    let reader = mock_connector().unwrap();
    let key = owner.put(pattern(4096, 1)).unwrap();
    assert_eq!(
        key.location(),
        Some(owner.local_address().unwrap().as_str())
    );
    assert_eq!(key.size(), Some(4096));
    assert_eq!(reader.get(&key).unwrap(), Some(pattern(4096, 1)));
    assert!(reader.exists(&key).unwrap());
    reader.evict(&key).unwrap();
    assert!(!owner.exists(&key).unwrap());
}

#[test]
fn batches_go_to_each_owner_once_and_keep_order() {
    let (a, b) = (mock_connector().unwrap(), mock_connector().unwrap());
    let reader = mock_connector().unwrap();
    let ka = a.put_batch(vec![pattern(10, 1), pattern(20, 2)]).unwrap();
    let kb = b.put(pattern(30, 3)).unwrap();
    let keys = vec![
        ka[1].clone(),
        kb,
        ka[0].clone(),
        Key::random()
            .with_location(&a.local_address().unwrap())
            .unwrap(),
    ];
    let got = reader.get_batch(&keys).unwrap();
    assert_eq!(
        got,
        vec![
            Some(pattern(20, 2)),
            Some(pattern(30, 3)),
            Some(pattern(10, 1)),
            None
        ]
    );
}

#[test]
fn a_dead_owner_is_an_error_naming_it_not_a_hang() {
    let owner = mock_connector().unwrap();
    let mut config = PeerConfig::new("mock", "mock://");
    config.timeout = Duration::from_millis(300);
    let reader = connector(config);
    let key = owner.put(pattern(100, 1)).unwrap();
    let address = owner.local_address().unwrap();
    drop(owner);
    let started = Instant::now();
    match reader.get(&key) {
        Err(Error::PeerUnreachable { address: a, .. }) => assert_eq!(a, address),
        other => panic!("expected PeerUnreachable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_silent_owner_times_out_with_its_address() {
    // A bound socket that nobody answers: the request must time out.
    let (_server, address) = MockLayer.bind("mock://", &Limits::default()).unwrap();
    let mut config = PeerConfig::new("mock", "mock://");
    config.timeout = Duration::from_millis(200);
    let reader = connector(config);
    let key = Key::random().with_size(3).with_location(&address).unwrap();
    let started = Instant::now();
    let err = reader.get(&key).unwrap_err();
    assert!(
        matches!(&err, Error::PeerUnreachable { address: a, .. } if *a == address),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_server_survives_malformed_and_oversized_frames() {
    let limits = Limits {
        max_object: 4096,
        max_items: 16,
        max_aux: 1024,
    };
    let mut config = PeerConfig::new("mock", "mock://");
    config.limits = limits;
    let owner = connector(config);
    let key = owner.put(pattern(64, 1)).unwrap();
    let address = owner.local_address().unwrap();
    let mut raw = MockLayer.connect(&address, &limits).unwrap();
    use proxystore_peer::ClientSocket;
    // Garbage, a truncated put, and a frame over the server's limit.
    raw.send(
        vec![Bytes::from_static(b"not a message")],
        Duration::from_secs(1),
    )
    .unwrap();
    let mut truncated = Message::request(
        Op::Put,
        77,
        Bytes::new(),
        vec![Item {
            id: key.id(),
            value: Value::Data(pattern(10, 2)),
        }],
    )
    .encode();
    truncated.pop();
    raw.send(truncated, Duration::from_secs(1)).unwrap();
    let reply =
        Message::decode(raw.recv(Duration::from_secs(5)).unwrap().unwrap(), &limits).unwrap();
    assert_eq!((reply.status, reply.request_id), (Status::BadRequest, 77));
    assert_eq!(limits.max_frame(), 4096);
    raw.send(vec![Bytes::from(vec![0u8; 4097])], Duration::from_secs(1))
        .unwrap();
    let too_many = Message::request(
        Op::Get,
        78,
        Bytes::new(),
        (0..17)
            .map(|_| Item {
                id: key.id(),
                value: Value::Id,
            })
            .collect(),
    );
    raw.send(too_many.encode(), Duration::from_secs(1)).unwrap();
    let reply =
        Message::decode(raw.recv(Duration::from_secs(5)).unwrap().unwrap(), &limits).unwrap();
    assert_eq!((reply.status, reply.request_id), (Status::TooLarge, 78));
    // Still serving, and the object is untouched.
    let reader = mock_connector().unwrap();
    assert_eq!(reader.get(&key).unwrap(), Some(pattern(64, 1)));
}

#[test]
fn objects_over_the_limit_are_refused_before_sending() {
    let mut config = PeerConfig::new("mock", "mock://");
    config.limits.max_object = 1000;
    let c = connector(config);
    assert!(matches!(
        c.put(pattern(1001, 1)),
        Err(Error::TooLarge {
            size: 1001,
            limit: 1000,
            ..
        })
    ));
    assert!(c.put(pattern(1000, 1)).is_ok());
}

#[test]
fn a_standalone_server_keeps_data_after_its_producer_closes() {
    let daemon = serve(Arc::new(MockLayer), &PeerConfig::new("mock", "mock://")).unwrap();
    let mut config = PeerConfig::new("mock", "mock://");
    config.server = Some(daemon.address().to_string());
    let producer = connector(config);
    assert!(producer.capabilities().survives_producer_exit);
    let keys = producer
        .put_batch(vec![pattern(10, 1), pattern(20, 2)])
        .unwrap();
    assert_eq!(keys[0].location(), Some(daemon.address()));
    producer.close().unwrap();
    drop(producer);
    let reader = mock_connector().unwrap();
    assert_eq!(
        reader.get_batch(&keys).unwrap(),
        vec![Some(pattern(10, 1)), Some(pattern(20, 2))]
    );
}

#[test]
fn a_secret_is_required_off_loopback_and_checked_by_the_server() {
    let open = PeerConfig::new("mock", "tcp://10.1.2.3:0");
    let reader_only = PeerConnector::new(Arc::new(MockLayer), open).unwrap();
    assert!(matches!(
        reader_only.put(pattern(1, 1)),
        Err(Error::Config(_))
    ));
    let mut guarded = PeerConfig::new("mock", "mock://");
    guarded.secret = Some("s3cret".into());
    let owner = connector(guarded.clone());
    let key = owner.put(pattern(10, 1)).unwrap();
    assert!(
        !owner.config().options.contains_key("secret"),
        "secrets never go into configs"
    );
    let stranger = mock_connector().unwrap();
    match stranger.get(&key) {
        Err(Error::Unauthorized {
            address, reason, ..
        }) => {
            assert_eq!(Some(address.as_str()), key.location());
            assert!(
                reason.contains("PROXYSTORE_MOCK_SECRET"),
                "names the variable: {reason}"
            );
        }
        other => panic!("expected Unauthorized naming the owner, got {other:?}"),
    }
    let friend = connector(guarded);
    assert_eq!(friend.get(&key).unwrap(), Some(pattern(10, 1)));
}

#[test]
fn keys_without_an_owner_are_invalid() {
    let c = mock_connector().unwrap();
    assert!(matches!(
        c.get(&Key::random()),
        Err(Error::InvalidKey { .. })
    ));
}

#[test]
fn stale_replies_are_skipped_by_request_id() {
    let owner = mock_connector().unwrap();
    let key = owner.put(pattern(5, 1)).unwrap();
    let pool = ClientPool::new(Arc::new(MockLayer), Limits::default());
    let address = owner.local_address().unwrap();
    let req = |op| {
        Message::request(
            op,
            0,
            Bytes::new(),
            vec![Item {
                id: key.id(),
                value: Value::Id,
            }],
        )
    };
    let replies = pool
        .call(
            &address,
            vec![req(Op::Exists), req(Op::Get)],
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(replies[0].items[0].value, Value::Flag(true));
    assert_eq!(replies[1].items[0].value, Value::Data(pattern(5, 1)));
}

mod conformance_one_sided {
    proxystore_core::conformance_tests!(proxystore_peer::mock::mock_rma_connector().unwrap());
}

#[test]
fn one_sided_gets_read_descriptors_within_the_get_timeout() {
    use proxystore_peer::mock::{last_read_timeout, mock_rma_connector, rma_reads, MockRmaLayer};
    use proxystore_peer::REMOTE_MIN;
    let owner = mock_rma_connector().unwrap();
    let mut config = PeerConfig::new("mock-rma", "mock://");
    config.timeout = Duration::from_millis(2500);
    let reader = PeerConnector::new(Arc::new(MockRmaLayer), config).unwrap();
    let keys = owner
        .put_batch(vec![pattern(REMOTE_MIN, 1), pattern(7, 2)])
        .unwrap();
    let before = rma_reads();
    assert_eq!(
        reader.get_batch(&keys).unwrap(),
        vec![Some(pattern(REMOTE_MIN, 1)), Some(pattern(7, 2))]
    );
    // Other tests may read in parallel; ours adds one (the small object
    // rides in the reply).
    assert!(
        rma_reads() > before,
        "the owner answered the large object with a descriptor"
    );
    let budget = last_read_timeout();
    assert!(
        budget > Duration::ZERO && budget < Duration::from_millis(2500),
        "a read gets what is left of the get's timeout, not a fresh one: {budget:?}"
    );
    // Evicted objects are not read: the owner answers "absent", not a descriptor.
    reader.evict(&keys[0]).unwrap();
    assert_eq!(reader.get(&keys[0]).unwrap(), None);
}

/// `server_threads` is read from a config, written back when not the
/// default, and out-of-range values are config errors naming the option.
#[test]
fn server_threads_round_trips_and_is_checked() {
    let config = ConnectorConfig::new("mock")
        .with("address", "mock://")
        .with("server_threads", 4);
    let peer = PeerConfig::from_connector_config(&config).unwrap();
    assert_eq!(peer.server_threads, 4);
    assert_eq!(peer.to_connector_config().get("server_threads"), Some("4"));
    let default = PeerConfig::new("mock", "mock://");
    assert_eq!(default.server_threads, 1);
    assert_eq!(default.to_connector_config().get("server_threads"), None);
    for bad in ["0", "65", "many"] {
        let config = ConnectorConfig::new("mock")
            .with("address", "mock://")
            .with("server_threads", bad);
        let err = PeerConfig::from_connector_config(&config).unwrap_err();
        assert!(
            matches!(&err, Error::Config(m) if m.contains("server_threads")),
            "{bad}: {err}"
        );
    }
    // A connector with more server threads still serves (the mock layer
    // binds as before: the setting is the transport's to use).
    let mut config = PeerConfig::new("mock", "mock://");
    config.server_threads = 3;
    let c = connector(config);
    let key = c.put(Bytes::from_static(b"served")).unwrap();
    assert_eq!(&c.get(&key).unwrap().unwrap()[..], b"served");
}

/// The pool keeps at most `max_peers` peers (least recently used closed
/// first), closes peers idle for `idle_timeout`, and a closed peer is
/// reached again by reconnecting.
#[test]
fn the_client_pool_is_bounded_by_peers_and_idle_time() {
    let owners: Vec<_> = (0..5).map(|_| mock_connector().unwrap()).collect();
    let keys: Vec<Key> = owners
        .iter()
        .map(|o| o.put(pattern(16, 3)).unwrap())
        .collect();
    let bounds = PoolLimits {
        max_peers: 3,
        idle_timeout: Duration::from_millis(300),
    };
    let pool = ClientPool::bounded(Arc::new(MockLayer), Limits::default(), bounds);
    let exists = |i: usize| {
        let req = Message::request(
            Op::Exists,
            0,
            Bytes::new(),
            vec![Item {
                id: keys[i].id(),
                value: Value::Id,
            }],
        );
        let address = owners[i].local_address().unwrap();
        let reply = pool
            .call(&address, vec![req], Duration::from_secs(5))
            .unwrap();
        assert_eq!(reply[0].status, Status::Ok);
    };
    for i in 0..5 {
        exists(i);
        assert_eq!(pool.idle_peers(), (i + 1).min(3));
    }
    // Peer 0 was closed (least recently used); it is reached again.
    exists(0);
    assert_eq!(pool.idle_peers(), 3);
    // After the idle timeout, the next return sweeps the others.
    std::thread::sleep(Duration::from_millis(400));
    exists(4);
    assert_eq!(pool.idle_peers(), 1);
    // The bounds travel in the config, and bad ones are refused.
    let mut config = PeerConfig::new("mock", "mock://");
    config.pool = bounds;
    let c = config.to_connector_config();
    assert_eq!(c.get("pool_max_peers"), Some("3"));
    assert_eq!(PeerConfig::from_connector_config(&c).unwrap().pool, bounds);
    let zero = c.with("pool_max_peers", 0);
    assert!(matches!(
        PeerConfig::from_connector_config(&zero),
        Err(Error::Config(m)) if m.contains("pool_max_peers")
    ));
}
