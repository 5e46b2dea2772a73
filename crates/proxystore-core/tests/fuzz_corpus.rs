//! Replays the checked-in corpus of the `key_text` fuzz target (`fuzz/`)
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
fn key_text_corpus_replays() {
    let files = corpus("key_text");
    assert!(
        files.len() >= 10,
        "only {} files in fuzz/corpus/key_text",
        files.len()
    );
    for (path, data) in files {
        eprintln!("{}", path.display());
        proxystore_core::fuzzing::key_text(&data);
    }
}

#[test]
fn key_text_seeds_pass() {
    for seed in proxystore_core::fuzzing::key_text_seeds() {
        proxystore_core::fuzzing::key_text(&seed);
    }
}
