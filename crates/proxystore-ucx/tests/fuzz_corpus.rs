//! Replays the checked-in corpus of the `ucx_am_header` fuzz target (`fuzz/`)
//! through the same checks the target runs, on stable: every input that
//! ever found a bug, and the seeds, stay tested without nightly.

use proxystore_core::testing::replay_fuzz_corpus;

#[test]
fn ucx_am_header_corpus_replays() {
    replay_fuzz_corpus("ucx_am_header", proxystore_ucx::fuzzing::ucx_am_header);
}

#[test]
fn ucx_am_header_seeds_pass() {
    for seed in proxystore_ucx::fuzzing::ucx_am_header_seeds() {
        proxystore_ucx::fuzzing::ucx_am_header(&seed);
    }
}
