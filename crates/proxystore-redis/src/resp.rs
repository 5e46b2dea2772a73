//! A minimal blocking RESP2 client for the data path.
//!
//! Why not a general client: values are the payload here, and the general
//! clients copy them into a packed command buffer on every SET (a fresh
//! allocation per object, page faults and all) and read replies through a
//! small buffer in many reads. This one writes a value straight from its
//! [`Bytes`](bytes::Bytes) with vectored writes and reads a bulk reply with one exact-size
//! allocation, so a SET or GET costs what the socket costs.

use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use proxystore_core::{Error, Result};

/// Where a server listens, parsed from a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`, or the socket path for unix URLs.
    pub target: Target,
    /// Username for AUTH (Redis 6 ACLs).
    pub username: Option<String>,
    /// Password for AUTH.
    pub password: Option<String>,
    /// Database number (SELECT).
    pub db: u32,
}

/// TCP or unix-socket target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Host and port.
    Tcp(String, u16),
    /// Socket path.
    Unix(String),
}

impl Endpoint {
    /// Parses `redis://[[user]:password@]host[:port][/db]`,
    /// `unix:///path[?db=N]` or `redis+unix:///path[?db=N]`.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::Config(format!("redis url '{url}': {why}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected redis://host:port or unix:///path"))?;
        match scheme {
            "redis" => {
                let (creds, hostpart) = match rest.rsplit_once('@') {
                    Some((c, h)) => (Some(c), h),
                    None => (None, rest),
                };
                let (hostport, db) = match hostpart.split_once('/') {
                    Some((hp, "")) => (hp, 0),
                    Some((hp, db)) => (
                        hp,
                        db.parse().map_err(|_| bad("database must be a number"))?,
                    ),
                    None => (hostpart, 0),
                };
                let (host, port) = match hostport.rsplit_once(':') {
                    Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                        (h, p.parse().map_err(|_| bad("port must be a number"))?)
                    }
                    _ => (hostport, 6379),
                };
                if host.is_empty() {
                    return Err(bad("missing host"));
                }
                let host = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let (username, password) = match creds.map(|c| c.split_once(':')) {
                    None => (None, None),
                    Some(Some((u, p))) => {
                        ((!u.is_empty()).then(|| u.to_string()), Some(p.to_string()))
                    }
                    Some(None) => (None, creds.map(str::to_string)),
                };
                Ok(Endpoint {
                    target: Target::Tcp(host, port),
                    username,
                    password,
                    db,
                })
            }
            "unix" | "redis+unix" => {
                let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
                let mut db = 0;
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    match pair.split_once('=') {
                        Some(("db", n)) => {
                            db = n.parse().map_err(|_| bad("db must be a number"))?
                        }
                        _ => return Err(bad("only ?db=N is understood after a unix path")),
                    }
                }
                if path.is_empty() {
                    return Err(bad("missing socket path"));
                }
                Ok(Endpoint {
                    target: Target::Unix(path.to_string()),
                    username: None,
                    password: None,
                    db,
                })
            }
            other => Err(bad(&format!("unknown scheme '{other}'"))),
        }
    }

    /// The URL without credentials, for messages.
    pub fn display(&self) -> String {
        match (&self.target, self.db) {
            (Target::Tcp(h, p), 0) => format!("redis://{h}:{p}"),
            (Target::Tcp(h, p), db) => format!("redis://{h}:{p}/{db}"),
            (Target::Unix(path), 0) => format!("unix://{path}"),
            (Target::Unix(path), db) => format!("unix://{path}?db={db}"),
        }
    }
}

/// A reply from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and friends.
    Status(String),
    /// `-ERR ...`.
    Error(String),
    /// `:n`.
    Int(i64),
    /// `$n` bulk string, `None` for `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*n` array, `None` for `*-1`.
    Array(Option<Vec<Reply>>),
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// Replies held in memory (the fuzz target's input).
    Replay(io::Cursor<Vec<u8>>),
}

impl Stream {
    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
            Stream::Replay(s) => s,
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Values at least this long are written from their own buffer rather than
/// copied next to the command header.
const INLINE_MAX: usize = 16 << 10;
const READ_BUF: usize = 64 << 10;
/// Deepest nesting of arrays in a reply (the data path's replies nest
/// two deep); deeper ones are refused rather than recursed into.
const MAX_DEPTH: usize = 64;

/// One connection to a Redis server.
pub struct Connection {
    stream: Stream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Largest bulk reply accepted (checked before allocating).
    max_bulk: u64,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("resp::Connection")
    }
}

impl Connection {
    /// Connects, authenticates and selects the database, every step bounded
    /// by `timeout`.
    pub fn connect(endpoint: &Endpoint, timeout: Duration, max_bulk: u64) -> io::Result<Self> {
        let stream = match &endpoint.target {
            Target::Tcp(host, port) => {
                let mut last = io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host} resolves to no address"),
                );
                let mut found = None;
                for addr in (host.as_str(), *port).to_socket_addrs()? {
                    match TcpStream::connect_timeout(&addr, timeout) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                let s = found.ok_or(last)?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                Stream::Tcp(s)
            }
            Target::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                Stream::Unix(s)
            }
        };
        let mut con = Connection {
            stream,
            buf: vec![0; READ_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            max_bulk,
        };
        if let Some(pw) = &endpoint.password {
            let reply = match &endpoint.username {
                Some(user) => con.call(&[b"AUTH", user.as_bytes(), pw.as_bytes()])?,
                None => con.call(&[b"AUTH", pw.as_bytes()])?,
            };
            expect_ok(reply)?;
        }
        if endpoint.db != 0 {
            expect_ok(con.call(&[b"SELECT", endpoint.db.to_string().as_bytes()])?)?;
        }
        Ok(con)
    }

    /// A connection whose replies are `replies` (writes go nowhere useful):
    /// what the fuzz target reads.
    pub(crate) fn replay(replies: Vec<u8>, max_bulk: u64) -> Self {
        Connection {
            stream: Stream::Replay(io::Cursor::new(replies)),
            buf: vec![0; READ_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            max_bulk,
        }
    }

    /// Sends one command and reads its reply.
    pub fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        self.send(args)?;
        self.read_reply()
    }

    /// Queues one command on the socket (pipelining: read the replies later
    /// in order with [`Connection::read_reply`]).
    pub fn send(&mut self, args: &[&[u8]]) -> io::Result<()> {
        let mut head = Vec::with_capacity(64);
        let mut slices: Vec<(usize, usize, Option<&[u8]>)> = Vec::new();
        head.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        let mut mark = 0;
        for arg in args {
            head.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            if arg.len() < INLINE_MAX {
                head.extend_from_slice(arg);
                head.extend_from_slice(b"\r\n");
            } else {
                // Flush the header so far, then the value from its own buffer.
                slices.push((mark, head.len(), Some(arg)));
                mark = head.len();
                head.extend_from_slice(b"\r\n");
            }
        }
        slices.push((mark, head.len(), None));
        let mut io: Vec<IoSlice<'_>> = Vec::with_capacity(slices.len() * 2);
        for &(from, to, value) in &slices {
            if to > from {
                io.push(IoSlice::new(&head[from..to]));
            }
            if let Some(v) = value {
                io.push(IoSlice::new(v));
            }
        }
        write_all_vectored(self.stream.io(), &mut io)
    }

    /// Reads the next reply.
    pub fn read_reply(&mut self) -> io::Result<Reply> {
        self.read_nested(0)
    }

    /// Reads a reply inside `depth` arrays.
    fn read_nested(&mut self, depth: usize) -> io::Result<Reply> {
        let line = self.read_line()?;
        let (kind, body) = line.split_at(1);
        let text = || String::from_utf8_lossy(body).into_owned();
        let number = |b: &[u8]| -> io::Result<i64> {
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| protocol(format!("bad number {:?}", String::from_utf8_lossy(b))))
        };
        match kind[0] {
            b'+' => Ok(Reply::Status(text())),
            b'-' => Ok(Reply::Error(text())),
            b':' => Ok(Reply::Int(number(body)?)),
            b'$' => {
                let n = number(body)?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let n = n as u64;
                if n > self.max_bulk {
                    return Err(protocol(format!(
                        "bulk reply of {n} bytes exceeds the limit of {}",
                        self.max_bulk
                    )));
                }
                let mut value = vec![0u8; n as usize];
                self.read_exact_into(&mut value)?;
                let mut crlf = [0u8; 2];
                self.read_exact_into(&mut crlf)?;
                if crlf != *b"\r\n" {
                    return Err(protocol("bulk reply not terminated by CRLF".into()));
                }
                Ok(Reply::Bulk(Some(value)))
            }
            b'*' => {
                let n = number(body)?;
                if n < 0 {
                    return Ok(Reply::Array(None));
                }
                if depth == MAX_DEPTH {
                    return Err(protocol(format!(
                        "reply nests arrays deeper than {MAX_DEPTH}"
                    )));
                }
                // Bounded by what follows on the wire, not by allocation.
                let mut items = Vec::with_capacity((n as usize).min(1024));
                for _ in 0..n {
                    items.push(self.read_nested(depth + 1)?);
                }
                Ok(Reply::Array(Some(items)))
            }
            other => Err(protocol(format!("unknown reply type byte {other:#x}"))),
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let n = self.stream.io().read(&mut self.buf[self.end..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        self.end += n;
        Ok(())
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf[self.start..self.end]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let line = self.buf[self.start..self.start + i].to_vec();
                self.start += i + 2;
                if line.is_empty() {
                    return Err(protocol("empty reply line".into()));
                }
                return Ok(line);
            }
            if self.end == self.buf.len() {
                if self.start == 0 {
                    return Err(protocol("reply line longer than 64 KiB".into()));
                }
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            self.fill()?;
        }
    }

    /// Fills `out` from the buffer, then straight from the socket.
    fn read_exact_into(&mut self, out: &mut [u8]) -> io::Result<()> {
        let buffered = (self.end - self.start).min(out.len());
        out[..buffered].copy_from_slice(&self.buf[self.start..self.start + buffered]);
        self.start += buffered;
        if buffered < out.len() {
            self.stream.io().read_exact(&mut out[buffered..])?;
        }
        Ok(())
    }
}

fn write_all_vectored(w: &mut dyn ReadWrite, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "server stopped reading",
                ))
            }
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn protocol(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn expect_ok(reply: Reply) -> io::Result<()> {
    match reply {
        Reply::Status(_) => Ok(()),
        Reply::Error(e) => Err(io::Error::new(io::ErrorKind::PermissionDenied, e)),
        other => Err(protocol(format!("unexpected reply {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deeply_nested_arrays_are_refused_not_a_stack_overflow() {
        let mut replies = b"*1\r\n".repeat(1_000_000);
        replies.extend_from_slice(b":1\r\n");
        let mut con = Connection::replay(replies, 1 << 20);
        let e = con.read_reply().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        // Nesting as deep as the limit still reads.
        let mut replies = b"*1\r\n".repeat(MAX_DEPTH);
        replies.extend_from_slice(b":1\r\n");
        let mut reply = Connection::replay(replies, 1 << 20).read_reply().unwrap();
        for _ in 0..MAX_DEPTH {
            let Reply::Array(Some(mut items)) = reply else {
                panic!("not an array: {reply:?}");
            };
            reply = items.pop().unwrap();
        }
        assert_eq!(reply, Reply::Int(1));
    }

    #[test]
    fn urls_parse() {
        let e = Endpoint::parse("redis://:pw@10.0.0.1:7000/3").unwrap();
        assert_eq!(e.target, Target::Tcp("10.0.0.1".into(), 7000));
        assert_eq!(
            (e.username, e.password.as_deref(), e.db),
            (None, Some("pw"), 3)
        );
        let e = Endpoint::parse("redis://alice:pw@host").unwrap();
        assert_eq!(
            (e.target, e.username.as_deref()),
            (Target::Tcp("host".into(), 6379), Some("alice"))
        );
        let e = Endpoint::parse("unix:///run/redis.sock?db=2").unwrap();
        assert_eq!(
            (e.target, e.db),
            (Target::Unix("/run/redis.sock".into()), 2)
        );
        assert_eq!(
            Endpoint::parse("redis://[::1]:6380").unwrap().target,
            Target::Tcp("::1".into(), 6380)
        );
        for bad in [
            "http://x",
            "redis://",
            "redis://h:port",
            "redis://h/x",
            "unix://",
            "nothing",
        ] {
            assert!(
                matches!(Endpoint::parse(bad), Err(Error::Config(_))),
                "{bad}"
            );
        }
        assert!(!Endpoint::parse("redis://:secret@h")
            .unwrap()
            .display()
            .contains("secret"));
    }
}
