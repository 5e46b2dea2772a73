//! Tests of the farm's roles, run as threads.

#![allow(clippy::unwrap_used)]

use super::*;
use std::sync::Arc;

use proxystore_core::testing::ObservedLocal;
use proxystore_core::{register_store, unregister_store, LocalConnector};

fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        idle: Duration::from_secs(30),
        reply: Duration::from_secs(30),
    }
}

/// A store the worker thread finds by name (a local connector is
/// shared by the threads of one process only through the registry).
fn store(name: &str) -> Store {
    let store = Store::builder(name, Arc::new(LocalConnector::new()))
        .cache_size(0)
        .build();
    register_store(&store).unwrap();
    store
}

#[test]
fn tasks_by_value_and_by_proxy_round_trip_and_leave_nothing_behind() {
    let recording = Arc::new(ObservedLocal::new());
    let store = Store::builder("farm-test-evict", recording.clone())
        .cache_size(0)
        .build();
    register_store(&store).unwrap();
    let mut farm = ThreadFarm::start(timeouts()).unwrap();
    let samples = farm.client.run(Via::Value, 10_000, 0, 1, 3).unwrap();
    assert_eq!(samples.len(), 3);
    assert!(recording.puts().is_empty(), "by value puts nothing");
    assert_eq!(farm.client.take_steps().len(), 3, "the by-value run's");
    let samples = farm
        .client
        .run(Via::Proxy(&store), 100_000, 1, 1, 3)
        .unwrap();
    assert!(samples.iter().all(|t| *t >= Duration::from_millis(1)));
    // One step record per timed task (warm-up left out), each step inside
    // its round trip: the worker's put and both fetches happened.
    let steps = farm.client.take_steps();
    assert_eq!(steps.len(), 3);
    for (s, total) in steps.iter().zip(&samples) {
        let data = s.client_put + s.worker_fetch + s.worker_put + s.client_fetch;
        assert!(data <= *total, "{s:?} within {total:?}");
        assert!(
            s.worker_fetch > Duration::ZERO && s.client_fetch > Duration::ZERO,
            "{s:?}"
        );
    }
    assert!(
        farm.client.take_steps().is_empty(),
        "taking them starts over"
    );
    farm.shutdown().unwrap();
    // An input and a result per task, warm-up included, all evicted.
    let keys = recording.puts();
    assert_eq!(keys.len(), 2 * 4);
    for key in &keys {
        assert!(!store.exists(key).unwrap(), "{key} was left behind");
    }
    unregister_store("farm-test-evict");
}

#[test]
fn a_corrupt_or_missing_input_is_a_failed_task_not_a_hang() {
    let store = store("farm-test-missing");
    let mut farm = ThreadFarm::start(timeouts()).unwrap();
    let input = pattern(5000, INPUT_SEED);
    let wrong = pattern(5000, 99);
    // The worker checks the input against what it expects.
    let e = farm
        .client
        .task(Via::Value, &wrong, &pattern(5000, RESULT_SEED), 0)
        .unwrap_err();
    assert!(e.to_string().contains("task input"), "{e}");
    // The client checks the result.
    let e = farm
        .client
        .task(Via::Proxy(&store), &input, &pattern(5000, 7), 0)
        .unwrap_err();
    assert!(e.to_string().contains("task result"), "{e}");
    // The farm still works after both.
    farm.client.run(Via::Value, 100, 0, 0, 1).unwrap();
    farm.shutdown().unwrap();
    unregister_store("farm-test-missing");
}

#[test]
fn a_task_claiming_another_size_fails_before_anything_that_size_is_made() {
    let store = store("farm-test-size");
    let mut farm = ThreadFarm::start(timeouts()).unwrap();
    let key = store.put_bytes(pattern(5000, INPUT_SEED)).unwrap();
    let task = Message::Task {
        id: 9,
        task_ms: 0,
        size: 1 << 50,
        payload: Payload::Proxy(ProxyFactory::new(store.config(), key.clone())),
    };
    task.send(&mut farm.client.chan).unwrap();
    match Message::recv(&mut farm.client.chan).unwrap().unwrap() {
        Message::Failed { id: 9, reason } => {
            assert!(
                reason.contains("the task says 1125899906842624"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    store.evict(&key).unwrap();
    farm.shutdown().unwrap();
    unregister_store("farm-test-size");
}

#[test]
fn a_client_that_goes_away_stops_the_scheduler_and_the_worker() {
    let farm = ThreadFarm::start(timeouts()).unwrap();
    let ThreadFarm { client, threads } = farm;
    drop(client);
    for (role, handle) in threads {
        let result = handle.join().unwrap();
        assert!(result.is_ok(), "{role:?}: {result:?}");
    }
}
