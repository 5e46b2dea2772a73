//! The store from async code: `put_async`/`get_async`, `resolve_async` and
//! `StoreFuture::result_async`, with and without a tokio runtime; waiting on
//! a future holds no pool thread between polls; a set in this process ends
//! every wait.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::time::{Duration, Instant};

use proxystore_core::testing::ObservedLocal;
use proxystore_core::{register_store, Error, LocalConnector, ObjectId, Proxy, Store};

fn store(tag: &str) -> Store {
    let s = Store::builder(
        format!("async-{tag}-{}", ObjectId::random()),
        std::sync::Arc::new(LocalConnector::new()),
    )
    .cache_size(0)
    .build();
    register_store(&s).unwrap();
    s
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn put_and_get_async_round_trip_without_a_runtime() {
    let s = store("plain");
    let key = pollster::block_on(s.put_async(vec![1.5f64, 2.5])).unwrap();
    let back: Option<Vec<f64>> = pollster::block_on(s.get_async(&key)).unwrap();
    assert_eq!(back, Some(vec![1.5, 2.5]));
    let raw = pollster::block_on(s.put_bytes_async(&b"raw"[..])).unwrap();
    assert_eq!(
        &pollster::block_on(s.get_bytes_async(&raw))
            .unwrap()
            .unwrap()[..],
        b"raw"
    );
    s.evict(&key).unwrap();
    let gone: Option<Vec<f64>> = pollster::block_on(s.get_async(&key)).unwrap();
    assert_eq!(gone, None);
}

#[test]
fn put_and_get_async_round_trip_in_tokio() {
    let s = store("tokio");
    runtime().block_on(async {
        let key = s.put_async(String::from("in tokio")).await.unwrap();
        let back: Option<String> = s.get_async(&key).await.unwrap();
        assert_eq!(back.as_deref(), Some("in tokio"));
        let p: Proxy<String> = s.proxy(&"proxied".to_owned()).unwrap();
        assert_eq!(p.resolve_async().await.unwrap(), "proxied");
    });
}

#[test]
fn a_future_set_later_reaches_async_waiters_without_a_runtime() {
    let s = store("future-plain");
    let fut = s.future::<u32>().unwrap();
    let setter = {
        let fut = fut.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            fut.set(&7).unwrap();
        })
    };
    let v = pollster::block_on(fut.result_async(Duration::from_secs(30))).unwrap();
    assert_eq!(v, 7);
    setter.join().unwrap();
}

#[test]
fn many_async_waiters_on_futures_need_no_thread_each() {
    // 200 waiters, more than any blocking pool here has threads: if a wait
    // held a pool thread, the sets queued behind them would never run.
    let s = store("many");
    let futures: Vec<_> = (0..200).map(|_| s.future::<u64>().unwrap()).collect();
    let rt = runtime();
    let waiters: Vec<_> = futures
        .iter()
        .cloned()
        .map(|f| rt.spawn(async move { f.result_async(Duration::from_secs(60)).await }))
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    rt.block_on(async {
        for (i, f) in futures.iter().enumerate() {
            let f = f.clone();
            s.put_async(()).await.unwrap(); // the pool still has room
            tokio::task::spawn_blocking(move || f.set(&(i as u64)).unwrap())
                .await
                .unwrap();
        }
        for (i, w) in waiters.into_iter().enumerate() {
            assert_eq!(w.await.unwrap().unwrap(), i as u64);
        }
    });
}

#[test]
fn a_future_proxy_resolves_async_once_set() {
    let s = store("proxy");
    let fut = s.future::<String>().unwrap();
    let proxy = fut.proxy(Duration::from_secs(30));
    let setter = {
        let fut = fut.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            fut.set(&"late".to_owned()).unwrap();
        })
    };
    assert_eq!(runtime().block_on(proxy.resolve_async()).unwrap(), "late");
    setter.join().unwrap();
}

#[test]
fn an_async_wait_that_is_never_set_times_out_typed() {
    let s = store("never");
    let fut = s.future::<u8>().unwrap();
    let start = Instant::now();
    let e = pollster::block_on(fut.result_async(Duration::from_millis(40))).unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert!(start.elapsed() >= Duration::from_millis(40));
}

#[test]
fn a_blocking_wait_wakes_on_a_set_from_another_thread() {
    let s = store("sync");
    let fut = s.future::<u16>().unwrap();
    let setter = {
        let fut = fut.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            fut.set(&99).unwrap();
        })
    };
    assert_eq!(fut.result(Duration::from_secs(30)).unwrap(), 99);
    setter.join().unwrap();
}

#[test]
fn in_memory_objects_resolve_inline_once_each_and_large_ones_decode_on_the_pool() {
    let c = std::sync::Arc::new(ObservedLocal::new());
    let s = Store::builder("inline-probe", c.clone())
        .cache_size(0)
        .build();
    proxystore_core::register_store(&s).unwrap();
    std::thread::Builder::new()
        .name("caller".into())
        .spawn(move || {
            let small: Proxy<Vec<u8>> = s.proxy(&vec![1u8; 100]).unwrap();
            let large: Proxy<Vec<u8>> = s.proxy(&vec![2u8; 1 << 20]).unwrap();
            assert_eq!(
                pollster::block_on(small.resolve_async()).unwrap().len(),
                100
            );
            assert_eq!(
                pollster::block_on(large.resolve_async()).unwrap().len(),
                1 << 20
            );
        })
        .unwrap()
        .join()
        .unwrap();
    // Both fetched once, on the caller's thread (an in-memory get waits on
    // nothing); only the 1 MiB decode went elsewhere.
    assert_eq!(c.get_threads(), ["caller", "caller"]);
}

#[test]
fn a_waiter_polls_fast_then_at_most_every_max_poll_interval() {
    // What a waiter costs its connector while the value is set elsewhere
    // (another process: nothing here wakes it): the gets it sends.
    let c = std::sync::Arc::new(ObservedLocal::new());
    let s = Store::builder(format!("polls-{}", ObjectId::random()), c.clone())
        .cache_size(0)
        .build();
    // Futures resolve through the registered store of their name.
    register_store(&s).unwrap();
    let fut = s.future::<u8>().unwrap();
    let waited = Duration::from_millis(500);
    let e = fut.result(waited).unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    let gets = c.gets() as u64;
    // The doubling from 50 µs reaches the 10 ms cap after 8 polls (~13 ms);
    // after that one poll per 10 ms at most. Sleeping longer than asked only
    // lowers the count, so the upper bound cannot flake.
    let most =
        8 + waited.as_millis() as u64 / proxystore_core::MAX_POLL_INTERVAL.as_millis() as u64 + 4;
    println!("a waiter sent {gets} gets in {waited:?} (at most {most})");
    assert!((2..=most).contains(&gets), "{gets} gets, at most {most}");
}
