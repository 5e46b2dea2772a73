//! MPI connector: objects served from this rank's memory and read by
//! other ranks of the same job with passive-target RMA (`MPI_Get` on a
//! dynamic window), with no request to the owner.
//!
//! For applications that already run under `mpirun`/`mpiexec`. Every rank
//! calls [`init`] once (collective) after initializing MPI with
//! `MPI_THREAD_MULTIPLE`, and [`finalize`] (collective) before MPI is
//! finalized. Then `MpiConnector::with_config(PeerConfig::new("mpi",
//! "mpi://"))` on any rank, or a proxy resolving there, uses that state.
//!
//! # How a get works
//!
//! - A put copies the object into window memory of its rank (staging
//!   chunks attached once, see `chunks`) and lists it in the rank's
//!   *directory*, an open-addressing table in window memory (`directory`).
//!   Keys are `<id>.<size>@mpi://<job>/<rank>/<port>`.
//! - A get of another rank's key locks the owner shared
//!   (`MPI_Win_lock`), reads the id's probe window of the owner's
//!   directory (`MPI_Get`, `MPI_Win_flush`), then the object into a pooled
//!   buffer, and unlocks: two gets in one epoch, nothing run by the owner.
//! - Evict takes an exclusive lock on its own rank before it clears the
//!   slot, so a reader inside its shared epoch never sees the object's
//!   memory reused; the object's memory is reused only after that.
//! - Exists, evict of another rank's key, puts to a `server` rank, and
//!   gets of objects a directory does not list (its probe window was full,
//!   or staging memory ran out) go to the owner as requests over MPI
//!   point-to-point messages on a duplicate of the job's communicator
//!   (`p2p`), through the shared peer connector.
//!
//! # Threads
//!
//! [`init`] refuses an MPI initialized below `MPI_THREAD_MULTIPLE`
//! ([`proxystore_core::Error::Unsupported`] naming the level): the data
//! server polls for requests on its own thread while the application's
//! threads read, so MPI must allow calls from several threads at once. MPI
//! forbids two epochs of one process on one target at a time; this
//! process's threads take turns per target rank.
//!
//! # Limits
//!
//! - Keys are valid only inside the job that made them: a key of another
//!   job, a rank outside the communicator, or any mpi key outside MPI is a
//!   typed error ([`proxystore_core::Error::Config`]), never a hang.
//! - A rank that dies usually aborts the whole job: MPI without ULFM has
//!   no fault model for it, and this crate does not pretend to handle it.
//!   A direct get has no timeout of its own for the same reason: on
//!   shared memory nothing of the owner's process runs in it (a SIGSTOPped
//!   owner's objects are still read, `tests/faults.rs`). Where the
//!   one-sided component needs the target's progress (osc/ucx over tcp:
//!   the owner's data server thread drives it), a stopped owner stalls a
//!   direct get until it resumes (measured: 60 s, until the job was
//!   ended). Requests to the owner (`exists`, `evict`, a get of an
//!   object it did not list) keep the store's timeout.
//! - Open MPI's osc components bound the regions a dynamic window may
//!   attach (32 for osc/ucx): objects are staged in at most 24 chunks of
//!   256 MiB (virtual) per rank, and staged memory is reused, not
//!   returned, until [`finalize`].
//!
//! [`mock::run`] (feature `mock`) runs ranks as threads of one process,
//! so the protocol runs in tests without `mpirun`.

#[cfg(feature = "baseline")]
pub mod baseline;
mod chunks;
mod descriptor;
mod directory;
mod layer;
mod member;
#[cfg(feature = "mock")]
pub mod mock;
mod p2p;
mod raw;
mod window;
mod world;

pub use descriptor::{register, DESCRIPTOR, DESCRIPTORS};
pub use layer::{MpiClient, MpiLayer, MpiReplyTo, MpiServer, SCHEME};
pub use member::JobInfo;
pub use proxystore_peer::PeerConfig;
pub use world::{finalize, init, library_version, mpi_is_running};

use proxystore_core::Result;

/// The MPI connector: the shared peer connector over [`MpiLayer`].
pub type MpiConnector = proxystore_peer::PeerConnector<MpiLayer>;

/// The connector kind, Cargo feature and CLI name.
pub const KIND: &str = "mpi";

/// The endpoint a connector serves on: this rank's own.
pub const ADDRESS: &str = SCHEME;

/// What this rank has done so far, for tests and benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// The job and this rank.
    pub job: JobInfo,
    /// Objects this rank read from owners' windows (no request).
    pub direct_gets: u64,
    /// Requests this rank's data servers received.
    pub requests_served: u64,
    /// Objects listed in this rank's directory now.
    pub listed: usize,
}

/// This rank's counters (the mock rank this thread plays, else the job
/// [`init`] made), or `None` without job state.
pub fn stats() -> Option<Stats> {
    let m = member::current()?;
    Some(Stats {
        job: m.info(),
        direct_gets: m.direct_gets(),
        requests_served: m.requests_served(),
        listed: m.listed(),
    })
}

/// Waits for every rank of the job (an `MPI_Barrier` on the job's
/// duplicate communicator; the mock's thread barrier).
pub fn barrier() -> Result<()> {
    member::current().ok_or_else(member::no_job)?.barrier()
}
