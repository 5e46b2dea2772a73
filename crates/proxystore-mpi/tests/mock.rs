//! The MPI connector on the mock window: ranks are threads of this test
//! process, so the directory protocol, staging, direct gets and the
//! message path run without `mpirun`, through the same connector code.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use proxystore_core::testing::pattern;
use proxystore_core::{Connector, Error, Key};
use proxystore_mpi::{mock, MpiConnector, PeerConfig, KIND};

fn connector() -> MpiConnector {
    MpiConnector::with_config(PeerConfig::new(KIND, proxystore_mpi::ADDRESS)).expect("connector")
}

/// Every conformance case, inside rank 0 of a two-rank mock job (rank 1
/// idles): a rebuilt connector reads its own rank's objects directly.
#[test]
fn conformance_in_rank0_of_a_mock_job() {
    for (name, case) in proxystore_core::testing::CASES {
        println!("case {name}");
        mock::run(2, |rank| {
            if rank == 0 {
                case(Arc::new(connector()));
            }
        })
        .expect("mock job");
    }
}

/// Keys every rank published, by rank.
type Board = Mutex<Vec<Vec<Key>>>;

fn post(board: &Board, rank: u32, keys: Vec<Key>) {
    board.lock().unwrap()[rank as usize] = keys;
}

fn seed(rank: u32, i: usize) -> u64 {
    u64::from(rank) * 1000 + i as u64
}

const SIZES: [usize; 4] = [0, 1000, 100 << 10, 3 << 20];

#[test]
fn every_rank_reads_every_other_ranks_objects_with_no_request() {
    let ranks = 4;
    let board: Board = Mutex::new(vec![Vec::new(); ranks]);
    let out = mock::run(ranks as u32, |rank| {
        let c = connector();
        let keys: Vec<Key> = SIZES
            .iter()
            .enumerate()
            .map(|(i, &len)| c.put(pattern(len, seed(rank, i))).unwrap())
            .collect();
        post(&board, rank, keys);
        proxystore_mpi::barrier().unwrap();
        let all = board.lock().unwrap().clone();
        let before = proxystore_mpi::stats().unwrap();
        for (owner, keys) in all.iter().enumerate() {
            for (i, key) in keys.iter().enumerate() {
                assert!(key.to_string().contains(&format!("/{owner}/")), "{key}");
                let got = c.get(key).unwrap().expect("object");
                assert_eq!(got, pattern(SIZES[i], seed(owner as u32, i)), "{key}");
            }
        }
        let after = proxystore_mpi::stats().unwrap();
        proxystore_mpi::barrier().unwrap();
        let served = proxystore_mpi::stats().unwrap().requests_served;
        (after.direct_gets - before.direct_gets, served, after.listed)
    })
    .unwrap();
    for (rank, (direct, served, listed)) in out.into_iter().enumerate() {
        // Its own keys come from its table; the others' from their windows.
        assert_eq!(direct, ((ranks - 1) * SIZES.len()) as u64, "rank {rank}");
        assert_eq!(served, 0, "rank {rank}: an owner handled a get");
        assert_eq!(listed, SIZES.len(), "rank {rank}");
    }
}

#[test]
fn batches_across_owners_keep_their_order() {
    let board: Board = Mutex::new(vec![Vec::new(); 3]);
    mock::run(3, |rank| {
        let c = connector();
        let data: Vec<Bytes> = (0..5)
            .map(|i| pattern(70_000 + i * 10, seed(rank, i)))
            .collect();
        post(&board, rank, c.put_batch(data).unwrap());
        proxystore_mpi::barrier().unwrap();
        if rank == 0 {
            let all = board.lock().unwrap().clone();
            // Interleave owners, add a missing key.
            let mut keys = Vec::new();
            for i in 0..5 {
                keys.extend(all.iter().rev().map(|owner_keys| owner_keys[i].clone()));
            }
            let gone = c.put(pattern(10, 1)).unwrap();
            c.evict(&gone).unwrap();
            keys.push(gone);
            let got = c.get_batch(&keys).unwrap();
            for (k, (key, value)) in keys.iter().zip(&got).enumerate().take(15) {
                let (i, owner) = (k / 3, 2 - k % 3);
                assert_eq!(
                    value.as_ref(),
                    Some(&pattern(70_000 + i * 10, seed(owner as u32, i))),
                    "{key}"
                );
            }
            assert_eq!(got[15], None);
        }
        proxystore_mpi::barrier().unwrap();
    })
    .unwrap();
}

#[test]
fn exists_and_evict_of_another_ranks_key_go_to_the_owner() {
    let board: Board = Mutex::new(vec![Vec::new(); 2]);
    let served = mock::run(2, |rank| {
        let c = connector();
        if rank == 1 {
            post(&board, 1, vec![c.put(pattern(5000, 7)).unwrap()]);
        }
        proxystore_mpi::barrier().unwrap();
        if rank == 0 {
            let key = board.lock().unwrap()[1][0].clone();
            assert!(c.exists(&key).unwrap());
            c.evict(&key).unwrap();
            assert!(!c.exists(&key).unwrap());
            assert_eq!(c.get(&key).unwrap(), None);
        }
        proxystore_mpi::barrier().unwrap();
        let s = proxystore_mpi::stats().unwrap();
        (s.requests_served, s.listed)
    })
    .unwrap();
    // exists, evict, exists, and the get the directory no longer answers.
    assert_eq!(served[1], (4, 0));
}

#[test]
fn evict_while_others_read_never_serves_other_bytes() {
    // The round's keys (None: done), for the readers.
    let current: Mutex<Option<(u32, Vec<Key>)>> = Mutex::new(Some((0, Vec::new())));
    let rounds = 40;
    let seen = mock::run(3, |rank| {
        let c = connector();
        if rank == 0 {
            for round in 0..rounds {
                let keys: Vec<Key> = (0..4)
                    .map(|i| c.put(pattern(200_000, seed(round, i))).unwrap())
                    .collect();
                *current.lock().unwrap() = Some((round, keys.clone()));
                std::thread::sleep(std::time::Duration::from_millis(2));
                // Evicted while readers read; the slabs are reused by the
                // next round's objects of the same class.
                for k in &keys {
                    c.evict(k).unwrap();
                }
            }
            *current.lock().unwrap() = None;
            // Keep serving until the readers are done.
            proxystore_mpi::barrier().unwrap();
            return 0;
        }
        let mut seen = 0;
        while let Some((round, keys)) = current.lock().unwrap().clone() {
            for (i, key) in keys.iter().enumerate() {
                if let Some(d) = c.get(key).unwrap() {
                    // The object this key names, whole, never a later
                    // round's object in the same memory.
                    assert!(d == pattern(200_000, seed(round, i)), "{key}: other bytes");
                    seen += 1;
                }
            }
        }
        proxystore_mpi::barrier().unwrap();
        seen
    })
    .unwrap();
    assert!(
        seen.iter().sum::<usize>() > 0,
        "no reader read anything: {seen:?}"
    );
}

#[test]
fn keys_of_another_job_or_rank_are_typed_errors() {
    let board: Board = Mutex::new(vec![Vec::new(); 2]);
    mock::run(2, |rank| {
        let c = connector();
        let key = c.put(pattern(100, 1)).unwrap();
        post(&board, rank, vec![key.clone()]);
        proxystore_mpi::barrier().unwrap();
        if rank == 0 {
            let text = key.to_string();
            let (id, location) = text.split_once('@').unwrap();
            let job = location
                .trim_start_matches("mpi://")
                .split('/')
                .next()
                .unwrap();
            let other_job = format!(
                "{id}@mpi://{:016x}/1/1",
                u64::from_str_radix(job, 16).unwrap() ^ 1
            );
            let outside = format!("{id}@mpi://{job}/7/1");
            let garbage = format!("{id}@mpi://{job}/x/1");
            for (text, expect) in [
                (other_job, "valid only inside the job"),
                (outside, "outside this job's 2 ranks"),
                (garbage, "not an MPI address"),
            ] {
                let k: Key = text.parse().unwrap();
                let e = c.get(&k).unwrap_err();
                assert!(matches!(e, Error::Config(_)), "{text}: {e:?}");
                assert!(e.to_string().contains(expect), "{text}: {e}");
                assert!(c.exists(&k).is_err(), "{text}");
            }
        }
        proxystore_mpi::barrier().unwrap();
    })
    .unwrap();
}

#[test]
fn outside_a_job_the_connector_names_init() {
    let c = connector();
    let e = c.put(pattern(10, 1)).unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert!(e.to_string().contains("proxystore_mpi::init"), "{e}");
    let key: Key = "00000000000000000000000000000001.10@mpi://00000000000000aa/0/1"
        .parse()
        .unwrap();
    let e = c.get(&key).unwrap_err();
    assert!(e.to_string().contains("proxystore_mpi::init"), "{e}");
    assert!(proxystore_mpi::stats().is_none());
}

#[test]
fn puts_to_a_server_rank_are_listed_there() {
    let board: Board = Mutex::new(vec![Vec::new(); 2]);
    let out = mock::run(2, |rank| {
        if rank == 1 {
            let server = connector();
            let address = server.local_address().unwrap();
            post(
                &board,
                1,
                vec![Key::random().with_location(&address).unwrap()],
            );
            proxystore_mpi::barrier().unwrap();
            proxystore_mpi::barrier().unwrap();
            drop(server);
        } else {
            proxystore_mpi::barrier().unwrap();
            let address = board.lock().unwrap()[1][0].location().unwrap().to_string();
            let mut config = PeerConfig::new(KIND, proxystore_mpi::ADDRESS);
            config.server = Some(address);
            let c = MpiConnector::with_config(config).unwrap();
            let key = c.put(pattern(300_000, 3)).unwrap();
            let before = proxystore_mpi::stats().unwrap().direct_gets;
            assert_eq!(c.get(&key).unwrap(), Some(pattern(300_000, 3)));
            assert_eq!(proxystore_mpi::stats().unwrap().direct_gets, before + 1);
            proxystore_mpi::barrier().unwrap();
        }
        Arc::new(proxystore_mpi::stats().unwrap())
    })
    .unwrap();
    // The put was a request; the get was not.
    assert_eq!(out[1].requests_served, 1);
}
