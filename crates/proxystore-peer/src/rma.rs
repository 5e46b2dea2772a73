//! One-sided reads, written once for every transport that has them (UCX
//! now; libfabric and MPI next).
//!
//! A transport supplies only its memory calls through [`OneSided`]:
//! register a buffer, read a registered region of a peer, send a peer a
//! short release. The protocol around them lives here:
//!
//! - **Who reads one-sided.** A client whose layer reads one-sided sets
//!   [`ACCEPTS_REMOTE`](crate::wire::ACCEPTS_REMOTE) on its gets; an owner
//!   answers such a get with a descriptor instead of the bytes for objects
//!   of [`REMOTE_MIN`] bytes and more (smaller ones ride in the reply: a
//!   one-sided read costs an extra round trip).
//! - **Descriptors.** `[address u64][length u64][token u64][remote key]`,
//!   little endian; the remote key is the transport's (UCX: a packed rkey).
//! - **Pins.** Each descriptor handed out pins its registration until the
//!   reader releases it (`[address][length][token]`, the descriptor's first
//!   24 bytes, sent back by [`OneSided::send_release`]) or [`GRACE`] passes.
//!   The registration keeps a clone of the object's `Bytes`, so a reader
//!   holding a descriptor never reads freed memory, even if the object is
//!   evicted meanwhile. Unpinned registrations that are costly to make stay
//!   [`IDLE_UNPINNED`] for the next get of the same object; cheap ones
//!   (memory that stays registered, like a staged slab) go at once.
//! - **Deadlines.** A read gets what is left of its get's timeout, and at
//!   most [`READ_MAX`] (half of [`GRACE`]): a read that completes read
//!   memory the owner still held (the owner pins before it replies; the
//!   reader's budget starts earlier).
//!
//! [`Exposures`] is the owner's side, [`read`] the reader's.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxystore_core::{Error, Key, ObjectId, Result};

/// Objects smaller than this are always sent inline: a one-sided read
/// costs an extra round trip that only pays off for large objects.
pub const REMOTE_MIN: usize = 64 << 10;
/// How long a registration outlives its last use, pinned or not.
pub const GRACE: Duration = Duration::from_secs(60);
/// Longest wait for one read, whatever the store's timeout (see the module
/// docs).
pub const READ_MAX: Duration = Duration::from_secs(30);
/// How long an unpinned, costly registration is kept for reuse.
pub const IDLE_UNPINNED: Duration = Duration::from_secs(5);
/// Registrations are swept at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Bytes before the remote key in a descriptor; also a release's length.
pub const RELEASE_LEN: usize = 24;

/// A transport's one-sided memory calls. Reached through
/// [`SocketLayer::one_sided`](crate::SocketLayer::one_sided); everything else about one-sided reads is
/// this module's.
pub trait OneSided: Send + Sync {
    /// Whether this process reads objects one-sided when an owner offers a
    /// descriptor, and stages what it puts (a transport may make this a
    /// setting: UCX reads it from `PROXYSTORE_UCX_ONE_SIDED` and `UCX_TLS`).
    /// An owner exposes objects to readers that ask either way.
    fn reads_one_sided(&self) -> bool {
        true
    }

    /// Whether a get from the owner at `owner` asks for a descriptor; the
    /// default is [`OneSided::reads_one_sided`]. (libfabric decides by the
    /// provider the owner's address names, before any endpoint is open.)
    fn reads_one_sided_from(&self, owner: &str) -> bool {
        let _ = owner;
        self.reads_one_sided()
    }

    /// Objects of at least this many bytes are staged (see
    /// [`OneSided::stage`]); the default is [`REMOTE_MIN`], below which
    /// gets carry the bytes anyway.
    fn stage_min(&self) -> usize {
        REMOTE_MIN
    }

    /// The object this process is about to store and serve, moved where
    /// the transport reads it fastest from (UCX: registered slabs that
    /// shared-memory peers map directly). The default keeps it in place.
    fn stage(&self, data: Bytes) -> Bytes {
        data
    }

    /// Object `id` (staged by [`OneSided::stage`] where it was large
    /// enough) is now served by this process. A transport whose readers
    /// find objects without asking the owner (MPI: a directory in window
    /// memory) lists it; the default does nothing.
    fn published(&self, id: ObjectId, data: &Bytes) {
        let _ = (id, data);
    }

    /// Object `id` is about to leave this process's table; once this
    /// returns, no reader may find it through [`OneSided::published`]'s
    /// listing (its memory may be reused next).
    fn withdrawn(&self, id: ObjectId) {
        let _ = id;
    }

    /// Reads `key` from its owner with no request to the owner (MPI:
    /// a passive-target read of the owner's directory, then of the
    /// object), within `timeout`. `None` (the default, and for objects the
    /// owner has not listed): the get goes to the owner as a request.
    fn get_direct(&self, key: &Key, timeout: Duration) -> Option<Result<Bytes>> {
        let _ = (key, timeout);
        None
    }

    /// Registers `data`'s memory for reads by peers.
    fn register(&self, data: &Bytes) -> Result<Registration>;

    /// Reads `region` of the owner at `address` into memory of this
    /// process, waiting at most `timeout`.
    fn read(&self, address: &str, region: Region, timeout: Duration) -> Result<Bytes>;

    /// Sends `release` (a descriptor's first [`RELEASE_LEN`] bytes) to the owner at
    /// `address`, best effort and without waiting: a lost release only
    /// keeps memory registered until [`GRACE`] passes.
    fn send_release(&self, address: &str, release: Bytes);

    /// A data server of this process now serves at `address` and hands
    /// out descriptors from `exposures`: releases sent to `address` go to
    /// [`Expose::release`], and the transport's idle loop (if it has one)
    /// calls [`Expose::sweep`].
    fn accept_releases(&self, address: &str, exposures: Arc<dyn Expose>);
}

/// Memory a transport registered; dropping `keep` deregisters it.
pub struct Registration {
    /// What a reader needs besides address and length (UCX: the packed rkey).
    pub remote_key: Bytes,
    /// Registering this memory again costs nothing (it stays registered
    /// anyway, like a staged slab): unpinned, it is let go at once.
    pub cheap: bool,
    /// Holds the registration; dropped (never under a transport lock the
    /// drop needs) when the registration ends.
    pub keep: Box<dyn Send + Sync>,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("remote_key_len", &self.remote_key.len())
            .field("cheap", &self.cheap)
            .finish()
    }
}

/// A remote region a descriptor names.
#[derive(Clone, Debug)]
pub struct Region {
    /// Address in the owner's memory.
    pub addr: u64,
    /// Length in bytes.
    pub len: usize,
    /// The transport's remote key (a slice of the descriptor, not a copy).
    pub remote_key: Bytes,
}

/// The descriptor for `len` bytes at `addr`.
fn descriptor(addr: usize, len: usize, token: u64, remote_key: &[u8]) -> Bytes {
    let mut desc = Vec::with_capacity(RELEASE_LEN + remote_key.len());
    desc.extend_from_slice(&(addr as u64).to_le_bytes());
    desc.extend_from_slice(&(len as u64).to_le_bytes());
    desc.extend_from_slice(&token.to_le_bytes());
    desc.extend_from_slice(remote_key);
    Bytes::from(desc)
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)?.try_into().ok().map(u64::from_le_bytes)
}

/// Parses a descriptor from an owner: the region, and the release to send
/// back once it is read.
fn parse_descriptor(desc: &Bytes) -> Option<(Region, Bytes)> {
    let addr = le_u64(desc, 0)?;
    let len = usize::try_from(le_u64(desc, 8)?).ok()?;
    let region = Region {
        addr,
        len,
        remote_key: desc.get(RELEASE_LEN..).map(|_| desc.slice(RELEASE_LEN..))?,
    };
    Some((region, desc.slice(0..RELEASE_LEN)))
}

/// Reads the object `desc` (an owner's answer to a get) describes from
/// the owner at `address`, within `timeout` (capped at [`READ_MAX`]), no
/// larger than `max_len`, and releases the descriptor whatever the outcome.
pub fn read(
    one_sided: &dyn OneSided,
    connector: &str,
    address: &str,
    desc: &Bytes,
    max_len: u64,
    timeout: Duration,
) -> Result<Bytes> {
    let (region, release) = parse_descriptor(desc).ok_or_else(|| Error::Transport {
        connector: connector.into(),
        source: format!(
            "peer {address}: remote descriptor of {} bytes is malformed",
            desc.len()
        )
        .into(),
    })?;
    if region.len as u64 > max_len {
        one_sided.send_release(address, release);
        return Err(Error::TooLarge {
            what: "one-sided read",
            size: region.len as u64,
            limit: max_len,
        });
    }
    let out = one_sided.read(address, region, timeout.min(READ_MAX));
    one_sided.send_release(address, release);
    out
}

struct Pinned {
    registration: Registration,
    desc: Bytes,
    /// Keeps the registered memory alive while peers may read it.
    _data: Bytes,
    last_used: Instant,
    /// Descriptors handed out whose reads have not been released yet.
    pins: u32,
}

struct Table {
    pinned: HashMap<(usize, usize), Pinned>,
    last_sweep: Instant,
}

/// How [`Exposures`] reaches a layer's one-sided calls (for a socket
/// layer: `SocketLayer::one_sided`).
pub type OneSidedOf<L> = fn(&L) -> Option<&dyn OneSided>;

/// The owner's side: registrations of served objects, pinned per
/// descriptor handed out, released by readers, swept when stale.
pub struct Exposures<L> {
    layer: Arc<L>,
    one_sided: OneSidedOf<L>,
    table: Mutex<Table>,
}

impl<L> fmt::Debug for Exposures<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exposures")
            .field("registered", &self.lock().pinned.len())
            .finish()
    }
}

impl<L> Exposures<L> {
    /// Registrations of objects served over `layer`, whose one-sided calls
    /// `one_sided` gives (`Exposures::for_layer` for a socket layer).
    pub fn new(layer: Arc<L>, one_sided: OneSidedOf<L>) -> Self {
        Exposures {
            layer,
            one_sided,
            table: Mutex::new(Table {
                pinned: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many registrations are held.
    pub fn registered(&self) -> usize {
        self.lock().pinned.len()
    }
}

/// What a data server's handler needs of [`Exposures`], whatever the
/// transport.
pub trait Expose: Send + Sync + fmt::Debug {
    /// A descriptor for `data` (registered on first use, pinned until
    /// released), or `None` where it is small or cannot be registered:
    /// then the bytes go in the reply.
    fn expose(&self, data: &Bytes) -> Option<Bytes>;

    /// A reader finished with a descriptor: unpins it. Stale or forged
    /// releases are ignored.
    fn release(&self, release: &[u8]);

    /// Lets go of registrations past their time; cheap to call often.
    fn sweep(&self);

    /// `data` moved where the transport reads it fastest, for an object
    /// this process is about to serve (see [`OneSided::stage`]).
    fn stage(&self, data: Bytes) -> Bytes;

    /// See [`OneSided::published`].
    fn published(&self, id: ObjectId, data: &Bytes);

    /// See [`OneSided::withdrawn`].
    fn withdrawn(&self, id: ObjectId);
}

impl<L: Send + Sync> Expose for Exposures<L> {
    fn expose(&self, data: &Bytes) -> Option<Bytes> {
        if data.len() < REMOTE_MIN {
            return None;
        }
        let one_sided = (self.one_sided)(&self.layer)?;
        self.sweep();
        let key = (data.as_ptr() as usize, data.len());
        if let Some(p) = self.lock().pinned.get_mut(&key) {
            p.last_used = Instant::now();
            p.pins += 1;
            return Some(p.desc.clone());
        }
        // Registered outside the table lock: the transport may take its own.
        let registration = match one_sided.register(data) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "could not register an object; sending it inline");
                return None;
            }
        };
        let token = ObjectId::random().as_u128() as u64;
        let desc = descriptor(key.0, key.1, token, &registration.remote_key);
        let mut table = self.lock();
        // Another thread may have registered the same object meanwhile:
        // keep the first, drop ours (after the lock).
        let (desc, extra) = match table.pinned.get_mut(&key) {
            Some(p) => {
                p.pins += 1;
                p.last_used = Instant::now();
                (p.desc.clone(), Some(registration))
            }
            None => {
                table.pinned.insert(
                    key,
                    Pinned {
                        registration,
                        desc: desc.clone(),
                        _data: data.clone(),
                        last_used: Instant::now(),
                        pins: 1,
                    },
                );
                (desc, None)
            }
        };
        drop(table);
        drop(extra);
        Some(desc)
    }

    fn release(&self, release: &[u8]) {
        let (Some(addr), Some(len), Some(token)) =
            (le_u64(release, 0), le_u64(release, 8), le_u64(release, 16))
        else {
            return;
        };
        let key = (addr as usize, len as usize);
        let mut table = self.lock();
        let Some(p) = table.pinned.get_mut(&key) else {
            return;
        };
        if le_u64(&p.desc, 16) != Some(token) || p.pins == 0 {
            return; // stale or forged
        }
        p.pins -= 1;
        let gone = if p.pins == 0 && p.registration.cheap {
            table.pinned.remove(&key)
        } else {
            None
        };
        drop(table);
        drop(gone);
    }

    fn sweep(&self) {
        if self.lock().last_sweep.elapsed() >= SWEEP_EVERY {
            self.sweep_as_of(Instant::now());
        }
    }

    fn stage(&self, data: Bytes) -> Bytes {
        match (self.one_sided)(&self.layer) {
            Some(o) if o.reads_one_sided() && data.len() >= o.stage_min() => o.stage(data),
            _ => data,
        }
    }

    fn published(&self, id: ObjectId, data: &Bytes) {
        if let Some(o) = (self.one_sided)(&self.layer) {
            o.published(id, data);
        }
    }

    fn withdrawn(&self, id: ObjectId) {
        if let Some(o) = (self.one_sided)(&self.layer) {
            o.withdrawn(id);
        }
    }
}

impl<L> Exposures<L> {
    /// Lets go of every registration stale at `now` (tests pass a time in
    /// the future instead of waiting).
    pub fn sweep_as_of(&self, now: Instant) {
        let mut table = self.lock();
        table.last_sweep = Instant::now();
        let stale: Vec<_> = table
            .pinned
            .iter()
            .filter(|(_, p)| {
                let idle = now.saturating_duration_since(p.last_used);
                idle >= GRACE || (p.pins == 0 && idle >= IDLE_UNPINNED)
            })
            .map(|(k, _)| *k)
            .collect();
        let gone: Vec<Pinned> = stale
            .iter()
            .filter_map(|k| table.pinned.remove(k))
            .collect();
        // Deregistered after the lock: the transport may take its own.
        drop(table);
        drop(gone);
    }
}
