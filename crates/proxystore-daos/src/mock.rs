//! An in-process stand-in for a DAOS system at the layer: pools named by
//! `mock://<name>` (one per name per process, so a connector rebuilt from a
//! config reaches the same one), containers created on first open, hashed
//! KV objects with DAOS's semantics (a get of a missing key is size 0, a
//! short buffer is `-DER_REC2BIG`, removing a missing key is fine, a
//! zero-size put is a removal), and event queues whose events complete at
//! once or after an injectable delay. [`MockDaos::set_down`] makes a pool
//! unreachable (`-DER_UNREACH`).

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use daos_sys as d;

use crate::layer::{der_name, rc, Completion, DaosLayer, EventQueue, Handle, KvOp};

type Kv = HashMap<String, Bytes>;

/// One mock pool: its containers' KV objects, and what tests inject.
#[derive(Debug, Default)]
struct Pool {
    /// (container, object id) → KV object.
    objects: HashMap<(String, (u64, u64)), Kv>,
    down: bool,
    delay: Duration,
}

type Shared = Arc<Mutex<Pool>>;

fn pools() -> &'static Mutex<HashMap<String, Shared>> {
    static POOLS: OnceLock<Mutex<HashMap<String, Shared>>> = OnceLock::new();
    POOLS.get_or_init(Default::default)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The pool named by `mock://<name>`, created on first use.
fn pool(url: &str) -> Option<Shared> {
    let name = url.strip_prefix("mock://")?;
    Some(Arc::clone(
        lock(pools()).entry(name.to_string()).or_default(),
    ))
}

/// What an open handle refers to.
#[derive(Debug, Clone)]
enum Open {
    Pool(Shared),
    Cont(Shared, String),
    Kv(Shared, String, (u64, u64)),
}

/// The mock layer: its open handles over the process-wide mock pools.
#[derive(Debug, Default)]
pub struct MockDaos {
    handles: Mutex<Vec<Open>>,
}

impl MockDaos {
    /// A layer with no open handles.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the pool `url` (`mock://<name>`) unreachable (`true`) or
    /// serving again (`false`): connects and operations fail with
    /// `-DER_UNREACH`.
    pub fn set_down(url: &str, down: bool) {
        if let Some(p) = pool(url) {
            lock(&p).down = down;
        }
    }

    /// Delays every later event on the pool `url` by `delay` before it
    /// completes (calls without an event are not delayed).
    pub fn set_delay(url: &str, delay: Duration) {
        if let Some(p) = pool(url) {
            lock(&p).delay = delay;
        }
    }

    /// Stores `value` under the KV key `key` of every object of the pool
    /// `url` whose key is present, as if a foreign writer changed it
    /// (tests of a value that disagrees with its key's size).
    pub fn overwrite(url: &str, key: &str, value: Bytes) -> bool {
        let Some(p) = pool(url) else { return false };
        let mut p = lock(&p);
        let mut hit = false;
        for kv in p.objects.values_mut() {
            if let Some(v) = kv.get_mut(key) {
                *v = value.clone();
                hit = true;
            }
        }
        hit
    }

    fn add(&self, open: Open) -> Handle {
        let mut h = lock(&self.handles);
        h.push(open);
        Handle(h.len() as u64)
    }

    fn get(&self, h: Handle) -> Option<Open> {
        let i = usize::try_from(h.0).ok()?.checked_sub(1)?;
        lock(&self.handles).get(i).cloned()
    }
}

impl DaosLayer for MockDaos {
    fn init(&self) -> i32 {
        0
    }

    fn pool_connect(&self, url: &str) -> Result<Handle, i32> {
        let p = pool(url).ok_or(rc(d::daos_errno_DER_NONEXIST))?;
        if lock(&p).down {
            return Err(rc(d::daos_errno_DER_UNREACH));
        }
        Ok(self.add(Open::Pool(p)))
    }

    fn cont_open(&self, pool: Handle, container: &str) -> Result<Handle, i32> {
        match self.get(pool) {
            Some(Open::Pool(p)) if lock(&p).down => Err(rc(d::daos_errno_DER_UNREACH)),
            Some(Open::Pool(p)) => Ok(self.add(Open::Cont(p, container.to_string()))),
            _ => Err(rc(d::daos_errno_DER_NO_HDL)),
        }
    }

    fn kv_open(&self, container: Handle, oid: (u64, u64), _oclass: &str) -> Result<Handle, i32> {
        match self.get(container) {
            Some(Open::Cont(p, c)) => {
                lock(&p).objects.entry((c.clone(), oid)).or_default();
                Ok(self.add(Open::Kv(p, c, oid)))
            }
            _ => Err(rc(d::daos_errno_DER_NO_HDL)),
        }
    }

    fn eq_create(&self, kv: Handle) -> Result<Box<dyn EventQueue>, i32> {
        match self.get(kv) {
            Some(Open::Kv(pool, cont, oid)) => Ok(Box::new(MockQueue {
                pool,
                object: (cont, oid),
                pending: VecDeque::new(),
            })),
            _ => Err(rc(d::daos_errno_DER_NO_HDL)),
        }
    }

    fn close(&self, _pool: Handle, _container: Handle, _kv: Handle) {}

    fn errstr(&self, rc: i32) -> String {
        der_name(rc)
    }
}

/// A mock event queue: each launch runs against the pool at once; its
/// completion is released after the pool's injected delay.
struct MockQueue {
    pool: Shared,
    object: (String, (u64, u64)),
    pending: VecDeque<(Instant, Completion)>,
}

fn key_str(key: &CString) -> String {
    key.to_string_lossy().into_owned()
}

impl MockQueue {
    fn run(&self, op: KvOp) -> Completion {
        let mut pool = lock(&self.pool);
        if pool.down {
            return Completion {
                rc: rc(d::daos_errno_DER_UNREACH),
                ..Completion::default()
            };
        }
        let Some(kv) = pool.objects.get_mut(&self.object) else {
            return Completion {
                rc: rc(d::daos_errno_DER_NO_HDL),
                ..Completion::default()
            };
        };
        match op {
            // A zero-size single value is a punch in DAOS.
            KvOp::Put { key, value } if value.is_empty() => {
                kv.remove(&key_str(&key));
                Completion::default()
            }
            KvOp::Put { key, value } => {
                kv.insert(key_str(&key), value);
                Completion::default()
            }
            KvOp::Get { key, size } => {
                let Some(value) = kv.get(&key_str(&key)) else {
                    return Completion::default();
                };
                let actual = value.len() as u64;
                if size == 0 {
                    return Completion {
                        size: actual,
                        ..Completion::default()
                    };
                }
                if actual > size {
                    return Completion {
                        rc: rc(d::daos_errno_DER_REC2BIG),
                        size: actual,
                        ..Completion::default()
                    };
                }
                // A DAOS read lands in the caller's buffer: one copy.
                Completion {
                    size: actual,
                    data: Some(value.to_vec()),
                    ..Completion::default()
                }
            }
            KvOp::Remove { key } => {
                kv.remove(&key_str(&key));
                Completion::default()
            }
        }
    }
}

impl EventQueue for MockQueue {
    fn launch(&mut self, tag: usize, op: KvOp) -> i32 {
        let delay = lock(&self.pool).delay;
        let mut done = self.run(op);
        done.tag = tag;
        self.pending.push_back((Instant::now() + delay, done));
        0
    }

    fn poll(&mut self, timeout: Duration, out: &mut Vec<Completion>) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            let before = out.len();
            let mut i = 0;
            while i < self.pending.len() {
                if self.pending[i].0 <= now {
                    if let Some((_, c)) = self.pending.remove(i) {
                        out.push(c);
                    }
                } else {
                    i += 1;
                }
            }
            let n = out.len() - before;
            if n > 0 || self.pending.is_empty() || now >= deadline {
                return i32::try_from(n).unwrap_or(i32::MAX);
            }
            let next = self
                .pending
                .iter()
                .map(|(t, _)| *t)
                .min()
                .unwrap_or(deadline);
            std::thread::sleep(next.min(deadline) - now);
        }
    }

    fn in_flight(&self) -> usize {
        self.pending.len()
    }

    fn abort(&mut self) {
        self.pending.clear();
    }
}
