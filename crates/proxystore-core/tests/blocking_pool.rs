//! `Proxy::resolve_async` runs on one shared, bounded pool: a burst of
//! slow async resolutions never runs more than `BLOCKING_THREADS` threads,
//! yet runs them in parallel, and every result is right.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proxystore_core::testing::ObservedLocal;
use proxystore_core::{
    blocking_threads, register_store, unregister_store, Proxy, Store, BLOCKING_THREADS,
};

#[test]
fn a_burst_of_async_resolutions_stays_within_the_pool() {
    let name = format!("pool-{}", proxystore_core::ObjectId::random());
    let s = Store::builder(
        name,
        Arc::new(ObservedLocal::with_get_delay(Duration::from_millis(50))),
    )
    .cache_size(0)
    .build();
    register_store(&s).unwrap();
    let n = 4 * BLOCKING_THREADS;
    let proxies: Vec<Proxy<u64>> = (0..n as u64).map(|i| s.proxy(&i).unwrap()).collect();
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, most) = (Arc::clone(&done), Arc::clone(&most));
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                most.fetch_max(blocking_threads(), Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    // One OS thread per awaiting caller, each with its own tiny executor:
    // all n resolutions are in flight at once.
    std::thread::scope(|scope| {
        for (i, p) in proxies.iter().enumerate() {
            scope.spawn(move || {
                let v = pollster::block_on(p.resolve_async()).unwrap();
                assert_eq!(*v, i as u64);
            });
        }
    });
    done.store(true, Ordering::Release);
    sampler.join().unwrap();
    let most = most.load(Ordering::Acquire);
    assert!(most <= BLOCKING_THREADS, "{most} pool threads at once");
    assert!(most > 1, "resolutions ran one at a time");
    unregister_store(s.name());
}
