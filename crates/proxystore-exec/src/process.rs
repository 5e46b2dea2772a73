//! Worker processes: a [`ProcessPool`] starts workers (any command, usually
//! the application's own binary) that connect back over the control
//! channel and run tasks registered by name in a [`TaskRegistry`].
//!
//! A worker is the same program: early in `main` it calls
//! [`serve_if_worker`], which returns `None` in the parent and serves tasks
//! in a worker (the pool passes the address in [`WORKER_ENV`]). Each worker
//! runs one task at a time; the pool sends each task to the live worker
//! with the fewest in flight.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proxystore_core::{get_or_create_store, Error, Result, Store, StoreConfig};
use serde::{Deserialize, Serialize};

use crate::channel::{FrameListener, FrameStream};
use crate::policy::ProxyPolicy;
use crate::task::{task_panicked, Counters, Stager, Task, TaskArgs, TaskValue, Wired};

/// The environment variable a pool sets for its workers: the address to
/// connect to and the pool's token, space separated.
pub const WORKER_ENV: &str = "PROXYSTORE_EXEC_WORKER";
/// How long a pool waits for its workers to connect.
pub const WORKER_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a closing pool waits for a worker to exit before killing it.
const WORKER_EXIT_GRACE: Duration = Duration::from_secs(5);

/// A task as it travels to a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TaskMessage {
    pub(crate) task: String,
    pub(crate) store: StoreConfig,
    pub(crate) result_policy: ProxyPolicy,
    pub(crate) args: Vec<Wired>,
}

/// The worker's first frame: the pool's token and the worker's pid.
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    token: String,
    pid: u32,
}

/// A task's reply: its result and the result's encoded length.
pub(crate) type Reply = (Wired, u64);
type OnReply = Box<dyn FnOnce(Result<Reply>) + Send>;

struct Worker {
    pid: u32,
    writer: Mutex<FrameStream>,
    pending: Mutex<HashMap<u64, (String, OnReply)>>,
    alive: AtomicBool,
}

impl Worker {
    fn name(&self) -> String {
        format!("worker process {}", self.pid)
    }

    /// Marks the worker dead and fails every task in flight on it.
    fn fail_all(&self, reason: &str) {
        self.alive.store(false, Ordering::Release);
        let pending: Vec<_> = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for (_, (task, on_reply)) in pending {
            on_reply(Err(Error::PeerUnreachable {
                address: self.name(),
                reason: format!("{reason} while running task '{task}'"),
            }));
        }
    }
}

/// Hands each reply from `worker` to its task until the channel ends, then
/// fails whatever is still in flight on it.
fn read_replies(reader: &mut FrameStream, worker: &Worker) {
    let reason = loop {
        let frame = match reader.recv() {
            Ok(Some(frame)) => frame,
            Ok(None) => break "closed its channel".to_owned(),
            Err(e) => break e.to_string(),
        };
        let (id, reply) =
            match bincode::deserialize::<(u64, std::result::Result<Reply, String>)>(&frame) {
                Ok(decoded) => decoded,
                Err(e) => break format!("sent a reply that does not decode ({e})"),
            };
        let entry = worker
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some((task, on_reply)) = entry {
            on_reply(reply.map_err(|reason| Error::TaskFailed { task, reason }));
        }
    };
    worker.fail_all(&reason);
}

/// A pool of worker processes running registered tasks. Dropping it closes
/// the channels; workers exit, and are killed after a grace period if not.
pub struct ProcessPool {
    workers: Vec<Arc<Worker>>,
    children: Vec<Child>,
    readers: Vec<JoinHandle<()>>,
    next_id: AtomicU64,
}

impl ProcessPool {
    /// Starts `workers` processes from `command` (called once per worker)
    /// and waits up to [`WORKER_START_TIMEOUT`] for each to connect. The
    /// command must reach [`serve_if_worker`] with the same tasks
    /// registered (usually: this program, `std::env::current_exe()`).
    pub fn start(workers: usize, mut command: impl FnMut() -> Command) -> Result<Self> {
        let listener = FrameListener::loopback()?;
        let token = format!("{:032x}", proxystore_core::ObjectId::random().as_u128());
        let mut pool = ProcessPool {
            workers: Vec::new(),
            children: Vec::new(),
            readers: Vec::new(),
            next_id: AtomicU64::new(0),
        };
        for _ in 0..workers.max(1) {
            let mut cmd = command();
            cmd.env(WORKER_ENV, format!("{} {token}", listener.addr()));
            let child = cmd
                .spawn()
                .map_err(|e| Error::io(format!("starting worker process {cmd:?}"), e))?;
            pool.children.push(child);
        }
        let deadline = Instant::now() + WORKER_START_TIMEOUT;
        while pool.workers.len() < pool.children.len() {
            pool.check_children_alive()?;
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    connector: "process pool".to_owned(),
                    op: "waiting for worker processes to connect",
                    after: WORKER_START_TIMEOUT,
                });
            }
            let mut stream = match listener.accept(Duration::from_millis(200)) {
                Ok(s) => s,
                Err(Error::Timeout { .. }) => continue,
                Err(e) => return Err(e),
            };
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            let hello: Option<Hello> = stream
                .recv()
                .ok()
                .flatten()
                .and_then(|f| bincode::deserialize(&f).ok());
            let Some(hello) = hello.filter(|h| h.token == token) else {
                tracing::warn!(
                    "process pool: dropped a connection from {} without the pool's token",
                    stream.peer()
                );
                continue;
            };
            stream.set_read_timeout(None)?;
            pool.add_worker(stream, hello.pid)?;
        }
        Ok(pool)
    }

    /// A worker that exited before connecting is an error naming its status.
    fn check_children_alive(&mut self) -> Result<()> {
        for child in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::PeerUnreachable {
                    address: format!("worker process {}", child.id()),
                    reason: format!("exited ({status}) before connecting to the pool; does it call serve_if_worker?"),
                });
            }
        }
        Ok(())
    }

    fn add_worker(&mut self, stream: FrameStream, pid: u32) -> Result<()> {
        let mut reader = stream.try_clone()?;
        let worker = Arc::new(Worker {
            pid,
            writer: Mutex::new(stream),
            pending: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
        });
        let theirs = Arc::clone(&worker);
        let handle = std::thread::Builder::new()
            .name(format!("proxystore-pool-{pid}"))
            .spawn(move || read_replies(&mut reader, &theirs))
            .map_err(|e| Error::io("starting a process-pool reader thread", e))?;
        self.workers.push(worker);
        self.readers.push(handle);
        Ok(())
    }

    /// Live workers.
    pub fn live_workers(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| w.alive.load(Ordering::Acquire))
            .count()
    }

    /// The workers' process ids.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.pid).collect()
    }

    /// Sends `message` to the least busy live worker; `on_reply` runs with
    /// its result, or with the error if the worker dies first.
    pub(crate) fn dispatch(&self, message: &TaskMessage, on_reply: OnReply) -> Result<()> {
        let worker = self
            .workers
            .iter()
            .filter(|w| w.alive.load(Ordering::Acquire))
            .min_by_key(|w| w.pending.lock().unwrap_or_else(|e| e.into_inner()).len())
            .ok_or_else(|| Error::PeerUnreachable {
                address: "process pool".to_owned(),
                reason: "no worker process is alive".to_owned(),
            })?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = bincode::serialize(message).map_err(|e| {
            Error::Config(format!(
                "task '{}' cannot be sent to a worker process: {e} (a Predicate policy cannot travel; use MinSize, Types, Always or Never)",
                message.task
            ))
        })?;
        worker
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (message.task.clone(), on_reply));
        let sent = worker
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(&[&id.to_le_bytes(), &body]);
        if let Err(e) = sent {
            // The reader may have failed it already; whichever is first.
            let entry = worker
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            if let Some((_, on_reply)) = entry {
                on_reply(Err(e));
            }
        }
        Ok(())
    }
}

impl Drop for ProcessPool {
    fn drop(&mut self) {
        for w in &self.workers {
            w.writer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .shutdown();
        }
        let deadline = Instant::now() + WORKER_EXIT_GRACE;
        for child in &mut self.children {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if matches!(child.try_wait(), Ok(None)) {
                tracing::warn!("worker process {} did not exit; killing it", child.id());
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl std::fmt::Debug for ProcessPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessPool")
            .field("workers", &self.worker_pids())
            .field("live", &self.live_workers())
            .finish()
    }
}

type Runner = Box<dyn Fn(&Store, &ProxyPolicy, Vec<Wired>) -> Result<Reply> + Send + Sync>;

/// The tasks a worker process can run, by name.
#[derive(Default)]
pub struct TaskRegistry {
    tasks: HashMap<&'static str, Runner>,
}

impl TaskRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `task` (a later task of the same name replaces it).
    pub fn register<A: TaskArgs, R: TaskValue>(mut self, task: &Task<A, R>) -> Self {
        let (name, body) = (task.name(), task.body());
        let run = move |store: &Store, policy: &ProxyPolicy, wired: Vec<Wired>| -> Result<Reply> {
            let args = A::from_wire(wired, store)?;
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(args)))
                .map_err(|panic| task_panicked(name, &*panic))?;
            let counters = Counters::default();
            let mut stager = Stager::new(store, policy, name, &counters);
            let wired = stager.wire(result, None)?;
            let len = counters
                .bytes_by_value
                .load(std::sync::atomic::Ordering::Relaxed)
                + counters
                    .bytes_by_proxy
                    .load(std::sync::atomic::Ordering::Relaxed);
            Ok((wired, len))
        };
        self.tasks.insert(name, Box::new(run));
        self
    }

    /// Names of the registered tasks.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.tasks.keys().copied().collect();
        names.sort_unstable();
        names
    }

    fn run(&self, message: TaskMessage) -> std::result::Result<Reply, String> {
        let runner = self.tasks.get(message.task.as_str()).ok_or_else(|| {
            format!(
                "this worker process has no task of that name (registered: {})",
                self.names().join(", ")
            )
        })?;
        let store = get_or_create_store(&message.store).map_err(|e| e.to_string())?;
        runner(&store, &message.result_policy, message.args).map_err(|e| e.to_string())
    }
}

impl std::fmt::Debug for TaskRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRegistry")
            .field("tasks", &self.names())
            .finish()
    }
}

/// In a worker process started by a [`ProcessPool`], connects to the pool
/// and runs its tasks until the pool closes, then returns `Some(Ok(()))`
/// (the caller should exit). In any other process returns `None` at once.
/// Register the connectors the stores need first
/// (`proxystore::register_connectors()`).
pub fn serve_if_worker(registry: &TaskRegistry) -> Option<Result<()>> {
    let spec = std::env::var(WORKER_ENV).ok()?;
    Some(serve(registry, &spec))
}

fn serve(registry: &TaskRegistry, spec: &str) -> Result<()> {
    let (addr, token) = spec.split_once(' ').ok_or_else(|| {
        Error::Config(format!("{WORKER_ENV}='{spec}' is not '<address> <token>'"))
    })?;
    let mut channel = FrameStream::connect(addr, Duration::from_secs(10))?;
    let hello = Hello {
        token: token.to_owned(),
        pid: std::process::id(),
    };
    let hello = bincode::serialize(&hello).map_err(|_| Error::Internal {
        what: "encoding the worker hello",
    })?;
    channel.send(&[&hello])?;
    while let Some(frame) = channel.recv()? {
        let (id, body) = frame.split_at(8.min(frame.len()));
        let id = u64::from_le_bytes(id.try_into().map_err(|_| Error::PeerUnreachable {
            address: channel.peer().to_owned(),
            reason: "sent a task frame shorter than its id".to_owned(),
        })?);
        let reply = match bincode::deserialize::<TaskMessage>(body) {
            Ok(message) => registry.run(message),
            Err(e) => Err(format!("the task message does not decode: {e}")),
        };
        let reply = bincode::serialize(&(id, reply)).map_err(|_| Error::Internal {
            what: "encoding a task reply",
        })?;
        channel.send(&[&reply])?;
    }
    Ok(())
}
