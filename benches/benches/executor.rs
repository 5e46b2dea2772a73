//! What the runtime integration adds, against the same work without it:
//!
//! - `store_executor/*`: 1000 tasks of one small argument each through a
//!   `StoreExecutor` on a 2-thread rayon pool with a 1 MB threshold (every
//!   argument under it: encoded once to measure, then moved), against the
//!   bare pool running the same closures and sending results on a channel.
//!   The bar: at most 1 µs per task more.
//! - `resolve/*`: resolving a proxy of a small value (cache off) with
//!   `resolve` and with `resolve_async` on a warm pool, on the local
//!   connector (in memory: resolved inline) and the file connector (one
//!   hop to the blocking pool and back), beside the floor of such a hop
//!   (`thread_round_trip`). The bar: at most 5 µs more.
#![allow(missing_docs)] // criterion_group! generates undocumented public fns

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proxystore::exec::{ProxyPolicy, RayonExecutor, StoreExecutor, Task};
use proxystore::{LocalConnector, Proxy, Store};

const TASKS: u64 = 1000;

static STEP: Task<(u64, u64), u64> = Task::new("step", |(x, k)| x.wrapping_mul(k) ^ 7);

fn store() -> Store {
    Store::builder("bench-exec", Arc::new(LocalConnector::new()))
        .cache_size(0)
        .build()
}

fn store_executor(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_executor");
    group.sample_size(30);
    group.throughput(Throughput::Elements(TASKS));
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("rayon pool"),
    );
    group.bench_function("bare_rayon", |b| {
        b.iter(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            for i in 0..TASKS {
                let tx = tx.clone();
                pool.spawn(move || {
                    let _ = tx.send((STEP.body())((i, 3)));
                });
            }
            drop(tx);
            rx.iter().fold(0u64, |a, v| a ^ v)
        })
    });
    let exec = StoreExecutor::new(store(), RayonExecutor::new(Arc::clone(&pool)))
        .policy(ProxyPolicy::MinSize(1_000_000));
    group.bench_function("store_executor_rayon", |b| {
        b.iter(|| {
            let handles: Vec<_> = (0..TASKS)
                .map(|i| exec.submit(&STEP, (i, 3)).expect("submit"))
                .collect();
            handles.into_iter().fold(0u64, |a, h| {
                let v = h
                    .wait(Duration::from_secs(60))
                    .and_then(|o| o.into_value())
                    .expect("task");
                a ^ v
            })
        })
    });
    group.finish();
}

fn resolve(c: &mut Criterion) {
    let mut group = c.benchmark_group("resolve");
    let dir = tempfile::tempdir().expect("tempdir");
    let local = store();
    let file = Store::builder(
        "bench-exec-file",
        Arc::new(proxystore::FileConnector::new(dir.path()).expect("file connector")),
    )
    .cache_size(0)
    .build();
    for store in [&local, &file] {
        proxystore::register_store(store).expect("register");
        let proxy: Proxy<Vec<u64>> = store.proxy(&vec![7u64; 16]).expect("proxy");
        let factory = proxy.factory().clone();
        let kind = store.connector().kind().to_owned();
        group.bench_function(format!("{kind}/resolve"), |b| {
            b.iter(|| {
                let p: Proxy<Vec<u64>> = Proxy::from_factory(factory.clone());
                p.resolve().expect("resolve").len()
            })
        });
        group.bench_function(format!("{kind}/resolve_async"), |b| {
            b.iter(|| {
                let p: Proxy<Vec<u64>> = Proxy::from_factory(factory.clone());
                pollster::block_on(p.resolve_async())
                    .expect("resolve")
                    .len()
            })
        });
    }
    // The floor of any hop to another thread and back on this machine: a
    // dedicated thread answering over channels.
    let (to_thread, requests) = std::sync::mpsc::channel::<u64>();
    let (to_caller, replies) = std::sync::mpsc::channel::<u64>();
    let echo = std::thread::spawn(move || {
        for v in requests {
            if to_caller.send(v + 1).is_err() {
                break;
            }
        }
    });
    group.bench_function("thread_round_trip", |b| {
        b.iter(|| {
            to_thread.send(1).expect("send");
            replies.recv().expect("recv")
        })
    });
    drop(to_thread);
    let _ = echo.join();
    group.finish();
}

criterion_group!(benches, store_executor, resolve);
criterion_main!(benches);
