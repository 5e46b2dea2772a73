//! Building connectors from command-line flags, through each connector's
//! descriptor: the flags it reads become its `ConnectorConfig`, and
//! `connector_from_config` builds it. Nothing here names a connector kind
//! (except that `local` is the one-process one, which its descriptor says).

use std::fmt;
use std::path::PathBuf;

use proxystore::registry::{self, ConnectorDescriptor};
use proxystore::{Connector, ConnectorConfig};

use crate::error::CliError;

/// Which connector to use and how to reach it.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnectorArgs {
    /// Connector kind (`proxystore info` lists this build's; local lives in
    /// one process and mpi in one MPI job, so only `bench` takes them).
    #[arg(long, default_value = "file")]
    pub(crate) connector: String,
    /// Directory of the file connector (default for shm: `/dev/shm/proxystore-<uid>`).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// zmq, ucx, ofi: address of the data server (`proxystore serve`) that
    /// puts go to (zmq: also what `serve` binds, e.g. tcp://127.0.0.1:5555;
    /// ucx and ofi serve their own endpoint and print it).
    #[arg(long)]
    pub(crate) address: Option<String>,
    /// redis: the server, e.g. redis://127.0.0.1:6379/0 or unix:///path
    /// (password from PROXYSTORE_REDIS_PASSWORD).
    #[arg(long)]
    pub(crate) url: Option<String>,
    /// daos: pool label or UUID (default: DAOS_POOL), or mock://NAME for
    /// the in-process mock.
    #[arg(long)]
    pub(crate) pool: Option<String>,
    /// daos: container label or UUID (default: DAOS_CONT).
    #[arg(long)]
    pub(crate) container: Option<String>,
    /// daos: namespace (one DAOS KV object per namespace; default
    /// proxystore).
    #[arg(long)]
    pub(crate) namespace: Option<String>,
    /// Network connectors: how long to wait for a peer, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) timeout_ms: u64,
    /// Any other connector config option, as KEY=VALUE (repeatable; see
    /// docs/connectors.md for each connector's options).
    #[arg(long = "option", value_name = "KEY=VALUE")]
    pub(crate) options: Vec<String>,
}

impl fmt::Display for ConnectorArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match (&self.dir, &self.address, &self.url, &self.pool) {
            (Some(dir), _, _, _) => dir.display().to_string(),
            (None, Some(address), _, _) => address.clone(),
            (None, None, Some(url), _) => url.clone(),
            (None, None, None, Some(pool)) => format!("pool {pool}"),
            (None, None, None, None) => return write!(f, "{} connector", self.connector),
        };
        write!(f, "{} connector at {place}", self.connector)
    }
}

impl ConnectorArgs {
    /// The value given for flag `--name`, if any.
    fn flag(&self, name: &str) -> Option<String> {
        match name {
            "dir" => self.dir.as_ref().map(|d| d.display().to_string()),
            "address" => self.address.clone(),
            "url" => self.url.clone(),
            "pool" => self.pool.clone(),
            "container" => self.container.clone(),
            "namespace" => self.namespace.clone(),
            "timeout-ms" => Some(self.timeout_ms.to_string()),
            _ => None,
        }
    }

    /// The connector's descriptor and the config the flags give it;
    /// `serving`: for `proxystore serve`, which may need more flags.
    fn config(
        &self,
        serving: bool,
    ) -> Result<(&'static ConnectorDescriptor, ConnectorConfig), CliError> {
        let descriptor = descriptor(&self.connector)?;
        let flag = |name: &str| self.flag(name);
        if let Some(missing) = descriptor.missing_flag(serving, &flag) {
            return Err(CliError::new(
                2,
                format!(
                    "{}--connector {} needs --{} {}",
                    if serving { "serve " } else { "" },
                    descriptor.kind,
                    missing.flag,
                    missing.example
                ),
            ));
        }
        let mut config = descriptor.config_from_flags(&flag)?;
        for option in &self.options {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| CliError::new(2, format!("--option '{option}' is not KEY=VALUE")))?;
            config = config.with(key.trim(), value);
        }
        Ok((descriptor, config))
    }

    /// Opens a connector that other processes can reach (for put/get/...).
    pub(crate) fn open_shared(&self) -> Result<Box<dyn Connector>, CliError> {
        if let Some(scope) = descriptor(&self.connector)?.confined_to {
            return Err(CliError::new(
                2,
                format!(
                    "the {} connector's keys are valid only inside {scope}, which a shell command is not part of; use a connector other processes reach, e.g. --connector file",
                    self.connector
                ),
            ));
        }
        let (_, config) = self.config(false)?;
        Ok(proxystore::connector_from_config(&config)?)
    }

    /// Runs a standalone data server in the foreground until SIGINT or
    /// SIGTERM (`proxystore serve`).
    pub(crate) fn serve(&self) -> Result<(), CliError> {
        let serve = descriptor(&self.connector)?.serve.ok_or_else(|| {
            CliError::new(
                2,
                format!("the {} connector has no server to run", self.connector),
            )
        })?;
        let (descriptor, config) = self.config(true)?;
        if let Some(option) = descriptor.flag_not_to_serve(&|name: &str| self.flag(name)) {
            return Err(CliError::new(
                2,
                format!(
                    "serve --connector {} serves this process's own endpoint and prints its address; --{} names a server that put and get reach, so serve does not take it",
                    descriptor.kind, option.flag
                ),
            ));
        }
        // Block the signals before any thread starts, so they all inherit
        // the mask and only `wait` sees them.
        let signals = crate::signals::StopSignals::block()?;
        let server = serve(&config)?;
        println!(
            "proxystore: {} data server on {} (Ctrl-C stops)",
            descriptor.kind,
            server.address()
        );
        let signal = signals.wait()?;
        drop(server);
        eprintln!("proxystore: stopped on {signal}");
        Ok(())
    }
}

/// The descriptor of the connector named `name`, or the error for a name
/// this build does not know.
pub(crate) fn descriptor(name: &str) -> Result<&'static ConnectorDescriptor, CliError> {
    registry::descriptor(name).ok_or_else(|| {
        let message = unknown(
            name,
            &proxystore::compiled_connectors(),
            proxystore::CONNECTOR_FEATURES,
        );
        CliError::new(2, message)
    })
}

/// Why `name` is not a connector of this build (`compiled`), and, for one
/// whose Cargo feature (`features`) the build left out, how to get it.
fn unknown(name: &str, compiled: &[&str], features: &[&str]) -> String {
    let has = compiled.join(", ");
    if features.contains(&name) {
        format!(
            "the {name} connector is not in this build (it has: {has}); rebuild with its Cargo feature: cargo install --path crates/proxystore-cli --features {name}"
        )
    } else {
        format!("unknown connector '{name}' (this build has: {has})")
    }
}

/// The text of `proxystore info`: every compiled-in connector from its
/// descriptor, the connector features this build left out, and the
/// connectors that are only planned.
pub(crate) fn info() -> String {
    let compiled = proxystore::compiled_descriptors();
    let mut out = format!("proxystore {}\nconnectors:\n", env!("CARGO_PKG_VERSION"));
    for d in &compiled {
        let status = match d.status {
            Some(status) => format!("compiled in, {}", status()),
            None => "compiled in".to_owned(),
        };
        out.push_str(&format!("  {:<6} {status:<44} needs {}\n", d.kind, d.needs));
    }
    for feature in proxystore::CONNECTOR_FEATURES {
        if !compiled.iter().any(|d| d.feature == Some(feature)) {
            let status = format!("not compiled (Cargo feature `{feature}`)");
            out.push_str(&format!("  {feature:<6} {status}\n"));
        }
    }
    if !proxystore::PLANNED_CONNECTORS.is_empty() {
        out.push_str("planned, not implemented (no Cargo feature builds them yet):\n");
        for (kind, needs) in proxystore::PLANNED_CONNECTORS {
            out.push_str(&format!("  {kind:<6} will need {needs}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::unknown;

    #[test]
    fn a_left_out_connector_names_the_feature_to_build_with() {
        let m = unknown("zmq", &["local", "file", "shm"], &["file", "zmq"]);
        assert!(m.contains("--features zmq"), "{m}");
        assert!(m.contains("it has: local, file, shm"), "{m}");
        let m = unknown("nope", &["local"], &["file", "zmq"]);
        assert_eq!(m, "unknown connector 'nope' (this build has: local)");
    }
}
