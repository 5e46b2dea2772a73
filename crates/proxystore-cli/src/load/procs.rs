//! Client processes (`--processes P`): this same binary started again as
//! the hidden `load-client`, told its share of the run as JSON on stdin,
//! answering with its counters and histograms as JSON on stdout. Each
//! process keeps its own pool of live keys, so the lost/raced accounting
//! of `run.rs` stays exact inside it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proxystore::{Connector, ConnectorConfig};
use serde::{Deserialize, Serialize};

use super::run::{self, Failure, OpStats, Outcome, Plan, Shared};
use crate::error::CliError;

/// One client process's share of a run.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Spec {
    writer: ConnectorConfig,
    reader: ConnectorConfig,
    clients: usize,
    size: usize,
    duration_ms: u64,
    ops: Option<u64>,
    mix: [u32; 4],
    max_live: usize,
    prefill: usize,
    seed: u64,
    grace_ms: u64,
}

/// One op's counters, as a client process sends them back.
#[derive(Debug, Default, Serialize, Deserialize)]
struct OpReport {
    buckets: Vec<(u32, u64)>,
    max: u64,
    ops: u64,
    errors: BTreeMap<String, u64>,
    lost: u64,
    raced: u64,
}

impl OpReport {
    fn of(s: &OpStats) -> Self {
        OpReport {
            buckets: s.latency.buckets(),
            max: s.latency.max(),
            ops: s.ops.load(Ordering::Relaxed),
            errors: s.errors.lock().map(|e| e.clone()).unwrap_or_default(),
            lost: s.lost.load(Ordering::Relaxed),
            raced: s.raced.load(Ordering::Relaxed),
        }
    }

    fn add_to(&self, s: &OpStats) {
        s.latency.merge(&self.buckets, self.max);
        s.ops.fetch_add(self.ops, Ordering::Relaxed);
        s.lost.fetch_add(self.lost, Ordering::Relaxed);
        s.raced.fetch_add(self.raced, Ordering::Relaxed);
        if let Ok(mut errors) = s.errors.lock() {
            for (k, n) in &self.errors {
                *errors.entry(k.clone()).or_insert(0) += n;
            }
        }
    }
}

/// What a client process sends back.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Report {
    /// get, put, exists, evict, then verify.
    stats: Vec<OpReport>,
    elapsed_ns: u64,
    verify_ns: u64,
    losses: Vec<String>,
    cap_evicts: u64,
    empty_puts: u64,
}

/// The hidden `load-client` subcommand: reads a [`Spec`] on stdin, runs
/// it, prints a report on stdout.
pub(crate) fn client_main() -> Result<(), CliError> {
    let mut text = String::new();
    std::io::stdin()
        .take(1 << 20)
        .read_to_string(&mut text)
        .map_err(|e| CliError::new(1, format!("load-client: reading stdin: {e}")))?;
    let spec: Spec = serde_json::from_str(&text)
        .map_err(|e| CliError::new(2, format!("load-client: bad spec: {e}")))?;
    let writer: Arc<dyn Connector> = Arc::from(proxystore::connector_from_config(&spec.writer)?);
    let reader: Arc<dyn Connector> = Arc::from(proxystore::connector_from_config(&spec.reader)?);
    let plan = Plan {
        clients: spec.clients,
        size: spec.size,
        duration: Duration::from_millis(spec.duration_ms),
        ops: spec.ops,
        mix: spec.mix,
        max_live: spec.max_live,
        prefill: spec.prefill,
        seed: spec.seed,
        grace: Duration::from_millis(spec.grace_ms),
    };
    let outcome = run::run(&plan, &writer, &reader, |_, _| {}).map_err(|f| {
        CliError::new(
            1,
            match f {
                Failure::Prefill(e) => format!("load-client: putting the first objects: {e}"),
                Failure::Stuck(n) => format!("load-client: {n} clients stuck"),
                Failure::Spawn(e) => format!("load-client: starting a thread: {e}"),
            },
        )
    })?;
    let verify_start = Instant::now();
    outcome.shared.verify_and_clear(reader.as_ref(), plan.size);
    let shared = &outcome.shared;
    let report = Report {
        stats: shared
            .stats
            .iter()
            .chain([&shared.verify])
            .map(OpReport::of)
            .collect(),
        elapsed_ns: nanos(outcome.elapsed),
        verify_ns: nanos(verify_start.elapsed()),
        losses: shared.losses.lock().map(|l| l.clone()).unwrap_or_default(),
        cap_evicts: shared.cap_evicts.load(Ordering::Relaxed),
        empty_puts: shared.empty_puts.load(Ordering::Relaxed),
    };
    let text = serde_json::to_string(&report)
        .map_err(|e| CliError::new(1, format!("load-client: encoding the report: {e}")))?;
    println!("{text}");
    Ok(())
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The config client processes build their writer from: the writer's own,
/// and where its keys name the server that holds them (zmq, ucx, ofi),
/// that server as the one their puts go to, so every process loads the
/// same server instead of starting its own.
pub(crate) fn writer_config(writer: &dyn Connector) -> Result<ConnectorConfig, CliError> {
    let config = writer.config();
    let probe = writer.put(proxystore::Bytes::from_static(b"probe"))?;
    let _ = writer.evict(&probe);
    Ok(match probe.location() {
        Some(server) => config.with("server", server),
        None => config,
    })
}

/// A child killed and reaped if still running when dropped.
pub(crate) struct Kid(pub(crate) Child);

impl Drop for Kid {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Runs `plan` in `processes` client processes (the clients split evenly)
/// against connectors built from `writer` and `reader`, calling `progress`
/// once a second; their counters merged as one run's.
pub(crate) fn run(
    plan: &Plan,
    processes: usize,
    writer: ConnectorConfig,
    reader: ConnectorConfig,
    secret: &str,
    mut progress: impl FnMut(Duration, usize),
) -> Result<(Outcome, Duration), CliError> {
    // Where the server needs a secret (ucx, ofi), the clients' connectors
    // read it from `PROXYSTORE_<KIND>_SECRET`, as any rebuilt connector
    // does: never in a config, an argument or a log.
    let secret_var = format!("PROXYSTORE_{}_SECRET", writer.kind.to_uppercase());
    let exe = std::env::current_exe()
        .map_err(|e| CliError::new(1, format!("finding this program to start clients: {e}")))?;
    let mut kids = Vec::with_capacity(processes);
    let mut readers = Vec::with_capacity(processes);
    for p in 0..processes {
        let share = |n: usize| n / processes + usize::from(p < n % processes);
        let spec = Spec {
            writer: writer.clone(),
            reader: reader.clone(),
            clients: share(plan.clients),
            size: plan.size,
            duration_ms: u64::try_from(plan.duration.as_millis()).unwrap_or(u64::MAX),
            ops: plan.ops.map(|n| (n / processes as u64).max(1)),
            mix: plan.mix,
            max_live: share(plan.max_live).max(1),
            prefill: share(plan.prefill).max(1),
            seed: (p as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            grace_ms: u64::try_from(plan.grace.as_millis()).unwrap_or(u64::MAX),
        };
        let mut kid = Kid(Command::new(&exe)
            .arg("load-client")
            .env(&secret_var, secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| CliError::new(1, format!("starting client process {p}: {e}")))?);
        let text = serde_json::to_vec(&spec)
            .map_err(|e| CliError::new(1, format!("encoding a client spec: {e}")))?;
        if let Some(mut stdin) = kid.0.stdin.take() {
            stdin
                .write_all(&text)
                .map_err(|e| CliError::new(1, format!("writing to client process {p}: {e}")))?;
        }
        // Read its output while it runs, so a full pipe never blocks it.
        let (out, err) = (kid.0.stdout.take(), kid.0.stderr.take());
        readers.push(std::thread::spawn(move || {
            let mut o = String::new();
            let mut e = String::new();
            if let Some(mut out) = out {
                let _ = out.read_to_string(&mut o);
            }
            if let Some(mut err) = err {
                let _ = err.read_to_string(&mut e);
            }
            (o, e)
        }));
        kids.push(kid);
    }
    let start = Instant::now();
    // Each process may spend its prefill and final check past the
    // duration and grace, bounded by its operations' timeouts.
    let give_up = start + plan.duration + plan.grace * 2;
    let mut next_tick = start + Duration::from_secs(1);
    loop {
        let running = kids
            .iter_mut()
            .filter_map(|k| k.0.try_wait().ok())
            .filter(Option::is_none)
            .count();
        if running == 0 {
            break;
        }
        let now = Instant::now();
        if now >= give_up {
            return Err(CliError::new(
                1,
                format!("{running} client processes still running {:?} after the run's end; stopped them", plan.grace * 2),
            ));
        }
        if now >= next_tick {
            progress(now - start, running);
            next_tick += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let shared = Arc::new(Shared::empty());
    let (mut elapsed, mut verify) = (Duration::ZERO, Duration::ZERO);
    for (p, (kid, reader)) in kids.iter_mut().zip(readers).enumerate() {
        let status = kid
            .0
            .wait()
            .map_err(|e| CliError::new(1, format!("client process {p}: {e}")))?;
        let (out, err) = reader
            .join()
            .map_err(|_| CliError::new(1, format!("reading client process {p} failed")))?;
        if !status.success() {
            let why = err.lines().last().unwrap_or("no message").trim().to_owned();
            return Err(CliError::new(
                1,
                format!("client process {p} failed ({status}): {why}"),
            ));
        }
        let report: Report = serde_json::from_str(out.trim())
            .map_err(|e| CliError::new(1, format!("client process {p}'s report: {e}")))?;
        let targets = shared.stats.iter().chain([&shared.verify]);
        for (r, s) in report.stats.iter().zip(targets) {
            r.add_to(s);
        }
        shared
            .cap_evicts
            .fetch_add(report.cap_evicts, Ordering::Relaxed);
        shared
            .empty_puts
            .fetch_add(report.empty_puts, Ordering::Relaxed);
        if let Ok(mut l) = shared.losses.lock() {
            let room = 5usize.saturating_sub(l.len());
            l.extend(report.losses.into_iter().take(room));
        }
        elapsed = elapsed.max(Duration::from_nanos(report.elapsed_ns));
        verify = verify.max(Duration::from_nanos(report.verify_ns));
    }
    Ok((Outcome { shared, elapsed }, verify))
}
