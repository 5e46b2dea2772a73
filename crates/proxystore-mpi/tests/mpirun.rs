//! The MPI connector under real MPI: this test binary re-runs itself
//! under `mpirun` (2 and 4 ranks), each rank initializing MPI with
//! `MPI_THREAD_MULTIPLE`, calling `proxystore_mpi::init`, and getting the
//! objects every other rank put, through the owner's RMA window.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use mpi::collective::CommunicatorCollectives;
use mpi::datatype::PartitionMut;
use mpi::traits::Communicator;
use mpi::Count;
use proxystore_core::testing::{self, child_role, pattern};
use proxystore_core::{Connector, Key};
use proxystore_mpi::{MpiConnector, PeerConfig, KIND};

/// Longest an mpirun job may take before it is killed.
const JOB_LIMIT: Duration = Duration::from_secs(180);

/// `mpirun` running the entry test `rank_main` on `ranks` ranks in
/// `role`, or `None` (with the reason printed) where MPI is not installed.
fn mpirun(ranks: u32, role: &str) -> Option<Command> {
    mpirun_with(ranks, role, &[])
}

/// [`mpirun`] with Open MPI options `mca` (`None` under another MPI).
fn mpirun_with(ranks: u32, role: &str, mca: &[&str]) -> Option<Command> {
    common::rank_job(ranks, role, mca)
}

/// Runs the job to completion within [`JOB_LIMIT`]; returns its stdout,
/// panicking with both streams if it failed.
fn run_job(cmd: Command, ranks: u32) -> String {
    let job = common::run_job(cmd, JOB_LIMIT);
    let (stdout, stderr) = (job.stdout, job.stderr);
    assert!(
        job.status.success(),
        "mpirun failed ({}):\n{stdout}\n{stderr}",
        job.status
    );
    for rank in 0..ranks {
        assert!(
            stdout.contains(&format!("RANK{rank}_DONE=1")),
            "rank {rank} did not finish:\n{stdout}\n{stderr}"
        );
    }
    stdout
}

fn connector() -> MpiConnector {
    MpiConnector::with_config(PeerConfig::new(KIND, proxystore_mpi::ADDRESS)).unwrap()
}

/// Every rank's `text`, in rank order.
fn all_gather_text<C: Communicator>(world: &C, text: &str) -> Vec<String> {
    let n = world.size() as usize;
    let mine = text.len() as Count;
    let mut counts = vec![0 as Count; n];
    world.all_gather_into(&mine, &mut counts[..]);
    let displs: Vec<Count> = counts
        .iter()
        .scan(0, |at, &c| {
            let d = *at;
            *at += c;
            Some(d)
        })
        .collect();
    let mut buf = vec![0u8; counts.iter().sum::<Count>() as usize];
    {
        let mut partition = PartitionMut::new(&mut buf[..], &counts[..], &displs[..]);
        world.all_gather_varcount_into(text.as_bytes(), &mut partition);
    }
    counts
        .iter()
        .zip(&displs)
        .map(|(&c, &d)| String::from_utf8(buf[d as usize..(d + c) as usize].to_vec()).unwrap())
        .collect()
}

fn keys_of(text: &str) -> Vec<Key> {
    text.split_whitespace()
        .map(|k| k.parse().unwrap())
        .collect()
}

fn text_of(keys: &[Key]) -> String {
    keys.iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

const SIZES: [usize; 4] = [0, 1000, 100 << 10, 3 << 20];

fn seed(rank: usize, i: usize) -> u64 {
    rank as u64 * 1000 + i as u64
}

/// Each rank gets every other rank's objects, singly and in one batch
/// across owners; no owner handles a request for them.
fn cross_reads<C: Communicator>(world: &C) {
    let rank = world.rank() as usize;
    let c = connector();
    let keys: Vec<Key> = SIZES
        .iter()
        .enumerate()
        .map(|(i, &len)| c.put(pattern(len, seed(rank, i))).unwrap())
        .collect();
    let all: Vec<Vec<Key>> = all_gather_text(world, &text_of(&keys))
        .iter()
        .map(|t| keys_of(t))
        .collect();
    let before = proxystore_mpi::stats().unwrap();
    for (owner, keys) in all.iter().enumerate().filter(|(o, _)| *o != rank) {
        for (i, key) in keys.iter().enumerate() {
            let got = c.get(key).unwrap().expect("object of another rank");
            assert!(got == pattern(SIZES[i], seed(owner, i)), "{key}");
        }
    }
    let mut batch = Vec::new();
    for i in 0..SIZES.len() {
        batch.extend(all.iter().rev().map(|keys| keys[i].clone()));
    }
    let got = c.get_batch(&batch).unwrap();
    let n = all.len();
    for (k, value) in got.iter().enumerate() {
        let (i, owner) = (k / n, n - 1 - k % n);
        assert!(
            value.as_ref() == Some(&pattern(SIZES[i], seed(owner, i))),
            "{}",
            batch[k]
        );
    }
    let after = proxystore_mpi::stats().unwrap();
    let others = ((n - 1) * SIZES.len()) as u64;
    assert_eq!(
        after.direct_gets - before.direct_gets,
        2 * others,
        "rank {rank}"
    );
    world.barrier();
    assert_eq!(
        proxystore_mpi::stats().unwrap().requests_served,
        0,
        "rank {rank} handled a get"
    );
    world.barrier();
}

/// Rank 0 evicts and re-puts objects (reusing their memory) while the
/// others read them: a reader gets the object whole or nothing.
fn evict_while_reading<C: Communicator>(world: &C) {
    let rank = world.rank() as usize;
    let c = connector();
    let rounds = 20u64;
    let len = 200_000;
    for round in 0..rounds {
        let text = if rank == 0 {
            let keys: Vec<Key> = (0..4)
                .map(|i| c.put(pattern(len, round * 10 + i)).unwrap())
                .collect();
            text_of(&keys)
        } else {
            String::new()
        };
        let keys = keys_of(&all_gather_text(world, &text)[0]);
        if rank == 0 {
            std::thread::sleep(Duration::from_millis(1));
            for k in &keys {
                c.evict(k).unwrap();
            }
        } else {
            for _ in 0..5 {
                for (i, key) in keys.iter().enumerate() {
                    if let Some(d) = c.get(key).unwrap() {
                        assert!(
                            d == pattern(len, round * 10 + i as u64),
                            "{key}: other bytes"
                        );
                    }
                }
            }
        }
        world.barrier();
    }
    world.barrier();
}

/// The shared conformance cases, in rank 0 (rank 1 waits).
fn conformance<C: Communicator>(world: &C) {
    if world.rank() == 0 {
        for (name, case) in testing::CASES {
            case(Arc::new(connector()));
            println!("CASE {name} ok");
        }
    }
    world.barrier();
}

/// The body each rank runs under mpirun (returns at once in a plain
/// `cargo test`).
#[test]
fn rank_main() {
    let Some(role) = child_role() else { return };
    let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Multiple).unwrap();
    let world = universe.world();
    let info = proxystore_mpi::init(&world).unwrap();
    assert_eq!(info.ranks as i32, world.size());
    match role.as_str() {
        "cross" => {
            cross_reads(&world);
            evict_while_reading(&world);
        }
        "conformance" => conformance(&world),
        other => panic!("unknown role {other}"),
    }
    proxystore_mpi::finalize().unwrap();
    println!("RANK{}_DONE=1", world.rank());
}

#[test]
fn two_ranks_read_each_others_objects() {
    if let Some(cmd) = mpirun(2, "cross") {
        run_job(cmd, 2);
    }
}

#[test]
fn four_ranks_read_each_others_objects() {
    if let Some(cmd) = mpirun(4, "cross") {
        run_job(cmd, 4);
    }
}

#[test]
fn conformance_in_a_two_rank_job() {
    if let Some(cmd) = mpirun(2, "conformance") {
        let out = run_job(cmd, 2);
        for (name, _) in testing::CASES {
            assert!(out.contains(&format!("CASE {name} ok")), "{name}: {out}");
        }
    }
}

/// The network path: the window on osc/ucx over UCX's tcp transport and
/// messages on the tcp BTL (what a cluster without RDMA gets), where the
/// owner's data server thread drives MPI progress for passive targets.
#[test]
fn two_ranks_over_osc_ucx_on_tcp() {
    let mca = [
        "--mca",
        "osc",
        "ucx",
        "--mca",
        "pml",
        "ob1",
        "--mca",
        "btl",
        "tcp,self",
        "-x",
        "UCX_TLS=tcp,self",
    ];
    if let Some(cmd) = mpirun_with(2, "cross", &mca) {
        run_job(cmd, 2);
    }
}
