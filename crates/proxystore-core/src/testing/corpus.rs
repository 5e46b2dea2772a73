//! Replaying the checked-in fuzz corpus (`fuzz/corpus/<target>/`) on
//! stable, through the same check the fuzz target runs.

use std::path::PathBuf;

/// Fewest files a target's corpus must hold: a moved or emptied corpus
/// fails the replay instead of passing it.
pub const MIN_CORPUS_FILES: usize = 10;

/// Runs `check` on every file of `fuzz/corpus/<target>/` (in name order,
/// each path printed first, so a failure names its input); panics if the
/// corpus has fewer than [`MIN_CORPUS_FILES`] files.
pub fn replay_fuzz_corpus(target: &str, check: impl Fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
                .path()
        })
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    assert!(
        paths.len() >= MIN_CORPUS_FILES,
        "only {} files in fuzz/corpus/{target}",
        paths.len()
    );
    for path in paths {
        eprintln!("{}", path.display());
        let data =
            std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        check(&data);
    }
}
