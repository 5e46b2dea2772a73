//! Fuzz target `peer_address`: see `proxystore_peer::fuzzing::peer_address` for the checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| proxystore_peer::fuzzing::peer_address(data));
