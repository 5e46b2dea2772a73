//! The records, table and plot of `proxystore load`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::procfs::Usage;
use super::run::{OpStats, Outcome};
use crate::report::{human_size, human_time, polyline, COLORS};

/// One op kind of one run, in the `--json` format.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LoadRecord {
    pub(crate) connector: String,
    pub(crate) op: String,
    pub(crate) clients: u64,
    /// Client processes the clients ran in; 0: threads of this process.
    pub(crate) processes: u64,
    pub(crate) size_bytes: u64,
    pub(crate) mix: String,
    pub(crate) duration_s: f64,
    pub(crate) ops: u64,
    pub(crate) ops_per_s: f64,
    pub(crate) gib_per_s: f64,
    pub(crate) p50_ns: u64,
    pub(crate) p99_ns: u64,
    pub(crate) p999_ns: u64,
    pub(crate) max_ns: u64,
    pub(crate) errors: u64,
    pub(crate) errors_by_kind: BTreeMap<String, u64>,
    pub(crate) lost: u64,
    /// Misses explained by another client's evict (expected, not lost).
    pub(crate) raced: u64,
    /// Which process the server figures are of.
    pub(crate) server: String,
    pub(crate) server_rss_kib_start: Option<u64>,
    pub(crate) server_rss_kib_end: Option<u64>,
    pub(crate) server_fds_start: Option<u64>,
    pub(crate) server_fds_end: Option<u64>,
}

/// What a run's records share.
pub(crate) struct RunInfo<'a> {
    pub(crate) connector: &'a str,
    pub(crate) clients: usize,
    pub(crate) processes: usize,
    pub(crate) size: usize,
    pub(crate) mix: &'a str,
    pub(crate) server: String,
    pub(crate) start: Usage,
    pub(crate) end: Usage,
}

impl RunInfo<'_> {
    fn record(
        &self,
        op: &str,
        stats: &OpStats,
        elapsed: Duration,
        moves_bytes: bool,
    ) -> LoadRecord {
        let ops = stats.ops.load(Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let rate = |n: f64| if secs > 0.0 { n / secs } else { 0.0 };
        let bytes = if moves_bytes {
            ops as f64 * self.size as f64
        } else {
            0.0
        };
        let errors_by_kind = stats.errors.lock().map(|e| e.clone()).unwrap_or_default();
        LoadRecord {
            connector: self.connector.to_owned(),
            op: op.to_owned(),
            clients: self.clients as u64,
            processes: self.processes as u64,
            size_bytes: self.size as u64,
            mix: self.mix.to_owned(),
            duration_s: secs,
            ops,
            ops_per_s: rate(ops as f64),
            gib_per_s: rate(bytes) / (1u64 << 30) as f64,
            p50_ns: stats.latency.quantile(0.5),
            p99_ns: stats.latency.quantile(0.99),
            p999_ns: stats.latency.quantile(0.999),
            max_ns: stats.latency.max(),
            errors: errors_by_kind.values().sum(),
            errors_by_kind,
            lost: stats.lost.load(Ordering::Relaxed),
            raced: stats.raced.load(Ordering::Relaxed),
            server: self.server.clone(),
            server_rss_kib_start: self.start.rss_kib,
            server_rss_kib_end: self.end.rss_kib,
            server_fds_start: self.start.fds,
            server_fds_end: self.end.fds,
        }
    }

    /// One record per op kind that ran, then `verify` (the final read of
    /// every object still live, timed over `verify_time`).
    pub(crate) fn records(&self, outcome: &Outcome, verify_time: Duration) -> Vec<LoadRecord> {
        let shared = &outcome.shared;
        let mut out: Vec<LoadRecord> = super::run::Op::ALL
            .iter()
            .zip(&shared.stats)
            .filter(|(_, s)| s.ops.load(Ordering::Relaxed) > 0)
            .map(|(op, s)| self.record(op.name(), s, outcome.elapsed, op.moves_bytes()))
            .collect();
        out.push(self.record("verify", &shared.verify, verify_time, true));
        out
    }
}

fn or_na(v: Option<u64>, f: impl Fn(u64) -> String) -> String {
    v.map_or_else(|| "n/a".to_owned(), f)
}

/// The table of one run's records, then its errors, races and server use.
pub(crate) fn table(records: &[LoadRecord]) -> String {
    let mut out = String::new();
    let Some(first) = records.first() else {
        return out;
    };
    let procs = match first.processes {
        0 => String::new(),
        p => format!(" in {p} processes"),
    };
    let _ = writeln!(
        out,
        "{}: {} clients{procs}, {} objects, mix {}, {:.2} s",
        first.connector,
        first.clients,
        human_size(first.size_bytes),
        first.mix,
        first.duration_s
    );
    let _ = writeln!(
        out,
        "{:<7} {:>9} {:>10} {:>7} {:>10} {:>10} {:>10} {:>10} {:>7} {:>5}",
        "op", "ops", "ops/s", "GiB/s", "p50", "p99", "p99.9", "max", "errors", "lost"
    );
    for r in records {
        let _ = writeln!(
            out,
            "{:<7} {:>9} {:>10.1} {:>7.3} {:>10} {:>10} {:>10} {:>10} {:>7} {:>5}",
            r.op,
            r.ops,
            r.ops_per_s,
            r.gib_per_s,
            human_time(r.p50_ns),
            human_time(r.p99_ns),
            human_time(r.p999_ns),
            human_time(r.max_ns),
            r.errors,
            r.lost
        );
    }
    for r in records {
        if !r.errors_by_kind.is_empty() {
            let kinds: Vec<String> = r
                .errors_by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = writeln!(out, "{} errors: {}", r.op, kinds.join(", "));
        }
        if r.raced > 0 {
            let _ = writeln!(
                out,
                "{} found {} objects missing that another client was evicting (expected, not lost)",
                r.op, r.raced
            );
        }
    }
    let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    let _ = writeln!(
        out,
        "server: {}: RSS {} -> {}, open fds {} -> {}",
        first.server,
        or_na(first.server_rss_kib_start, mib),
        or_na(first.server_rss_kib_end, mib),
        or_na(first.server_fds_start, |n| n.to_string()),
        or_na(first.server_fds_end, |n| n.to_string()),
    );
    let lost: u64 = records.iter().map(|r| r.lost).sum();
    let _ = writeln!(out, "objects lost: {lost}");
    out
}

/// Operations per second (linear) against client count (log), one line
/// per connector and op, as a standalone SVG document.
pub(crate) fn svg(records: &[LoadRecord]) -> String {
    let (w, h, left, right, top, bottom) = (900.0, 560.0, 80.0, 220.0, 40.0, 60.0);
    let timed: Vec<&LoadRecord> = records.iter().filter(|r| r.op != "verify").collect();
    let mut clients: Vec<u64> = timed.iter().map(|r| r.clients.max(1)).collect();
    clients.sort_unstable();
    clients.dedup();
    let lg = |c: u64| (c.max(1) as f64).log2();
    let xmin = clients.first().map_or(0.0, |&c| lg(c));
    let xmax = clients.last().map_or(1.0, |&c| lg(c)).max(xmin + 1.0);
    let ymax = timed.iter().map(|r| r.ops_per_s).fold(1.0, f64::max) * 1.1;
    let (pw, ph) = (w - left - right, h - top - bottom);
    let x = |c: u64| left + (lg(c) - xmin) / (xmax - xmin) * pw;
    let y = |v: f64| top + ph - v / ymax * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let size = timed.first().map_or(0, |r| r.size_bytes);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" font-size="16" text-anchor="middle">proxystore load: operations per second by client count ({} objects)</text>"#,
        left + pw / 2.0,
        human_size(size)
    );
    for i in 0..=5 {
        let v = ymax * f64::from(i) / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.0}</text>"##,
            left + pw,
            left - 6.0,
            y(v) + 4.0,
            yy = y(v)
        );
    }
    for &c in &clients {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{c}</text>"#,
            x(c),
            top + ph + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/><text x="{:.1}" y="{:.1}" text-anchor="middle">clients</text><text transform="translate(20,{:.1}) rotate(-90)" text-anchor="middle">ops/s</text>"#,
        left + pw / 2.0,
        h - 15.0,
        top + ph / 2.0
    );
    let mut series: BTreeMap<(&str, &str), Vec<(u64, f64)>> = BTreeMap::new();
    for r in &timed {
        series
            .entry((r.connector.as_str(), r.op.as_str()))
            .or_default()
            .push((r.clients, r.ops_per_s));
    }
    for (i, ((connector, op), mut points)) in series.into_iter().enumerate() {
        points.sort_by_key(|p| p.0);
        let color = COLORS[i % COLORS.len()];
        let xy: Vec<(f64, f64)> = points.iter().map(|&(c, v)| (x(c), y(v))).collect();
        polyline(&mut s, &xy, color, "");
        let (lx, ly) = (left + pw + 15.0, top + 10.0 + i as f64 * 18.0);
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{connector} {op}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}
