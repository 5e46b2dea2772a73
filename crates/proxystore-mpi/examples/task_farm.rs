//! An MPI task farm that moves its data through proxies.
//!
//! Rank 0 is the master: for each of three stores, `shm` (the file
//! connector on `/dev/shm`), `zmq` (each rank serves its own puts from an
//! in-process data server) and `mpi` (each rank's RMA window), it puts
//! every task's input (a `Vec<f64>` of 4 KiB to 3 MiB) as a proxy and sends
//! small task descriptors (task id, store kind, the proxy) to the workers
//! over MPI point-to-point messages, handing the next task to whichever
//! worker returns a result (dynamic scheduling). A worker resolves the
//! proxy through a store it rebuilds from the proxy's config, computes the
//! sum and `2x + 1` of the input, puts the result through that same store
//! (so through its own data server or window) and sends back a result
//! descriptor holding a proxy of it. The master adopts each result (it is
//! evicted when dropped), checks it exactly against its own computation,
//! and at the end checks that no input or result is left in any store.
//!
//! ```sh
//! cargo build --example task_farm -p proxystore-mpi
//! mpirun --oversubscribe -n 4 target/debug/examples/task_farm
//! ```
//!
//! Options: `--tasks N` (per store, default 8), `--shm-dir DIR` (a new
//! directory for the `shm` store, removed at the end; default
//! `/dev/shm/proxystore-<uid>/farm-<job>`), `--fail-task ID` (a worker
//! returns a wrong sum for task `ID`, to show a failed check aborting the
//! job). Rank 0 prints one `FARM store=...` line per store and `FARM_OK`
//! when everything was verified; any failure on any rank prints its reason
//! and aborts the job (`MPI_Abort`), so the job exits non-zero instead of
//! hanging.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::{Rank, Tag};
use proxystore_core::{register_store, unregister_store, Key, OwnedProxy, Proxy, Store};
use proxystore_file::{FileConfig, FileConnector};
use proxystore_mpi::{MpiConnector, PeerConfig};
use proxystore_zmq::{ZmqConnector, ZmqConnectorExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The tag of every farm message (on the world communicator; the
/// connector's own messages use a duplicate of it).
const TAG: Tag = 7;

/// Longest wait for one message: a worker for its next task, the master
/// for the next result.
const MESSAGE_LIMIT: Duration = Duration::from_secs(60);

/// Longest wait for a store's background evictions at the end.
const FLUSH_LIMIT: Duration = Duration::from_secs(30);

/// Input lengths (in f64) the tasks cycle through: 4 KiB to 3 MiB.
const LENGTHS: [usize; 5] = [512, 4096, 32768, 131_072, 393_216];

/// An error: what failed, with its cause.
type Result<T> = std::result::Result<T, String>;

/// Adds what was being done to an error.
trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| format!("{}: {e}", what()))
    }
}

/// The store a task's data goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum StoreKind {
    Shm,
    Zmq,
    Mpi,
}

impl StoreKind {
    const ALL: [StoreKind; 3] = [StoreKind::Shm, StoreKind::Zmq, StoreKind::Mpi];

    /// The connector kind (and store name suffix).
    fn kind(self) -> &'static str {
        match self {
            StoreKind::Shm => "shm",
            StoreKind::Zmq => "zmq",
            StoreKind::Mpi => proxystore_mpi::KIND,
        }
    }

    /// The master's store of this kind.
    fn build(self, shm_dir: &Path) -> Result<Store> {
        let name = format!("farm-{}", self.kind());
        let store = match self {
            StoreKind::Shm => Store::new(
                name,
                FileConnector::with_config(FileConfig {
                    dir: shm_dir.to_path_buf(),
                    ..FileConfig::shm()
                })
                .context(|| format!("shm store on {}", shm_dir.display()))?,
            ),
            StoreKind::Zmq => Store::new(
                name,
                ZmqConnector::loopback().context(|| "zmq store".into())?,
            ),
            StoreKind::Mpi => Store::new(
                name,
                MpiConnector::with_config(PeerConfig::new(
                    proxystore_mpi::KIND,
                    proxystore_mpi::ADDRESS,
                ))
                .context(|| "mpi store".into())?,
            ),
        };
        Ok(store)
    }
}

/// Master to worker. `P` is the input's proxy: a borrowed one where the
/// master sends it (the master keeps ownership), a [`Proxy`] where the
/// worker receives it.
#[derive(Serialize, Deserialize)]
enum ToWorker<P> {
    Task { id: u64, store: StoreKind, input: P },
    Stop,
}

/// Worker to master: a task's result.
#[derive(Serialize, Deserialize)]
struct Done {
    id: u64,
    sum: f64,
    output: Proxy<Vec<f64>>,
}

/// Task `id`'s input, the `index`th of its store (which sets its
/// length): quarter integers, so every sum is exact.
fn input(id: u64, index: u64) -> Vec<f64> {
    let len = LENGTHS[(index % LENGTHS.len() as u64) as usize];
    (0..len as u64)
        .map(|j| ((id * 7919 + j * 31) % 1_000_003) as f64 * 0.25)
        .collect()
}

/// What a worker computes: the input's sum and `2x + 1` of every element.
fn compute(x: &[f64]) -> (f64, Vec<f64>) {
    (x.iter().sum(), x.iter().map(|v| 2.0 * v + 1.0).collect())
}

/// Command-line options.
struct Args {
    tasks: u64,
    shm_dir: Option<PathBuf>,
    fail_task: Option<u64>,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut args = Args {
            tasks: 8,
            shm_dir: None,
            fail_task: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--tasks" => args.tasks = value()?.parse().context(|| "--tasks".into())?,
                "--shm-dir" => args.shm_dir = Some(value()?.into()),
                "--fail-task" => {
                    args.fail_task = Some(value()?.parse().context(|| "--fail-task".into())?)
                }
                other => {
                    return Err(format!(
                        "unknown argument {other} (usage: task_farm [--tasks N] [--shm-dir DIR] [--fail-task ID])"
                    ))
                }
            }
        }
        if args.tasks == 0 {
            return Err("--tasks must be at least 1".into());
        }
        Ok(args)
    }
}

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("task_farm: {e}");
            return ExitCode::from(2);
        }
    };
    let Some((universe, _)) = mpi::initialize_with_threading(mpi::Threading::Multiple) else {
        eprintln!("task_farm: MPI was already initialized");
        return ExitCode::FAILURE;
    };
    let world = universe.world();
    match run(&world, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("task_farm: rank {}: {e}", world.rank());
            // The other ranks may wait for this one: end the whole job.
            world.abort(1)
        }
    }
}

/// One rank's part, from the connector's job state to its finalization.
fn run(world: &SimpleCommunicator, args: &Args) -> Result<()> {
    if world.size() < 2 {
        return Err("a farm needs a master and a worker: run it under mpirun -n 4".into());
    }
    let job = proxystore_mpi::init(world).context(|| "proxystore_mpi::init".into())?;
    // Lets workers rebuild every store from the configs proxies carry.
    proxystore_file::register();
    proxystore_zmq::register();
    proxystore_mpi::register();
    let shm_dir = args
        .shm_dir
        .clone()
        .unwrap_or_else(|| proxystore_file::default_shm_dir().join(format!("farm-{:x}", job.job)));
    if world.rank() == 0 {
        master(world, args, &shm_dir)?;
    } else {
        worker(world, args)?;
    }
    // Every rank closed its stores; the master's checks are done.
    proxystore_mpi::barrier().context(|| "barrier before finalize".into())?;
    if world.rank() == 0 {
        std::fs::remove_dir_all(&shm_dir).context(|| format!("removing {}", shm_dir.display()))?;
    }
    proxystore_mpi::finalize().context(|| "proxystore_mpi::finalize".into())
}

/// Sends `message` to `rank`. Farm messages are a few hundred bytes, so
/// the send completes eagerly.
fn send<M: Serialize>(world: &SimpleCommunicator, rank: Rank, message: &M) -> Result<()> {
    let bytes = bincode::serialize(message).context(|| "encoding a farm message".into())?;
    world.process_at_rank(rank).send_with_tag(&bytes[..], TAG);
    Ok(())
}

/// The next farm message (from `from`, or any rank) and its sender,
/// within [`MESSAGE_LIMIT`].
fn receive<M: DeserializeOwned>(
    world: &SimpleCommunicator,
    from: Option<Rank>,
    waiting_for: &str,
) -> Result<(M, Rank)> {
    let deadline = Instant::now() + MESSAGE_LIMIT;
    let mut pause = Duration::from_micros(20);
    loop {
        let probed = match from {
            Some(rank) => world
                .process_at_rank(rank)
                .immediate_matched_probe_with_tag(TAG),
            None => world.any_process().immediate_matched_probe_with_tag(TAG),
        };
        if let Some(probed) = probed {
            let (bytes, status) = probed.matched_receive_vec::<u8>();
            let sender = status.source_rank();
            let message = bincode::deserialize(&bytes)
                .context(|| format!("decoding a message from rank {sender}"))?;
            return Ok((message, sender));
        }
        if Instant::now() >= deadline {
            return Err(format!("no {waiting_for} within {MESSAGE_LIMIT:?}"));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
}

/// What one store's farm did.
struct Report {
    tasks: u64,
    bytes: u64,
    elapsed: Duration,
    per_worker: BTreeMap<Rank, u64>,
}

fn master(world: &SimpleCommunicator, args: &Args, shm_dir: &Path) -> Result<()> {
    if shm_dir.exists() {
        return Err(format!(
            "{} exists: the shm store wants a new directory, which it removes at the end",
            shm_dir.display()
        ));
    }
    let mut stores = Vec::new();
    for kind in StoreKind::ALL {
        let store = kind.build(shm_dir)?;
        // Results resolve through this store (its connections and cache).
        register_store(&store).context(|| format!("registering {}", store.name()))?;
        stores.push((kind, store));
    }
    let mut total = 0;
    let mut keys: Vec<(&Store, Key)> = Vec::new();
    for (n, (kind, store)) in (0u64..).zip(&stores) {
        let first = n * args.tasks;
        let report = farm(world, *kind, store, first..first + args.tasks, &mut keys)?;
        let workers: Vec<String> = report
            .per_worker
            .iter()
            .map(|(rank, count)| format!("{rank}:{count}"))
            .collect();
        println!(
            "FARM store={} tasks={}/{} verified bytes={:.1}MiB time={:.3}s per-worker=[{}]",
            kind.kind(),
            report.tasks,
            args.tasks,
            report.bytes as f64 / (1u64 << 20) as f64,
            report.elapsed.as_secs_f64(),
            workers.join(" ")
        );
        total += report.tasks;
    }
    for (_, store) in &stores {
        store
            .flush_evictions(FLUSH_LIMIT)
            .context(|| format!("{}: evictions", store.name()))?;
    }
    for (store, key) in &keys {
        let left = store
            .exists(key)
            .context(|| format!("{}: exists {key}", store.name()))?;
        if left {
            return Err(format!("{}: object {key} was not evicted", store.name()));
        }
    }
    let files = count_files(shm_dir)?;
    if files != 0 {
        return Err(format!("{files} files left in {}", shm_dir.display()));
    }
    for rank in 1..world.size() {
        send(world, rank, &ToWorker::<Proxy<Vec<f64>>>::Stop)?;
    }
    for (_, store) in &stores {
        unregister_store(store.name());
        store
            .close()
            .context(|| format!("closing {}", store.name()))?;
    }
    println!(
        "FARM_OK stores={} tasks={total} objects={} leftover=0",
        stores.len(),
        keys.len()
    );
    Ok(())
}

/// Runs tasks `ids` through `store`: puts every input, hands one task to
/// each worker, then the next to whichever worker answers; checks and
/// evicts every result. Adds every key it made to `keys`.
fn farm<'s>(
    world: &SimpleCommunicator,
    kind: StoreKind,
    store: &'s Store,
    ids: std::ops::Range<u64>,
    keys: &mut Vec<(&'s Store, Key)>,
) -> Result<Report> {
    let start = Instant::now();
    let first = ids.start;
    let mut bytes = 0;
    let mut inputs: HashMap<u64, OwnedProxy<Vec<f64>>> = HashMap::new();
    for id in ids.clone() {
        let x = input(id, id - ids.start);
        bytes += (x.len() * 8) as u64;
        let owned = store
            .owned_proxy(&x)
            .context(|| format!("{}: putting task {id}'s input", store.name()))?;
        keys.push((store, owned.key().clone()));
        inputs.insert(id, owned);
    }
    let mut queue: VecDeque<u64> = ids.collect();
    let mut busy = 0;
    let give = |inputs: &HashMap<u64, OwnedProxy<Vec<f64>>>, rank: Rank, id: u64| {
        // The master stays the owner: the worker gets a borrowed proxy.
        let task = ToWorker::Task {
            id,
            store: kind,
            input: inputs[&id].borrow(),
        };
        send(world, rank, &task)
    };
    for rank in 1..world.size() {
        let Some(id) = queue.pop_front() else { break };
        give(&inputs, rank, id)?;
        busy += 1;
    }
    let mut done = 0;
    let mut per_worker = BTreeMap::new();
    while busy > 0 {
        let (result, rank): (Done, Rank) = receive(world, None, "result from a worker")?;
        busy -= 1;
        if let Some(id) = queue.pop_front() {
            give(&inputs, rank, id)?;
            busy += 1;
        }
        // Both owned: evicted when dropped at the end of this iteration.
        let Some(_input) = inputs.remove(&result.id) else {
            return Err(format!(
                "rank {rank} returned task {}, which is not outstanding",
                result.id
            ));
        };
        let output = store
            .adopt(result.output)
            .context(|| format!("adopting task {}'s result from rank {rank}", result.id))?;
        keys.push((store, output.key().clone()));
        let y = output
            .resolve()
            .context(|| format!("{}: resolving task {}'s result", store.name(), result.id))?;
        let (sum, expected) = compute(&input(result.id, result.id - first));
        if result.sum.to_bits() != sum.to_bits() {
            return Err(format!(
                "verification failed: task {} on rank {rank} through {}: sum {} instead of {sum}",
                result.id,
                kind.kind(),
                result.sum
            ));
        }
        if *y != expected {
            return Err(format!(
                "verification failed: task {} on rank {rank} through {}: the result vector differs",
                result.id,
                kind.kind()
            ));
        }
        bytes += (y.len() * 8) as u64;
        done += 1;
        *per_worker.entry(rank).or_insert(0) += 1;
    }
    Ok(Report {
        tasks: done,
        bytes,
        elapsed: start.elapsed(),
        per_worker,
    })
}

/// Regular files under `dir` (the `shm` store's objects).
fn count_files(dir: &Path) -> Result<usize> {
    let mut count = 0;
    let entries = std::fs::read_dir(dir).context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.context(|| format!("listing {}", dir.display()))?;
        let kind = entry
            .file_type()
            .context(|| format!("type of {}", entry.path().display()))?;
        if kind.is_dir() {
            count += count_files(&entry.path())?;
        } else {
            count += 1;
        }
    }
    Ok(count)
}

fn worker(world: &SimpleCommunicator, args: &Args) -> Result<()> {
    let rank = world.rank();
    let mut used = BTreeSet::new();
    loop {
        let (message, _): (ToWorker<Proxy<Vec<f64>>>, _) =
            receive(world, Some(0), "task or stop from rank 0")?;
        let (id, kind, input) = match message {
            ToWorker::Stop => break,
            ToWorker::Task { id, store, input } => (id, store, input),
        };
        let config = &input.factory().store;
        if config.connector.kind != kind.kind() {
            return Err(format!(
                "task {id}: a {} task whose proxy names a {} store",
                kind.kind(),
                config.connector.kind
            ));
        }
        // The store the proxy names, rebuilt here from its config (then
        // registered, so the next proxies of it use the same one).
        let store = input
            .factory()
            .store()
            .context(|| format!("task {id}: rebuilding store {}", config.name))?;
        used.insert(store.name().to_owned());
        let x = input
            .resolve()
            .context(|| format!("task {id}: resolving its input from {}", store.name()))?;
        let (mut sum, y) = compute(x);
        if args.fail_task == Some(id) {
            sum += 1.0;
        }
        let output = store
            .proxy(&y)
            .context(|| format!("task {id}: putting its result into {}", store.name()))?;
        send(world, 0, &Done { id, sum, output })?;
    }
    // The master is done with every object: close this rank's stores
    // (their data servers) before the job state goes.
    for name in used {
        if let Some(store) = unregister_store(&name) {
            store
                .close()
                .context(|| format!("rank {rank}: closing {name}"))?;
        }
    }
    Ok(())
}
