//! Replays the checked-in corpus of the `peer_wire` and `peer_address` fuzz targets (`fuzz/`)
//! through the same checks the target runs, on stable: every input that
//! ever found a bug, and the seeds, stay tested without nightly.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            let data = std::fs::read(&path).unwrap();
            (path, data)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn peer_wire_corpus_replays() {
    let files = corpus("peer_wire");
    assert!(
        files.len() >= 10,
        "only {} files in fuzz/corpus/peer_wire",
        files.len()
    );
    for (path, data) in files {
        eprintln!("{}", path.display());
        proxystore_peer::fuzzing::peer_wire(&data);
    }
}

#[test]
fn peer_wire_seeds_pass() {
    for seed in proxystore_peer::fuzzing::peer_wire_seeds() {
        proxystore_peer::fuzzing::peer_wire(&seed);
    }
}

#[test]
fn peer_address_corpus_replays() {
    let files = corpus("peer_address");
    assert!(
        files.len() >= 10,
        "only {} files in fuzz/corpus/peer_address",
        files.len()
    );
    for (path, data) in files {
        eprintln!("{}", path.display());
        proxystore_peer::fuzzing::peer_address(&data);
    }
}

#[test]
fn peer_address_seeds_pass() {
    for seed in proxystore_peer::fuzzing::peer_address_seeds() {
        proxystore_peer::fuzzing::peer_address(&seed);
    }
}
