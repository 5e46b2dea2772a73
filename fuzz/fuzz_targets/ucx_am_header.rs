//! Fuzz target `ucx_am_header`: see `proxystore_ucx::fuzzing::ucx_am_header` for the checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| proxystore_ucx::fuzzing::ucx_am_header(data));
