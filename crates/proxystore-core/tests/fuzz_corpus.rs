//! Replays the checked-in corpus of the `key_text` fuzz target (`fuzz/`)
//! through the same checks the target runs, on stable: every input that
//! ever found a bug, and the seeds, stay tested without nightly.

use proxystore_core::testing::replay_fuzz_corpus;

#[test]
fn key_text_corpus_replays() {
    replay_fuzz_corpus("key_text", proxystore_core::fuzzing::key_text);
}

#[test]
fn key_text_seeds_pass() {
    for seed in proxystore_core::fuzzing::key_text_seeds() {
        proxystore_core::fuzzing::key_text(&seed);
    }
}
