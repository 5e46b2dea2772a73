//! `proxystore load`: short runs on file (no server), zmq, redis and ucx (their
//! servers on loopback, as `bench` starts them) that must stop by
//! themselves, lose nothing and fail nothing; and bad flags.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::time::{Duration, Instant};

use common::{proxystore, stderr};

/// Runs `load --connector <connector> --duration 2s --clients 8 --size
/// 64KiB --json` and checks its records: every op of the mix ran, nothing
/// lost, no errors, and the run ended by itself in time.
fn short_run(connector: &str) {
    short_run_in(connector, &[]);
}

/// [`short_run`] with `extra` flags (`--processes 2`).
fn short_run_in(connector: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("load.json");
    let plot = dir.path().join("load.svg");
    let started = Instant::now();
    let mut args = vec![
        "load",
        "--connector",
        connector,
        "--duration",
        "2s",
        "--clients",
        "8",
        "--size",
        "64KiB",
        "--mix",
        "get=80,put=10,exists=5,evict=5",
        "--max-live",
        "64",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = proxystore(&args, b"");
    let took = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    // 2 s of load plus server start, prefill and the final check: a run
    // that did not stop by itself would be far past this.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let err = stderr(&out);
    assert!(err.contains(": 1/2 s, "), "no progress line: {err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("objects lost: 0"), "{stdout}");
    assert!(stdout.contains("server: "), "{stdout}");
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let ops: Vec<&str> = records.iter().map(|r| r["op"].as_str().unwrap()).collect();
    assert_eq!(
        ops,
        ["get", "put", "exists", "evict", "verify"],
        "{records:?}"
    );
    for r in &records {
        assert_eq!(r["connector"], connector, "{r}");
        assert_eq!(r["clients"], 8, "{r}");
        let processes = extra.iter().skip_while(|a| **a != "--processes").nth(1);
        let processes: u64 = processes.map_or(0, |p| p.parse().unwrap());
        assert_eq!(r["processes"], processes, "{r}");
        assert_eq!(r["size_bytes"], 65536, "{r}");
        assert_eq!(r["lost"], 0, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
        assert!(r["ops"].as_u64().unwrap() > 0, "{r}");
        let d = r["duration_s"].as_f64().unwrap();
        if r["op"] != "verify" {
            assert!((1.9..6.0).contains(&d), "{r}");
        }
        for key in ["ops_per_s", "gib_per_s"] {
            assert!(r[key].as_f64().unwrap() >= 0.0, "{key}: {r}");
        }
        let q: Vec<u64> = ["p50_ns", "p99_ns", "p999_ns", "max_ns"]
            .iter()
            .map(|k| r[k].as_u64().unwrap())
            .collect();
        assert!(q[0] > 0 && q.windows(2).all(|w| w[0] <= w[1]), "{r}");
        assert!(r["server_rss_kib_end"].as_u64().unwrap() > 0, "{r}");
        assert!(r["server_fds_end"].as_u64().unwrap() > 0, "{r}");
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
}

#[test]
fn file_load_loses_nothing_and_stops_by_itself() {
    short_run("file");
}

#[cfg(feature = "zmq")]
#[test]
fn zmq_load_loses_nothing_and_stops_by_itself() {
    short_run("zmq");
}

#[cfg(feature = "redis")]
#[test]
fn redis_load_loses_nothing_and_stops_by_itself() {
    if !::proxystore::redis::server::available() {
        eprintln!("SKIP: redis-server not installed (ci/install-deps.sh installs it)");
        return;
    }
    short_run("redis");
}

#[cfg(feature = "ucx")]
#[test]
fn ucx_load_loses_nothing_and_stops_by_itself() {
    short_run("ucx");
}

/// The client processes reach the ucx server with the run's secret, handed
/// to them in their environment (`PROXYSTORE_UCX_SECRET`).
#[cfg(feature = "ucx")]
#[test]
fn ucx_load_in_client_processes() {
    short_run_in("ucx", &["--processes", "2"]);
}

#[test]
fn file_load_in_client_processes() {
    short_run_in("file", &["--processes", "2"]);
}

/// Puts from the client processes go to this process's zmq server (the
/// one their keys name), not to servers of their own.
#[cfg(feature = "zmq")]
#[test]
fn zmq_load_in_client_processes() {
    short_run_in("zmq", &["--processes", "3"]);
}

#[cfg(feature = "redis")]
#[test]
fn redis_load_in_client_processes() {
    if !::proxystore::redis::server::available() {
        eprintln!("SKIP: redis-server not installed (ci/install-deps.sh installs it)");
        return;
    }
    short_run_in("redis", &["--processes", "2"]);
}

#[test]
fn an_op_bound_ends_the_run_before_the_duration() {
    let started = Instant::now();
    let out = proxystore(
        &[
            "load",
            "--clients",
            "4",
            "--size",
            "4KiB",
            "--duration",
            "1m",
            "--ops",
            "200",
            "--max-live",
            "16",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn bad_flags_exit_2_in_one_line() {
    for bad in [
        &["--mix", "get=abc"][..],
        &["--mix", "get=0,put=0"],
        &["--mix", "read=5"],
        &["--clients", "0"],
        &["--clients", "1,0"],
        &["--duration", "0s"],
        &["--duration", "10x"],
        &["--size", "8"],
        &["--ops", "0"],
        &["--connector", "nope"],
        &["--clients", "2", "--processes", "3"],
        &["--processes", "0"],
        &["--connector", "local", "--processes", "2"],
    ] {
        let out = proxystore(&[&["load"][..], bad].concat(), b"");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
        assert!(err.starts_with("proxystore: "), "{bad:?}: {err}");
        assert!(out.stdout.is_empty(), "{bad:?}");
    }
}
