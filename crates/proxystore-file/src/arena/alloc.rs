//! The owner's allocator: size classes over the data region, and slots.
//!
//! Classes are 64-byte steps up to 256 bytes, then four per power of two
//! (2^k x 1.25, 1.5, 1.75, 2), so a block wastes at most 25% of its object
//! (pure powers of two would waste up to 50%, and the common object of a
//! power-of-two payload plus a 64-byte header would always hit that).
//! Blocks of 16 KiB and more start on a page, smaller ones on 64 bytes.
//!
//! Blocks are carved from a bump pointer and keep their class; freed blocks
//! go to their class's free list. A request takes a free block of its class
//! or one up to twice its size, else carves, else reclaims evicted blocks;
//! when nothing is in use at all, the carving starts over, so a change of
//! object sizes is not stuck with the old classes.
//!
//! This state is private to the owning process (under a mutex); what other
//! processes see and change is in the shared slot table (see `block`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::block::{state, ArenaMap, Geometry, PAGE};

/// Blocks of at least this many bytes are page-aligned.
const PAGE_ALIGNED_FROM: u64 = 16 << 10;

/// The block size an object of `len` bytes gets.
pub(crate) fn class_of(len: u64) -> u64 {
    if len <= 256 {
        return len.max(1).next_multiple_of(64);
    }
    let k = 63 - (len - 1).leading_zeros(); // 2^k < len <= 2^(k+1)
    len.next_multiple_of(1 << (k - 2))
}

/// Alignment of a block of `class` bytes.
pub(crate) fn align_of(class: u64) -> u64 {
    if class >= PAGE_ALIGNED_FROM {
        PAGE
    } else {
        64
    }
}

/// A block: its offset in the arena file and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) offset: u64,
    pub(crate) capacity: u64,
}

/// The owner's view of its arena (see the module docs).
#[derive(Debug)]
pub(crate) struct Allocator {
    geo: Geometry,
    /// Next carving position (a file offset).
    bump: u64,
    /// Free blocks by capacity.
    free: BTreeMap<u64, Vec<u64>>,
    /// Slots holding no block, next to use last.
    free_slots: Vec<u64>,
    /// The block each slot holds, as this process recorded it (never read
    /// back from shared memory, which other processes can write).
    blocks: Vec<Option<Block>>,
    in_use: usize,
    last_hint: u64,
    /// Puts the arena could not take; every 64th scans all slots.
    misses: u64,
}

impl Allocator {
    pub(crate) fn new(geo: Geometry) -> Self {
        Allocator {
            geo,
            bump: geo.data_off,
            free: BTreeMap::new(),
            free_slots: (0..geo.slots).rev().collect(),
            blocks: vec![None; geo.slots as usize],
            in_use: 0,
            last_hint: 0,
            misses: 0,
        }
    }

    /// A slot and a block for an object of `len` bytes, or `None` when the
    /// arena cannot hold it now. The slot is marked `WRITING`.
    pub(crate) fn take(&mut self, len: u64, map: &ArenaMap) -> Option<(u64, Block)> {
        if map.reclaim_hint() != self.last_hint {
            self.reclaim(map, false);
        }
        if let Some(got) = self.try_take(len) {
            return Some(self.claim(got, map));
        }
        self.reclaim(map, self.misses % 64 == 0);
        self.misses += 1;
        if self.in_use == 0 {
            self.bump = self.geo.data_off;
            self.free.clear();
        }
        let got = self.try_take(len)?;
        Some(self.claim(got, map))
    }

    fn claim(&mut self, (slot, block): (u64, Block), map: &ArenaMap) -> (u64, Block) {
        if let Some(s) = map.slot(slot) {
            let gen = state::gen(s.state.load(Ordering::Relaxed));
            s.state
                .store(state::pack(gen, 0, state::WRITING), Ordering::Relaxed);
        }
        (slot, block)
    }

    fn try_take(&mut self, len: u64) -> Option<(u64, Block)> {
        let slot = *self.free_slots.last()?;
        let class = class_of(len);
        let block = self.reuse(class).or_else(|| self.carve(class))?;
        self.free_slots.pop();
        self.blocks[slot as usize] = Some(block);
        self.in_use += 1;
        Some((slot, block))
    }

    /// A free block of `class` bytes, or of up to twice that.
    fn reuse(&mut self, class: u64) -> Option<Block> {
        let (&capacity, offsets) = self
            .free
            .range_mut(class..=class.saturating_mul(2))
            .next()?;
        let offset = offsets.pop()?;
        if offsets.is_empty() {
            self.free.remove(&capacity);
        }
        Some(Block { offset, capacity })
    }

    fn carve(&mut self, class: u64) -> Option<Block> {
        let offset = self.bump.checked_next_multiple_of(align_of(class))?;
        let end = offset.checked_add(class)?;
        if end > self.geo.total {
            return None;
        }
        self.bump = end;
        Some(Block {
            offset,
            capacity: class,
        })
    }

    /// Takes back blocks that were evicted and are no longer pinned: those
    /// the bitmap names, or (`full`) every slot in use, which also finds
    /// any an evicting process died before marking. (`full` is O(slots), so
    /// a full arena does it on every 64th miss, not on every put.)
    fn reclaim(&mut self, map: &ArenaMap, full: bool) {
        self.last_hint = map.reclaim_hint();
        for w in 0..self.geo.slots.div_ceil(64) {
            let Some(word) = map.bitmap_word(w) else {
                break;
            };
            // Most words are 0: a load is cheaper than a locked swap.
            if word.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let mut bits = word.swap(0, Ordering::Acquire);
            while bits != 0 {
                let b = u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                self.release(w * 64 + b, map);
            }
        }
        if full {
            for slot in 0..self.geo.slots {
                if self.blocks[slot as usize].is_some() {
                    self.release(slot, map);
                }
            }
        }
    }

    /// Frees `slot`'s block if it is evicted and unpinned. The CAS fails if
    /// a reader's unpin or anything else changed the state meanwhile.
    fn release(&mut self, slot: u64, map: &ArenaMap) {
        let (Some(shared), Some(Some(block))) = (map.slot(slot), self.blocks.get(slot as usize))
        else {
            return;
        };
        let block = *block;
        let s = shared.state.load(Ordering::Acquire);
        if state::status(s) != state::EVICTED || state::pins(s) != 0 {
            return;
        }
        let free = state::pack(state::gen(s), 0, state::FREE);
        if shared
            .state
            .compare_exchange(s, free, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        self.put_back(slot, block);
    }

    /// Gives back a slot taken by [`Allocator::take`] whose object was never
    /// published (the put failed before committing).
    pub(crate) fn abandon(&mut self, slot: u64, map: &ArenaMap) {
        if let Some(Some(block)) = self.blocks.get(slot as usize).copied() {
            if let Some(shared) = map.slot(slot) {
                let gen = state::gen(shared.state.load(Ordering::Relaxed));
                shared
                    .state
                    .store(state::pack(gen, 0, state::FREE), Ordering::Relaxed);
            }
            self.put_back(slot, block);
        }
    }

    /// Puts a freed slot and its block back on the free lists.
    fn put_back(&mut self, slot: u64, block: Block) {
        self.blocks[slot as usize] = None;
        self.free_slots.push(slot);
        self.free
            .entry(block.capacity)
            .or_default()
            .push(block.offset);
        self.in_use -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_waste_at_most_a_quarter_and_keep_alignment() {
        assert_eq!(class_of(0), 64);
        assert_eq!(class_of(1), 64);
        assert_eq!(class_of(65), 128);
        assert_eq!(class_of(257), 320);
        assert_eq!(class_of(512), 512);
        assert_eq!(class_of(513), 640);
        assert_eq!(class_of(1 << 20), 1 << 20);
        assert_eq!(class_of((1 << 20) + 64), 5 << 18);
        assert_eq!(class_of(64 << 20), 64 << 20);
        for len in (1..200_000u64).step_by(97).chain([1 << 30, (1 << 30) + 1]) {
            let c = class_of(len);
            assert!(c >= len && c % 64 == 0, "{len} -> {c}");
            assert!(len <= 256 || c * 4 <= len * 5 + 4 * 64, "{len} -> {c}");
            if c >= PAGE_ALIGNED_FROM {
                assert_eq!(c % PAGE, 0, "{len} -> {c}");
            }
        }
    }
}
