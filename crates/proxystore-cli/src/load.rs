//! `proxystore load`: one data server (set up as `bench` sets it up) and
//! many client threads doing a mix of get/put/exists/evict for a while,
//! every object checked on read; ops/s, GiB/s, latency quantiles, errors
//! by kind, objects lost, and the server's memory and descriptors.

mod hist;
mod payload;
pub(crate) mod procfs;
mod procs;
mod report;
mod run;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use proxystore::registry::BenchEnv;

use crate::error::CliError;
use crate::{bench, connectors, targets};
pub(crate) use procs::{client_main, Kid};
use run::{Failure, Plan};

/// Most client threads a run may start.
const MAX_CLIENTS: usize = 4096;
/// Longest run.
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long clients may run past the duration (their operations are
/// bounded by the connector's own timeouts, 10 s by default) before the
/// run is declared stuck.
const GRACE: Duration = Duration::from_secs(30);

/// Flags of `proxystore load`.
#[derive(Debug, clap::Args)]
pub(crate) struct LoadArgs {
    /// Connectors, comma separated, run one after another (network ones
    /// start their server on loopback, as `bench` does).
    #[arg(long, value_delimiter = ',', default_value = "file")]
    connector: Vec<String>,
    /// Client threads; a comma-separated list (1,16,64,256) runs each count
    /// in turn.
    #[arg(long, value_delimiter = ',', value_parser = parse_clients, default_value = "16")]
    clients: Vec<usize>,
    /// Run the clients in this many processes (this program started again),
    /// the --clients threads split evenly among them, instead of as
    /// threads of this one.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    processes: Option<u64>,
    /// Operation weights, e.g. get=90,put=8,evict=2 (ops: get, put,
    /// exists, evict; left-out ops weigh 0).
    #[arg(long, value_parser = parse_mix, default_value = "get=90,put=8,evict=2")]
    mix: Mix,
    /// Object size (B, KiB, MiB, GiB; at least 32 B, the check header).
    #[arg(long, value_parser = parse_object_size, default_value = "1MiB")]
    size: usize,
    /// How long each run lasts (500ms, 10s, 2m, 1h).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    duration: Duration,
    /// Stop a run after this many operations over all clients, if sooner.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    ops: Option<u64>,
    /// Live objects at most; a put at the cap first evicts one
    /// [default: 256 MiB worth, between 16 and 4096]. Half are put before
    /// the clients start, so gets have targets.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..1_000_000))]
    max_live: Option<u64>,
    /// Threads for the data server's transport (zmq: I/O threads of the
    /// server's context; at most 64, as the connector's `server_threads`)
    /// [default: the connector's, 1].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    server_threads: Option<u64>,
    /// Directory for the file connector (default: a new temporary one).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Write one JSON record per connector, client count and op.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw ops/s against client count as an SVG plot.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// Operation weights, as given and as cumulative sums.
#[derive(Debug, Clone)]
pub(crate) struct Mix {
    text: String,
    cumulative: [u32; 4],
}

/// Parses `get=90,put=8,evict=2`.
fn parse_mix(text: &str) -> Result<Mix, String> {
    let mut weights = [0u32; 4];
    let mut seen = [false; 4];
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}' is not OP=WEIGHT (e.g. get=90)"))?;
        let i = run::Op::ALL
            .iter()
            .position(|op| op.name() == name.trim())
            .ok_or_else(|| format!("unknown op '{}' (use get, put, exists, evict)", name.trim()))?;
        if seen[i] {
            return Err(format!("'{}' is given twice", name.trim()));
        }
        seen[i] = true;
        weights[i] = value
            .trim()
            .parse()
            .ok()
            .filter(|&w: &u32| w <= 1_000_000)
            .ok_or_else(|| {
                format!(
                    "weight '{}' of {name} is not a whole number up to 1000000",
                    value.trim()
                )
            })?;
    }
    let mut cumulative = [0u32; 4];
    let mut sum = 0;
    for (c, w) in cumulative.iter_mut().zip(weights) {
        sum += w;
        *c = sum;
    }
    if sum == 0 {
        return Err(format!("mix '{text}' has no op with a weight above 0"));
    }
    let text = run::Op::ALL
        .iter()
        .zip(weights)
        .filter(|(_, w)| *w > 0)
        .map(|(op, w)| format!("{}={w}", op.name()))
        .collect::<Vec<_>>()
        .join(",");
    Ok(Mix { text, cumulative })
}

fn parse_clients(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_CLIENTS).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{text}' is not a client count from 1 to {MAX_CLIENTS}"
        )),
    }
}

fn parse_object_size(text: &str) -> Result<usize, String> {
    let size = bench::parse_size(text)?;
    if size < payload::HEADER {
        return Err(format!(
            "'{text}' is smaller than the {} B check header",
            payload::HEADER
        ));
    }
    Ok(size)
}

/// Parses `500ms`, `10s`, `2m`, `1h`, or plain seconds; above zero.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 10s, 500ms or 2m"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("'{text}' has an unknown unit (use ms, s, m or h)")),
    };
    if d.is_zero() {
        return Err(format!("duration '{text}' must be above zero"));
    }
    // Deadlines are `Instant`s: keep them far from overflow.
    if d > MAX_DURATION {
        return Err(format!("duration '{text}' is over the 7-day limit"));
    }
    Ok(d)
}

/// Runs every connector at every client count, prints a table per run and
/// writes the outputs; an error if any object was lost.
pub(crate) fn run(args: &LoadArgs) -> Result<(), CliError> {
    let names = bench::or_default(&args.connector, &["file"]);
    // Unknown names fail before any server starts.
    for name in &names {
        connectors::descriptor(name)?;
    }
    let max_live = args.max_live.map_or_else(
        || ((256usize << 20) / args.size).clamp(16, 4096),
        |n| n as usize,
    );
    let processes = args.processes.map(|p| p as usize);
    if let Some(p) = processes {
        if let Some(&c) = args.clients.iter().find(|&&c| c < p) {
            return Err(CliError::new(
                2,
                format!("--clients {c} is fewer than --processes {p}: every process runs at least one client"),
            ));
        }
        for name in &names {
            if let Some(scope) = connectors::descriptor(name)?.confined_to {
                return Err(CliError::new(
                    2,
                    format!("the {name} connector's keys are valid only inside {scope}; --processes needs one that other processes reach"),
                ));
            }
        }
    }
    let mut records = Vec::new();
    let mut lost = 0;
    for name in &names {
        // One server at a time, so the child process found is this one's.
        // Client processes reach a server that needs a secret (ucx, ofi)
        // with this run's, handed to them in their environment only.
        let secret = format!("{:032x}", proxystore::ObjectId::random().as_u128());
        let mut env = BenchEnv::new(args.dir.clone()).with_secret(secret.clone());
        if let Some(threads) = args.server_threads {
            env = env.with_server_threads(threads as usize);
        }
        let target = targets::open_in(name, &env)?;
        if let Some(help) = target.helper {
            // An MPI rank other than 0 serves; rank 0 runs the load.
            help()?;
            continue;
        }
        let server = procfs::Server::find();
        for &clients in &args.clients {
            let plan = Plan {
                clients,
                size: args.size,
                duration: args.duration,
                ops: args.ops,
                mix: args.mix.cumulative,
                max_live,
                prefill: (max_live / 2).max(1),
                seed: 0,
                grace: GRACE,
            };
            let label = format!("load {}, {clients} clients", target.name);
            eprintln!(
                "{label}: {} objects of {}, mix {}, {:?}",
                plan.prefill,
                crate::report::human_size(args.size as u64),
                args.mix.text,
                args.duration
            );
            let start = server.usage();
            let tty = std::io::stderr().is_terminal();
            let show = |line: String| {
                if tty {
                    eprint!("\r{line}\x1b[K");
                } else {
                    eprintln!("{line}");
                }
            };
            let (outcome, end, verify_time) = match processes {
                None => {
                    let outcome = run::run(
                        &plan,
                        &target.connector,
                        &target.reader,
                        |shared, t| {
                            let ops = shared.total_ops();
                            show(format!(
                                "{label}: {:.0}/{:.0} s, {ops} ops ({:.0}/s), {} errors, {} lost, {} live",
                                t.as_secs_f64(),
                                args.duration.as_secs_f64(),
                                ops as f64 / t.as_secs_f64().max(1e-9),
                                shared.total_errors(),
                                shared.total_lost(),
                                shared.live()
                            ));
                        },
                    );
                    if tty {
                        eprint!("\r\x1b[K");
                    }
                    let outcome = outcome.map_err(|f| failure(&label, f))?;
                    let end = server.usage();
                    let verify_start = Instant::now();
                    outcome
                        .shared
                        .verify_and_clear(target.reader.as_ref(), plan.size);
                    (outcome, end, verify_start.elapsed())
                }
                Some(p) => {
                    let writer = procs::writer_config(target.connector.as_ref())?;
                    let reader = target.reader.config();
                    let result = procs::run(&plan, p, writer, reader, &secret, |t, running| {
                        show(format!(
                            "{label}: {:.0}/{:.0} s, {running} of {p} client processes running",
                            t.as_secs_f64(),
                            args.duration.as_secs_f64(),
                        ));
                    });
                    if tty {
                        eprint!("\r\x1b[K");
                    }
                    let (outcome, verify_time) = result
                        .map_err(|e| CliError::new(e.code, format!("{label}: {}", e.message)))?;
                    (outcome, server.usage(), verify_time)
                }
            };
            let info = report::RunInfo {
                connector: &target.name,
                clients,
                size: args.size,
                mix: &args.mix.text,
                server: server.describe(processes.is_none()),
                processes: processes.unwrap_or(0),
                start,
                end,
            };
            let run_records = info.records(&outcome, verify_time);
            print!("{}", report::table(&run_records));
            let extra = [
                (
                    &outcome.shared.cap_evicts,
                    "evicts were made to hold --max-live",
                ),
                (
                    &outcome.shared.empty_puts,
                    "ops found no live object and put one instead",
                ),
            ];
            for (count, what) in extra {
                let n = count.load(std::sync::atomic::Ordering::Relaxed);
                if n > 0 {
                    println!("{n} {what}");
                }
            }
            if let Ok(losses) = outcome.shared.losses.lock() {
                for l in losses.iter() {
                    println!("lost: {l}");
                }
            }
            println!();
            lost += outcome.shared.total_lost();
            records.extend(run_records);
        }
    }
    write_outputs(args, &records)?;
    if lost > 0 {
        return Err(CliError::new(1, format!("{lost} objects lost")));
    }
    Ok(())
}

/// A run that did not finish, as the command's error.
fn failure(label: &str, f: Failure) -> CliError {
    match f {
        Failure::Prefill(e) => {
            CliError::new(1, format!("{label}: putting the first objects failed: {e}"))
        }
        Failure::Stuck(n) => CliError::new(
            1,
            format!("{label}: {n} clients still inside an operation {GRACE:?} after the run's end"),
        ),
        Failure::Spawn(e) => {
            CliError::new(1, format!("{label}: starting a client thread failed: {e}"))
        }
    }
}

fn write_outputs(args: &LoadArgs, records: &[report::LoadRecord]) -> Result<(), CliError> {
    crate::report::write_files(args.json.as_deref(), args.plot.as_deref(), records, || {
        report::svg(records)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_bad_ones_say_why() {
        let mix = parse_mix("get=90,put=8,evict=2").unwrap();
        assert_eq!(mix.cumulative, [90, 98, 98, 100]);
        assert_eq!(mix.text, "get=90,put=8,evict=2");
        assert_eq!(parse_mix("exists=1").unwrap().cumulative, [0, 0, 1, 1]);
        for bad in ["get=abc", "get=0,put=0", "", "read=1", "get", "get=1,get=2"] {
            assert!(parse_mix(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        for bad in [
            "0s",
            "0ms",
            "s",
            "10x",
            "-1s",
            "",
            "8d",
            "999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_clients("256"), Ok(256));
        assert!(parse_clients("0").is_err() && parse_clients("x").is_err());
        assert!(parse_object_size("16").is_err());
        assert_eq!(parse_object_size("64KiB"), Ok(64 << 10));
    }
}
