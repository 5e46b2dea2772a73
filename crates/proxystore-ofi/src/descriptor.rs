//! What the `ofi` kind is to the rest of the workspace: its flags, server,
//! bench setup and `info` line, declared once.

use std::sync::Arc;

use proxystore_core::registry::{
    self, BenchEnv, BenchSetup, CliOption, ConnectorDescriptor, FlagUse, ServerHandle,
};
use proxystore_core::{ConnectorConfig, Result};
use proxystore_peer::peer_factory;

use crate::{OfiConnector, OfiLayer, PeerConfig, KIND};

/// The endpoint a connector serves on by default: libfabric's choice of
/// provider (which honours `FI_PROVIDER`).
pub const ADDRESS: &str = "ofi://";

/// The `ofi` kind: `--address` names a standalone data server puts go to
/// (as for ucx), `--timeout-ms` bounds every wait; the provider is chosen
/// with `FI_PROVIDER` or an endpoint `--option address=ofi://<provider>/`.
pub static DESCRIPTOR: ConnectorDescriptor =
    ConnectorDescriptor::new(KIND, Some("ofi"), "libfabric", peer_factory::<OfiLayer>)
        .with_defaults(&[("address", ADDRESS)])
        .with_cli_options(&[
            CliOption::new("address", "server", FlagUse::NotToServe).example("ofi://PROVIDER/ADDR"),
            CliOption::new("timeout-ms", "timeout_ms", FlagUse::Optional),
        ])
        .with_serve(serve_from_config)
        .with_bench(bench)
        .with_status(status);

/// The kinds this crate implements.
pub static DESCRIPTORS: &[&ConnectorDescriptor] = &[&DESCRIPTOR];

/// Registers the `ofi` kind so proxies naming it resolve in this process.
/// Idempotent; `OfiConnector::with_config` registers the kind too.
pub fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| registry::register(&DESCRIPTOR));
}

/// `proxystore serve`: a data server on this process's endpoint.
fn serve_from_config(config: &ConnectorConfig) -> Result<ServerHandle> {
    let server = proxystore_peer::serve(
        Arc::new(OfiLayer::default()),
        &PeerConfig::from_connector_config(config)?,
    )?;
    Ok(ServerHandle::new(server.address().to_string(), server))
}

/// Two connectors sharing the bench environment's secret, else a one-run
/// one (an endpoint is reachable over the network), the second reading
/// from the first over the provider, beside the bare loops when the
/// `baseline` feature is on: `ofi-raw` (gets are one `fi_read`) and
/// `ofi-raw-msg` (gets are a request and a reply carrying the payload, the
/// path without one-sided reads).
fn bench(env: &BenchEnv) -> Result<BenchSetup> {
    let mut config = PeerConfig::new(KIND, ADDRESS);
    config.secret = Some(env.secret_or_random());
    let setup = BenchSetup::new(OfiConnector::with_config(config.clone())?)
        .with_reader(OfiConnector::with_config(config)?);
    #[cfg(feature = "baseline")]
    let setup = {
        use crate::baseline::{MessageGets, RawRead};
        setup
            .with_baseline(registry::raw_baseline("ofi-raw", |payload| {
                RawRead::start(None, payload.clone())
            }))
            .with_baseline(registry::raw_baseline("ofi-raw-msg", |payload| {
                RawRead::start(None, payload.clone()).map(MessageGets)
            }))
    };
    Ok(setup)
}

/// The linked libfabric's version and the provider `ofi://` gets here,
/// for `proxystore info`.
fn status() -> String {
    // SAFETY: fi_version has no arguments and no preconditions.
    let v = unsafe { libfabric_sys::fi_version() };
    let version = format!("libfabric {}.{}", v >> 16, v & 0xffff);
    match crate::fabric::default_provider() {
        Some((provider, rma)) => {
            let reads = match (rma, crate::reads_one_sided()) {
                (false, _) => "no FI_RMA: gets carry the bytes",
                (true, true) => "one-sided reads on",
                (true, false) => "one-sided reads off (PROXYSTORE_OFI_ONE_SIDED)",
            };
            format!("{version}, provider {provider} ({reads})")
        }
        None => format!("{version}, no provider (see fi_info)"),
    }
}
