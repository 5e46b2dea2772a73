//! A task farm in the shape of Dask's: a client submits tasks, a scheduler
//! relays each task message to a worker and the worker's answer back, as
//! Dask's scheduler does. Each role is a function here, so `proxystore
//! bench --scenario farm` runs them as three processes and the criterion
//! benchmark as three threads, over the same code and the same control
//! channel ([`FrameStream`], loopback TCP).
//!
//! A task's input and result are either inside the task message (by
//! value: the bytes cross the scheduler twice each way) or in a store (by
//! proxy: the client puts the input and sends its [`ProxyFactory`]; the
//! worker resolves it through the store rebuilt from the proxy's config,
//! puts a result of the same size and sends that proxy back; the client
//! resolves the result). Inputs and results are filler bytes of known
//! seeds ([`INPUT_SEED`], [`RESULT_SEED`]), and the worker and the client
//! check what they receive (length, and one byte on every page, which also
//! pages in a mapped object), so no step can be skipped unnoticed.
//!
//! Every wait is bounded ([`Timeouts`]); a peer that closes its channel
//! ends the roles behind it, so a client that dies stops the farm.

pub mod message;

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxystore_core::pattern::pattern;
use proxystore_core::{Error, ProxyFactory, Result, Store};

use crate::channel::{FrameListener, FrameStream};
pub use message::{Header, Message, Payload, WorkerSteps};

/// Seed of the filler bytes of every task input.
pub const INPUT_SEED: u64 = 1;
/// Seed of the filler bytes of every task result.
pub const RESULT_SEED: u64 = 2;

/// How long each role waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// For a role to connect and announce itself.
    pub connect: Duration,
    /// For the next task, between tasks (the client may be busy elsewhere,
    /// e.g. measuring the transport between two runs of the farm).
    pub idle: Duration,
    /// For a task's answer, beyond the task's own duration.
    pub reply: Duration,
}

impl Default for Timeouts {
    /// 10 s to connect, 10 min idle, 2 min for an answer.
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            idle: Duration::from_secs(600),
            reply: Duration::from_secs(120),
        }
    }
}

/// The roles a farm starts besides its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Relays tasks and answers ([`run_scheduler`]).
    Scheduler,
    /// Runs tasks ([`run_worker`]).
    Worker,
}

/// How a task's input and result travel.
#[derive(Clone, Copy, Debug)]
pub enum Via<'a> {
    /// Inside the task messages, through the scheduler.
    Value,
    /// Through this store; only proxies cross the scheduler. The store
    /// should be registered ([`proxystore_core::register_store`]) so that
    /// resolving a result in this process reuses it.
    Proxy(&'a Store),
}

/// An error for a message that is not the one the protocol expects here.
fn unexpected(got: &Message, wanted: &str, peer: &str) -> Error {
    unexpected_kind(got.kind(), wanted, peer)
}

/// The same, from the kind's name.
fn unexpected_kind(kind: &str, wanted: &str, peer: &str) -> Error {
    Error::PeerUnreachable {
        address: peer.to_owned(),
        reason: format!("sent a {kind} message where {wanted} was expected"),
    }
}

/// An error for a channel closed where a message was expected.
fn closed(peer: &str, wanted: &str) -> Error {
    Error::PeerUnreachable {
        address: peer.to_owned(),
        reason: format!("closed the channel where {wanted} was expected"),
    }
}

/// The next message, which must exist.
fn expect(chan: &mut FrameStream, wanted: &str) -> Result<Message> {
    Message::recv(chan)?.ok_or_else(|| closed(chan.peer(), wanted))
}

/// Checks that `got` is `want`: the same length, and the same byte on
/// every 4 KiB page and at the end (reading one byte per page also pages
/// in a mapped object, as a task using it would).
pub fn verify(got: &[u8], want: &[u8], what: &'static str) -> Result<()> {
    let bad = |reason: String| Error::Codec {
        codec: "farm",
        op: "verify",
        type_name: what,
        reason,
    };
    if got.len() != want.len() {
        return Err(bad(format!(
            "{} bytes arrived, {} were sent",
            got.len(),
            want.len()
        )));
    }
    let last = got.len().saturating_sub(8)..got.len();
    for i in (0..got.len()).step_by(4096).chain(last) {
        if got[i] != want[i] {
            return Err(bad(format!("byte {i} differs from what was sent")));
        }
    }
    Ok(())
}

/// The bytes a proxy or a value payload carries.
fn resolve(payload: Payload) -> Result<Bytes> {
    match payload {
        Payload::Value(bytes) => Ok(bytes),
        Payload::Proxy(factory) => factory.resolve::<Bytes>(),
    }
}

/// Evicts the object a proxy payload names (nothing for a value).
fn evict(payload: &Payload) -> Result<()> {
    match payload {
        Payload::Value(_) => Ok(()),
        Payload::Proxy(factory) => factory.store()?.evict(&factory.key),
    }
}

/// Where one task's time went: the data path of each side (the rest of
/// the round trip is control messages and scheduling).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskSteps {
    /// The client putting the input (zero by value).
    pub client_put: Duration,
    /// The worker resolving and checking the input.
    pub worker_fetch: Duration,
    /// The worker putting the result (zero by value).
    pub worker_put: Duration,
    /// The client resolving and checking the result.
    pub client_fetch: Duration,
}

/// The client's end of a running farm.
#[derive(Debug)]
pub struct Client {
    chan: FrameStream,
    next_id: u64,
    timeouts: Timeouts,
    /// Steps of the timed tasks of [`run`](Self::run) calls since the last
    /// [`take_steps`](Self::take_steps).
    steps: Vec<TaskSteps>,
    /// Steps of the last task.
    last: TaskSteps,
}

impl Client {
    /// Starts a farm: listens on a free loopback port, calls `spawn` to
    /// start the scheduler (told that address), waits for it to connect
    /// and say where it listens, calls `spawn` again to start the worker
    /// (told the scheduler's address), and returns once the scheduler says
    /// the worker is connected.
    pub fn start(
        timeouts: Timeouts,
        mut spawn: impl FnMut(Role, &str) -> Result<()>,
    ) -> Result<Client> {
        let listener = FrameListener::loopback()?;
        spawn(Role::Scheduler, &listener.addr().to_string())?;
        let mut chan = listener.accept(timeouts.connect)?;
        chan.set_read_timeout(Some(timeouts.connect))?;
        chan.set_write_timeout(Some(timeouts.reply))?;
        let addr = match expect(&mut chan, "the scheduler's address")? {
            Message::Listening(addr) => addr,
            other => return Err(unexpected(&other, "its address", chan.peer())),
        };
        spawn(Role::Worker, &addr)?;
        // The scheduler waits up to `connect` for the worker, then says so.
        chan.set_read_timeout(Some(timeouts.connect * 2))?;
        match expect(&mut chan, "ready")? {
            Message::Ready => {}
            other => return Err(unexpected(&other, "ready", chan.peer())),
        }
        Ok(Client {
            chan,
            next_id: 0,
            timeouts,
            steps: Vec::new(),
            last: TaskSteps::default(),
        })
    }

    /// Runs one task on `input` that takes `task_ms` and answers with
    /// `expected` (checked); returns the round trip: from before the input
    /// is put (by proxy) or sent (by value) to after the result is
    /// resolved and checked. Both objects are evicted afterwards, outside
    /// the timed part, whatever the outcome.
    pub fn task(
        &mut self,
        via: Via<'_>,
        input: &Bytes,
        expected: &Bytes,
        task_ms: u32,
    ) -> Result<Duration> {
        let id = self.next_id;
        self.next_id += 1;
        let start = Instant::now();
        let payload = match via {
            Via::Value => Payload::Value(input.clone()),
            Via::Proxy(store) => {
                let key = store.put_bytes(input.clone())?;
                Payload::Proxy(ProxyFactory::new(store.config(), key))
            }
        };
        self.last = TaskSteps {
            client_put: start.elapsed(),
            ..TaskSteps::default()
        };
        let mut answer = None;
        let outcome = self.round_trip(id, task_ms, input.len(), &payload, &mut answer, expected);
        let elapsed = start.elapsed();
        let evicted = evict(&payload).and(answer.as_ref().map_or(Ok(()), evict));
        outcome?;
        evicted?;
        Ok(elapsed)
    }

    /// Sends task `id`, waits for its answer (left in `answer` for
    /// eviction) and checks the result.
    fn round_trip(
        &mut self,
        id: u64,
        task_ms: u32,
        size: usize,
        payload: &Payload,
        answer: &mut Option<Payload>,
        expected: &Bytes,
    ) -> Result<()> {
        let task = Message::Task {
            id,
            task_ms,
            size: size as u64,
            payload: payload.clone(),
        };
        task.send(&mut self.chan)?;
        let wait = self.timeouts.reply + Duration::from_millis(u64::from(task_ms));
        self.chan.set_read_timeout(Some(wait))?;
        let (got_id, payload) = match expect(&mut self.chan, "a task's answer")? {
            Message::Done {
                id, payload, steps, ..
            } => {
                self.last.worker_fetch = Duration::from_micros(u64::from(steps.fetch_us));
                self.last.worker_put = Duration::from_micros(u64::from(steps.put_us));
                (id, payload)
            }
            Message::Failed { id: failed, reason } => {
                return Err(Error::PeerUnreachable {
                    address: format!("farm worker behind {}", self.chan.peer()),
                    reason: format!("task {failed} failed: {reason}"),
                })
            }
            other => return Err(unexpected(&other, "a task's answer", self.chan.peer())),
        };
        *answer = Some(payload.clone());
        if got_id != id {
            return Err(Error::PeerUnreachable {
                address: self.chan.peer().to_owned(),
                reason: format!("answered task {got_id} while task {id} was running"),
            });
        }
        let fetch = Instant::now();
        let checked = verify(&resolve(payload)?, expected, "task result");
        self.last.client_fetch = fetch.elapsed();
        checked
    }

    /// Runs `warmup` untimed then `iterations` timed tasks of `size` bytes
    /// in and out; returns the round trips.
    pub fn run(
        &mut self,
        via: Via<'_>,
        size: usize,
        task_ms: u32,
        warmup: usize,
        iterations: usize,
    ) -> Result<Vec<Duration>> {
        let input = pattern(size, INPUT_SEED);
        let expected = pattern(size, RESULT_SEED);
        let mut samples = Vec::with_capacity(iterations);
        for i in 0..warmup + iterations {
            let t = self.task(via, &input, &expected, task_ms)?;
            if i >= warmup {
                samples.push(t);
                self.steps.push(self.last);
            }
        }
        Ok(samples)
    }

    /// The steps of every timed task of the [`run`](Self::run) calls since
    /// the last call, in order; the list starts over.
    pub fn take_steps(&mut self) -> Vec<TaskSteps> {
        std::mem::take(&mut self.steps)
    }

    /// Stops the farm: tells the scheduler (which tells the worker) and
    /// waits, bounded, for the scheduler to close its end.
    pub fn shutdown(mut self) -> Result<()> {
        Message::Shutdown.send(&mut self.chan)?;
        self.chan.set_read_timeout(Some(self.timeouts.connect))?;
        match Message::recv(&mut self.chan)? {
            None => Ok(()),
            Some(other) => Err(unexpected(&other, "the end", self.chan.peer())),
        }
    }
}

/// The scheduler: connects to the client at `client_addr`, listens for
/// the worker on a free loopback port (telling the client where), then
/// relays each task to the worker and its answer back, one frame each,
/// untouched (only its header is read, to check its kind), until the
/// client says stop or goes away.
pub fn run_scheduler(client_addr: &str, timeouts: Timeouts) -> Result<()> {
    let listener = FrameListener::loopback()?;
    let mut client = FrameStream::connect(client_addr, timeouts.connect)?;
    client.set_write_timeout(Some(timeouts.reply))?;
    Message::Listening(listener.addr().to_string()).send(&mut client)?;
    let mut worker = listener.accept(timeouts.connect)?;
    worker.set_write_timeout(Some(timeouts.reply))?;
    Message::Ready.send(&mut client)?;
    client.set_read_timeout(Some(timeouts.idle))?;
    let result = relay(&mut client, &mut worker, timeouts);
    worker.shutdown();
    result
}

fn relay(client: &mut FrameStream, worker: &mut FrameStream, timeouts: Timeouts) -> Result<()> {
    let mut wait = None;
    loop {
        let Some(frame) = client.recv()? else {
            return Ok(()); // The client went away: the farm ends.
        };
        match Message::peek(&frame)? {
            Header::Task { task_ms } => {
                worker.send(&[&frame])?;
                let task_wait = timeouts.reply + Duration::from_millis(u64::from(task_ms));
                if wait != Some(task_wait) {
                    worker.set_read_timeout(Some(task_wait))?;
                    wait = Some(task_wait);
                }
                let answer = worker
                    .recv()?
                    .ok_or_else(|| closed(worker.peer(), "a task's answer"))?;
                match Message::peek(&answer)? {
                    Header::Answer => client.send(&[&answer])?,
                    other => {
                        return Err(unexpected_kind(
                            other.kind(),
                            "a task's answer",
                            worker.peer(),
                        ))
                    }
                }
            }
            Header::Shutdown => {
                worker.send(&[&frame])?;
                // The worker closes its end once it has read the stop.
                worker.set_read_timeout(Some(timeouts.connect))?;
                return match Message::recv(worker)? {
                    None => Ok(()),
                    Some(other) => Err(unexpected(&other, "the end", worker.peer())),
                };
            }
            other => {
                return Err(unexpected_kind(
                    other.kind(),
                    "a task or shutdown",
                    client.peer(),
                ))
            }
        }
    }
}

/// The worker: connects to the scheduler at `scheduler_addr` and runs
/// tasks until told to stop or the scheduler goes away. A task that fails
/// (its input missing or corrupt, a store that cannot be rebuilt) is
/// answered with [`Message::Failed`] and the worker goes on.
pub fn run_worker(scheduler_addr: &str, timeouts: Timeouts) -> Result<()> {
    let mut chan = FrameStream::connect(scheduler_addr, timeouts.connect)?;
    chan.set_read_timeout(Some(timeouts.idle))?;
    chan.set_write_timeout(Some(timeouts.reply))?;
    let mut worker = Worker::default();
    loop {
        match Message::recv(&mut chan)? {
            None | Some(Message::Shutdown) => return Ok(()),
            Some(Message::Task {
                id,
                task_ms,
                size,
                payload,
            }) => {
                let answer = match worker.run(task_ms, size, payload) {
                    Ok((payload, steps)) => Message::Done {
                        id,
                        size,
                        payload,
                        steps,
                    },
                    Err(e) => Message::Failed {
                        id,
                        reason: e.to_string(),
                    },
                };
                answer.send(&mut chan)?;
            }
            Some(other) => return Err(unexpected(&other, "a task", chan.peer())),
        }
    }
}

/// A worker's state: the expected input and the result of the last size,
/// made once per size, not per task.
#[derive(Default)]
struct Worker {
    input: Bytes,
    result: Bytes,
}

impl Worker {
    fn run(&mut self, task_ms: u32, size: u64, payload: Payload) -> Result<(Payload, WorkerSteps)> {
        let fetch = Instant::now();
        let factory = match &payload {
            Payload::Proxy(f) => Some(f.clone()),
            Payload::Value(_) => None,
        };
        let input = resolve(payload)?;
        // The length is checked before anything of that size is made.
        if input.len() as u64 != size {
            return Err(Error::Codec {
                codec: "farm",
                op: "verify",
                type_name: "task input",
                reason: format!("{} bytes arrived, the task says {size}", input.len()),
            });
        }
        if self.input.len() != input.len() {
            self.input = pattern(input.len(), INPUT_SEED);
            self.result = pattern(input.len(), RESULT_SEED);
        }
        verify(&input, &self.input, "task input")?;
        drop(input);
        let mut steps = WorkerSteps {
            fetch_us: WorkerSteps::micros(fetch.elapsed()),
            put_us: 0,
        };
        if task_ms > 0 {
            std::thread::sleep(Duration::from_millis(u64::from(task_ms)));
        }
        let answer = match factory {
            None => Payload::Value(self.result.clone()),
            Some(f) => {
                let put = Instant::now();
                let store = f.store()?;
                let key = store.put_bytes(self.result.clone())?;
                steps.put_us = WorkerSteps::micros(put.elapsed());
                Payload::Proxy(ProxyFactory::new(store.config(), key))
            }
        };
        Ok((answer, steps))
    }
}

/// A farm whose scheduler and worker are threads of this process (the
/// control channel is still loopback TCP).
#[derive(Debug)]
pub struct ThreadFarm {
    /// The client's end.
    pub client: Client,
    threads: Vec<(Role, JoinHandle<Result<()>>)>,
}

impl ThreadFarm {
    /// Starts the scheduler and the worker as threads.
    pub fn start(timeouts: Timeouts) -> Result<ThreadFarm> {
        let mut threads = Vec::new();
        let client = Client::start(timeouts, |role, addr| {
            let addr = addr.to_owned();
            let handle = std::thread::Builder::new()
                .name(format!("farm-{role:?}").to_lowercase())
                .spawn(move || match role {
                    Role::Scheduler => run_scheduler(&addr, timeouts),
                    Role::Worker => run_worker(&addr, timeouts),
                })
                .map_err(|e| Error::io(format!("starting the farm's {role:?} thread"), e))?;
            threads.push((role, handle));
            Ok(())
        })?;
        Ok(ThreadFarm { client, threads })
    }

    /// Stops the farm and joins its threads, returning the first error.
    pub fn shutdown(self) -> Result<()> {
        let mut result = self.client.shutdown();
        for (role, handle) in self.threads {
            let joined = handle.join().unwrap_or_else(|_| {
                Err(Error::Internal {
                    what: match role {
                        Role::Scheduler => "the farm's scheduler thread panicked",
                        Role::Worker => "the farm's worker thread panicked",
                    },
                })
            });
            result = result.and(joined);
        }
        result
    }
}

#[cfg(test)]
mod tests;
