//! `proxystore bench`: put, get and roundtrip of `Bytes` payloads through a
//! `Store` (cache off) per connector and size, beside a memcpy baseline
//! measured in the same run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use proxystore::Store;

use crate::error::CliError;
use crate::measure::{record, time_memcpy, time_op, Baseline};
use crate::{report, targets};

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
    if targets.iter().any(|t| t.helper.is_some()) {
        // An MPI rank other than 0: it serves, rank 0 measures and reports.
        for t in targets {
            if let Some(help) = t.helper {
                help()?;
            }
        }
        return Ok(());
    }
    for t in &targets {
        eprintln!("{}: {}", t.name, t.reader.capabilities());
    }
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
        let data = proxystore::pattern::pattern(size, 0);
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
            let mut raw: Vec<(&dyn Baseline, &str, Vec<Duration>)> = Vec::new();
            for baseline in &target.baselines {
                for &op in baseline.ops() {
                    bar.set_message(format!(
                        "{} {op} {}",
                        baseline.name(),
                        report::human_size(size as u64)
                    ));
                    // A baseline that fails (a reference tool that cannot
                    // open the provider) is left out, not the whole run.
                    match baseline.time(op, &data, half) {
                        Ok(t) => raw.push((baseline.as_ref(), op, t)),
                        Err(e) => bar.println(format!(
                            "warning: baseline {} {op} failed and is left out: {}",
                            baseline.name(),
                            e.message
                        )),
                    }
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
                // The second half may fail too (a noisy fi_pingpong
                // difference): the baseline is left out, as above.
                match baseline.time(op, &data, iterations - half) {
                    Ok(t) => {
                        samples.extend(t);
                        records.push(record(baseline.name(), op, size, samples));
                    }
                    Err(e) => bar.println(format!(
                        "warning: baseline {} {op} failed and is left out: {}",
                        baseline.name(),
                        e.message
                    )),
                }
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
}
