//! What `proxystore bench` measures: a connector set up by its descriptor
//! (plus a second one to read through, for network connectors), and the
//! baselines timed beside it.

use std::any::Any;
use std::path::Path;
use std::sync::Arc;

use proxystore::registry::BenchEnv;
use proxystore::{Connector, Store};

use crate::connectors;
use crate::error::CliError;
use crate::measure::{Baseline, Raw};

/// A connector to benchmark plus whatever must live as long as it does.
/// Fields drop in order: the connectors before what they use.
pub(crate) struct BenchTarget {
    pub(crate) name: String,
    /// Puts go here.
    pub(crate) connector: Arc<dyn Connector>,
    /// Gets go here: the same connector, or a second one that reaches the
    /// first over the transport.
    pub(crate) reader: Arc<dyn Connector>,
    /// The transport's own loops, measured in the same run.
    pub(crate) baselines: Vec<Box<dyn Baseline>>,
    /// Set where this process only helps another measure (MPI ranks
    /// other than 0).
    pub(crate) helper: Option<Box<dyn FnOnce() -> proxystore::Result<()>>>,
    /// Servers and directories the connectors use.
    _keep_alive: Vec<Box<dyn Any>>,
}

/// Sets up the connector named `name` for benchmarking, as its descriptor
/// says; `dir` is the user's `--dir`.
pub(crate) fn open(name: &str, dir: Option<&Path>) -> Result<BenchTarget, CliError> {
    open_in(name, &BenchEnv::new(dir.map(Path::to_path_buf)))
}

/// [`open`] with the whole environment the setup sees (a shared secret
/// for connectors other processes must reach).
pub(crate) fn open_in(name: &str, env: &BenchEnv) -> Result<BenchTarget, CliError> {
    let descriptor = connectors::descriptor(name)?;
    let bench = descriptor
        .bench
        .ok_or_else(|| CliError::new(2, format!("the {name} connector has no benchmark setup")))?;
    let setup = bench(env)?;
    let connector: Arc<dyn Connector> = Arc::from(setup.writer);
    let reader = setup
        .reader
        .map_or_else(|| Arc::clone(&connector), Arc::from);
    #[allow(unused_mut)] // only with ucx or ofi is there a tool to add
    let mut baselines: Vec<Box<dyn Baseline>> = setup
        .baselines
        .into_iter()
        .map(|b| Box::new(Raw(b)) as Box<dyn Baseline>)
        .collect();
    #[cfg(feature = "ucx")]
    baselines.extend(crate::perftest::baselines(name));
    #[cfg(feature = "ofi")]
    baselines.extend(crate::pingpong::baselines(name));
    Ok(BenchTarget {
        name: setup.label.unwrap_or_else(|| name.to_owned()),
        connector,
        reader,
        baselines,
        helper: setup.helper,
        _keep_alive: setup.keep_alive,
    })
}

impl BenchTarget {
    /// The stores `bench` measures through (cache off): puts go to the
    /// first, gets to the second (over the reader connector).
    pub(crate) fn stores(&self) -> (Store, Store) {
        let store = Store::builder(format!("bench-{}", self.name), Arc::clone(&self.connector))
            .cache_size(0)
            .build();
        let reader = Store::builder(
            format!("bench-{}-reader", self.name),
            Arc::clone(&self.reader),
        )
        .cache_size(0)
        .build();
        (store, reader)
    }
}
