//! The `shm` arena across OS processes: a consumer reads views of the
//! producer's arena and evicts from it, a view held in another process pins
//! its block, and the arena of a dead producer is swept by the next one.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::path::Path;
use std::time::{Duration, Instant};

use proxystore_core::pattern::pattern;
use proxystore_core::testing::{
    child_command, child_role, keys_from_env, output_field, run_child, spawn_child_until,
};
use proxystore_core::{Connector, Key};
use proxystore_file::{FileConfig, FileConnector};

fn shm_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("proxystore-test-")
        .tempdir_in("/dev/shm")
        .unwrap()
}

fn connector(dir: &Path, arena_bytes: usize) -> FileConnector {
    FileConnector::with_config(FileConfig {
        dir: dir.into(),
        arena_bytes,
        ..FileConfig::shm()
    })
    .unwrap()
}

fn env_dir() -> std::path::PathBuf {
    std::env::var("DIR").expect("DIR").into()
}

fn offset(key: &Key) -> u64 {
    key.location()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn arena_file(dir: &Path, key: &Key) -> std::path::PathBuf {
    let name = key.location().unwrap().split(':').nth(1).unwrap();
    dir.join("arenas").join(format!("{name}.arena"))
}

fn arena_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("arenas"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Entry point of child processes; a no-op when run as a normal test.
#[test]
fn child_entry() {
    let Some(role) = child_role() else {
        return;
    };
    match role.as_str() {
        // Reads every key (seed i for key i), checks the views are the
        // objects, evicts the first.
        "reader" => {
            let c = connector(&env_dir(), 0);
            let keys = keys_from_env();
            for (i, key) in keys.iter().enumerate() {
                let got = c.get(key).unwrap().expect("present in the child");
                assert!(got == pattern(got.len(), i as u64), "object {i} differs");
            }
            c.evict(&keys[0]).unwrap();
            println!("READ={}", keys.len());
        }
        // Holds a view of KEYS[0] until DIR/release appears (30 s at most),
        // checks it never changed, drops it and writes DIR/verdict (the
        // parent stopped reading stdout, and libtest's own output then
        // fails the child's exit status).
        "pinner" => {
            let dir = env_dir();
            let c = connector(&dir, 0);
            let key = &keys_from_env()[0];
            let len = key.size().unwrap() as usize;
            let view = c.get(key).unwrap().expect("present");
            println!("PINNED=1");
            let deadline = Instant::now() + Duration::from_secs(30);
            while !dir.join("release").exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let verdict = if view == pattern(len, 0) {
                "same"
            } else {
                "changed"
            };
            drop(view);
            std::fs::write(dir.join("verdict"), verdict).unwrap();
        }
        // A producer that puts one object and waits to be killed.
        "producer" => {
            let c = connector(&env_dir(), 1 << 20);
            let key = c.put(pattern(5000, 3)).unwrap();
            println!("KEY={key}");
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
}

fn child(role: &str, dir: &Path, keys: &[Key]) -> std::process::Command {
    let mut cmd = child_command("child_entry", role);
    let keys: Vec<String> = keys.iter().map(Key::to_string).collect();
    cmd.env("DIR", dir).env("KEYS", keys.join(" "));
    cmd
}

#[test]
fn another_process_reads_views_of_the_arena_and_its_evict_frees_the_block() {
    let dir = shm_dir();
    let c = connector(dir.path(), 1 << 20);
    let sizes = [10usize, 5000, 64 << 10, 300 << 10]; // the last is a file
    let keys: Vec<Key> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| c.put(pattern(len, i as u64)).unwrap())
        .collect();
    assert!(keys[..3].iter().all(|k| k.location().is_some()));
    assert!(keys[3].location().is_none());
    let out = run_child(child("reader", dir.path(), &keys));
    assert_eq!(output_field(&out, "READ"), "4");
    // The child's evict reached the producer through shared memory.
    assert!(!c.exists(&keys[0]).unwrap());
    assert_eq!(c.get(&keys[0]).unwrap(), None);
    assert!(c.exists(&keys[1]).unwrap());
    // The producer reclaims the block the consumer freed.
    let next = c.put(pattern(10, 9)).unwrap();
    assert_eq!(offset(&next), offset(&keys[0]));
    assert_eq!(c.get(&keys[0]).unwrap(), None);
}

#[test]
fn a_view_held_in_another_process_pins_its_block() {
    let dir = shm_dir();
    let c = connector(dir.path(), 1 << 20); // 16 blocks of 64 KiB
    let size = 64 << 10;
    let key = c.put(pattern(size, 0)).unwrap();
    let mut cmd = child("pinner", dir.path(), std::slice::from_ref(&key));
    // Its harness's last lines go to a closed pipe; keep the error quiet.
    cmd.stderr(std::process::Stdio::null());
    let (mut pinner, _) = spawn_child_until(cmd, "PINNED");
    c.evict(&key).unwrap();
    let mut live = Vec::new();
    loop {
        let k = c.put(pattern(size, 1)).unwrap();
        if k.location().is_none() {
            break;
        }
        assert_ne!(
            offset(&k),
            offset(&key),
            "a block pinned by another process was reused"
        );
        live.push(k);
    }
    assert_eq!(live.len(), 15);
    std::fs::write(dir.path().join("release"), b"").unwrap();
    pinner.wait().unwrap();
    let verdict = std::fs::read_to_string(dir.path().join("verdict")).unwrap();
    assert_eq!(verdict, "same", "the pinner saw its view change");
    let next = c.put(pattern(size, 2)).unwrap();
    assert_eq!(offset(&next), offset(&key), "unpinned, the block is reused");
    assert_eq!(c.get(&key).unwrap(), None);
}

#[test]
fn the_arena_of_a_killed_producer_is_swept_by_the_next() {
    let dir = shm_dir();
    let (mut producer, key) = spawn_child_until(child("producer", dir.path(), &[]), "KEY");
    let key: Key = key.parse().unwrap();
    let reader = connector(dir.path(), 0);
    // Read while the producer lives: this process now maps its arena.
    assert_eq!(reader.get(&key).unwrap(), Some(pattern(5000, 3)));
    producer.kill().unwrap();
    producer.wait().unwrap();
    let file = arena_file(dir.path(), &key);
    assert!(
        file.exists(),
        "nothing sweeps before the next arena is made"
    );
    // A reader does not sweep; the dead producer's objects are still there.
    assert_eq!(reader.get(&key).unwrap(), Some(pattern(5000, 3)));
    let next = connector(dir.path(), 1 << 20);
    let mine = next.put(pattern(100, 4)).unwrap();
    assert!(!file.exists(), "the dead producer's arena was swept");
    // Gone for everyone, including this process, which still maps it.
    assert_eq!(reader.get(&key).unwrap(), None);
    assert!(!reader.exists(&key).unwrap());
    reader.evict(&key).unwrap();
    assert_eq!(next.get(&mine).unwrap(), Some(pattern(100, 4)));
    assert_eq!(
        arena_files(dir.path()),
        vec![format!(
            "{}.arena",
            mine.location().unwrap().split(':').nth(1).unwrap()
        )]
    );
}

#[test]
fn the_sweep_takes_dead_and_reused_pids_and_leaves_live_owners_and_other_files() {
    let dir = shm_dir();
    let arenas = dir.path().join("arenas");
    std::fs::create_dir_all(&arenas).unwrap();
    let pid = std::process::id();
    let start: u64 = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap()
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    // A pid that ran and exited: a child we reaped.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let files = [
        (format!("{gone_pid}-1-00000001.arena"), false),
        // Our pid, another start time: the pid was reused.
        (format!("{pid}-{}-00000002.arena", start + 1), false),
        // Our pid and start time: a live owner.
        (format!("{pid}-{start}-00000003.arena"), true),
        // Not arenas.
        ("notes.txt".to_owned(), true),
        (format!("{gone_pid}-1-xyz.arena"), true),
    ];
    for (name, _) in &files {
        std::fs::write(arenas.join(name), b"not mapped by anyone").unwrap();
    }
    let c = connector(dir.path(), 1 << 20);
    let key = c.put(pattern(10, 0)).unwrap();
    for (name, kept) in &files {
        assert_eq!(arenas.join(name).exists(), *kept, "{name}");
    }
    assert!(arena_file(dir.path(), &key).exists());
}
