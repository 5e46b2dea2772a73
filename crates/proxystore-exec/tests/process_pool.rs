//! `StoreExecutor` over worker processes: this test binary is also the
//! worker (the pool re-runs it with `--exact worker_entry`), so the tasks
//! run in other processes, resolve proxies through a file store rebuilt
//! from the task message, and send results back as proxies or values.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::process::Command;
use std::time::Duration;

use proxystore_core::{register_store, Error, Store};
use proxystore_exec::{
    serve_if_worker, ProcessPool, ProxyPolicy, StoreExecutor, Task, TaskRegistry,
};
use proxystore_file::FileConnector;

const WAIT: Duration = Duration::from_secs(60);

/// What WORK returns: the worker's pid, the vector's sum, the vector doubled.
type WorkResult = (u32, f64, Vec<f64>);

/// Sleeps the given milliseconds, then works on the vector.
static WORK: Task<(Vec<f64>, u64), WorkResult> = Task::new("work", |(v, sleep_ms)| {
    std::thread::sleep(Duration::from_millis(sleep_ms));
    let doubled: Vec<f64> = v.iter().map(|x| 2.0 * x).collect();
    (std::process::id(), v.iter().sum(), doubled)
});

static PANICS: Task<(String,), u8> = Task::new("panics", |(why,)| panic!("{why}"));

/// Not registered in the worker.
static UNKNOWN: Task<(u8,), u8> = Task::new("unknown", |(x,)| x);

fn registry() -> TaskRegistry {
    TaskRegistry::new().register(&WORK).register(&PANICS)
}

/// The worker side: serves tasks when started by a pool, else does nothing.
#[test]
fn worker_entry() {
    proxystore_file::register();
    // A worker reports a task's panic to the pool (TaskFailed); the default
    // hook would also print it, in this test's output, as if a test failed.
    if std::env::var_os(proxystore_exec::WORKER_ENV).is_some() {
        std::panic::set_hook(Box::new(|_| {}));
    }
    if let Some(served) = serve_if_worker(&registry()) {
        served.unwrap();
        std::process::exit(0);
    }
}

fn pool(workers: usize) -> ProcessPool {
    let exe = std::env::current_exe().unwrap();
    ProcessPool::start(workers, || {
        let mut cmd = Command::new(&exe);
        cmd.args(["--exact", "worker_entry", "--nocapture", "--test-threads=1"]);
        cmd
    })
    .unwrap()
}

fn file_store(dir: &std::path::Path) -> Store {
    proxystore_file::register();
    let s = Store::builder(
        format!("pool-{}", proxystore_core::ObjectId::random()),
        std::sync::Arc::new(FileConnector::new(dir).unwrap()),
    )
    .cache_size(0)
    .build();
    register_store(&s).unwrap();
    s
}

fn objects_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_file())
        .count()
}

#[test]
fn tasks_run_in_worker_processes_with_proxies_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(2);
    let pids = pool.worker_pids();
    assert_eq!(pool.live_workers(), 2);
    let exec = StoreExecutor::with_processes(file_store(dir.path()), pool)
        .policy(ProxyPolicy::MinSize(50_000));
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let v = vec![i as f64; 10_000 * (1 + i % 2)]; // 80 or 160 kB
            exec.submit(&WORK, (v, 20)).unwrap()
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for (i, h) in handles.into_iter().enumerate() {
        let out = h.wait(WAIT).unwrap();
        assert!(out.is_proxy(), "a result over 50 kB comes back as a proxy");
        let (pid, sum, doubled) = out.into_value().unwrap();
        assert_ne!(pid, std::process::id());
        assert!(pids.contains(&pid));
        seen.insert(pid);
        let n = 10_000 * (1 + i % 2);
        assert_eq!(sum, (i * n) as f64);
        assert_eq!(doubled.len(), n);
        assert!(doubled.iter().all(|x| *x == 2.0 * i as f64));
    }
    assert_eq!(seen.len(), 2, "both workers ran tasks");
    let m = exec.metrics();
    assert_eq!(
        (m.tasks, m.failed, m.values_by_proxy, m.puts),
        (6, 0, 12, 12),
        "{m:?}"
    );
    assert_eq!(m.evictions, 6);
    exec.store().flush_evictions(WAIT).unwrap();
    assert_eq!(objects_in(dir.path()), 0, "arguments and results evicted");
}

#[test]
fn small_values_travel_inside_the_task_messages() {
    let dir = tempfile::tempdir().unwrap();
    let exec = StoreExecutor::with_processes(file_store(dir.path()), pool(1))
        .policy(ProxyPolicy::MinSize(1 << 20));
    let out = exec
        .submit(&WORK, (vec![1.0, 2.0], 0))
        .unwrap()
        .wait(WAIT)
        .unwrap();
    assert!(!out.is_proxy());
    let (_, sum, doubled) = out.into_value().unwrap();
    assert_eq!((sum, doubled), (3.0, vec![2.0, 4.0]));
    let m = exec.metrics();
    assert_eq!((m.puts, m.values_by_value), (0, 3));
    assert!(m.bytes_by_value > 0);
    assert_eq!(objects_in(dir.path()), 0);
}

#[test]
fn worker_failures_are_typed_and_the_worker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let exec =
        StoreExecutor::with_processes(file_store(dir.path()), pool(1)).policy(ProxyPolicy::Always);
    let e = exec
        .submit(&PANICS, ("bad input 42".to_owned(),))
        .unwrap()
        .wait(WAIT)
        .unwrap_err();
    assert!(
        matches!(&e, Error::TaskFailed { task, reason } if task == "panics" && reason.contains("bad input 42")),
        "{e}"
    );
    let e = exec.submit(&UNKNOWN, (1,)).unwrap().wait(WAIT).unwrap_err();
    assert!(e.to_string().contains("no task of that name"), "{e}");
    assert!(e.to_string().contains("panics, work"), "{e}");
    let ok = exec
        .submit(&WORK, (vec![1.0], 0))
        .unwrap()
        .wait(WAIT)
        .unwrap();
    assert_eq!(ok.into_value().unwrap().1, 1.0);
    exec.store().flush_evictions(WAIT).unwrap();
    assert_eq!(
        objects_in(dir.path()),
        0,
        "failed tasks' arguments evicted too"
    );
    assert_eq!(exec.metrics().failed, 2);
}

#[test]
fn a_worker_killed_mid_task_fails_its_task_and_the_pool_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(2);
    let victim = pool.worker_pids()[0];
    let exec =
        StoreExecutor::with_processes(file_store(dir.path()), pool).policy(ProxyPolicy::Always);
    // One long task per worker (the pool sends each to the least busy).
    let a = exec.submit(&WORK, (vec![1.0; 10], 3_000)).unwrap();
    let b = exec.submit(&WORK, (vec![1.0; 10], 3_000)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on a child process id we started; no memory involved.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);
    let results = [a.wait(WAIT), b.wait(WAIT)];
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(failed.len(), 1, "{results:?}");
    assert!(
        matches!(failed[0], Error::PeerUnreachable { address, .. } if address.contains(&victim.to_string())),
        "{}",
        failed[0]
    );
    let after = exec
        .submit(&WORK, (vec![5.0], 0))
        .unwrap()
        .wait(WAIT)
        .unwrap();
    assert_ne!(after.into_value().unwrap().0, victim);
    drop(results);
    exec.store().flush_evictions(WAIT).unwrap();
    assert_eq!(
        objects_in(dir.path()),
        0,
        "the dead task's argument evicted"
    );
}

#[test]
fn predicates_cannot_travel_to_workers() {
    let dir = tempfile::tempdir().unwrap();
    let exec = StoreExecutor::with_processes(file_store(dir.path()), pool(1))
        .policy(ProxyPolicy::predicate(|_| true));
    let e = exec.submit(&WORK, (vec![1.0], 0)).unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
    assert_eq!(objects_in(dir.path()), 0);
}

#[test]
fn closures_are_refused_by_worker_processes() {
    let dir = tempfile::tempdir().unwrap();
    let exec = StoreExecutor::with_processes(file_store(dir.path()), pool(1));
    let e = exec.submit_fn("c", |(x,): (u8,)| x, (1,)).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
}
