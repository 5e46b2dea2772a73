//! DAOS key-value connector.
//!
//! Objects live in one DAOS KV object per namespace (a hashed-key KV whose
//! object id is derived from the namespace name, so every process opens the
//! same object without coordinating), in a pool and container that outlive
//! the processes using them. A key's text form is `<32 hex>.<size>`: the
//! KV key is the 32 hex digits, and the size lets a get allocate once and
//! read in one call; a key without a size (from [`DeferrableConnector::new_key`](proxystore_core::DeferrableConnector::new_key))
//! first asks DAOS for the size (`daos_kv_get` with a null buffer). Batches
//! are one round of concurrent operations on a DAOS event queue, and every
//! wait is bounded by `timeout_ms`.
//!
//! DAOS treats a zero-size value as a removal, so an empty object is
//! stored as a one-byte marker under `<32 hex>.empty`.
//!
//! `pool = "mock://<name>"` uses an in-process mock of the DAOS layer
//! ([`mock::MockDaos`]); a real pool needs a build that found DAOS
//! (daos-sys's linked mode, [`daos_linked`]), else it is
//! `Error::Unsupported` naming `DAOS_DIR`.
//!
//! ```
//! use proxystore_core::{Bytes, Connector};
//! use proxystore_daos::{DaosConfig, DaosConnector};
//!
//! let c = DaosConnector::with_config(DaosConfig::new("mock://doc", "cont"))?;
//! let key = c.put(Bytes::from_static(b"hello"))?;
//! assert_eq!(c.get(&key)?.as_deref(), Some(&b"hello"[..]));
//! # Ok::<(), proxystore_core::Error>(())
//! ```

#[cfg(feature = "baseline")]
pub mod baseline;
mod connector;
mod layer;
pub mod mock;
mod real;

use std::time::Duration;

use proxystore_core::registry::{
    self, BenchEnv, BenchSetup, CliOption, ConnectorDescriptor, FlagUse,
};
use proxystore_core::{Connector, ConnectorConfig, Error, Result};

pub use connector::DaosConnector;
pub use layer::{der_name, Completion, DaosLayer, EventQueue, Handle, KvOp, DER_NAMES};
pub use real::RealDaos;

/// The connector kind, Cargo feature and CLI name.
pub const KIND: &str = "daos";

/// The default namespace (one KV object per namespace).
pub const DEFAULT_NAMESPACE: &str = "proxystore";

/// The default bound on one object (1 GiB).
pub const DEFAULT_MAX_OBJECT: u64 = 1 << 30;

/// What a build without DAOS says when asked for a real pool.
pub const UNLINKED: &str =
    "real DAOS pools: this build found no DAOS (set DAOS_DIR to the DAOS install prefix, e.g. after `module load daos`, and rebuild); only mock:// pools work";

/// Whether this build links libdaos (daos-sys found DAOS at build time).
pub fn daos_linked() -> bool {
    daos_sys::DAOS_LINKED
}

/// Settings of a DAOS connector (the options of Python ProxyStore's
/// `DAOSConnector(pool, container, namespace)`, plus object class, timeout
/// and size bound).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaosConfig {
    /// Pool label or UUID, or `mock://<name>` for the in-process mock.
    pub pool: String,
    /// Container label or UUID (must exist in a real pool).
    pub container: String,
    /// Namespace: the KV object objects go in.
    pub namespace: String,
    /// DAOS object class of the KV object (`SX`, `RP_3G1`, ...); empty: the
    /// container's default.
    pub oclass: String,
    /// Bound on every wait.
    pub timeout: Duration,
    /// Largest object put.
    pub max_object: u64,
}

impl DaosConfig {
    /// Defaults for `pool` and `container`: namespace `proxystore`, the
    /// container's object class, 30 s timeout, 1 GiB objects.
    pub fn new(pool: impl Into<String>, container: impl Into<String>) -> Self {
        DaosConfig {
            pool: pool.into(),
            container: container.into(),
            namespace: DEFAULT_NAMESPACE.into(),
            oclass: String::new(),
            timeout: Duration::from_secs(30),
            max_object: DEFAULT_MAX_OBJECT,
        }
    }

    /// Reads options `pool` (else `DAOS_POOL`), `container` (else
    /// `DAOS_CONT`), `namespace`, `oclass`, `timeout_ms`,
    /// `max_object_bytes`.
    pub fn from_connector_config(config: &ConnectorConfig) -> Result<Self> {
        let from_env = |option: &str, var: &str| -> Result<String> {
            match config.get(option) {
                Some(v) if !v.is_empty() => Ok(v.to_string()),
                _ => std::env::var(var).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
                    Error::Config(format!(
                        "daos connector needs option `{option}` (or {var} set, as Aurora job scripts do)"
                    ))
                }),
            }
        };
        let mut out = DaosConfig::new(
            from_env("pool", "DAOS_POOL")?,
            from_env("container", "DAOS_CONT")?,
        );
        if let Some(ns) = config.get("namespace") {
            out.namespace = ns.to_string();
        }
        if let Some(oclass) = config.get("oclass") {
            out.oclass = oclass.to_string();
        }
        if let Some(ms) = config.parse::<u64>("timeout_ms")? {
            out.timeout = Duration::from_millis(ms);
        }
        if let Some(max) = config.parse::<u64>("max_object_bytes")? {
            out.max_object = max;
        }
        Ok(out)
    }

    /// The connector config: every option explicit, so a process with
    /// other `DAOS_POOL`/`DAOS_CONT` values reaches the same objects.
    pub fn to_connector_config(&self) -> ConnectorConfig {
        ConnectorConfig::new(KIND)
            .with("pool", &self.pool)
            .with("container", &self.container)
            .with("namespace", &self.namespace)
            .with("oclass", &self.oclass)
            .with("timeout_ms", self.timeout.as_millis())
            .with("max_object_bytes", self.max_object)
    }

    /// Whether the pool is the in-process mock.
    pub fn is_mock(&self) -> bool {
        self.pool.starts_with("mock://")
    }
}

/// The low 96 bits of the KV object id of `namespace` (`lo`, `hi`):
/// FNV-1a 64 of the name, twice with different offsets. DAOS fills the top
/// 32 bits of `hi` with the object type and class.
pub fn namespace_oid(namespace: &str) -> (u64, u64) {
    fn fnv(seed: u64, bytes: &[u8]) -> u64 {
        bytes.iter().fold(seed, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }
    let b = namespace.as_bytes();
    (
        fnv(0xcbf2_9ce4_8422_2325, b),
        fnv(0x8422_2325_cbf2_9ce4, b) & 0xffff_ffff,
    )
}

/// The `daos` kind: its flags (`--pool`, `--container`, `--namespace`,
/// `--timeout-ms`), bench setup and `info` line.
pub static DESCRIPTOR: ConnectorDescriptor = ConnectorDescriptor::new(
    KIND,
    Some("daos"),
    "libdaos (DAOS_DIR at build), a pool and container (DAOS_POOL, DAOS_CONT)",
    build,
)
.with_cli_options(&[
    CliOption::new("pool", "pool", FlagUse::Optional).example("POOL (or DAOS_POOL)"),
    CliOption::new("container", "container", FlagUse::Optional).example("CONT (or DAOS_CONT)"),
    CliOption::new("namespace", "namespace", FlagUse::Optional),
    CliOption::new("timeout-ms", "timeout_ms", FlagUse::Optional),
])
.with_bench(bench)
.with_status(status);

/// The kinds this crate implements.
pub static DESCRIPTORS: &[&ConnectorDescriptor] = &[&DESCRIPTOR];

fn build(config: &ConnectorConfig) -> Result<Box<dyn Connector>> {
    Ok(Box::new(DaosConnector::with_config(
        DaosConfig::from_connector_config(config)?,
    )?))
}

fn status() -> String {
    if daos_linked() {
        format!(
            "linked, DAOS API {}.{}.{}",
            daos_sys::DAOS_API_VERSION_MAJOR,
            daos_sys::DAOS_API_VERSION_MINOR,
            daos_sys::DAOS_API_VERSION_FIX
        )
    } else {
        "not linked: mock:// only".into()
    }
}

/// Linked, with `DAOS_POOL` and `DAOS_CONT` set: the real pool, beside
/// `daos-raw`. Otherwise a fresh mock pool, named `daos-mock`, beside
/// `daos-mock-raw` (the mock layer called directly), so a mock figure is
/// never mistaken for DAOS.
fn bench(_: &BenchEnv) -> Result<BenchSetup> {
    let env = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    let (config, label) = match (daos_linked(), env("DAOS_POOL"), env("DAOS_CONT")) {
        (true, Some(pool), Some(cont)) => {
            let mut c = DaosConfig::new(pool, cont);
            c.namespace = format!("proxystore-bench-{}", proxystore_core::ObjectId::random());
            (c, KIND)
        }
        _ => (
            DaosConfig::new(
                format!("mock://bench-{}", proxystore_core::ObjectId::random()),
                "bench",
            ),
            "daos-mock",
        ),
    };
    let connector = DaosConnector::with_config(config.clone())?;
    let setup = BenchSetup::new(connector).with_label(label);
    #[cfg(feature = "baseline")]
    let setup = setup.with_baseline(baseline::DaosRaw::new(config));
    Ok(setup)
}

/// Registers the `daos` kind so proxies naming it resolve in this process.
/// Idempotent and cheap; every constructor calls it.
pub fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| registry::register(&DESCRIPTOR));
}
