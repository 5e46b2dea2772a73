//! Faults on the UCX connector over real UCX with `UCX_TLS=tcp` and
//! peer-failure detection on (see [`env`]) (issue 15 item 3), one test each: an owner killed while a 64 MiB reply is in
//! flight, an owner restarted while the reader holds a cached endpoint to
//! it, a peer that accepts and never answers (a SIGSTOPped owner: its
//! kernel accepts, it never progresses), and the owner's network
//! interface going down. Each ends in a typed error within the configured
//! timeout + 1 s, leaks no fd or thread (counted in /proc/self after the
//! connectors are dropped), and the same reader then reads from a healthy
//! owner. The helpers live in `proxystore_core::testing::faults`; run with
//! `--nocapture` to see the measured times (`FAULT ...` lines).
//!
//! Not here: a truncated frame. UCX delivers an active message whole or not
//! at all, so a cut reply is an owner dying mid-reply (the first test); a
//! whole but malformed reply body is the peer wire decoder's, shared with
//! zmq and fuzzed.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::sync::Once;
use std::time::{Duration, Instant};

use proxystore_core::testing::faults::{
    assert_link_down_fails_typed, assert_typed_error_in_time, get_killing_owner, serial, signal,
    skip, unreachable_or_timeout, ChildGuard, Resources, ServerHost,
};
use proxystore_core::testing::{child_command, child_role, pattern, spawn_child_until};
use proxystore_core::{Connector, Key};
use proxystore_ucx::{PeerConfig, UcxConnector, UcxConnectorExt, ADDRESS, KIND};

/// The configured timeout of every reader here.
const TIMEOUT: Duration = Duration::from_secs(2);
/// After a warm-up connector made UCX's process-wide state (its async
/// thread, event fds), fds and threads are back exactly.
const SLACK: Resources = Resources { fds: 0, threads: 0 };

/// Every process here (children inherit it): UCX over TCP only, so the
/// faults are network faults, and the shared secret UCX workers want.
///
/// Peer-failure detection is the default (`PROXYSTORE_UCX_PEER_ERRORS`
/// unset): without it UCX 1.13.1 can abort the reader's process when an
/// owner it was still connecting to dies (an assertion in
/// `ucp_request_send_state_ff` while the failed endpoint's pending wireup
/// messages are purged; the silent-owner test hit it in 2 runs of 6, never
/// with detection on). `PROXYSTORE_UCX_PEER_ERRORS=off` runs these tests
/// without it, to reproduce that.
fn env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("UCX_TLS", "tcp");
        std::env::set_var("PROXYSTORE_UCX_SECRET", "ucx-faults-secret");
    });
}

fn reader() -> UcxConnector {
    env();
    let mut config = PeerConfig::new(KIND, ADDRESS);
    config.timeout = TIMEOUT;
    UcxConnector::with_config(config).unwrap()
}

/// UCX's process-wide state exists before the baseline is taken: one
/// connector made, used and dropped.
fn warm_up() {
    let c = reader();
    let key = c.put(pattern(10, 1)).unwrap();
    assert!(c.get(&key).unwrap().is_some());
}

/// After a fault, the same reader still reads from a healthy owner.
fn healthy_get(reader: &UcxConnector) {
    let owner = UcxConnector::open().unwrap();
    let key = owner.put(pattern(1000, 3)).unwrap();
    assert_eq!(reader.get(&key).unwrap(), Some(pattern(1000, 3)));
}

/// Entry point of child processes; a no-op when run as a normal test.
#[test]
fn child_entry() {
    let Some(role) = child_role() else {
        return;
    };
    env();
    assert_eq!(role, "owner");
    // Serve one object of SIZE bytes until killed.
    let size: usize = std::env::var("SIZE").unwrap().parse().unwrap();
    let owner = UcxConnector::open().unwrap();
    let key = owner.put(pattern(size, 9)).unwrap();
    println!("OWNER_KEY={key}");
    std::thread::sleep(Duration::from_secs(60));
}

fn spawn_owner(size: usize) -> (ChildGuard, Key) {
    env();
    let mut cmd = child_command("child_entry", "owner");
    cmd.env("SIZE", size.to_string());
    let (child, key) = spawn_child_until(cmd, "OWNER_KEY");
    (ChildGuard(child), key.parse().unwrap())
}

#[test]
fn owner_killed_mid_transfer_of_64_mib() {
    let _serial = serial();
    warm_up();
    let base = Resources::now();
    let size = 64 << 20;
    let reader = reader();
    // Tried with a fresh owner until the kill lands mid-reply (at most 5).
    let (result, started, whole) = (1..=5)
        .find_map(|_| {
            let (mut owner, key) = spawn_owner(size);
            let got = get_killing_owner(&reader, &key, size, owner.id());
            owner.kill();
            got
        })
        .expect("a kill mid-transfer in 5 attempts");
    println!("(a whole 64 MiB get took {} ms)", whole.as_millis());
    assert_typed_error_in_time(
        "ucx owner killed mid-transfer (64 MiB)",
        result,
        unreachable_or_timeout,
        started,
        TIMEOUT,
    );
    healthy_get(&reader);
    drop(reader);
    base.assert_back(SLACK, "owner killed mid-transfer");
}

/// A UCX owner restarted is a new worker with a new address (keys name the
/// worker, not a port), so "restarted on the same address" has no UCX
/// form. What matters is the same: the reader's cached endpoint to the
/// dead owner does not poison it. The next get, from the restarted owner,
/// succeeds; one of the dead owner's keys is a typed error at the timeout.
#[test]
fn owner_restarted_while_the_reader_holds_an_endpoint() {
    let _serial = serial();
    warm_up();
    let base = Resources::now();
    let reader = reader();
    let (mut first, old) = spawn_owner(100_000);
    // Several threads at once: several pooled connections to the owner.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10 {
                    assert_eq!(reader.get(&old).unwrap(), Some(pattern(100_000, 9)));
                }
            });
        }
    });
    first.kill();
    let (_second, new) = spawn_owner(100_000);
    let started = Instant::now();
    assert_eq!(reader.get(&new).unwrap(), Some(pattern(100_000, 9)));
    println!(
        "FAULT ucx owner restarted: first get from the new owner Ok after {} ms",
        started.elapsed().as_millis()
    );
    let started = Instant::now();
    assert_typed_error_in_time(
        "ucx get from the owner before its restart",
        reader.get(&old),
        unreachable_or_timeout,
        started,
        TIMEOUT,
    );
    assert_eq!(reader.get(&new).unwrap(), Some(pattern(100_000, 9)));
    healthy_get(&reader);
    drop(reader);
    base.assert_back(SLACK, "owner restart");
}

#[test]
fn a_peer_that_accepts_and_never_answers() {
    let _serial = serial();
    warm_up();
    let base = Resources::now();
    let reader = reader();
    // Stopped before anyone connected: its kernel accepts TCP connections
    // on the worker's listening socket, the process never answers.
    let (mut owner, key) = spawn_owner(100_000);
    signal(owner.id(), "STOP");
    let started = Instant::now();
    let result = reader.get(&key);
    signal(owner.id(), "CONT");
    assert_typed_error_in_time(
        "ucx silent (stopped) owner",
        result,
        unreachable_or_timeout,
        started,
        TIMEOUT,
    );
    owner.kill();
    healthy_get(&reader);
    drop(reader);
    base.assert_back(SLACK, "silent peer");
}

#[test]
fn the_owners_interface_goes_down() {
    let host = match ServerHost::create("ux", 216) {
        Ok(h) => h,
        Err(why) => {
            return skip(&format!(
                "interface-down test needs network namespaces ({why})"
            ))
        }
    };
    let _serial = serial();
    warm_up();
    let base = Resources::now();
    let mut cmd = child_command("child_entry", "owner");
    // The owner's worker advertises only the veth (not its namespace's
    // loopback, which this process would take for its own).
    cmd.env("SIZE", "100000")
        .env("UCX_NET_DEVICES", host.server_device());
    let (child, key) = spawn_child_until(host.inside(&cmd), "OWNER_KEY");
    let _owner = ChildGuard(child);
    let key: Key = key.parse().unwrap();
    let reader = reader();
    assert_link_down_fails_typed(
        "ucx interface down",
        &host,
        &reader,
        &key,
        &pattern(100_000, 9),
        TIMEOUT,
    );
    healthy_get(&reader);
    drop(reader);
    base.assert_back(SLACK, "interface down");
}
