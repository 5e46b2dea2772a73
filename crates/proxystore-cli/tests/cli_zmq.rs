//! `proxystore serve/put/get/exists/evict --connector zmq` across separate
//! processes, and `bench --connector zmq` with its raw baseline.

#![cfg(feature = "zmq")]
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use common::{bench_records, has, proxystore};

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn serve_then_put_get_exists_evict_from_other_processes() {
    let address = format!("tcp://127.0.0.1:{}", free_port());
    let mut server = Command::new(env!("CARGO_BIN_EXE_proxystore"))
        .args(["serve", "--connector", "zmq", "--address", &address])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let banner = lines.next().unwrap().unwrap();
    assert!(banner.contains(&address), "{banner}");

    let flags = ["--connector", "zmq", "--address", &address];
    let put = proxystore(&[&["put"][..], &flags].concat(), b"hello over zmq");
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let key = String::from_utf8(put.stdout).unwrap().trim().to_string();
    assert!(key.ends_with(&format!("@{address}")), "{key}");
    // The putting process has exited: the server holds the object.
    let get = proxystore(&["get", "--connector", "zmq", &key], b"");
    assert_eq!(get.stdout, b"hello over zmq");
    assert!(proxystore(&["exists", "--connector", "zmq", &key], b"")
        .status
        .success());
    assert!(proxystore(&["evict", "--connector", "zmq", &key], b"")
        .status
        .success());
    let missing = proxystore(&["get", "--connector", "zmq", &key], b"");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));

    // SIGTERM stops it cleanly.
    let pid = server.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = server.wait().unwrap();
    assert!(status.success(), "serve exited with {status}");
}

#[test]
fn get_from_a_dead_server_fails_in_one_line_within_the_timeout() {
    let address = format!("tcp://127.0.0.1:{}", free_port());
    let key = format!("0123456789abcdef0123456789abcdef.5@{address}");
    let out = proxystore(
        &["get", "--connector", "zmq", "--timeout-ms", "300", &key],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&address) && err.trim_end().lines().count() == 1,
        "{err}"
    );
}

#[test]
fn serve_needs_an_address() {
    let out = proxystore(&["serve", "--connector", "zmq"], b"");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bench_zmq_reports_the_raw_baseline() {
    let records = bench_records("zmq");
    for op in ["put", "get", "roundtrip", "get-owned", "get-view"] {
        assert!(has(&records, "zmq", op), "zmq {op} missing");
    }
    assert!(has(&records, "zmq-raw", "put") && has(&records, "zmq-raw", "get"));
}

#[test]
fn a_put_without_a_server_is_refused_not_a_dead_key() {
    common::put_without_server_is_refused("zmq", ("PROXYSTORE_ZMQ_SECRET", "cli-zmq-secret"));
}

#[test]
fn a_key_whose_address_zmq_cannot_parse_is_malformed_exit_2() {
    let key = "0123456789abcdef0123456789abcdef.3@tcp://127.0.0.1:";
    let o = proxystore(&["get", "--connector", "zmq", key], b"");
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("malformed key") && err.contains("tcp://HOST:PORT"),
        "{err}"
    );
}

#[test]
fn addresses_without_a_scheme_or_with_a_hostname_say_how_to_write_them() {
    let o = proxystore(
        &["serve", "--connector", "zmq", "--address", "127.0.0.1:5555"],
        b"",
    );
    let err = common::stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("no scheme") && err.contains("tcp://127.0.0.1:5555"),
        "{err}"
    );
    let o = common::proxystore_with_env(
        &[
            "serve",
            "--connector",
            "zmq",
            "--address",
            "tcp://localhost:5557",
        ],
        b"",
        &[("PROXYSTORE_ZMQ_SECRET", "s")],
    );
    let err = common::stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("not a hostname") && err.contains("tcp://127.0.0.1:5555"),
        "{err}"
    );
}

#[test]
fn a_get_without_the_owners_secret_is_an_authentication_refusal_naming_the_variable() {
    // A server with a secret; a reader with another one.
    let address = format!("tcp://127.0.0.1:{}", free_port());
    let mut server = common::KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_proxystore"))
            .args(["serve", "--connector", "zmq", "--address", &address])
            .env("PROXYSTORE_ZMQ_SECRET", "right")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The banner says the server listens.
    let mut banner = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    assert!(banner.contains(&address), "{banner}");
    let key = format!("0123456789abcdef0123456789abcdef.3@{address}");
    let o = common::proxystore_with_env(
        &["get", "--connector", "zmq", &key],
        b"",
        &[("PROXYSTORE_ZMQ_SECRET", "wrong")],
    );
    drop(server);
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("PROXYSTORE_ZMQ_SECRET") && !err.contains("invalid configuration"),
        "{err}"
    );
}

/// `proxystore keygen`'s pair, parsed from its `export NAME='VALUE'` lines.
fn keygen() -> Vec<(String, String)> {
    let out = proxystore(&["keygen"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (name, value) = l.strip_prefix("export ").unwrap().split_once('=').unwrap();
            let value = value.trim_matches('\'');
            assert_eq!(value.len(), 40, "{l}");
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// A server off loopback with the job's CURVE keys: a client with the
/// public key reads; one without it is refused in one line, at once.
#[test]
fn keygen_keys_secure_a_server_off_loopback() {
    let keys = keygen();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].0, "PROXYSTORE_ZMQ_CURVE_SERVER_KEY");
    assert_eq!(keys[1].0, "PROXYSTORE_ZMQ_CURVE_SECRET_KEY");
    let address = format!("tcp://0.0.0.0:{}", free_port());
    let token = ("PROXYSTORE_ZMQ_SECRET", "cli-curve-test");
    let mut server = Command::new(env!("CARGO_BIN_EXE_proxystore"))
        .args(["serve", "--connector", "zmq", "--address", &address])
        .envs(keys.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env(token.0, token.1)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let banner = lines.next().unwrap().unwrap();
    assert!(banner.contains(&address), "{banner}");

    let client = |args: &[&str], public_key: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_proxystore"));
        c.args(args).env(token.0, token.1).stdin(Stdio::piped());
        if public_key {
            c.env(&keys[0].0, &keys[0].1);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"sealed").unwrap();
        child.wait_with_output().unwrap()
    };
    let flags = ["--connector", "zmq", "--address", &address];
    let put = client(&[&["put"][..], &flags].concat(), true);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let key = String::from_utf8(put.stdout).unwrap().trim().to_string();
    let get = client(&["get", "--connector", "zmq", &key], true);
    assert_eq!(
        get.stdout,
        b"sealed",
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );

    let started = std::time::Instant::now();
    let refused = client(&["get", "--connector", "zmq", &key], false);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("requires CURVE") && err.trim_end().lines().count() == 1,
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let _ = server.kill();
    let _ = server.wait();
}

/// `peers` starts owner processes, reads one object from each through a
/// fresh reader per count, and reports what the reader paid; the owners
/// are gone afterwards.
#[test]
fn peers_reports_per_owner_costs_and_stops_its_owners() {
    let dir = std::env::temp_dir().join(format!("ps-peers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("peers.json");
    let out = proxystore(
        &[
            "peers",
            "--connector",
            "zmq",
            "--owners",
            "1,6",
            "--owner-processes",
            "2",
            "--json",
            json.to_str().unwrap(),
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 2);
    for (r, owners) in records.iter().zip([1, 6]) {
        assert_eq!(r["connector"], "zmq");
        assert_eq!(r["owners"], owners);
        assert!(r["first_get_p50_ns"].as_u64().unwrap() > 0, "{r}");
        assert!(r["pooled_get_p50_ns"].as_u64().unwrap() > 0, "{r}");
        // Every owner is a connection the reader holds: at least one
        // descriptor each.
        assert!(r["reader_fds"].as_i64().unwrap() >= owners, "{r}");
    }
    let leftover = Command::new("pgrep")
        .args(["-f", "proxystore peers-owner"])
        .output()
        .unwrap();
    assert!(leftover.stdout.is_empty(), "owner processes left running");
    std::fs::remove_dir_all(&dir).unwrap();
}
