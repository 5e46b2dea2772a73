//! Typed values through the store's codec, against memcpy of the same bytes.
//!
//! - `store_typed/*`: `Store::put(&Vec<f64>)` + `Store::get::<Vec<f64>>()`
//!   (encode, put, get, decode) on the local connector, cache off. The issue's
//!   bar: at most 3x the same-size memcpy. `clone` (allocate + copy) is a
//!   second baseline: on machines where first-touch page faults are dear
//!   (this project's Firecracker VMs: ~3 us per 4 KiB page) it, not the
//!   codec, dominates; see docs/benchmarks.md.
//! - `formats/*`: encode + decode with candidate serde formats, for numeric
//!   arrays and for record-shaped data: the measurements behind the codec
//!   choice (docs/codec.md).
#![allow(missing_docs)] // criterion_group! generates undocumented public fns

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use proxystore::{Codec, LocalConnector, Store};
use proxystore_benches::{doubles, particles, CopyTarget, Particle};

fn store_typed(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_typed");
    group.sample_size(20);
    let store = Store::builder("bench", std::sync::Arc::new(LocalConnector::new()))
        .cache_size(0)
        .build();
    for n in [1usize << 17, 1 << 23] {
        let bytes = n * 8;
        let values = doubles(n);
        group.throughput(Throughput::Bytes(bytes as u64));
        let label = format!("{}MiB", bytes >> 20);
        let raw: &[u8] = proxystore_bytes(&values);
        let mut target = CopyTarget::new(raw);
        group.bench_function(BenchmarkId::new("memcpy", &label), |b| {
            b.iter(|| target.copy(raw))
        });
        // A fresh allocation plus the copy: what any owned result costs,
        // separating the allocator's first-touch page faults from the codec.
        group.bench_function(BenchmarkId::new("clone", &label), |b| {
            b.iter(|| std::hint::black_box(&values).clone())
        });
        group.bench_function(BenchmarkId::new("put_get_decode", &label), |b| {
            b.iter(|| {
                let key = store.put(&values).expect("put");
                let back: Vec<f64> = store.get(&key).expect("get").expect("present");
                store.evict(&key).expect("evict");
                back
            })
        });
    }
    group.finish();
}

fn proxystore_bytes(v: &[f64]) -> &[u8] {
    // Same length as the encoded payload's body.
    let len = std::mem::size_of_val(v);
    // SAFETY: any initialized f64 slice is a valid byte slice of the same
    // length; u8 has no alignment requirement.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), len) }
}

fn formats(c: &mut Criterion) {
    let mut group = c.benchmark_group("formats");
    group.sample_size(20);
    let arrays = doubles(1 << 17);
    let records = particles(10_000);
    group.bench_function("vec_f64_1MiB/store_codec", |b| {
        b.iter(|| {
            let e = Codec::Bincode.encode(&arrays).expect("encode");
            Codec::Bincode.decode::<Vec<f64>>(e).expect("decode")
        })
    });
    group.bench_function("vec_f64_1MiB/bincode_generic", |b| {
        b.iter(|| {
            bincode::deserialize::<Vec<f64>>(&bincode::serialize(&arrays).expect("e")).expect("d")
        })
    });
    group.bench_function("vec_f64_1MiB/postcard", |b| {
        b.iter(|| {
            postcard::from_bytes::<Vec<f64>>(&postcard::to_allocvec(&arrays).expect("e"))
                .expect("d")
        })
    });
    group.bench_function("vec_f64_1MiB/msgpack", |b| {
        b.iter(|| {
            rmp_serde::from_slice::<Vec<f64>>(&rmp_serde::to_vec(&arrays).expect("e")).expect("d")
        })
    });
    group.bench_function("records_10k/bincode", |b| {
        b.iter(|| {
            let e = Codec::Bincode.encode(&records).expect("encode");
            Codec::Bincode.decode::<Vec<Particle>>(e).expect("decode")
        })
    });
    group.bench_function("records_10k/postcard", |b| {
        b.iter(|| {
            postcard::from_bytes::<Vec<Particle>>(&postcard::to_allocvec(&records).expect("e"))
                .expect("d")
        })
    });
    group.bench_function("records_10k/msgpack", |b| {
        b.iter(|| {
            rmp_serde::from_slice::<Vec<Particle>>(&rmp_serde::to_vec(&records).expect("e"))
                .expect("d")
        })
    });
    group.finish();
}

criterion_group!(benches, store_typed, formats);
criterion_main!(benches);
