//! Shared pieces of the criterion benchmarks: payloads and the memcpy
//! baseline every ratio is taken against.

use std::hint::black_box;

use serde::{Deserialize, Serialize};

/// `n` doubles, not all equal.
pub fn doubles(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64 * 0.5).collect()
}

/// A record-shaped value (strings, ints, a small vector): the case where a
/// codec's per-field cost shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Particle {
    /// Name.
    pub name: String,
    /// Id.
    pub id: u64,
    /// Charge.
    pub charge: i32,
    /// Position.
    pub position: [f64; 3],
    /// Tags.
    pub tags: Vec<u16>,
}

/// `n` particles.
pub fn particles(n: usize) -> Vec<Particle> {
    (0..n)
        .map(|i| Particle {
            name: format!("p{i}"),
            id: i as u64,
            charge: (i % 7) as i32 - 3,
            position: [i as f64, 1.0, -2.5],
            tags: vec![1, 2, 3],
        })
        .collect()
}

/// A destination buffer for copying `len` bytes from `src`, placed half a
/// page from the source's page offset (AMD Zen's `rep movsb` is many times
/// slower when the destination sits just past a 4 KiB alias of the source).
pub struct CopyTarget {
    buf: Vec<u8>,
    off: usize,
    len: usize,
}

impl CopyTarget {
    /// A faulted-in destination for copies of `src`.
    pub fn new(src: &[u8]) -> Self {
        let buf = vec![1u8; src.len() + 4096];
        let want = (src.as_ptr() as usize + 2048) % 4096;
        let off = (want + 4096 - buf.as_ptr() as usize % 4096) % 4096;
        CopyTarget {
            buf,
            off,
            len: src.len(),
        }
    }

    /// Copies `src` (of the length given at construction) into the target.
    pub fn copy(&mut self, src: &[u8]) {
        self.buf[self.off..self.off + self.len].copy_from_slice(black_box(src));
        black_box(&mut self.buf);
    }
}

/// A connector under the name a benchmark reports it by.
pub type NamedConnector = (&'static str, std::sync::Arc<dyn proxystore::Connector>);

/// The `file` and `shm` connectors on fresh temporary directories (on the
/// default temporary directory and on `/dev/shm`), named as the CLI names
/// them. Keep the returned directories alive while the connectors are used.
pub fn file_and_shm() -> (Vec<NamedConnector>, [tempfile::TempDir; 2]) {
    use proxystore::file::FileConfig;
    use proxystore::FileConnector;
    let tmp = tempfile::tempdir().expect("temp dir");
    let shm = tempfile::tempdir_in("/dev/shm").expect("shm dir");
    let file = FileConnector::new(tmp.path()).expect("file connector");
    let shm_connector = FileConnector::with_config(FileConfig {
        dir: shm.path().into(),
        ..FileConfig::shm()
    })
    .expect("shm connector");
    (
        vec![
            ("file", std::sync::Arc::new(file)),
            ("shm", std::sync::Arc::new(shm_connector)),
        ],
        [tmp, shm],
    )
}
