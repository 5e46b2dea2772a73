//! Requests and replies as MPI point-to-point messages on the job's
//! duplicate communicator: the message path under `PeerConnector`
//! (put, exists, evict, and gets of objects no directory lists).
//!
//! A data server listens on a *port* tag (`1..PORTS`). A client connection
//! owns a tag `t` of this process (from [`CLIENT_TAGS`]): it sends a
//! request's header to the server's port tag and the request's frames on
//! `t`; the server replies with a header and frames on `t + REPLY`. MPI
//! keeps messages of one (source, tag) pair in order, so pipelined
//! requests and replies never mix, and the two directions of `t` never
//! match each other. A header is `PXMP`, the client tag (u32), the frame
//! count (u32), 4 zero bytes, then each frame's length (u64), little
//! endian; a frame over 1 GiB travels as 1 GiB pieces. Every receive is
//! sized by a matched probe (`MPI_Improbe`) and checked against the
//! announced length and `Limits::max_frame()` before a buffer exists.
//!
//! No wait is unbounded: probes poll until their deadline, and sends are
//! nonblocking and polled until theirs (a send still in flight at its
//! deadline keeps its buffer alive and is left to complete).

use std::ffi::c_int;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mpi::ffi;
use proxystore_core::{Error, Result};
use proxystore_peer::{pool, Frames};

use crate::raw::{check, Handle, Live};

/// Server port tags are `1..PORTS`.
pub(crate) const PORTS: u32 = 1000;
/// Client connection tags; replies come on `tag + REPLY` (all below the
/// 32767 every MPI allows).
const CLIENT_TAGS: std::ops::Range<c_int> = 1024..16_000;
const REPLY: c_int = 16_000;
const MAGIC: &[u8; 4] = b"PXMP";
const HEADER_FIXED: usize = 16;
const MAX_FRAMES: usize = 1 << 16;
const PIECE: usize = 1 << 30;
/// How long the rest of a message may take once its header arrived.
const BODY_WAIT: Duration = Duration::from_secs(10);

/// The job's duplicate communicator, shared by every server and client of
/// this process.
#[derive(Clone)]
pub(crate) struct Comm {
    comm: Handle<ffi::MPI_Comm>,
    rank: u32,
    live: Arc<Live>,
    free_tags: Arc<Mutex<Vec<c_int>>>,
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Comm").field("rank", &self.rank).finish()
    }
}

impl Comm {
    pub(crate) fn new(comm: Handle<ffi::MPI_Comm>, rank: u32, live: Arc<Live>) -> Self {
        Comm {
            comm,
            rank,
            live,
            free_tags: Arc::new(Mutex::new(CLIENT_TAGS.rev().collect())),
        }
    }

    /// Waits for every rank (see [`barrier`]).
    pub(crate) fn barrier(&self) -> Result<()> {
        let _live = self.live.enter()?;
        barrier(self.comm)
    }

    /// A server listening on port `port` of this rank.
    pub(crate) fn serve(&self, port: u32, max_frame: u64) -> Server {
        Server {
            comm: self.clone(),
            tag: port as c_int,
            max_frame,
        }
    }

    /// A connection to the server on `port` of `rank`.
    pub(crate) fn connect(&self, rank: u32, port: u32, max_frame: u64) -> Result<Client> {
        let tag = self
            .free_tags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .ok_or_else(|| Error::Transport {
                connector: crate::KIND.into(),
                source: format!(
                    "all {} client tags of rank {} are in use",
                    CLIENT_TAGS.len(),
                    self.rank
                )
                .into(),
            })?;
        Ok(Client {
            comm: self.clone(),
            rank: rank as c_int,
            port: port as c_int,
            tag,
            max_frame,
        })
    }

    fn send(
        &self,
        dest: c_int,
        header_tag: c_int,
        header: Vec<u8>,
        body_tag: c_int,
        frames: &Frames,
        deadline: Instant,
    ) -> Result<()> {
        let _live = self.live.enter()?;
        let mut parts: Vec<(c_int, &[u8])> = vec![(header_tag, &header)];
        for f in frames {
            if f.is_empty() {
                parts.push((body_tag, &f[..]));
            }
            parts.extend(f.chunks(PIECE).map(|p| (body_tag, p)));
        }
        // SAFETY: a null request handle is the documented initial value.
        let mut reqs = vec![unsafe { ffi::RSMPI_REQUEST_NULL }; parts.len()];
        for (req, (tag, buf)) in reqs.iter_mut().zip(&parts) {
            check(
                // SAFETY: `buf` stays alive and unmodified until the request
                // completes below, or is deliberately leaked if it does not.
                unsafe {
                    ffi::MPI_Isend(
                        buf.as_ptr().cast(),
                        buf.len() as c_int,
                        ffi::RSMPI_UINT8_T,
                        dest,
                        *tag,
                        self.comm.0,
                        req,
                    )
                },
                "MPI_Isend",
            )?;
        }
        let sent = poll(Some(deadline), || {
            let mut done: c_int = 0;
            check(
                // SAFETY: `reqs` holds requests started above (or null ones).
                unsafe {
                    ffi::MPI_Testall(
                        reqs.len() as c_int,
                        reqs.as_mut_ptr(),
                        &mut done,
                        ffi::RSMPI_STATUSES_IGNORE,
                    )
                },
                "MPI_Testall",
            )?;
            Ok((done != 0).then_some(()))
        })?;
        if sent.is_some() {
            return Ok(());
        }
        // The receiver is not taking the message. MPI may still read the
        // buffers: keep them alive for good and let the requests finish
        // on their own.
        std::mem::forget(header);
        std::mem::forget(frames.clone());
        for req in &mut reqs {
            // SAFETY: freeing an active send request lets it complete
            // without us; its buffer was leaked above.
            unsafe { ffi::MPI_Request_free(req) };
        }
        Err(Error::Transport {
            connector: crate::KIND.into(),
            source: format!("rank {dest} did not take a message in time").into(),
        })
    }

    /// Waits until `deadline` for a message from `source` with `tag`;
    /// `None` if none came.
    fn probe(
        &self,
        source: c_int,
        tag: c_int,
        deadline: Instant,
    ) -> Result<Option<(Matched, c_int, usize)>> {
        poll(Some(deadline), || {
            // The guard ends with each try: finalize may run between.
            let _live = self.live.enter()?;
            let mut flag: c_int = 0;
            // SAFETY: zeroed handle and status are out-parameters.
            let mut msg: ffi::MPI_Message = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let mut status: ffi::MPI_Status = unsafe { std::mem::zeroed() };
            check(
                // SAFETY: valid communicator and out-pointers.
                unsafe {
                    ffi::MPI_Improbe(source, tag, self.comm.0, &mut flag, &mut msg, &mut status)
                },
                "MPI_Improbe",
            )?;
            if flag != 0 {
                let mut count: c_int = 0;
                check(
                    // SAFETY: `status` was filled by the matched probe.
                    unsafe { ffi::MPI_Get_count(&status, ffi::RSMPI_UINT8_T, &mut count) },
                    "MPI_Get_count",
                )?;
                return Ok(Some((
                    Matched(Handle(msg)),
                    status.MPI_SOURCE,
                    count.max(0) as usize,
                )));
            }
            Ok(None)
        })
    }

    /// Receives a matched message of `len` bytes into `dst` (`None`:
    /// discards it).
    fn take(&self, m: Matched, dst: Option<&mut [u8]>) -> Result<()> {
        let _live = self.live.enter()?;
        let mut msg = m.0 .0;
        let keep = dst.is_some();
        let (ptr, len) = match dst {
            Some(d) => (d.as_mut_ptr(), d.len()),
            None => (std::ptr::null_mut(), 0),
        };
        // SAFETY: `msg` was matched by MPI_Improbe and is received once;
        // `ptr` is writable for `len` bytes (the probed size, or 0 to
        // discard, which MPI reports as truncation).
        let rc = unsafe {
            ffi::MPI_Mrecv(
                ptr.cast(),
                len as c_int,
                ffi::RSMPI_UINT8_T,
                &mut msg,
                ffi::RSMPI_STATUS_IGNORE,
            )
        };
        if keep {
            check(rc, "MPI_Mrecv")
        } else {
            Ok(())
        }
    }

    /// One message (header, then its frames on `body_tag`) from `source`;
    /// `None` if no header came by `deadline`. Frames over `max_frame`, or
    /// not of their announced size, drop the message.
    fn recv(
        &self,
        source: c_int,
        header_tag: c_int,
        body_tag: Option<c_int>,
        max_frame: u64,
        deadline: Instant,
    ) -> Result<Option<(c_int, c_int, Frames)>> {
        let Some((m, from, len)) = self.probe(source, header_tag, deadline)? else {
            return Ok(None);
        };
        if !(HEADER_FIXED..=HEADER_FIXED + 8 * MAX_FRAMES).contains(&len) {
            self.take(m, None)?;
            return Err(malformed(from, "header of impossible length"));
        }
        let mut header = vec![0u8; len];
        self.take(m, Some(&mut header))?;
        let (client_tag, lens) =
            parse_header(&header).ok_or_else(|| malformed(from, "bad header"))?;
        let body_tag = match body_tag {
            Some(t) => t,
            None if CLIENT_TAGS.contains(&client_tag) => client_tag,
            None => return Err(malformed(from, "request names no client tag")),
        };
        let body_deadline = Instant::now() + BODY_WAIT;
        let mut frames = Vec::with_capacity(lens.len());
        let mut ok = true;
        for len in lens {
            if len == 0 {
                let Some((m, _, _)) = self.probe(from, body_tag, body_deadline)? else {
                    return Err(malformed(from, "message body did not arrive"));
                };
                self.take(m, Some(&mut []))?;
                frames.push(Bytes::new());
                continue;
            }
            let fits = len <= max_frame;
            let mut buf = if fits { pool::take(len as usize) } else { None };
            let mut at = 0usize;
            let pieces = (len as usize).div_ceil(PIECE);
            for _ in 0..pieces {
                let Some((m, _, n)) = self.probe(from, body_tag, body_deadline)? else {
                    return Err(malformed(from, "message body did not arrive"));
                };
                match buf.as_mut() {
                    Some(b) if at + n <= len as usize => {
                        // SAFETY: the buffer holds `len` bytes; at + n <= len.
                        let dst =
                            unsafe { std::slice::from_raw_parts_mut(b.as_mut_ptr().add(at), n) };
                        self.take(m, Some(dst))?;
                        at += n;
                    }
                    _ => {
                        self.take(m, None)?;
                        ok = false;
                    }
                }
            }
            match buf {
                Some(b) if ok && at == len as usize => frames.push(pool::into_bytes(b, at)),
                _ => ok = false,
            }
        }
        if !ok {
            tracing::warn!(
                rank = from,
                "dropped a message with a frame over the limit or of the wrong size"
            );
            return Ok(None);
        }
        Ok(Some((from, client_tag, frames)))
    }
}

/// Waits for every rank of `comm`: `MPI_Ibarrier`, then `MPI_Test` with
/// sleeps between tries. Open MPI's blocking `MPI_Barrier` spins a core
/// while it waits, which starves this rank's data server thread (on two
/// cores, a put to a rank waiting in `MPI_Barrier` took 4 ms).
pub(crate) fn barrier(comm: Handle<ffi::MPI_Comm>) -> Result<()> {
    // SAFETY: a null request is the documented initial value.
    let mut req = unsafe { ffi::RSMPI_REQUEST_NULL };
    check(
        // SAFETY: valid communicator (the caller holds it live); every rank of
        // the job calls this.
        unsafe { ffi::MPI_Ibarrier(comm.0, &mut req) },
        "MPI_Ibarrier",
    )?;
    poll(None, || {
        let mut done: c_int = 0;
        check(
            // SAFETY: `req` was started above and is tested until complete.
            unsafe { ffi::MPI_Test(&mut req, &mut done, ffi::RSMPI_STATUS_IGNORE) },
            "MPI_Test",
        )?;
        Ok((done != 0).then_some(()))
    })?;
    Ok(())
}

/// Calls `attempt` until it yields a value, backing off between tries;
/// `None` once `deadline` (if any) has passed.
fn poll<T>(
    deadline: Option<Instant>,
    mut attempt: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let mut backoff = Backoff::new();
    loop {
        if let Some(v) = attempt()? {
            return Ok(Some(v));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        backoff.wait();
    }
}

fn malformed(rank: c_int, what: &str) -> Error {
    Error::Transport {
        connector: crate::KIND.into(),
        source: format!("rank {rank}: {what}").into(),
    }
}

fn header(client_tag: c_int, frames: &Frames) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_FIXED + 8 * frames.len());
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&(client_tag as u32).to_le_bytes());
    h.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    h.extend_from_slice(&[0; 4]);
    for f in frames {
        h.extend_from_slice(&(f.len() as u64).to_le_bytes());
    }
    h
}

fn parse_header(h: &[u8]) -> Option<(c_int, Vec<u64>)> {
    if h.get(..4)? != MAGIC {
        return None;
    }
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(h.get(at..at + 4)?.try_into().ok()?))
    };
    let tag = c_int::try_from(word(4)?).ok()?;
    let count = word(8)? as usize;
    if h.len() != HEADER_FIXED + 8 * count {
        return None;
    }
    let lens = h[HEADER_FIXED..]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    Some((tag, lens))
}

/// A message matched by a probe, received exactly once by [`Comm::take`].
struct Matched(Handle<ffi::MPI_Message>);

/// Polls fast at first, then sleeps up to 200 µs between tries (an idle
/// data server costs ~5000 probes a second; a request waits at most that).
struct Backoff(u32);

impl Backoff {
    fn new() -> Self {
        Backoff(0)
    }

    fn wait(&mut self) {
        self.0 += 1;
        match self.0 {
            0..=64 => std::hint::spin_loop(),
            65..=256 => std::thread::yield_now(),
            n => std::thread::sleep(Duration::from_micros((u64::from(n - 256) * 10).min(200))),
        }
    }
}

/// A data server's listening side: requests to one port of this rank.
pub(crate) struct Server {
    comm: Comm,
    tag: c_int,
    max_frame: u64,
}

/// Where a reply goes: the client's rank and tag.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReplyTo {
    rank: c_int,
    tag: c_int,
}

impl Server {
    pub(crate) fn recv(&mut self, timeout: Duration) -> Result<Option<(ReplyTo, Frames)>> {
        // SAFETY: reading an initialized static of the rsmpi shim.
        let any = unsafe { ffi::RSMPI_ANY_SOURCE };
        let got = self.comm.recv(
            any,
            self.tag,
            None,
            self.max_frame,
            Instant::now() + timeout,
        )?;
        Ok(got.map(|(rank, tag, frames)| (ReplyTo { rank, tag }, frames)))
    }

    pub(crate) fn send(&mut self, to: ReplyTo, frames: Frames) -> Result<()> {
        let tag = to.tag + REPLY;
        let h = header(0, &frames);
        self.comm
            .send(to.rank, tag, h, tag, &frames, Instant::now() + BODY_WAIT)
    }
}

/// One client connection; its tag goes back to the pool when dropped.
pub(crate) struct Client {
    comm: Comm,
    rank: c_int,
    port: c_int,
    tag: c_int,
    max_frame: u64,
}

impl Client {
    pub(crate) fn send(&mut self, frames: Frames, timeout: Duration) -> Result<()> {
        let h = header(self.tag, &frames);
        self.comm.send(
            self.rank,
            self.port,
            h,
            self.tag,
            &frames,
            Instant::now() + timeout,
        )
    }

    pub(crate) fn recv(&mut self, timeout: Duration) -> Result<Option<Frames>> {
        let tag = self.tag + REPLY;
        let got = self.comm.recv(
            self.rank,
            tag,
            Some(tag),
            self.max_frame,
            Instant::now() + timeout,
        )?;
        Ok(got.map(|(_, _, frames)| frames))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // A reply still in flight to this tag would reach the next client
        // that takes it; the request ids of the peer pool tell them apart
        // (replies to other exchanges are skipped).
        self.comm
            .free_tags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.tag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_reject_garbage() {
        let frames = vec![Bytes::from_static(b"abc"), Bytes::new()];
        let h = header(1500, &frames);
        assert_eq!(parse_header(&h), Some((1500, vec![3, 0])));
        assert_eq!(parse_header(&h[..h.len() - 1]), None);
        let mut bad = h.clone();
        bad[0] = b'X';
        assert_eq!(parse_header(&bad), None);
    }
}
