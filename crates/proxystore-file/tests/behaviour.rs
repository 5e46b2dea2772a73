//! File-connector behaviour beyond the conformance suite: layout, atomic
//! writes, errors, and two OS processes exchanging objects.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::path::Path;

use proxystore_core::testing::{child_command, child_role, output_field};
use proxystore_core::{Bytes, Connector, ConnectorConfig, Error, Key, Proxy, Store};
use proxystore_file::{FileConfig, FileConnector};

/// Runs this test binary again as a child executing only `child_entry`.
fn run_child(role: &str, envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = child_command("child_entry", role);
    cmd.envs(envs.iter().copied());
    cmd.output().expect("spawn child test process")
}

/// Entry point of child processes; a no-op when run as a normal test.
#[test]
fn child_entry() {
    let Some(role) = child_role() else {
        return;
    };
    match role.as_str() {
        "consumer" => {
            // Resolve the parent's proxy, then answer with an object of our own.
            proxystore_file::register();
            let wire = std::env::var("PROXY_JSON").expect("PROXY_JSON");
            let proxy: Proxy<Vec<f64>> = serde_json::from_str(&wire).expect("proxy json");
            let values = proxy.resolve().expect("resolve in child");
            let sum: f64 = values.iter().sum();
            let store = proxy.factory().store().expect("store from config");
            let key = store.put(&format!("sum={sum}")).expect("child put");
            println!("CHILD_KEY={key}");
        }
        "full-disk" => {
            let dir = std::env::var("DIR").expect("DIR");
            // SAFETY: plain libc calls on this single-purpose child process;
            // SIGXFSZ is ignored so the oversized write fails with EFBIG.
            unsafe {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let limit = libc::rlimit {
                    rlim_cur: 64 << 10,
                    rlim_max: 64 << 10,
                };
                assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
            }
            let c = FileConnector::new(&dir).expect("connector");
            match c.put(Bytes::from(vec![1u8; 1 << 20])) {
                Err(Error::Io { context, .. }) => println!("PUT_ERROR={context}"),
                other => panic!("expected an I/O error, got {other:?}"),
            }
            let small = c
                .put(Bytes::from(vec![2u8; 1000]))
                .expect("small put still works");
            println!("SMALL_KEY={small}");
        }
        other => panic!("unknown role {other}"),
    }
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        out.push(
            entry
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_owned(),
        );
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn another_process_resolves_a_proxy_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(
        "two-process",
        std::sync::Arc::new(FileConnector::new(dir.path()).unwrap()),
    )
    .cache_size(0)
    .build();
    let values: Vec<f64> = (1..=1000).map(f64::from).collect();
    let proxy = store.proxy(&values).unwrap();
    let wire = serde_json::to_string(&proxy).unwrap();
    let out = run_child("consumer", &[("PROXY_JSON", &wire)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key: Key = output_field(&stdout, "CHILD_KEY").parse().unwrap();
    // The child exited; its object is still there (files outlive producers).
    assert_eq!(
        store.get::<String>(&key).unwrap().as_deref(),
        Some("sum=500500")
    );
}

#[test]
fn failed_write_leaves_no_partial_object() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_child("full-disk", &[("DIR", dir.path().to_str().unwrap())]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let context = output_field(&stdout, "PUT_ERROR");
    assert!(
        context.contains(dir.path().to_str().unwrap()),
        "error names the path: {context}"
    );
    let small: Key = output_field(&stdout, "SMALL_KEY").parse().unwrap();
    // Only the small object remains: no temporary file, no half object.
    assert_eq!(files_under(dir.path()), vec![small.id().to_string()]);
}

#[test]
fn objects_fan_out_and_writes_leave_no_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let c = FileConnector::new(dir.path()).unwrap();
    let keys: Vec<Key> = (0..50)
        .map(|i| c.put(Bytes::from(vec![i as u8; 10])).unwrap())
        .collect();
    for k in &keys {
        let hex = k.id().to_string();
        assert!(dir.path().join(&hex[..2]).join(&hex).is_file());
    }
    let files = files_under(dir.path());
    assert_eq!(files.len(), 50);
    assert!(files.iter().all(|f| !f.ends_with(".tmp")));
}

#[test]
fn a_mapped_object_stays_readable_after_evict() {
    let dir = tempfile::tempdir().unwrap();
    let c = FileConnector::new(dir.path()).unwrap();
    let data = Bytes::from(vec![9u8; 4 << 20]);
    let key = c.put(data.clone()).unwrap();
    let mapped = c.get(&key).unwrap().unwrap();
    c.evict(&key).unwrap();
    assert!(mapped == data);
}

#[test]
fn concurrent_readers_never_see_partial_objects() {
    let dir = tempfile::tempdir().unwrap();
    let c = std::sync::Arc::new(FileConnector::new(dir.path()).unwrap());
    let d = c.as_deferrable().unwrap();
    let key = d.new_key().unwrap();
    let data = Bytes::from(vec![5u8; 8 << 20]);
    let reader = {
        let c = std::sync::Arc::clone(&c);
        let key = key.clone();
        std::thread::spawn(move || loop {
            if let Some(b) = c.get(&key).unwrap() {
                assert_eq!(b.len(), 8 << 20, "a reader saw a partial object");
                return;
            }
        })
    };
    d.set(&key, data).unwrap();
    reader.join().unwrap();
}

#[test]
fn unusable_directories_are_clear_errors() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let under_file = file.path().join("sub");
    let err = FileConnector::new(&under_file).unwrap_err();
    assert!(
        err.to_string().contains(under_file.to_str().unwrap()),
        "{err}"
    );
    let err = FileConnector::new(file.path()).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[test]
fn bad_configs_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let base = ConnectorConfig::new("file").with("dir", dir.path().display());
    for bad in [
        ConnectorConfig::new("file"),
        base.clone().with("stripe_count", 4),
        base.clone().with("mmap_threshold", "lots"),
        ConnectorConfig::new("redis").with("dir", "/tmp"),
    ] {
        assert!(
            matches!(
                FileConfig::from_connector_config(&bad),
                Err(Error::Config(_))
            ),
            "{bad:?}"
        );
    }
    let striped = base.with("stripe_count", 2).with("stripe_size", 1 << 20);
    let config = FileConfig::from_connector_config(&striped).unwrap();
    assert_eq!(config.stripe.map(|s| s.count), Some(2));
    // Not on Lustre here: the stripe is ignored, the connector works.
    let c = FileConnector::with_config(config).unwrap();
    assert!(!proxystore_file::is_lustre(c.dir()).unwrap());
    let bad_size = FileConfig {
        stripe: Some(proxystore_file::LustreStripe {
            count: 1,
            size: 1000,
        }),
        ..FileConfig::new(dir.path())
    };
    assert!(matches!(
        FileConnector::with_config(bad_size),
        Err(Error::Config(_))
    ));
}
