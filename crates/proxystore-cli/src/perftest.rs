//! Runs UCX's own `ucx_perftest` on loopback as a reference for `bench
//! --connector ucx`: a server and a client process on a free port, with
//! this process's environment (so the same `UCX_TLS`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use proxystore::Bytes;

use crate::error::CliError;
use crate::measure::Baseline;
use crate::tool::{find_on_path, free_port, spawn, twice, wait_limited, KillOnDrop};

/// UCX's own `ucx_perftest`, when `kind` is `ucx` and the tool is on
/// `PATH`: a reference beside the connector's own `ucx-raw`.
pub(crate) fn baselines(kind: &str) -> Vec<Box<dyn Baseline>> {
    match find_on_path("ucx_perftest") {
        Some(tool) if kind == proxystore::ucx::KIND => vec![Box::new(UcxPerftest { tool })],
        _ => Vec::new(),
    }
}

/// `ucx_perftest` on loopback with the same `UCX_TLS`, timing the UCP
/// operations a get of the size needs at least: `ucp_get` of the size
/// where gets are one-sided, else `ucp_am_lat` of the size (the reply) plus
/// `ucp_am_lat` of 8 bytes (the request), both one-way times. One sample
/// per run: perftest's typical time.
struct UcxPerftest {
    tool: std::path::PathBuf,
}

impl Baseline for UcxPerftest {
    fn name(&self) -> &str {
        "ucx-perftest"
    }

    fn ops(&self) -> &'static [&'static str] {
        &["get"]
    }

    fn time(&self, _op: &str, data: &Bytes, iterations: usize) -> Result<Vec<Duration>, CliError> {
        let size = data.len();
        let run = |test, size| run(&self.tool, test, size, iterations);
        let typical =
            if proxystore::ucx::reads_one_sided() && size >= proxystore::ucx::ONE_SIDED_MIN {
                run("ucp_get", size)?
            } else {
                run("ucp_am_lat", size)? + run("ucp_am_lat", 8)?
            };
        Ok(vec![typical])
    }
}

/// The typical time per operation `ucx_perftest -t test -s size` reports
/// (for latency tests, the one-way time), over about `iterations` runs.
fn run(tool: &Path, test: &str, size: usize, iterations: usize) -> Result<Duration, CliError> {
    // A port can be taken between choosing and binding it: try twice.
    twice(|| run_once(tool, test, size, iterations))
}

fn run_once(tool: &Path, test: &str, size: usize, iterations: usize) -> Result<Duration, CliError> {
    let port = free_port(tool)?;
    let server = KillOnDrop(spawn(
        Command::new(tool)
            .args(["-p", &port])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        tool,
    )?);
    // The server needs a moment to listen; the client retries meanwhile.
    std::thread::sleep(Duration::from_millis(300));
    let iterations = iterations.max(20).to_string();
    let size = size.to_string();
    let client = spawn(
        Command::new(tool)
            .args(["127.0.0.1", "-p", &port, "-t", test, "-s", &size])
            .args(["-n", &iterations, "-w", "10"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        tool,
    )?;
    let out = wait_limited(client, tool)?;
    drop(server);
    let text = String::from_utf8_lossy(&out.stdout);
    typical(&text).ok_or_else(|| {
        CliError::new(
            1,
            format!(
                "ucx_perftest -t {test} -s {size} gave no result: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        )
    })
}

/// The `typical lat` column (microseconds) of the `Final:` line.
fn typical(output: &str) -> Option<Duration> {
    let line = output
        .lines()
        .find(|l| l.trim_start().starts_with("Final:"))?;
    let usec: f64 = line.split_whitespace().nth(2)?.parse().ok()?;
    (usec.is_finite() && usec >= 0.0).then(|| Duration::from_secs_f64(usec / 1e6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_line_gives_the_typical_time() {
        let out = "+---+\n| Stage | # iterations | typical |\nFinal:                  2000     36.701    37.644    37.644    26564.97   26564.97       26565       26565\n";
        assert_eq!(typical(out), Some(Duration::from_secs_f64(36.701e-6)));
        assert_eq!(typical("no result\n"), None);
        assert_eq!(typical("Final: 10 nan\n"), None);
    }
}
