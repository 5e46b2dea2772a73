//! Dropping engines joins their progress threads (its own test binary, so
//! no other test's engines are counted).

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::time::{Duration, Instant};

fn progress_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|t| t.ok())
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "proxystore-ofi")
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn dropping_engines_leaves_no_thread_running() {
    for provider in common::PROVIDERS {
        let (Some(a), Some(b)) = (common::engine(provider), common::engine(provider)) else {
            continue;
        };
        // A thread names itself once it runs: give it a moment.
        let named = Instant::now() + Duration::from_secs(5);
        while progress_threads() < 2 && Instant::now() < named {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(progress_threads(), 2, "{provider}");
        drop((a, b));
        assert_eq!(progress_threads(), 0, "{provider}");
    }
}
