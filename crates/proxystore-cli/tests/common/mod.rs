//! Helpers shared by the CLI test binaries.

#![allow(dead_code)] // Each test binary uses a subset.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs the `proxystore` binary with `args`, feeding `stdin`.
pub(crate) fn proxystore(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_proxystore"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn proxystore");
    // The command may exit before reading stdin (bad flags); that is fine.
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    child.wait_with_output().expect("wait for proxystore")
}

/// Its stderr as text.
pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `proxystore bench --connector <connector> --sizes 4KiB
/// --iterations 5 --json` and returns the records.
pub(crate) fn bench_records(connector: &str) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("bench.json");
    let path = json.to_str().expect("utf-8 path");
    let args = [
        "bench",
        "--connector",
        connector,
        "--sizes",
        "4KiB",
        "--iterations",
        "5",
        "--json",
        path,
    ];
    let out = proxystore(&args, b"");
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
        .expect("json records")
}

/// Whether `records` hold one for `connector` and `op`.
pub(crate) fn has(records: &[serde_json::Value], connector: &str, op: &str) -> bool {
    records
        .iter()
        .any(|r| r["connector"] == connector && r["op"] == op)
}
