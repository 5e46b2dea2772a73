//! Bytes through a `Store` on each embedded connector, against memcpy of the
//! same size (the criterion counterpart of `proxystore bench`).
#![allow(missing_docs)] // criterion_group! generates undocumented public fns

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use proxystore::file::FileConfig;
use proxystore::{Bytes, Connector, FileConnector, LocalConnector, Store};
use proxystore_benches::CopyTarget;

fn connectors(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let shm = tempfile::tempdir_in("/dev/shm").expect("shm dir");
    let targets: Vec<(&str, Arc<dyn Connector>)> = vec![
        ("local", Arc::new(LocalConnector::new())),
        (
            "file",
            Arc::new(FileConnector::new(tmp.path()).expect("file")),
        ),
        (
            "shm",
            Arc::new(
                FileConnector::with_config(FileConfig {
                    dir: shm.path().into(),
                    ..FileConfig::shm()
                })
                .expect("shm"),
            ),
        ),
    ];
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
