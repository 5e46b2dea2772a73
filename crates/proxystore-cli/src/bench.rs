//! `proxystore bench`: put, get and roundtrip of `Bytes` payloads, and typed
//! gets of `f64` arrays (`get-owned`, `get-view`), through a `Store` (cache
//! off) per connector and size, beside a memcpy baseline
//! measured in the same run (`--scenario transport`, the default); the
//! task farm of `--scenario farm` is in `farm.rs`.

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::CliError;
use crate::measure::{self, record, time_memcpy, time_op, Baseline, Record};
use crate::{report, targets};

/// What `proxystore bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// Put, get, roundtrip and typed gets through a Store, beside memcpy
    /// and each connector's raw transport.
    Transport,
    /// A Dask-shaped bag of tasks: client, scheduler and worker processes,
    /// payloads in and out by value (through the scheduler) and by proxy.
    Farm,
}

/// Flags of `proxystore bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Scenario::Transport)]
    pub(crate) scenario: Scenario,
    /// Connectors to measure, comma separated (network ones start their
    /// servers on loopback and add their raw transport as a baseline)
    /// [default: local,file,shm,shm-arena; farm: shm,shm-arena].
    #[arg(long, value_delimiter = ',')]
    pub(crate) connector: Vec<String>,
    /// Payload sizes, comma separated (B, KiB, MiB, GiB suffixes)
    /// [default: 1KiB,64KiB,1MiB,16MiB,64MiB; farm: 10000,1000000,10000000,100000000].
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    pub(crate) sizes: Vec<usize>,
    /// Timed iterations per case (default: 512 MiB / size, between 8 and
    /// 2000; farm: 100 tasks).
    #[arg(long)]
    pub(crate) iterations: Option<usize>,
    /// Farm: how long each task runs, in milliseconds [default: 0].
    #[arg(long)]
    pub(crate) task_ms: Option<u32>,
    /// Directory for the file connector (default: a new temporary directory).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// Write the results as a JSON list of records.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Draw bandwidth against size as an SVG plot.
    #[arg(long)]
    pub(crate) plot: Option<PathBuf>,
}

/// The transport scenario's connectors and sizes when none are given.
const TRANSPORT_CONNECTORS: &[&str] = &["local", "file", "shm", "shm-arena"];
const TRANSPORT_SIZES: &[usize] = &[1 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20];

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

/// The connector names given, or `default` when none are.
pub(crate) fn or_default(given: &[String], default: &[&str]) -> Vec<String> {
    if given.is_empty() {
        default.iter().map(|&n| n.to_owned()).collect()
    } else {
        given.iter().map(|n| n.trim().to_owned()).collect()
    }
}

/// Writes `records` as JSON and as a plot where the flags ask for them.
pub(crate) fn write_outputs(args: &BenchArgs, records: &[Record]) -> Result<(), CliError> {
    report::write_files(args.json.as_deref(), args.plot.as_deref(), records, || {
        report::svg(records)
    })
}

/// Checks the flags every scenario shares; the caller then runs
/// [`run`] or the farm's.
pub(crate) fn check(args: &BenchArgs) -> Result<(), CliError> {
    if args.iterations == Some(0) {
        return Err(CliError::new(2, "--iterations must be at least 1"));
    }
    if args.scenario == Scenario::Transport && args.task_ms.is_some() {
        return Err(CliError::new(2, "--task-ms is a flag of --scenario farm"));
    }
    Ok(())
}

/// Runs the transport scenario and reports it.
pub(crate) fn run(args: &BenchArgs) -> Result<(), CliError> {
    let names = or_default(&args.connector, TRANSPORT_CONNECTORS);
    let sizes = if args.sizes.is_empty() {
        TRANSPORT_SIZES.to_vec()
    } else {
        args.sizes.clone()
    };
    // Open every connector first so a bad name fails before any measuring.
    let targets = names
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
    let ops = measure::STORE_OPS;
    let baselines: usize = targets
        .iter()
        .flat_map(|t| &t.baselines)
        .map(|b| b.ops().len())
        .sum();
    let total = (sizes.len() * (1 + targets.len() * ops.len() + baselines)) as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut records = Vec::new();
    for &size in &sizes {
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
            let (store, reader) = target.stores();
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
    write_outputs(args, &records)
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
