//! What `proxystore bench` measures: a connector (plus a second one to read
//! through, for network connectors), and the raw transport baseline timed
//! beside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use proxystore::{Bytes, Connector};

use crate::{connectors, CliError};

/// A connector to benchmark plus whatever must live as long as it does.
pub(crate) struct BenchTarget {
    pub(crate) name: String,
    /// Puts go here.
    pub(crate) connector: Arc<dyn Connector>,
    /// Gets go here: the same connector, or a second one that reaches the
    /// first over the transport.
    pub(crate) reader: Arc<dyn Connector>,
    /// The transport's own loops, measured in the same run.
    pub(crate) baselines: Vec<Box<dyn RawBaseline>>,
    _tempdir: Option<tempfile::TempDir>,
    /// A server the target started (dropped after the connectors).
    _guard: Option<Box<dyn std::any::Any>>,
}

/// A baseline as a target holds it.
pub(crate) type RawBaselineBox = Box<dyn RawBaseline>;

/// A transport's plain request/reply of the same payload: the bar a
/// connector is held to.
pub(crate) trait RawBaseline {
    /// Connector name in the report (`zmq-raw`).
    fn name(&self) -> &'static str;
    /// The ops it measures.
    fn ops(&self) -> &'static [&'static str] {
        &["put", "get"]
    }
    /// Times `put` (payload to the server) or `get` (payload back).
    fn time(&self, op: &str, data: &Bytes, iterations: usize) -> Result<Vec<Duration>, CliError>;
}

/// Opens the connector named `name` for benchmarking.
pub(crate) fn open(name: &str, dir: Option<&Path>) -> Result<BenchTarget, CliError> {
    let mut tempdir = None;
    #[allow(unused_mut)] // only network connectors have something to keep alive
    let mut guard: Option<Box<dyn std::any::Any>> = None;
    type Opened = (
        Arc<dyn Connector>,
        Option<Arc<dyn Connector>>,
        Vec<Box<dyn RawBaseline>>,
    );
    let (connector, reader, baselines): Opened = match name {
        "local" => (
            Arc::new(proxystore::LocalConnector::new()),
            None,
            Vec::new(),
        ),
        #[cfg(feature = "file")]
        "file" | "shm" => {
            let dir = match (dir, name) {
                (Some(dir), "file") => dir.to_path_buf(),
                _ => {
                    let parent = if name == "shm" {
                        PathBuf::from("/dev/shm")
                    } else {
                        std::env::temp_dir()
                    };
                    let t = tempfile::Builder::new()
                        .prefix("proxystore-bench-")
                        .tempdir_in(&parent)
                        .map_err(|e| {
                            CliError::new(
                                1,
                                format!("creating a directory in {}: {e}", parent.display()),
                            )
                        })?;
                    let path = t.path().to_owned();
                    tempdir = Some(t);
                    path
                }
            };
            let config = proxystore::file::FileConfig {
                kind: name.to_owned(),
                ..proxystore::file::FileConfig::new(dir)
            };
            (
                Arc::new(proxystore::FileConnector::with_config(config)?),
                None,
                Vec::new(),
            )
        }
        #[cfg(feature = "zmq")]
        "zmq" => {
            use proxystore::ZmqConnectorExt;
            (
                Arc::new(proxystore::ZmqConnector::loopback()?),
                Some(Arc::new(proxystore::ZmqConnector::loopback()?)),
                vec![Box::new(raw::ZmqRaw)],
            )
        }
        #[cfg(feature = "redis")]
        "redis" => {
            // A throwaway server on a free loopback port, stopped with the target.
            let server = proxystore::redis::server::LocalRedisServer::start()?;
            let connector = proxystore::RedisConnector::open(&server.url())?;
            let raw = raw::RedisRaw { url: server.url() };
            guard = Some(Box::new(server));
            (Arc::new(connector), None, vec![Box::new(raw)])
        }
        #[cfg(feature = "ucx")]
        "ucx" => {
            use proxystore::ucx::{PeerConfig, ADDRESS, KIND};
            // A UCP worker is reachable over the network: a one-run secret.
            let mut config = PeerConfig::new(KIND, ADDRESS);
            config.secret = Some(format!("{:032x}", proxystore::ObjectId::random().as_u128()));
            (
                Arc::new(proxystore::UcxConnector::with_config(config.clone())?),
                Some(Arc::new(proxystore::UcxConnector::with_config(config)?)),
                raw::ucx_baselines(),
            )
        }
        other => return Err(connectors::unknown(other)),
    };
    Ok(BenchTarget {
        name: name.to_owned(),
        reader: reader.unwrap_or_else(|| Arc::clone(&connector)),
        connector,
        baselines,
        _tempdir: tempdir,
        _guard: guard,
    })
}

/// The raw transport loops.
#[cfg(any(feature = "zmq", feature = "redis", feature = "ucx"))]
mod raw {
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    use proxystore::Bytes;

    use super::RawBaseline;
    use crate::bench::{check_len, touch, WARMUP};
    use crate::CliError;

    /// Times `iterations` runs of `f` after the warm-up.
    fn timed(
        iterations: usize,
        mut f: impl FnMut() -> Result<(), CliError>,
    ) -> Result<Vec<Duration>, CliError> {
        let mut samples = Vec::with_capacity(iterations);
        for i in 0..WARMUP + iterations {
            let start = Instant::now();
            f()?;
            let t = start.elapsed();
            if i >= WARMUP {
                samples.push(t);
            }
        }
        Ok(samples)
    }

    /// Times `put` (with `put`) or `get` (with `get`, touching and checking
    /// what came back), the same way for every raw transport.
    fn time_raw(
        op: &str,
        data: &Bytes,
        iterations: usize,
        mut put: impl FnMut() -> Result<(), CliError>,
        mut get: impl FnMut() -> Result<Option<Bytes>, CliError>,
    ) -> Result<Vec<Duration>, CliError> {
        timed(iterations, || {
            if op == "put" {
                put()
            } else {
                let got = get()?;
                black_box(got.as_deref().map(touch));
                check_len(got.as_ref(), data.len())
            }
        })
    }

    /// libzmq REQ/REP on tcp loopback (`proxystore_zmq::baseline`).
    #[cfg(feature = "zmq")]
    pub(super) struct ZmqRaw;

    #[cfg(feature = "zmq")]
    impl RawBaseline for ZmqRaw {
        fn name(&self) -> &'static str {
            "zmq-raw"
        }

        fn time(
            &self,
            op: &str,
            data: &Bytes,
            iterations: usize,
        ) -> Result<Vec<Duration>, CliError> {
            let raw = proxystore::zmq::baseline::RawReqRep::start(data.clone())?;
            time_raw(
                op,
                data,
                iterations,
                || Ok(raw.put(data)?),
                || Ok(Some(raw.get()?)),
            )
        }
    }

    /// Plain SET/GET with the same client (`proxystore_redis::baseline`).
    #[cfg(feature = "redis")]
    pub(super) struct RedisRaw {
        pub(super) url: String,
    }

    #[cfg(feature = "redis")]
    impl RawBaseline for RedisRaw {
        fn name(&self) -> &'static str {
            "redis-raw"
        }

        fn time(
            &self,
            op: &str,
            data: &Bytes,
            iterations: usize,
        ) -> Result<Vec<Duration>, CliError> {
            let mut raw = proxystore::redis::baseline::RawSetGet::connect(&self.url)?;
            raw.set(data)?;
            let raw = std::cell::RefCell::new(raw);
            time_raw(
                op,
                data,
                iterations,
                || Ok(raw.borrow_mut().set(data)?),
                || Ok(raw.borrow_mut().get()?),
            )
        }
    }

    /// The same UCX active-message path with a bare responder
    /// (`proxystore_ucx::baseline`).
    #[cfg(feature = "ucx")]
    pub(super) struct UcxRaw;

    #[cfg(feature = "ucx")]
    impl RawBaseline for UcxRaw {
        fn name(&self) -> &'static str {
            "ucx-raw"
        }

        fn time(
            &self,
            op: &str,
            data: &Bytes,
            iterations: usize,
        ) -> Result<Vec<Duration>, CliError> {
            let raw = proxystore::ucx::baseline::RawAm::start(data.clone())?;
            time_raw(
                op,
                data,
                iterations,
                || Ok(raw.put(data.clone())?),
                || Ok(Some(raw.get()?)),
            )
        }
    }

    /// `ucx-raw`, plus `ucx-perftest` when UCX's own `ucx_perftest` is on
    /// PATH.
    #[cfg(feature = "ucx")]
    pub(super) fn ucx_baselines() -> Vec<Box<dyn RawBaseline>> {
        let mut out: Vec<Box<dyn RawBaseline>> = vec![Box::new(UcxRaw)];
        if let Some(tool) = find_on_path("ucx_perftest") {
            out.push(Box::new(UcxPerftest { tool }));
        }
        out
    }

    #[cfg(feature = "ucx")]
    fn find_on_path(tool: &str) -> Option<std::path::PathBuf> {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
    }

    /// UCX's own `ucx_perftest` on loopback with the same `UCX_TLS`, timing
    /// the UCP operations a get of the size needs at least: `ucp_get` of
    /// the size where gets are one-sided, else `ucp_am_lat` of the size
    /// (the reply) plus `ucp_am_lat` of 8 bytes (the request), both one-way
    /// times. One sample per run: perftest's typical time.
    #[cfg(feature = "ucx")]
    use proxystore::ucx::ONE_SIDED_MIN;

    #[cfg(feature = "ucx")]
    pub(super) struct UcxPerftest {
        tool: std::path::PathBuf,
    }

    #[cfg(feature = "ucx")]
    impl RawBaseline for UcxPerftest {
        fn name(&self) -> &'static str {
            "ucx-perftest"
        }

        fn ops(&self) -> &'static [&'static str] {
            &["get"]
        }

        fn time(
            &self,
            _op: &str,
            data: &Bytes,
            iterations: usize,
        ) -> Result<Vec<Duration>, CliError> {
            let size = data.len();
            let run = |test, size| crate::perftest::run(&self.tool, test, size, iterations);
            let typical = if proxystore::ucx::reads_one_sided() && size >= ONE_SIDED_MIN {
                run("ucp_get", size)?
            } else {
                run("ucp_am_lat", size)? + run("ucp_am_lat", 8)?
            };
            Ok(vec![typical])
        }
    }
}
