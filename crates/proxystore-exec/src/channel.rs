//! The control channel between processes: length-prefixed frames over a
//! loopback (or cluster) TCP stream. A worker pool and its worker processes
//! talk over it, and so do the processes of `proxystore bench --scenario
//! farm`. Every read is bounded by a timeout and every frame by a size
//! limit, so a vanished or misbehaving peer is a typed error, never a hang
//! or an allocation of whatever length a corrupt header claims.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxystore_core::{Error, Result};

/// Largest frame a [`FrameStream`] accepts unless told otherwise
/// ([`FrameStream::set_max_frame`]): 4 GiB.
pub const MAX_FRAME: u64 = 4 << 30;

/// A connection that sends and receives whole frames: an 8-byte
/// little-endian length, then that many bytes.
#[derive(Debug)]
pub struct FrameStream {
    stream: TcpStream,
    peer: String,
    max_frame: u64,
}

impl FrameStream {
    /// Connects to `addr`, giving up after `timeout`.
    pub fn connect(
        addr: impl ToSocketAddrs + std::fmt::Display,
        timeout: Duration,
    ) -> Result<Self> {
        let name = addr.to_string();
        let unreachable = |reason: String| Error::PeerUnreachable {
            address: name.clone(),
            reason,
        };
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| unreachable(format!("cannot resolve the address: {e}")))?
            .collect();
        let mut last = String::from("the address resolves to nothing");
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => return Self::new(stream, name),
                Err(e) => last = e.to_string(),
            }
        }
        Err(unreachable(last))
    }

    /// Wraps an accepted stream.
    pub fn from_stream(stream: TcpStream) -> Result<Self> {
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "unknown peer".to_owned());
        Self::new(stream, peer)
    }

    fn new(stream: TcpStream, peer: String) -> Result<Self> {
        // Control messages are small and latency-bound.
        stream
            .set_nodelay(true)
            .map_err(|e| Error::io(format!("setting TCP_NODELAY on the channel to {peer}"), e))?;
        Ok(FrameStream {
            stream,
            peer,
            max_frame: MAX_FRAME,
        })
    }

    /// The peer's address, as errors name it.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Sets the largest frame [`recv`](Self::recv) accepts.
    pub fn set_max_frame(&mut self, bytes: u64) {
        self.max_frame = bytes;
    }

    /// Bounds each read: a [`recv`](Self::recv) that waits longer for the
    /// next bytes fails with [`Error::Timeout`]. `None` waits for ever
    /// (for a worker idling between tasks; its peer's exit still ends it).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.stream.set_read_timeout(timeout).map_err(|e| {
            Error::io(
                format!("setting the read timeout of the channel to {}", self.peer),
                e,
            )
        })
    }

    /// Bounds each write the same way.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.stream.set_write_timeout(timeout).map_err(|e| {
            Error::io(
                format!("setting the write timeout of the channel to {}", self.peer),
                e,
            )
        })
    }

    /// A second handle on the same connection (one thread reads while
    /// another writes).
    pub fn try_clone(&self) -> Result<Self> {
        let stream = self
            .stream
            .try_clone()
            .map_err(|e| Error::io(format!("cloning the channel to {}", self.peer), e))?;
        Ok(FrameStream {
            stream,
            peer: self.peer.clone(),
            max_frame: self.max_frame,
        })
    }

    /// Closes both directions; the peer's next read sees the end.
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Sends one frame made of `parts`, in order, without joining them
    /// (a large payload is written from where it is). The length and the
    /// parts go out in one vectored write where the socket takes them, so
    /// a small frame is one segment and wakes its reader once.
    pub fn send(&mut self, parts: &[&[u8]]) -> Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let head = (len as u64).to_le_bytes();
        let mut slices: Vec<IoSlice<'_>> = std::iter::once(&head[..])
            .chain(parts.iter().copied())
            .filter(|p| !p.is_empty())
            .map(IoSlice::new)
            .collect();
        write_all_vectored(&mut self.stream, &mut slices)
            .and_then(|()| self.stream.flush())
            .map_err(|e| self.failed("sending a frame", e))
    }

    /// Receives the next frame. `Ok(None)` means the peer closed the
    /// connection between frames (a clean end); closing inside a frame is
    /// [`Error::PeerUnreachable`] naming how much arrived.
    pub fn recv(&mut self) -> Result<Option<Bytes>> {
        let mut head = [0u8; 8];
        let got = read_full(&mut self.stream, &mut head)
            .map_err(|e| self.failed("reading a frame header", e))?;
        if got == 0 {
            return Ok(None);
        }
        if got < head.len() {
            return Err(self.truncated("frame header", got, head.len() as u64));
        }
        let len = u64::from_le_bytes(head);
        if len > self.max_frame {
            return Err(Error::TooLarge {
                what: "control-channel frame",
                size: len,
                limit: self.max_frame,
            });
        }
        let len = usize::try_from(len).map_err(|_| Error::TooLarge {
            what: "control-channel frame",
            size: len,
            limit: usize::MAX as u64,
        })?;
        let mut body = vec![0u8; len];
        let got = read_full(&mut self.stream, &mut body)
            .map_err(|e| self.failed("reading a frame body", e))?;
        if got < len {
            return Err(self.truncated("frame body", got, len as u64));
        }
        Ok(Some(Bytes::from(body)))
    }

    fn truncated(&self, what: &str, got: usize, want: u64) -> Error {
        Error::PeerUnreachable {
            address: self.peer.clone(),
            reason: format!("connection closed inside a {what} ({got} of {want} bytes arrived)"),
        }
    }

    fn failed(&self, doing: &'static str, e: io::Error) -> Error {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout {
                connector: format!("channel to {}", self.peer),
                op: doing,
                after: self
                    .stream
                    .read_timeout()
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
            },
            _ => Error::PeerUnreachable {
                address: self.peer.clone(),
                reason: format!("{doing}: {e}"),
            },
        }
    }
}

/// Writes every byte of `slices`, as few calls as the socket allows.
fn write_all_vectored(stream: &mut TcpStream, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        match stream.write_vectored(slices) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the socket took no bytes",
                ))
            }
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn read_full(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        match stream.read(&mut buf[at..]) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}

/// A listening socket for control channels on a free loopback port.
#[derive(Debug)]
pub struct FrameListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl FrameListener {
    /// Listens on `127.0.0.1` on a port the OS picks.
    pub fn loopback() -> Result<Self> {
        Self::bind("127.0.0.1:0")
    }

    /// Listens on `addr` (port 0 picks a free one).
    pub fn bind(addr: &str) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| Error::io(format!("listening for control channels on {addr}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the control listener's address", e))?;
        Ok(FrameListener { listener, addr })
    }

    /// The address peers connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits up to `timeout` for the next connection.
    pub fn accept(&self, timeout: Duration) -> Result<FrameStream> {
        let deadline = Instant::now() + timeout;
        self.listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("making the control listener non-blocking", e))?;
        let mut pause = Duration::from_micros(100);
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream
                        .set_nonblocking(false)
                        .map_err(|e| Error::io("making an accepted channel blocking", e))?;
                    return FrameStream::from_stream(stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(Error::Timeout {
                            connector: format!("control listener on {}", self.addr),
                            op: "waiting for a peer to connect",
                            after: timeout,
                        });
                    }
                    std::thread::sleep(pause.min(deadline - now));
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => return Err(Error::io(format!("accepting on {}", self.addr), e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pair() -> (FrameStream, FrameStream) {
        let l = FrameListener::loopback().unwrap();
        let a = FrameStream::connect(l.addr(), Duration::from_secs(5)).unwrap();
        let b = l.accept(Duration::from_secs(5)).unwrap();
        (a, b)
    }

    #[test]
    fn frames_round_trip_in_order_and_end_cleanly() {
        let (mut a, mut b) = pair();
        a.send(&[b"head", b"", b"tail"]).unwrap();
        a.send(&[]).unwrap();
        let big = vec![7u8; 3 << 20];
        a.send(&[&big]).unwrap();
        drop(a);
        assert_eq!(&b.recv().unwrap().unwrap()[..], b"headtail");
        assert!(b.recv().unwrap().unwrap().is_empty());
        assert_eq!(b.recv().unwrap().unwrap().len(), 3 << 20);
        assert!(b.recv().unwrap().is_none());
    }

    #[test]
    fn a_frame_cut_short_is_a_typed_error_naming_the_peer() {
        let l = FrameListener::loopback().unwrap();
        let mut raw = TcpStream::connect(l.addr()).unwrap();
        let mut b = l.accept(Duration::from_secs(5)).unwrap();
        raw.write_all(&100u64.to_le_bytes()).unwrap();
        raw.write_all(b"only ten b").unwrap();
        drop(raw);
        let e = b.recv().unwrap_err();
        assert!(matches!(e, Error::PeerUnreachable { .. }), "{e}");
        assert!(e.to_string().contains("10 of 100 bytes"), "{e}");
    }

    #[test]
    fn a_header_claiming_too_much_is_refused_before_allocating() {
        let (mut a, mut b) = pair();
        b.set_max_frame(1024);
        a.send(&[&[0u8; 2048]]).unwrap();
        assert!(matches!(b.recv(), Err(Error::TooLarge { size: 2048, .. })));
    }

    #[test]
    fn a_silent_peer_times_out() {
        let (_a, mut b) = pair();
        b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        assert!(matches!(b.recv(), Err(Error::Timeout { .. })));
    }

    #[test]
    fn nobody_connecting_times_out() {
        let l = FrameListener::loopback().unwrap();
        assert!(matches!(
            l.accept(Duration::from_millis(30)),
            Err(Error::Timeout { .. })
        ));
    }
}
