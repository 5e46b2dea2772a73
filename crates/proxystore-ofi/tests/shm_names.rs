//! libfabric's shm addresses are names of varying length
//! (`fi_shm://<pid>:<n>:<m>`): a process's tenth endpoint, or a process
//! with a longer pid, has a longer one. Endpoints must talk whatever the
//! lengths. Its own test binary, so this process's endpoint numbering
//! starts at zero and crosses from one digit to two here.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::time::Duration;

use proxystore_core::testing::pattern;
use proxystore_ofi::{Engine, SERVER_ROUTE};

const WAIT: Duration = Duration::from_secs(10);

fn request_and_reply(client: &Engine, server: &Engine) {
    let listener = server.listen().unwrap();
    let (route, replies) = client.open_route();
    client
        .send(
            server.raw_address(),
            SERVER_ROUTE,
            route,
            vec![pattern(100, 1)],
        )
        .unwrap();
    let got = server.wait(&listener, WAIT).unwrap();
    assert!(got.frames[0] == pattern(100, 1));
    server
        .send(&got.from, got.reply_route, 0, vec![pattern(100, 2)])
        .unwrap();
    assert!(client.wait(&replies, WAIT).unwrap().frames[0] == pattern(100, 2));
    client.close_route(route);
}

#[test]
fn shm_endpoints_with_addresses_of_different_lengths_talk() {
    let Some(first) = common::engine("shm") else {
        return;
    };
    let mut later = Vec::new();
    // Twelve endpoints are enough to reach a two-digit number.
    while later.len() < 12 {
        later.push(common::engine("shm").unwrap());
        if later.last().unwrap().raw_address().len() != first.raw_address().len() {
            break;
        }
    }
    let longer = later.last().unwrap();
    assert_ne!(
        longer.raw_address().len(),
        first.raw_address().len(),
        "no endpoint got a longer address: {:?} and {:?}",
        String::from_utf8_lossy(first.raw_address()),
        String::from_utf8_lossy(longer.raw_address())
    );
    request_and_reply(&first, longer);
    request_and_reply(longer, &first);
}
