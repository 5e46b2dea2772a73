//! libfabric's shm addresses are names of varying length
//! (`fi_shm://<pid>:<n>:<m>`): a process's tenth endpoint, or a process
//! with a longer pid, has a longer one. Endpoints must talk whatever the
//! lengths. Its own test binary, so this process's endpoint numbering
//! starts at zero and crosses from one digit to two here.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use common::round_trip;

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
    round_trip(&first, longer, 100, 1);
    round_trip(longer, &first, 100, 3);
}
