//! `proxystore plot`: draws benchmark records from JSON files (this
//! binary's `--json`, or a script's that writes the same fields, such as
//! `benches/python/bench_dask.py`) as one SVG, so figures are plotted
//! without a plotting library.

use std::path::PathBuf;

use crate::error::CliError;
use crate::measure::Record;
use crate::report::{self, Metric};

/// Arguments of `proxystore plot`.
#[derive(Debug, clap::Args)]
pub(crate) struct PlotArgs {
    /// JSON files of records (`connector`, `op`, `size_bytes`,
    /// `iterations`, `median_ns`, `p99_ns`, `gib_per_s`), all drawn together.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The SVG file to write.
    #[arg(long, short)]
    out: PathBuf,
    /// What the y axis shows.
    #[arg(long, value_enum, default_value = "time")]
    metric: Metric,
    /// Only records of this op (e.g. `task`, `get`).
    #[arg(long)]
    op: Option<String>,
    /// Only records whose connector is one of these (comma separated).
    #[arg(long, value_delimiter = ',')]
    connectors: Vec<String>,
    /// The plot's title.
    #[arg(long, default_value = "median per payload size")]
    title: String,
}

/// The records of one JSON file: a list, as `--json` writes it.
fn read(path: &std::path::Path) -> Result<Vec<Record>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::new(1, format!("reading {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        CliError::new(
            1,
            format!("{}: not a list of benchmark records: {e}", path.display()),
        )
    })
}

/// Runs `proxystore plot`.
pub(crate) fn run(args: &PlotArgs) -> Result<(), CliError> {
    let mut records = Vec::new();
    for file in &args.files {
        records.extend(read(file)?);
    }
    records.retain(|r| {
        args.op.as_ref().is_none_or(|op| &r.op == op)
            && (args.connectors.is_empty() || args.connectors.contains(&r.connector))
    });
    if records.is_empty() {
        return Err(CliError::new(
            1,
            "no records left to plot (check --op and --connectors)",
        ));
    }
    let svg = report::svg_of(&records, args.metric, &args.title);
    std::fs::write(&args.out, svg)
        .map_err(|e| CliError::new(1, format!("writing {}: {e}", args.out.display())))?;
    println!(
        "{} records plotted to {}",
        records.len(),
        args.out.display()
    );
    Ok(())
}
