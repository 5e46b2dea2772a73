//! The peer-to-peer connector, written once over a [`SocketLayer`].
//!
//! Puts keep the bytes in this process's object table, served by a data
//! server started on first put, and return a key naming that server
//! (`<id>.<size>@<address>`). Gets of keys owned elsewhere go to the owner
//! over pooled connections; keys owned here are read from the table with no
//! network at all. With `server` set, puts are instead sent to a standalone
//! data server (`proxystore serve`), so data outlives this process.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxystore_core::{
    put_via_batch, Capabilities, ClosedFlag, Connector, ConnectorConfig, DeferrableConnector,
    Error, Key, ObjectId, ObjectTable, Result,
};

use crate::clients::{ClientPool, PoolLimits};
use crate::handler::Handler;
use crate::rma::{self, Expose, Exposures};
use crate::served::Served;
use crate::transport::{DataServer, SocketLayer};
use crate::wire::{Item, Limits, Message, Op, Status, Value, ACCEPTS_REMOTE};

/// Most threads a data server's transport may be given
/// ([`PeerConfig::server_threads`]).
pub const MAX_SERVER_THREADS: usize = 64;

/// The options [`PeerConfig`] reads itself; the others are the transport's.
const PEER_OPTIONS: &[&str] = &[
    "address",
    "server",
    "timeout_ms",
    "max_object_bytes",
    "server_threads",
    "pool_max_peers",
    "pool_idle_ms",
    "secret",
];

/// Settings of a peer-to-peer connector.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Connector kind (`zmq`, `mock`).
    pub kind: String,
    /// Endpoint the in-process data server binds (port 0: any free port).
    pub address: String,
    /// A standalone data server to send puts to, instead of serving them
    /// from this process.
    pub server: Option<String>,
    /// Bound on every request's wait for its reply.
    pub timeout: Duration,
    /// Shared secret: sent with every request, required by our server.
    /// Never written into [`PeerConfig::to_connector_config`] (so never into
    /// proxies); rebuilt connectors read it from `PROXYSTORE_<KIND>_SECRET`.
    pub secret: Option<String>,
    /// What the server accepts and the client reads.
    pub limits: Limits,
    /// Threads the data server's transport may use (ZeroMQ: I/O threads
    /// of the server's own context, each sending to its share of the
    /// client connections). Default 1.
    pub server_threads: usize,
    /// How many peers the client pool keeps connections to, and how long
    /// (options `pool_max_peers`, `pool_idle_ms`).
    pub pool: PoolLimits,
    /// Options of the socket layer's own (zmq's `curve`,
    /// `curve_server_key`): every config option the peer connector does
    /// not read itself, handed to [`SocketLayer::from_options`] and
    /// written back into configs.
    pub transport: BTreeMap<String, String>,
}

impl fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerConfig")
            .field("kind", &self.kind)
            .field("address", &self.address)
            .field("server", &self.server)
            .field("timeout", &self.timeout)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("limits", &self.limits)
            .field("server_threads", &self.server_threads)
            .field("pool", &self.pool)
            .field("transport", &self.transport)
            .finish()
    }
}

impl PeerConfig {
    /// Defaults for `kind`, serving on `address`: 30 s timeout, no secret
    /// (or the one in `PROXYSTORE_<KIND>_SECRET`).
    pub fn new(kind: &str, address: impl Into<String>) -> Self {
        PeerConfig {
            kind: kind.to_string(),
            address: address.into(),
            server: None,
            timeout: Duration::from_secs(30),
            secret: secret_from_env(kind),
            limits: Limits::default(),
            server_threads: 1,
            pool: PoolLimits::default(),
            transport: BTreeMap::new(),
        }
    }

    /// Reads options `address`, `server`, `timeout_ms`, `max_object_bytes`,
    /// `server_threads` (1 to [`MAX_SERVER_THREADS`]), `pool_max_peers`,
    /// `pool_idle_ms`, `secret` (else the env var) from a connector config;
    /// the other options are the transport's ([`PeerConfig::transport`]).
    pub fn from_connector_config(config: &ConnectorConfig) -> Result<Self> {
        let mut out = PeerConfig::new(&config.kind, config.require("address")?);
        out.server = config.get("server").map(str::to_string);
        if let Some(ms) = config.parse::<u64>("timeout_ms")? {
            out.timeout = Duration::from_millis(ms);
        }
        if let Some(max) = config.parse::<u64>("max_object_bytes")? {
            out.limits.max_object = max;
        }
        if let Some(n) = config.parse::<usize>("server_threads")? {
            if !(1..=MAX_SERVER_THREADS).contains(&n) {
                return Err(Error::Config(format!(
                    "{}: server_threads must be 1 to {MAX_SERVER_THREADS}, not {n}",
                    config.kind
                )));
            }
            out.server_threads = n;
        }
        if let Some(n) = config.parse::<usize>("pool_max_peers")? {
            if n == 0 {
                return Err(Error::Config(format!(
                    "{}: pool_max_peers must be at least 1",
                    config.kind
                )));
            }
            out.pool.max_peers = n;
        }
        if let Some(ms) = config.parse::<u64>("pool_idle_ms")? {
            out.pool.idle_timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(s) = config.get("secret") {
            out.secret = Some(s.to_string());
        }
        out.transport = config
            .options
            .iter()
            .filter(|(name, _)| !PEER_OPTIONS.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        Ok(out)
    }

    /// The connector config (without the secret).
    pub fn to_connector_config(&self) -> ConnectorConfig {
        let mut c = ConnectorConfig::new(self.kind.clone())
            .with("address", &self.address)
            .with("timeout_ms", self.timeout.as_millis())
            .with("max_object_bytes", self.limits.max_object);
        if self.server_threads != 1 {
            c = c.with("server_threads", self.server_threads);
        }
        let default_pool = PoolLimits::default();
        if self.pool.max_peers != default_pool.max_peers {
            c = c.with("pool_max_peers", self.pool.max_peers);
        }
        if self.pool.idle_timeout != default_pool.idle_timeout {
            c = c.with("pool_idle_ms", self.pool.idle_timeout.as_millis());
        }
        for (name, value) in &self.transport {
            c = c.with(name, value);
        }
        if let Some(s) = &self.server {
            c = c.with("server", s);
        }
        c
    }

    fn auth(&self) -> Bytes {
        self.secret
            .as_ref()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .unwrap_or_default()
    }
}

fn secret_from_env(kind: &str) -> Option<String> {
    std::env::var(format!("PROXYSTORE_{}_SECRET", kind.to_uppercase()))
        .ok()
        .filter(|s| !s.is_empty())
}

/// Starts a standalone data server (what `proxystore serve` runs): an empty
/// table served on `config.address` until the returned server is stopped.
pub fn serve<L: SocketLayer>(layer: Arc<L>, config: &PeerConfig) -> Result<DataServer> {
    check_exposure(layer.as_ref(), config)?;
    let served = served(&layer, Arc::new(ObjectTable::new()));
    let handler = Handler::serving(served, secret_bytes(config), config.limits);
    DataServer::start(
        layer.as_ref(),
        &config.address,
        handler,
        config.server_threads,
    )
}

/// `table`, with descriptors offered (and objects staged and published)
/// where `layer` has one-sided reads.
fn served<L: SocketLayer>(layer: &Arc<L>, table: Arc<ObjectTable>) -> Served {
    let exposures = layer
        .one_sided()
        .map(|_| Arc::new(Exposures::for_layer(Arc::clone(layer))) as Arc<dyn Expose>);
    Served::new(table, exposures)
}

fn secret_bytes(config: &PeerConfig) -> Option<Bytes> {
    config
        .secret
        .as_ref()
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
}

fn check_exposure<L: SocketLayer>(layer: &L, config: &PeerConfig) -> Result<()> {
    if !config.address.contains("://") {
        return Err(Error::Config(format!(
            "{}: address '{}' has no scheme: write it as <scheme>://..., e.g. tcp://{} for zmq",
            config.kind, config.address, config.address
        )));
    }
    if config.secret.is_none() && layer.needs_secret(&config.address) {
        return Err(Error::Config(format!(
            "{}: serving on {} (not loopback) needs a shared secret: set PROXYSTORE_{}_SECRET or option 'secret'",
            config.kind,
            config.address,
            config.kind.to_uppercase()
        )));
    }
    Ok(())
}

/// Registers connector kind `kind` as a [`PeerConnector`] over a fresh
/// `L`, so configs naming it rebuild in this process.
pub fn register_kind<L: SocketLayer + Default>(kind: &str) {
    proxystore_core::register_connector(kind, peer_factory::<L>);
}

/// The connector factory of a peer-to-peer kind over a fresh `L` (what a
/// connector crate's descriptor names as its factory).
pub fn peer_factory<L: SocketLayer + Default>(
    config: &ConnectorConfig,
) -> Result<Box<dyn Connector>> {
    let filled;
    let config = match (config.get("address"), L::DEFAULT_ENDPOINT) {
        (None, Some(endpoint)) => {
            filled = config.clone().with("address", endpoint);
            &filled
        }
        _ => config,
    };
    Ok(Box::new(PeerConnector::<L>::with_config(
        PeerConfig::from_connector_config(config)?,
    )?))
}

/// A [`Connector`] over any [`SocketLayer`]: ZeroMQ, UCX, and the in-process mock.
pub struct PeerConnector<L: SocketLayer> {
    layer: Arc<L>,
    config: PeerConfig,
    served: Served,
    server: Mutex<Option<DataServer>>,
    clients: ClientPool<L>,
    closed: ClosedFlag,
}

impl<L: SocketLayer> fmt::Debug for PeerConnector<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerConnector")
            .field("config", &self.config)
            .finish()
    }
}

impl<L: SocketLayer + Default> PeerConnector<L> {
    /// A connector over a fresh `L`; its data server starts on the first
    /// put. Registers `config.kind` (once), so proxies of this kind
    /// resolve in this process.
    pub fn with_config(config: PeerConfig) -> Result<Self> {
        if !proxystore_core::registered_connectors().contains(&config.kind) {
            register_kind::<L>(&config.kind);
        }
        Self::new(Arc::new(L::from_options(&config.transport)?), config)
    }
}

impl<L: SocketLayer> PeerConnector<L> {
    /// A connector; its data server starts on the first put (and refuses
    /// to bind off loopback without a secret).
    pub fn new(layer: Arc<L>, config: PeerConfig) -> Result<Self> {
        let clients = ClientPool::bounded(Arc::clone(&layer), config.limits, config.pool);
        Ok(PeerConnector {
            served: served(&layer, Arc::new(ObjectTable::new())),
            layer,
            config,
            server: Mutex::new(None),
            clients,
            closed: ClosedFlag::new(),
        })
    }

    /// Its settings.
    pub fn peer_config(&self) -> &PeerConfig {
        &self.config
    }

    /// Address of this process's data server, starting it if needed.
    pub fn local_address(&self) -> Result<String> {
        self.check_open()?;
        let mut server = self.server.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = server.as_ref() {
            return Ok(s.address().to_string());
        }
        // Checked here, when something would listen, not at construction:
        // a process that only reads never binds.
        check_exposure(self.layer.as_ref(), &self.config)?;
        let handler = Handler::serving(
            self.served.clone(),
            secret_bytes(&self.config),
            self.config.limits,
        );
        let started = DataServer::start(
            self.layer.as_ref(),
            &self.config.address,
            handler,
            self.config.server_threads,
        )?;
        let address = started.address().to_string();
        tracing::debug!(connector = %self.config.kind, %address, "data server started");
        *server = Some(started);
        Ok(address)
    }

    fn is_local(&self, address: &str) -> bool {
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner());
        server.as_ref().is_some_and(|s| s.address() == address)
    }

    fn check_open(&self) -> Result<()> {
        self.closed.check(&self.config.kind)
    }

    fn owner<'k>(&self, key: &'k Key) -> Result<&'k str> {
        key.location().ok_or_else(|| Error::InvalidKey {
            text: key.to_string(),
            reason: "a peer-to-peer key must name its owner (<id>.<size>@<address>)",
        })
    }

    /// Where puts go: the standalone server, else our own.
    fn put_target(&self) -> Result<(String, bool)> {
        match &self.config.server {
            Some(s) => Ok((s.clone(), false)),
            None => Ok((self.local_address()?, true)),
        }
    }

    /// Whether gets ask owners for descriptors.
    fn reads_one_sided(&self) -> bool {
        self.layer.one_sided().is_some_and(|o| o.reads_one_sided())
    }

    fn check_size(&self, data: &Bytes) -> Result<()> {
        let size = data.len() as u64;
        if size > self.config.limits.max_object {
            return Err(Error::TooLarge {
                what: "object",
                size,
                limit: self.config.limits.max_object,
            });
        }
        Ok(())
    }

    /// One request to `address`; a refusal becomes a typed error.
    fn remote(&self, address: &str, op: Op, items: Vec<Item>) -> Result<Message> {
        let mut req = Message::request(op, 0, self.config.auth(), items);
        let one_sided = self.layer.one_sided();
        if op == Op::Get && one_sided.is_some_and(|o| o.reads_one_sided_from(address)) {
            req.flags |= ACCEPTS_REMOTE;
        }
        let mut replies = self.clients.call(address, vec![req], self.config.timeout)?;
        let reply = replies
            .pop()
            .ok_or_else(|| self.transport_error(address, "no reply".into()))?;
        if reply.status != Status::Ok || reply.op != op {
            let text = String::from_utf8_lossy(&reply.aux).into_owned();
            return Err(match reply.status {
                Status::Unauthorized => Error::Unauthorized {
                    connector: self.config.kind.clone(),
                    address: address.to_string(),
                    reason: format!(
                        "{text}; readers and writers need the owner's secret: set PROXYSTORE_{}_SECRET to the same value in every process",
                        self.config.kind.to_uppercase()
                    ),
                },
                Status::TooLarge => {
                    self.transport_error(address, format!("request refused as too large: {text}"))
                }
                _ => self.transport_error(address, format!("{:?}: {text}", reply.status)),
            });
        }
        Ok(reply)
    }

    /// `d` if its length matches the key's size (when the key has one).
    fn sized(&self, key: &Key, d: Bytes) -> Result<Bytes> {
        match key.size() {
            Some(size) if size != d.len() as u64 => Err(self.transport_error(
                key.location().unwrap_or_default(),
                format!("object {key} came back with {} bytes", d.len()),
            )),
            _ => Ok(d),
        }
    }

    fn transport_error(&self, address: &str, what: String) -> Error {
        Error::Transport {
            connector: self.config.kind.clone(),
            source: format!("peer {address}: {what}").into(),
        }
    }

    /// Runs `op` on `keys`, grouped by owner: one request per owner; local
    /// keys are answered from the table.
    fn per_owner<T>(
        &self,
        keys: &[Key],
        op: Op,
        local: impl Fn(ObjectId) -> T,
        from_reply: impl Fn(&Key, Value) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut out: Vec<Option<T>> = keys.iter().map(|_| None).collect();
        for (i, key) in keys.iter().enumerate() {
            let owner = self.owner(key)?;
            if self.is_local(owner) {
                out[i] = Some(local(key.id()));
            } else {
                groups.entry(owner).or_default().push(i);
            }
        }
        for (owner, idx) in groups {
            let items = idx
                .iter()
                .map(|&i| Item {
                    id: keys[i].id(),
                    value: Value::Id,
                })
                .collect();
            let reply = self.remote(owner, op, items)?;
            if reply.items.len() != idx.len() {
                return Err(self.transport_error(
                    owner,
                    format!("{} answers for {} keys", reply.items.len(), idx.len()),
                ));
            }
            for (&i, item) in idx.iter().zip(reply.items) {
                if item.id != keys[i].id() {
                    return Err(self.transport_error(owner, "reply names other objects".into()));
                }
                out[i] = Some(from_reply(&keys[i], item.value)?);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// `key` read straight from its owner's memory, where the layer can
    /// and the owner listed it (`Some`); `None`: ask the owner. Keys owned
    /// here are never read this way (the table answers them).
    fn get_direct(&self, key: &Key, deadline: Instant) -> Result<Option<Option<Bytes>>> {
        let Some(one_sided) = self.layer.one_sided() else {
            return Ok(None);
        };
        if self.is_local(self.owner(key)?) {
            return Ok(None);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match one_sided.get_direct(key, left) {
            None => Ok(None),
            Some(read) => Ok(Some(Some(self.sized(key, read?)?))),
        }
    }

    /// Gets `keys` by request to their owners (one per owner).
    fn get_requested(&self, keys: &[Key], deadline: Instant) -> Result<Vec<Option<Bytes>>> {
        self.per_owner(
            keys,
            Op::Get,
            |id| self.served.get(id),
            |key, value| match value {
                Value::Remote(desc) => {
                    let owner = key.location().unwrap_or_default();
                    let one_sided = self.layer.one_sided().ok_or(Error::Unsupported {
                        connector: self.config.kind.clone(),
                        op: "one-sided read",
                    })?;
                    let left = deadline.saturating_duration_since(Instant::now());
                    let max = self.config.limits.max_object;
                    let d = rma::read(one_sided, &self.config.kind, owner, &desc, max, left)?;
                    self.sized(key, d).map(Some)
                }
                Value::Data(d) => self.sized(key, d).map(Some),
                _ => Ok(None),
            },
        )
    }

    fn put_many(&self, data: Vec<Bytes>) -> Result<Vec<Key>> {
        self.check_open()?;
        for d in &data {
            self.check_size(d)?;
        }
        let (target, local) = self.put_target()?;
        let keys = data
            .iter()
            .map(|d| {
                Key::random()
                    .with_size(d.len() as u64)
                    .with_location(&target)
            })
            .collect::<Result<Vec<_>>>()?;
        if local {
            for (key, d) in keys.iter().zip(data) {
                self.served.insert(key.id(), d);
            }
        } else {
            let items = keys
                .iter()
                .zip(data)
                .map(|(k, d)| Item {
                    id: k.id(),
                    value: Value::Data(d),
                })
                .collect();
            self.remote(&target, Op::Put, items)?;
        }
        Ok(keys)
    }
}

impl<L: SocketLayer> Connector for PeerConnector<L> {
    fn kind(&self) -> &str {
        &self.config.kind
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_native_batch(true)
            .with_deferrable(true)
            .with_cross_process(true)
            .with_survives_producer_exit(self.config.server.is_some())
            .with_one_sided_get(self.reads_one_sided())
    }

    fn put(&self, data: Bytes) -> Result<Key> {
        put_via_batch(self, data)
    }

    fn put_batch(&self, data: Vec<Bytes>) -> Result<Vec<Key>> {
        self.put_many(data)
    }

    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        let mut out = self.get_batch(std::slice::from_ref(key))?;
        Ok(out.pop().flatten())
    }

    fn get_batch(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        self.check_open()?;
        // One-sided reads share the get's time budget with its request: an
        // owner holds a descriptor's memory for a bounded time only.
        let deadline = Instant::now() + self.config.timeout;
        let direct = keys
            .iter()
            .map(|key| self.get_direct(key, deadline))
            .collect::<Result<Vec<_>>>()?;
        let answered = direct.iter().filter(|d| d.is_some()).count();
        if answered == 0 {
            // Every key goes to its owner (always so for zmq, ucx, ofi).
            return self.get_requested(keys, deadline);
        }
        if answered == keys.len() {
            return Ok(direct.into_iter().flatten().collect());
        }
        let asked: Vec<Key> = keys
            .iter()
            .zip(&direct)
            .filter(|(_, d)| d.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        let mut replies = self.get_requested(&asked, deadline)?.into_iter();
        Ok(direct
            .into_iter()
            .map(|d| d.or_else(|| replies.next()).flatten())
            .collect())
    }

    fn exists(&self, key: &Key) -> Result<bool> {
        self.check_open()?;
        let out = self.per_owner(
            std::slice::from_ref(key),
            Op::Exists,
            |id| self.served.contains(id),
            |_, v| Ok(v == Value::Flag(true)),
        )?;
        Ok(out.first().copied().unwrap_or(false))
    }

    fn evict(&self, key: &Key) -> Result<()> {
        self.check_open()?;
        self.per_owner(
            std::slice::from_ref(key),
            Op::Evict,
            |id| self.served.remove(id),
            |_, _| Ok(()),
        )?;
        Ok(())
    }

    fn config(&self) -> ConnectorConfig {
        let mut config = self.config.clone();
        config.address = self.layer.any_port(&config.address);
        for (name, value) in self.layer.public_options() {
            config.transport.insert(name.to_string(), value);
        }
        config.to_connector_config()
    }

    fn close(&self) -> Result<()> {
        self.closed.close();
        if let Some(mut s) = self.server.lock().unwrap_or_else(|e| e.into_inner()).take() {
            s.stop();
        }
        self.clients.clear();
        self.served.clear();
        Ok(())
    }

    fn as_deferrable(&self) -> Option<&dyn DeferrableConnector> {
        Some(self)
    }
}

impl<L: SocketLayer> DeferrableConnector for PeerConnector<L> {
    fn new_key(&self) -> Result<Key> {
        self.check_open()?;
        let (target, _) = self.put_target()?;
        Key::random().with_location(&target)
    }

    fn set(&self, key: &Key, data: Bytes) -> Result<()> {
        self.check_open()?;
        self.check_size(&data)?;
        let owner = self.owner(key)?;
        if self.is_local(owner) {
            self.served.insert(key.id(), data);
        } else {
            self.remote(
                owner,
                Op::Put,
                vec![Item {
                    id: key.id(),
                    value: Value::Data(data),
                }],
            )?;
        }
        Ok(())
    }
}

impl<L: SocketLayer> Drop for PeerConnector<L> {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
