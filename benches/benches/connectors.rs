//! Bytes through a `Store` on each embedded connector, against memcpy of the
//! same size (the criterion counterpart of `proxystore bench`).
#![allow(missing_docs)] // criterion_group! generates undocumented public fns

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use proxystore::{Bytes, Connector, LocalConnector, Store};
use proxystore_benches::CopyTarget;

fn connectors(c: &mut Criterion) {
    let (embedded, _dirs) = proxystore_benches::file_and_shm();
    let mut targets: Vec<(&str, Arc<dyn Connector>)> =
        vec![("local", Arc::new(LocalConnector::new()))];
    targets.extend(embedded);
    let mut group = c.benchmark_group("get");
    group.sample_size(20);
    for size in [1usize << 10, 1 << 20, 64 << 20] {
        let data = Bytes::from(vec![7u8; size]);
        group.throughput(Throughput::Bytes(size as u64));
        let mut target = CopyTarget::new(&data);
        group.bench_function(BenchmarkId::new("memcpy", size), |b| {
            b.iter(|| target.copy(&data))
        });
        for (name, connector) in &targets {
            let store = Store::builder(*name, Arc::clone(connector))
                .cache_size(0)
                .build();
            let key = store.put_bytes(data.clone()).expect("put");
            group.bench_function(BenchmarkId::new(*name, size), |b| {
                b.iter(|| {
                    let got = store.get_bytes(&key).expect("get").expect("present");
                    got.iter().step_by(4096).map(|&b| u64::from(b)).sum::<u64>()
                })
            });
            store.evict(&key).expect("evict");
        }
    }
    group.finish();
}

criterion_group!(benches, connectors);
criterion_main!(benches);
