//! `proxystore put/get/exists/evict --connector redis --url` across separate
//! processes, and `bench --connector redis` with its raw baseline.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use common::{bench_records, has, proxystore};

use ::proxystore::redis::server::{available, LocalRedisServer};

fn server() -> Option<LocalRedisServer> {
    if !available() {
        eprintln!("SKIP: redis-server not installed (ci/install-deps.sh installs it)");
        return None;
    }
    Some(LocalRedisServer::start().unwrap())
}

#[test]
fn put_get_exists_evict_through_a_server() {
    let Some(server) = server() else { return };
    let url = server.url();
    let flags = ["--connector", "redis", "--url", url.as_str()];
    let put = proxystore(&[&["put"][..], &flags].concat(), b"hello redis");
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let key = String::from_utf8(put.stdout).unwrap().trim().to_string();
    let get = proxystore(&[&["get"][..], &flags, &[key.as_str()]].concat(), b"");
    assert_eq!(get.stdout, b"hello redis");
    assert!(
        proxystore(&[&["exists"][..], &flags, &[key.as_str()]].concat(), b"")
            .status
            .success()
    );
    assert!(
        proxystore(&[&["evict"][..], &flags, &[key.as_str()]].concat(), b"")
            .status
            .success()
    );
    let missing = proxystore(&[&["exists"][..], &flags, &[key.as_str()]].concat(), b"");
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn redis_needs_a_url_and_a_live_server() {
    let out = proxystore(
        &[
            "get",
            "--connector",
            "redis",
            "0123456789abcdef0123456789abcdef",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let out = proxystore(
        &[
            "get",
            "--connector",
            "redis",
            "--url",
            &url,
            "0123456789abcdef0123456789abcdef",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&url) && err.trim_end().lines().count() == 1,
        "{err}"
    );
}

#[test]
fn bench_redis_reports_the_raw_baseline() {
    if !available() {
        eprintln!("SKIP: redis-server not installed");
        return;
    }
    let records = bench_records("redis");
    assert!(
        has(&records, "redis", "put")
            && has(&records, "redis", "get")
            && has(&records, "redis", "roundtrip")
    );
    assert!(has(&records, "redis-raw", "put") && has(&records, "redis-raw", "get"));
    assert!(
        records.iter().all(|r| r["iterations"] == 5),
        "bracketed baseline keeps the iteration count"
    );
}
