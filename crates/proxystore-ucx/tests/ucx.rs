//! The UCX connector over real UCX: the shared conformance suite, objects
//! moving between separate OS processes over `UCX_TLS=tcp` and over shared
//! memory, and a killed owner.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::process::Child;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use proxystore_core::testing::{
    self, child_command, child_role, output_field, pattern, spawn_child_until,
};
use proxystore_core::{Bytes, Connector, Error, Key};
use proxystore_ucx::{PeerConfig, UcxConnector, UcxConnectorExt, ADDRESS, KIND};

const SECRET: &str = "ucx-test-secret";

/// UCX workers are reachable over the network, so the connector wants a
/// shared secret; children inherit it.
fn with_secret() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| std::env::set_var("PROXYSTORE_UCX_SECRET", SECRET));
}

fn ucx() -> UcxConnector {
    with_secret();
    proxystore_ucx::register();
    UcxConnector::open().unwrap()
}

mod conformance {
    proxystore_core::conformance_tests!(super::ucx());
}

#[test]
fn child_entry() {
    let Some(role) = child_role() else {
        return;
    };
    let c = ucx();
    match role.as_str() {
        "owner" => testing::serve_as_owner(&c),
        "consumer" => {
            let keys = testing::keys_from_env();
            let got = c.get_batch(&keys).unwrap();
            let want: Vec<_> = testing::owner_objects().into_iter().map(Some).collect();
            assert_eq!(got, want);
            assert!(c.exists(&keys[1]).unwrap());
            c.evict(&keys[1]).unwrap();
            assert!(!c.exists(&keys[1]).unwrap());
            println!("ONE_SIDED_READS={}", proxystore_ucx::one_sided_reads());
            println!("CONSUMER=ok");
        }
        "slabs" => slab_reuse(&c),
        "dead_owner_reader" => {
            let key: Key = std::env::var("KEY").unwrap().parse().unwrap();
            let mut config = PeerConfig::new(KIND, ADDRESS);
            config.timeout = Duration::from_secs(2);
            let reader = UcxConnector::with_config(config).unwrap();
            assert_eq!(reader.get(&key).unwrap().map(|b| b.len()), Some(3 << 20));
            let pid = std::env::var("OWNER_PID").unwrap();
            assert!(std::process::Command::new("kill")
                .args(["-9", &pid])
                .status()
                .unwrap()
                .success());
            std::thread::sleep(Duration::from_millis(200));
            let started = Instant::now();
            let err = reader.get(&key).unwrap_err();
            assert!(
                matches!(err, Error::PeerUnreachable { .. } | Error::Timeout { .. }),
                "{err}"
            );
            println!("DEAD_OWNER_MS={}", started.elapsed().as_millis());
        }
        other => panic!("unknown role {other}"),
    }
}

/// Eight threads share one reader and fetch objects of three sizes from
/// `owner` at once: the reader's worker lock is contended by callers
/// progressing it, and every reply reaches the right thread.
fn many_threads_read(owner: &UcxConnector, reader: &Arc<UcxConnector>) {
    let objects: Vec<(Key, Bytes)> = [1000usize, 100 << 10, 1 << 20]
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let data = pattern(len, 40 + i as u64);
            (owner.put(data.clone()).unwrap(), data)
        })
        .collect();
    let objects = Arc::new(objects);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (reader, objects) = (Arc::clone(reader), Arc::clone(&objects));
            std::thread::spawn(move || {
                for i in 0..30 {
                    let (key, data) = &objects[(t + i) % objects.len()];
                    assert_eq!(reader.get(key).unwrap().as_ref(), Some(data));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn many_threads_read_through_one_connector() {
    let owner = ucx();
    let reader = Arc::new(ucx());
    many_threads_read(&owner, &reader);
}

/// With one-sided reads on, a put object is staged in a registered slab;
/// a reader's one-sided get releases it, so once the object is evicted the
/// next object of its size class lands in the same slab.
fn slab_reuse(owner: &UcxConnector) {
    let reader = Arc::new(UcxConnector::open().unwrap());
    let data = pattern(1 << 20, 3);
    let key = owner.put(data.clone()).unwrap();
    let stored = owner.get(&key).unwrap().unwrap();
    assert_ne!(
        stored.as_ptr(),
        data.as_ptr(),
        "the object was staged (copied)"
    );
    let slab = stored.as_ptr();
    drop(stored);
    assert_eq!(reader.get(&key).unwrap(), Some(data.clone()));
    assert_eq!(proxystore_ucx::one_sided_reads(), 1);
    // Released well within the 5 s after which unreleased registrations
    // are swept anyway.
    let reused = testing::staged_slab_is_reused(owner, reader.as_ref(), &key, slab);
    println!("SLAB_REUSED={reused}");
    // An object put into a standalone server arrives by active message and
    // is registered in place (not staged) when a reader asks for it.
    // A one-sided read over the reader's limits is refused, not allocated.
    let big = owner.put(pattern(3 << 20, 8)).unwrap();
    let err = limited_reader(1 << 20).get(&big).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    let mut config = PeerConfig::new(KIND, ADDRESS);
    config.secret = Some(SECRET.into());
    let server = proxystore_ucx::serve(&config).unwrap();
    config.server = Some(server.address().to_string());
    let client = UcxConnector::with_config(config).unwrap();
    let before = proxystore_ucx::one_sided_reads();
    let key = client.put(pattern(3 << 20, 6)).unwrap();
    assert_eq!(reader.get(&key).unwrap(), Some(pattern(3 << 20, 6)));
    assert_eq!(proxystore_ucx::one_sided_reads(), before + 1);
    println!("SERVED_ONE_SIDED=ok");
    let before = proxystore_ucx::one_sided_reads();
    many_threads_read(owner, &reader);
    assert!(proxystore_ucx::one_sided_reads() > before + 100);
    println!("THREADS_ONE_SIDED=ok");
}

#[test]
fn released_slabs_are_reused_and_served_objects_read_one_sided_over_shared_memory() {
    with_secret();
    let out = child_command("child_entry", "slabs")
        .env("UCX_TLS", "posix,cma,self")
        .env("PROXYSTORE_UCX_ONE_SIDED", "on")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(output_field(&stdout, "SLAB_REUSED"), "true");
    assert_eq!(output_field(&stdout, "SERVED_ONE_SIDED"), "ok");
    assert_eq!(output_field(&stdout, "THREADS_ONE_SIDED"), "ok");
}

/// Starts an owner process with `tls` and returns it with its keys.
fn owner(tls: Option<&str>) -> (Child, String) {
    with_secret();
    let mut cmd = child_command("child_entry", "owner");
    if let Some(tls) = tls {
        cmd.env("UCX_TLS", tls);
    }
    spawn_child_until(cmd, "OWNER_KEYS")
}

fn two_processes(tls: &str) {
    two_processes_with(tls, "off");
}

fn two_processes_with(tls: &str, one_sided: &str) {
    let (mut owner, keys) = owner(Some(tls));
    let out = child_command("child_entry", "consumer")
        .env("UCX_TLS", tls)
        .env("KEYS", &keys)
        .env("PROXYSTORE_UCX_ONE_SIDED", one_sided)
        .output()
        .unwrap();
    owner.kill().unwrap();
    owner.wait().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "consumer failed over {tls}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(output_field(&stdout, "CONSUMER"), "ok");
    let reads: u64 = output_field(&stdout, "ONE_SIDED_READS").parse().unwrap();
    let expected = u64::from(one_sided == "on");
    assert_eq!(
        reads, expected,
        "one-sided reads of the 3 MiB object with PROXYSTORE_UCX_ONE_SIDED={one_sided}"
    );
}

#[test]
fn two_processes_over_tcp() {
    two_processes("tcp");
}

#[test]
fn two_processes_over_shared_memory() {
    two_processes("posix,cma,self");
}

#[test]
fn two_processes_reading_one_sided_over_shared_memory() {
    // The 3 MiB object is above the one-sided threshold: the owner registers
    // it and the reader ucp_gets it.
    two_processes_with("posix,cma,self", "on");
}

#[test]
fn two_processes_reading_one_sided_over_tcp() {
    two_processes_with("tcp", "on");
}

#[test]
fn a_killed_owner_gives_an_error_not_a_hang() {
    let (child, keys) = owner(None);
    let key: Key = keys.split(' ').next().unwrap().parse().unwrap();
    let mut config = PeerConfig::new(KIND, ADDRESS);
    config.timeout = Duration::from_secs(2);
    let reader = UcxConnector::with_config(config).unwrap();
    let limit = Duration::from_secs(10);
    testing::get_from_killed_owner_fails(&reader, &key, child, "ucx://", limit);
}

#[test]
fn a_killed_owner_gives_an_error_with_peer_failure_detection_on() {
    // PROXYSTORE_UCX_PEER_ERRORS=on: the reader's endpoints ask UCX to
    // report peer failures (over tcp, where UCX can).
    let (mut owner, keys) = owner(Some("tcp"));
    let key = keys.split(' ').next().unwrap().to_string();
    let stdout = proxystore_core::testing::run_child({
        let mut cmd = child_command("child_entry", "dead_owner_reader");
        cmd.env("UCX_TLS", "tcp")
            .env("PROXYSTORE_UCX_PEER_ERRORS", "on")
            .env("KEY", key)
            .env("OWNER_PID", owner.id().to_string());
        cmd
    });
    owner.wait().unwrap();
    let ms: u64 = output_field(&stdout, "DEAD_OWNER_MS").parse().unwrap();
    assert!(ms < 10_000, "took {ms} ms");
}

/// A reader whose limits allow at most `max_object` bytes per object.
fn limited_reader(max_object: u64) -> UcxConnector {
    let mut config = PeerConfig::new(KIND, ADDRESS);
    config.limits.max_object = max_object;
    config.limits.max_items = 16;
    config.timeout = Duration::from_secs(5);
    UcxConnector::with_config(config).unwrap()
}

#[test]
fn a_reply_over_the_readers_limits_is_refused_before_it_is_received() {
    let owner = ucx();
    let key = owner.put(pattern(3 << 20, 2)).unwrap();
    let reader = limited_reader(1 << 20);
    let started = Instant::now();
    let err = reader.get(&key).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "refused, not timed out"
    );
    // Within the limits the same reader works.
    let small = owner.put(pattern(1000, 2)).unwrap();
    assert_eq!(reader.get(&small).unwrap(), Some(pattern(1000, 2)));
}

#[test]
fn a_put_over_the_servers_limits_is_refused_not_left_unanswered() {
    with_secret();
    let mut config = PeerConfig::new(KIND, ADDRESS);
    config.secret = Some(SECRET.into());
    config.limits.max_object = 1 << 20;
    config.limits.max_items = 16;
    let server = proxystore_ucx::serve(&config).unwrap();
    let mut client_config = PeerConfig::new(KIND, ADDRESS);
    client_config.secret = Some(SECRET.into());
    client_config.server = Some(server.address().to_string());
    client_config.timeout = Duration::from_secs(5);
    let client = UcxConnector::with_config(client_config).unwrap();
    let started = Instant::now();
    let err = client.put(pattern(3 << 20, 1)).unwrap_err();
    // The server's error reply, not a timeout.
    assert!(err.to_string().contains("too large"), "{err}");
    assert!(!matches!(
        err,
        Error::Timeout { .. } | Error::PeerUnreachable { .. }
    ));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "refused, not timed out"
    );
    // The server still takes what fits.
    let key = client.put(pattern(1000, 1)).unwrap();
    assert_eq!(client.get(&key).unwrap(), Some(pattern(1000, 1)));
}

#[test]
fn a_malformed_owner_address_is_an_invalid_key() {
    let c = ucx();
    let key = Key::random()
        .with_size(3)
        .with_location("ucx://!!notbase64")
        .unwrap();
    assert!(
        matches!(c.get(&key), Err(Error::InvalidKey { .. })),
        "{:?}",
        c.get(&key)
    );
}

#[test]
fn garbage_and_damaged_owner_addresses_are_invalid_keys_not_aborts() {
    // UCX asserts (aborts the process) on a malformed worker address; none
    // may reach it from a key.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let c = ucx();
    let real = c.put(pattern(10, 1)).unwrap();
    let real_address = real.location().unwrap().to_string();
    let mut addresses: Vec<String> = (0..64u64)
        .map(|seed| format!("ucx://{}", b64.encode(pattern(8 + seed as usize * 5, seed))))
        .collect();
    addresses.push(real_address[..real_address.len() - 4].to_string());
    let mut flipped = real_address.clone().into_bytes();
    let mid = flipped.len() / 2;
    flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
    addresses.push(String::from_utf8(flipped).unwrap());
    for address in addresses {
        let key = Key::random().with_size(10).with_location(&address).unwrap();
        match c.get(&key) {
            Err(Error::InvalidKey { .. }) => {}
            other => panic!("{address}: expected InvalidKey, got {other:?}"),
        }
    }
    assert_eq!(c.get(&real).unwrap(), Some(pattern(10, 1)));
}

#[test]
fn the_raw_baseline_moves_payloads_both_ways() {
    let payload = pattern(1 << 20, 9);
    let raw = proxystore_ucx::baseline::RawAm::start(payload.clone()).unwrap();
    assert_eq!(raw.get().unwrap(), payload);
    raw.put(pattern(5000, 1)).unwrap();
    assert_eq!(raw.get().unwrap().len(), 1 << 20);
}

#[test]
fn ucx_serves_only_inline_and_bind_says_so() {
    // Requests are answered on the worker's progress thread (serve_inline);
    // a server loop of one's own is refused with a typed error.
    use proxystore_peer::wire::Limits;
    use proxystore_peer::SocketLayer;
    let layer = proxystore_ucx::UcxLayer::default();
    let err = layer.bind(ADDRESS, &Limits::default()).err();
    assert!(matches!(err, Some(Error::Unsupported { .. })), "{err:?}");
}
