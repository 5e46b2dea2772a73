//! Helpers shared by the CLI test binaries.

#![allow(dead_code)] // Each test binary uses a subset.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};

/// Runs the `proxystore` binary with `args`, feeding `stdin`.
pub(crate) fn proxystore(args: &[&str], stdin: &[u8]) -> Output {
    proxystore_with_env(args, stdin, &[])
}

/// [`proxystore`] with variables `env` set.
pub(crate) fn proxystore_with_env(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_proxystore"))
        .args(args)
        .envs(env.iter().copied())
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

/// `proxystore serve --connector <connector> <serve_args>` in one process
/// (with `env` set), then `put --address <its address>` of `payload` and
/// `get` of the key in two more; checks the bytes come back and the server
/// stops cleanly on SIGINT. `scheme` is how the server's address starts.
pub(crate) fn serve_put_get(
    connector: &str,
    env: (&str, &str),
    serve_args: &[&str],
    scheme: &str,
    payload: &[u8],
) {
    let run = |args: &[&str], stdin: &[u8]| proxystore_with_env(args, stdin, &[env]);
    let mut server = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_proxystore"))
            .args(["serve", "--connector", connector])
            .args(serve_args)
            .env(env.0, env.1)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the server"),
    );
    let banner = BufReader::new(server.0.stdout.take().expect("stdout"))
        .lines()
        .next()
        .expect("a banner line")
        .expect("banner text");
    let address = banner
        .split_whitespace()
        .find(|w| w.starts_with(scheme))
        .unwrap_or_else(|| panic!("no {scheme} address in '{banner}'"))
        .to_string();
    let put = run(
        &["put", "--connector", connector, "--address", &address],
        payload,
    );
    assert!(put.status.success(), "{}", stderr(&put));
    let key = String::from_utf8(put.stdout)
        .expect("utf-8 key")
        .trim()
        .to_string();
    let get = run(&["get", "--connector", connector, &key], b"");
    assert_eq!(get.stdout, payload, "{}", stderr(&get));
    let killed = Command::new("kill")
        .args(["-INT", &server.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    assert!(server.0.wait().expect("wait for the server").success());
}

/// A child killed and reaped when dropped: a failing assertion does not
/// leave a server running.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `put --connector <connector>` without `--address` is refused (exit 2,
/// naming `--address`): the object would die with the command.
pub(crate) fn put_without_server_is_refused(connector: &str, env: (&str, &str)) {
    let o = proxystore_with_env(&["put", "--connector", connector], b"data", &[env]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "no key printed");
    let err = stderr(&o);
    assert!(
        err.contains("--address") && err.contains("proxystore serve"),
        "{err}"
    );
}
