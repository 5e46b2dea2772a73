//! `proxystore`: transport microbenchmarks and object commands from the shell.

mod bench;
mod connectors;
mod error;
mod farm;
mod load;
mod measure;
mod peers;
#[cfg(feature = "ucx")]
mod perftest;
#[cfg(feature = "ofi")]
mod pingpong;
mod plot;
mod report;
mod signals;
mod targets;
#[cfg(any(feature = "ucx", feature = "ofi"))]
mod tool;

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use proxystore::Key;

use crate::connectors::ConnectorArgs;
use crate::error::CliError;

/// Move task data out of band: benchmarks and object commands.
#[derive(Debug, Parser)]
#[command(name = "proxystore", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmark put, get, roundtrip and typed gets (get-owned, get-view) through a Store for each connector and size
    /// (or, with --scenario farm, task round trips through a scheduler and a worker).
    Bench(bench::BenchArgs),
    /// Load a connector's server with many clients doing a mix of
    /// get/put/exists/evict for a while, every object checked: ops/s,
    /// latency quantiles, errors, objects lost, server memory and fds.
    Load(load::LoadArgs),
    /// Measure what one reader pays per owner it talks to (first-contact
    /// time, memory, descriptors, threads) for 1, 64, 512 owners.
    Peers(peers::PeersArgs),
    /// Store the bytes read from stdin; print the key.
    Put(ConnectorArgs),
    /// Write the object under KEY to stdout.
    Get(KeyArgs),
    /// Exit 0 if KEY exists, 1 if not.
    Exists(KeyArgs),
    /// Remove the object under KEY (a missing key is not an error).
    Evict(KeyArgs),
    /// Run a connector's standalone data server in the foreground; Ctrl-C stops it.
    Serve(ConnectorArgs),
    /// Draw records of JSON files (`bench --json`, bench_dask.py's) as an
    /// SVG plot against payload size.
    Plot(plot::PlotArgs),
    /// Show the connectors compiled in.
    Info,
    /// Print a new ZeroMQ CURVE key pair for a job, as shell exports
    /// (PROXYSTORE_ZMQ_CURVE_SERVER_KEY, PROXYSTORE_ZMQ_CURVE_SECRET_KEY).
    #[cfg(feature = "zmq")]
    Keygen,
    /// The scheduler of `bench --scenario farm` (started by it).
    #[command(hide = true)]
    FarmScheduler(farm::RoleArgs),
    /// A client process of `load --processes` (started by it).
    #[command(hide = true)]
    LoadClient,
    /// An owner process of `peers` (started by it).
    #[command(hide = true)]
    PeersOwner,
    /// The worker of `bench --scenario farm` (started by it).
    #[command(hide = true)]
    FarmWorker(farm::RoleArgs),
}

#[derive(Debug, clap::Args)]
struct KeyArgs {
    /// The key, as printed by `proxystore put`.
    key: String,
    #[command(flatten)]
    connector: ConnectorArgs,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            eprintln!("proxystore: {}", one_line(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    // Every compiled-in connector: the CLI finds kinds by their descriptors.
    proxystore::register_connectors();
    for quiet in proxystore::compiled_descriptors()
        .iter()
        .filter_map(|d| d.quiet_for_cli)
    {
        quiet();
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("proxystore: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// clap's message as one line: what it says before the usage, with the
/// lines that name arguments (`  <KEY>`) kept and its tips dropped.
fn one_line(text: &str) -> String {
    let said: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    let line = said.join(" ");
    match line.strip_prefix("error: ") {
        Some(rest) => rest.to_owned(),
        None if line.is_empty() => "invalid arguments".to_owned(),
        None => line,
    }
}

fn parse_key(text: &str) -> Result<Key, CliError> {
    Ok(text.trim().parse::<Key>()?)
}

fn run(command: Command) -> Result<ExitCode, CliError> {
    match command {
        Command::Bench(args) => bench::check(&args)
            .and_then(|()| match args.scenario {
                bench::Scenario::Transport => bench::run(&args),
                bench::Scenario::Farm => farm::run(&args),
            })
            .map(|()| ExitCode::SUCCESS),
        Command::Load(args) => load::run(&args).map(|()| ExitCode::SUCCESS),
        Command::LoadClient => load::client_main().map(|()| ExitCode::SUCCESS),
        Command::Peers(args) => peers::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Plot(args) => plot::run(&args).map(|()| ExitCode::SUCCESS),
        Command::PeersOwner => peers::owner_main().map(|()| ExitCode::SUCCESS),
        Command::Put(args) => {
            let connector = args.open_shared()?;
            if !connector.capabilities().survives_producer_exit {
                // The object would live in this command's own process,
                // which exits now: a key to nothing.
                let kind = &args.connector;
                let message = if connectors::descriptor(kind)?.serve.is_some() {
                    format!("a {kind} put without --address keeps the object inside this command's process, which exits now; start `proxystore serve --connector {kind}` and pass the address it prints as --address, or use a connector that stores data (file, shm, redis)")
                } else {
                    format!("a {kind} put keeps the object only as long as this command's process, which exits now; use a connector that stores data (file, shm, redis)")
                };
                return Err(CliError::new(2, message));
            }
            let mut data = Vec::new();
            std::io::stdin()
                .read_to_end(&mut data)
                .map_err(|e| CliError::new(1, format!("reading stdin: {e}")))?;
            let key = connector.put(data.into())?;
            println!("{key}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Get(args) => {
            let key = parse_key(&args.key)?;
            let connector = args.connector.open_shared()?;
            let data = connector.get(&key)?.ok_or_else(|| {
                CliError::new(1, format!("key {key} not found in {}", args.connector))
            })?;
            let mut out = std::io::stdout().lock();
            out.write_all(&data)
                .and_then(|()| out.flush())
                .map_err(|e| CliError::new(1, format!("writing stdout: {e}")))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Exists(args) => {
            let key = parse_key(&args.key)?;
            let connector = args.connector.open_shared()?;
            if connector.exists(&key)? {
                println!("true");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("false");
                Err(CliError::new(
                    1,
                    format!("key {key} not found in {}", args.connector),
                ))
            }
        }
        Command::Evict(args) => {
            let key = parse_key(&args.key)?;
            args.connector.open_shared()?.evict(&key)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => args.serve().map(|()| ExitCode::SUCCESS),
        #[cfg(feature = "zmq")]
        Command::Keygen => {
            use proxystore::zmq::curve::{CurveKeys, SECRET_KEY_ENV, SERVER_KEY_ENV};
            let keys = CurveKeys::generate()?;
            // Z85 uses shell metacharacters ($ & * ...): single-quoted.
            println!("export {SERVER_KEY_ENV}='{}'", keys.public);
            println!("export {SECRET_KEY_ENV}='{}'", keys.secret);
            Ok(ExitCode::SUCCESS)
        }
        Command::FarmScheduler(args) => {
            farm::run_role(proxystore::exec::farm::Role::Scheduler, &args)
                .map(|()| ExitCode::SUCCESS)
        }
        Command::FarmWorker(args) => {
            farm::run_role(proxystore::exec::farm::Role::Worker, &args).map(|()| ExitCode::SUCCESS)
        }
        Command::Info => {
            print!("{}", connectors::info());
            Ok(ExitCode::SUCCESS)
        }
    }
}
