//! The raw transport the connector is measured against: plain `SET`/`GET`
//! of the same payload on one connection of the same client
//! ([`crate::resp`]), with no store, key layout or pooling.

use std::time::Duration;

use bytes::Bytes;
use proxystore_core::registry::{RawBaseline, RawSession};
use proxystore_core::{Error, Result};

use crate::layer::redis_error;
use crate::resp::{Connection, Endpoint, Reply};

/// One connection issuing SET and GET on a fixed key.
pub struct RawSetGet {
    con: Connection,
    url: String,
    key: String,
}

impl std::fmt::Debug for RawSetGet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSetGet").field("url", &self.url).finish()
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

impl RawSetGet {
    /// Connects to `url`.
    pub fn connect(url: &str) -> Result<Self> {
        let endpoint = Endpoint::parse(url)?;
        let con = Connection::connect(&endpoint, TIMEOUT, u64::MAX)
            .map_err(|e| redis_error("connect", url, TIMEOUT, e))?;
        let key = format!("proxystore-raw:{}", proxystore_core::ObjectId::random());
        Ok(RawSetGet {
            con,
            url: url.to_string(),
            key,
        })
    }

    /// `SET key data`.
    pub fn set(&mut self, data: &[u8]) -> Result<()> {
        match self.con.call(&[b"SET", self.key.as_bytes(), data]) {
            Ok(Reply::Status(_)) => Ok(()),
            Ok(other) => Err(unexpected("set", &other)),
            Err(e) => Err(redis_error("set", &self.url, TIMEOUT, e)),
        }
    }

    /// `GET key`.
    pub fn get(&mut self) -> Result<Option<Bytes>> {
        match self.con.call(&[b"GET", self.key.as_bytes()]) {
            Ok(Reply::Bulk(v)) => Ok(v.map(Bytes::from)),
            Ok(other) => Err(unexpected("get", &other)),
            Err(e) => Err(redis_error("get", &self.url, TIMEOUT, e)),
        }
    }
}

fn unexpected(op: &str, reply: &Reply) -> Error {
    Error::Transport {
        connector: "redis-raw".into(),
        source: format!("{op}: unexpected reply {reply:?}").into(),
    }
}

impl Drop for RawSetGet {
    fn drop(&mut self) {
        let _ = self.con.call(&[b"DEL", self.key.as_bytes()]);
    }
}

/// Plain SET/GET on the server at `url` as `proxystore bench`'s raw
/// baseline of the `redis` connector (`redis-raw`).
#[derive(Clone, Debug)]
pub struct RedisRaw {
    /// The server.
    pub url: String,
}

impl RawBaseline for RedisRaw {
    fn name(&self) -> &str {
        "redis-raw"
    }

    fn start(&self, payload: &Bytes) -> Result<Box<dyn RawSession>> {
        let mut raw = RawSetGet::connect(&self.url)?;
        raw.set(payload)?;
        Ok(Box::new(raw))
    }
}

impl RawSession for RawSetGet {
    fn put(&mut self, data: &Bytes) -> Result<()> {
        self.set(data)
    }

    fn get(&mut self) -> Result<Option<Bytes>> {
        RawSetGet::get(self)
    }
}
