//! Replays the checked-in corpus of the `resp_reply` fuzz target (`fuzz/`)
//! through the same checks the target runs, on stable: every input that
//! ever found a bug, and the seeds, stay tested without nightly.

use proxystore_core::testing::replay_fuzz_corpus;

#[test]
fn resp_reply_corpus_replays() {
    replay_fuzz_corpus("resp_reply", proxystore_redis::fuzzing::resp_reply);
}

#[test]
fn resp_reply_seeds_pass() {
    for seed in proxystore_redis::fuzzing::resp_reply_seeds() {
        proxystore_redis::fuzzing::resp_reply(&seed);
    }
}
