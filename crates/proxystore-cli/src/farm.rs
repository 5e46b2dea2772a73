//! `proxystore bench --scenario farm`: a Dask-shaped bag of tasks. This
//! process is the client; the scheduler and the worker are this same
//! binary started again under hidden subcommands, each its own process,
//! all talking over the loopback control channel
//! ([`proxystore::exec::farm`]). For each size it times tasks by value
//! (the payload inside the task messages, through the scheduler) and by
//! proxy through each connector, then the connector's own put and get of
//! the same size (the transport bench's loops), so the breakdown compares
//! numbers of one run.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use proxystore::exec::farm::{self, Client, Role, Timeouts, Via};
use proxystore::Store;

use crate::bench::{or_default, write_outputs, BenchArgs};
use crate::error::CliError;
use crate::measure::{record, time_op, Record, WARMUP};
use crate::{connectors, report, targets};

/// The farm's connectors, sizes and tasks per size when none are given.
const CONNECTORS: &[&str] = &["shm", "shm-arena"];
const SIZES: &[usize] = &[10_000, 1_000_000, 10_000_000, 100_000_000];
const ITERATIONS: usize = 100;

/// Flags of the hidden `farm-scheduler` and `farm-worker` subcommands.
#[derive(Debug, clap::Args)]
pub(crate) struct RoleArgs {
    /// Address to connect to: the client's (scheduler) or the
    /// scheduler's (worker).
    #[arg(long)]
    connect: String,
}

/// Runs one role of the farm in this process (a hidden subcommand).
pub(crate) fn run_role(role: Role, args: &RoleArgs) -> Result<(), CliError> {
    let timeouts = Timeouts::default();
    match role {
        Role::Scheduler => farm::run_scheduler(&args.connect, timeouts),
        Role::Worker => farm::run_worker(&args.connect, timeouts),
    }
    .map_err(|e| CliError::new(1, format!("farm {}: {e}", role_name(role))))
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Scheduler => "scheduler",
        Role::Worker => "worker",
    }
}

/// The farm's child processes: killed and reaped when dropped, so an
/// error anywhere leaves none running.
#[derive(Default)]
struct Children(Vec<(Role, Child)>);

impl Children {
    fn spawn(&mut self, exe: &Path, role: Role, addr: &str) -> proxystore::Result<()> {
        let child = Command::new(exe)
            .args([&format!("farm-{}", role_name(role)), "--connect", addr])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                proxystore::Error::io(
                    format!(
                        "starting the farm's {} ({})",
                        role_name(role),
                        exe.display()
                    ),
                    e,
                )
            })?;
        self.0.push((role, child));
        Ok(())
    }

    /// Waits up to `timeout` for every child to exit, and says which did
    /// not exit cleanly.
    fn wait(mut self, timeout: Duration) -> Result<(), CliError> {
        let deadline = Instant::now() + timeout;
        for (role, child) in &mut self.0 {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) if status.success() => break,
                    Ok(Some(status)) => {
                        return Err(CliError::new(
                            1,
                            format!("the farm's {} exited with {status}", role_name(*role)),
                        ))
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Ok(None) => {
                        return Err(CliError::new(
                            1,
                            format!(
                                "the farm's {} did not exit within {timeout:?} of the shutdown",
                                role_name(*role)
                            ),
                        ))
                    }
                    Err(e) => {
                        return Err(CliError::new(
                            1,
                            format!("waiting for the farm's {}: {e}", role_name(*role)),
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// Runs the farm scenario and reports it.
pub(crate) fn run(args: &BenchArgs) -> Result<(), CliError> {
    let names = or_default(&args.connector, CONNECTORS);
    let sizes = if args.sizes.is_empty() {
        SIZES.to_vec()
    } else {
        args.sizes.clone()
    };
    let iterations = args.iterations.unwrap_or(ITERATIONS);
    let task_ms = args.task_ms.unwrap_or(0);
    // Refuse what cannot cross processes before starting anything.
    for name in &names {
        if let Some(scope) = connectors::descriptor(name)?.confined_to {
            return Err(CliError::new(
                2,
                format!(
                    "the {name} connector's keys are valid only inside {scope}, and the farm's worker is another process; use a connector other processes reach, e.g. --connector shm"
                ),
            ));
        }
    }
    let targets = names
        .iter()
        .map(|name| targets::open(name, args.dir.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let stores: Vec<(Store, Store)> = targets.iter().map(targets::BenchTarget::stores).collect();
    // Results are resolved here by store name: through these stores.
    for (store, _) in &stores {
        proxystore::register_store(store)?;
    }
    let result = measure(&targets, &stores, &sizes, iterations, task_ms);
    for (store, _) in &stores {
        proxystore::unregister_store(store.name());
    }
    let records = result?;
    print!("{}", report::table(&records));
    print!("{}", breakdown(&records, &names, task_ms));
    write_outputs(args, &records)
}

/// Starts the farm, runs every case, stops the farm.
fn measure(
    targets: &[targets::BenchTarget],
    stores: &[(Store, Store)],
    sizes: &[usize],
    iterations: usize,
    task_ms: u32,
) -> Result<Vec<Record>, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::new(1, format!("finding this program to start the farm: {e}")))?;
    let mut children = Children::default();
    let timeouts = Timeouts::default();
    let mut client = Client::start(timeouts, |role, addr| children.spawn(&exe, role, addr))?;
    let total = (sizes.len() * (1 + 4 * targets.len())) as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut records = Vec::new();
    for &size in sizes {
        let human = report::human_size(size as u64);
        bar.set_message(format!("by-value task {human}"));
        let samples = client.run(Via::Value, size, task_ms, WARMUP, iterations)?;
        records.push(record("by-value", "task", size, samples));
        client.take_steps();
        bar.inc(1);
        for (target, (store, _)) in targets.iter().zip(stores) {
            bar.set_message(format!("{} task {human}", target.name));
            let samples = client.run(Via::Proxy(store), size, task_ms, WARMUP, iterations)?;
            records.push(record(&target.name, "task", size, samples));
            records.extend(step_records(&target.name, size, &client.take_steps()));
            bar.inc(1);
        }
        let data = proxystore::pattern::pattern(size, farm::INPUT_SEED);
        for (target, (store, reader)) in targets.iter().zip(stores) {
            for op in ["put", "get", "roundtrip"] {
                bar.set_message(format!("{} {op} {human}", target.name));
                let samples = time_op(store, reader, op, &data, iterations)?;
                records.push(record(&target.name, op, size, samples));
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    client.shutdown()?;
    children.wait(timeouts.connect)?;
    Ok(records)
}

/// The data path inside the by-proxy tasks, one record per step (ops
/// `task-client-put`, `task-worker-get`, `task-worker-put`,
/// `task-client-get`; a get includes checking the bytes), so every run
/// shows how much of a round trip is data and how much control.
fn step_records(connector: &str, size: usize, steps: &[farm::TaskSteps]) -> Vec<Record> {
    type Pick = fn(&farm::TaskSteps) -> Duration;
    let ops: [(&str, Pick); 4] = [
        ("task-client-put", |s| s.client_put),
        ("task-worker-get", |s| s.worker_fetch),
        ("task-worker-put", |s| s.worker_put),
        ("task-client-get", |s| s.client_fetch),
    ];
    ops.iter()
        .map(|(op, pick)| record(connector, op, size, steps.iter().map(pick).collect()))
        .collect()
}

/// The median of the record for `connector`, `op` and `size`, if measured.
fn median(records: &[Record], connector: &str, op: &str, size: u64) -> Option<f64> {
    records
        .iter()
        .find(|r| r.connector == connector && r.op == op && r.size_bytes == size)
        .map(|r| r.median_ns as f64)
}

fn ms(ns: f64) -> String {
    format!("{:.3}ms", ns / 1e6)
}

/// Per size and connector: the by-value and by-proxy round trips, the
/// by-proxy one over the smallest size's by-value one (`ref`), the
/// connector's 2 puts + 2 gets at that size (`get` re-reads one hot
/// object) and 2 roundtrips (put then get of a fresh object, as a task
/// does), the extra time of by proxy over `ref` as a fraction of each, and
/// how much faster by proxy is than by value; then the targets
/// where their sizes were measured.
fn breakdown(records: &[Record], names: &[String], task_ms: u32) -> String {
    let mut sizes: Vec<u64> = records
        .iter()
        .filter(|r| r.op == "task")
        .map(|r| r.size_bytes)
        .collect();
    sizes.dedup();
    let Some(&base_size) = sizes.iter().min() else {
        return String::new();
    };
    let base = median(records, "by-value", "task", base_size).unwrap_or(f64::NAN);
    let mut out = format!(
        "\nfarm breakdown (medians, task-ms {task_ms}; ref = by-value task at {base_size} B: {})\n",
        ms(base)
    );
    let _ = writeln!(
        out,
        "{:>10} {:>10} {:<9} {:>10} {:>8} {:>10} {:>11} {:>10} {:>11} {:>11}",
        "size",
        "by-value",
        "connector",
        "by-proxy",
        "/ref",
        "2put+2get",
        "extra/2p2g",
        "2roundtrip",
        "extra/2rt",
        "value/proxy"
    );
    for &size in &sizes {
        let value = median(records, "by-value", "task", size).unwrap_or(f64::NAN);
        for name in names {
            let proxy = median(records, name, "task", size).unwrap_or(f64::NAN);
            let put = median(records, name, "put", size).unwrap_or(f64::NAN);
            let get = median(records, name, "get", size).unwrap_or(f64::NAN);
            let rt = median(records, name, "roundtrip", size).unwrap_or(f64::NAN);
            let (transport, fresh) = (2.0 * (put + get), 2.0 * rt);
            let _ = writeln!(
                out,
                "{:>10} {:>10} {:<9} {:>10} {:>7.3}x {:>10} {:>11.3} {:>10} {:>11.3} {:>10.2}x",
                size,
                ms(value),
                name,
                ms(proxy),
                proxy / base,
                ms(transport),
                (proxy - base) / transport,
                ms(fresh),
                (proxy - base) / fresh,
                value / proxy
            );
        }
    }
    out.push_str(&targets_met(records, names, task_ms));
    out
}

/// The figures, for the sizes it names, where they were measured.
fn targets_met(records: &[Record], names: &[String], task_ms: u32) -> String {
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let mut out = String::new();
    let Some(base) = median(records, "by-value", "task", 10_000) else {
        return out;
    };
    for name in names {
        if let Some(proxy) = median(records, name, "task", 1_000_000) {
            let ratio = proxy / base;
            if task_ms > 0 {
                let _ = writeln!(
                    out,
                    "{name}: 1 MB by proxy / 10 kB by value = {ratio:.3}x (target <= 1.1x at task-ms 10: {})",
                    verdict(ratio <= 1.1)
                );
            } else {
                let _ = writeln!(out, "{name}: 1 MB by proxy / 10 kB by value = {ratio:.3}x");
            }
            let put = median(records, name, "put", 1_000_000);
            let get = median(records, name, "get", 1_000_000);
            let rt = median(records, name, "roundtrip", 1_000_000);
            if let (Some(put), Some(get), 0) = (put, get, task_ms) {
                let transport = 2.0 * (put + get);
                let extra = proxy - base;
                let _ = writeln!(
                    out,
                    "{name}: extra of 1 MB by proxy over 10 kB by value {} vs 2 put + 2 get {} = {:.3} (target <= 1.1: {})",
                    ms(extra),
                    ms(transport),
                    extra / transport,
                    verdict(extra <= 1.1 * transport)
                );
                if let Some(rt) = rt {
                    let _ = writeln!(
                        out,
                        "{name}: the same extra vs 2 roundtrips (put then get of a fresh object) {} = {:.3}",
                        ms(2.0 * rt),
                        extra / (2.0 * rt)
                    );
                }
            }
        }
        let big = 100_000_000;
        if let (Some(value), Some(proxy)) = (
            median(records, "by-value", "task", big),
            median(records, name, "task", big),
        ) {
            let speedup = value / proxy;
            let _ = writeln!(
                out,
                "{name}: 100 MB by proxy is {speedup:.2}x faster than by value (target >= 2x: {})",
                verdict(speedup >= 2.0)
            );
        }
    }
    out
}
