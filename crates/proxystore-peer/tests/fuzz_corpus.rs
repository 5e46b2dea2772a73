//! Replays the checked-in corpus of the `peer_wire` and `peer_address` fuzz targets (`fuzz/`)
//! through the same checks the target runs, on stable: every input that
//! ever found a bug, and the seeds, stay tested without nightly.

use proxystore_core::testing::replay_fuzz_corpus;

#[test]
fn peer_wire_corpus_replays() {
    replay_fuzz_corpus("peer_wire", proxystore_peer::fuzzing::peer_wire);
}

#[test]
fn peer_wire_seeds_pass() {
    for seed in proxystore_peer::fuzzing::peer_wire_seeds() {
        proxystore_peer::fuzzing::peer_wire(&seed);
    }
}

#[test]
fn peer_address_corpus_replays() {
    replay_fuzz_corpus("peer_address", proxystore_peer::fuzzing::peer_address);
}

#[test]
fn peer_address_seeds_pass() {
    for seed in proxystore_peer::fuzzing::peer_address_seeds() {
        proxystore_peer::fuzzing::peer_address(&seed);
    }
}
