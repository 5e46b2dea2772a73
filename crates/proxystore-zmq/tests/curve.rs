//! ZeroMQ CURVE between readers and a data server off loopback
//! (`tcp://0.0.0.0`, which `auto` treats as a network endpoint): the right
//! key reads, a wrong or missing key is a clear `Unauthorized` well within
//! the timeout, loopback stays plain, and the secret key never appears in
//! a config, a proxy or the log.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::io::Write;
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use proxystore_core::{Bytes, Connector, ConnectorConfig, Error, Store};
use proxystore_zmq::curve::{CurveKeys, SECRET_KEY_ENV, SERVER_KEY_ENV};
use proxystore_zmq::{PeerConfig, ZmqConnector, ZmqConnectorExt, KIND};

/// The request token every connector here shares (from the environment).
const TOKEN: &str = "curve-test-token-7f3a";
const TIMEOUT: Duration = Duration::from_secs(5);

/// Everything logged at any level by any thread of this test binary.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The job's key pair, put in the environment (once, before any
/// connector of this binary reads it), and the log captured.
fn keys() -> &'static CurveKeys {
    static KEYS: OnceLock<CurveKeys> = OnceLock::new();
    static SETUP: Once = Once::new();
    SETUP.call_once(|| {
        let keys = CurveKeys::generate().unwrap();
        std::env::set_var(SERVER_KEY_ENV, &keys.public);
        std::env::set_var(SECRET_KEY_ENV, &keys.secret);
        std::env::set_var("PROXYSTORE_ZMQ_SECRET", TOKEN);
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(|| LogWriter)
            .init();
        KEYS.set(keys).unwrap();
    });
    KEYS.get().unwrap()
}

fn connector(address: &str, options: &[(&str, &str)]) -> Result<ZmqConnector, Error> {
    keys();
    let mut config = ConnectorConfig::new(KIND).with("address", address);
    for (name, value) in options {
        config = config.with(*name, *value);
    }
    let mut peer = PeerConfig::from_connector_config(&config)?;
    peer.timeout = TIMEOUT;
    ZmqConnector::with_config(peer)
}

/// An owner serving off loopback, holding one object.
fn owner_with_object() -> (ZmqConnector, proxystore_core::Key, Bytes) {
    let owner = connector("tcp://0.0.0.0:*", &[]).unwrap();
    let data = Bytes::from(vec![42u8; 100_000]);
    let key = owner.put(data.clone()).unwrap();
    (owner, key, data)
}

#[test]
fn the_right_key_reads_and_configs_carry_only_the_public_key() {
    let keys = keys();
    let (owner, key, data) = owner_with_object();
    let config = owner.config();
    assert_eq!(config.get("curve_server_key"), Some(keys.public.as_str()));
    // A reader rebuilt from the config alone (as a consumer of a proxy).
    let mut peer = PeerConfig::from_connector_config(&config).unwrap();
    peer.timeout = TIMEOUT;
    let reader = ZmqConnector::with_config(peer).unwrap();
    assert_eq!(reader.get(&key).unwrap().unwrap(), data);

    // Neither the config nor a serialized proxy holds the secret key or
    // the token.
    let store = Store::new("curve-proxy", owner);
    let proxy = store.proxy(&vec![1.5f64, 2.5]).unwrap();
    let wire = serde_json::to_string(&proxy).unwrap();
    let config_text = serde_json::to_string(&config).unwrap();
    for text in [&wire, &config_text] {
        assert!(!text.contains(&keys.secret), "secret key leaked: {text}");
        assert!(!text.contains(TOKEN), "token leaked: {text}");
    }
    assert!(
        wire.contains(&keys.public),
        "the proxy must carry the public key"
    );
    assert_eq!(*proxy.resolve().unwrap(), vec![1.5, 2.5]);
    store.close().unwrap();
}

#[test]
fn a_reader_with_the_wrong_key_gets_a_clear_error_then_the_right_one_reads() {
    let (_owner, key, data) = owner_with_object();
    let other = CurveKeys::generate().unwrap();
    let wrong = connector("tcp://127.0.0.1:*", &[("curve_server_key", &other.public)]).unwrap();
    let started = Instant::now();
    let err = wrong.get(&key).unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, Error::Unauthorized { connector, reason, .. }
            if connector == "zmq" && reason.contains("handshake") && reason.contains("curve_server_key")),
        "{err}"
    );
    assert!(
        took < TIMEOUT,
        "the error took {took:?}, the timeout is {TIMEOUT:?}"
    );
    eprintln!("wrong key: Unauthorized after {took:?} (timeout {TIMEOUT:?})");
    // The healthy reader is unaffected.
    let right = connector("tcp://127.0.0.1:*", &[]).unwrap();
    assert_eq!(right.get(&key).unwrap().unwrap(), data);
}

#[test]
fn a_reader_without_curve_gets_a_clear_error() {
    let (_owner, key, _) = owner_with_object();
    let plain = connector("tcp://127.0.0.1:*", &[("curve", "off")]).unwrap();
    let started = Instant::now();
    let err = plain.get(&key).unwrap_err();
    assert!(
        matches!(&err, Error::Unauthorized { reason, .. } if reason.contains("requires CURVE")),
        "{err}"
    );
    let took = started.elapsed();
    assert!(took < TIMEOUT);
    eprintln!("no CURVE: Unauthorized after {took:?} (timeout {TIMEOUT:?})");
}

#[test]
fn loopback_stays_plain_so_readers_without_keys_work() {
    keys();
    let owner = ZmqConnector::loopback().unwrap();
    let key = owner.put(Bytes::from_static(b"plain")).unwrap();
    assert_eq!(owner.config().get("curve"), None);
    let plain = connector("tcp://127.0.0.1:*", &[("curve", "off")]).unwrap();
    assert_eq!(&plain.get(&key).unwrap().unwrap()[..], b"plain");
}

#[test]
fn curve_on_covers_loopback_too() {
    keys();
    let owner = connector("tcp://127.0.0.1:*", &[("curve", "on")]).unwrap();
    let key = owner.put(Bytes::from_static(b"sealed")).unwrap();
    assert_eq!(owner.config().get("curve"), Some("on"));
    let reader = connector("tcp://127.0.0.1:*", &[("curve", "on")]).unwrap();
    assert_eq!(&reader.get(&key).unwrap().unwrap()[..], b"sealed");
    // A plain reader is refused: the server speaks only CURVE. (On
    // loopback a plain reader does not watch its handshake, so this is
    // its timeout, kept short.)
    let mut config = PeerConfig::new(KIND, "tcp://127.0.0.1:*");
    config.transport.insert("curve".into(), "off".into());
    config.timeout = Duration::from_millis(500);
    let plain = ZmqConnector::with_config(config).unwrap();
    let err = plain.get(&key).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unauthorized { .. } | Error::PeerUnreachable { .. }
        ),
        "{err}"
    );
}

#[test]
fn secret_keys_in_a_config_and_malformed_keys_are_config_errors() {
    let keys = keys();
    let err = connector("tcp://127.0.0.1:*", &[("curve_secret_key", &keys.secret)]).unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains(SECRET_KEY_ENV) && !m.contains(&keys.secret)),
        "{err}"
    );
    let err = connector("tcp://127.0.0.1:*", &[("curve_server_key", "not-a-key")]).unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("curve_server_key")),
        "{err}"
    );
    let err = connector("tcp://127.0.0.1:*", &[("curve", "maybe")]).unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("auto, on or off")),
        "{err}"
    );
}

#[test]
fn the_log_never_holds_the_secret_key_or_the_token() {
    let keys = keys();
    // Traffic that logs: a server binding, handshakes, a failed one.
    let (_owner, key, _) = owner_with_object();
    let reader = connector("tcp://127.0.0.1:*", &[]).unwrap();
    reader.get(&key).unwrap();
    let plain = connector("tcp://127.0.0.1:*", &[("curve", "off")]).unwrap();
    let _ = plain.get(&key);
    let _ = format!("{reader:?} {:?}", reader.peer_config());
    tracing::debug!(layer = ?reader, "connectors in this test");
    let log = String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned();
    assert!(
        log.contains("zmq data server binding"),
        "the log captured nothing: {log}"
    );
    assert!(!log.contains(&keys.secret), "secret key in the log");
    assert!(!log.contains(TOKEN), "token in the log");
}
