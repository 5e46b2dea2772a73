//! The shared-memory arena of the `shm` connector (option `arena_bytes`).
//!
//! Each producing process puts into one pre-faulted arena file per
//! directory, `<dir>/arenas/<name>.arena` (see `sweep` for the name), so a
//! put is a copy into memory that is already there instead of a new tmpfs
//! file whose every page faults. A key names the block:
//! `<id>.<len>@arena:<name>:<slot>:<generation>:<offset>`. Any process
//! that sees the directory maps the arena once and reads views of it.
//!
//! Reuse rule: a reader pins a block (a CAS on its slot's state that
//! requires the key's generation and a published object); the view
//! unpins on drop. `evict`, from any process, marks the slot evicted; the
//! owner reuses a block only after it is evicted *and* its pin count is 0,
//! and bumps the generation when it publishes the next object there, so an
//! old key can neither pin nor read the new object.

mod alloc;
mod block;
mod location;
pub(crate) mod sweep;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use proxystore_core::{Error, Key, ObjectId, Result};

use alloc::Allocator;
use block::{state, ArenaMap, Geometry, Slot, PAGE};
pub(crate) use location::Location;

/// Subdirectory of the connector's directory holding the arenas.
pub(crate) const ARENAS_DIR: &str = "arenas";
/// Smallest `arena_bytes` accepted.
pub(crate) const MIN_ARENA_BYTES: usize = 64 << 10;
/// One slot per this many arena bytes (so 16 KiB objects fill both at once).
const BYTES_PER_SLOT: u64 = 16 << 10;
/// Bound on CAS retries against other processes' pins (lock-free, so this
/// is only hit under pathological contention).
const CAS_RETRIES: usize = 1 << 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The path of arena `name` under connector directory `dir`.
pub(crate) fn arena_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(ARENAS_DIR).join(format!("{name}.arena"))
}

/// A process's own arena in one directory, and its allocator.
#[derive(Debug)]
pub(crate) struct Producer {
    map: Arc<ArenaMap>,
    alloc: Mutex<Allocator>,
    /// Larger objects go to files (a quarter of the arena: one object never
    /// takes the whole of it).
    max_object: u64,
}

type Producers = Mutex<HashMap<PathBuf, Arc<Producer>>>;
type Maps = Mutex<HashMap<PathBuf, Arc<ArenaMap>>>;

/// This process's arenas, by directory: one per process and directory,
/// shared by every connector on it, alive until the process exits or its
/// directory is removed (then dropped at the next arena's creation).
fn producers() -> &'static Producers {
    static PRODUCERS: OnceLock<Producers> = OnceLock::new();
    PRODUCERS.get_or_init(Default::default)
}

/// Every arena this process mapped (its own and others'), by path.
fn maps() -> &'static Maps {
    static MAPS: OnceLock<Maps> = OnceLock::new();
    MAPS.get_or_init(Default::default)
}

impl Producer {
    /// This process's arena in `dir`, created (after a sweep of stale
    /// arenas) on first use with `arena_bytes` of blocks.
    pub(crate) fn for_dir(dir: &Path, arena_bytes: usize) -> Result<Arc<Producer>> {
        let canonical = dir
            .canonicalize()
            .map_err(|e| Error::io(format!("resolving {}", dir.display()), e))?;
        let mut all = lock(producers());
        // Arenas whose directory was removed take no more puts and no new
        // readers: let them go (their memory returns once the connectors
        // and views still holding them drop), so a long-lived process
        // that makes many stores does not keep every arena it ever made.
        all.retain(|dir, p| dir == &canonical || !p.map.unlinked());
        if let Some(p) = all.get(&canonical) {
            // Its file may be gone with a removed directory: start anew.
            if !p.map.unlinked() {
                return Ok(Arc::clone(p));
            }
        }
        let arenas = canonical.join(ARENAS_DIR);
        std::fs::create_dir_all(&arenas)
            .map_err(|e| Error::io(format!("creating {}", arenas.display()), e))?;
        sweep::sweep(&arenas);
        let data_len = (arena_bytes as u64).next_multiple_of(PAGE);
        let slots = (data_len / BYTES_PER_SLOT).clamp(64, block::MAX_SLOTS);
        let geo = Geometry::new(slots, data_len).ok_or_else(|| {
            Error::Config(format!(
                "arena_bytes {arena_bytes} is too large for this system"
            ))
        })?;
        let name = sweep::new_name();
        let (pid, start) = sweep::parse_name(&name).ok_or(Error::Internal {
            what: "a new arena name does not parse",
        })?;
        let path = arena_path(&canonical, &name);
        let map = Arc::new(ArenaMap::create(&path, &name, geo, (pid, start))?);
        remember(&path, &map);
        let producer = Arc::new(Producer {
            alloc: Mutex::new(Allocator::new(geo)),
            max_object: data_len / 4,
            map,
        });
        all.insert(canonical, Arc::clone(&producer));
        tracing::debug!(path = %path.display(), bytes = data_len, slots, "created arena");
        Ok(producer)
    }

    /// Copies the concatenation of `parts` into a block and publishes it;
    /// `Ok(None)` when the arena cannot take it (too large, or full), so
    /// the caller writes a file instead.
    pub(crate) fn put(&self, id: ObjectId, parts: &[&[u8]]) -> Result<Option<Key>> {
        let len = parts.iter().map(|p| p.len() as u64).sum::<u64>();
        if len > self.max_object {
            return Ok(None);
        }
        let Some((index, block)) = lock(&self.alloc).take(len, &self.map) else {
            return Ok(None);
        };
        let geo = self.map.geometry();
        let Some(slot) = self
            .map
            .slot(index)
            .filter(|_| geo.holds(block.offset, block.capacity))
        else {
            lock(&self.alloc).abandon(index, &self.map);
            return Err(Error::Internal {
                what: "the arena allocator gave a block outside the arena",
            });
        };
        let mut at = block.offset as usize;
        for part in parts {
            // SAFETY: the block lies in the mapping (checked just above) and
            // holds `len`, the sum of the parts' lengths, so every part lands
            // inside it; the allocator gave it to this put alone, and its
            // slot is WRITING, so no reader can pin it: nothing else reads
            // or writes these bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(part.as_ptr(), self.map.base().add(at), part.len());
            }
            at += part.len();
        }
        let id_bits = id.as_u128();
        slot.offset.store(block.offset, Ordering::Relaxed);
        slot.capacity.store(block.capacity, Ordering::Relaxed);
        slot.len.store(len, Ordering::Relaxed);
        slot.id_lo.store(id_bits as u64, Ordering::Relaxed);
        slot.id_hi.store((id_bits >> 64) as u64, Ordering::Relaxed);
        let gen = state::next_gen(state::gen(slot.state.load(Ordering::Relaxed)));
        // Publish: everything above happens-before a reader's Acquire pin.
        slot.state
            .store(state::pack(gen, 0, state::COMMITTED), Ordering::Release);
        let location = Location {
            name: self.map.name(),
            slot: index,
            gen,
            offset: block.offset,
            len,
        };
        Ok(Some(
            Key::new(id)
                .with_size(len)
                .with_location(&location.to_string())?,
        ))
    }
}

/// Keeps `map` in the process-wide table of mapped arenas; forgets the
/// arenas whose files are gone.
fn remember(path: &Path, map: &Arc<ArenaMap>) {
    let mut all = lock(maps());
    all.retain(|_, m| !m.is_dead() && !m.unlinked());
    all.insert(path.to_owned(), Arc::clone(map));
}

/// The mapping of the arena at `path`, mapped now if this process has not
/// yet; `None` if the arena is gone.
fn mapped(path: &Path, name: &str) -> Result<Option<Arc<ArenaMap>>> {
    {
        let mut all = lock(maps());
        if let Some(m) = all.get(path) {
            if !m.is_dead() {
                return Ok(Some(Arc::clone(m)));
            }
            all.remove(path);
            return Ok(None);
        }
    }
    let Some(map) = ArenaMap::open(path, name)? else {
        return Ok(None);
    };
    if map.is_dead() {
        return Ok(None);
    }
    let map = Arc::new(map);
    remember(path, &map);
    Ok(Some(map))
}

/// A pinned block handed out as the bytes of a `get`; unpins on drop.
struct View {
    map: Arc<ArenaMap>,
    slot: u64,
    offset: usize,
    len: usize,
}

impl AsRef<[u8]> for View {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: offset + len lies in the mapping (checked against the
        // geometry before the view was made), which `map` keeps alive. The
        // pin keeps the owner from reusing the block, and the owner never
        // writes a published block, so the bytes do not change while this
        // view lives.
        unsafe { std::slice::from_raw_parts(self.map.base().add(self.offset), self.len) }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        if let Some(slot) = self.map.slot(self.slot) {
            // Release: our reads of the block happen-before its reuse.
            let prev = slot.state.fetch_sub(state::PIN_ONE, Ordering::Release);
            if state::status(prev) == state::EVICTED && state::pins(prev) == 1 {
                self.map.mark_reclaimable(self.slot);
            }
        }
    }
}

/// Whether the slot's fields name the object `loc` and `key` describe.
fn names_object(slot: &Slot, key: &Key, loc: &Location<'_>) -> bool {
    let id = key.id().as_u128();
    let len = loc.len;
    slot.offset.load(Ordering::Relaxed) == loc.offset
        && slot.len.load(Ordering::Relaxed) == len
        && slot.capacity.load(Ordering::Relaxed) >= len
        && slot.id_lo.load(Ordering::Relaxed) == id as u64
        && slot.id_hi.load(Ordering::Relaxed) == (id >> 64) as u64
}

fn mismatch(key: &Key) -> Error {
    location::invalid(
        key,
        "the arena block holds another object than the key names",
    )
}

fn same_object(a: u64, b: u64) -> bool {
    state::gen(a) == state::gen(b) && state::status(a) == state::status(b)
}

/// Reads the slot while its state stays `COMMITTED` at the key's generation
/// (a seqlock read: the owner changes the fields only after the state left
/// it). `Ok(None)`: the object is gone; `Ok(Some(s))`: the state it is in.
fn committed_state(slot: &Slot, key: &Key, loc: &Location<'_>) -> Result<Option<u64>> {
    for _ in 0..CAS_RETRIES {
        let s = slot.state.load(Ordering::Acquire);
        if state::gen(s) != loc.gen || state::status(s) != state::COMMITTED {
            return Ok(None);
        }
        let names = names_object(slot, key, loc);
        fence(Ordering::Acquire);
        if same_object(s, slot.state.load(Ordering::Relaxed)) {
            return if names {
                Ok(Some(s))
            } else {
                Err(mismatch(key))
            };
        }
    }
    Err(contended())
}

fn contended() -> Error {
    Error::Internal {
        what: "an arena slot's state kept changing under a bounded CAS loop",
    }
}

/// The arena operations of one connector: its directory, its own arena
/// (when `arena_bytes` > 0), and the arenas it read from lately.
#[derive(Debug)]
pub(crate) struct Arenas {
    dir: PathBuf,
    arena_bytes: usize,
    producer: Mutex<Option<Arc<Producer>>>,
    /// A few mappings looked up by name without building a path.
    recent: Mutex<Vec<Arc<ArenaMap>>>,
}

/// How many arenas a connector remembers without the process table.
const RECENT: usize = 8;

impl Arenas {
    pub(crate) fn new(dir: &Path, arena_bytes: usize) -> Self {
        Arenas {
            // Canonical, as the producer's: one mapping per arena and process.
            dir: dir.canonicalize().unwrap_or_else(|_| dir.to_owned()),
            arena_bytes,
            producer: Mutex::new(None),
            recent: Mutex::new(Vec::new()),
        }
    }

    /// Puts the concatenation of `parts` into this process's arena;
    /// `Ok(None)`: arena off or it cannot take the object, write a file.
    pub(crate) fn put(&self, parts: &[&[u8]]) -> Result<Option<Key>> {
        if self.arena_bytes == 0 {
            return Ok(None);
        }
        let producer = {
            let mut mine = lock(&self.producer);
            match &*mine {
                Some(p) => Arc::clone(p),
                None => {
                    let p = Producer::for_dir(&self.dir, self.arena_bytes)?;
                    *mine = Some(Arc::clone(&p));
                    p
                }
            }
        };
        producer.put(ObjectId::random(), parts)
    }

    fn map(&self, name: &str) -> Result<Option<Arc<ArenaMap>>> {
        {
            let mut recent = lock(&self.recent);
            if let Some(i) = recent.iter().position(|m| m.name() == name) {
                if !recent[i].is_dead() {
                    return Ok(Some(Arc::clone(&recent[i])));
                }
                recent.remove(i);
            }
        }
        let found = mapped(&arena_path(&self.dir, name), name)?;
        if let Some(m) = &found {
            let mut recent = lock(&self.recent);
            if recent.len() >= RECENT {
                recent.remove(0);
            }
            recent.push(Arc::clone(m));
        }
        Ok(found)
    }

    /// The arena and slot a key names, its range checked against the arena.
    fn locate(&self, key: &Key, loc: &Location<'_>) -> Result<Option<Arc<ArenaMap>>> {
        let Some(map) = self.map(loc.name)? else {
            return Ok(None);
        };
        if map.slot(loc.slot).is_none() {
            return Err(location::invalid(key, "slot beyond the arena's slot table"));
        }
        if !map.geometry().holds(loc.offset, loc.len) {
            return Err(location::invalid(
                key,
                "offset and size reach outside the arena",
            ));
        }
        Ok(Some(map))
    }

    /// A view of the object, pinned until the `Bytes` and its clones drop.
    pub(crate) fn get(&self, key: &Key, loc: &Location<'_>) -> Result<Option<Bytes>> {
        let Some(map) = self.locate(key, loc)? else {
            return Ok(None);
        };
        let Some(slot) = map.slot(loc.slot) else {
            return Ok(None);
        };
        let mut s = slot.state.load(Ordering::Acquire);
        for _ in 0..CAS_RETRIES {
            if state::gen(s) != loc.gen || state::status(s) != state::COMMITTED {
                return Ok(None);
            }
            if state::pins(s) == state::PIN_MAX {
                return Err(Error::TooLarge {
                    what: "number of views of one arena block",
                    size: state::PIN_MAX + 1,
                    limit: state::PIN_MAX,
                });
            }
            // Acquire: the owner's writes before its Release publish are
            // visible once the pin lands.
            match slot.state.compare_exchange_weak(
                s,
                s + state::PIN_ONE,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // Pinned: the fields cannot change until we unpin.
                    let view = View {
                        map: Arc::clone(&map),
                        slot: loc.slot,
                        offset: loc.offset as usize,
                        len: loc.len as usize,
                    };
                    if !names_object(slot, key, loc) {
                        return Err(mismatch(key));
                    }
                    if view.len == 0 {
                        return Ok(Some(Bytes::new()));
                    }
                    return Ok(Some(Bytes::from_owner(view)));
                }
                Err(now) => s = now,
            }
        }
        Err(contended())
    }

    /// Whether the object is published and not evicted.
    pub(crate) fn exists(&self, key: &Key, loc: &Location<'_>) -> Result<bool> {
        let Some(map) = self.locate(key, loc)? else {
            return Ok(false);
        };
        let Some(slot) = map.slot(loc.slot) else {
            return Ok(false);
        };
        Ok(committed_state(slot, key, loc)?.is_some())
    }

    /// Marks the object evicted (idempotent); its block is reused once no
    /// view pins it.
    pub(crate) fn evict(&self, key: &Key, loc: &Location<'_>) -> Result<()> {
        let Some(map) = self.locate(key, loc)? else {
            return Ok(());
        };
        let Some(slot) = map.slot(loc.slot) else {
            return Ok(());
        };
        for _ in 0..CAS_RETRIES {
            let Some(s) = committed_state(slot, key, loc)? else {
                return Ok(());
            };
            let evicted = state::pack(state::gen(s), state::pins(s), state::EVICTED);
            if slot
                .state
                .compare_exchange(s, evicted, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                if state::pins(s) == 0 {
                    map.mark_reclaimable(loc.slot);
                }
                return Ok(());
            }
        }
        Err(contended())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn arenas_of_removed_directories_are_let_go() {
        let gone = tempfile::tempdir_in("/dev/shm").unwrap();
        let kept = tempfile::tempdir_in("/dev/shm").unwrap();
        let gone_path = gone.path().canonicalize().unwrap();
        let arenas = Arenas::new(gone.path(), 1 << 20);
        assert!(arenas.put(&[b"an object"]).unwrap().is_some());
        drop(arenas);
        assert!(lock(producers()).contains_key(&gone_path));
        drop(gone); // removes the directory and its arena file
        let next = Arenas::new(kept.path(), 1 << 20);
        assert!(next.put(&[b"another"]).unwrap().is_some());
        assert!(
            !lock(producers()).contains_key(&gone_path),
            "the removed directory's arena is still held"
        );
    }
}
