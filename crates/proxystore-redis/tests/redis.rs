//! The Redis connector on the in-process mock command layer, and against a
//! real `redis-server` the tests start on a free loopback port (skipped,
//! saying why, where redis-server is not installed; CI installs it).

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::sync::Arc;
use std::time::Duration;

use proxystore_core::testing::{
    child_command, child_role, output_field, pattern, run_child, WithGuard,
};
use proxystore_core::{Connector, Error, LeaseLifetime, Lifetime, Proxy, Store};
use proxystore_redis::mock::MockRedis;
use proxystore_redis::server::{available, LocalRedisServer};
use proxystore_redis::{RedisConfig, RedisConnector};

fn mock() -> RedisConnector {
    proxystore_redis::register();
    RedisConnector::open(&format!("mock://{}", proxystore_core::ObjectId::random())).unwrap()
}

/// A fresh server for one test, stopped when dropped; `None` (with a
/// printed reason) where redis-server is missing.
fn server() -> Option<LocalRedisServer> {
    if !available() {
        eprintln!("SKIP: redis-server not installed (ci/install-deps.sh installs it)");
        return None;
    }
    Some(LocalRedisServer::start().unwrap())
}

/// A connector on its own real server, or on the mock when there is no
/// server (conformance still runs; the skip is printed).
fn real() -> WithGuard<RedisConnector, Option<LocalRedisServer>> {
    proxystore_redis::register();
    let server = server();
    let url = server.as_ref().map_or_else(
        || format!("mock://{}", proxystore_core::ObjectId::random()),
        LocalRedisServer::url,
    );
    WithGuard::new(RedisConnector::open(&url).unwrap(), server)
}

mod conformance_mock {
    proxystore_core::conformance_tests!(super::mock());
}

mod conformance_real {
    proxystore_core::conformance_tests!(super::real());
}

/// Python ProxyStore's key form: a bare hyphenated UUID.
fn uuid_keys(url: &str) -> RedisConnector {
    let mut config = RedisConfig::new(url);
    config.prefix = String::new();
    config.key_format = proxystore_redis::KeyFormat::Uuid;
    RedisConnector::with_config(config).unwrap()
}

mod conformance_uuid_keys {
    proxystore_core::conformance_tests!({
        proxystore_redis::register();
        super::uuid_keys(&format!("mock://{}", proxystore_core::ObjectId::random()))
    });
}

#[test]
fn uuid_keys_are_pythons_form_and_survive_the_config() {
    let Some(server) = server() else { return };
    let c = uuid_keys(&server.url());
    let key = c.put(pattern(100, 1)).unwrap();
    let id = format!("{:032x}", key.id().as_u128());
    let want = format!(
        "{}-{}-{}-{}-{}",
        &id[..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..]
    );
    assert_eq!(c.redis_key(&key), want);
    let config = c.config();
    assert_eq!(config.get("key_format"), Some("uuid"));
    assert_eq!(config.get("prefix"), Some(""));
    let rebuilt = proxystore_core::connector_from_config(&config).unwrap();
    assert_eq!(rebuilt.get(&key).unwrap(), Some(pattern(100, 1)));
    let bad = config.clone().with("key_format", "base64");
    let err = proxystore_core::connector_from_config(&bad).unwrap_err();
    assert!(err.to_string().contains("key_format"), "{err}");
}

#[test]
fn child_entry() {
    let Some(role) = child_role() else {
        return;
    };
    assert_eq!(role, "consumer");
    proxystore_redis::register();
    let proxy: Proxy<Vec<u64>> =
        serde_json::from_str(&std::env::var("PROXY_JSON").unwrap()).unwrap();
    let sum: u64 = proxy.resolve().unwrap().iter().sum();
    println!("CHILD_SUM={sum}");
}

#[test]
fn another_process_resolves_a_proxy_through_the_server() {
    let Some(server) = server() else { return };
    let store = Store::builder(
        "redis-two-process",
        Arc::new(RedisConnector::open(&server.url()).unwrap()),
    )
    .cache_size(0)
    .build();
    let proxy = store.proxy(&(1..=1000u64).collect::<Vec<_>>()).unwrap();
    let mut cmd = child_command("child_entry", "consumer");
    cmd.env("PROXY_JSON", serde_json::to_string(&proxy).unwrap());
    let stdout = run_child(cmd);
    assert_eq!(output_field(&stdout, "CHILD_SUM"), "500500");
}

#[test]
fn a_killed_server_is_an_error_naming_it_not_a_hang() {
    let Some(mut server) = server() else { return };
    let mut config = RedisConfig::new(server.url());
    config.timeout = Duration::from_millis(500);
    let c = RedisConnector::with_config(config).unwrap();
    let key = c.put(pattern(100, 1)).unwrap();
    server.stop();
    let started = std::time::Instant::now();
    match c.get(&key) {
        Err(Error::PeerUnreachable { address, .. }) => assert_eq!(address, server.url()),
        other => panic!("expected PeerUnreachable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_mock_server_going_down_is_unreachable() {
    let url = format!("mock://{}", proxystore_core::ObjectId::random());
    let c = RedisConnector::open(&url).unwrap();
    let key = c.put(pattern(10, 1)).unwrap();
    MockRedis::set_down(&url, true).unwrap();
    assert!(matches!(c.get(&key), Err(Error::PeerUnreachable { .. })));
    MockRedis::set_down(&url, false).unwrap();
    assert_eq!(c.get(&key).unwrap(), Some(pattern(10, 1)));
}

fn lease_sets_a_ttl(c: RedisConnector) {
    let store = Store::builder(
        format!("lease-{}", proxystore_core::ObjectId::random()),
        Arc::new(c),
    )
    .build();
    let lease = LeaseLifetime::new(Duration::from_secs(30)).unwrap();
    let key = store.put_bytes(pattern(10, 1)).unwrap();
    lease.add_key(&store, key.clone()).unwrap();
    // The watcher would evict in 30 s; the server-side TTL is what we check.
    let c = store.connector();
    assert!(c.expire_after(&key, Duration::from_millis(50)).unwrap());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !store.exists(&key).unwrap(),
        "TTL did not expire the object"
    );
    lease.close().unwrap();
}

#[test]
fn lease_lifetimes_become_ttls_mock() {
    lease_sets_a_ttl(mock());
}

#[test]
fn lease_lifetimes_become_ttls_real() {
    let Some(server) = server() else { return };
    lease_sets_a_ttl(RedisConnector::open(&server.url()).unwrap());
}

#[test]
fn objects_over_the_limit_are_refused_before_sending() {
    let mut config = RedisConfig::new(format!("mock://{}", proxystore_core::ObjectId::random()));
    config.max_object = 100;
    let c = RedisConnector::with_config(config).unwrap();
    assert!(matches!(
        c.put(pattern(101, 1)),
        Err(Error::TooLarge {
            size: 101,
            limit: 100,
            ..
        })
    ));
}

#[test]
fn a_bad_url_is_a_config_error() {
    assert!(matches!(
        RedisConnector::open("http://nope"),
        Err(Error::Config(_))
    ));
}

#[test]
fn a_64_mib_object_round_trips_on_the_real_server() {
    let Some(server) = server() else { return };
    let c = RedisConnector::open(&server.url()).unwrap();
    let data = pattern(64 << 20, 3);
    let key = c.put(data.clone()).unwrap();
    assert_eq!(c.get(&key).unwrap(), Some(data));
    c.evict(&key).unwrap();
}

#[test]
fn a_unix_socket_server_works() {
    if !available() {
        eprintln!("SKIP: redis-server not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!(
        "proxystore-redis-{}",
        proxystore_core::ObjectId::random()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("redis.sock");
    let server = LocalRedisServer::start_with(&["--unixsocket", sock.to_str().unwrap()]).unwrap();
    let c = RedisConnector::open(&format!("unix://{}", sock.display())).unwrap();
    let key = c.put(pattern(3000, 4)).unwrap();
    assert_eq!(c.get(&key).unwrap(), Some(pattern(3000, 4)));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn passwords_are_used_and_checked() {
    if !available() {
        eprintln!("SKIP: redis-server not installed");
        return;
    }
    let server = LocalRedisServer::start_with(&["--requirepass", "s3cret"]).unwrap();
    let with = |pw: Option<&str>| {
        let mut config = RedisConfig::new(server.url());
        config.password = pw.map(str::to_string);
        RedisConnector::with_config(config).unwrap()
    };
    let good = with(Some("s3cret"));
    let key = good.put(pattern(10, 1)).unwrap();
    assert_eq!(good.get(&key).unwrap(), Some(pattern(10, 1)));
    assert!(
        !good.config().options.contains_key("password"),
        "passwords never go into configs"
    );
    assert!(matches!(
        with(Some("wrong")).get(&key),
        Err(Error::Config(_))
    ));
    assert!(matches!(with(None).get(&key), Err(Error::Config(_))));
}
