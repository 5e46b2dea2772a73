//! Redis / KeyDB connector.
//!
//! Objects are Redis strings under `<prefix><32 hex digits of the id>` (or
//! `<prefix><hyphenated UUID>` with `key_format = uuid`, the form Python
//! ProxyStore's `RedisConnector` writes when `prefix = ""`), so
//! they outlive the process that put them and any process that can reach
//! the server reads them. Batches are one pipelined round trip (`SET`s) or
//! one `MGET`; objects bound to a lease lifetime get a Redis TTL
//! (`PEXPIRE`), so they expire even if no process is left to evict them.
//!
//! ```no_run
//! use proxystore_core::{Bytes, Connector};
//! use proxystore_redis::RedisConnector;
//!
//! let c = RedisConnector::open("redis://127.0.0.1:6379")?;
//! let key = c.put(Bytes::from_static(b"hello"))?;
//! assert_eq!(c.get(&key)?.as_deref(), Some(&b"hello"[..]));
//! # Ok::<(), proxystore_core::Error>(())
//! ```

#[cfg(feature = "baseline")]
pub mod baseline;
#[doc(hidden)]
pub mod fuzzing;
mod layer;
#[cfg(feature = "mock")]
pub mod mock;
pub mod resp;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
pub use layer::{CommandLayer, RedisLayer};
use proxystore_core::registry::{
    self, BenchEnv, BenchSetup, CliOption, ConnectorDescriptor, FlagUse,
};
use proxystore_core::{
    put_via_batch, Capabilities, ClosedFlag, Connector, ConnectorConfig, DeferrableConnector,
    Error, Key, Result,
};

/// The connector kind, Cargo feature and CLI name.
pub const KIND: &str = "redis";

/// Redis's default `proto-max-bulk-len`: the largest string a stock server
/// accepts.
pub const DEFAULT_MAX_OBJECT: u64 = 512 << 20;

/// How an object's id is written in its Redis key (after the prefix).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyFormat {
    /// 32 lowercase hex digits (option `key_format = hex`, the default).
    #[default]
    Hex,
    /// A hyphenated UUID, `8-4-4-4-12` lowercase hex digits (option
    /// `key_format = uuid`): with `prefix = ""`, the keys Python
    /// ProxyStore's `RedisConnector` writes (`str(uuid4())`), so each reads
    /// what the other wrote.
    Uuid,
}

impl KeyFormat {
    fn name(self) -> &'static str {
        match self {
            KeyFormat::Hex => "hex",
            KeyFormat::Uuid => "uuid",
        }
    }
}

/// Settings of a Redis connector.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://host:port/db`, `unix:///path/to/socket`, or (with the
    /// `mock` feature) `mock://name` for the in-process mock.
    pub url: String,
    /// Password (AUTH). Never written into the connector config, so never
    /// into proxies; rebuilt connectors read `PROXYSTORE_REDIS_PASSWORD`.
    pub password: Option<String>,
    /// Prefix of every Redis key this connector writes.
    pub prefix: String,
    /// How the object id follows the prefix.
    pub key_format: KeyFormat,
    /// Bound on connecting and on every command.
    pub timeout: Duration,
    /// Largest object put (the server's `proto-max-bulk-len`).
    pub max_object: u64,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("prefix", &self.prefix)
            .field("key_format", &self.key_format)
            .field("timeout", &self.timeout)
            .field("max_object", &self.max_object)
            .finish()
    }
}

impl RedisConfig {
    /// Defaults for the server at `url`: prefix `proxystore:`, 30 s
    /// timeout, 512 MiB objects, password from `PROXYSTORE_REDIS_PASSWORD`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            password: std::env::var("PROXYSTORE_REDIS_PASSWORD")
                .ok()
                .filter(|p| !p.is_empty()),
            prefix: "proxystore:".into(),
            key_format: KeyFormat::Hex,
            timeout: Duration::from_secs(30),
            max_object: DEFAULT_MAX_OBJECT,
        }
    }

    /// Reads options `url`, `prefix`, `key_format` (`hex` or `uuid`),
    /// `timeout_ms`, `max_object_bytes`, `password` (else the env var).
    pub fn from_connector_config(config: &ConnectorConfig) -> Result<Self> {
        let mut out = RedisConfig::new(config.require("url")?);
        if let Some(p) = config.get("prefix") {
            out.prefix = p.to_string();
        }
        out.key_format = match config.get("key_format") {
            None | Some("hex") => KeyFormat::Hex,
            Some("uuid") => KeyFormat::Uuid,
            Some(other) => {
                return Err(Error::Config(format!(
                    "redis option key_format must be hex or uuid, not '{other}'"
                )))
            }
        };
        if let Some(ms) = config.parse::<u64>("timeout_ms")? {
            out.timeout = Duration::from_millis(ms);
        }
        if let Some(max) = config.parse::<u64>("max_object_bytes")? {
            out.max_object = max;
        }
        if let Some(p) = config.get("password") {
            out.password = Some(p.to_string());
        }
        Ok(out)
    }

    /// The connector config (without the password).
    pub fn to_connector_config(&self) -> ConnectorConfig {
        let config = ConnectorConfig::new(KIND)
            .with("url", &self.url)
            .with("prefix", &self.prefix)
            .with("timeout_ms", self.timeout.as_millis())
            .with("max_object_bytes", self.max_object);
        match self.key_format {
            KeyFormat::Hex => config,
            other => config.with("key_format", other.name()),
        }
    }
}

/// Stores objects in a Redis or KeyDB server.
#[derive(Debug)]
pub struct RedisConnector {
    config: RedisConfig,
    layer: Arc<dyn CommandLayer>,
    closed: ClosedFlag,
}

impl RedisConnector {
    /// A connector on the server at `url`, with default settings.
    pub fn open(url: &str) -> Result<Self> {
        Self::with_config(RedisConfig::new(url))
    }

    /// A connector with explicit settings; with the `mock` feature,
    /// `mock://` URLs use the in-process mock. Connections are opened on
    /// first use. Registers the `redis` kind.
    pub fn with_config(config: RedisConfig) -> Result<Self> {
        register();
        let layer: Arc<dyn CommandLayer> = if config.url.starts_with("mock://") {
            mock_layer(&config.url)?
        } else {
            Arc::new(RedisLayer::open(
                &config.url,
                config.password.as_deref(),
                config.timeout,
                config.max_object,
            )?)
        };
        Ok(RedisConnector {
            config,
            layer,
            closed: ClosedFlag::new(),
        })
    }

    /// Its settings.
    pub fn redis_config(&self) -> &RedisConfig {
        &self.config
    }

    /// The Redis key an object is stored under.
    pub fn redis_key(&self, key: &Key) -> String {
        match self.config.key_format {
            KeyFormat::Hex => format!("{}{}", self.config.prefix, key.id()),
            KeyFormat::Uuid => format!("{}{}", self.config.prefix, key.id().to_uuid_string()),
        }
    }

    fn check_open(&self) -> Result<()> {
        self.closed.check(KIND)
    }

    fn check_size(&self, data: &Bytes) -> Result<()> {
        let size = data.len() as u64;
        if size > self.config.max_object {
            return Err(Error::TooLarge {
                what: "object (raise the server's proto-max-bulk-len and max_object_bytes)",
                size,
                limit: self.config.max_object,
            });
        }
        Ok(())
    }

    fn checked(&self, key: &Key, data: Option<Bytes>) -> Result<Option<Bytes>> {
        match (data, key.size()) {
            (Some(d), Some(size)) if d.len() as u64 != size => Err(Error::Transport {
                connector: KIND.into(),
                source: format!(
                    "{} holds {} bytes but key {key} says {size}",
                    self.redis_key(key),
                    d.len()
                )
                .into(),
            }),
            (d, _) => Ok(d),
        }
    }
}

impl Connector for RedisConnector {
    fn kind(&self) -> &str {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_native_batch(true)
            .with_deferrable(true)
            .with_cross_process(true)
            .with_survives_producer_exit(true)
    }

    fn put(&self, data: Bytes) -> Result<Key> {
        put_via_batch(self, data)
    }

    fn put_batch(&self, data: Vec<Bytes>) -> Result<Vec<Key>> {
        self.check_open()?;
        for d in &data {
            self.check_size(d)?;
        }
        let keys: Vec<Key> = data
            .iter()
            .map(|d| Key::random().with_size(d.len() as u64))
            .collect();
        let items = keys
            .iter()
            .zip(data)
            .map(|(k, d)| (self.redis_key(k), d))
            .collect();
        self.layer.set(items, None)?;
        Ok(keys)
    }

    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        let mut out = self.get_batch(std::slice::from_ref(key))?;
        Ok(out.pop().flatten())
    }

    fn get_batch(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        self.check_open()?;
        let names: Vec<String> = keys.iter().map(|k| self.redis_key(k)).collect();
        let values = self.layer.get(&names)?;
        if values.len() != keys.len() {
            return Err(Error::Transport {
                connector: KIND.into(),
                source: format!("{} values for {} keys", values.len(), keys.len()).into(),
            });
        }
        keys.iter()
            .zip(values)
            .map(|(k, v)| self.checked(k, v))
            .collect()
    }

    fn exists(&self, key: &Key) -> Result<bool> {
        self.check_open()?;
        self.layer.exists(&self.redis_key(key))
    }

    fn evict(&self, key: &Key) -> Result<()> {
        self.check_open()?;
        self.layer.del(&[self.redis_key(key)])
    }

    fn config(&self) -> ConnectorConfig {
        self.config.to_connector_config()
    }

    fn close(&self) -> Result<()> {
        self.closed.close();
        self.layer.close();
        Ok(())
    }

    fn as_deferrable(&self) -> Option<&dyn DeferrableConnector> {
        Some(self)
    }

    fn expire_after(&self, key: &Key, ttl: Duration) -> Result<bool> {
        self.check_open()?;
        self.layer.pexpire(&self.redis_key(key), ttl)?;
        Ok(true)
    }
}

impl DeferrableConnector for RedisConnector {
    fn new_key(&self) -> Result<Key> {
        self.closed.new_key(KIND)
    }

    fn set(&self, key: &Key, data: Bytes) -> Result<()> {
        self.check_open()?;
        self.check_size(&data)?;
        self.layer.set(vec![(self.redis_key(key), data)], None)
    }
}

/// The in-process mock keyspace a `mock://` URL names.
#[cfg(feature = "mock")]
fn mock_layer(url: &str) -> Result<Arc<dyn CommandLayer>> {
    Ok(Arc::new(mock::MockRedis::open(url)?))
}

/// Without the `mock` feature a `mock://` URL is a configuration error.
#[cfg(not(feature = "mock"))]
fn mock_layer(url: &str) -> Result<Arc<dyn CommandLayer>> {
    Err(Error::Config(format!(
        "redis url '{url}': mock:// needs the `mock` feature of proxystore-redis"
    )))
}

/// The `redis` kind: what it needs, its flags (`--url`, required;
/// `--timeout-ms`), bench setup and `info` line.
pub static DESCRIPTOR: ConnectorDescriptor =
    ConnectorDescriptor::new(KIND, Some("redis"), "a Redis or KeyDB server", build)
        .with_cli_options(&[
            CliOption::new("url", "url", FlagUse::Required).example("redis://HOST:PORT"),
            CliOption::new("timeout-ms", "timeout_ms", FlagUse::Optional),
        ])
        .with_bench(bench)
        .with_status(|| {
            if server::available() {
                "redis-server on PATH".into()
            } else {
                "no local redis-server".into()
            }
        });

/// The kinds this crate implements.
pub static DESCRIPTORS: &[&ConnectorDescriptor] = &[&DESCRIPTOR];

fn build(config: &ConnectorConfig) -> Result<Box<dyn Connector>> {
    Ok(Box::new(RedisConnector::with_config(
        RedisConfig::from_connector_config(config)?,
    )?))
}

/// A throwaway `redis-server` on a free loopback port (stopped with the
/// setup), beside plain SET/GET when the `baseline` feature is on.
fn bench(_: &BenchEnv) -> Result<BenchSetup> {
    let server = server::LocalRedisServer::start()?;
    let setup = BenchSetup::new(RedisConnector::open(&server.url())?);
    #[cfg(feature = "baseline")]
    let setup = setup.with_baseline(baseline::RedisRaw { url: server.url() });
    Ok(setup.keep_alive(server))
}

/// Registers the `redis` kind so proxies naming it resolve in this process.
/// Idempotent and cheap; every constructor calls it.
pub fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| registry::register(&DESCRIPTOR));
}
