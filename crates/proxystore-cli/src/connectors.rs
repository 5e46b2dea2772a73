//! Building connectors from command-line flags. Each connector adds its
//! flags and its arm here, once, for every subcommand.

use std::fmt;
use std::path::PathBuf;

use proxystore::Connector;

use crate::CliError;

/// Which connector to use and how to reach it.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnectorArgs {
    /// Connector: file, shm, zmq, redis or ucx (local lives in one process, so only `bench` takes it).
    #[arg(long, default_value = "file")]
    pub(crate) connector: String,
    /// Directory of the file connector (default for shm: `/dev/shm/proxystore-<uid>`).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// zmq, ucx: address of the data server (`proxystore serve`) that puts
    /// go to (zmq: also what `serve` binds; e.g. tcp://127.0.0.1:5555).
    #[arg(long)]
    pub(crate) address: Option<String>,
    /// redis: the server, e.g. redis://127.0.0.1:6379/0 or unix:///path
    /// (password from PROXYSTORE_REDIS_PASSWORD).
    #[arg(long)]
    pub(crate) url: Option<String>,
    /// Network connectors: how long to wait for a peer, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) timeout_ms: u64,
}

impl fmt::Display for ConnectorArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match (&self.dir, &self.address, &self.url) {
            (Some(dir), _, _) => dir.display().to_string(),
            (None, Some(address), _) => address.clone(),
            (None, None, Some(url)) => url.clone(),
            (None, None, None) => return write!(f, "{} connector", self.connector),
        };
        write!(f, "{} connector at {place}", self.connector)
    }
}

impl ConnectorArgs {
    /// Opens a connector that other processes can reach (for put/get/...).
    pub(crate) fn open_shared(&self) -> Result<Box<dyn Connector>, CliError> {
        match self.connector.as_str() {
            "local" => Err(CliError::new(
                1,
                "the local connector keeps data inside one process; use --connector file or shm",
            )),
            "file" => {
                let dir = self
                    .dir
                    .clone()
                    .ok_or_else(|| CliError::new(2, "--connector file needs --dir DIR"))?;
                Ok(Box::new(proxystore::FileConnector::new(dir)?))
            }
            "shm" => {
                let mut config = proxystore::file::FileConfig::shm();
                if let Some(dir) = &self.dir {
                    config.dir = dir.clone();
                }
                Ok(Box::new(proxystore::FileConnector::with_config(config)?))
            }
            #[cfg(feature = "zmq")]
            "zmq" => {
                use proxystore::zmq::{PeerConfig, KIND};
                // This process exits after one command, so its puts go to
                // the standalone server; gets follow the owner in the key.
                let mut config = PeerConfig::new(KIND, proxystore::zmq::DEFAULT_ADDRESS);
                config.server = self.address.clone();
                config.timeout = std::time::Duration::from_millis(self.timeout_ms);
                Ok(Box::new(proxystore::ZmqConnector::with_config(config)?))
            }
            #[cfg(feature = "redis")]
            "redis" => {
                let url = self.url.clone().ok_or_else(|| {
                    CliError::new(2, "--connector redis needs --url redis://HOST:PORT")
                })?;
                let mut config = proxystore::RedisConfig::new(url);
                config.timeout = std::time::Duration::from_millis(self.timeout_ms);
                Ok(Box::new(proxystore::RedisConnector::with_config(config)?))
            }
            #[cfg(feature = "ucx")]
            "ucx" => {
                use proxystore::ucx::{PeerConfig, ADDRESS, KIND};
                let mut config = PeerConfig::new(KIND, ADDRESS);
                config.server = self.address.clone();
                config.timeout = std::time::Duration::from_millis(self.timeout_ms);
                Ok(Box::new(proxystore::UcxConnector::with_config(config)?))
            }
            other => Err(unknown(other)),
        }
    }

    /// Runs a standalone data server in the foreground until SIGINT or
    /// SIGTERM (`proxystore serve`).
    pub(crate) fn serve(&self) -> Result<(), CliError> {
        match self.connector.as_str() {
            #[cfg(feature = "zmq")]
            "zmq" => {
                use proxystore::zmq::{PeerConfig, KIND};
                let address = self.address.as_deref().ok_or_else(|| {
                    CliError::new(2, "serve --connector zmq needs --address tcp://HOST:PORT")
                })?;
                // Block the signals before any thread starts, so they all
                // inherit the mask and only `wait_for_stop` sees them.
                let signals = crate::signals::StopSignals::block()?;
                let mut server = proxystore::zmq::serve(&PeerConfig::new(KIND, address))?;
                println!(
                    "proxystore: zmq data server on {} (Ctrl-C stops)",
                    server.address()
                );
                let signal = signals.wait()?;
                server.stop();
                eprintln!("proxystore: stopped on {signal}");
                Ok(())
            }
            #[cfg(feature = "ucx")]
            "ucx" => {
                use proxystore::ucx::{PeerConfig, ADDRESS, KIND};
                let signals = crate::signals::StopSignals::block()?;
                let mut server = proxystore::ucx::serve(&PeerConfig::new(KIND, ADDRESS))?;
                println!(
                    "proxystore: ucx data server on {} (Ctrl-C stops)",
                    server.address()
                );
                let signal = signals.wait()?;
                server.stop();
                eprintln!("proxystore: stopped on {signal}");
                Ok(())
            }
            "file" | "shm" | "local" | "redis" => Err(CliError::new(
                2,
                format!("the {} connector has no server to run", self.connector),
            )),
            other => Err(unknown(other)),
        }
    }
}

/// The error for a connector name this build does not know.
pub(crate) fn unknown(name: &str) -> CliError {
    CliError::new(
        2,
        format!(
            "unknown connector '{name}' (this build has: {})",
            proxystore::compiled_connectors().join(", ")
        ),
    )
}

/// Every connector of the matrix: name, Cargo feature, what it needs.
const MATRIX: &[(&str, &str, &str)] = &[
    (
        "local",
        "(always)",
        "nothing: objects live in the putting process",
    ),
    ("file", "file", "a directory: local disk, NFS or Lustre"),
    ("shm", "file", "/dev/shm (one node)"),
    ("zmq", "zmq", "libzmq"),
    ("redis", "redis", "a Redis or KeyDB server"),
    ("ucx", "ucx", "libucp (UCX)"),
    ("ofi", "ofi", "libfabric"),
    ("mpi", "mpi", "an MPI library"),
    ("daos", "daos", "libdaos"),
];

/// The text of `proxystore info`.
pub(crate) fn info() -> String {
    let compiled = proxystore::compiled_connectors();
    let mut out = format!("proxystore {}\nconnectors:\n", env!("CARGO_PKG_VERSION"));
    for (name, feature, needs) in MATRIX {
        let status = if compiled.contains(name) {
            format!("compiled in{}", library_note(name))
        } else {
            format!("not compiled (Cargo feature `{feature}`)")
        };
        out.push_str(&format!("  {name:<6} {status:<44} needs {needs}\n"));
    }
    out
}

/// What an optional connector found at run time (library version, server).
fn library_note(name: &str) -> String {
    match name {
        #[cfg(feature = "zmq")]
        "zmq" => {
            let (major, minor, patch) = proxystore::zmq::libzmq_version();
            format!(", libzmq {major}.{minor}.{patch}")
        }
        #[cfg(feature = "ucx")]
        "ucx" => {
            let (major, minor, release) = proxystore::ucx::libucp_version();
            format!(", libucp {major}.{minor}.{release}")
        }
        #[cfg(feature = "redis")]
        "redis" => {
            if proxystore::redis::server::available() {
                ", redis-server on PATH".into()
            } else {
                ", no local redis-server".into()
            }
        }
        _ => String::new(),
    }
}
