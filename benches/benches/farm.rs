//! The task farm of `proxystore bench --scenario farm` under criterion:
//! one task round trip (input in, result of the same size out) by value,
//! through the scheduler, and by proxy through `shm` and `file`. The same
//! farm code runs here, but its roles are threads of this process rather
//! than processes; the control channel between them is still loopback TCP.
#![allow(missing_docs)] // criterion_group! generates undocumented public fns

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use proxystore::exec::farm::{ThreadFarm, Timeouts, Via, INPUT_SEED, RESULT_SEED};
use proxystore::pattern::pattern;
use proxystore::{register_store, Store};

fn farm(c: &mut Criterion) {
    proxystore::register_connectors();
    let (connectors, _dirs) = proxystore_benches::file_and_shm();
    // Registered, so the worker thread and the client resolve through
    // these stores rather than building their own.
    let stores: Vec<(&str, Store)> = connectors
        .into_iter()
        .map(|(name, connector)| {
            let store = Store::builder(format!("farm-bench-{name}"), connector)
                .cache_size(0)
                .build();
            register_store(&store).expect("register the store");
            (name, store)
        })
        .collect();
    let mut farm = ThreadFarm::start(Timeouts::default()).expect("start the farm");
    let mut group = c.benchmark_group("farm-task");
    group.sample_size(20);
    for size in [10_000usize, 1_000_000, 10_000_000] {
        let input = pattern(size, INPUT_SEED);
        let expected = pattern(size, RESULT_SEED);
        group.throughput(Throughput::Bytes(size as u64));
        let mut cases: Vec<(&str, Via<'_>)> = vec![("by-value", Via::Value)];
        cases.extend(
            stores
                .iter()
                .map(|(name, store)| (*name, Via::Proxy(store))),
        );
        for (name, via) in cases {
            group.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter_custom(|n| {
                    (0..n)
                        .map(|_| farm.client.task(via, &input, &expected, 0).expect("task"))
                        .sum::<Duration>()
                })
            });
        }
    }
    group.finish();
    farm.shutdown().expect("stop the farm");
}

criterion_group!(benches, farm);
criterion_main!(benches);
