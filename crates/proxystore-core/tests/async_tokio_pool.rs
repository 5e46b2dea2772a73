//! With the `tokio` feature, async store calls inside a tokio runtime run
//! on tokio's blocking pool: the process's own shared pool starts no thread.
//! (A binary of its own, so no other test starts pool threads meanwhile.)

#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use proxystore_core::{blocking_threads, LocalConnector, Proxy, Store};

#[test]
fn async_calls_in_a_tokio_runtime_use_tokios_blocking_pool() {
    let s = Store::new("tokio-pool", LocalConnector::new());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        for i in 0..50u32 {
            let key = s.put_async(i).await.unwrap();
            assert_eq!(s.get_async::<u32>(&key).await.unwrap(), Some(i));
            let p: Proxy<u32> = s.proxy(&i).unwrap();
            assert_eq!(*p.resolve_async().await.unwrap(), i);
        }
    });
    assert_eq!(blocking_threads(), 0, "the shared pool was used");
    // Outside a runtime the same calls use the shared pool.
    let key = pollster::block_on(s.put_async(1u8)).unwrap();
    assert_eq!(
        pollster::block_on(s.get_async::<u8>(&key)).unwrap(),
        Some(1)
    );
    assert!(blocking_threads() >= 1);
}
