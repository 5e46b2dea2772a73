//! Each rank's directory: an open-addressing table in window memory that
//! maps an object id to where the object's bytes are attached, so another
//! rank finds and reads an object with no request to the owner.
//!
//! A slot is four little-endian `u64`: the id's low and high halves, the
//! object's window address and its length; an all-zero id is a free slot.
//! An id hashes to slot `id mod SLOTS` and may sit in any of the next
//! [`PROBE`] slots (the table holds `SLOTS + PROBE` slots, so a probe never
//! wraps): a reader fetches those `PROBE` slots with one `MPI_Get`. A full
//! probe window leaves the object unlisted; its gets then go to the owner
//! as requests, which is slower but never wrong.
//!
//! Slots are written only by their rank, under an exclusive lock on itself
//! ([`Directory::insert`], [`Directory::remove`] take the epoch as proof),
//! and read by others under a shared lock, so a reader sees a whole slot
//! or none, and an object withdrawn from the directory is never read after
//! its memory is reused (the owner's exclusive lock waits for readers).

use std::sync::atomic::{AtomicUsize, Ordering};

use proxystore_core::{ObjectId, Result};

use crate::window::{Epoch, Window};

/// Home slots (a power of two).
pub(crate) const SLOTS: usize = 1 << 16;
/// Slots searched from an id's home slot.
pub(crate) const PROBE: usize = 16;
const WORDS: usize = 4;
const SLOT_BYTES: usize = WORDS * 8;

/// Where a listed object lives in its owner's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Window address of its first byte.
    pub(crate) addr: u64,
    /// Its length in bytes.
    pub(crate) len: u64,
}

/// This rank's directory: `SLOTS + PROBE` slots of attached memory.
pub(crate) struct Directory {
    words: *mut u64,
    /// Window address of slot 0.
    addr: u64,
    listed: AtomicUsize,
}

// SAFETY: `words` points to memory this value owns (leaked from a Box and
// reclaimed in Drop); it is written only under an exclusive epoch on this
// rank (see `insert`/`remove`), which excludes every other writer and
// reader, so sharing the pointer between threads is sound.
unsafe impl Send for Directory {}
// SAFETY: as for Send.
unsafe impl Sync for Directory {}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("addr", &self.addr)
            .field("listed", &self.listed.load(Ordering::Relaxed))
            .finish()
    }
}

fn home(id: ObjectId) -> usize {
    // Ids are random: the low bits spread evenly.
    (id.as_u128() as usize) & (SLOTS - 1)
}

fn id_words(id: ObjectId) -> [u64; 2] {
    let v = id.as_u128();
    [v as u64, (v >> 64) as u64]
}

impl Directory {
    /// A free directory attached to `window`.
    pub(crate) fn attach(window: &dyn Window) -> Result<Self> {
        let len = (SLOTS + PROBE) * WORDS;
        let words = Box::into_raw(vec![0u64; len].into_boxed_slice()) as *mut u64;
        match window.attach(words.cast(), len * 8) {
            Ok(addr) => Ok(Directory {
                words,
                addr,
                listed: AtomicUsize::new(0),
            }),
            Err(e) => {
                // SAFETY: `words` came from Box::into_raw of a slice of
                // `len` words just above and was never shared.
                drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(words, len)) });
                Err(e)
            }
        }
    }

    /// The window address readers fetch slots from.
    pub(crate) fn addr(&self) -> u64 {
        self.addr
    }

    /// How many objects are listed.
    pub(crate) fn listed(&self) -> usize {
        self.listed.load(Ordering::Relaxed)
    }

    fn slot(&self, i: usize) -> *mut u64 {
        debug_assert!(i < SLOTS + PROBE);
        // SAFETY: i < SLOTS + PROBE, so the slot lies inside the allocation.
        unsafe { self.words.add(i * WORDS) }
    }

    /// Lists `id` at `entry`; `false` if its probe window is full (the
    /// object stays unlisted). `_own` is the exclusive epoch on this rank
    /// the write needs.
    pub(crate) fn insert(&self, _own: &Epoch<'_>, id: ObjectId, entry: Entry) -> bool {
        let [lo, hi] = id_words(id);
        if lo == 0 && hi == 0 {
            return false; // the free-slot marker; never a random id in practice
        }
        let h = home(id);
        for i in h..h + PROBE {
            let slot = self.slot(i);
            // SAFETY: the slot is inside the allocation, and the exclusive
            // epoch on this rank keeps every other reader and writer out.
            unsafe {
                if *slot == 0 && *slot.add(1) == 0 {
                    *slot.add(2) = entry.addr.to_le();
                    *slot.add(3) = entry.len.to_le();
                    *slot.add(1) = hi.to_le();
                    *slot = lo.to_le();
                    self.listed.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
            }
        }
        false
    }

    /// Unlists `id`; `false` if it was not listed.
    pub(crate) fn remove(&self, _own: &Epoch<'_>, id: ObjectId) -> bool {
        let [lo, hi] = id_words(id);
        let h = home(id);
        for i in h..h + PROBE {
            let slot = self.slot(i);
            // SAFETY: as in `insert`.
            unsafe {
                if u64::from_le(*slot) == lo && u64::from_le(*slot.add(1)) == hi {
                    std::ptr::write_bytes(slot, 0, WORDS);
                    self.listed.fetch_sub(1, Ordering::Relaxed);
                    return true;
                }
            }
        }
        false
    }

    /// Looks `id` up in the directory at window address `dir_addr` of the
    /// rank `epoch` holds (shared): one read of its probe window.
    pub(crate) fn lookup(epoch: &Epoch<'_>, dir_addr: u64, id: ObjectId) -> Result<Option<Entry>> {
        let mut buf = [0u8; PROBE * SLOT_BYTES];
        let first = dir_addr + (home(id) * SLOT_BYTES) as u64;
        epoch.read(first, &mut buf)?;
        let [lo, hi] = id_words(id);
        let word = |s: &[u8], w: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&s[w * 8..w * 8 + 8]);
            u64::from_le_bytes(b)
        };
        Ok(buf.chunks_exact(SLOT_BYTES).find_map(|s| {
            (word(s, 0) == lo && word(s, 1) == hi).then(|| Entry {
                addr: word(s, 2),
                len: word(s, 3),
            })
        }))
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        let len = (SLOTS + PROBE) * WORDS;
        // SAFETY: `words` came from Box::into_raw of `len` words in
        // `attach`; the owner detached it (or the window is gone) before
        // dropping, so no reader reaches it any more.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.words, len)) });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::window::LockMode;

    /// This process's memory as a one-rank window: attach names a region
    /// by its address, reads copy from it.
    struct Local;

    impl Window for Local {
        fn attach(&self, base: *mut u8, _len: usize) -> Result<u64> {
            Ok(base as u64)
        }
        fn detach(&self, _base: *mut u8) -> Result<()> {
            Ok(())
        }
        fn lock(&self, _rank: u32, _mode: LockMode) -> Result<()> {
            Ok(())
        }
        fn unlock(&self, _rank: u32) -> Result<()> {
            Ok(())
        }
        fn read(&self, _rank: u32, addr: u64, dst: &mut [u8]) -> Result<()> {
            // SAFETY: in these tests `addr` is always inside the live
            // directory allocation (lookups stay within SLOTS + PROBE).
            unsafe {
                std::ptr::copy_nonoverlapping(addr as *const u8, dst.as_mut_ptr(), dst.len())
            };
            Ok(())
        }
    }

    /// Ids whose home slot is `home`.
    fn ids_at(home: usize, n: usize) -> Vec<ObjectId> {
        (1..=n as u128)
            .map(|k| ObjectId::from_u128((k << 32) | home as u128))
            .collect()
    }

    #[test]
    fn a_full_probe_window_leaves_the_object_unlisted_until_a_slot_frees() {
        let dir = Directory::attach(&Local).unwrap();
        let turn = Mutex::new(());
        let epoch = Epoch::new(&Local, &turn, 0, LockMode::Exclusive).unwrap();
        // The last home slot: its probe window runs into the spare slots.
        let home = SLOTS - 1;
        let ids = ids_at(home, PROBE + 1);
        for (i, &id) in ids[..PROBE].iter().enumerate() {
            let entry = Entry {
                addr: i as u64,
                len: 10 + i as u64,
            };
            assert!(dir.insert(&epoch, id, entry), "slot {i}");
        }
        let last = ids[PROBE];
        assert!(!dir.insert(&epoch, last, Entry { addr: 1, len: 1 }));
        assert_eq!(Directory::lookup(&epoch, dir.addr(), last).unwrap(), None);
        assert_eq!(
            Directory::lookup(&epoch, dir.addr(), ids[3]).unwrap(),
            Some(Entry { addr: 3, len: 13 })
        );
        assert!(dir.remove(&epoch, ids[3]));
        assert!(!dir.remove(&epoch, ids[3]));
        assert_eq!(Directory::lookup(&epoch, dir.addr(), ids[3]).unwrap(), None);
        assert!(dir.insert(&epoch, last, Entry { addr: 99, len: 7 }));
        assert_eq!(
            Directory::lookup(&epoch, dir.addr(), last).unwrap(),
            Some(Entry { addr: 99, len: 7 })
        );
        assert_eq!(dir.listed(), PROBE);
        // The free-slot marker is never listed.
        assert!(!dir.insert(&epoch, ObjectId::from_u128(0), Entry { addr: 0, len: 0 }));
    }
}
