//! What the `mpi` kind is to the rest of the workspace: its bench setup
//! (under `mpirun -n 2`: rank 1 owns, rank 0 measures) and `info` line,
//! declared once. Shell commands refuse it: its keys live inside one job.

use mpi::topology::Communicator;
use proxystore_core::registry::{self, BenchEnv, BenchSetup, ConnectorDescriptor};
use proxystore_core::{Error, Result};
use proxystore_peer::peer_factory;

use crate::{MpiConnector, MpiLayer, PeerConfig, ADDRESS, KIND};

/// The `mpi` kind.
pub static DESCRIPTOR: ConnectorDescriptor = ConnectorDescriptor::new(
    KIND,
    Some("mpi"),
    "an MPI library with MPI_THREAD_MULTIPLE, and a job launched by mpirun/mpiexec",
    peer_factory::<MpiLayer>,
)
.confined_to("one MPI job (run the program under mpirun)")
.with_defaults(&[("address", ADDRESS)])
.with_bench(bench)
.with_status(status);

/// The kinds this crate implements.
pub static DESCRIPTORS: &[&ConnectorDescriptor] = &[&DESCRIPTOR];

/// Registers the `mpi` kind so proxies naming it resolve in this process.
/// Idempotent; `MpiConnector::with_config` registers the kind too.
pub fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| registry::register(&DESCRIPTOR));
}

/// The job state a benchmark made: on drop, waits for every rank (rank 0
/// is done measuring), stops rank 1's server, then finalizes the job
/// state and, if the benchmark initialized MPI, MPI itself.
struct BenchJob {
    server: Option<MpiConnector>,
    universe: Option<mpi::environment::Universe>,
}

impl Drop for BenchJob {
    fn drop(&mut self) {
        if let Err(e) = crate::barrier() {
            tracing::warn!(error = %e, "mpi bench: final barrier failed");
        }
        drop(self.server.take());
        if let Err(e) = crate::finalize() {
            tracing::warn!(error = %e, "mpi bench: finalize failed");
        }
        drop(self.universe.take());
    }
}

/// Under `mpirun -n 2` (or more): rank 1 serves, rank 0 puts to it as a
/// client and gets through a second connector (direct reads), beside
/// `mpi-raw`; other ranks wait.
fn bench(_: &BenchEnv) -> Result<BenchSetup> {
    let universe = if crate::mpi_is_running() {
        None
    } else {
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Multiple)
            .ok_or_else(|| Error::Config("mpi: MPI could not be initialized".into()))?;
        Some(universe)
    };
    let world = mpi::topology::SimpleCommunicator::world();
    if world.size() < 2 {
        return Err(Error::Config(
            "bench --connector mpi needs two ranks: run `mpirun -n 2 proxystore bench --connector mpi`".into(),
        ));
    }
    crate::init(&world)?;
    let rank = world.rank();
    let server = match rank {
        1 => {
            let c = MpiConnector::with_config(PeerConfig::new(KIND, ADDRESS))?;
            c.local_address()?;
            Some(c)
        }
        _ => None,
    };
    let mut address = [0u8; 64];
    if let Some(s) = &server {
        let a = s.local_address()?;
        address[..a.len()].copy_from_slice(a.as_bytes());
    }
    mpi::collective::Root::broadcast_into(&world.process_at_rank(1), &mut address[..]);
    let address = String::from_utf8_lossy(&address)
        .trim_end_matches('\0')
        .to_string();
    let job = BenchJob { server, universe };
    if rank != 0 {
        return Ok(BenchSetup::helping(move || {
            drop(job);
            Ok(())
        }));
    }
    let mut writer = PeerConfig::new(KIND, ADDRESS);
    writer.server = Some(address.clone());
    let setup = BenchSetup::new(MpiConnector::with_config(writer)?)
        .with_reader(MpiConnector::with_config(PeerConfig::new(KIND, ADDRESS))?);
    #[cfg(feature = "baseline")]
    let setup = {
        crate::baseline::set_owner(&address);
        setup.with_baseline(
            registry::raw_baseline("mpi-raw", crate::baseline::RawRead::start).only(&["get"]),
        )
    };
    Ok(setup.keep_alive(job))
}

/// The MPI library's version, for `proxystore info`.
fn status() -> String {
    format!(
        "{} (keys live inside one job: run under mpirun)",
        crate::library_version()
    )
}
