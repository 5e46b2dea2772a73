//! Printing and plotting benchmark records.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::error::CliError;
use crate::measure::Record;

/// Writes `records` as pretty JSON to `json` and the plot `svg` draws to
/// `plot`, for whichever of the two paths the user gave.
pub(crate) fn write_files<R: serde::Serialize + ?Sized>(
    json: Option<&std::path::Path>,
    plot: Option<&std::path::Path>,
    records: &R,
    svg: impl FnOnce() -> String,
) -> Result<(), CliError> {
    let write = |path: &std::path::Path, text: String| {
        std::fs::write(path, text)
            .map_err(|e| CliError::new(1, format!("writing {}: {e}", path.display())))
    };
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(records)
            .map_err(|e| CliError::new(1, format!("encoding results: {e}")))?;
        write(path, text + "\n")?;
    }
    if let Some(path) = plot {
        write(path, svg())?;
    }
    Ok(())
}

/// `1KiB`, `64MiB`, or plain bytes.
pub(crate) fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        // Decimal sizes (the farm's and bench_dask.py's 10 kB .. 100 MB).
        b if b >= 1_000_000 && b % 1_000_000 == 0 => format!("{}MB", b / 1_000_000),
        b if b >= 1_000 && b % 1_000 == 0 => format!("{}kB", b / 1_000),
        b => format!("{b}B"),
    }
}

pub(crate) fn human_time(ns: u64) -> String {
    match ns {
        n if n >= 1_000_000_000 => format!("{:.2} s", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2} ms", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.2} us", n as f64 / 1e3),
        n => format!("{n} ns"),
    }
}

/// The results table; the last column is the median time over the same
/// size's memcpy median (below 1 means faster than copying the bytes once).
pub(crate) fn table(records: &[Record]) -> String {
    let memcpy: BTreeMap<u64, u64> = records
        .iter()
        .filter(|r| r.connector == "memcpy")
        .map(|r| (r.size_bytes, r.median_ns))
        .collect();
    // As wide as the longest name (`ofi-pingpong`), at least 10.
    let w = records
        .iter()
        .map(|r| r.connector.len())
        .fold(10, usize::max);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<w$} {:<10} {:>7} {:>11} {:>11} {:>10} {:>12}",
        "connector", "op", "size", "median", "p99", "GiB/s", "time/memcpy"
    );
    for r in records {
        let ratio = memcpy.get(&r.size_bytes).filter(|&&m| m > 0).map_or_else(
            || "-".to_owned(),
            |&m| format!("{:.2}x", r.median_ns as f64 / m as f64),
        );
        let _ = writeln!(
            out,
            "{:<w$} {:<10} {:>7} {:>11} {:>11} {:>10.2} {:>12}",
            r.connector,
            r.op,
            human_size(r.size_bytes),
            human_time(r.median_ns),
            human_time(r.p99_ns),
            r.gib_per_s,
            ratio
        );
    }
    out
}

pub(crate) const COLORS: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// One series of a plot: a line through `points` (SVG coordinates) in
/// `color`, with a dot on each; `dash` is extra attributes (a dash pattern).
pub(crate) fn polyline(s: &mut String, points: &[(f64, f64)], color: &str, dash: &str) {
    let pts: Vec<String> = points
        .iter()
        .map(|(px, py)| format!("{px:.1},{py:.1}"))
        .collect();
    let _ = writeln!(
        s,
        r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
        pts.join(" ")
    );
    for (px, py) in points {
        let _ = writeln!(
            s,
            r#"<circle cx="{px:.1}" cy="{py:.1}" r="3" fill="{color}"/>"#
        );
    }
}

/// What a plot's y axis shows (log scale).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Metric {
    /// The median bandwidth, GiB/s.
    Bandwidth,
    /// The median time per operation.
    Time,
}

impl Metric {
    fn value(self, r: &Record) -> f64 {
        match self {
            Metric::Bandwidth => r.gib_per_s,
            Metric::Time => r.median_ns as f64,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Metric::Bandwidth => "GiB/s (median)",
            Metric::Time => "time per operation (median)",
        }
    }

    fn tick(self, v: f64) -> String {
        match self {
            Metric::Bandwidth => format_gib(v),
            Metric::Time => human_time(v.round() as u64),
        }
    }
}

/// Bandwidth (GiB/s, log scale) against size (log scale), one line per
/// connector and op, as a standalone SVG document.
pub(crate) fn svg(records: &[Record]) -> String {
    svg_of(
        records,
        Metric::Bandwidth,
        "proxystore bench: bandwidth by payload size",
    )
}

/// `metric` (log scale) against size (log scale), one line per connector
/// and op, as a standalone SVG document titled `title`.
pub(crate) fn svg_of(records: &[Record], metric: Metric, title: &str) -> String {
    let (w, h, left, right, top, bottom) = (900.0, 560.0, 80.0, 260.0, 40.0, 60.0);
    let finite: Vec<&Record> = records
        .iter()
        .filter(|r| metric.value(r).is_finite() && metric.value(r) > 0.0)
        .collect();
    let lg = |v: f64| v.log10();
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for r in &finite {
        xmin = xmin.min(lg(r.size_bytes as f64));
        xmax = xmax.max(lg(r.size_bytes as f64));
        ymin = ymin.min(lg(metric.value(r)).floor());
        ymax = ymax.max(lg(metric.value(r)).ceil());
    }
    if finite.is_empty() {
        (xmin, xmax, ymin, ymax) = (0.0, 1.0, 0.0, 1.0);
    }
    if xmax <= xmin {
        xmax = xmin + 1.0;
    }
    if ymax <= ymin {
        ymax = ymin + 1.0;
    }
    let pw = w - left - right;
    let ph = h - top - bottom;
    let x = |size: f64| left + (lg(size) - xmin) / (xmax - xmin) * pw;
    let y = |gib: f64| top + ph - (lg(gib) - ymin) / (ymax - ymin) * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" font-size="16" text-anchor="middle">{}</text>"#,
        left + pw / 2.0,
        escape(title)
    );
    // Y grid: one line per decade.
    let mut decade = ymin as i32;
    while decade <= ymax as i32 {
        let yy = y(10f64.powi(decade));
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/>"##,
            left + pw
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            yy + 4.0,
            metric.tick(10f64.powi(decade))
        );
        decade += 1;
    }
    // X ticks: the measured sizes.
    let mut sizes: Vec<u64> = finite.iter().map(|r| r.size_bytes).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for size in &sizes {
        let xx = x(*size as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/>"##,
            top + ph
        );
        let _ = writeln!(
            s,
            r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            top + ph + 18.0,
            human_size(*size)
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">payload size</text>"#,
        left + pw / 2.0,
        h - 15.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(20,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        top + ph / 2.0,
        metric.label()
    );
    // One polyline per (connector, op).
    let mut series: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for r in &finite {
        series
            .entry((r.connector.clone(), r.op.clone()))
            .or_default()
            .push((r.size_bytes as f64, metric.value(r)));
    }
    for (i, ((connector, op), mut points)) in series.into_iter().enumerate() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = COLORS[i % COLORS.len()];
        let dash = match op.as_str() {
            "get" => r#" stroke-dasharray="6 3""#,
            "roundtrip" => r#" stroke-dasharray="2 2""#,
            "get-owned" => r#" stroke-dasharray="8 2 2 2""#,
            "get-view" => r#" stroke-dasharray="1 3""#,
            _ => "",
        };
        let xy: Vec<(f64, f64)> = points.iter().map(|&(sz, g)| (x(sz), y(g))).collect();
        polyline(&mut s, &xy, color, dash);
        let ly = top + 10.0 + i as f64 * 18.0;
        let lx = left + pw + 15.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/>"#,
            lx + 24.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}">{} {}</text>"#,
            lx + 30.0,
            ly + 4.0,
            escape(&connector),
            escape(&op)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// `text` safe inside an SVG element.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn format_gib(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(connector: &str, op: &str, size: u64, median_ns: u64) -> Record {
        Record {
            connector: connector.into(),
            op: op.into(),
            size_bytes: size,
            iterations: 10,
            median_ns,
            p99_ns: median_ns * 2,
            gib_per_s: size as f64 / (median_ns as f64 / 1e9) / (1u64 << 30) as f64,
        }
    }

    #[test]
    fn table_reports_ratio_to_memcpy() {
        let t = table(&[
            rec("memcpy", "copy", 1024, 100),
            rec("local", "get", 1024, 50),
        ]);
        assert!(t.lines().nth(2).unwrap().ends_with("0.50x"), "{t}");
    }

    #[test]
    fn long_connector_names_keep_the_columns_aligned() {
        let t = table(&[
            rec("memcpy", "copy", 1024, 100),
            rec("ofi-pingpong", "get", 1024, 50),
        ]);
        // Where the op column starts on each line: after the first word
        // and the spaces that follow it.
        let starts: Vec<usize> = t
            .lines()
            .map(|l| {
                let rest = l.split_once(' ').unwrap().1;
                l.len() - rest.trim_start().len()
            })
            .collect();
        assert_eq!(starts, vec![13; 3], "{t}");
    }

    #[test]
    fn svg_has_one_line_per_series() {
        let s = svg(&[
            rec("memcpy", "copy", 1024, 100),
            rec("memcpy", "copy", 1 << 20, 10_000),
            rec("local", "get", 1024, 50),
            rec("local", "get", 1 << 20, 60),
        ]);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("local get") && s.contains("memcpy copy"));
    }

    #[test]
    fn a_time_plot_puts_slower_records_higher_and_escapes_names() {
        let s = svg_of(
            &[
                rec("fast<1>", "task", 10_000, 1_000_000),
                rec("fast<1>", "task", 100_000_000, 10_000_000),
                rec("slow", "task", 10_000, 100_000_000),
                rec("slow", "task", 100_000_000, 1_000_000_000),
            ],
            Metric::Time,
            "Dask & proxies",
        );
        assert!(s.contains("Dask &amp; proxies") && s.contains("fast&lt;1&gt; task"));
        assert!(s.contains("10kB") && s.contains("100MB"), "decimal sizes");
        assert!(s.contains("time per operation"));
        // The first point of each series: slower is lower on the page's y.
        let first_y = |series: usize| -> f64 {
            let line = s
                .lines()
                .filter(|l| l.starts_with("<polyline"))
                .nth(series)
                .unwrap();
            let pts = line.split('"').nth(1).unwrap();
            pts.split(' ')
                .next()
                .unwrap()
                .split(',')
                .nth(1)
                .unwrap()
                .parse()
                .unwrap()
        };
        assert!(first_y(1) < first_y(0), "slow is drawn above fast");
    }
}
