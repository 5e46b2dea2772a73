//! Fuzz target `key_text`: see `proxystore_core::fuzzing::key_text` for the checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| proxystore_core::fuzzing::key_text(data));
