//! `proxystore bench --scenario farm`: client, scheduler and worker
//! processes, tasks by value and by proxy.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use common::{proxystore, stderr};

#[test]
fn farm_writes_task_records_by_value_and_by_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let args = [
        "bench",
        "--scenario",
        "farm",
        "--connector",
        "shm,shm-arena",
        "--sizes",
        "10000,1000000",
        "--iterations",
        "5",
        "--json",
        json.to_str().unwrap(),
    ];
    let out = proxystore(&args, b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("farm breakdown"), "{stdout}");
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for connector in ["by-value", "shm", "shm-arena"] {
        for size in [10_000u64, 1_000_000] {
            let r = records
                .iter()
                .find(|r| {
                    r["connector"] == connector && r["op"] == "task" && r["size_bytes"] == size
                })
                .unwrap_or_else(|| panic!("no {connector} task record at {size}: {records:?}"));
            assert_eq!(r["iterations"], 5);
            for field in ["median_ns", "p99_ns"] {
                assert!(r[field].as_u64().unwrap() > 0, "{r}");
            }
            assert!(r["gib_per_s"].as_f64().unwrap() > 0.0, "{r}");
        }
    }
    // The connectors' own put and get, measured in the same run.
    for connector in ["shm", "shm-arena"] {
        for op in ["put", "get"] {
            assert!(
                records.iter().any(|r| r["connector"] == connector
                    && r["op"] == op
                    && r["size_bytes"] == 1_000_000),
                "no {connector} {op}: {records:?}"
            );
        }
    }
    let tasks = records.iter().filter(|r| r["op"] == "task").count();
    assert_eq!(tasks, 6, "{records:?}");
    // Each by-proxy task's data path, step by step.
    for op in [
        "task-client-put",
        "task-worker-get",
        "task-worker-put",
        "task-client-get",
    ] {
        let steps: Vec<_> = records.iter().filter(|r| r["op"] == op).collect();
        assert_eq!(steps.len(), 4, "{op} at both sizes: {records:?}");
        assert!(steps.iter().all(|r| r["median_ns"].as_u64().unwrap() > 0));
    }
}

#[test]
fn farm_refuses_a_connector_confined_to_one_process() {
    let o = proxystore(
        &["bench", "--scenario", "farm", "--connector", "local"],
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("local") && err.contains("one process") && err.contains("worker"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn task_ms_belongs_to_the_farm() {
    let o = proxystore(&["bench", "--task-ms", "5"], b"");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--scenario farm"), "{}", stderr(&o));
}
