//! `StoreExecutor` in one process, on each adapter: policies pick what goes
//! as a proxy, argument objects are gone when the task is done, result
//! objects when the caller drops them, failures are typed.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::sync::Arc;
use std::time::Duration;

use proxystore_core::testing::ObservedLocal;
use proxystore_core::{Error, ObjectId, Store};
use proxystore_exec::{Executor, ProxyPolicy, StoreExecutor, Task, TaskOutput, ThreadPoolExecutor};

const WAIT: Duration = Duration::from_secs(30);

/// Scales the vector; returns the scaled vector (as large as the input)
/// and its sum.
static SCALE: Task<(Vec<f64>, f64), (Vec<f64>, f64)> = Task::new("scale", |(v, k)| {
    let out: Vec<f64> = v.iter().map(|x| x * k).collect();
    let sum = out.iter().sum();
    (out, sum)
});

static PANICS: Task<(u32,), u32> = Task::new("panics", |(n,)| {
    if n > 0 {
        panic!("task given {n}");
    }
    n
});

/// A store over a local connector that records its objects.
fn counted() -> (Store, Arc<ObservedLocal>) {
    let c = Arc::new(ObservedLocal::new());
    let s = Store::builder(format!("exec-{}", ObjectId::random()), c.clone())
        .cache_size(0)
        .build();
    (s, c)
}

fn store() -> Store {
    counted().0
}

fn scale_round_trip(exec: &StoreExecutor) {
    let big = vec![1.5f64; 100_000]; // 800 kB encoded
    let out = exec.submit(&SCALE, (big, 2.0)).unwrap().wait(WAIT).unwrap();
    assert!(out.is_proxy(), "an 800 kB result goes as a proxy");
    let TaskOutput::Proxy(owned) = out else {
        unreachable!()
    };
    let key = owned.key().clone();
    assert!(exec.store().exists(&key).unwrap());
    let (v, sum) = owned.resolve().unwrap();
    assert_eq!(v.len(), 100_000);
    assert_eq!(*sum, 300_000.0);
    drop(owned);
    exec.store().flush_evictions(WAIT).unwrap();
    assert!(
        !exec.store().exists(&key).unwrap(),
        "a dropped result is evicted"
    );
}

#[test]
fn large_values_go_as_proxies_and_are_evicted_small_ones_by_value() {
    let exec = StoreExecutor::new(store(), ThreadPoolExecutor::new(2).unwrap())
        .policy(ProxyPolicy::MinSize(10_000));
    scale_round_trip(&exec);
    let m = exec.metrics();
    assert_eq!((m.tasks, m.failed), (1, 0));
    // Argument vector and result proxied; the scale factor by value.
    assert_eq!((m.values_by_proxy, m.puts, m.evictions), (2, 2, 1));
    assert_eq!(m.values_by_value, 1);
    assert!(m.bytes_by_proxy > 1_600_000, "{m:?}");
    // Small everything: nothing put.
    let small = exec.submit(&SCALE, (vec![1.0; 4], 3.0)).unwrap();
    let out = small.wait(WAIT).unwrap();
    assert!(!out.is_proxy());
    assert_eq!(out.into_value().unwrap(), (vec![3.0; 4], 12.0));
    assert_eq!(exec.metrics().puts, 2);
}

#[test]
fn argument_objects_are_gone_when_the_caller_sees_the_result() {
    static LEN: Task<(Vec<u8>,), usize> = Task::new("len", |(v,)| v.len());
    let s = store();
    let exec = StoreExecutor::new(s.clone(), ThreadPoolExecutor::new(1).unwrap())
        .policy(ProxyPolicy::Always)
        .result_policy(ProxyPolicy::Never);
    let before = exec.metrics();
    let n = exec
        .submit(&LEN, (vec![9u8; 5000],))
        .unwrap()
        .wait(WAIT)
        .unwrap();
    assert_eq!(n.into_value().unwrap(), 5000);
    let m = exec.metrics();
    assert_eq!(m.puts - before.puts, 1);
    assert_eq!(
        m.evictions - before.evictions,
        1,
        "evicted before the result was given"
    );
}

#[test]
fn type_and_predicate_policies_pick_what_they_name() {
    let types = StoreExecutor::new(store(), ThreadPoolExecutor::new(1).unwrap())
        .policy(ProxyPolicy::types(&[std::any::type_name::<Vec<f64>>()]));
    let out = types.submit(&SCALE, (vec![2.0; 3], 1.0)).unwrap();
    assert_eq!(out.wait(WAIT).unwrap().into_value().unwrap().1, 6.0);
    // Vec<f64> argument only; the result is a tuple, not listed.
    assert_eq!(types.metrics().values_by_proxy, 1);

    let results_only = StoreExecutor::new(store(), ThreadPoolExecutor::new(1).unwrap()).policy(
        ProxyPolicy::predicate(|v| v.position.is_none() && v.size.unwrap_or(0) > 0),
    );
    let out = results_only.submit(&SCALE, (vec![2.0; 3], 1.0)).unwrap();
    assert!(out.wait(WAIT).unwrap().is_proxy());
    assert_eq!(results_only.metrics().values_by_proxy, 1);
}

#[test]
fn a_panicking_task_is_a_typed_error_and_its_arguments_are_still_evicted() {
    let exec = StoreExecutor::new(store(), ThreadPoolExecutor::new(1).unwrap())
        .policy(ProxyPolicy::Always);
    let e = exec.submit(&PANICS, (7,)).unwrap().wait(WAIT).unwrap_err();
    assert!(
        matches!(&e, Error::TaskFailed { task, reason } if task == "panics" && reason.contains("task given 7")),
        "{e}"
    );
    let m = exec.metrics();
    assert_eq!((m.failed, m.puts, m.evictions), (1, 1, 1));
    // The pool survives.
    assert_eq!(
        exec.submit(&PANICS, (0,))
            .unwrap()
            .wait(WAIT)
            .unwrap()
            .into_value()
            .unwrap(),
        0
    );
}

#[test]
fn waiting_too_little_is_a_timeout_and_an_abandoned_result_is_evicted() {
    static SLOW: Task<(u64,), Vec<u8>> = Task::new("slow", |(ms,)| {
        std::thread::sleep(Duration::from_millis(ms));
        vec![1u8; 10_000]
    });
    let (s, objects) = counted();
    let exec = StoreExecutor::new(s.clone(), ThreadPoolExecutor::new(1).unwrap())
        .policy(ProxyPolicy::Always);
    let e = exec
        .submit(&SLOW, (300,))
        .unwrap()
        .wait(Duration::from_millis(10))
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    // The task finishes after its handle is gone: the result it put is
    // evicted. Wait for the pool to run one more task (it runs in order).
    let done = exec.submit_fn("after", |(x,): (u8,)| x, (1,)).unwrap();
    assert_eq!(done.wait(WAIT).unwrap().into_value().unwrap(), 1);
    s.flush_evictions(WAIT).unwrap();
    let m = exec.metrics();
    assert_eq!(m.puts, 2 + 2, "argument and result of each task ({m:?})");
    assert!(objects.live().is_empty(), "every object was evicted");
}

#[test]
fn closures_run_on_in_process_executors() {
    let exec = StoreExecutor::new(store(), ThreadPoolExecutor::new(2).unwrap());
    let offset = 40;
    let h = exec
        .submit_fn("add", move |(a, b): (u32, u32)| a + b + offset, (1, 1))
        .unwrap();
    assert_eq!(h.wait(WAIT).unwrap().into_value().unwrap(), 42);
}

#[test]
fn a_task_handle_can_be_awaited() {
    let exec = StoreExecutor::new(store(), ThreadPoolExecutor::new(1).unwrap())
        .policy(ProxyPolicy::MinSize(1000));
    let h = exec.submit(&SCALE, (vec![1.0; 1000], 1.0)).unwrap();
    let out = pollster::block_on(h).unwrap();
    assert_eq!(out.into_value().unwrap().1, 1000.0);
}

#[test]
fn rayon_pools_run_store_tasks() {
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap(),
    );
    let exec = StoreExecutor::new(store(), proxystore_exec::RayonExecutor::new(pool))
        .policy(ProxyPolicy::MinSize(10_000));
    scale_round_trip(&exec);
    assert_eq!(exec.metrics().evictions, 1);
}

#[test]
fn tokio_runs_sync_bodies_on_its_blocking_pool_and_async_bodies_as_tasks() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let exec = StoreExecutor::new(
        store(),
        proxystore_exec::TokioExecutor::new(rt.handle().clone()),
    )
    .policy(ProxyPolicy::MinSize(10_000));
    scale_round_trip(&exec);
    let h = exec
        .submit_async(
            "async-len",
            |(v,): (Vec<u8>,)| async move { vec![0u8; v.len() * 2] },
            (vec![5u8; 20_000],),
        )
        .unwrap();
    let out = rt.block_on(h).unwrap();
    assert!(out.is_proxy());
    assert_eq!(out.into_value().unwrap().len(), 40_000);
    let m = exec.metrics();
    assert_eq!(
        (m.tasks, m.puts, m.evictions, m.failed),
        (2, 4, 2, 0),
        "{m:?}"
    );
    let panics = exec
        .submit_async::<_, u8, _, _>(
            "async-panic",
            |(_,): (u8,)| async move { panic!("async body failed") },
            (1u8,),
        )
        .unwrap();
    let e = rt.block_on(panics).unwrap_err();
    assert!(e.to_string().contains("async body failed"), "{e}");
}

#[test]
fn async_bodies_need_a_tokio_executor() {
    let exec = StoreExecutor::new(store(), ThreadPoolExecutor::new(1).unwrap());
    let e = exec
        .submit_async("a", |(x,): (u8,)| async move { x }, (1u8,))
        .unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
}

#[test]
fn a_closed_executor_refuses_work_and_puts_nothing_that_stays() {
    struct Closed;
    impl Executor for Closed {
        fn spawn(&self, _job: proxystore_exec::Job) -> proxystore_core::Result<()> {
            Err(Error::Closed {
                connector: "test executor".into(),
            })
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }
    let exec = StoreExecutor::new(store(), Closed).policy(ProxyPolicy::Always);
    let e = exec.submit(&PANICS, (0,)).unwrap_err();
    assert!(matches!(e, Error::Closed { .. }), "{e}");
    let m = exec.metrics();
    assert_eq!(
        (m.puts, m.evictions),
        (1, 1),
        "the staged argument was evicted"
    );
}
