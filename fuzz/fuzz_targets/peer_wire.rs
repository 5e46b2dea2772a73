//! Fuzz target `peer_wire`: see `proxystore_peer::fuzzing::peer_wire` for the checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| proxystore_peer::fuzzing::peer_wire(data));
