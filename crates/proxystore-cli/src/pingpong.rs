//! Runs libfabric's own `fi_pingpong` (Debian's libfabric-bin) on
//! loopback as a reference for `bench --connector ofi`: a server and a
//! client process on a free control port, RDM endpoints of the provider
//! `FI_PROVIDER` names, with this process's environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use proxystore::Bytes;

use crate::error::CliError;
use crate::measure::Baseline;
use crate::tool::{find_on_path, free_port, name, spawn, twice, wait_limited, KillOnDrop};

/// libfabric's own `fi_pingpong`, when `kind` is `ofi` and the tool is on
/// `PATH`.
pub(crate) fn baselines(kind: &str) -> Vec<Box<dyn Baseline>> {
    match find_on_path("fi_pingpong") {
        Some(tool) if kind == proxystore::ofi::KIND => {
            let provider = provider(std::env::var("FI_PROVIDER").ok().as_deref());
            vec![Box::new(FiPingpong { tool, provider })]
        }
        _ => Vec::new(),
    }
}

/// The bytes of the request a get sends before its reply.
const REQUEST: usize = 8;

/// Round trips before the timed ones. fi_pingpong has no warm-up: its
/// timer runs from the first round trip, which also sets up the
/// connection (about 20 ms over `tcp;ofi_rxm` on loopback).
const WARMUP: usize = 10;

/// How long the server may take to listen on its control port.
const LISTEN_LIMIT: Duration = Duration::from_secs(10);

/// `fi_pingpong -e rdm` on loopback (`-p` as [`provider`] says), timing
/// the messages a get needs at least: one of the size (the reply) plus one
/// of 8 bytes (the request), each its one-way time, i.e. half a round trip
/// of fi_pingpong at that size (each side sends the size and waits for the
/// other's). fi_pingpong reports only a run's mean including its first,
/// connecting round trip, so each one-way time is the difference of two
/// runs: (time of [`WARMUP`] + n round trips - time of [`WARMUP`]) / 2n
/// (n from [`rounds`]). One sample per call. fi_pingpong has only
/// two-sided messages: where the connector reads one-sided (fi_read), this
/// is still the message-based bound.
struct FiPingpong {
    tool: PathBuf,
    provider: Option<String>,
}

impl Baseline for FiPingpong {
    fn name(&self) -> &str {
        "ofi-pingpong"
    }

    fn ops(&self) -> &'static [&'static str] {
        &["get"]
    }

    fn time(&self, _op: &str, data: &Bytes, iterations: usize) -> Result<Vec<Duration>, CliError> {
        let provider = self.provider.as_deref();
        let one_way = |size| twice(|| one_way(&self.tool, provider, size, iterations));
        Ok(vec![one_way(data.len())? + one_way(REQUEST)?])
    }
}

/// The `-p` to pass: `FI_PROVIDER` when it names one provider (`shm`,
/// `tcp`, `tcp;ofi_rxm`); none when it is a list or an exclusion
/// (`tcp,shm`, `^shm`), so libfabric chooses under the same filter as the
/// connector's `ofi://`; `tcp` when it is unset. For RDM endpoints
/// libfabric 1.17 serves `-p tcp` and `-p "tcp;ofi_rxm"` alike, with
/// `tcp;ofi_rxm`.
fn provider(fi_provider: Option<&str>) -> Option<String> {
    match fi_provider.map(str::trim) {
        None | Some("") => Some("tcp".to_owned()),
        Some(p) if p.contains(',') || p.starts_with('^') => None,
        Some(p) => Some(p.to_owned()),
    }
}

/// Timed round trips for a message of `size`: the bench's `iterations`,
/// but at least enough to move 64 MiB each way, within [20, 1000], so the
/// two runs' difference is well above their noise.
fn rounds(size: usize, iterations: usize) -> usize {
    iterations.max(((64usize << 20) / size.max(1)).clamp(20, 1000))
}

/// The one-way time of a message of `size` after [`WARMUP`] round trips.
fn one_way(
    tool: &Path,
    provider: Option<&str>,
    size: usize,
    iterations: usize,
) -> Result<Duration, CliError> {
    let n = rounds(size, iterations);
    let elapsed =
        |rounds| Ok::<_, CliError>(run(tool, provider, size, rounds)? * 2.0 * rounds as f64);
    // On a busy machine one pair of runs can come out with the longer run
    // no slower; measure the pair again before giving up.
    for _ in 0..3 {
        let warm = elapsed(WARMUP)?;
        let usec = (elapsed(WARMUP + n)? - warm) / (2.0 * n as f64);
        if usec.is_finite() && usec > 0.0 {
            return Ok(Duration::from_secs_f64(usec / 1e6));
        }
    }
    Err(CliError::new(
        1,
        format!("fi_pingpong -S {size}: {n} more round trips took no longer, three times (a noisy machine?)"),
    ))
}

/// The microseconds per transfer (half a round trip) of one fi_pingpong
/// run of `rounds` round trips of `size`, connection set-up included.
fn run(tool: &Path, provider: Option<&str>, size: usize, rounds: usize) -> Result<f64, CliError> {
    let port = free_port(tool)?;
    let mut args = vec!["-e".to_owned(), "rdm".to_owned()];
    if let Some(p) = provider {
        args.extend(["-p".to_owned(), p.to_owned()]);
    }
    args.extend(["-S", &size.to_string(), "-I", &rounds.to_string()].map(str::to_owned));
    let mut server = KillOnDrop(spawn(
        Command::new(tool)
            .args(&args)
            .args(["-B", &port])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        tool,
    )?);
    let out = client(tool, &args, &port, &mut server)?;
    drop(server);
    per_transfer(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| {
        CliError::new(
            1,
            format!(
                "{} {} gave no result: {}",
                name(tool),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        )
    })
}

/// The client's output. fi_pingpong's client does not retry its control
/// connection, so it is started again while it could not connect and the
/// server is still starting, for up to [`LISTEN_LIMIT`].
fn client(
    tool: &Path,
    args: &[String],
    port: &str,
    server: &mut KillOnDrop,
) -> Result<Output, CliError> {
    let start = Instant::now();
    loop {
        let child = spawn(
            Command::new(tool)
                .args(args)
                .args(["-P", port, "127.0.0.1"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
            tool,
        )?;
        let out = wait_limited(child, tool)?;
        let refused = !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("failed to connect");
        let server_up = matches!(server.0.try_wait(), Ok(None));
        if !refused || !server_up || start.elapsed() > LISTEN_LIMIT {
            return Ok(out);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `usec/xfer` column of fi_pingpong's result (the line after its
/// header): the run's time over its transfers, two per round trip. `None`
/// unless `#ack` says every message sent came back (`=N`).
fn per_transfer(output: &str) -> Option<f64> {
    let mut lines = output.lines();
    let header: Vec<&str> = lines
        .find(|l| l.split_whitespace().any(|w| w == "usec/xfer"))?
        .split_whitespace()
        .collect();
    let row: Vec<&str> = lines.next()?.split_whitespace().collect();
    let column = |name| {
        header
            .iter()
            .position(|&w| w == name)
            .and_then(|i| row.get(i))
    };
    if !column("#ack")?.starts_with('=') {
        return None;
    }
    let usec: f64 = column("usec/xfer")?.parse().ok()?;
    (usec.is_finite() && usec > 0.0).then_some(usec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_line_gives_the_time_per_transfer() {
        // Captured: fi_pingpong -e rdm -p tcp -S 1048576 -I 100 127.0.0.1
        // (libfabric 1.17, loopback).
        let out =
            "bytes   #sent   #ack     total       time     MB/sec    usec/xfer   Mxfers/sec\n\
                   1m      100     =100     200m        0.20s   1031.21    1016.84       0.00\n";
        assert_eq!(per_transfer(out), Some(1016.84));
        let lost = out.replace("=100", "-3");
        assert_eq!(per_transfer(&lost), None);
        assert_eq!(
            per_transfer("[error] util/pingpong.c:408 : failed to connect\n"),
            None
        );
        let header_only = out.lines().next().unwrap();
        assert_eq!(per_transfer(header_only), None);
    }

    #[test]
    fn the_provider_follows_fi_provider() {
        assert_eq!(provider(None).as_deref(), Some("tcp"));
        assert_eq!(provider(Some("")).as_deref(), Some("tcp"));
        assert_eq!(provider(Some("shm")).as_deref(), Some("shm"));
        assert_eq!(
            provider(Some("tcp;ofi_rxm")).as_deref(),
            Some("tcp;ofi_rxm")
        );
        assert_eq!(provider(Some("tcp,shm")), None);
        assert_eq!(provider(Some("^shm")), None);
    }

    #[test]
    fn small_messages_get_enough_round_trips() {
        assert_eq!(rounds(8, 3), 1000);
        assert_eq!(rounds(1 << 20, 3), 64);
        assert_eq!(rounds(1 << 20, 256), 256);
        assert_eq!(rounds(1 << 30, 4), 20);
    }
}
