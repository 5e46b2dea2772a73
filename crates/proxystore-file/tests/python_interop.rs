//! The file connector's `layout = python` against Python ProxyStore 1.1's
//! own `FileConnector` on one directory, both ways, with `Codec::Python`:
//! what a Rust store writes, Python reads (a numpy array, bytes, a str) by
//! `FileKey(filename=<uuid>)`, and what Python writes the Rust store reads;
//! an object without its `.ready` marker does not exist for either.
//! Skipped, with the reason printed, where python3 with proxystore and
//! numpy is missing (`ci/install-deps.sh` installs them).

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::sync::Arc;

use proxystore_core::testing::python_proxystore;
use proxystore_core::{Bytes, Codec, Connector, Key, NdArray, ObjectId, Store};
use proxystore_file::{FileConfig, FileConnector, FileLayout};

/// Runs `script` against a Python `FileConnector` `c` on `dir`.
fn python(script: &str, dir: &std::path::Path) -> Option<String> {
    let prelude = "from proxystore.connectors.file import FileConnector, FileKey\n\
                   c = FileConnector(sys.argv[1], clear=False)\n";
    python_proxystore(&format!("{prelude}{script}"), &[dir.to_str().unwrap()])
}

#[test]
fn python_proxystore_reads_what_rust_writes_and_the_reverse() {
    let dir = tempfile::tempdir().unwrap();
    let connector = Arc::new(
        FileConnector::with_config(FileConfig {
            layout: FileLayout::Python,
            ..FileConfig::new(dir.path())
        })
        .unwrap(),
    );
    let store = Store::builder("file-python", Arc::clone(&connector) as Arc<dyn Connector>)
        .codec(Codec::Python)
        .cache_size(0)
        .build();

    let values: Vec<f32> = (0..300).map(|i| i as f32 / 4.0).collect();
    let k_array = store.put(&values).unwrap();
    let k_bytes = store.put(&Bytes::from_static(b"rust bytes")).unwrap();
    let k_str = store.put(&"from rust".to_string()).unwrap();
    // A data file without its marker is not an object (a torn write).
    let torn = ObjectId::random();
    std::fs::write(dir.path().join(torn.to_uuid_string()), b"BS\nhalf").unwrap();
    assert!(!connector.exists(&Key::new(torn)).unwrap());
    let script = format!(
        "
a = deserialize(c.get(FileKey(filename='{}')))
assert a.dtype == numpy.float32, a.dtype
print(a.shape[0], float(a.sum()))
print(deserialize(c.get(FileKey(filename='{}'))) == b'rust bytes')
print(deserialize(c.get(FileKey(filename='{}'))))
print(c.exists(FileKey(filename='{}')))
k = c.put(serialize(numpy.arange(6, dtype=numpy.uint16).reshape(2, 3)))
print(k.filename)
print(c.put(serialize('ünïcode')).filename)
",
        k_array.id().to_uuid_string(),
        k_bytes.id().to_uuid_string(),
        k_str.id().to_uuid_string(),
        torn.to_uuid_string(),
    );
    let Some(out) = python(&script, dir.path()) else {
        return;
    };
    let lines: Vec<&str> = out.lines().collect();
    let sum: f32 = values.iter().sum();
    assert_eq!(lines[0], format!("300 {:?}", f64::from(sum)));
    assert_eq!(lines[1], "True");
    assert_eq!(lines[2], "from rust");
    assert_eq!(lines[3], "False", "Python saw an object without its marker");
    let key = |uuid: &str| Key::new(ObjectId::parse_uuid(uuid).unwrap());
    let grid: NdArray<u16> = store.get(&key(lines[4])).unwrap().unwrap();
    assert_eq!(grid.shape(), &[2, 3]);
    assert_eq!(grid.data(), &[0, 1, 2, 3, 4, 5]);
    let s: String = store.get(&key(lines[5])).unwrap().unwrap();
    assert_eq!(s, "ünïcode");
    // Evicting from Rust removes what Python wrote, marker first.
    store.evict(&key(lines[5])).unwrap();
    assert!(!dir.path().join(format!("{}.ready", lines[5])).exists());
    assert!(!dir.path().join(lines[5]).exists());
}
