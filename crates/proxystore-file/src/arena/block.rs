//! The arena file's layout and its mapping.
//!
//! ```text
//! page 0      header: magic, version, sizes, owner, dead flag, reclaim hint
//! page 1..    reclaim bitmap: one bit per slot, set when a block may be reused
//! then        slot table: one 64-byte header per block (state, offset, ...)
//! page-aligned data region: the blocks
//! ```
//!
//! Everything another process may change (slot states, bitmap, hint, dead
//! flag) is an atomic in the mapping; the data region is written only by the
//! owner, in blocks no reader can pin (see `state`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use proxystore_core::{Error, Result};

/// "PSARENA1", little endian.
const MAGIC: u64 = u64::from_le_bytes(*b"PSARENA1");
const VERSION: u64 = 1;
/// Page size the layout is aligned to (the smallest x86-64 and aarch64 page).
pub(crate) const PAGE: u64 = 4096;
/// Bytes of one slot header.
const SLOT_BYTES: u64 = 64;
/// Most slots (live objects) one arena has.
pub(crate) const MAX_SLOTS: u64 = 1 << 16;

// Header fields: byte offsets of u64s in page 0.
const H_MAGIC: u64 = 0;
const H_VERSION: u64 = 8;
const H_TOTAL: u64 = 16;
const H_SLOTS: u64 = 24;
const H_DATA_LEN: u64 = 32;
const H_PID: u64 = 40;
const H_START: u64 = 48;
/// Set by the sweep before it unlinks the arena of a dead owner; readers
/// holding a mapping treat the arena as gone.
const H_DEAD: u64 = 128;
/// Bumped after a bit is set in the reclaim bitmap; the owner scans the
/// bitmap only when it changed.
const H_HINT: u64 = 192;

/// The state word of a slot: `gen:40 | pins:22 | status:2`.
///
/// A reader pins a block by a CAS that requires `COMMITTED` and the key's
/// generation, so a pin can only land on the object the key names. The
/// owner reuses a block only by a CAS from `EVICTED` with zero pins, so a
/// pinned block is never reused.
pub(crate) mod state {
    /// Never used, or reclaimed: the owner may reuse the slot.
    pub(crate) const FREE: u64 = 0;
    /// The owner is writing the block; not readable.
    pub(crate) const WRITING: u64 = 1;
    /// Published: readers may pin it if the generation matches.
    pub(crate) const COMMITTED: u64 = 2;
    /// Evicted; reusable once its pins drop to zero.
    pub(crate) const EVICTED: u64 = 3;
    /// One pin.
    pub(crate) const PIN_ONE: u64 = 1 << 2;
    /// Most pins one block holds at once.
    pub(crate) const PIN_MAX: u64 = (1 << 22) - 1;
    const GEN_SHIFT: u32 = 24;
    /// Largest generation (generations wrap past it, skipping 0).
    pub(crate) const GEN_MAX: u64 = (1 << 40) - 1;

    pub(crate) fn status(s: u64) -> u64 {
        s & 3
    }

    pub(crate) fn pins(s: u64) -> u64 {
        (s >> 2) & PIN_MAX
    }

    pub(crate) fn gen(s: u64) -> u64 {
        s >> GEN_SHIFT
    }

    pub(crate) fn pack(gen: u64, pins: u64, status: u64) -> u64 {
        (gen & GEN_MAX) << GEN_SHIFT | (pins & PIN_MAX) << 2 | (status & 3)
    }

    /// The generation after `gen` (never 0, so a fresh slot matches no key).
    pub(crate) fn next_gen(gen: u64) -> u64 {
        if gen >= GEN_MAX {
            1
        } else {
            gen + 1
        }
    }
}

/// One slot header in the shared table. All fields are atomics: other
/// processes read them while the owner writes.
#[repr(C, align(64))]
pub(crate) struct Slot {
    /// See [`state`].
    pub(crate) state: AtomicU64,
    /// Offset of the block in the arena file.
    pub(crate) offset: AtomicU64,
    /// Bytes the block holds.
    pub(crate) capacity: AtomicU64,
    /// Bytes of the object in it.
    pub(crate) len: AtomicU64,
    /// Low and high halves of the object id.
    pub(crate) id_lo: AtomicU64,
    pub(crate) id_hi: AtomicU64,
    _reserved: [AtomicU64; 2],
}

const _: () = assert!(std::mem::size_of::<Slot>() as u64 == SLOT_BYTES);

/// Where everything is in an arena of `slots` slots and `data_len` bytes of
/// blocks; derived, so a reader recomputes and checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) slots: u64,
    pub(crate) table_off: u64,
    pub(crate) data_off: u64,
    pub(crate) data_len: u64,
    pub(crate) total: u64,
}

impl Geometry {
    /// `None` when the sizes are out of range or overflow.
    pub(crate) fn new(slots: u64, data_len: u64) -> Option<Self> {
        if slots == 0 || slots > MAX_SLOTS || data_len == 0 || data_len % PAGE != 0 {
            return None;
        }
        let bitmap = slots.div_ceil(64) * 8;
        let table_off = PAGE.checked_add(bitmap.checked_next_multiple_of(SLOT_BYTES)?)?;
        let table_end = table_off.checked_add(slots.checked_mul(SLOT_BYTES)?)?;
        let data_off = table_end.checked_next_multiple_of(PAGE)?;
        let total = data_off.checked_add(data_len)?;
        // The mapping's length and every offset must fit in usize and off_t.
        if total > i64::MAX as u64 || usize::try_from(total).is_err() {
            return None;
        }
        Some(Geometry {
            slots,
            table_off,
            data_off,
            data_len,
            total,
        })
    }

    /// Whether `[offset, offset + len)` lies in the data region.
    pub(crate) fn holds(&self, offset: u64, len: u64) -> bool {
        offset >= self.data_off && offset.checked_add(len).is_some_and(|end| end <= self.total)
    }
}

/// One arena file mapped shared into this process.
#[derive(Debug)]
pub(crate) struct ArenaMap {
    name: String,
    file: File,
    map: memmap2::MmapRaw,
    geo: Geometry,
}

fn corrupt(path: &Path, reason: &str) -> Error {
    Error::io(
        format!("{} is not a usable proxystore arena", path.display()),
        io::Error::new(io::ErrorKind::InvalidData, reason.to_owned()),
    )
}

impl ArenaMap {
    /// Creates the arena file `path` (which must not exist), reserves its
    /// pages with `posix_fallocate` (a full tmpfs is an error here, not a
    /// SIGBUS later), maps it and touches every page once, so puts into it
    /// are plain copies.
    pub(crate) fn create(
        path: &Path,
        name: &str,
        geo: Geometry,
        owner: (u32, u64),
    ) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(format!("creating arena {}", path.display()), e))?;
        let made = Self::fill(path, name, file, geo, owner);
        if made.is_err() {
            let _ = std::fs::remove_file(path);
        }
        made
    }

    fn fill(path: &Path, name: &str, file: File, geo: Geometry, owner: (u32, u64)) -> Result<Self> {
        use std::os::fd::AsRawFd;
        // SAFETY: the fd is open for writing; the range was checked to fit
        // in off_t by Geometry::new.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, geo.total as libc::off_t) };
        if rc != 0 {
            return Err(Error::io(
                format!(
                    "reserving {} bytes for arena {} (is the file system full?)",
                    geo.total,
                    path.display()
                ),
                io::Error::from_raw_os_error(rc),
            ));
        }
        let map = memmap2::MmapOptions::new()
            .len(geo.total as usize)
            .populate()
            .map_raw(&file)
            .map_err(|e| Error::io(format!("mapping arena {}", path.display()), e))?;
        let base = map.as_mut_ptr();
        for off in (0..geo.total).step_by(PAGE as usize) {
            // SAFETY: off < total = the mapping's length; nothing else
            // knows this file yet, so no one reads these bytes.
            unsafe { base.add(off as usize).write_volatile(0) };
        }
        let arena = ArenaMap {
            name: name.to_owned(),
            file,
            map,
            geo,
        };
        for (field, value) in [
            (H_VERSION, VERSION),
            (H_TOTAL, geo.total),
            (H_SLOTS, geo.slots),
            (H_DATA_LEN, geo.data_len),
            (H_PID, u64::from(owner.0)),
            (H_START, owner.1),
        ] {
            arena.header(field).store(value, Ordering::Relaxed);
        }
        arena.header(H_MAGIC).store(MAGIC, Ordering::Release);
        Ok(arena)
    }

    /// Maps an existing arena; `Ok(None)` if the file does not exist.
    /// The header is read and checked before anything is mapped, so a
    /// truncated or foreign file is an error, never an out-of-bounds read.
    pub(crate) fn open(path: &Path, name: &str) -> Result<Option<Self>> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("opening arena {}", path.display()), e)),
        };
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("reading size of arena {}", path.display()), e))?
            .len();
        let mut head = [0u8; 64];
        if len < PAGE {
            return Err(corrupt(path, "shorter than its header"));
        }
        file.read_exact_at(&mut head, 0)
            .map_err(|e| Error::io(format!("reading arena header {}", path.display()), e))?;
        let field = |at: u64| {
            let at = at as usize;
            let mut b = [0u8; 8];
            b.copy_from_slice(&head[at..at + 8]);
            u64::from_ne_bytes(b)
        };
        if field(H_MAGIC) != MAGIC || field(H_VERSION) != VERSION {
            return Err(corrupt(path, "bad magic or version"));
        }
        let geo = Geometry::new(field(H_SLOTS), field(H_DATA_LEN))
            .ok_or_else(|| corrupt(path, "slot count or data size out of range"))?;
        if geo.total != field(H_TOTAL) || geo.total != len {
            return Err(corrupt(path, "size does not match its header"));
        }
        let map = memmap2::MmapOptions::new()
            .len(geo.total as usize)
            .populate()
            .map_raw(&file)
            .map_err(|e| Error::io(format!("mapping arena {}", path.display()), e))?;
        Ok(Some(ArenaMap {
            name: name.to_owned(),
            file,
            map,
            geo,
        }))
    }

    /// The arena's name (its file name without `.arena`).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn geometry(&self) -> Geometry {
        self.geo
    }

    fn header(&self, field: u64) -> &AtomicU64 {
        debug_assert!(field % 8 == 0 && field < PAGE);
        // SAFETY: field < PAGE <= the mapping's length, 8-aligned (the
        // mapping is page-aligned); AtomicU64 has u64's layout and any bit
        // pattern is valid; other processes change it only atomically.
        unsafe { &*(self.map.as_ptr().add(field as usize) as *const AtomicU64) }
    }

    /// Slot `i`, if the table has it.
    pub(crate) fn slot(&self, i: u64) -> Option<&Slot> {
        if i >= self.geo.slots {
            return None;
        }
        let at = self.geo.table_off + i * SLOT_BYTES;
        // SAFETY: i < slots, so the 64 bytes at `at` lie in the table inside
        // the mapping; `at` is 64-aligned (table_off is); Slot is all
        // atomics, valid for any bits and only changed atomically.
        Some(unsafe { &*(self.map.as_ptr().add(at as usize) as *const Slot) })
    }

    /// Word `w` of the reclaim bitmap.
    pub(crate) fn bitmap_word(&self, w: u64) -> Option<&AtomicU64> {
        if w >= self.geo.slots.div_ceil(64) {
            return None;
        }
        // SAFETY: the bitmap spans slots/64 words from PAGE, before
        // table_off; 8-aligned; only changed atomically.
        Some(unsafe { &*(self.map.as_ptr().add((PAGE + w * 8) as usize) as *const AtomicU64) })
    }

    /// Records that slot `i`'s block may be reused (evicted, no pins).
    pub(crate) fn mark_reclaimable(&self, i: u64) {
        if let Some(word) = self.bitmap_word(i / 64) {
            word.fetch_or(1 << (i % 64), Ordering::Release);
            self.header(H_HINT).fetch_add(1, Ordering::Release);
        }
    }

    /// Changes whenever a bit was set in the reclaim bitmap.
    pub(crate) fn reclaim_hint(&self) -> u64 {
        self.header(H_HINT).load(Ordering::Acquire)
    }

    /// Whether a sweep declared the owner dead (the file is unlinked).
    pub(crate) fn is_dead(&self) -> bool {
        self.header(H_DEAD).load(Ordering::Acquire) != 0
    }

    /// Whether the file was unlinked (swept or removed with its directory).
    pub(crate) fn unlinked(&self) -> bool {
        self.file.metadata().map(|m| m.nlink() == 0).unwrap_or(true)
    }

    /// Start of the mapping; blocks are at their file offsets from it.
    pub(crate) fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }
}

/// Marks the arena at `path` dead, so processes that still map it stop
/// serving its objects; the caller then unlinks it. Maps only the header.
pub(crate) fn mark_dead(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    if file.metadata()?.len() < PAGE {
        return Ok(());
    }
    let map = memmap2::MmapOptions::new()
        .len(PAGE as usize)
        .map_raw(&file)?;
    let word = |field: u64| {
        // SAFETY: field < PAGE = the mapping's length, 8-aligned; atomics.
        unsafe { &*(map.as_ptr().add(field as usize) as *const AtomicU64) }
    };
    if word(H_MAGIC).load(Ordering::Acquire) == MAGIC {
        word(H_DEAD).store(1, Ordering::Release);
    }
    Ok(())
}
