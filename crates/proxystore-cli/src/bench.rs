//! `proxystore bench`: put, get and roundtrip of `Bytes` payloads through a
//! `Store` (cache off) per connector and size, beside a memcpy baseline
//! measured in the same run.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use proxystore::{Bytes, Store};
use serde::Serialize;

use crate::{report, targets, CliError};

/// Flags of `proxystore bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Connectors to measure, comma separated (network ones start their
    /// servers on loopback and add their raw transport as a baseline).
    #[arg(long, value_delimiter = ',', default_value = "local,file,shm")]
    connector: Vec<String>,
    /// Payload sizes, comma separated (B, KiB, MiB, GiB suffixes).
    #[arg(long, value_delimiter = ',', default_value = "1KiB,64KiB,1MiB,16MiB,64MiB", value_parser = parse_size)]
    sizes: Vec<usize>,
    /// Timed iterations per case (default: 512 MiB / size, between 8 and 2000).
    #[arg(long)]
    iterations: Option<usize>,
    /// Directory for the file connector (default: a new temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Write the results as a JSON list of records.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw bandwidth against size as an SVG plot.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// One measured case, in the `--json` record format.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Record {
    pub(crate) connector: String,
    pub(crate) op: String,
    pub(crate) size_bytes: u64,
    pub(crate) iterations: u64,
    pub(crate) median_ns: u64,
    pub(crate) p99_ns: u64,
    pub(crate) gib_per_s: f64,
}

/// Parses `64KiB`, `1MiB`, `4096`, `2GiB` (also `KB`/`MB`/`GB` as binary units).
pub(crate) fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("'{text}' is not a size like 64KiB"))?;
    let mult: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "'{text}' has an unknown unit (use B, KiB, MiB or GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// Iterations for one case: enough to move ~512 MiB, within [8, 2000].
fn default_iterations(size: usize) -> usize {
    ((512usize << 20) / size.max(1)).clamp(8, 2000)
}

/// Reads one byte per page, so data mapped lazily (mmap) is really paged in
/// inside the timed region, as a consumer using it would.
pub(crate) fn touch(data: &[u8]) -> u64 {
    data.iter().step_by(4096).map(|&b| u64::from(b)).sum()
}

fn payload(size: usize) -> Bytes {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut v = Vec::with_capacity(size);
    while v.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let take = (size - v.len()).min(8);
        v.extend_from_slice(&state.to_le_bytes()[..take]);
    }
    Bytes::from(v)
}

fn record(connector: &str, op: &str, size: usize, mut samples: Vec<Duration>) -> Record {
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

pub(crate) const WARMUP: usize = 2;

fn time_memcpy(src: &Bytes, iterations: usize) -> Vec<Duration> {
    // A preallocated, already-faulted destination: pure copy bandwidth, the
    // strictest baseline. The destination sits half a page away from the
    // source's page offset: on AMD Zen, `rep movsb` (glibc's memcpy for
    // these sizes) runs up to 20x slower when the destination is a few bytes
    // past a 4 KiB alias of the source, as two heap buffers often are, and a
    // baseline should not be slowed by that accident.
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
fn time_op(
    store: &Store,
    reader: &Store,
    op: &str,
    data: &Bytes,
    iterations: usize,
) -> Result<Vec<Duration>, CliError> {
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

/// Runs the benchmark and reports it.
pub(crate) fn run(args: &BenchArgs) -> Result<(), CliError> {
    if args.sizes.is_empty() {
        return Err(CliError::new(2, "--sizes needs at least one size"));
    }
    if args.iterations == Some(0) {
        return Err(CliError::new(2, "--iterations must be at least 1"));
    }
    // Open every connector first so a bad name fails before any measuring.
    let targets = args
        .connector
        .iter()
        .map(|name| targets::open(name.trim(), args.dir.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let ops = ["put", "get", "roundtrip"];
    let baselines: usize = targets
        .iter()
        .flat_map(|t| &t.baselines)
        .map(|b| b.ops().len())
        .sum();
    let total = (args.sizes.len() * (1 + targets.len() * ops.len() + baselines)) as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut records = Vec::new();
    for &size in &args.sizes {
        let data = payload(size);
        let iterations = args.iterations.unwrap_or_else(|| default_iterations(size));
        bar.set_message(format!("memcpy {}", report::human_size(size as u64)));
        records.push(record(
            "memcpy",
            "copy",
            size,
            time_memcpy(&data, iterations),
        ));
        bar.inc(1);
        for target in &targets {
            let store = Store::builder(
                format!("bench-{}", target.name),
                Arc::clone(&target.connector),
            )
            .cache_size(0)
            .build();
            let reader = Store::builder(
                format!("bench-{}-reader", target.name),
                Arc::clone(&target.reader),
            )
            .cache_size(0)
            .build();
            // The raw baseline brackets the connector: half its iterations
            // before, half after, so drift on a noisy machine (frequency,
            // server warm-up) weighs on both sides alike.
            let half = iterations.div_ceil(2);
            let mut raw: Vec<(&targets::RawBaselineBox, &str, Vec<Duration>)> = Vec::new();
            for baseline in &target.baselines {
                for &op in baseline.ops() {
                    bar.set_message(format!(
                        "{} {op} {}",
                        baseline.name(),
                        report::human_size(size as u64)
                    ));
                    raw.push((baseline, op, baseline.time(op, &data, half)?));
                }
            }
            for op in ops {
                bar.set_message(format!(
                    "{} {op} {}",
                    target.name,
                    report::human_size(size as u64)
                ));
                let samples = time_op(&store, &reader, op, &data, iterations)?;
                records.push(record(&target.name, op, size, samples));
                bar.inc(1);
            }
            for (baseline, op, mut samples) in raw {
                samples.extend(baseline.time(op, &data, iterations - half)?);
                records.push(record(baseline.name(), op, size, samples));
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    print!("{}", report::table(&records));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&records)
            .map_err(|e| CliError::new(1, format!("encoding results: {e}")))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| CliError::new(1, format!("writing {}: {e}", path.display())))?;
    }
    if let Some(path) = &args.plot {
        std::fs::write(path, report::svg(&records))
            .map_err(|e| CliError::new(1, format!("writing {}: {e}", path.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2gb"), Ok(2 << 30));
        assert!(parse_size("1XB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_nanos).collect();
        let r = record("x", "get", 100, samples);
        assert_eq!((r.median_ns, r.p99_ns, r.iterations), (50, 99, 100));
        let r = record("x", "get", 1, vec![Duration::from_nanos(5)]);
        assert_eq!((r.median_ns, r.p99_ns), (5, 5));
    }
}
