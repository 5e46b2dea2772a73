//! The ZeroMQ connector over real libzmq sockets on loopback: the shared
//! conformance suite (tcp and ipc), a second OS process resolving a proxy,
//! a killed owner, malformed traffic, the standalone server.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proxystore_core::testing::{
    child_command, child_role, output_field, pattern, run_child, spawn_child_until,
};
use proxystore_core::{Connector, Error, Key, Proxy, Store};
use proxystore_zmq::{serve, PeerConfig, ZmqConnector, ZmqConnectorExt, KIND};

fn tcp() -> ZmqConnector {
    proxystore_zmq::register();
    ZmqConnector::loopback().unwrap()
}

fn ipc() -> ZmqConnector {
    proxystore_zmq::register();
    let path = std::env::temp_dir().join(format!(
        "proxystore-zmq-test-{}",
        proxystore_core::ObjectId::random()
    ));
    ZmqConnector::bind(&format!("ipc://{}", path.display())).unwrap()
}

mod conformance_tcp {
    proxystore_core::conformance_tests!(super::tcp());
}

mod conformance_ipc {
    proxystore_core::conformance_tests!(super::ipc());
}

/// A data server with three I/O threads (`server_threads`).
fn tcp_server_threads() -> ZmqConnector {
    proxystore_zmq::register();
    let mut config = PeerConfig::new(KIND, "tcp://127.0.0.1:*");
    config.server_threads = 3;
    ZmqConnector::with_config(config).unwrap()
}

mod conformance_tcp_server_threads {
    proxystore_core::conformance_tests!(super::tcp_server_threads());
}

/// Many readers at once against a server with several I/O threads: every
/// large reply (sent without a copy) arrives whole and unchanged.
#[test]
fn concurrent_large_gets_from_a_multi_threaded_server_arrive_intact() {
    let owner = tcp_server_threads();
    let objects: Vec<(Key, Vec<u8>)> = (0..8u8)
        .map(|i| {
            let data: Vec<u8> = (0..(1 << 20) + usize::from(i))
                .map(|j| (j as u8).wrapping_mul(i | 1))
                .collect();
            (owner.put(data.clone().into()).unwrap(), data)
        })
        .collect();
    let reader = Arc::new(ZmqConnector::loopback().unwrap());
    std::thread::scope(|s| {
        for t in 0..6 {
            let (reader, objects) = (Arc::clone(&reader), &objects);
            s.spawn(move || {
                for round in 0..10 {
                    let (key, data) = &objects[(t + round) % objects.len()];
                    let got = reader.get(key).unwrap().unwrap();
                    assert!(got[..] == data[..], "object {key} came back changed");
                }
            });
        }
    });
}

fn short_timeout() -> ZmqConnector {
    let mut config = PeerConfig::new(KIND, "tcp://127.0.0.1:*");
    config.timeout = Duration::from_millis(500);
    ZmqConnector::with_config(config).unwrap()
}

/// Entry point of child processes; a no-op when run as a normal test.
#[test]
fn child_entry() {
    let Some(role) = child_role() else {
        return;
    };
    proxystore_zmq::register();
    match role.as_str() {
        "consumer" => {
            let wire = std::env::var("PROXY_JSON").unwrap();
            let proxy: Proxy<Vec<f64>> = serde_json::from_str(&wire).unwrap();
            let sum: f64 = proxy.resolve().unwrap().iter().sum();
            println!("CHILD_SUM={sum}");
        }
        "owner" => {
            // Put an object, print its key, then serve until killed.
            let c = ZmqConnector::loopback().unwrap();
            let key = c.put(pattern(100_000, 5)).unwrap();
            println!("OWNER_KEY={key}");
            std::thread::sleep(Duration::from_secs(120));
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn another_process_resolves_a_proxy_from_this_one() {
    let store = Store::builder("zmq-two-process", Arc::new(tcp()))
        .cache_size(0)
        .build();
    let values: Vec<f64> = (1..=100_000).map(f64::from).collect();
    let proxy = store.proxy(&values).unwrap();
    let wire = serde_json::to_string(&proxy).unwrap();
    let mut cmd = child_command("child_entry", "consumer");
    cmd.env("PROXY_JSON", &wire);
    let stdout = run_child(cmd);
    assert_eq!(output_field(&stdout, "CHILD_SUM"), "5000050000");
}

#[test]
fn a_killed_owner_gives_an_error_naming_it_not_a_hang() {
    let (mut child, key) = spawn_child_until(child_command("child_entry", "owner"), "OWNER_KEY");
    let key: Key = key.parse().unwrap();
    let reader = short_timeout();
    assert_eq!(reader.get(&key).unwrap(), Some(pattern(100_000, 5)));
    child.kill().unwrap();
    child.wait().unwrap();
    let started = Instant::now();
    match reader.get(&key) {
        Err(Error::PeerUnreachable { address, .. }) => {
            assert_eq!(Some(address.as_str()), key.location())
        }
        other => panic!("expected PeerUnreachable, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn the_server_survives_garbage_and_oversized_frames() {
    let mut config = PeerConfig::new(KIND, "tcp://127.0.0.1:*");
    config.limits.max_object = 1 << 20;
    config.limits.max_items = 1024;
    let owner = ZmqConnector::with_config(config).unwrap();
    let key = owner.put(pattern(1000, 1)).unwrap();
    let address = key.location().unwrap().to_string();
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::DEALER).unwrap();
    raw.set_linger(0).unwrap();
    raw.connect(&address).unwrap();
    raw.send("garbage", 0).unwrap();
    raw.send_multipart([&b"PXSW\x01\x02\x00\x00"[..], b"short"], 0)
        .unwrap();
    // Over MAXMSGSIZE: libzmq drops this connection before buffering it.
    raw.send(vec![0u8; (2 << 20) + 1], 0).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let reader = short_timeout();
    assert_eq!(reader.get(&key).unwrap(), Some(pattern(1000, 1)));
}

#[test]
fn the_standalone_server_outlives_its_producer() {
    let daemon = serve(&PeerConfig::new(KIND, "tcp://127.0.0.1:*")).unwrap();
    let mut config = PeerConfig::new(KIND, "tcp://127.0.0.1:*");
    config.server = Some(daemon.address().to_string());
    let producer = ZmqConnector::with_config(config).unwrap();
    let keys = producer
        .put_batch(vec![pattern(10, 1), pattern(3 << 20, 2)])
        .unwrap();
    drop(producer);
    let reader = short_timeout();
    assert_eq!(
        reader.get_batch(&keys).unwrap(),
        vec![Some(pattern(10, 1)), Some(pattern(3 << 20, 2))]
    );
}

#[test]
fn binding_off_loopback_needs_a_secret() {
    let open = PeerConfig {
        secret: None,
        ..PeerConfig::new(KIND, "tcp://0.0.0.0:*")
    };
    match ZmqConnector::with_config(open).unwrap().put(pattern(1, 1)) {
        Err(Error::Config(msg)) => assert!(msg.contains("PROXYSTORE_ZMQ_SECRET"), "{msg}"),
        other => panic!("expected a config error, got {other:?}"),
    }
    let guarded = PeerConfig {
        secret: Some("s3cret".into()),
        ..PeerConfig::new(KIND, "tcp://0.0.0.0:*")
    };
    let owner = ZmqConnector::with_config(guarded).unwrap();
    let key = owner.put(pattern(10, 1)).unwrap();
    let port = key
        .location()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let key = Key::new(key.id())
        .with_size(10)
        .with_location(&format!("tcp://127.0.0.1:{port}"))
        .unwrap();
    assert!(
        matches!(short_timeout().get(&key), Err(Error::Unauthorized { .. })),
        "no secret must be refused"
    );
    let friend = ZmqConnector::with_config(PeerConfig {
        secret: Some("s3cret".into()),
        ..PeerConfig::new(KIND, "tcp://127.0.0.1:*")
    })
    .unwrap();
    assert_eq!(friend.get(&key).unwrap(), Some(pattern(10, 1)));
}

#[test]
fn a_bad_endpoint_is_a_config_error() {
    assert!(matches!(
        ZmqConnector::bind("bogus://x").and_then(|c| c.put(pattern(1, 1))),
        Err(Error::Config(_))
    ));
}

#[test]
fn a_config_without_an_address_serves_on_the_default_endpoint() {
    proxystore_zmq::register();
    let c = proxystore_core::connector_from_config(&proxystore_core::ConnectorConfig::new(KIND))
        .expect("a zmq config needs no address");
    let key = c.put(pattern(10, 1)).unwrap();
    assert!(
        key.to_string().contains("@tcp://127.0.0.1:"),
        "served on the default endpoint: {key}"
    );
    assert_eq!(c.get(&key).unwrap(), Some(pattern(10, 1)));
}
