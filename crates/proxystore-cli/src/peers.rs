//! `proxystore peers`: what one reader pays for every owner it talks to.
//! Owner processes (this binary again, as the hidden `peers-owner`) each
//! start many connectors, each with its own data server holding one small
//! object; a fresh reader in this process then gets one object from each
//! of P owners (first contact: connect, handshake, request), again
//! (pooled), and its resident memory, descriptors and threads are read
//! from /proc before and after.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proxystore::registry::BenchEnv;
use proxystore::{Bytes, Connector, ConnectorConfig, Key};
use serde::{Deserialize, Serialize};

use crate::error::CliError;
use crate::load::procfs::{Server, Usage};
use crate::load::Kid;
use crate::report::human_time;
use crate::targets;

/// Most owners a run may start.
const MAX_OWNERS: usize = 4096;
/// How long owner processes may take to start their servers.
const OWNER_START: Duration = Duration::from_secs(120);

/// Flags of `proxystore peers`.
#[derive(Debug, clap::Args)]
pub(crate) struct PeersArgs {
    /// Connectors, comma separated (network ones: zmq, ucx, ofi).
    #[arg(long, value_delimiter = ',', default_value = "zmq")]
    connector: Vec<String>,
    /// Owner counts, comma separated; each gets a fresh reader.
    #[arg(long, value_delimiter = ',', value_parser = parse_owners, default_value = "1,64,512")]
    owners: Vec<usize>,
    /// Processes the owners are spread over.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    owner_processes: u64,
    /// Write one JSON record per connector and owner count.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_owners(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_OWNERS).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{text}' is not an owner count from 1 to {MAX_OWNERS}"
        )),
    }
}

/// What one owner process is told on stdin.
#[derive(Debug, Serialize, Deserialize)]
struct OwnerSpec {
    config: ConnectorConfig,
    count: usize,
}

/// One reader's costs for `owners` peers.
#[derive(Debug, Serialize)]
struct Record {
    connector: String,
    owners: usize,
    first_get_p50_ns: u64,
    first_get_p99_ns: u64,
    first_get_max_ns: u64,
    pooled_get_p50_ns: u64,
    reader_rss_kib: Option<i64>,
    reader_fds: Option<i64>,
    reader_threads: Option<i64>,
    rss_kib_per_owner: Option<f64>,
    fds_per_owner: Option<f64>,
}

/// The hidden `peers-owner` subcommand: starts `count` connectors from
/// the spec's config, puts one object through each, prints the keys (one
/// a line, then `ready`), and serves until stdin closes.
pub(crate) fn owner_main() -> Result<(), CliError> {
    let mut text = String::new();
    let mut stdin = std::io::stdin().lock();
    stdin
        .read_line(&mut text)
        .map_err(|e| CliError::new(1, format!("peers-owner: reading stdin: {e}")))?;
    let spec: OwnerSpec = serde_json::from_str(&text)
        .map_err(|e| CliError::new(2, format!("peers-owner: bad spec: {e}")))?;
    let mut owners = Vec::with_capacity(spec.count);
    let mut out = std::io::stdout().lock();
    for i in 0..spec.count {
        let c = proxystore::connector_from_config(&spec.config)?;
        let key = c.put(Bytes::from(vec![(i % 251) as u8; 1024]))?;
        writeln!(out, "{key}").map_err(|e| CliError::new(1, format!("peers-owner: {e}")))?;
        owners.push(c);
    }
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .map_err(|e| CliError::new(1, format!("peers-owner: {e}")))?;
    // Serve until the parent closes stdin (or dies).
    let _ = stdin.read_to_end(&mut Vec::new());
    drop(owners);
    Ok(())
}

/// Starts `total` owners over `processes` processes; returns the children
/// (killed when dropped) and every owner's key.
fn start_owners(
    config: &ConnectorConfig,
    total: usize,
    processes: usize,
) -> Result<(Vec<Kid>, Vec<Key>), CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::new(1, format!("finding this program: {e}")))?;
    let per = total.div_ceil(processes);
    let mut kids = Vec::new();
    let mut readers = Vec::new();
    for count in (0..total).step_by(per).map(|start| per.min(total - start)) {
        let mut child = Command::new(&exe)
            .arg("peers-owner")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| CliError::new(1, format!("starting an owner process: {e}")))?;
        let spec = serde_json::to_string(&OwnerSpec {
            config: config.clone(),
            count,
        })
        .map_err(|e| CliError::new(1, format!("encoding the owner spec: {e}")))?;
        if let Some(stdin) = child.stdin.as_mut() {
            writeln!(stdin, "{spec}")
                .map_err(|e| CliError::new(1, format!("writing to an owner process: {e}")))?;
        }
        readers.push(child.stdout.take());
        kids.push(Kid(child));
    }
    let keys = collect_keys(readers.into_iter().flatten().collect(), total, OWNER_START)?;
    Ok((kids, keys))
}

/// Reads the owners' keys (one a line, then `ready`) from their outputs,
/// `total` in all, for at most `limit`.
fn collect_keys<R: std::io::Read + Send + 'static>(
    readers: Vec<R>,
    total: usize,
    limit: Duration,
) -> Result<Vec<Key>, CliError> {
    // Each owner's lines come through a channel from a thread of its own,
    // so a hung owner costs at most `limit`, not a wait without end
    // (its thread ends when the owner is killed on the way out).
    let (lines, incoming) = std::sync::mpsc::channel::<Option<std::io::Result<String>>>();
    let mut open = 0;
    for stdout in readers {
        let lines = lines.clone();
        open += 1;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let ready = matches!(&line, Ok(l) if l == "ready");
                if lines.send(Some(line)).is_err() || ready {
                    return;
                }
            }
            let _ = lines.send(None);
        });
    }
    drop(lines);
    let deadline = Instant::now() + limit;
    let mut keys = Vec::with_capacity(total);
    while open > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match incoming.recv_timeout(left) {
            Ok(Some(Ok(line))) if line == "ready" => open -= 1,
            Ok(Some(Ok(line))) => keys.push(line.trim().parse::<Key>()?),
            Ok(Some(Err(e))) => return Err(CliError::new(1, format!("reading an owner: {e}"))),
            // An owner that ended without "ready": counted below.
            Ok(None) => open -= 1,
            Err(_) => {
                return Err(CliError::new(
                    1,
                    format!(
                        "owner processes printed {} keys of {total} in {:.1} s, then nothing \
                         (hung?); they were stopped",
                        keys.len(),
                        limit.as_secs_f64()
                    ),
                ))
            }
        }
    }
    if keys.len() != total {
        return Err(CliError::new(
            1,
            format!(
                "owners printed {} keys of {total} (see their errors above)",
                keys.len()
            ),
        ));
    }
    Ok(keys)
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

fn delta(after: Option<u64>, before: Option<u64>) -> Option<i64> {
    Some(i64::try_from(after?).ok()? - i64::try_from(before?).ok()?)
}

/// Gets every key once through `reader`, timing each; fails on a missing
/// or changed object.
fn get_all(reader: &dyn Connector, keys: &[Key]) -> Result<Vec<u64>, CliError> {
    let mut times = Vec::with_capacity(keys.len());
    for key in keys {
        let start = Instant::now();
        let data = reader
            .get(key)?
            .ok_or_else(|| CliError::new(1, format!("owner lost {key}")))?;
        times.push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if data.len() != 1024 {
            return Err(CliError::new(
                1,
                format!("{key}: {} bytes, not 1024", data.len()),
            ));
        }
    }
    times.sort_unstable();
    Ok(times)
}

/// Runs `proxystore peers`.
pub(crate) fn run(args: &PeersArgs) -> Result<(), CliError> {
    let mut counts = args.owners.clone();
    counts.sort_unstable();
    counts.dedup();
    let most = counts.last().copied().unwrap_or(1);
    let mut records = Vec::new();
    println!(
        "{:<8} {:>6} {:>10} {:>10} {:>10} {:>10} {:>12} {:>9} {:>8} {:>9} {:>8}",
        "conn",
        "owners",
        "first p50",
        "first p99",
        "first max",
        "pooled",
        "reader RSS",
        "KiB/peer",
        "fds",
        "fds/peer",
        "threads"
    );
    for name in &args.connector {
        let secret = format!("{:032x}", proxystore::ObjectId::random().as_u128());
        let env = BenchEnv::new(None).with_secret(secret.clone());
        let target = targets::open_in(name, &env)?;
        // Owners and reader share this run's secret through their configs
        // (the owners' arrives on their stdin, never in an argument).
        let owner_config = target.connector.config().with("secret", &secret);
        let reader_config = target.reader.config().with("secret", &secret);
        let processes = usize::try_from(args.owner_processes).unwrap_or(1).min(most);
        eprintln!("peers {name}: starting {most} owners in {processes} processes");
        let (_kids, keys) = start_owners(&owner_config, most, processes)?;
        for &owners in &counts {
            let me = Server::ThisProcess;
            let before: Usage = me.usage();
            let reader = proxystore::connector_from_config(&reader_config)?;
            let first = get_all(reader.as_ref(), &keys[..owners])?;
            let pooled = get_all(reader.as_ref(), &keys[..owners])?;
            let after = me.usage();
            drop(reader);
            let rss = delta(after.rss_kib, before.rss_kib);
            let fds = delta(after.fds, before.fds);
            let record = Record {
                connector: name.clone(),
                owners,
                first_get_p50_ns: quantile(&first, 0.5),
                first_get_p99_ns: quantile(&first, 0.99),
                first_get_max_ns: first.last().copied().unwrap_or(0),
                pooled_get_p50_ns: quantile(&pooled, 0.5),
                reader_rss_kib: rss,
                reader_fds: fds,
                reader_threads: delta(after.threads, before.threads),
                rss_kib_per_owner: rss.map(|r| r as f64 / owners as f64),
                fds_per_owner: fds.map(|f| f as f64 / owners as f64),
            };
            let or_na = |v: Option<String>| v.unwrap_or_else(|| "n/a".into());
            println!(
                "{:<8} {:>6} {:>10} {:>10} {:>10} {:>10} {:>12} {:>9} {:>8} {:>9} {:>8}",
                record.connector,
                owners,
                human_time(record.first_get_p50_ns),
                human_time(record.first_get_p99_ns),
                human_time(record.first_get_max_ns),
                human_time(record.pooled_get_p50_ns),
                or_na(rss.map(|r| format!("{:.1} MiB", r as f64 / 1024.0))),
                or_na(record.rss_kib_per_owner.map(|r| format!("{r:.0}"))),
                or_na(fds.map(|f| f.to_string())),
                or_na(record.fds_per_owner.map(|f| format!("{f:.2}"))),
                or_na(record.reader_threads.map(|t| t.to_string())),
            );
            records.push(record);
        }
    }
    crate::report::write_files(args.json.as_deref(), None, &records, String::new)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff.1024";

    #[test]
    fn keys_of_every_owner_are_collected() {
        let a = format!("{KEY}\n{KEY}\nready\n").into_bytes();
        let b = format!("{KEY}\nready\n").into_bytes();
        let keys = collect_keys(
            vec![std::io::Cursor::new(a), std::io::Cursor::new(b)],
            3,
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(keys.len(), 3);
    }

    #[test]
    fn an_owner_that_hangs_mid_output_is_an_error_at_the_limit() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        writeln!(writer, "{KEY}").unwrap();
        // The writer stays open and silent: a hung owner.
        let started = Instant::now();
        let err = collect_keys(vec![reader], 2, Duration::from_millis(300)).unwrap_err();
        let waited = started.elapsed();
        assert!(
            err.message.contains("printed 1 keys of 2"),
            "{}",
            err.message
        );
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
        drop(writer);
    }

    #[test]
    fn an_owner_that_exits_early_is_an_error_at_once() {
        let out = format!("{KEY}\n").into_bytes();
        let err =
            collect_keys(vec![std::io::Cursor::new(out)], 2, Duration::from_secs(30)).unwrap_err();
        assert!(
            err.message.contains("printed 1 keys of 2"),
            "{}",
            err.message
        );
    }
}
