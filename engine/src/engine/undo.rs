//! The undo log of a replicated engine: for every entry not yet committed by a majority, what
//! its writes replaced in the index and in the range markers, so `truncate_after` can put both
//! back exactly as they were.
//!
//! A record that an uncommitted write replaced is still the key's committed value: it is
//! *held*. Compaction copies held records like live ones (an index that does not point at them
//! any more would otherwise let it drop them) and moves the undo log's references with them.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use super::{Inner, SegmentTable};
use crate::index::{Index, Location, Slot};
use crate::ranges::Marker;

/// What one write of an uncommitted entry replaced.
#[derive(Clone, Debug)]
pub(crate) enum UndoItem {
    /// An indexed write: where its record is (`None` for a delete, which leaves no slot), and
    /// the key's slot before it (`None`: the key was absent).
    Slot {
        tag: u8,
        hash: u64,
        written: Option<Location>,
        before: Option<Slot>,
    },
    /// A range marker (rare, so boxed: the log copies every item, and a slot's is half a
    /// marker's 96 bytes).
    Marker(Box<MarkerUndo>),
}

/// What a range marker's write replaced: the marker in effect before it (`None`: none).
#[derive(Clone, Debug)]
pub(crate) struct MarkerUndo {
    pub tag: u8,
    pub prefix: Vec<u8>,
    pub written: Location,
    pub record_len: usize,
    pub before: Option<Marker>,
}

impl UndoItem {
    /// The record this write replaced, which stays the committed one until the write commits.
    fn held(&self) -> Option<Location> {
        match self {
            UndoItem::Slot { before, .. } => before.map(|slot| slot.location()),
            UndoItem::Marker(marker) => marker.before.as_ref().map(|m| m.location),
        }
    }

    fn relocate(&mut self, moved: &HashMap<Location, Location>) {
        match self {
            UndoItem::Slot {
                hash,
                before: Some(slot),
                ..
            } => {
                if let Some(&to) = moved.get(&slot.location()) {
                    *slot = Slot::new(*hash, to, slot.expiry_ms());
                }
            }
            UndoItem::Marker(undo) => {
                if let Some(marker) = &mut undo.before {
                    if let Some(&to) = moved.get(&marker.location) {
                        marker.location = to;
                    }
                }
            }
            _ => {}
        }
    }
}

/// Hashes a [`Location`] (a segment slot and an offset) with two multiplies: the undo
/// log's `held` map is touched twice by every write of a replicated engine (counted up when
/// the write is logged, down when it commits), where std's SipHash, built to resist chosen
/// keys (record locations are not chosen by clients), cost a fifth of the undo log's time in a
/// follower's profile (docs/benchmarks.md, "Cluster (issue 14)").
#[derive(Default, Clone, Copy)]
pub(crate) struct LocationHasher(u64);

impl Hasher for LocationHasher {
    /// splitmix64's finalizer: every input bit reaches the low bits the map indexes by.
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u16(&mut self, n: u16) {
        self.0 = self.0.rotate_left(16) ^ u64::from(n);
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = self.0.rotate_left(32) ^ u64::from(n);
    }
}

type HeldMap = HashMap<Location, usize, BuildHasherDefault<LocationHasher>>;

/// The uncommitted entries' undo items, oldest first, and how many items hold each record.
///
/// The items of every entry lie in one queue, each entry's after the one before, so logging an
/// entry allocates nothing once the queue has grown (a `Vec` per entry cost a follower a
/// `malloc` and a `free` for every write: docs/benchmarks.md, "Cluster (issue 14)").
#[derive(Default)]
pub(crate) struct UndoLog {
    /// Every uncommitted entry's items, oldest entry first, each entry's in write order.
    items: VecDeque<UndoItem>,
    /// Each uncommitted entry's seq and how many of `items` are its, oldest first.
    entries: VecDeque<(u64, usize)>,
    held: HeldMap,
}

impl UndoLog {
    /// Logs the items of the entry at `seq` (the newest), taking them out of `items`.
    pub fn push(&mut self, seq: u64, items: &mut Vec<UndoItem>) {
        self.entries.push_back((seq, items.len()));
        for item in items.drain(..) {
            if let Some(location) = item.held() {
                *self.held.entry(location).or_default() += 1;
            }
            self.items.push_back(item);
        }
    }

    /// Forgets the entries through `seq` (committed: nothing will undo them).
    pub fn trim_through(&mut self, seq: u64) {
        while let Some(&(_, count)) = self.entries.front().filter(|(s, _)| *s <= seq) {
            self.entries.pop_front();
            for _ in 0..count {
                let item = self.items.pop_front().expect("an entry's items are logged");
                self.release(&item);
            }
        }
    }

    fn release(&mut self, item: &UndoItem) {
        if let Some(location) = item.held() {
            match self.held.entry(location) {
                Entry::Occupied(mut count) if *count.get() > 1 => *count.get_mut() -= 1,
                Entry::Occupied(count) => {
                    count.remove();
                }
                Entry::Vacant(_) => unreachable!("a held record is counted"),
            }
        }
    }

    /// Whether an uncommitted write replaced the record at `location`.
    pub fn holds(&self, location: Location) -> bool {
        self.held.contains_key(&location)
    }

    /// Compaction moved records: the references follow them.
    pub fn relocate(&mut self, moved: &HashMap<Location, Location>) {
        let mut held = HeldMap::with_capacity_and_hasher(self.held.len(), Default::default());
        for item in self.items.iter_mut() {
            item.relocate(moved);
            if let Some(location) = item.held() {
                *held.entry(location).or_default() += 1;
            }
        }
        self.held = held;
    }

    /// Takes the entries after `seq`, newest first.
    pub fn take_after(&mut self, seq: u64) -> Vec<(u64, Vec<UndoItem>)> {
        let mut taken = Vec::new();
        while let Some(&(entry_seq, count)) = self.entries.back().filter(|(s, _)| *s > seq) {
            self.entries.pop_back();
            let items: Vec<UndoItem> = self.items.split_off(self.items.len() - count).into();
            for item in &items {
                self.release(item);
            }
            taken.push((entry_seq, items));
        }
        taken
    }
}

impl Inner {
    /// The highest seq compaction may base a decision on: a replicated engine's commit point
    /// (records above it may be truncated), everything on a lone node.
    pub(crate) fn committed_for_compaction(&self) -> u64 {
        match self.undo {
            Some(_) => self.committed.load(std::sync::atomic::Ordering::Acquire),
            None => u64::MAX,
        }
    }

    /// Whether an uncommitted write replaced the record at `location` (replicated engines).
    pub(crate) fn undo_holds(&self, location: Location) -> bool {
        self.undo
            .as_ref()
            .is_some_and(|undo| undo.lock().expect("undo log lock").holds(location))
    }

    /// Puts the index and the range markers back as they were before `item`'s write, and moves
    /// the dead-byte counts with them (the truncated record is dead, the restored one live).
    pub(super) fn undo(&self, item: UndoItem) {
        match item {
            UndoItem::Slot {
                tag,
                hash,
                written,
                before,
            } => {
                let mut shard = self.index.write(tag, Index::shard_of(hash));
                let (table, segments) = shard.split_mut();
                match written {
                    Some(location) => {
                        let position = table
                            .find(hash, |l| l == location)
                            .expect("an undone write's slot is the key's newest");
                        Inner::mark_dead(segments, location);
                        match before {
                            Some(old) => {
                                unmark_dead(segments, old.location());
                                table.replace(position, old);
                            }
                            None => {
                                table.remove_at(position);
                                self.key_counts[tag as usize]
                                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    }
                    None => {
                        if let Some(old) = before {
                            unmark_dead(segments, old.location());
                            table.insert_new(old);
                            self.key_counts[tag as usize]
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }
            UndoItem::Marker(undo) => {
                let MarkerUndo {
                    tag,
                    prefix,
                    written,
                    record_len,
                    before,
                } = *undo;
                let segments = self.segments_read();
                segments.get(written.segment).add_dead(record_len);
                if let Some(old) = &before {
                    segments.get(old.location.segment).sub_dead(old.record_len);
                }
                drop(segments);
                self.ranges
                    .write()
                    .expect("range markers lock")
                    .restore(tag, &prefix, before);
            }
        }
    }
}

/// Takes back the dead bytes `mark_dead` added for the record at `location`.
fn unmark_dead(segments: &SegmentTable, location: Location) {
    let segment = segments.get(location.segment);
    let header = segment.bytes(location.offset as usize, crate::format::RECORD_HEADER_BYTES);
    if header[4] == crate::format::RecordKind::Delete as u8 {
        return;
    }
    let (key_len, value_len) = crate::format::peek_lengths(header);
    segment.sub_dead(crate::format::record_len(key_len, value_len));
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::Hash;

    use super::*;

    fn replaced(offset: u32) -> UndoItem {
        UndoItem::Slot {
            tag: 0,
            hash: u64::from(offset),
            written: Some(Location { segment: 2, offset }),
            before: Some(Slot::new(
                u64::from(offset),
                Location { segment: 1, offset },
                0,
            )),
        }
    }

    fn offsets(items: &[UndoItem]) -> Vec<u32> {
        items
            .iter()
            .map(|item| item.held().expect("holds").offset)
            .collect()
    }

    /// Every item is copied into the queue and out of it: an indexed write's stays small.
    #[test]
    fn an_item_is_a_slot_s_size() {
        assert!(
            std::mem::size_of::<UndoItem>() <= 48,
            "{} bytes",
            std::mem::size_of::<UndoItem>()
        );
    }

    /// Entries of two, none and one items share one queue: each entry gets back its own items
    /// in order, and a record stays held while any uncommitted item holds it.
    #[test]
    fn entries_keep_their_own_items_in_the_shared_queue() {
        let mut log = UndoLog::default();
        let mut items = vec![replaced(10), replaced(20)];
        log.push(5, &mut items);
        assert!(items.is_empty(), "the log takes the items");
        log.push(6, &mut items);
        items.push(replaced(20));
        log.push(7, &mut items);
        items.push(replaced(30));
        log.push(8, &mut items);
        let held = |log: &UndoLog, offset| log.holds(Location { segment: 1, offset });

        let taken = log.take_after(7);
        assert_eq!(taken.len(), 1);
        assert_eq!((taken[0].0, offsets(&taken[0].1)), (8, vec![30]));
        assert!(!held(&log, 30));
        assert!(held(&log, 20), "entries 5 and 7 both hold 20");

        log.trim_through(5);
        assert!(!held(&log, 10));
        assert!(held(&log, 20), "entry 7 still holds 20");
        let taken = log.take_after(5);
        let taken: Vec<(u64, Vec<u32>)> = taken
            .into_iter()
            .map(|(seq, items)| (seq, offsets(&items)))
            .collect();
        assert_eq!(taken, vec![(7, vec![20]), (6, vec![])]);
        assert!(!held(&log, 20));
        assert!(log.items.is_empty() && log.entries.is_empty());
    }

    /// The map picks a bucket by the hash's low bits: locations of records laid out at a
    /// fixed stride in a few segments must spread over them about as random keys would
    /// (4,096 keys into 4,096 buckets fill about 63% of them).
    #[test]
    fn location_hashes_spread_over_the_low_bits() {
        let mut buckets = HashSet::new();
        for segment in 0..4u16 {
            for i in 0..1024u32 {
                let mut hasher = LocationHasher::default();
                Location {
                    segment,
                    offset: 4096 + i * 64,
                }
                .hash(&mut hasher);
                buckets.insert(hasher.finish() & 4095);
            }
        }
        assert!(
            buckets.len() > 2400,
            "{} of 4096 buckets used",
            buckets.len()
        );
    }
}
