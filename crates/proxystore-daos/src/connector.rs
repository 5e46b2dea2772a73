//! The connector: key layout, batches on event queues, bounded waits, and
//! the translation of every DAOS return code through `der_error`.

use std::ffi::CString;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use proxystore_core::{
    put_via_batch, Capabilities, ClosedFlag, Connector, ConnectorConfig, DeferrableConnector,
    Error, Key, Result,
};

use crate::layer::{der_error, Completion, DaosLayer, EventQueue, Handle, KvOp, Outcome, Site};
use crate::mock::MockDaos;
use crate::real::RealDaos;
use crate::{namespace_oid, register, DaosConfig, KIND, UNLINKED};

/// Stores objects in a DAOS key-value object.
pub struct DaosConnector {
    config: DaosConfig,
    layer: Arc<dyn DaosLayer>,
    pool: Handle,
    container: Handle,
    kv: Handle,
    /// Idle event queues, reused (creating one per operation is costly).
    queues: Mutex<Vec<Box<dyn EventQueue>>>,
    closed: ClosedFlag,
}

impl std::fmt::Debug for DaosConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaosConnector")
            .field("config", &self.config)
            .field("layer", &self.layer)
            .finish()
    }
}

/// The layer a pool needs: the mock for `mock://`, libdaos when linked.
pub(crate) fn layer_for(config: &DaosConfig) -> Result<Arc<dyn DaosLayer>> {
    if config.is_mock() {
        return Ok(Arc::new(MockDaos::new()));
    }
    if !crate::daos_linked() {
        return Err(Error::Unsupported {
            connector: KIND.into(),
            op: UNLINKED,
        });
    }
    Ok(Arc::new(RealDaos))
}

/// Which KV key of an object an operation touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// `<32 hex>`: the bytes of a non-empty object.
    Data,
    /// `<32 hex>.empty`: a one-byte marker of an empty object (DAOS treats
    /// a zero-size value as a removal).
    Empty,
}

/// The KV key of `key`'s object in `slot`.
fn kv_key(key: &Key, slot: Slot) -> CString {
    let text = match slot {
        Slot::Data => key.id().to_string(),
        Slot::Empty => format!("{}.empty", key.id()),
    };
    // Hex digits and a dot: never a NUL.
    CString::new(text).unwrap_or_default()
}

/// The marker stored for an empty object.
const EMPTY_MARKER: Bytes = Bytes::from_static(&[1]);

impl DaosConnector {
    /// A connector on `pool` / `container` with default settings.
    pub fn open(pool: &str, container: &str) -> Result<Self> {
        Self::with_config(DaosConfig::new(pool, container))
    }

    /// A connector with explicit settings: initializes DAOS (once per
    /// process), connects the pool, opens the container and the
    /// namespace's KV object. Registers the `daos` kind.
    pub fn with_config(config: DaosConfig) -> Result<Self> {
        register();
        let layer = layer_for(&config)?;
        Self::on_layer(config, layer)
    }

    /// A connector over an explicit layer (tests, and the raw baseline).
    pub fn on_layer(config: DaosConfig, layer: Arc<dyn DaosLayer>) -> Result<Self> {
        let check = |op: &'static str, target: &str, code: i32| -> Result<()> {
            let site = Site {
                op,
                pool: &config.pool,
                target,
                timeout: config.timeout,
            };
            match der_error(&*layer, site, code, 0, 0)? {
                Outcome::Done => Ok(()),
                Outcome::Absent => Err(Error::Config(format!(
                    "daos {op}: {target} does not exist in pool {}",
                    config.pool
                ))),
            }
        };
        check("init", "the DAOS client", layer.init())?;
        let pool = layer
            .pool_connect(&config.pool)
            .or_else(|c| check("pool connect", &config.pool, c).map(|_| Handle(0)))?;
        let container = layer
            .cont_open(pool, &config.container)
            .or_else(|c| check("container open", &config.container, c).map(|_| Handle(0)))?;
        let kv = layer
            .kv_open(container, namespace_oid(&config.namespace), &config.oclass)
            .or_else(|c| check("kv open", &config.namespace, c).map(|_| Handle(0)))?;
        Ok(DaosConnector {
            config,
            layer,
            pool,
            container,
            kv,
            queues: Mutex::new(Vec::new()),
            closed: ClosedFlag::new(),
        })
    }

    /// Its settings.
    pub fn daos_config(&self) -> &DaosConfig {
        &self.config
    }

    fn site<'a>(&'a self, op: &'static str, target: &'a str) -> Site<'a> {
        Site {
            op,
            pool: &self.config.pool,
            target,
            timeout: self.config.timeout,
        }
    }

    fn check_size(&self, data: &Bytes) -> Result<()> {
        let size = data.len() as u64;
        if size > self.config.max_object {
            return Err(Error::TooLarge {
                what: "object (raise the daos connector's max_object_bytes)",
                size,
                limit: self.config.max_object,
            });
        }
        Ok(())
    }

    fn queue(&self) -> Result<Box<dyn EventQueue>> {
        if let Some(q) = self.queues.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(q);
        }
        self.layer.eq_create(self.kv).map_err(|code| {
            match der_error(
                &*self.layer,
                self.site("event queue create", "queue"),
                code,
                0,
                0,
            ) {
                Err(e) => e,
                Ok(_) => Error::Internal {
                    what: "daos_eq_create failed with DER_NONEXIST",
                },
            }
        })
    }

    /// Runs `ops` as one round of concurrent events, waiting at most the
    /// timeout; returns their completions in `ops` order.
    pub(crate) fn run(&self, op: &'static str, ops: Vec<KvOp>) -> Result<Vec<Completion>> {
        self.closed.check(KIND)?;
        let n = ops.len();
        let mut out: Vec<Option<Completion>> = (0..n).map(|_| None).collect();
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut queue = self.queue()?;
        let deadline = Instant::now() + self.config.timeout;
        for (tag, kv_op) in ops.into_iter().enumerate() {
            let code = queue.launch(tag, kv_op);
            if code != 0 {
                out[tag] = Some(Completion {
                    tag,
                    rc: code,
                    ..Completion::default()
                });
            }
        }
        let mut done = Vec::with_capacity(n);
        while queue.in_flight() > 0 {
            let now = Instant::now();
            if now >= deadline {
                queue.abort();
                self.give_back(queue);
                return Err(Error::Timeout {
                    connector: KIND.into(),
                    op,
                    after: self.config.timeout,
                });
            }
            let code = queue.poll(deadline - now, &mut done);
            if code < 0 {
                queue.abort();
                self.give_back(queue);
                der_error(&*self.layer, self.site("event queue poll", op), code, 0, 0)?;
                return Err(Error::Internal {
                    what: "daos_eq_poll failed with DER_NONEXIST",
                });
            }
            for c in done.drain(..) {
                if let Some(slot) = out.get_mut(c.tag) {
                    *slot = Some(c);
                }
            }
        }
        self.give_back(queue);
        out.into_iter()
            .map(|c| {
                c.ok_or(Error::Internal {
                    what: "a DAOS event completed twice or never",
                })
            })
            .collect()
    }

    fn give_back(&self, queue: Box<dyn EventQueue>) {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(queue);
    }

    /// Maps one completion of an operation on `key`.
    fn outcome(
        &self,
        op: &'static str,
        key: &Key,
        c: &Completion,
        requested: u64,
    ) -> Result<Outcome> {
        if c.rc == 0 {
            return Ok(Outcome::Done); // no message to build
        }
        let target = key.to_string();
        der_error(
            &*self.layer,
            self.site(op, &target),
            c.rc,
            requested,
            c.size,
        )
    }

    /// Puts `(key, data)` pairs in one round.
    fn put_items(&self, items: Vec<(Key, Bytes)>) -> Result<()> {
        for (_, d) in &items {
            self.check_size(d)?;
        }
        let ops = items
            .iter()
            .map(|(k, d)| {
                if d.is_empty() {
                    KvOp::Put {
                        key: kv_key(k, Slot::Empty),
                        value: EMPTY_MARKER,
                    }
                } else {
                    KvOp::Put {
                        key: kv_key(k, Slot::Data),
                        value: d.clone(),
                    }
                }
            })
            .collect();
        let done = self.run("kv put", ops)?;
        for ((k, _), c) in items.iter().zip(&done) {
            self.outcome("kv put", k, c, 0)?;
        }
        Ok(())
    }

    /// The sizes of each key's object (`None`: absent), by the size
    /// query: the data slot, then the empty marker for those with none.
    fn sizes(&self, keys: &[&Key]) -> Result<Vec<Option<u64>>> {
        let query = |slot| -> Result<Vec<u64>> {
            let ops = keys
                .iter()
                .map(|k| KvOp::Get {
                    key: kv_key(k, slot),
                    size: 0,
                })
                .collect();
            let done = self.run("kv size query", ops)?;
            keys.iter()
                .zip(done)
                .map(|(k, c)| match self.outcome("kv size query", k, &c, 0)? {
                    Outcome::Done => Ok(c.size),
                    Outcome::Absent => Ok(0),
                })
                .collect()
        };
        let data = query(Slot::Data)?;
        if data.iter().all(|s| *s > 0) {
            return Ok(data.into_iter().map(Some).collect());
        }
        let empty = query(Slot::Empty)?;
        Ok(data
            .into_iter()
            .zip(empty)
            .map(|(d, e)| match (d, e) {
                (0, 0) => None,
                (0, _) => Some(0),
                (d, _) => Some(d),
            })
            .collect())
    }
}

impl Connector for DaosConnector {
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
        self.closed.check(KIND)?;
        let keys: Vec<Key> = data
            .iter()
            .map(|d| Key::random().with_size(d.len() as u64))
            .collect();
        self.put_items(keys.iter().cloned().zip(data).collect())?;
        Ok(keys)
    }

    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        let mut out = self.get_batch(std::slice::from_ref(key))?;
        Ok(out.pop().flatten())
    }

    fn get_batch(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        self.closed.check(KIND)?;
        // Keys without a size: one round of size queries first.
        let unsized_keys: Vec<&Key> = keys.iter().filter(|k| k.size().is_none()).collect();
        let mut queried = if unsized_keys.is_empty() {
            Vec::new()
        } else {
            self.sizes(&unsized_keys)?
        }
        .into_iter();
        let sizes: Vec<Option<u64>> = keys
            .iter()
            .map(|k| match k.size() {
                Some(s) => Some(s),
                None => queried.next().flatten(),
            })
            .collect();
        // Then one round of reads, each into a buffer of the known size.
        let mut reads = Vec::new();
        let mut which = Vec::new();
        for (i, (k, size)) in keys.iter().zip(&sizes).enumerate() {
            match size {
                Some(0) if k.size().is_none() => {} // the marker was seen
                Some(0) => {
                    reads.push(KvOp::Get {
                        key: kv_key(k, Slot::Empty),
                        size: 1,
                    });
                    which.push((i, 1));
                }
                Some(n) => {
                    reads.push(KvOp::Get {
                        key: kv_key(k, Slot::Data),
                        size: *n,
                    });
                    which.push((i, *n));
                }
                None => {}
            }
        }
        let mut out: Vec<Option<Bytes>> = sizes
            .iter()
            .map(|s| (*s == Some(0)).then(Bytes::new))
            .collect();
        let done = self.run("kv get", reads)?;
        for ((i, requested), c) in which.into_iter().zip(done) {
            let key = &keys[i];
            if self.outcome("kv get", key, &c, requested)? == Outcome::Absent || c.size == 0 {
                out[i] = None;
                continue;
            }
            if key.size() == Some(0) || sizes[i] == Some(0) {
                out[i] = Some(Bytes::new()); // the empty marker
                continue;
            }
            if c.size != requested {
                return Err(Error::Transport {
                    connector: KIND.into(),
                    source: format!(
                        "kv get {key} in pool {}: DAOS holds {} bytes but the key says {requested}",
                        self.config.pool, c.size
                    )
                    .into(),
                });
            }
            out[i] = c.data.map(Bytes::from);
        }
        Ok(out)
    }

    fn exists(&self, key: &Key) -> Result<bool> {
        self.closed.check(KIND)?;
        Ok(self.sizes(&[key])?[0].is_some())
    }

    fn evict(&self, key: &Key) -> Result<()> {
        self.closed.check(KIND)?;
        let slots: &[Slot] = match key.size() {
            Some(0) => &[Slot::Empty],
            Some(_) => &[Slot::Data],
            None => &[Slot::Data, Slot::Empty],
        };
        let ops = slots
            .iter()
            .map(|s| KvOp::Remove {
                key: kv_key(key, *s),
            })
            .collect();
        for c in self.run("kv remove", ops)? {
            // Removing what is not there is fine (DER_NONEXIST → Absent).
            self.outcome("kv remove", key, &c, 0)?;
        }
        Ok(())
    }

    fn config(&self) -> ConnectorConfig {
        self.config.to_connector_config()
    }

    fn close(&self) -> Result<()> {
        if !self.closed.is_closed() {
            self.closed.close();
            self.queues
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            self.layer.close(self.pool, self.container, self.kv);
        }
        Ok(())
    }

    fn as_deferrable(&self) -> Option<&dyn DeferrableConnector> {
        Some(self)
    }
}

impl DeferrableConnector for DaosConnector {
    fn new_key(&self) -> Result<Key> {
        self.closed.new_key(KIND)
    }

    fn set(&self, key: &Key, data: Bytes) -> Result<()> {
        self.closed.check(KIND)?;
        self.put_items(vec![(key.clone(), data)])
    }
}

impl Drop for DaosConnector {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
