//! Fuzz target `resp_reply`: see `proxystore_redis::fuzzing::resp_reply` for the checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| proxystore_redis::fuzzing::resp_reply(data));
