//! The in-memory hash index ("keydir"): key -> (segment, offset, expiry), 16 bytes a key.
//!
//! Keys are not stored here: the record in the mapped segment holds them, and a lookup compares
//! the probed key against the record. A slot keeps the low 32 bits of the key's xxh3 hash (the
//! home bucket is derived from them, so growing a table never rereads keys, and they filter
//! almost every false candidate before a key compare), the record's offset, its segment, and its
//! expiry. The record's length is in its header, read anyway to compare the key.
//!
//! The index is split into `SHARD_COUNT` shards chosen by the hash's top bits, each an
//! open-addressing Robin Hood table behind its own RwLock: readers of different shards never
//! touch the same lock, and growing one shard moves 1/1024 of the keys.
//!
//! Each shard also holds a snapshot of the segment table (`Shard::segments`), so a lookup that
//! holds the shard lock reaches the segments its slots point at without taking a second lock:
//! a global segment-table lock would be one cache line written by every read on every core.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::engine::SegmentTable;
use crate::segment::SegmentSlot;

/// Number of shards (a power of two).
pub const SHARD_COUNT: usize = 1024;
const SHARD_BITS: u32 = SHARD_COUNT.trailing_zeros();
/// Smallest table a shard allocates on its first insert.
const TABLE_SLOTS_MIN: usize = 8;
/// Grow when more than 7/8 of the slots are full: Robin Hood keeps probe lengths short up to
/// there, and 16-byte slots at 7/16..7/8 load cost 18..37 bytes a key.
const LOAD_NUMERATOR: usize = 7;
const LOAD_DENOMINATOR: usize = 8;

/// Expiry value that marks a tombstone during recovery (never seen outside it).
pub const EXPIRY_TOMBSTONE: u64 = (1 << 48) - 1;
/// Largest expiry a slot holds (the year 10889): a later one is stored as this, and the exact
/// time stays in the record (Redis accepts expiries up to the year 292 million).
pub const EXPIRY_INDEX_MAX: u64 = (1 << 48) - 2;
const EXPIRY_MASK: u64 = (1 << 48) - 1;

/// Where a record lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    pub segment: SegmentSlot,
    pub offset: u32,
}

/// One index slot. `offset == 0` marks an empty slot: offset 0 is the segment header, never a
/// record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Slot {
    /// Low 32 bits of the key's hash.
    tag: u32,
    offset: u32,
    /// Segment slot in the top 16 bits, expiry in ms (0 = none) in the low 48.
    meta: u64,
}
const _: () = assert!(std::mem::size_of::<Slot>() == 16);

impl Slot {
    pub fn new(hash: u64, location: Location, expiry_ms: u64) -> Slot {
        assert!(location.offset != 0, "offset 0 is the segment header");
        assert!(
            expiry_ms <= EXPIRY_MASK,
            "expiry {expiry_ms} does not fit in 48 bits"
        );
        Slot {
            tag: hash as u32,
            offset: location.offset,
            meta: ((location.segment as u64) << 48) | expiry_ms,
        }
    }

    fn is_empty(&self) -> bool {
        self.offset == 0
    }

    /// The expiry a slot keeps for a record expiring at `expiry_ms`: the same, or
    /// `EXPIRY_INDEX_MAX` for a later one (never reached in practice; the record has the
    /// exact time).
    pub fn indexed_expiry(expiry_ms: u64) -> u64 {
        expiry_ms.min(EXPIRY_INDEX_MAX)
    }

    /// Whether the slot's expiry was capped (`indexed_expiry`): the exact one is in the record.
    pub fn expiry_is_capped(&self) -> bool {
        self.expiry_ms() == EXPIRY_INDEX_MAX
    }

    pub fn location(&self) -> Location {
        Location {
            segment: (self.meta >> 48) as SegmentSlot,
            offset: self.offset,
        }
    }

    pub fn expiry_ms(&self) -> u64 {
        self.meta & EXPIRY_MASK
    }

    pub fn is_tombstone(&self) -> bool {
        self.expiry_ms() == EXPIRY_TOMBSTONE
    }

    /// Whether the key has expired at `now_ms` (tombstones count as expired).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        let expiry = self.expiry_ms();
        expiry != 0 && expiry <= now_ms
    }
}

/// One shard: a Robin Hood table with backward-shift deletion (no tombstone slots).
#[derive(Default)]
pub struct Table {
    slots: Vec<Slot>,
    len: usize,
}

impl Table {
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Asks the CPU to bring the key's home slot into cache ahead of a lookup (a hint: it
    /// changes no result). A queue pop reads its next message's slot this way, so that
    /// lookup, a cache and TLB miss in a table of millions of random positions, overlaps the
    /// work between two pops.
    pub fn prefetch_home(&self, hash: u64) {
        if let Some(slot) = self.slots.get(hash as u32 as usize & self.mask()) {
            prefetch(slot);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn distance(&self, position: usize, slot: &Slot) -> usize {
        position.wrapping_sub(slot.tag as usize) & self.mask()
    }

    /// Position of the slot whose key matches: candidates are slots with the same tag, and
    /// `is_key` confirms one by comparing the record's key.
    pub fn find(&self, hash: u64, mut is_key: impl FnMut(Location) -> bool) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let tag = hash as u32;
        let mask = self.mask();
        let mut position = tag as usize & mask;
        let mut distance = 0;
        loop {
            let slot = &self.slots[position];
            if slot.is_empty() || self.distance(position, slot) < distance {
                return None;
            }
            if slot.tag == tag && is_key(slot.location()) {
                return Some(position);
            }
            position = (position + 1) & mask;
            distance += 1;
        }
    }

    /// The tag in the key's home bucket (0 for an empty table). `get_many` calls this for a
    /// whole group of keys before probing any: the loads are independent, so their cache misses
    /// overlap instead of following one another.
    pub fn home_tag(&self, hash: u64) -> u32 {
        match self.slots.len() {
            0 => 0,
            _ => self.slots[hash as u32 as usize & self.mask()].tag,
        }
    }

    /// The location of the first slot on the key's probe path whose tag matches, without
    /// comparing keys (for `get_many`'s second round of overlapped loads: the record it names
    /// is almost always the key's).
    pub fn first_candidate(&self, hash: u64) -> Option<Location> {
        self.find(hash, |_| true)
            .map(|position| self.slots[position].location())
    }

    pub fn slot(&self, position: usize) -> Slot {
        self.slots[position]
    }

    /// Replaces the slot at `position` (same key, new location or expiry).
    pub fn replace(&mut self, position: usize, slot: Slot) {
        assert_eq!(
            self.slots[position].tag, slot.tag,
            "replace must keep the key"
        );
        self.slots[position] = slot;
    }

    /// Inserts a slot for a key that is not in the table.
    pub fn insert_new(&mut self, slot: Slot) {
        if (self.len + 1) * LOAD_DENOMINATOR > self.slots.len() * LOAD_NUMERATOR {
            self.grow();
        }
        self.place(slot);
        self.len += 1;
    }

    fn place(&mut self, mut slot: Slot) {
        let mask = self.mask();
        let mut position = slot.tag as usize & mask;
        let mut distance = 0;
        loop {
            let resident = self.slots[position];
            if resident.is_empty() {
                self.slots[position] = slot;
                return;
            }
            let resident_distance = self.distance(position, &resident);
            if resident_distance < distance {
                // Robin Hood: the richer resident moves on, the poorer newcomer stays.
                self.slots[position] = slot;
                slot = resident;
                distance = resident_distance;
            }
            position = (position + 1) & mask;
            distance += 1;
        }
    }

    fn grow(&mut self) {
        let capacity = (self.slots.len() * 2).max(TABLE_SLOTS_MIN);
        self.rebuild(capacity);
    }

    /// Moves every slot into a table of `capacity` slots (a power of two).
    fn rebuild(&mut self, capacity: usize) {
        assert!(
            capacity.is_power_of_two() && capacity * LOAD_NUMERATOR >= self.len * LOAD_DENOMINATOR
        );
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); capacity]);
        for slot in old.into_iter().filter(|s| !s.is_empty()) {
            self.place(slot);
        }
    }

    /// Removes the slot at `position`, shifting its successors back.
    pub fn remove_at(&mut self, position: usize) -> Slot {
        let removed = self.slots[position];
        assert!(!removed.is_empty(), "remove of an empty slot");
        let mask = self.mask();
        let mut hole = position;
        loop {
            let next = (hole + 1) & mask;
            let candidate = self.slots[next];
            if candidate.is_empty() || self.distance(next, &candidate) == 0 {
                self.slots[hole] = Slot::default();
                break;
            }
            self.slots[hole] = candidate;
            hole = next;
        }
        self.len -= 1;
        removed
    }

    /// Removes every slot `keep` rejects, then shrinks the table to fit what is left.
    pub fn retain(&mut self, mut keep: impl FnMut(&Slot) -> bool) -> usize {
        let before = self.len;
        let kept: Vec<Slot> = self
            .slots
            .iter()
            .filter(|s| !s.is_empty() && keep(s))
            .copied()
            .collect();
        self.len = kept.len();
        let mut capacity = TABLE_SLOTS_MIN;
        while capacity * LOAD_NUMERATOR < self.len * LOAD_DENOMINATOR {
            capacity *= 2;
        }
        if self.len == 0 {
            self.slots = Vec::new();
        } else {
            self.slots = vec![Slot::default(); capacity];
            for slot in kept {
                self.place(slot);
            }
        }
        before - self.len
    }

    /// Every occupied slot.
    pub fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(|s| !s.is_empty())
    }

    /// Positions of the slots whose home bucket is `bucket` (for SCAN's cursor).
    pub fn bucket_positions(&self, bucket: usize, out: &mut Vec<usize>) {
        if self.slots.is_empty() {
            return;
        }
        let mask = self.mask();
        let mut position = bucket & mask;
        loop {
            let slot = &self.slots[position];
            if slot.is_empty() {
                return;
            }
            let home = slot.tag as usize & mask;
            let distance_from_bucket = position.wrapping_sub(bucket) & mask;
            if home == bucket & mask {
                out.push(position);
            } else if self.distance(position, slot) < distance_from_bucket {
                // This slot's home lies after `bucket`: Robin Hood keeps homes in order, so no
                // slot of `bucket` follows.
                return;
            }
            position = (position + 1) & mask;
            if position == bucket & mask {
                return;
            }
        }
    }

    /// Bytes of slot memory.
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
    }
}

/// Namespace tags an index exists for (`format::Namespace`; tag 0, a batch's, never gets a
/// slot): each namespace has its own sharded index, so iterating or scanning one never touches
/// another's slots, and a lookup touches exactly what it did with one index (a shard's lock,
/// table and segment snapshot share a cache line).
pub const NAMESPACE_TAGS: usize = 8;

/// One shard of a namespace's index: its table and the segments its slots point into.
#[derive(Default)]
pub struct Shard {
    pub table: Table,
    /// A snapshot of the segment table holding every segment a slot of this shard points at
    /// (and usually others). Invariant, kept by `Index::publish_segments`: a segment is in every
    /// shard's snapshot before any slot points at it, and leaves the snapshots only after no
    /// slot does.
    pub segments: Arc<SegmentTable>,
}

impl Shard {
    /// The table to change and the segments to read records from, borrowed together.
    pub fn split_mut(&mut self) -> (&mut Table, &SegmentTable) {
        (&mut self.table, &self.segments)
    }
}

/// The index: for each namespace tag, `SHARD_COUNT` shards, in one array (namespace tag
/// `t`'s shard `s` at `t * SHARD_COUNT + s`: one indirection from the index to a shard).
pub struct Index {
    shards: Box<[RwLock<Shard>]>,
}

impl Default for Index {
    fn default() -> Self {
        Index::new()
    }
}

impl Index {
    pub fn new() -> Index {
        Index {
            shards: (0..NAMESPACE_TAGS * SHARD_COUNT)
                .map(|_| RwLock::new(Shard::default()))
                .collect(),
        }
    }

    /// Shard of a hash: its top bits (the low bits pick the bucket inside the shard).
    #[inline]
    pub fn shard_of(hash: u64) -> usize {
        (hash >> (64 - SHARD_BITS)) as usize
    }

    #[inline]
    pub fn read(&self, tag: u8, shard: usize) -> RwLockReadGuard<'_, Shard> {
        self.read_at(Index::place(tag, shard))
    }

    /// The shard at `place` ([`Index::place`]), locked for reading.
    #[inline]
    pub fn read_at(&self, place: usize) -> RwLockReadGuard<'_, Shard> {
        // A poisoned shard lock means a panic while the table was being changed: the broken
        // invariant is not recoverable, so keep panicking.
        self.shards[place]
            .read()
            .expect("index shard lock poisoned")
    }

    #[inline]
    pub fn write(&self, tag: u8, shard: usize) -> RwLockWriteGuard<'_, Shard> {
        self.write_at(Index::place(tag, shard))
    }

    /// Where namespace `tag`'s shard `shard` is among every namespace's shards: one number
    /// that orders (namespace, shard) pairs (a batch sorts and searches these).
    #[inline]
    pub fn place(tag: u8, shard: usize) -> usize {
        tag as usize * SHARD_COUNT + shard
    }

    /// The shard at `place` ([`Index::place`]), locked for writing.
    #[inline]
    pub fn write_at(&self, place: usize) -> RwLockWriteGuard<'_, Shard> {
        self.shards[place]
            .write()
            .expect("index shard lock poisoned")
    }

    /// A shard, without locking: for recovery, which owns the index before anyone else sees
    /// it (no atomic instructions per record).
    pub fn shard_mut(&mut self, tag: u8, shard: usize) -> &mut Shard {
        self.shards[tag as usize * SHARD_COUNT + shard]
            .get_mut()
            .expect("index shard lock poisoned")
    }

    /// Gives every shard a snapshot of `segments`. The caller holds the segment table's write
    /// lock, so publishers never interleave; a shard is locked only for its own swap.
    pub fn publish_segments(&self, segments: &SegmentTable) {
        let snapshot = Arc::new(segments.clone());
        for shard in self.shards.iter() {
            let mut shard = shard.write().expect("index shard lock poisoned");
            let old = std::mem::replace(&mut shard.segments, snapshot.clone());
            drop(shard);
            // The last reference to a retired segment may be this one: unmapping it happens
            // here, with no shard locked.
            drop(old);
        }
    }

    /// Bytes the index occupies: slots plus the shard arrays.
    pub fn memory_bytes(&self) -> usize {
        let shard_arrays = NAMESPACE_TAGS * SHARD_COUNT * std::mem::size_of::<RwLock<Shard>>();
        shard_arrays
            + (0..NAMESPACE_TAGS as u8)
                .flat_map(|tag| (0..SHARD_COUNT).map(move |shard| (tag, shard)))
                .map(|(tag, shard)| self.read(tag, shard).table.memory_bytes())
                .sum::<usize>()
    }

    /// Preallocates every shard of namespace tag `tag` for `keys` keys in all (recovery knows
    /// roughly how many).
    pub fn reserve(&self, tag: u8, keys: usize) {
        let per_shard = keys.div_ceil(SHARD_COUNT);
        for shard in 0..SHARD_COUNT {
            let mut guard = self.write(tag, shard);
            let table = &mut guard.table;
            let mut capacity = TABLE_SLOTS_MIN;
            while capacity * LOAD_NUMERATOR < (per_shard + table.len) * LOAD_DENOMINATOR {
                capacity *= 2;
            }
            if capacity > table.capacity() {
                table.rebuild(capacity);
            }
        }
    }
}

/// A prefetch hint for `value`'s cache line.
#[allow(unsafe_code)]
#[inline]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is only a hint: it never faults, whatever the address, and reads
    // nothing into Rust-visible state; the address is that of a live reference. SSE, which
    // the intrinsic requires, is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            value as *const T as *const i8,
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn location(n: u32) -> Location {
        Location {
            segment: (n % 7) as u16,
            offset: n + 1,
        }
    }

    /// Drives a table with colliding tags and checks it against a HashMap; keys are identified by
    /// their location's offset (the test's "record").
    #[test]
    fn table_matches_a_hashmap_model() {
        let mut table = Table::default();
        let mut model: HashMap<u32, (u64, Slot)> = HashMap::new();
        let mut state = 0x9e3779b97f4a7c15u64;
        for step in 0..20_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let key = (state % 3000) as u32;
            // Few distinct tags: many collisions and long probe runs.
            let hash = (key as u64 % 97) | ((key as u64) << 40);
            let is_key = |l: Location| l.offset == key + 1;
            match state % 3 {
                0 | 1 => {
                    let slot = Slot::new(hash, location(key), step as u64);
                    match table.find(hash, is_key) {
                        Some(position) => table.replace(position, slot),
                        None => table.insert_new(slot),
                    }
                    model.insert(key, (hash, slot));
                }
                _ => {
                    if let Some(position) = table.find(hash, is_key) {
                        table.remove_at(position);
                    }
                    model.remove(&key);
                }
            }
        }
        assert_eq!(table.len(), model.len());
        for (key, (hash, slot)) in &model {
            let position = table.find(*hash, |l| l.offset == key + 1).expect("present");
            assert_eq!(table.slot(position), *slot);
        }
        for key in 3000..3100u32 {
            assert!(table
                .find(key as u64 % 97, |l| l.offset == key + 1)
                .is_none());
        }
    }

    #[test]
    fn bucket_positions_cover_every_slot_once() {
        let mut table = Table::default();
        for key in 0..500u32 {
            let hash = (key as u64).wrapping_mul(0x9e3779b97f4a7c15) >> 7;
            table.insert_new(Slot::new(hash, location(key), 0));
        }
        let mut seen = Vec::new();
        for bucket in 0..table.capacity() {
            table.bucket_positions(bucket, &mut seen);
        }
        seen.sort_unstable();
        let before = seen.len();
        seen.dedup();
        assert_eq!(seen.len(), before, "a slot was listed under two buckets");
        assert_eq!(seen.len(), 500);
    }

    #[test]
    fn retain_drops_and_shrinks() {
        let mut table = Table::default();
        for key in 0..1000u32 {
            table.insert_new(Slot::new(
                key as u64 * 2654435761,
                location(key),
                (key % 2) as u64,
            ));
        }
        let removed = table.retain(|s| s.expiry_ms() == 0);
        assert_eq!((removed, table.len()), (500, 500));
        assert!(table.capacity() <= 1024);
        for key in (0..1000u32).step_by(2) {
            assert!(table
                .find(key as u64 * 2654435761, |l| l.offset == key + 1)
                .is_some());
        }
    }

    #[test]
    fn slot_packs_location_and_expiry() {
        let slot = Slot::new(
            0xdead_beef_1234_5678,
            Location {
                segment: 65535,
                offset: u32::MAX,
            },
            EXPIRY_MASK - 1,
        );
        assert_eq!(
            slot.location(),
            Location {
                segment: 65535,
                offset: u32::MAX
            }
        );
        assert_eq!(slot.expiry_ms(), EXPIRY_MASK - 1);
        assert!(!slot.is_tombstone());
    }
}
