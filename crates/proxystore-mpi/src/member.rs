//! This process's membership in a job (a rank's window, directory, staged
//! memory and message path), and where connectors find it: the real job
//! [`crate::init`] made, or, in tests, the mock rank the current thread
//! plays.
//!
//! The direct get lives here: a shared lock on the owner, one read of the
//! owner's directory slots, one read of the object, unlock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use proxystore_core::{Error, ObjectId, Result};
use proxystore_peer::arena::Arena;
use proxystore_peer::pool;

use crate::chunks::Chunks;
use crate::directory::{Directory, Entry};
use crate::window::{Epoch, LockMode, Window};

/// What [`crate::init`] made: this rank's place in the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobInfo {
    /// The job id every key of this job names (random, chosen by rank 0).
    pub job: u64,
    /// This process's rank in the communicator given to [`crate::init`].
    pub rank: u32,
    /// The communicator's size.
    pub ranks: u32,
}

/// How a member's requests travel.
#[derive(Debug)]
pub(crate) enum Net {
    /// MPI point-to-point messages.
    Real(crate::p2p::Comm),
    /// The peer crate's in-process channels; the barrier of the mock
    /// job's threads.
    #[cfg(feature = "mock")]
    Mock(Arc<std::sync::Barrier>),
}

/// One rank of one job, as this process (or mock thread) sees it.
pub(crate) struct Member {
    info: JobInfo,
    window: Arc<dyn Window>,
    /// One per target rank: this process's epochs on it take turns.
    turns: Vec<Mutex<()>>,
    /// Window address of every rank's directory.
    directories: Vec<u64>,
    directory: Directory,
    /// Listed objects, each held so its memory is never reused while a
    /// slot names it.
    listed: Mutex<HashMap<ObjectId, Bytes>>,
    arena: Arc<Arena<Chunks>>,
    net: Net,
    next_port: AtomicU32,
    direct_gets: AtomicU64,
    requests: AtomicU64,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("info", &self.info)
            .field("directory", &self.directory)
            .finish()
    }
}

impl Member {
    /// Attaches this rank's directory and learns every rank's directory
    /// address through `exchange` (collective: an allgather of one u64).
    pub(crate) fn new(
        info: JobInfo,
        window: Arc<dyn Window>,
        net: Net,
        exchange: impl FnOnce(u64) -> Result<Vec<u64>>,
    ) -> Result<Arc<Self>> {
        let directory = Directory::attach(window.as_ref())?;
        let directories = exchange(directory.addr())?;
        if directories.len() != info.ranks as usize {
            return Err(Error::Config(format!(
                "mpi: {} directory addresses for {} ranks",
                directories.len(),
                info.ranks
            )));
        }
        Ok(Arc::new(Member {
            info,
            turns: (0..info.ranks).map(|_| Mutex::new(())).collect(),
            directories,
            directory,
            listed: Mutex::new(HashMap::new()),
            arena: Arena::new(Chunks::new(Arc::clone(&window))),
            window,
            net,
            next_port: AtomicU32::new(1),
            direct_gets: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }))
    }

    pub(crate) fn info(&self) -> JobInfo {
        self.info
    }

    pub(crate) fn net(&self) -> &Net {
        &self.net
    }

    /// A port number for a new data server of this rank.
    pub(crate) fn next_port(&self) -> Result<u32> {
        let port = self.next_port.fetch_add(1, Ordering::Relaxed);
        if port >= crate::p2p::PORTS {
            return Err(Error::Config(format!(
                "mpi: rank {} started {} data servers; at most {} per process",
                self.info.rank,
                port - 1,
                crate::p2p::PORTS - 1
            )));
        }
        Ok(port)
    }

    /// Direct gets answered so far by this member.
    pub(crate) fn direct_gets(&self) -> u64 {
        self.direct_gets.load(Ordering::Relaxed)
    }

    /// A data server of this rank received a request.
    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests this rank's data servers received so far.
    pub(crate) fn requests_served(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Waits for every rank of the job.
    pub(crate) fn barrier(&self) -> Result<()> {
        match &self.net {
            Net::Real(comm) => comm.barrier(),
            #[cfg(feature = "mock")]
            Net::Mock(b) => {
                b.wait();
                Ok(())
            }
        }
    }

    /// Objects listed in this rank's directory now.
    pub(crate) fn listed(&self) -> usize {
        self.directory.listed()
    }

    fn listed_objects(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectId, Bytes>> {
        self.listed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn outside(&self, rank: u32) -> Error {
        Error::Config(format!(
            "mpi: rank {rank} is outside the job's {} ranks",
            self.info.ranks
        ))
    }

    fn epoch(&self, rank: u32, mode: LockMode) -> Result<Epoch<'_>> {
        let turn = self
            .turns
            .get(rank as usize)
            .ok_or_else(|| self.outside(rank))?;
        Epoch::new(self.window.as_ref(), turn, rank, mode)
    }

    /// A shared epoch on `rank` and the window address of its directory.
    fn reading(&self, rank: u32) -> Result<(Epoch<'_>, u64)> {
        let dir = *self
            .directories
            .get(rank as usize)
            .ok_or_else(|| self.outside(rank))?;
        Ok((self.epoch(rank, LockMode::Shared)?, dir))
    }

    /// `data` copied into attached window memory (unchanged if none is
    /// left).
    pub(crate) fn stage(&self, data: Bytes) -> Bytes {
        let chunks = self.arena.memory();
        self.arena
            .stage(&data, |class| chunks.carve(class))
            .unwrap_or(data)
    }

    /// Lists object `id` in this rank's directory if `data` lies in
    /// attached memory.
    pub(crate) fn publish(&self, id: ObjectId, data: &Bytes) {
        let Some(addr) = self
            .arena
            .memory()
            .addr_of(data.as_ptr() as usize, data.len())
        else {
            return;
        };
        let entry = Entry {
            addr,
            len: data.len() as u64,
        };
        // Held across the epoch: a withdraw of the same id waits for this.
        let mut objects = self.listed_objects();
        let listed = match self.epoch(self.info.rank, LockMode::Exclusive) {
            Ok(own) => self.directory.insert(&own, id, entry),
            Err(e) => {
                tracing::warn!(error = %e, "could not list an object; its gets go to the owner");
                false
            }
        };
        if listed {
            objects.insert(id, data.clone());
        }
    }

    /// Unlists object `id`; once this returns no rank reads it through the
    /// directory (the exclusive lock waited for readers in flight).
    pub(crate) fn withdraw(&self, id: ObjectId) {
        let mut objects = self.listed_objects();
        let Some(data) = objects.remove(&id) else {
            return;
        };
        match self.epoch(self.info.rank, LockMode::Exclusive) {
            Ok(own) => {
                self.directory.remove(&own, id);
            }
            Err(e) => {
                // The slot stays: its memory must never be reused.
                tracing::error!(error = %e, "could not unlist an object; keeping its memory");
                std::mem::forget(data);
            }
        }
    }

    /// Object `id` read from `rank`'s memory, if its directory lists it:
    /// `Ok(None)` if not (the caller asks the owner instead). Objects over
    /// `max_len` are an error.
    pub(crate) fn read_listed(
        &self,
        rank: u32,
        id: ObjectId,
        max_len: u64,
    ) -> Result<Option<Bytes>> {
        let (epoch, dir) = self.reading(rank)?;
        let Some(entry) = Directory::lookup(&epoch, dir, id)? else {
            return Ok(None);
        };
        if entry.len > max_len {
            return Err(Error::TooLarge {
                what: "object listed in an MPI directory",
                size: entry.len,
                limit: max_len,
            });
        }
        let data = read_into_buffer(&epoch, entry)?;
        drop(epoch);
        self.direct_gets.fetch_add(1, Ordering::Relaxed);
        Ok(Some(data))
    }

    /// Where `rank`'s directory lists object `id`, if it does (one epoch,
    /// one read: the first half of a direct get).
    #[cfg_attr(not(feature = "baseline"), allow(dead_code))] // mpi-raw's lookup
    pub(crate) fn locate(&self, rank: u32, id: ObjectId) -> Result<Option<Entry>> {
        let (epoch, dir) = self.reading(rank)?;
        Directory::lookup(&epoch, dir, id)
    }

    /// `len` bytes at `addr` of `rank` (a descriptor's region).
    pub(crate) fn read_region(&self, rank: u32, addr: u64, len: u64) -> Result<Bytes> {
        let epoch = self.epoch(rank, LockMode::Shared)?;
        read_into_buffer(&epoch, Entry { addr, len })
    }
}

fn read_into_buffer(epoch: &Epoch<'_>, entry: Entry) -> Result<Bytes> {
    let len = usize::try_from(entry.len).map_err(|_| Error::TooLarge {
        what: "object listed in an MPI directory",
        size: entry.len,
        limit: usize::MAX as u64,
    })?;
    if len == 0 {
        return Ok(Bytes::new());
    }
    let mut buf = pool::take(len).ok_or(Error::TooLarge {
        what: "receive buffer",
        size: entry.len,
        limit: isize::MAX as u64,
    })?;
    // SAFETY: the pooled buffer holds at least `len` bytes.
    let dst = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr(), len) };
    epoch.read(entry.addr, dst)?;
    Ok(pool::into_bytes(buf, len))
}

fn real_slot() -> &'static Mutex<Option<Arc<Member>>> {
    static REAL: OnceLock<Mutex<Option<Arc<Member>>>> = OnceLock::new();
    REAL.get_or_init(Default::default)
}

/// The job state [`crate::init`] made in this process, if any.
pub(crate) fn real() -> Option<Arc<Member>> {
    real_slot()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

pub(crate) fn set_real(member: Option<Arc<Member>>) {
    *real_slot().lock().unwrap_or_else(|e| e.into_inner()) = member;
}

thread_local! {
    /// The mock rank this thread plays, if any.
    static PLAYING: RefCell<Option<Arc<Member>>> = const { RefCell::new(None) };
}

/// Makes this thread play `member` (a mock rank) until `None` is set.
#[cfg_attr(not(feature = "mock"), allow(dead_code))]
pub(crate) fn play(member: Option<Arc<Member>>) {
    PLAYING.with(|p| *p.borrow_mut() = member);
}

/// The membership connectors built on this thread use: the mock rank it
/// plays, else the real job state.
pub(crate) fn current() -> Option<Arc<Member>> {
    PLAYING.with(|p| p.borrow().clone()).or_else(real)
}

/// The error of a connector used where no job state exists.
pub(crate) fn no_job() -> Error {
    Error::Config(
        "mpi: no MPI job state in this process: call proxystore_mpi::init(&world) on every rank \
         (after initializing MPI with MPI_THREAD_MULTIPLE) before using the mpi connector; \
         mpi keys are valid only inside the job that made them"
            .into(),
    )
}
