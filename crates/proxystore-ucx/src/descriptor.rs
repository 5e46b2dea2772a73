//! What the `ucx` kind is to the rest of the workspace: its flags, server,
//! bench setup and `info` line, declared once.

use proxystore_core::registry::{
    BenchEnv, BenchSetup, CliOption, ConnectorDescriptor, FlagUse, ServerHandle,
};
use proxystore_core::{ConnectorConfig, Result};
use proxystore_peer::peer_factory;

use crate::{libucp_version, serve, PeerConfig, UcxConnector, UcxLayer, ADDRESS, KIND};

/// The `ucx` kind: `--address` names a standalone data server puts go to;
/// `--timeout-ms` bounds every wait.
pub static DESCRIPTOR: ConnectorDescriptor =
    ConnectorDescriptor::new(KIND, Some("ucx"), "libucp (UCX)", peer_factory::<UcxLayer>)
        .with_defaults(&[("address", ADDRESS)])
        .with_cli_options(&[
            CliOption::new("address", "server", FlagUse::NotToServe).example("ucx://WORKER"),
            CliOption::new("timeout-ms", "timeout_ms", FlagUse::Optional),
        ])
        .with_serve(serve_from_config)
        .with_bench(bench)
        .with_status(|| {
            let (major, minor, release) = libucp_version();
            format!("libucp {major}.{minor}.{release}")
        })
        .with_quiet_for_cli(crate::quiet_ucx_log);

/// The kinds this crate implements.
pub static DESCRIPTORS: &[&ConnectorDescriptor] = &[&DESCRIPTOR];

/// `proxystore serve`: a data server on this process's UCP worker.
fn serve_from_config(config: &ConnectorConfig) -> Result<ServerHandle> {
    let server = serve(&PeerConfig::from_connector_config(config)?)?;
    Ok(ServerHandle::new(server.address().to_string(), server))
}

/// Two connectors sharing the bench environment's secret, else a one-run
/// one (a UCP worker is reachable over the network), beside the bare
/// active-message responder when the `baseline` feature is on.
fn bench(env: &BenchEnv) -> Result<BenchSetup> {
    let mut config = PeerConfig::new(KIND, ADDRESS);
    config.secret = Some(env.secret_or_random());
    let setup = BenchSetup::new(UcxConnector::with_config(config.clone())?)
        .with_reader(UcxConnector::with_config(config)?);
    #[cfg(feature = "baseline")]
    let setup = setup.with_baseline(proxystore_core::registry::raw_baseline(
        "ucx-raw",
        |payload| crate::baseline::RawAm::start(payload.clone()),
    ));
    Ok(setup)
}
