//! The `proxystore` binary as a user runs it: exit codes, stdout, stderr.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::process::Output;

mod common;

use common::{proxystore, stderr};

/// One line on stderr, no backtrace, the given exit code.
fn assert_fails_cleanly(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn put_get_exists_evict_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    let put = proxystore(&["put", "--connector", "file", "--dir", d], &data);
    assert!(put.status.success(), "{}", stderr(&put));
    let key = String::from_utf8(put.stdout).unwrap().trim().to_owned();

    let get = proxystore(&["get", &key, "--connector", "file", "--dir", d], b"");
    assert!(get.status.success(), "{}", stderr(&get));
    assert_eq!(get.stdout, data);

    let exists = proxystore(&["exists", &key, "--dir", d], b"");
    assert_eq!(exists.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&exists.stdout).trim(), "true");

    let evict = proxystore(&["evict", &key, "--dir", d], b"");
    assert!(evict.status.success(), "{}", stderr(&evict));
    let again = proxystore(&["evict", &key, "--dir", d], b"");
    assert!(
        again.status.success(),
        "evict is idempotent: {}",
        stderr(&again)
    );

    let missing = proxystore(&["get", &key, "--dir", d], b"");
    assert_fails_cleanly(&missing, 1, "not found");
    assert!(missing.stdout.is_empty());
    let exists = proxystore(&["exists", &key, "--dir", d], b"");
    assert_eq!(exists.status.code(), Some(1));
}

#[test]
fn a_put_whose_object_would_die_with_the_command_is_refused() {
    // The arena lives as long as its producing process: this command.
    let dir = tempfile::Builder::new()
        .prefix("proxystore-test-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let d = dir.path().to_str().unwrap();
    let o = proxystore(&["put", "--connector", "shm-arena", "--dir", d], b"x");
    assert_fails_cleanly(&o, 2, "only as long as this command's process");
    assert!(!stderr(&o).contains("serve"), "shm-arena has no server");
}

#[test]
fn malformed_key_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for cmd in ["get", "exists", "evict"] {
        let o = proxystore(&[cmd, "not-a-key", "--dir", d], b"");
        assert_fails_cleanly(&o, 2, "malformed key");
    }
}

#[test]
fn bad_flags_and_names_fail_in_one_line() {
    assert_fails_cleanly(&proxystore(&["bench", "--bogus"], b""), 2, "--bogus");
    assert_fails_cleanly(&proxystore(&["bench", "--sizes", "12XB"], b""), 2, "12XB");
    assert_fails_cleanly(
        &proxystore(&["bench", "--connector", "nope"], b""),
        2,
        "unknown connector 'nope'",
    );
    assert_fails_cleanly(
        &proxystore(&["put", "--connector", "nope", "--dir", "/tmp"], b"x"),
        2,
        "nope",
    );
    assert_fails_cleanly(
        &proxystore(&["put", "--connector", "file"], b"x"),
        2,
        "--dir",
    );
    assert_fails_cleanly(
        &proxystore(&["put", "--connector", "local"], b"x"),
        2,
        "one process",
    );
    assert_fails_cleanly(&proxystore(&["frobnicate"], b""), 2, "frobnicate");
    // The missing argument is named, on the one line.
    assert_fails_cleanly(
        &proxystore(&["get", "--connector", "file", "--dir", "/tmp"], b""),
        2,
        "not provided: <KEY>",
    );
}

#[test]
fn unusable_directory_fails_in_one_line() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let under = format!("{}/sub", file.path().display());
    let o = proxystore(&["put", "--dir", &under], b"x");
    assert_fails_cleanly(&o, 1, &under);
}

#[test]
fn info_lists_connectors() {
    let o = proxystore(&["info"], b"");
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    let line = |kind: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(kind))
            .unwrap_or_else(|| panic!("no {kind} line in {out}"))
            .to_owned()
    };
    assert!(line("local").contains("compiled in"), "{out}");
    let ofi = line("ofi");
    if cfg!(feature = "ofi") {
        assert!(ofi.contains("compiled in, libfabric 1."), "{ofi}");
    } else {
        assert!(ofi.contains("not compiled (Cargo feature `ofi`)"), "{ofi}");
    }
    let ucx = line("ucx");
    if cfg!(feature = "ucx") {
        assert!(ucx.contains("compiled in, libucp"), "{ucx}");
    } else {
        assert!(ucx.contains("not compiled (Cargo feature `ucx`)"), "{ucx}");
    }
    let mpi = line("mpi");
    if cfg!(feature = "mpi") {
        assert!(
            mpi.contains("compiled in, Open MPI") || mpi.contains("compiled in, MPICH"),
            "{mpi}"
        );
    } else {
        assert!(mpi.contains("not compiled (Cargo feature `mpi`)"), "{mpi}");
    }
    let daos = line("daos");
    if cfg!(feature = "daos") {
        assert!(
            daos.contains("compiled in, not linked")
                || daos.contains("compiled in, linked, DAOS API"),
            "{daos}"
        );
    } else {
        assert!(
            daos.contains("not compiled (Cargo feature `daos`)"),
            "{daos}"
        );
    }
    assert!(!out.contains("planned, not implemented"), "{out}");
}

#[test]
fn option_flags_reach_the_connector_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // A bad value of a connector option fails as that connector's config
    // error; a malformed --option is a usage error.
    let o = proxystore(
        &["put", "--dir", d, "--option", "mmap_threshold=lots"],
        b"x",
    );
    assert_fails_cleanly(&o, 1, "mmap_threshold");
    let o = proxystore(&["put", "--dir", d, "--option", "novalue"], b"x");
    assert_fails_cleanly(&o, 2, "KEY=VALUE");
}

#[test]
fn bench_writes_json_records_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let svg = dir.path().join("out.svg");
    let o = proxystore(
        &[
            "bench",
            "--connector",
            "local,file",
            "--sizes",
            "1KiB,64KiB",
            "--iterations",
            "3",
            "--dir",
            dir.path().to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("memcpy") && table.contains("roundtrip"),
        "{table}"
    );
    // Each connector's capabilities, as it reports them.
    let err = stderr(&o);
    assert!(err.contains("local: deferrable keys\n"), "{err}");
    let file = "file: deferrable keys, one-sided get, survives producer exit, cross-process\n";
    assert!(err.contains(file), "{err}");
    let records: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    // memcpy + 2 connectors x 5 ops, per size.
    assert_eq!(records.len(), 2 * (1 + 2 * 5));
    let fields = [
        "connector",
        "op",
        "size_bytes",
        "iterations",
        "median_ns",
        "p99_ns",
        "gib_per_s",
    ];
    for r in &records {
        let obj = r.as_object().unwrap();
        assert_eq!(obj.len(), fields.len(), "{r}");
        for f in fields {
            assert!(obj.contains_key(f), "{r} lacks {f}");
        }
        assert_eq!(r["iterations"], 3);
        assert!(r["median_ns"].as_u64().unwrap() > 0);
    }
    assert!(records
        .iter()
        .any(|r| r["connector"] == "memcpy" && r["op"] == "copy"));
    assert!(records
        .iter()
        .any(|r| r["connector"] == "file" && r["op"] == "get" && r["size_bytes"] == 65536));
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("file get"));
}

#[test]
fn plot_draws_records_of_json_files_and_refuses_what_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    let record = |connector: &str, op: &str, size: u64, ms: u64| {
        serde_json::json!({
            "connector": connector, "op": op, "size_bytes": size, "iterations": 20,
            "median_ns": ms * 1_000_000, "p99_ns": ms * 2_000_000, "gib_per_s": 0.5,
        })
    };
    let write = |path: &std::path::Path, v: serde_json::Value| {
        std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
    };
    write(
        &a,
        serde_json::json!([
            record("dask-value", "task", 10_000, 13),
            record("dask-value", "task", 100_000_000, 405),
            record("dask-value", "setup", 10_000, 1),
        ]),
    );
    write(
        &b,
        serde_json::json!([
            record("dask-rs-shm-arena/rsclient+zc", "task", 10_000, 15),
            record("dask-rs-shm-arena/rsclient+zc", "task", 100_000_000, 110),
        ]),
    );
    let svg = dir.path().join("dask.svg");
    let args = [
        "plot",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--op",
        "task",
        "--title",
        "Dask bag of tasks",
        "--out",
        svg.to_str().unwrap(),
    ];
    let o = proxystore(&args, b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 records plotted"));
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(plot.matches("<polyline").count(), 2, "{plot}");
    assert!(plot.contains("dask-value task") && plot.contains("Dask bag of tasks"));
    assert!(plot.contains("100MB") && !plot.contains("setup"), "{plot}");

    // Not a list of records, or nothing left after the filters: one line.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, b"{\"records\": 1}").unwrap();
    let o = proxystore(
        &[
            "plot",
            bad.to_str().unwrap(),
            "--out",
            svg.to_str().unwrap(),
        ],
        b"",
    );
    assert_fails_cleanly(&o, 1, "not a list of benchmark records");
    let o = proxystore(
        &[
            "plot",
            a.to_str().unwrap(),
            "--op",
            "get",
            "--out",
            svg.to_str().unwrap(),
        ],
        b"",
    );
    assert_fails_cleanly(&o, 1, "no records left to plot");
}
