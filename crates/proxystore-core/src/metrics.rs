//! Per-operation store metrics, recorded with atomics (no lock on the data path).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A store operation that metrics are kept for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// `Store::put`.
    Put,
    /// `Store::get`.
    Get,
    /// `Store::exists`.
    Exists,
    /// `Store::evict`.
    Evict,
    /// `Store::put_batch`.
    PutBatch,
    /// `Store::get_batch`.
    GetBatch,
}

impl Op {
    /// Every operation, in a fixed order.
    pub const ALL: [Op; 6] = [
        Op::Put,
        Op::Get,
        Op::Exists,
        Op::Evict,
        Op::PutBatch,
        Op::GetBatch,
    ];

    /// The operation's name.
    pub fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Exists => "exists",
            Op::Evict => "evict",
            Op::PutBatch => "put_batch",
            Op::GetBatch => "get_batch",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug)]
struct Counters {
    count: AtomicU64,
    total_ns: AtomicU64,
    min_ns: AtomicU64,
    max_ns: AtomicU64,
    bytes: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            count: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            min_ns: AtomicU64::new(u64::MAX),
            max_ns: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }
}

/// Live metrics of one store.
#[derive(Debug, Default)]
pub struct Metrics {
    ops: [Counters; Op::ALL.len()],
    realigned: AtomicU64,
}

impl Metrics {
    /// Records one operation that took `elapsed` and moved `bytes`.
    pub fn record(&self, op: Op, elapsed: Duration, bytes: u64) {
        let c = &self.ops[op as usize];
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        c.count.fetch_add(1, Ordering::Relaxed);
        c.total_ns.fetch_add(ns, Ordering::Relaxed);
        c.min_ns.fetch_min(ns, Ordering::Relaxed);
        c.max_ns.fetch_max(ns, Ordering::Relaxed);
        c.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `n` typed reads whose elements were misaligned for their
    /// type and copied once to align them.
    pub fn record_realigned(&self, n: u64) {
        if n > 0 {
            self.realigned.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A consistent-enough copy of the counters (each field is read
    /// atomically; fields of one op may be a few operations apart).
    pub fn snapshot(&self) -> MetricsSnapshot {
        let ops = Op::ALL
            .iter()
            .filter_map(|&op| {
                let c = &self.ops[op as usize];
                let count = c.count.load(Ordering::Relaxed);
                (count > 0).then(|| OpStats {
                    op,
                    count,
                    total: Duration::from_nanos(c.total_ns.load(Ordering::Relaxed)),
                    min: Duration::from_nanos(c.min_ns.load(Ordering::Relaxed)),
                    max: Duration::from_nanos(c.max_ns.load(Ordering::Relaxed)),
                    bytes: c.bytes.load(Ordering::Relaxed),
                })
            })
            .collect();
        MetricsSnapshot {
            ops,
            realigned: self.realigned.load(Ordering::Relaxed),
        }
    }
}

/// Statistics of one operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpStats {
    /// Which operation.
    pub op: Op,
    /// How many times it ran.
    pub count: u64,
    /// Total time spent in it.
    pub total: Duration,
    /// Fastest call.
    pub min: Duration,
    /// Slowest call.
    pub max: Duration,
    /// Bytes moved (put: bytes stored; get: bytes fetched).
    pub bytes: u64,
}

impl OpStats {
    /// Mean time per call.
    pub fn mean(&self) -> Duration {
        self.total / u32::try_from(self.count.max(1)).unwrap_or(u32::MAX)
    }
}

/// A copy of a store's metrics at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Statistics of every operation that ran at least once.
    pub ops: Vec<OpStats>,
    /// [`PodArray`](crate::PodArray)s read whose elements were not aligned
    /// for their type in the connector's buffer, so they were copied once
    /// into an aligned one (0 when every typed view was zero-copy).
    #[serde(default)]
    pub realigned: u64,
}

impl MetricsSnapshot {
    /// Statistics of one operation, if it ran.
    pub fn get(&self, op: Op) -> Option<&OpStats> {
        self.ops.iter().find(|s| s.op == op)
    }
}
