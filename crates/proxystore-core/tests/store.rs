//! Store, proxy, ownership, lifetime and future behaviour over the local
//! connector.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::time::Duration;

use proxystore_core::{
    get_store, register_store, unregister_store, Bytes, Error, LeaseLifetime, Lifetime,
    LocalConnector, Op, Proxy, ScopeLifetime, StaticLifetime, Store,
};
use serde::{Deserialize, Serialize};

fn store() -> Store {
    let name = format!("test-{}", proxystore_core::ObjectId::random());
    Store::builder(name, std::sync::Arc::new(LocalConnector::new()))
        .cache_size(0)
        .build()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Task {
    id: u32,
    weights: Vec<f64>,
}

#[test]
fn typed_put_get_and_missing() {
    let s = store();
    let t = Task {
        id: 7,
        weights: vec![0.5; 10],
    };
    let key = s.put(&t).unwrap();
    assert_eq!(s.get::<Task>(&key).unwrap(), Some(t));
    s.evict(&key).unwrap();
    assert_eq!(s.get::<Task>(&key).unwrap(), None);
    assert!(!s.exists(&key).unwrap());
}

#[test]
fn wrong_type_is_a_codec_error_not_a_panic() {
    let s = store();
    let key = s.put(&String::from("hello")).unwrap();
    assert!(matches!(s.get::<Task>(&key), Err(Error::Codec { .. })));
}

#[test]
fn metrics_count_ops_and_bytes() {
    let s = store();
    let key = s.put_bytes(vec![1u8; 1000]).unwrap();
    s.get_bytes(&key).unwrap();
    s.get_bytes(&key).unwrap();
    s.exists(&key).unwrap();
    s.put_batch(&[1u32, 2, 3]).unwrap();
    let m = s.metrics();
    let put = m.get(Op::Put).unwrap();
    assert_eq!((put.count, put.bytes), (1, 1000));
    let get = m.get(Op::Get).unwrap();
    assert_eq!((get.count, get.bytes), (2, 2000));
    assert!(get.min <= get.max && get.total >= get.max);
    assert_eq!(m.get(Op::Exists).unwrap().count, 1);
    assert_eq!(m.get(Op::PutBatch).unwrap().bytes, 12);
    assert!(m.get(Op::Evict).is_none());
}

#[test]
fn cache_serves_repeated_gets_and_evict_clears_it() {
    let connector = std::sync::Arc::new(LocalConnector::new());
    let s = Store::builder("cache-test", connector.clone())
        .cache_size(2)
        .build();
    let key = s.put_bytes(Bytes::from_static(b"abc")).unwrap();
    assert!(s.get_bytes(&key).unwrap().is_some());
    // Remove behind the store's back: the cached copy is still served.
    proxystore_core::Connector::evict(&*connector, &key).unwrap();
    assert_eq!(s.get_bytes(&key).unwrap().as_deref(), Some(&b"abc"[..]));
    s.evict(&key).unwrap();
    assert_eq!(s.get_bytes(&key).unwrap(), None);
}

#[test]
fn registry_rejects_duplicates() {
    let s = store();
    register_store(&s).unwrap();
    assert!(matches!(register_store(&s), Err(Error::StoreExists(_))));
    assert!(get_store(s.name()).is_some());
    unregister_store(s.name());
    assert!(get_store(s.name()).is_none());
}

#[test]
fn proxy_resolves_once_and_serializes_as_factory() {
    let s = store();
    register_store(&s).unwrap();
    let t = Task {
        id: 1,
        weights: vec![1.0, 2.0],
    };
    let p = s.proxy(&t).unwrap();
    assert!(!p.is_resolved());
    assert_eq!(p.id, 1); // Deref resolves.
    assert!(p.is_resolved());
    let json = serde_json::to_string(&p).unwrap();
    assert!(json.contains(s.name()) && json.contains(&p.key().to_string()));
    let q: Proxy<Task> = serde_json::from_str(&json).unwrap();
    assert!(!q.is_resolved());
    assert_eq!(q.into_inner().unwrap(), t);
    // Resolution went through the registered store.
    assert!(s.metrics().get(Op::Get).unwrap().count >= 2);
    unregister_store(s.name());
}

#[test]
fn failed_resolution_is_an_error_and_deref_panics_with_names() {
    let s = store();
    register_store(&s).unwrap();
    let p = s.proxy(&5u64).unwrap();
    s.evict(p.key()).unwrap();
    assert!(matches!(p.resolve(), Err(Error::NotFound { .. })));
    let msg = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| *p))
        .unwrap_err()
        .downcast::<String>()
        .unwrap();
    assert!(
        msg.contains(&p.key().to_string()) && msg.contains(s.name()),
        "{msg}"
    );
    unregister_store(s.name());
}

#[test]
fn evict_on_resolve_proxy_removes_object() {
    let s = store();
    register_store(&s).unwrap();
    let p = s.proxy_evict_on_resolve(&"once".to_string()).unwrap();
    assert_eq!(p.resolve().unwrap(), "once");
    assert!(!s.exists(p.key()).unwrap());
    unregister_store(s.name());
}

#[test]
fn proxy_batch_and_from_key() {
    let s = store();
    register_store(&s).unwrap();
    let ps = s.proxy_batch(&[10i32, 20, 30]).unwrap();
    let values: Vec<i32> = ps.iter().map(|p| **p).collect();
    assert_eq!(values, vec![10, 20, 30]);
    let again: Proxy<i32> = s.proxy_from_key(ps[1].key().clone());
    assert_eq!(*again, 20);
    unregister_store(s.name());
}

#[test]
fn async_resolution_does_not_block_the_caller() {
    let s = store();
    register_store(&s).unwrap();
    let p = s.proxy(&vec![3u16; 100]).unwrap();
    let v = pollster::block_on(p.resolve_async()).unwrap();
    assert_eq!(v.len(), 100);
    assert!(p.is_resolved());
    unregister_store(s.name());
}

#[test]
fn owned_proxy_evicts_on_drop_and_clone_copies() {
    let s = store();
    register_store(&s).unwrap();
    let owned = s.owned_proxy(&vec![1u8, 2, 3]).unwrap();
    let key = owned.key().clone();
    {
        let borrowed = owned.borrow();
        assert_eq!(&*borrowed, &[1, 2, 3]);
        let wire = serde_json::to_string(&borrowed).unwrap();
        let remote: Proxy<Vec<u8>> = serde_json::from_str(&wire).unwrap();
        assert_eq!(*remote, vec![1, 2, 3]);
    }
    let copy = owned.try_clone().unwrap();
    assert_ne!(copy.key(), &key);
    drop(owned);
    s.flush_evictions(Duration::from_secs(10)).unwrap();
    assert!(!s.exists(&key).unwrap(), "dropping the owner evicts");
    assert_eq!(&*copy, &[1, 2, 3], "the copy is independent");
    let released = copy.release();
    assert!(
        s.exists(released.key()).unwrap(),
        "a released proxy is not evicted"
    );
    unregister_store(s.name());
}

#[test]
fn scope_lifetime_evicts_when_it_ends() {
    let s = store();
    let scope = ScopeLifetime::new();
    let a = s.proxy_with_lifetime(&1u8, &scope).unwrap();
    let b = s.proxy_with_lifetime(&2u8, &scope).unwrap();
    assert!(s.exists(a.key()).unwrap() && s.exists(b.key()).unwrap());
    drop(scope);
    s.flush_evictions(Duration::from_secs(10)).unwrap();
    assert!(!s.exists(a.key()).unwrap() && !s.exists(b.key()).unwrap());
    let closed = ScopeLifetime::new();
    closed.close().unwrap();
    assert!(matches!(
        s.proxy_with_lifetime(&3u8, &closed),
        Err(Error::LifetimeEnded)
    ));
}

#[test]
fn lease_lifetime_expires_unless_extended() {
    let s = store();
    let lease = LeaseLifetime::new(Duration::from_millis(100)).unwrap();
    let p = s
        .proxy_with_lifetime(&"leased".to_string(), &lease)
        .unwrap();
    lease.extend(Duration::from_millis(200)).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        s.exists(p.key()).unwrap(),
        "extended lease still holds at 150 ms"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !lease.done() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(lease.done());
    s.flush_evictions(Duration::from_secs(10)).unwrap();
    assert!(!s.exists(p.key()).unwrap(), "expired lease evicted its key");
    assert!(lease.extend(Duration::from_secs(1)).is_err());
}

#[test]
fn static_lifetime_holds_until_closed() {
    let s = store();
    let p = s
        .proxy_with_lifetime(&9u8, StaticLifetime::global())
        .unwrap();
    assert!(s.exists(p.key()).unwrap());
}

#[test]
fn future_set_by_producer_thread_is_seen_by_consumer() {
    let s = store();
    register_store(&s).unwrap();
    let fut = s.future::<String>().unwrap();
    assert!(!fut.done().unwrap());
    let proxy = fut.proxy(Duration::from_secs(5));
    let wire = serde_json::to_string(&fut).unwrap();
    let producer = std::thread::spawn(move || {
        let fut: proxystore_core::StoreFuture<String> = serde_json::from_str(&wire).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        fut.set(&"ready".to_string()).unwrap();
    });
    assert_eq!(proxy.resolve().unwrap(), "ready");
    producer.join().unwrap();
    assert!(fut.done().unwrap());
    assert_eq!(fut.result(Duration::from_millis(1)).unwrap(), "ready");
    let never = s.future::<u8>().unwrap();
    assert!(matches!(
        never.result(Duration::from_millis(30)),
        Err(Error::Timeout { .. })
    ));
    unregister_store(s.name());
}

#[test]
fn adopting_a_received_proxy_makes_its_drop_evict() {
    let s = store();
    register_store(&s).unwrap();
    // A task's result: a plain proxy, sent as text.
    let sent = serde_json::to_string(&s.proxy(&vec![4u8, 5]).unwrap()).unwrap();
    let received: Proxy<Vec<u8>> = serde_json::from_str(&sent).unwrap();
    assert_eq!(*received, vec![4, 5], "resolved before adoption");
    let owned = s.adopt(received).unwrap();
    assert!(owned.is_resolved(), "what it resolved is kept");
    let key = owned.key().clone();
    assert!(s.exists(&key).unwrap());
    drop(owned);
    s.flush_evictions(Duration::from_secs(10)).unwrap();
    assert!(
        !s.exists(&key).unwrap(),
        "dropping the adopted owner evicts"
    );
    // A proxy of another store is refused, and its object kept.
    let other = store();
    let foreign = other.proxy(&1u32).unwrap();
    let foreign_key = foreign.key().clone();
    let e = s.adopt(foreign).unwrap_err();
    assert!(
        matches!(e, Error::Config(_)) && e.to_string().contains("cannot adopt"),
        "{e}"
    );
    assert!(other.exists(&foreign_key).unwrap());
    unregister_store(s.name());
}
