//! The one-sided protocol of `proxystore_peer::rma` (descriptors, pins,
//! releases, sweeps, deadlines, staging) on the mock one-sided layer.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxystore_core::testing::pattern;
use proxystore_core::{Connector, DeferrableConnector, Error, Store};

use proxystore_peer::mock::{
    is_registered, is_staged, mock_connector, mock_rma_connector, rma_reads, MockRmaLayer,
};
use proxystore_peer::rma::{self, Expose, Exposures, GRACE, IDLE_UNPINNED, READ_MAX, REMOTE_MIN};
use proxystore_peer::{OneSided, PeerConfig, PeerConnector};

fn reader() -> PeerConnector<MockRmaLayer> {
    PeerConnector::new(
        Arc::new(MockRmaLayer),
        PeerConfig::new("mock-rma", "mock://"),
    )
    .unwrap()
}

#[test]
fn capabilities_say_whether_gets_are_one_sided() {
    assert!(mock_rma_connector().unwrap().capabilities().one_sided_get);
    assert!(!mock_connector().unwrap().capabilities().one_sided_get);
}

#[test]
fn values_set_under_deferred_keys_are_staged_and_read_one_sided() {
    // `set` (what Store::future uses) stages like `put`: the owner serves
    // the object from registered memory.
    let owner = mock_rma_connector().unwrap();
    let key = owner.new_key().unwrap();
    let data = pattern(REMOTE_MIN * 2, 4);
    owner.set(&key, data.clone()).unwrap();
    let stored = owner.get(&key).unwrap().unwrap();
    assert!(
        is_staged(&stored),
        "set must stage large objects as put does"
    );
    drop(stored);
    let before = rma_reads();
    assert_eq!(reader().get(&key).unwrap(), Some(data));
    assert_eq!(rma_reads(), before + 1, "read one-sided");
}

#[test]
fn store_futures_are_read_one_sided() {
    let store = Store::new("one-sided-future", mock_rma_connector().unwrap());
    // Registered, so the future sets through this store's connector (the
    // owner) rather than one rebuilt from its config.
    proxystore_core::register_store(&store).unwrap();
    let future = store.future::<Vec<u8>>().unwrap();
    let value = vec![9u8; REMOTE_MIN * 3];
    future.set(&value).unwrap();
    let stored = store.connector().get(future.key()).unwrap().unwrap();
    assert!(
        is_staged(&stored),
        "a future's value sits in registered memory"
    );
    let encoded = stored.to_vec();
    drop(stored);
    let before = rma_reads();
    let fetched = reader().get(future.key()).unwrap().unwrap();
    assert_eq!(
        rma_reads(),
        before + 1,
        "the future's value was read one-sided"
    );
    assert_eq!(fetched, encoded);
    assert_eq!(future.result(Duration::from_secs(5)).unwrap(), value);
}

#[test]
fn small_objects_are_never_exposed() {
    let exposures = Exposures::for_layer(Arc::new(MockRmaLayer));
    assert!(exposures.expose(&pattern(REMOTE_MIN - 1, 1)).is_none());
    assert!(exposures.expose(&pattern(REMOTE_MIN, 1)).is_some());
}

#[test]
fn descriptors_pin_until_released_and_forged_releases_are_ignored() {
    let exposures = Exposures::for_layer(Arc::new(MockRmaLayer));
    let data = pattern(REMOTE_MIN, 2);
    let first = exposures.expose(&data).unwrap();
    let second = exposures.expose(&data).unwrap();
    assert_eq!(first, second, "one registration per object, pinned twice");
    assert_eq!(exposures.registered(), 1);
    // A release with the wrong token, or a truncated one, changes nothing.
    let mut forged = first.slice(0..rma::RELEASE_LEN).to_vec();
    forged[16] ^= 0xff;
    exposures.release(&forged);
    exposures.release(&first[..10]);
    exposures.release(&first[..rma::RELEASE_LEN]);
    assert!(is_registered(&data), "one pin is left");
    exposures.release(&first[..rma::RELEASE_LEN]);
    // Cheap registrations go as soon as they are unpinned.
    assert!(!is_registered(&data));
    assert_eq!(exposures.registered(), 0);
    // A release after the last is stale and ignored.
    exposures.release(&first[..rma::RELEASE_LEN]);
}

#[test]
fn unreleased_descriptors_are_swept_after_the_grace() {
    let exposures = Exposures::for_layer(Arc::new(MockRmaLayer));
    let data = pattern(REMOTE_MIN, 3);
    exposures.expose(&data).unwrap();
    exposures.sweep_as_of(Instant::now() + IDLE_UNPINNED * 2);
    assert!(is_registered(&data), "pinned: kept past the idle time");
    exposures.sweep_as_of(Instant::now() + GRACE + Duration::from_secs(1));
    assert!(
        !is_registered(&data),
        "a lost release is bounded by the grace"
    );
    assert_eq!(exposures.registered(), 0);
}

#[test]
fn a_read_releases_its_descriptor_and_a_second_read_fails() {
    let layer = MockRmaLayer;
    let exposures = Arc::new(Exposures::for_layer(Arc::new(MockRmaLayer)));
    layer.accept_releases(
        "mock://owner-of-reads",
        exposures.clone() as Arc<dyn Expose>,
    );
    let data = pattern(REMOTE_MIN, 5);
    let desc = exposures.expose(&data).unwrap();
    let read = || {
        rma::read(
            &layer,
            "mock-rma",
            "mock://owner-of-reads",
            &desc,
            u64::MAX,
            READ_MAX,
        )
    };
    assert_eq!(read().unwrap(), data);
    assert_eq!(exposures.registered(), 0, "released after the read");
    let again = read();
    assert!(matches!(again, Err(Error::Transport { .. })), "{again:?}");
}

#[test]
fn reads_are_bounded_in_size_and_time_and_bad_descriptors_are_errors() {
    let layer = MockRmaLayer;
    let exposures = Exposures::for_layer(Arc::new(MockRmaLayer));
    let data = pattern(REMOTE_MIN * 2, 6);
    let desc = exposures.expose(&data).unwrap();
    let read = |desc: &Bytes, max: u64, timeout: Duration| {
        rma::read(&layer, "mock-rma", "mock://x", desc, max, timeout)
    };
    let over = read(&desc, REMOTE_MIN as u64, READ_MAX);
    assert!(matches!(over, Err(Error::TooLarge { .. })), "{over:?}");
    read(&desc, u64::MAX, Duration::from_secs(3600)).unwrap();
    assert_eq!(proxystore_peer::mock::last_read_timeout(), READ_MAX);
    for bad in [Bytes::new(), Bytes::from_static(&[1; 23])] {
        let err = read(&bad, u64::MAX, READ_MAX);
        match err {
            Err(Error::Transport { connector, source }) => {
                assert_eq!(connector, "mock-rma");
                assert!(source.to_string().contains("mock://x"), "{source}");
            }
            other => panic!("expected a transport error, got {other:?}"),
        }
    }
}
