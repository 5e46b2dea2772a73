//! A fixed-size log-linear latency histogram (HDR-like) that many threads
//! record into at once: memory does not grow with clients or duration.

use std::sync::atomic::{AtomicU64, Ordering};

/// Sub-buckets per power of two: values are kept to within 1/64 (1.6 %).
const SUB: u64 = 64;
/// Bucket count: exact below 64 ns, then 64 per power of two up to 2^64.
const BUCKETS: usize = (64 - 6 + 1) * SUB as usize;

/// The bucket of `v`: `v` itself below 64, else the power of two and the
/// six bits after its leading one.
fn bucket(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 63 - u64::from(v.leading_zeros());
    let shift = e - 6;
    (shift * SUB + (v >> shift)) as usize
}

/// The lowest and highest value bucket `b` holds.
fn bounds(b: usize) -> (u64, u64) {
    let b = b as u64;
    if b < SUB {
        return (b, b);
    }
    let shift = b / SUB - 1;
    let t = b - shift * SUB;
    let low = t << shift;
    (low, low.saturating_add((1u64 << shift) - 1))
}

/// Latencies in nanoseconds: ~30 KiB of counters, whatever the count.
pub(crate) struct Histogram {
    counts: Box<[AtomicU64]>,
    max: AtomicU64,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Histogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }

    /// Counts one sample of `ns` nanoseconds.
    pub(crate) fn record(&self, ns: u64) {
        // Relaxed: the counts are read only after the clients are joined.
        self.counts[bucket(ns).min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(ns, Ordering::Relaxed);
    }

    /// The nonzero buckets, as (bucket, count), to ship to another process.
    pub(crate) fn buckets(&self) -> Vec<(u32, u64)> {
        self.counts
            .iter()
            .enumerate()
            .map(|(b, c)| (b as u32, c.load(Ordering::Relaxed)))
            .filter(|&(_, c)| c > 0)
            .collect()
    }

    /// Adds another histogram's [`buckets`](Self::buckets) and maximum;
    /// buckets out of range are ignored.
    pub(crate) fn merge(&self, buckets: &[(u32, u64)], max: u64) {
        for &(b, c) in buckets {
            if let Some(slot) = self.counts.get(b as usize) {
                slot.fetch_add(c, Ordering::Relaxed);
            }
        }
        self.max.fetch_max(max, Ordering::Relaxed);
    }

    /// Samples counted.
    pub(crate) fn len(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The largest sample, exactly.
    pub(crate) fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// The nearest-rank `q` quantile (0 < q <= 1): the middle of the bucket
    /// holding it (never above the maximum); 0 with no samples.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        let n = self.len();
        if n == 0 {
            return 0;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= rank {
                let (low, high) = bounds(b);
                return (low + (high - low) / 2).min(self.max());
            }
        }
        self.max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_bounded() {
        let mut last = 0;
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let b = bucket(v);
            assert!(b >= last && b < BUCKETS, "{v}");
            let (low, high) = bounds(b);
            assert!(low <= v && v <= high, "{v} in {low}..={high}");
            assert!((high - low) as f64 <= v as f64 / 63.0 + 1.0, "{v}");
            last = b;
        }
    }

    #[test]
    fn quantiles_are_within_the_bucket_width() {
        let h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        assert_eq!(h.len(), 1000);
        assert_eq!(h.max(), 1_000_000);
        for (q, want) in [(0.5, 500_000.0), (0.99, 990_000.0), (0.999, 999_000.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.02, "q{q}: {got}");
        }
        assert_eq!(h.quantile(1.0), 1_000_000);
        let merged = Histogram::new();
        merged.merge(&h.buckets(), h.max());
        merged.merge(&[(u32::MAX, 5)], 0);
        assert_eq!((merged.len(), merged.max()), (1000, 1_000_000));
        assert_eq!(merged.quantile(0.5), h.quantile(0.5));
        assert_eq!(Histogram::new().quantile(0.5), 0);
    }
}
