//! The client side: cached connections to peers, bounded in how many peers
//! stay connected and for how long, and the pipelined request exchange
//! over them.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proxystore_core::{Error, Result};

use crate::transport::{ClientSocket, SocketLayer};
use crate::wire::{Limits, Message};

/// Idle connections kept per peer; more concurrent callers open more, and
/// the surplus is closed when they finish.
const IDLE_PER_PEER: usize = 8;

/// How many peers a pool keeps connections to, and for how long.
///
/// A reader of a 10,000-node job may talk to thousands of owners; each
/// connection costs descriptors and memory in the reader (and in libzmq,
/// an I/O thread's attention). Peers beyond `max_peers` are closed least
/// recently used first, and a peer unused for `idle_timeout` is closed; a
/// later request reconnects (first contact again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolLimits {
    /// Most peers with idle connections kept.
    pub max_peers: usize,
    /// Idle connections to a peer unused this long are closed.
    pub idle_timeout: Duration,
}

impl Default for PoolLimits {
    /// 512 peers, 5 minutes.
    fn default() -> Self {
        PoolLimits {
            max_peers: 512,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// One peer's idle connections.
struct Peer<C> {
    conns: Vec<C>,
    last_used: Instant,
}

struct Idle<C> {
    peers: HashMap<String, Peer<C>>,
    last_sweep: Instant,
}

/// Cached client connections, one pool per peer address; safe to use from
/// many threads (each call takes a connection out, then gives it back).
pub struct ClientPool<L: SocketLayer> {
    layer: Arc<L>,
    limits: Limits,
    bounds: PoolLimits,
    idle: Mutex<Idle<L::Client>>,
    next_id: AtomicU64,
}

impl<L: SocketLayer> fmt::Debug for ClientPool<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientPool")
            .field("transport", &self.layer.name())
            .field("bounds", &self.bounds)
            .finish()
    }
}

impl<L: SocketLayer> ClientPool<L> {
    /// An empty pool over `layer` with the default [`PoolLimits`].
    pub fn new(layer: Arc<L>, limits: Limits) -> Self {
        Self::bounded(layer, limits, PoolLimits::default())
    }

    /// An empty pool over `layer` keeping at most what `bounds` allows.
    pub fn bounded(layer: Arc<L>, limits: Limits, bounds: PoolLimits) -> Self {
        ClientPool {
            layer,
            limits,
            bounds,
            idle: Mutex::new(Idle {
                peers: HashMap::new(),
                last_sweep: Instant::now(),
            }),
            next_id: AtomicU64::new(1),
        }
    }

    /// Sends every request to `address`, all before waiting for the first
    /// reply, and returns the replies in request order. The whole exchange
    /// is bounded by `timeout`; a silent peer is [`Error::PeerUnreachable`].
    pub fn call(
        &self,
        address: &str,
        mut requests: Vec<Message>,
        timeout: Duration,
    ) -> Result<Vec<Message>> {
        let deadline = Instant::now() + timeout;
        let mut conn = self.take(address)?;
        let mut order = HashMap::with_capacity(requests.len());
        for (i, req) in requests.iter_mut().enumerate() {
            req.request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
            order.insert(req.request_id, i);
        }
        let unreachable = |reason: String| Error::PeerUnreachable {
            address: address.to_string(),
            reason,
        };
        for req in &requests {
            conn.send(req.encode(), remaining(deadline))
                .map_err(|e| match e {
                    // The transport knows better than "unreachable" (a
                    // refused security handshake, a bad address).
                    e @ (Error::Unauthorized { .. } | Error::Config(_)) => e,
                    e => unreachable(format!("send failed: {e}")),
                })?;
        }
        let mut replies: Vec<Option<Message>> = requests.iter().map(|_| None).collect();
        let mut missing = replies.len();
        while missing > 0 {
            let left = remaining(deadline);
            let frames = match conn.recv(left)? {
                Some(f) => f,
                None if left.is_zero() || Instant::now() >= deadline => {
                    // The connection may still get the late replies: drop it.
                    return Err(unreachable(format!(
                        "no reply within {timeout:?} (peer dead or overloaded)"
                    )));
                }
                None => continue,
            };
            let reply = Message::decode(frames, &self.limits).map_err(|e| Error::Transport {
                connector: self.layer.name().into(),
                source: format!("malformed reply from {address}: {e}").into(),
            })?;
            // Replies to an earlier, timed-out exchange are skipped.
            if let Some(&i) = order.get(&reply.request_id) {
                if reply.response && replies[i].is_none() {
                    replies[i] = Some(reply);
                    missing -= 1;
                }
            }
        }
        self.give_back(address, conn);
        Ok(replies.into_iter().flatten().collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle<L::Client>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, address: &str) -> Result<L::Client> {
        let pooled = self.lock().peers.get_mut(address).and_then(|p| {
            p.last_used = Instant::now();
            p.conns.pop()
        });
        match pooled {
            Some(c) => Ok(c),
            None => self.layer.connect(address, &self.limits),
        }
    }

    fn give_back(&self, address: &str, conn: L::Client) {
        let now = Instant::now();
        // Closed after the lock is released: closing may take a while.
        let mut closing: Vec<L::Client> = Vec::new();
        {
            let mut idle = self.lock();
            // Addresses run to hundreds of bytes (UCX): copy one only for a new peer.
            match idle.peers.get_mut(address) {
                Some(p) => {
                    p.last_used = now;
                    if p.conns.len() < IDLE_PER_PEER {
                        p.conns.push(conn);
                    } else {
                        closing.push(conn);
                    }
                }
                None => {
                    idle.peers.insert(
                        address.to_string(),
                        Peer {
                            conns: vec![conn],
                            last_used: now,
                        },
                    );
                }
            }
            self.bound(&mut idle, now, address, &mut closing);
        }
        drop(closing);
    }

    /// Closes peers unused for the idle timeout (checked at most every
    /// quarter of it) and the least recently used beyond the cap (never
    /// `current`, the one just used).
    fn bound(
        &self,
        idle: &mut Idle<L::Client>,
        now: Instant,
        current: &str,
        closing: &mut Vec<L::Client>,
    ) {
        let timeout = self.bounds.idle_timeout;
        if now.duration_since(idle.last_sweep) >= timeout / 4 {
            idle.last_sweep = now;
            idle.peers.retain(|_, p| {
                let keep = now.duration_since(p.last_used) < timeout;
                if !keep {
                    closing.append(&mut p.conns);
                }
                keep
            });
        }
        while idle.peers.len() > self.bounds.max_peers.max(1) {
            let Some(oldest) = idle
                .peers
                .iter()
                .filter(|(a, _)| a.as_str() != current)
                .min_by_key(|(_, p)| p.last_used)
                .map(|(a, _)| a.clone())
            else {
                break;
            };
            if let Some(mut p) = idle.peers.remove(&oldest) {
                closing.append(&mut p.conns);
            }
        }
    }

    /// Peers this pool holds idle connections to (at most
    /// [`PoolLimits::max_peers`]).
    pub fn idle_peers(&self) -> usize {
        self.lock().peers.len()
    }

    /// Closes every idle connection.
    pub fn clear(&self) {
        let peers = std::mem::take(&mut self.lock().peers);
        drop(peers);
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}
