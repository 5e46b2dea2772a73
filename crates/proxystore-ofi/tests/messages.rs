//! Two engines in one process exchange requests and replies over each
//! provider; sizes cover inline and announced (tagged) messages.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::time::{Duration, Instant};

use common::{round_trip, WAIT};
use proxystore_core::testing::pattern;
use proxystore_core::Error;
use proxystore_ofi::{INLINE_MAX, SERVER_ROUTE};

fn exchange(len: usize) {
    for provider in common::PROVIDERS {
        let (Some(a), Some(b)) = (common::engine(provider), common::engine(provider)) else {
            continue;
        };
        round_trip(&a, &b, len, len as u64);
    }
}

#[test]
fn one_byte_request_and_reply() {
    exchange(1);
}

#[test]
fn sixty_kib_request_and_reply_fit_a_receive_buffer() {
    const { assert!(60 << 10 < INLINE_MAX) };
    exchange(60 << 10);
}

#[test]
fn four_mib_request_and_reply_are_announced_and_tagged() {
    exchange(4 << 20);
}

#[test]
fn many_messages_reuse_the_receive_buffers() {
    for provider in common::PROVIDERS {
        let (Some(a), Some(b)) = (common::engine(provider), common::engine(provider)) else {
            continue;
        };
        let requests = b.listen().unwrap();
        let (route, _replies) = a.open_route();
        for i in 0..100u64 {
            let len = [1, 1000, 70 << 10][i as usize % 3];
            a.send(b.raw_address(), SERVER_ROUTE, route, vec![pattern(len, i)])
                .unwrap();
            let got = b.wait(&requests, WAIT).unwrap();
            assert!(
                got.frames[0] == pattern(len, i),
                "message {i} over {provider}"
            );
        }
    }
}

#[test]
fn a_silent_peer_times_out() {
    let after = Duration::from_millis(300);
    for provider in common::PROVIDERS {
        let (Some(a), Some(b)) = (common::engine(provider), common::engine(provider)) else {
            continue;
        };
        // b listens but never answers.
        let _requests = b.listen().unwrap();
        let (route, replies) = a.open_route();
        a.send(b.raw_address(), SERVER_ROUTE, route, vec![pattern(10, 1)])
            .unwrap();
        let start = Instant::now();
        let err = a.wait(&replies, after).unwrap_err();
        assert!(start.elapsed() < after + Duration::from_millis(200));
        assert!(matches!(err, Error::Timeout { .. }), "{provider}: {err}");
    }
}

#[test]
fn a_vanished_peer_times_out_or_is_unreachable() {
    let after = Duration::from_millis(300);
    for provider in common::PROVIDERS {
        let Some(a) = common::engine(provider) else {
            continue;
        };
        let gone = match common::engine(provider) {
            Some(b) => b.raw_address().to_vec(),
            None => continue,
        };
        // rxm retries a refused connection silently: the send's own wait
        // is bounded too.
        a.set_send_wait(after);
        let (route, replies) = a.open_route();
        let start = Instant::now();
        let sent = a.send(&gone, SERVER_ROUTE, route, vec![pattern(10, 1)]);
        let err = match sent {
            Ok(()) => a.wait(&replies, after).unwrap_err(),
            Err(e) => e,
        };
        assert!(start.elapsed() < after + Duration::from_millis(200));
        assert!(
            matches!(err, Error::Timeout { .. } | Error::PeerUnreachable { .. }),
            "{provider}: {err}"
        );
    }
}

#[test]
fn an_oversized_announcement_is_refused_before_allocation() {
    for provider in common::PROVIDERS {
        let (Some(a), Some(b)) = (common::engine(provider), common::engine(provider)) else {
            continue;
        };
        b.set_max_message(1 << 20);
        let requests = b.listen().unwrap();
        let (route, replies) = a.open_route();
        a.send(
            b.raw_address(),
            SERVER_ROUTE,
            route,
            vec![pattern(4 << 20, 3)],
        )
        .unwrap();
        let refused = |err: &Error| matches!(err, Error::TooLarge { size, limit, .. } if *size == 4 << 20 && *limit == 1 << 20);
        let err = b.wait(&requests, WAIT).unwrap_err();
        assert!(refused(&err), "{provider}: {err}");
        assert_eq!(b.large_receives(), 0, "nothing was allocated for it");
        // The sender hears of it too, on the route its reply would take.
        let err = a.wait(&replies, WAIT).unwrap_err();
        assert!(refused(&err), "{provider}: the sender got {err}");
        // The endpoint still works afterwards.
        a.send(b.raw_address(), SERVER_ROUTE, route, vec![pattern(5, 5)])
            .unwrap();
        let got = b.wait(&requests, WAIT).unwrap();
        assert!(got.frames[0] == pattern(5, 5));
    }
}

#[test]
fn the_raw_baseline_reads_one_sided_and_sends_both_ways() {
    for provider in common::PROVIDERS {
        let payload = pattern(1 << 20, 9);
        let raw =
            proxystore_ofi::baseline::RawRead::start(Some(provider), payload.clone()).unwrap();
        assert_eq!(raw.provider(), provider);
        assert_eq!(raw.get().unwrap(), payload);
        raw.put(pattern(3 << 20, 1)).unwrap();
        raw.put(pattern(10, 1)).unwrap();
        assert_eq!(raw.get().unwrap(), payload, "{provider}: read again");
        assert_eq!(raw.get_message().unwrap(), payload, "{provider}: by reply");
    }
}

#[test]
fn a_send_retrying_to_a_vanished_peer_does_not_hold_up_a_healthy_one() {
    let retry_for = Duration::from_millis(1500);
    for provider in common::PROVIDERS {
        let (Some(a), Some(b)) = (common::engine(provider), common::engine(provider)) else {
            continue;
        };
        let gone = match common::engine(provider) {
            Some(g) => g.raw_address().to_vec(),
            None => continue,
        };
        a.set_send_wait(retry_for);
        let (stuck, healthy) = std::thread::scope(|s| {
            let stuck = s.spawn(|| {
                let (route, _replies) = a.open_route();
                let start = Instant::now();
                let sent = a.send(&gone, SERVER_ROUTE, route, vec![pattern(10, 1)]);
                (start.elapsed(), sent)
            });
            // Let the send to the vanished peer start retrying.
            std::thread::sleep(Duration::from_millis(200));
            let start = Instant::now();
            round_trip(&a, &b, 1, 7);
            let healthy = start.elapsed();
            (stuck.join().unwrap(), healthy)
        });
        eprintln!("{provider}: send to a vanished peer {stuck:?}; healthy round trip meanwhile {healthy:?}");
        assert!(
            healthy < Duration::from_millis(500),
            "{provider}: a round trip with a healthy peer took {healthy:?} while a send to a vanished one retried ({stuck:?})"
        );
    }
}
