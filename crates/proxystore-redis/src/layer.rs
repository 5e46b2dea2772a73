//! The command layer: the handful of Redis commands the connector uses,
//! behind a trait so an in-process mock can stand in for a server. The real
//! layer speaks RESP (crate::resp) over pooled connections.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use proxystore_core::{Error, Result};

use crate::resp::{Connection, Endpoint, Reply};

/// The Redis commands the connector needs. Every call is bounded by the
/// layer's timeout.
pub trait CommandLayer: Send + Sync + fmt::Debug {
    /// SET each item (pipelined), with PX `ttl` if given.
    fn set(&self, items: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()>;
    /// GET one key, or MGET several, in order.
    fn get(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>>;
    /// EXISTS.
    fn exists(&self, key: &str) -> Result<bool>;
    /// DEL.
    fn del(&self, keys: &[String]) -> Result<()>;
    /// PEXPIRE; `false` if the key does not exist.
    fn pexpire(&self, key: &str, ttl: Duration) -> Result<bool>;
    /// Drops pooled connections.
    fn close(&self);
}

/// Maps a failed exchange to the core error, naming the operation and
/// server: the one place Redis failures are translated.
pub(crate) fn redis_error(
    op: &'static str,
    url: &str,
    timeout: Duration,
    e: std::io::Error,
) -> Error {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::TimedOut | K::WouldBlock => Error::Timeout {
            connector: "redis".into(),
            op,
            after: timeout,
        },
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::BrokenPipe
        | K::UnexpectedEof
        | K::NotFound
        | K::AddrNotAvailable => Error::PeerUnreachable {
            address: url.to_string(),
            reason: format!("{op}: {e}"),
        },
        K::PermissionDenied => Error::Config(format!("redis {url} refused authentication: {e}")),
        _ => Error::Transport {
            connector: "redis".into(),
            source: format!("{op} on {url}: {e}").into(),
        },
    }
}

/// Whether an exchange failed because the server had closed the connection
/// (not a timeout: that is not retried, it would double the wait).
fn closed_by_server(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::UnexpectedEof
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::BrokenPipe
            | K::NotConnected
    )
}

/// A Redis or KeyDB server, reached with the data-path RESP client.
pub struct RedisLayer {
    endpoint: Endpoint,
    /// The URL without credentials, for messages.
    url: String,
    timeout: Duration,
    max_bulk: u64,
    idle: Mutex<Vec<Connection>>,
}

impl fmt::Debug for RedisLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLayer")
            .field("url", &self.url)
            .finish()
    }
}

/// Idle connections kept; concurrent callers beyond this open more.
const IDLE: usize = 8;

impl RedisLayer {
    /// A layer for the server at `url` (`redis://host:port/db`,
    /// `unix:///path`), authenticating with `password` if given (else the
    /// URL's). Connections open on first use.
    pub fn open(
        url: &str,
        password: Option<&str>,
        timeout: Duration,
        max_bulk: u64,
    ) -> Result<Self> {
        let mut endpoint = Endpoint::parse(url)?;
        if let Some(pw) = password {
            endpoint.password = Some(pw.to_string());
        }
        let url = endpoint.display();
        Ok(RedisLayer {
            endpoint,
            url,
            timeout,
            max_bulk,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` on a pooled connection; a connection that failed is dropped
    /// (its stream may be mid-reply).
    ///
    /// A pooled connection the server closed while it sat idle (the server
    /// restarted) fails at once; the other idle ones date from the same
    /// server, so they are dropped too and `f` runs once more on a fresh
    /// connection. Every command here is idempotent (SET, GET, MGET,
    /// EXISTS, DEL, PEXPIRE), so running it again is safe. Without this, a
    /// restarted server cost one failed operation per pooled connection.
    fn with<T>(
        &self,
        op: &'static str,
        f: impl Fn(&mut Connection) -> std::io::Result<T>,
    ) -> Result<T> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(mut con) = pooled {
            match f(&mut con) {
                Ok(out) => {
                    self.give_back(con);
                    return Ok(out);
                }
                Err(e) if !closed_by_server(&e) => {
                    return Err(redis_error(op, &self.url, self.timeout, e))
                }
                Err(_) => self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear(),
            }
        }
        let mut con = Connection::connect(&self.endpoint, self.timeout, self.max_bulk)
            .map_err(|e| redis_error("connect", &self.url, self.timeout, e))?;
        let out = f(&mut con).map_err(|e| redis_error(op, &self.url, self.timeout, e))?;
        self.give_back(con);
        Ok(out)
    }

    fn give_back(&self, con: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE {
            idle.push(con);
        }
    }

    fn server_error(&self, op: &str, reply: Reply) -> Error {
        let text = match reply {
            Reply::Error(e) => e,
            other => format!("unexpected reply {other:?}"),
        };
        if text.starts_with("NOAUTH") || text.starts_with("WRONGPASS") {
            return Error::Config(format!("redis {}: {text}", self.url));
        }
        Error::Transport {
            connector: "redis".into(),
            source: format!("{op} on {}: {text}", self.url).into(),
        }
    }
}

fn px(ttl: Duration) -> String {
    // Redis rejects PX 0; round sub-millisecond TTLs up.
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
        .to_string()
}

impl CommandLayer for RedisLayer {
    fn set(&self, items: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()> {
        let ttl = ttl.map(px);
        let replies = self.with("set", |con| {
            // Pipelined: every SET goes out before the first reply is read.
            for (key, data) in &items {
                match &ttl {
                    Some(ms) => con.send(&[b"SET", key.as_bytes(), data, b"PX", ms.as_bytes()])?,
                    None => con.send(&[b"SET", key.as_bytes(), data])?,
                }
            }
            items
                .iter()
                .map(|_| con.read_reply())
                .collect::<std::io::Result<Vec<_>>>()
        })?;
        for reply in replies {
            if !matches!(reply, Reply::Status(_)) {
                return Err(self.server_error("set", reply));
            }
        }
        Ok(())
    }

    fn get(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let bulk = |r: Reply| match r {
            Reply::Bulk(v) => Ok(v.map(Bytes::from)),
            other => Err(self.server_error("get", other)),
        };
        match keys {
            [] => Ok(Vec::new()),
            [one] => {
                Ok(vec![bulk(self.with("get", |con| {
                    con.call(&[b"GET", one.as_bytes()])
                })?)?])
            }
            many => {
                let mut args: Vec<&[u8]> = vec![b"MGET"];
                args.extend(many.iter().map(|k| k.as_bytes()));
                match self.with("mget", |con| con.call(&args))? {
                    Reply::Array(Some(items)) => items.into_iter().map(bulk).collect(),
                    other => Err(self.server_error("mget", other)),
                }
            }
        }
    }

    fn exists(&self, key: &str) -> Result<bool> {
        match self.with("exists", |con| con.call(&[b"EXISTS", key.as_bytes()]))? {
            Reply::Int(n) => Ok(n > 0),
            other => Err(self.server_error("exists", other)),
        }
    }

    fn del(&self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut args: Vec<&[u8]> = vec![b"DEL"];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        match self.with("del", |con| con.call(&args))? {
            Reply::Int(_) => Ok(()),
            other => Err(self.server_error("del", other)),
        }
    }

    fn pexpire(&self, key: &str, ttl: Duration) -> Result<bool> {
        let ms = px(ttl);
        match self.with("pexpire", |con| {
            con.call(&[b"PEXPIRE", key.as_bytes(), ms.as_bytes()])
        })? {
            Reply::Int(n) => Ok(n == 1),
            other => Err(self.server_error("pexpire", other)),
        }
    }

    fn close(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
