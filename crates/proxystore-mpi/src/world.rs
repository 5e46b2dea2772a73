//! The real MPI below the connector: the job state [`init`] creates on
//! every rank (a duplicate of the application's communicator, a dynamic
//! window, the directory), the window calls over `MPI_Win_*`/`MPI_Get`,
//! and the library checks the connector makes before it calls MPI at all.
//!
//! Every MPI call goes through [`Live::enter`]: [`finalize`] waits for the
//! calls in flight, then frees the window and the communicator, and every
//! later call fails with [`Error::Config`] instead of touching freed
//! handles.

use std::ffi::c_int;
use std::sync::{Arc, Mutex, OnceLock};

use mpi::ffi;
use mpi::raw::AsRaw;
use proxystore_core::{Error, Result};

use crate::member::{self, JobInfo, Member, Net};
use crate::raw::{check, Handle, Live};
use crate::window::{LockMode, Window};

/// Whether MPI is initialized and not finalized (callable at any time,
/// even outside MPI).
pub fn mpi_is_running() -> bool {
    let (mut init, mut fin): (c_int, c_int) = (0, 0);
    // SAFETY: MPI_Initialized and MPI_Finalized may be called before
    // MPI_Init and after MPI_Finalize; both only write their out-pointer.
    unsafe {
        ffi::MPI_Initialized(&mut init);
        ffi::MPI_Finalized(&mut fin);
    }
    init != 0 && fin == 0
}

/// The MPI library's version string (`MPI_Get_library_version`), which
/// MPI allows before initialization.
pub fn library_version() -> String {
    let mut buf = vec![0u8; ffi::MPI_MAX_LIBRARY_VERSION_STRING as usize + 1];
    let mut len: c_int = 0;
    // SAFETY: the buffer holds MPI_MAX_LIBRARY_VERSION_STRING bytes; the
    // call is allowed at any time.
    unsafe { ffi::MPI_Get_library_version(buf.as_mut_ptr().cast(), &mut len) };
    buf.truncate(len.max(0) as usize);
    // Some libraries count the terminating NUL in `len`.
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let text = String::from_utf8_lossy(&buf[..end]);
    text.lines().next().unwrap_or_default().trim().to_string()
}

fn thread_level_name(level: c_int) -> &'static str {
    // SAFETY: reading the rsmpi shim's constants (initialized statics).
    let (single, funneled, serialized) = unsafe {
        (
            ffi::RSMPI_THREAD_SINGLE,
            ffi::RSMPI_THREAD_FUNNELED,
            ffi::RSMPI_THREAD_SERIALIZED,
        )
    };
    match level {
        l if l == single => {
            "initialized with MPI_THREAD_SINGLE; proxystore-mpi needs MPI_THREAD_MULTIPLE"
        }
        l if l == funneled => {
            "initialized with MPI_THREAD_FUNNELED; proxystore-mpi needs MPI_THREAD_MULTIPLE"
        }
        l if l == serialized => {
            "initialized with MPI_THREAD_SERIALIZED; proxystore-mpi needs MPI_THREAD_MULTIPLE"
        }
        _ => "initialized below MPI_THREAD_MULTIPLE, which proxystore-mpi needs",
    }
}

/// Creates the job's connector state on every rank of `comm`: a duplicate
/// communicator for requests, a dynamic window with this rank's directory
/// attached, and the job id. **Collective**: every rank of `comm` calls it,
/// once, after MPI was initialized with `MPI_THREAD_MULTIPLE` (a second call
/// returns the first job's info). Connectors built afterwards in this
/// process (including those rebuilt from a proxy's config) use it.
pub fn init<C: AsRaw<Raw = ffi::MPI_Comm>>(comm: &C) -> Result<JobInfo> {
    if !mpi_is_running() {
        return Err(Error::Config(
            "mpi: MPI is not initialized: initialize it (e.g. mpi::initialize_with_threading(Threading::Multiple)) before proxystore_mpi::init".into(),
        ));
    }
    if let Some(m) = member::real() {
        return Ok(m.info());
    }
    let mut provided: c_int = 0;
    check(
        // SAFETY: MPI is initialized (checked above); out-pointer valid.
        unsafe { ffi::MPI_Query_thread(&mut provided) },
        "MPI_Query_thread",
    )?;
    // SAFETY: reading an initialized static of the rsmpi shim.
    if provided != unsafe { ffi::RSMPI_THREAD_MULTIPLE } {
        return Err(Error::Unsupported {
            connector: crate::KIND.into(),
            op: thread_level_name(provided),
        });
    }
    let comm = dup(comm.as_raw())?;
    let (rank, ranks) = rank_and_size(comm.0)?;
    let job = broadcast_job_id(comm.0, rank)?;
    let live = Arc::new(Live::new());
    let window = Arc::new(MpiWindow::create(comm, Arc::clone(&live))?);
    let exchange = |addr: u64| allgather_u64(comm.0, addr, ranks);
    let member = Member::new(
        JobInfo { job, rank, ranks },
        Arc::clone(&window) as Arc<dyn Window>,
        Net::Real(crate::p2p::Comm::new(comm, rank, Arc::clone(&live))),
        exchange,
    )?;
    member::set_real(Some(member));
    *owned().lock().unwrap_or_else(|e| e.into_inner()) = Some(Owned { comm, window, live });
    Ok(JobInfo { job, rank, ranks })
}

/// What [`finalize`] frees.
struct Owned {
    comm: Handle<ffi::MPI_Comm>,
    window: Arc<MpiWindow>,
    live: Arc<Live>,
}

fn owned() -> &'static Mutex<Option<Owned>> {
    static OWNED: OnceLock<Mutex<Option<Owned>>> = OnceLock::new();
    OWNED.get_or_init(Default::default)
}

/// Tears the job's connector state down on every rank: waits for every
/// rank (a barrier, so no rank is still reading), waits for this process's
/// MPI calls in flight, then frees the window and the duplicate
/// communicator; connectors still alive fail with [`Error::Config`] from
/// then on. **Collective**; call it before MPI is finalized. Without job
/// state it does nothing.
pub fn finalize() -> Result<()> {
    let Some(o) = owned().lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return Ok(());
    };
    {
        let _live = o.live.enter()?;
        crate::p2p::barrier(o.comm)?;
    }
    member::set_real(None);
    let _ended = o.live.end();
    let mut w = o.window.win.0;
    // SAFETY: no MPI call of ours is in flight (write lock held) and none
    // will start (live is false); every rank passed the barrier, so no
    // epoch is open on the window anywhere.
    check(unsafe { ffi::MPI_Win_free(&mut w) }, "MPI_Win_free")?;
    let mut c = o.comm.0;
    // SAFETY: as above; the window over it is freed.
    check(unsafe { ffi::MPI_Comm_free(&mut c) }, "MPI_Comm_free")
}

fn dup(comm: ffi::MPI_Comm) -> Result<Handle<ffi::MPI_Comm>> {
    // SAFETY: a zeroed handle is only an out-parameter for MPI_Comm_dup.
    let mut out: ffi::MPI_Comm = unsafe { std::mem::zeroed() };
    // SAFETY: `comm` is a valid communicator handed to us by the caller
    // through rsmpi; MPI is initialized.
    check(unsafe { ffi::MPI_Comm_dup(comm, &mut out) }, "MPI_Comm_dup")?;
    check(
        // SAFETY: `out` is the new communicator; errors on it are returned to
        // us instead of aborting the job.
        unsafe { ffi::MPI_Comm_set_errhandler(out, ffi::RSMPI_ERRORS_RETURN) },
        "MPI_Comm_set_errhandler",
    )?;
    Ok(Handle(out))
}

fn rank_and_size(comm: ffi::MPI_Comm) -> Result<(u32, u32)> {
    let (mut rank, mut size): (c_int, c_int) = (0, 0);
    check(
        // SAFETY: valid communicator, valid out-pointers.
        unsafe { ffi::MPI_Comm_rank(comm, &mut rank) },
        "MPI_Comm_rank",
    )?;
    check(
        // SAFETY: as above.
        unsafe { ffi::MPI_Comm_size(comm, &mut size) },
        "MPI_Comm_size",
    )?;
    Ok((rank as u32, size as u32))
}

fn broadcast_job_id(comm: ffi::MPI_Comm, rank: u32) -> Result<u64> {
    let mut job: u64 = if rank == 0 { fastrand::u64(1..) } else { 0 };
    check(
        // SAFETY: one u64 (8 bytes) at a valid address on every rank.
        unsafe {
            ffi::MPI_Bcast(
                (&mut job as *mut u64).cast(),
                8,
                ffi::RSMPI_UINT8_T,
                0,
                comm,
            )
        },
        "MPI_Bcast",
    )?;
    Ok(job)
}

fn allgather_u64(comm: ffi::MPI_Comm, mine: u64, ranks: u32) -> Result<Vec<u64>> {
    let mut all = vec![0u64; ranks as usize];
    check(
        // SAFETY: sends 8 bytes from `mine`, receives 8 per rank into `all`,
        // which holds `ranks` u64.
        unsafe {
            ffi::MPI_Allgather(
                (&mine as *const u64).cast(),
                8,
                ffi::RSMPI_UINT8_T,
                all.as_mut_ptr().cast(),
                8,
                ffi::RSMPI_UINT8_T,
                comm,
            )
        },
        "MPI_Allgather",
    )?;
    Ok(all)
}

/// The longest single `MPI_Get` (counts are C ints).
const GET_MAX: usize = 1 << 30;

/// A dynamic window (`MPI_Win_create_dynamic`) over the job's duplicate
/// communicator.
pub(crate) struct MpiWindow {
    win: Handle<ffi::MPI_Win>,
    live: Arc<Live>,
}

impl std::fmt::Debug for MpiWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiWindow").finish()
    }
}

impl MpiWindow {
    /// Collective over `comm`.
    pub(crate) fn create(comm: Handle<ffi::MPI_Comm>, live: Arc<Live>) -> Result<Self> {
        // SAFETY: a zeroed handle is only an out-parameter.
        let mut win: ffi::MPI_Win = unsafe { std::mem::zeroed() };
        check(
            // SAFETY: valid communicator and info; collective over `comm`,
            // which every rank is inside `init` for.
            unsafe { ffi::MPI_Win_create_dynamic(ffi::RSMPI_INFO_NULL, comm.0, &mut win) },
            "MPI_Win_create_dynamic",
        )?;
        check(
            // SAFETY: `win` was just created.
            unsafe { ffi::MPI_Win_set_errhandler(win, ffi::RSMPI_ERRORS_RETURN) },
            "MPI_Win_set_errhandler",
        )?;
        Ok(MpiWindow {
            win: Handle(win),
            live,
        })
    }
}

impl Window for MpiWindow {
    fn attach(&self, base: *mut u8, len: usize) -> Result<u64> {
        let _live = self.live.enter()?;
        check(
            // SAFETY: the caller owns `len` bytes at `base` and keeps them
            // allocated until it detaches them.
            unsafe { ffi::MPI_Win_attach(self.win.0, base.cast(), len as ffi::MPI_Aint) },
            "MPI_Win_attach",
        )?;
        let mut addr: ffi::MPI_Aint = 0;
        check(
            // SAFETY: `base` is a valid address; out-pointer valid.
            unsafe { ffi::MPI_Get_address(base.cast_const().cast(), &mut addr) },
            "MPI_Get_address",
        )?;
        Ok(addr as u64)
    }

    fn detach(&self, base: *mut u8) -> Result<()> {
        let _live = self.live.enter()?;
        check(
            // SAFETY: `base` was attached to this window by `attach`.
            unsafe { ffi::MPI_Win_detach(self.win.0, base.cast_const().cast()) },
            "MPI_Win_detach",
        )
    }

    fn lock(&self, rank: u32, mode: LockMode) -> Result<()> {
        let _live = self.live.enter()?;
        let kind = match mode {
            LockMode::Shared => ffi::MPI_LOCK_SHARED,
            LockMode::Exclusive => ffi::MPI_LOCK_EXCLUSIVE,
        } as c_int;
        check(
            // SAFETY: valid window and rank (checked by the caller against the
            // communicator's size); `Epoch` ensures this process holds no other
            // epoch on `rank`.
            unsafe { ffi::MPI_Win_lock(kind, rank as c_int, 0, self.win.0) },
            "MPI_Win_lock",
        )
    }

    fn unlock(&self, rank: u32) -> Result<()> {
        let _live = self.live.enter()?;
        check(
            // SAFETY: ends the epoch `lock` started on `rank`.
            unsafe { ffi::MPI_Win_unlock(rank as c_int, self.win.0) },
            "MPI_Win_unlock",
        )
    }

    fn read(&self, rank: u32, addr: u64, dst: &mut [u8]) -> Result<()> {
        let _live = self.live.enter()?;
        for (i, part) in dst.chunks_mut(GET_MAX).enumerate() {
            let at = addr + (i * GET_MAX) as u64;
            check(
                // SAFETY: `part` is writable memory of `part.len()` bytes that
                // stays borrowed until the flush below completes the get; the
                // target range lies in memory `rank` attached (the directory or
                // a descriptor said so, under this epoch).
                unsafe {
                    ffi::MPI_Get(
                        part.as_mut_ptr().cast(),
                        part.len() as c_int,
                        ffi::RSMPI_UINT8_T,
                        rank as c_int,
                        at as ffi::MPI_Aint,
                        part.len() as c_int,
                        ffi::RSMPI_UINT8_T,
                        self.win.0,
                    )
                },
                "MPI_Get",
            )?;
        }
        check(
            // SAFETY: completes the gets above inside the current epoch.
            unsafe { ffi::MPI_Win_flush(rank as c_int, self.win.0) },
            "MPI_Win_flush",
        )
    }
}
