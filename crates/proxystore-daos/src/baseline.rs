//! The raw loop the connector is measured against: plain KV put and get of
//! the same payload under one fixed KV key, each one event on one event
//! queue of the same layer (the mock layer called directly, `daos-mock-raw`,
//! or libdaos, `daos-raw`), with no key layout, size bookkeeping or
//! queue pool.

use std::ffi::CString;
use std::sync::Arc;

use bytes::Bytes;
use proxystore_core::registry::{RawBaseline, RawSession};
use proxystore_core::{Error, Result};

use crate::connector::layer_for;
use crate::layer::{Completion, DaosLayer, EventQueue, Handle, KvOp};
use crate::{namespace_oid, DaosConfig};

/// `proxystore bench`'s raw baseline of the `daos` connector.
#[derive(Clone, Debug)]
pub struct DaosRaw {
    config: DaosConfig,
}

impl DaosRaw {
    /// The loop on the pool and container of `config`.
    pub fn new(config: DaosConfig) -> Self {
        DaosRaw { config }
    }
}

/// One event queue issuing put and get on a fixed KV key.
pub struct RawKv {
    layer: Arc<dyn DaosLayer>,
    handles: (Handle, Handle, Handle),
    queue: Box<dyn EventQueue>,
    key: CString,
    size: u64,
    done: Vec<Completion>,
    timeout: std::time::Duration,
}

fn failed(op: &str, code: i32, layer: &dyn DaosLayer) -> Error {
    Error::Transport {
        connector: "daos-raw".into(),
        source: format!("{op}: {} ({code})", layer.errstr(code)).into(),
    }
}

impl RawKv {
    /// Opens pool, container and a KV object of its own namespace.
    pub fn open(config: &DaosConfig) -> Result<Self> {
        let layer = layer_for(config)?;
        let l = &*layer;
        let code = l.init();
        if code != 0 {
            return Err(failed("init", code, l));
        }
        let pool = l
            .pool_connect(&config.pool)
            .map_err(|c| failed("pool connect", c, l))?;
        let cont = l
            .cont_open(pool, &config.container)
            .map_err(|c| failed("container open", c, l))?;
        let ns = format!("proxystore-raw-{}", proxystore_core::ObjectId::random());
        let kv = l
            .kv_open(cont, namespace_oid(&ns), &config.oclass)
            .map_err(|c| failed("kv open", c, l))?;
        let queue = l.eq_create(kv).map_err(|c| failed("eq create", c, l))?;
        let key = CString::new("raw").unwrap_or_default();
        Ok(RawKv {
            layer,
            handles: (pool, cont, kv),
            queue,
            key,
            size: 0,
            done: Vec::with_capacity(1),
            timeout: config.timeout,
        })
    }

    fn one(&mut self, op: KvOp) -> Result<Completion> {
        let code = self.queue.launch(0, op);
        if code != 0 {
            return Err(failed("launch", code, &*self.layer));
        }
        while self.done.is_empty() {
            let code = self.queue.poll(self.timeout, &mut self.done);
            if code <= 0 {
                self.queue.abort();
                return Err(failed("poll", code, &*self.layer));
            }
        }
        let c = self.done.pop().ok_or(Error::Internal {
            what: "daos raw poll returned nothing",
        })?;
        if c.rc != 0 {
            return Err(failed("kv op", c.rc, &*self.layer));
        }
        Ok(c)
    }
}

impl RawSession for RawKv {
    fn put(&mut self, data: &Bytes) -> Result<()> {
        self.size = data.len() as u64;
        self.one(KvOp::Put {
            key: self.key.clone(),
            value: data.clone(),
        })
        .map(|_| ())
    }

    fn get(&mut self) -> Result<Option<Bytes>> {
        let c = self.one(KvOp::Get {
            key: self.key.clone(),
            size: self.size,
        })?;
        Ok(c.data.map(Bytes::from))
    }
}

impl Drop for RawKv {
    fn drop(&mut self) {
        let _ = self.one(KvOp::Remove {
            key: self.key.clone(),
        });
        let (p, c, k) = self.handles;
        self.layer.close(p, c, k);
    }
}

impl RawBaseline for DaosRaw {
    fn name(&self) -> &str {
        if self.config.is_mock() {
            "daos-mock-raw"
        } else {
            "daos-raw"
        }
    }

    fn start(&self, payload: &Bytes) -> Result<Box<dyn RawSession>> {
        let mut raw = RawKv::open(&self.config)?;
        raw.put(payload)?;
        Ok(Box::new(raw))
    }
}
