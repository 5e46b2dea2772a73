//! One timed run: client threads doing a mix of operations on a shared
//! pool of live keys, every read checked, and the accounting that tells a
//! lost object from one a client evicted while another was reading it.
//!
//! The rule that makes "lost" exact: an object is in the pool only after
//! its put was acknowledged, and an evict takes it out of the pool and
//! marks it evicted *before* it asks the connector to evict. A reader that
//! picked it earlier and then finds it missing checks that mark after its
//! read returned: if our evict caused the miss, the mark was set before the
//! evict request left, so before the miss was seen, and the miss is counted
//! as `raced` (expected); with no mark, nobody here evicted it and it is
//! `lost`. Wrong bytes are lost whatever the mark says: an evict can make
//! an object vanish, never change.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proxystore::{Connector, Key};

use super::hist::Histogram;
use super::payload::{self, Damage};

/// The operations of a mix, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Get,
    Put,
    Exists,
    Evict,
}

impl Op {
    pub(crate) const ALL: [Op; 4] = [Op::Get, Op::Put, Op::Exists, Op::Evict];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Exists => "exists",
            Op::Evict => "evict",
        }
    }

    /// Whether it moves an object's bytes (counts toward GiB/s).
    pub(crate) fn moves_bytes(self) -> bool {
        matches!(self, Op::Get | Op::Put)
    }
}

/// What each op's counters hold after a run.
pub(crate) struct OpStats {
    pub(crate) latency: Histogram,
    /// Calls that returned (with or without an error).
    pub(crate) ops: AtomicU64,
    /// Errors by `proxystore::Error` variant name.
    pub(crate) errors: Mutex<BTreeMap<String, u64>>,
    /// Objects found missing or different with no evict of ours to explain it.
    pub(crate) lost: AtomicU64,
    /// Objects found missing because another client evicted them meanwhile.
    pub(crate) raced: AtomicU64,
}

impl OpStats {
    fn new() -> Self {
        OpStats {
            latency: Histogram::new(),
            ops: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            lost: AtomicU64::new(0),
            raced: AtomicU64::new(0),
        }
    }

    fn error(&self, e: &proxystore::Error) {
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(variant(e)).or_insert(0) += 1;
        }
    }

    /// Errors of every kind.
    pub(crate) fn error_count(&self) -> u64 {
        self.errors.lock().map_or(0, |e| e.values().sum())
    }
}

/// The variant name of a typed error (`Timeout`, `PeerUnreachable`): the
/// first word of its `Debug` form, which derives print first.
pub(crate) fn variant(e: &proxystore::Error) -> String {
    let debug = format!("{e:?}");
    let name: String = debug
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if name.is_empty() {
        "Other".to_owned()
    } else {
        name
    }
}

/// An acknowledged object: its key, the id its header carries, and whether
/// a client of this run has started evicting it.
struct Live {
    key: Key,
    id: u64,
    evicted: AtomicBool,
}

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) clients: usize,
    pub(crate) size: usize,
    pub(crate) duration: Duration,
    /// Total operations over all clients, if bounded.
    pub(crate) ops: Option<u64>,
    /// Cumulative weights of get, put, exists, evict.
    pub(crate) mix: [u32; 4],
    /// Live objects at most (a put at the cap evicts one first).
    pub(crate) max_live: usize,
    /// Objects put before the timed phase, so gets have targets.
    pub(crate) prefill: usize,
    /// Mixed into every client's generator, so client processes differ.
    pub(crate) seed: u64,
    /// How long past the duration clients may take to finish (their
    /// operations' own timeouts bound this) before the run gives up.
    pub(crate) grace: Duration,
}

/// State every client of a run shares.
pub(crate) struct Shared {
    pub(crate) stats: [OpStats; 4],
    /// The final check of every object still live.
    pub(crate) verify: OpStats,
    pool: Mutex<Vec<Arc<Live>>>,
    next_id: AtomicU64,
    started: AtomicU64,
    /// Nanoseconds from the start to the last client's end.
    end_ns: AtomicU64,
    done: AtomicUsize,
    /// The first few losses, described, for the report.
    pub(crate) losses: Mutex<Vec<String>>,
    /// Evicts made only to hold the pool at its cap.
    pub(crate) cap_evicts: AtomicU64,
    /// Gets, exists and evicts that found the pool empty and put instead.
    pub(crate) empty_puts: AtomicU64,
}

/// A small generator per client: which op, which key, which seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

impl Shared {
    /// No counts and no live objects (client processes' reports are
    /// merged into one).
    pub(crate) fn empty() -> Self {
        Self::new()
    }

    fn new() -> Self {
        Shared {
            stats: Op::ALL.map(|_| OpStats::new()),
            verify: OpStats::new(),
            pool: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            started: AtomicU64::new(0),
            end_ns: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            losses: Mutex::new(Vec::new()),
            cap_evicts: AtomicU64::new(0),
            empty_puts: AtomicU64::new(0),
        }
    }

    fn stat(&self, op: Op) -> &OpStats {
        &self.stats[op as usize]
    }

    /// Operations returned so far, over every op.
    pub(crate) fn total_ops(&self) -> u64 {
        self.stats
            .iter()
            .map(|s| s.ops.load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn total_errors(&self) -> u64 {
        self.stats.iter().map(OpStats::error_count).sum()
    }

    pub(crate) fn total_lost(&self) -> u64 {
        self.stats
            .iter()
            .chain([&self.verify])
            .map(|s| s.lost.load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn live(&self) -> usize {
        self.pool.lock().map_or(0, |p| p.len())
    }

    fn lose(&self, op: &OpStats, what: String) {
        op.lost.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.losses.lock() {
            if l.len() < 5 {
                l.push(what);
            }
        }
    }

    fn pick(&self, rng: &mut Rng) -> Option<Arc<Live>> {
        let pool = self.pool.lock().ok()?;
        let i = rng.below(pool.len() as u64) as usize;
        pool.get(i).cloned()
    }

    /// Takes a live object out of the pool and marks it evicted, before
    /// anyone asks the connector to evict it.
    fn take(&self, rng: &mut Rng) -> Option<Arc<Live>> {
        let live = {
            let mut pool = self.pool.lock().ok()?;
            if pool.is_empty() {
                return None;
            }
            let i = rng.below(pool.len() as u64) as usize;
            pool.swap_remove(i)
        };
        live.evicted.store(true, Ordering::SeqCst);
        Some(live)
    }

    /// Puts one new object through `writer`; `Ok` once it is acknowledged
    /// and in the pool.
    fn put(&self, writer: &dyn Connector, size: usize, rng: &mut Rng) -> bool {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let data = payload::make(id, rng.next(), size);
        let stat = self.stat(Op::Put);
        let start = Instant::now();
        let result = writer.put(data);
        stat.latency.record(nanos(start.elapsed()));
        stat.ops.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(key) => {
                let live = Arc::new(Live {
                    key,
                    id,
                    evicted: AtomicBool::new(false),
                });
                if let Ok(mut pool) = self.pool.lock() {
                    pool.push(live);
                }
                true
            }
            Err(e) => {
                stat.error(&e);
                false
            }
        }
    }

    fn evict(&self, reader: &dyn Connector, live: &Live) {
        let stat = self.stat(Op::Evict);
        let start = Instant::now();
        let result = reader.evict(&live.key);
        stat.latency.record(nanos(start.elapsed()));
        stat.ops.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            stat.error(&e);
        }
    }

    /// Reads `live` back through `reader` and checks it into `stat`.
    fn get(&self, reader: &dyn Connector, live: &Live, size: usize, stat: &OpStats) {
        let start = Instant::now();
        let result = reader.get(&live.key);
        stat.latency.record(nanos(start.elapsed()));
        stat.ops.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(Some(data)) => {
                if let Err(damage) = payload::check(&data, live.id, size) {
                    let what = match damage {
                        Damage::Length => format!("{} bytes, expected {size}", data.len()),
                        Damage::Header => "another object's header or none".to_owned(),
                        Damage::Checksum => "its body does not match its checksum".to_owned(),
                    };
                    self.lose(stat, format!("key {}: {what}", live.key));
                }
            }
            Ok(None) => self.missing(stat, live),
            Err(e) => stat.error(&e),
        }
    }

    /// An object a get or exists did not find: expected if one of our
    /// clients started evicting it, lost otherwise.
    fn missing(&self, stat: &OpStats, live: &Live) {
        if live.evicted.load(Ordering::SeqCst) {
            stat.raced.fetch_add(1, Ordering::Relaxed);
        } else {
            self.lose(stat, format!("key {}: missing", live.key));
        }
    }

    fn exists(&self, reader: &dyn Connector, live: &Live) {
        let stat = self.stat(Op::Exists);
        let start = Instant::now();
        let result = reader.exists(&live.key);
        stat.latency.record(nanos(start.elapsed()));
        stat.ops.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(true) => {}
            Ok(false) => self.missing(stat, live),
            Err(e) => stat.error(&e),
        }
    }

    fn pick_op(plan: &Plan, rng: &mut Rng) -> Op {
        let total = plan.mix[3];
        let r = rng.below(u64::from(total)) as u32;
        let i = plan.mix.iter().position(|&c| r < c).unwrap_or(0);
        Op::ALL[i]
    }

    /// One client's loop: ops until the deadline, the op bound, or `stop`.
    fn client(&self, plan: &Plan, writer: &dyn Connector, reader: &dyn Connector, seed: u64) {
        let mut rng = Rng(seed);
        let deadline = Instant::now() + plan.duration;
        while Instant::now() < deadline {
            if let Some(limit) = plan.ops {
                if self.started.fetch_add(1, Ordering::Relaxed) >= limit {
                    break;
                }
            }
            let op = Self::pick_op(plan, &mut rng);
            let target = match op {
                Op::Put => None,
                Op::Evict => self.take(&mut rng),
                Op::Get | Op::Exists => self.pick(&mut rng),
            };
            match (op, target) {
                (Op::Put, _) => {
                    // Hold the stored bytes bounded: at the cap, make room.
                    if self.live() >= plan.max_live {
                        if let Some(old) = self.take(&mut rng) {
                            self.cap_evicts.fetch_add(1, Ordering::Relaxed);
                            self.evict(reader, &old);
                        }
                    }
                    self.put(writer, plan.size, &mut rng);
                }
                (Op::Get, Some(live)) => self.get(reader, &live, plan.size, self.stat(Op::Get)),
                (Op::Exists, Some(live)) => self.exists(reader, &live),
                (Op::Evict, Some(live)) => self.evict(reader, &live),
                (_, None) => {
                    // Nothing live to read or evict: add something.
                    self.empty_puts.fetch_add(1, Ordering::Relaxed);
                    self.put(writer, plan.size, &mut rng);
                }
            }
        }
    }

    /// Reads back and then evicts every object still live, after the timed
    /// phase: the final integrity check, and the cleanup.
    pub(crate) fn verify_and_clear(&self, reader: &dyn Connector, size: usize) {
        let live: Vec<Arc<Live>> = match self.pool.lock() {
            Ok(mut pool) => std::mem::take(&mut *pool),
            Err(_) => return,
        };
        for l in &live {
            self.get(reader, l, size, &self.verify);
            let _ = reader.evict(&l.key);
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What a finished run measured.
pub(crate) struct Outcome {
    pub(crate) shared: Arc<Shared>,
    /// From the clients' start to the last one's end.
    pub(crate) elapsed: Duration,
}

/// Why a run did not finish.
pub(crate) enum Failure {
    /// Prefill could not put an object: the connector does not work.
    Prefill(String),
    /// Clients were still inside operations when the grace period ended.
    Stuck(usize),
    /// The system would not start another thread.
    Spawn(String),
}

/// Runs `plan` against `writer` (puts) and `reader` (everything else),
/// calling `progress` about once a second while the clients run. The
/// objects still live stay in the pool for [`Shared::verify_and_clear`].
pub(crate) fn run(
    plan: &Plan,
    writer: &Arc<dyn Connector>,
    reader: &Arc<dyn Connector>,
    mut progress: impl FnMut(&Shared, Duration),
) -> Result<Outcome, Failure> {
    let mut shared = Shared::new();
    let mut rng = Rng(0x5EED);
    for _ in 0..plan.prefill {
        if !shared.put(writer.as_ref(), plan.size, &mut rng) {
            let errors = shared.stat(Op::Put).errors.lock().map(|e| format!("{e:?}"));
            return Err(Failure::Prefill(errors.unwrap_or_default()));
        }
    }
    // Prefill is not part of the measurement.
    shared.stats[Op::Put as usize] = OpStats::new();
    let shared = Arc::new(shared);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(plan.clients);
    for c in 0..plan.clients {
        let (shared, plan, writer, reader) = (
            Arc::clone(&shared),
            plan.clone(),
            Arc::clone(writer),
            Arc::clone(reader),
        );
        let seed = (c as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D) ^ plan.seed;
        let spawned = std::thread::Builder::new()
            .name(format!("load-client-{c}"))
            .spawn(move || {
                shared.client(&plan, writer.as_ref(), reader.as_ref(), seed);
                shared
                    .end_ns
                    .fetch_max(nanos(start.elapsed()), Ordering::Relaxed);
                shared.done.fetch_add(1, Ordering::Release);
            });
        // Clients already started stop by themselves at the deadline.
        handles.push(spawned.map_err(|e| Failure::Spawn(format!("client {c}: {e}")))?);
    }
    let give_up = start + plan.duration + plan.grace;
    let mut next_tick = start + Duration::from_secs(1);
    while shared.done.load(Ordering::Acquire) < plan.clients {
        let now = Instant::now();
        if now >= give_up {
            return Err(Failure::Stuck(
                plan.clients - shared.done.load(Ordering::Acquire),
            ));
        }
        if now >= next_tick {
            progress(&shared, now - start);
            next_tick += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Every client has counted itself done: these joins return at once.
    for h in handles {
        let _ = h.join();
    }
    let elapsed = Duration::from_nanos(shared.end_ns.load(Ordering::Relaxed));
    Ok(Outcome { shared, elapsed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxystore::{Bytes, Capabilities, ConnectorConfig, LocalConnector};

    /// A local connector that silently drops every `drop_every`-th put's
    /// object after acknowledging it, and flips a byte of every
    /// `corrupt_every`-th object read.
    #[derive(Debug)]
    struct Faulty {
        inner: LocalConnector,
        puts: AtomicU64,
        gets: AtomicU64,
        drop_every: u64,
        corrupt_every: u64,
    }

    impl Connector for Faulty {
        fn kind(&self) -> &str {
            "faulty"
        }
        fn capabilities(&self) -> Capabilities {
            self.inner.capabilities()
        }
        fn put(&self, data: Bytes) -> proxystore::Result<Key> {
            let key = self.inner.put(data)?;
            if (self.puts.fetch_add(1, Ordering::Relaxed) + 1) % self.drop_every == 0 {
                self.inner.evict(&key)?;
            }
            Ok(key)
        }
        fn get(&self, key: &Key) -> proxystore::Result<Option<Bytes>> {
            let got = self.inner.get(key)?;
            if (self.gets.fetch_add(1, Ordering::Relaxed) + 1) % self.corrupt_every != 0 {
                return Ok(got);
            }
            Ok(got.map(|b| {
                let mut v = b.to_vec();
                let last = v.len() - 1;
                v[last] ^= 0xFF;
                Bytes::from(v)
            }))
        }
        fn exists(&self, key: &Key) -> proxystore::Result<bool> {
            self.inner.exists(key)
        }
        fn evict(&self, key: &Key) -> proxystore::Result<()> {
            self.inner.evict(key)
        }
        fn config(&self) -> ConnectorConfig {
            self.inner.config()
        }
        fn close(&self) -> proxystore::Result<()> {
            self.inner.close()
        }
    }

    fn plan(mix: [u32; 4]) -> Plan {
        Plan {
            clients: 8,
            size: 1024,
            duration: Duration::from_secs(5),
            ops: Some(4000),
            mix,
            max_live: 64,
            prefill: 32,
            seed: 0,
            grace: Duration::from_secs(30),
        }
    }

    fn faulty(drop_every: u64, corrupt_every: u64) -> Arc<dyn Connector> {
        Arc::new(Faulty {
            inner: LocalConnector::new(),
            puts: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            drop_every,
            corrupt_every,
        })
    }

    fn lost_and_raced(plan: &Plan, c: &Arc<dyn Connector>) -> (u64, u64) {
        let Ok(out) = run(plan, c, c, |_, _| {}) else {
            panic!("run failed")
        };
        out.shared.verify_and_clear(c.as_ref(), plan.size);
        let raced = out
            .shared
            .stats
            .iter()
            .map(|s| s.raced.load(Ordering::Relaxed));
        (out.shared.total_lost(), raced.sum())
    }

    #[test]
    fn errors_are_named_by_their_variant() {
        let e = proxystore::Error::Config("bad".into());
        assert_eq!(variant(&e), "Config");
    }

    #[test]
    fn our_own_evicts_under_racing_gets_are_not_losses() {
        // Many evicts racing many gets on few keys: misses happen, and
        // every one is explained by an evict of ours.
        let c = faulty(u64::MAX, u64::MAX);
        let (lost, _raced) = lost_and_raced(&plan([40, 70, 80, 100]), &c);
        assert_eq!(lost, 0);
    }

    #[test]
    fn dropped_and_corrupted_objects_are_lost() {
        // Each dropped object is lost once its next read finds it gone.
        let (lost, _) = lost_and_raced(&plan([90, 100, 100, 100]), &faulty(7, u64::MAX));
        assert!(lost > 0);
        let (lost, _) = lost_and_raced(&plan([90, 100, 100, 100]), &faulty(u64::MAX, 50));
        assert!(lost > 0);
    }
}
