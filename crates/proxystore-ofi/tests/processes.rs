//! The libfabric connector between separate OS processes, over `shm` and
//! `tcp;ofi_rxm`: gets through a `Store`, one-sided reads counted (exactly,
//! in a process of their own), a killed owner, limits refused before
//! anything is allocated, slabs reused after evict, and a standalone data
//! server whose objects are registered in place.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::time::{Duration, Instant};

use proxystore_core::testing::{
    self, child_command, child_role, output_field, pattern, run_child, spawn_child_until,
};
use proxystore_core::{Connector, Error, Key, Store};
use std::sync::Arc;

use proxystore_ofi::{one_sided_reads, OfiConnector, OfiLayer, PeerConfig, KIND};

mod common;
use common::forget_regions;

const SECRET: &str = "ofi-test-secret";
const PROVIDERS: [&str; 2] = ["shm", "tcp;ofi_rxm"];

/// A connector on `provider` with the test secret and `timeout`.
fn ofi_with(provider: &str, timeout: Duration, max_object: Option<u64>) -> OfiConnector {
    std::env::set_var("PROXYSTORE_OFI_SECRET", SECRET);
    let mut config = PeerConfig::new(KIND, format!("ofi://{provider}/"));
    config.timeout = timeout;
    if let Some(max) = max_object {
        config.limits.max_object = max;
        config.limits.max_items = 16;
    }
    OfiConnector::with_config(config).unwrap()
}

fn ofi(provider: &str) -> OfiConnector {
    ofi_with(provider, Duration::from_secs(20), None)
}

fn provider() -> String {
    std::env::var("OFI_TEST_PROVIDER").unwrap()
}

#[test]
fn child_entry() {
    let Some(role) = child_role() else {
        return;
    };
    match role.as_str() {
        "owner" => testing::serve_as_owner(&ofi(&provider())),
        "consumer" => consume(ofi(&provider())),
        "limited" => {
            // A reader whose limits allow 1 MiB per object.
            let keys = testing::keys_from_env();
            let reader = ofi_with(&provider(), Duration::from_secs(5), Some(1 << 20));
            let started = Instant::now();
            let err = reader.get(&keys[0]).unwrap_err();
            assert!(matches!(err, Error::TooLarge { .. }), "{err}");
            println!("REFUSED_MS={}", started.elapsed().as_millis());
        }
        "slabs" => slabs_and_served_objects(&provider()),
        other => panic!("unknown role {other}"),
    }
}

/// Reads the owner's objects through a `Store` and prints how many reads
/// were one-sided.
fn consume(c: OfiConnector) {
    let keys = testing::keys_from_env();
    let store = Store::new("ofi-consumer", c);
    let want = testing::owner_objects();
    for (key, want) in keys.iter().zip(&want) {
        assert_eq!(store.get_bytes(key).unwrap().as_ref(), Some(want));
    }
    let c = store.connector();
    assert!(c.exists(&keys[1]).unwrap());
    c.evict(&keys[1]).unwrap();
    assert!(!c.exists(&keys[1]).unwrap());
    println!("ONE_SIDED_READS={}", one_sided_reads());
    println!("CONSUMER=ok");
}

/// An owner process on `provider` and its keys.
fn owner(provider: &str) -> (std::process::Child, String) {
    std::env::set_var("PROXYSTORE_OFI_SECRET", SECRET);
    let mut cmd = child_command("child_entry", "owner");
    cmd.env("OFI_TEST_PROVIDER", provider);
    spawn_child_until(cmd, "OWNER_KEYS")
}

/// An owner and a consumer process over `provider`, with
/// `PROXYSTORE_OFI_ONE_SIDED` set to `one_sided` (or unset).
/// Kills an owner child and removes what a killed process leaves behind.
fn kill(mut owner: std::process::Child) {
    owner.kill().unwrap();
    owner.wait().unwrap();
    forget_regions(owner.id());
}

fn two_processes(provider: &str, one_sided: Option<&str>) {
    let (owner, keys) = owner(provider);
    let mut cmd = child_command("child_entry", "consumer");
    cmd.env("OFI_TEST_PROVIDER", provider).env("KEYS", &keys);
    match one_sided {
        Some(v) => cmd.env("PROXYSTORE_OFI_ONE_SIDED", v),
        None => cmd.env_remove("PROXYSTORE_OFI_ONE_SIDED"),
    };
    let out = cmd.output().unwrap();
    kill(owner);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "consumer failed over {provider}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(output_field(&stdout, "CONSUMER"), "ok");
    let reads: u64 = output_field(&stdout, "ONE_SIDED_READS").parse().unwrap();
    // Only the 3 MiB object is above the one-sided minimum; unset is on.
    let on = one_sided.is_none_or(|v| v == "on");
    assert_eq!(
        reads,
        u64::from(on),
        "{provider}: one-sided reads with PROXYSTORE_OFI_ONE_SIDED={one_sided:?}"
    );
}

#[test]
fn two_processes_over_shm() {
    for setting in [None, Some("on"), Some("off")] {
        two_processes("shm", setting);
    }
}

#[test]
fn two_processes_over_tcp() {
    for setting in [None, Some("on"), Some("off")] {
        two_processes("tcp;ofi_rxm", setting);
    }
}

#[test]
fn a_killed_owner_gives_an_error_within_the_timeout() {
    for provider in PROVIDERS {
        let (child, keys) = owner(provider);
        let pid = child.id();
        let key: Key = keys.split(' ').next().unwrap().parse().unwrap();
        let reader = ofi_with(provider, Duration::from_secs(2), None);
        let limit = Duration::from_secs(6);
        testing::get_from_killed_owner_fails(&reader, &key, child, "ofi://", limit);
        if provider == "shm" {
            // Refused by the exit check, before a send that could spin on
            // the lock the killed owner may hold (see `liveness`).
            let err = reader.get(&key).expect_err("the owner is gone");
            assert!(err.to_string().contains("has exited"), "{err}");
        }
        forget_regions(pid);
    }
}

#[test]
fn a_reply_over_the_readers_limits_is_refused_before_it_is_received() {
    for provider in PROVIDERS {
        let (owner, keys) = owner(provider);
        // A reader limited to 1 MiB per object asks for the 3 MiB object:
        // one-sided, the descriptor's length is checked before the read;
        // without, the announced reply is refused before a buffer exists.
        for one_sided in ["on", "off"] {
            let mut cmd = child_command("child_entry", "limited");
            cmd.env("OFI_TEST_PROVIDER", provider)
                .env("KEYS", &keys)
                .env("PROXYSTORE_OFI_ONE_SIDED", one_sided);
            let stdout = run_child(cmd);
            let ms: u64 = output_field(&stdout, "REFUSED_MS").parse().unwrap();
            assert!(
                ms < 4000,
                "{provider}, one-sided {one_sided}: refused, not timed out ({ms} ms)"
            );
        }
        kill(owner);
    }
}

/// Staged slabs come back after evict; a standalone server's objects are
/// registered in place and read one-sided; a put over the server's limits
/// is refused. Runs in a process of its own so read counts are exact.
fn slabs_and_served_objects(provider: &str) {
    let owner = ofi(provider);
    let reader = ofi(provider);
    let data = pattern(1 << 20, 3);
    let key = owner.put(data.clone()).unwrap();
    let stored = owner.get(&key).unwrap().unwrap();
    assert_ne!(stored.as_ptr(), data.as_ptr(), "the object was staged");
    let slab = stored.as_ptr();
    drop(stored);
    assert_eq!(reader.get(&key).unwrap(), Some(data));
    assert_eq!(one_sided_reads(), 1);
    let reused = testing::staged_slab_is_reused(&owner, &reader, &key, slab);
    println!("SLAB_REUSED={reused}");

    let mut config = PeerConfig::new(KIND, format!("ofi://{provider}/"));
    config.secret = Some(SECRET.into());
    config.limits.max_object = 4 << 20;
    let server = proxystore_peer::serve(Arc::new(OfiLayer::default()), &config).unwrap();
    let mut client_config = PeerConfig::new(KIND, format!("ofi://{provider}/"));
    client_config.secret = Some(SECRET.into());
    client_config.server = Some(server.address().to_string());
    client_config.timeout = Duration::from_secs(5);
    let client = OfiConnector::with_config(client_config).unwrap();
    let before = one_sided_reads();
    let key = client.put(pattern(3 << 20, 6)).unwrap();
    assert_eq!(reader.get(&key).unwrap(), Some(pattern(3 << 20, 6)));
    assert_eq!(one_sided_reads(), before + 1);
    println!("SERVED_ONE_SIDED=ok");
    let started = Instant::now();
    let err = client.put(pattern(5 << 20, 1)).unwrap_err();
    // The server's refusal (its handler's reply here: the endpoint's own
    // limit is the largest of this process's connectors), not a timeout.
    assert!(err.to_string().contains("too large"), "{err}");
    assert!(!matches!(
        err,
        Error::Timeout { .. } | Error::PeerUnreachable { .. }
    ));
    assert!(started.elapsed() < Duration::from_secs(4));
    let small = client.put(pattern(1000, 1)).unwrap();
    assert_eq!(client.get(&small).unwrap(), Some(pattern(1000, 1)));
    println!("SERVER_LIMITS=ok");
}

#[test]
fn released_slabs_are_reused_and_served_objects_read_one_sided() {
    for provider in PROVIDERS {
        std::env::set_var("PROXYSTORE_OFI_SECRET", SECRET);
        let mut cmd = child_command("child_entry", "slabs");
        cmd.env("OFI_TEST_PROVIDER", provider)
            .env("PROXYSTORE_OFI_ONE_SIDED", "on");
        let stdout = run_child(cmd);
        assert_eq!(output_field(&stdout, "SLAB_REUSED"), "true", "{provider}");
        assert_eq!(output_field(&stdout, "SERVED_ONE_SIDED"), "ok");
        assert_eq!(output_field(&stdout, "SERVER_LIMITS"), "ok");
    }
}
