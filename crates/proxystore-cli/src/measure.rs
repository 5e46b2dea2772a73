//! Timing loops and their records: the connector through a `Store`, the
//! memcpy baseline, and raw transport baselines, each after the same
//! warm-up.

use std::hint::black_box;
use std::time::{Duration, Instant};

use proxystore::registry::RawBaseline;
use proxystore::{Bytes, PodArray, Store};
use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// Untimed runs before every timed loop.
pub(crate) const WARMUP: usize = 2;

/// One measured case, in the `--json` record format.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) connector: String,
    pub(crate) op: String,
    pub(crate) size_bytes: u64,
    pub(crate) iterations: u64,
    pub(crate) median_ns: u64,
    pub(crate) p99_ns: u64,
    pub(crate) gib_per_s: f64,
}

/// A record of `samples`: median, nearest-rank 99th percentile, bandwidth.
pub(crate) fn record(connector: &str, op: &str, size: usize, mut samples: Vec<Duration>) -> Record {
    samples.sort_unstable();
    let n = samples.len().max(1);
    let median = match samples.len() {
        0 => Duration::ZERO,
        len if len % 2 == 1 => samples[len / 2],
        len => (samples[len / 2 - 1] + samples[len / 2]) / 2,
    };
    // Nearest-rank 99th percentile.
    let p99 = samples
        .get((n * 99).div_ceil(100) - 1)
        .copied()
        .unwrap_or_default();
    let secs = median.as_secs_f64();
    Record {
        connector: connector.to_owned(),
        op: op.to_owned(),
        size_bytes: size as u64,
        iterations: samples.len() as u64,
        median_ns: u64::try_from(median.as_nanos()).unwrap_or(u64::MAX),
        p99_ns: u64::try_from(p99.as_nanos()).unwrap_or(u64::MAX),
        gib_per_s: if secs > 0.0 {
            size as f64 / secs / (1u64 << 30) as f64
        } else {
            f64::INFINITY
        },
    }
}

/// Reads one byte per page, so data mapped lazily (mmap) is really paged in
/// inside the timed region, as a consumer using it would.
pub(crate) fn touch(data: &[u8]) -> u64 {
    data.iter().step_by(4096).map(|&b| u64::from(b)).sum()
}

/// Whether a read gave back as many bytes as were put.
pub(crate) fn check_len(got: Option<&Bytes>, want: usize) -> Result<(), CliError> {
    match got {
        Some(b) if b.len() == want => Ok(()),
        Some(b) => Err(CliError::new(
            1,
            format!("bench read {} bytes back, expected {want}", b.len()),
        )),
        None => Err(CliError::new(1, "bench object vanished before it was read")),
    }
}

/// Times `iterations` runs of `f` after the warm-up.
fn timed(
    iterations: usize,
    mut f: impl FnMut() -> Result<(), CliError>,
) -> Result<Vec<Duration>, CliError> {
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..WARMUP + iterations {
        let start = Instant::now();
        f()?;
        let t = start.elapsed();
        if i >= WARMUP {
            samples.push(t);
        }
    }
    Ok(samples)
}

/// Copies of `src` into a preallocated, already-faulted destination: pure
/// copy bandwidth, the strictest baseline.
pub(crate) fn time_memcpy(src: &Bytes, iterations: usize) -> Vec<Duration> {
    // The destination sits half a page away from the source's page offset:
    // on AMD Zen, `rep movsb` (glibc's memcpy for these sizes) runs up to
    // 20x slower when the destination is a few bytes past a 4 KiB alias of
    // the source, as two heap buffers often are, and a baseline should not
    // be slowed by that accident.
    let mut buf = vec![1u8; src.len() + 4096];
    let want = (src.as_ptr() as usize + 2048) % 4096;
    let off = (want + 4096 - buf.as_ptr() as usize % 4096) % 4096;
    let dst = &mut buf[off..off + src.len()];
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..WARMUP + iterations {
        let start = Instant::now();
        dst.copy_from_slice(black_box(src));
        black_box(&mut *dst);
        let t = start.elapsed();
        if i >= WARMUP {
            samples.push(t);
        }
    }
    samples
}

/// Times `op`: puts through `store`, gets through `reader` (the same store
/// for in-process connectors; a second connector for network ones, so gets
/// cross the transport as another process's would).
pub(crate) fn time_op(
    store: &Store,
    reader: &Store,
    op: &str,
    data: &Bytes,
    iterations: usize,
) -> Result<Vec<Duration>, CliError> {
    if let Some(view) = typed_get(op) {
        return time_typed_get(store, reader, view, data, iterations);
    }
    let mut samples = Vec::with_capacity(iterations);
    let fixed = if op == "get" {
        Some(store.put_bytes(data.clone())?)
    } else {
        None
    };
    for i in 0..WARMUP + iterations {
        let (t, key) = match (op, &fixed) {
            ("put", _) => {
                let start = Instant::now();
                let key = store.put_bytes(data.clone())?;
                (start.elapsed(), Some(key))
            }
            ("get", Some(key)) => {
                let start = Instant::now();
                let got = reader.get_bytes(key)?;
                black_box(got.as_deref().map(touch));
                let t = start.elapsed();
                check_len(got.as_ref(), data.len())?;
                (t, None)
            }
            _ => {
                let start = Instant::now();
                let key = store.put_bytes(data.clone())?;
                let got = reader.get_bytes(&key)?;
                black_box(got.as_deref().map(touch));
                let t = start.elapsed();
                check_len(got.as_ref(), data.len())?;
                (t, Some(key))
            }
        };
        if let Some(key) = key {
            store.evict(&key)?;
        }
        if i >= WARMUP {
            samples.push(t);
        }
    }
    if let Some(key) = fixed {
        store.evict(&key)?;
    }
    Ok(samples)
}

/// The ops `bench` measures through the store, in report order. The typed
/// gets read an array of `f64` (the payload's bytes, `size / 8` elements):
/// `get-owned` as a `Vec<f64>` (a copy), `get-view` as a `PodArray<f64>`
/// over the connector's buffer.
pub(crate) const STORE_OPS: &[&str] = &["put", "get", "roundtrip", "get-owned", "get-view"];

/// Whether `op` is a typed get, and if so whether it reads a view.
fn typed_get(op: &str) -> Option<bool> {
    match op {
        "get-owned" => Some(false),
        "get-view" => Some(true),
        _ => None,
    }
}

/// Reads one element per 4 KiB page, as [`touch`] does for bytes.
fn touch_f64(values: &[f64]) -> f64 {
    values.iter().step_by(4096 / 8).sum()
}

/// Times typed gets of one array of `f64` put once through `store` (the
/// array layout, so both reads see the same stored bytes): as a view if
/// `view`, else as an owned `Vec`. Every page is touched, as `get` does.
fn time_typed_get(
    store: &Store,
    reader: &Store,
    view: bool,
    data: &Bytes,
    iterations: usize,
) -> Result<Vec<Duration>, CliError> {
    let want = data.len() / 8;
    let array = PodArray::<f64>::build(want, |out| {
        for (o, b) in out.iter_mut().zip(data.chunks_exact(8)) {
            *o = f64::from_ne_bytes(b.try_into().unwrap_or_default());
        }
    });
    let key = store.put(&array)?;
    let check = |len: Option<usize>| match len {
        Some(n) if n == want => Ok(()),
        Some(n) => Err(CliError::new(
            1,
            format!("bench read {n} f64 elements back, expected {want}"),
        )),
        None => Err(CliError::new(1, "bench object vanished before it was read")),
    };
    let samples = timed(iterations, || {
        if view {
            let got: Option<PodArray<f64>> = reader.get(&key)?;
            black_box(got.as_deref().map(touch_f64));
            check(got.map(|a| a.len()))
        } else {
            let got: Option<Vec<f64>> = reader.get(&key)?;
            black_box(got.as_deref().map(touch_f64));
            check(got.map(|v| v.len()))
        }
    });
    store.evict(&key)?;
    samples
}

/// A baseline timed beside a connector: the bar it is held to.
pub(crate) trait Baseline {
    /// Its name in the report (`zmq-raw`).
    fn name(&self) -> &str;
    /// The ops it measures.
    fn ops(&self) -> &'static [&'static str] {
        &["put", "get"]
    }
    /// Times `put` (payload to the server) or `get` (payload back).
    fn time(&self, op: &str, data: &Bytes, iterations: usize) -> Result<Vec<Duration>, CliError>;
}

/// A connector crate's raw transport loop, timed like the connector: gets
/// are touched and their length checked.
pub(crate) struct Raw(pub(crate) Box<dyn RawBaseline>);

impl Baseline for Raw {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn ops(&self) -> &'static [&'static str] {
        self.0.ops()
    }

    fn time(&self, op: &str, data: &Bytes, iterations: usize) -> Result<Vec<Duration>, CliError> {
        let mut session = self.0.start(data)?;
        timed(iterations, || {
            if op == "put" {
                Ok(session.put(data)?)
            } else {
                let got = session.get()?;
                black_box(got.as_deref().map(touch));
                check_len(got.as_ref(), data.len())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_nanos).collect();
        let r = record("x", "get", 100, samples);
        assert_eq!((r.median_ns, r.p99_ns, r.iterations), (50, 99, 100));
        let r = record("x", "get", 1, vec![Duration::from_nanos(5)]);
        assert_eq!((r.median_ns, r.p99_ns), (5, 5));
    }

    /// A raw transport that serves a shorter payload than it was given.
    struct Short;

    struct ShortSession(Bytes);

    impl RawBaseline for Short {
        fn name(&self) -> &str {
            "short"
        }

        fn start(
            &self,
            payload: &Bytes,
        ) -> proxystore::Result<Box<dyn proxystore::registry::RawSession>> {
            Ok(Box::new(ShortSession(payload.slice(1..))))
        }
    }

    impl proxystore::registry::RawSession for ShortSession {
        fn put(&mut self, _: &Bytes) -> proxystore::Result<()> {
            Ok(())
        }

        fn get(&mut self) -> proxystore::Result<Option<Bytes>> {
            Ok(Some(self.0.clone()))
        }
    }

    #[test]
    fn raw_baselines_are_timed_and_their_reads_checked() {
        let raw = Raw(Box::new(Short));
        let data = Bytes::from_static(b"abcd");
        assert_eq!(raw.time("put", &data, 3).unwrap().len(), 3);
        let err = raw.time("get", &data, 3).unwrap_err();
        assert!(err.message.contains("expected 4"), "{}", err.message);
    }
}
