//! The read path: lookups in the sharded index, values read in place from the mapping, multi-key
//! reads that overlap their cache misses, and key scans.

use std::sync::RwLockReadGuard;

use super::{key_hash, Inner, LiveRecord, SegmentTable, ValueRef};
use crate::error::{Error, Result};
use crate::format::{self, Namespace, RECORD_HEADER_BYTES};
use crate::index::{prefetch, Index, Location, Shard, Slot, SHARD_COUNT};
use crate::segment::Segment;

/// Keys `get_many_with` looks up together: enough independent misses in flight to cover the
/// memory latency, few enough that the shard locks of one group are a handful.
const GET_MANY_GROUP: usize = 16;

/// Cache lines of each candidate record `get_many_with` loads ahead: a 16-byte key with a
/// 100-byte value spans three or four.
const GET_MANY_LINES_TOUCHED: usize = 4;
/// How many slots ahead a walk (`for_each_in`) asks for a record's first cache lines: the
/// records of a hash-ordered walk are scattered over the log, and reading each header as it
/// comes was most of a full walk's time (a cache miss per slot). Far enough ahead to cover
/// a miss behind the work of a few records, near enough for the lines to still be there.
const WALK_LOOKAHEAD: usize = 8;

impl Inner {
    /// Whether the record at `location` holds `key` in `namespace`.
    pub(crate) fn record_is(
        table: &SegmentTable,
        location: Location,
        namespace_tag: u8,
        key: &[u8],
    ) -> bool {
        let segment = table.get(location.segment);
        let offset = location.offset as usize;
        let header = segment.bytes(offset, RECORD_HEADER_BYTES);
        let (key_len, _) = format::peek_lengths(header);
        // Checked read: the location may come from a hint file only sampled at recovery.
        key_len == key.len()
            && header[5] == namespace_tag
            && segment.bytes_checked(offset + RECORD_HEADER_BYTES, key_len) == Some(key)
    }

    /// Whether a slot has expired at `now_ms`, or now if `None`: most keys have no expiry, so
    /// the clock is only read for those that do.
    pub(super) fn has_expired(&self, slot: &Slot, now_ms: Option<u64>) -> bool {
        slot.expiry_ms() != 0
            && slot.is_expired(now_ms.unwrap_or_else(|| self.config.clock.now_ms()))
    }

    /// `record_is` for the read path: whether the record at `location` holds `key`, or else is
    /// damaged (fails to decode, checksum included). Only a slot whose 32-bit tag matches gets
    /// here, so a record holding another key is almost always another key with the same tag;
    /// but in a segment loaded from a hint file (whose records recovery did not read) it may be
    /// this key's own record, damaged. The read claims such a slot and reports the damage,
    /// rather than calling the key missing. The check is off the way of a hit, and of nearly
    /// every miss. (`record_is`'s body, not a call to it: the wrapper cost a hit ~10
    /// instructions.)
    pub(super) fn record_is_or_damaged(
        table: &SegmentTable,
        location: Location,
        namespace_tag: u8,
        key: &[u8],
    ) -> bool {
        let segment = table.get(location.segment);
        let offset = location.offset as usize;
        let header = segment.bytes(offset, RECORD_HEADER_BYTES);
        let (key_len, _) = format::peek_lengths(header);
        (key_len == key.len()
            && header[5] == namespace_tag
            && segment.bytes_checked(offset + RECORD_HEADER_BYTES, key_len) == Some(key))
            || Inner::is_damaged(segment, offset)
    }

    /// Whether a read checks the CRC of a record in `segment`: only where no one has checked
    /// it since it was last on disk, a segment recovery loaded from a hint file without reading
    /// its records (decision 72 in docs/ARCHITECTURE.md). A record recovery scanned was checked
    /// then; one this process wrote (the log, compaction outputs, whose inputs compaction reads
    /// checked) had its CRC computed from the bytes in the mapping, which nothing but the
    /// writer changes. Checking those again on every read cost a 1 KB document's get ~12% of
    /// its server time.
    fn verify_on_read(&self, segment: &Segment) -> bool {
        self.config.verify_checksums_on_read && segment.loaded_from_hints()
    }

    #[cold]
    #[inline(never)]
    pub(super) fn is_damaged(segment: &Segment, offset: usize) -> bool {
        segment.loaded_from_hints() && segment.record_at(offset, true).is_err()
    }

    pub(super) fn lookup_at(
        &self,
        namespace: Namespace,
        key: &[u8],
        now_ms: Option<u64>,
    ) -> Option<Slot> {
        let hash = key_hash(namespace.tag(), key);
        let shard = self.index.read(namespace.tag(), Index::shard_of(hash));
        let table = &shard.table;
        let position = table.find(hash, |l| {
            Inner::record_is(&shard.segments, l, namespace.tag(), key)
        })?;
        let slot = table.slot(position);
        (!self.has_expired(&slot, now_ms)).then_some(slot)
    }

    pub(super) fn version_at(
        &self,
        namespace: Namespace,
        key: &[u8],
        now_ms: Option<u64>,
    ) -> Option<u64> {
        let hash = key_hash(namespace.tag(), key);
        let shard = self.index.read(namespace.tag(), Index::shard_of(hash));
        let table = &shard.table;
        let position = table.find(hash, |l| {
            Inner::record_is(&shard.segments, l, namespace.tag(), key)
        })?;
        let slot = table.slot(position);
        if self.has_expired(&slot, now_ms) {
            return None;
        }
        let location = slot.location();
        Some(format::peek_seq(
            shard
                .segments
                .get(location.segment)
                .bytes(location.offset as usize, RECORD_HEADER_BYTES),
        ))
    }

    /// A live key's expiry (0 = none): the slot's, or the record's when the slot caps it.
    pub(super) fn expiry_of(&self, namespace: Namespace, key: &[u8]) -> Option<u64> {
        let hash = key_hash(namespace.tag(), key);
        let shard = self.index.read(namespace.tag(), Index::shard_of(hash));
        let table = &shard.table;
        let position = table.find(hash, |l| {
            Inner::record_is(&shard.segments, l, namespace.tag(), key)
        })?;
        let slot = table.slot(position);
        if self.has_expired(&slot, None) {
            return None;
        }
        if !slot.expiry_is_capped() {
            return Some(slot.expiry_ms());
        }
        let location = slot.location();
        Some(format::peek_expiry(
            shard
                .segments
                .get(location.segment)
                .bytes(location.offset as usize, RECORD_HEADER_BYTES),
        ))
    }

    pub(super) fn lookup(&self, namespace: Namespace, key: &[u8]) -> Option<Slot> {
        self.lookup_at(namespace, key, None)
    }

    pub(super) fn get_with<R>(
        &self,
        namespace: Namespace,
        key: &[u8],
        read: impl FnOnce(ValueRef<'_>) -> R,
    ) -> Result<Option<R>> {
        self.get_with_at(namespace, key, None, read)
    }

    pub(super) fn get_with_at<R>(
        &self,
        namespace: Namespace,
        key: &[u8],
        now_ms: Option<u64>,
        read: impl FnOnce(ValueRef<'_>) -> R,
    ) -> Result<Option<R>> {
        let hash = key_hash(namespace.tag(), key);
        let shard = self.index.read(namespace.tag(), Index::shard_of(hash));
        self.read_in_shard(&shard, namespace, key, hash, now_ms, read)
    }

    /// Looks a key up in its shard (locked by the caller) and hands its value to `read`.
    pub(super) fn read_in_shard<R>(
        &self,
        shard: &Shard,
        namespace: Namespace,
        key: &[u8],
        hash: u64,
        now_ms: Option<u64>,
        read: impl FnOnce(ValueRef<'_>) -> R,
    ) -> Result<Option<R>> {
        // A damaged record claims the slot whose tag it matches, so that the read below reports
        // it (see `record_is_or_damaged`).
        let table = &shard.table;
        let Some(position) = table.find(hash, |l| {
            Inner::record_is_or_damaged(&shard.segments, l, namespace.tag(), key)
        }) else {
            return Ok(None);
        };
        let slot = table.slot(position);
        if self.has_expired(&slot, now_ms) {
            return Ok(None);
        }
        let location = slot.location();
        let segment = shard.segments.get(location.segment);
        let record = segment
            .record_at(location.offset as usize, self.verify_on_read(segment))
            .map_err(|e| decode_error(segment, location, e))?;
        Ok(Some(read(ValueRef {
            value: record.value,
            // The record's, not the slot's: a slot caps expiries past the year 10889.
            expiry_ms: record.expiry_ms,
        })))
    }

    /// `Engine::get_many_with`: groups of up to `GET_MANY_GROUP` keys. Each group locks its
    /// shards (in shard order, as batch writers do, so neither can deadlock the other), then
    /// makes three passes: load every key's home slot, load every first candidate's record
    /// header, then do the real lookups, which find both in cache. The loads of one pass do not
    /// depend on each other, so their cache and TLB misses overlap.
    pub(super) fn get_many_with<K: AsRef<[u8]>>(
        &self,
        namespace: Namespace,
        keys: &[K],
        mut read: impl FnMut(usize, Option<ValueRef<'_>>),
    ) -> Result<()> {
        let tag = namespace.tag();
        for (group_number, group) in keys.chunks(GET_MANY_GROUP).enumerate() {
            let first = group_number * GET_MANY_GROUP;
            let mut hashes = [0u64; GET_MANY_GROUP];
            let mut by_shard = [0usize; GET_MANY_GROUP];
            for (i, key) in group.iter().enumerate() {
                hashes[i] = key_hash(tag, key.as_ref());
                by_shard[i] = i;
            }
            let by_shard = &mut by_shard[..group.len()];
            by_shard.sort_unstable_by_key(|&i| Index::shard_of(hashes[i]));
            let mut guards: [Option<RwLockReadGuard<'_, Shard>>; GET_MANY_GROUP] =
                std::array::from_fn(|_| None);
            let mut guard_of = [0usize; GET_MANY_GROUP];
            let mut locked = 0;
            let mut previous = usize::MAX;
            for &i in by_shard.iter() {
                let shard = Index::shard_of(hashes[i]);
                if shard != previous {
                    guards[locked] = Some(self.index.read(tag, shard));
                    locked += 1;
                    previous = shard;
                }
                guard_of[i] = locked - 1;
            }
            let shard_of_key = |i: usize| guards[guard_of[i]].as_deref().expect("locked");
            let mut touched = 0u64;
            for (i, &hash) in hashes[..group.len()].iter().enumerate() {
                touched ^= shard_of_key(i).table.home_tag(hash) as u64;
            }
            for (i, &hash) in hashes[..group.len()].iter().enumerate() {
                let shard = shard_of_key(i);
                if let Some(location) = shard.table.first_candidate(hash) {
                    // The first cache lines of the record: its header, key and (for small
                    // values) all of the value, which the CRC check reads whole.
                    let segment = shard.segments.get(location.segment);
                    let bytes = segment.bytes_from(location.offset as usize);
                    for line in bytes.iter().step_by(64).take(GET_MANY_LINES_TOUCHED) {
                        touched ^= *line as u64;
                    }
                }
            }
            std::hint::black_box(touched);
            for (i, key) in group.iter().enumerate() {
                let shard = shard_of_key(i);
                let found =
                    self.read_in_shard(shard, namespace, key.as_ref(), hashes[i], None, |v| {
                        read(first + i, Some(v))
                    })?;
                if found.is_none() {
                    read(first + i, None);
                }
            }
        }
        Ok(())
    }

    pub(super) fn scan(
        &self,
        namespace: Namespace,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<Vec<u8>>)> {
        let now_ms = self.config.clock.now_ms();
        let mut shard = (cursor >> 32) as usize;
        let mut bucket = cursor as u32;
        let mut keys = Vec::new();
        let mut positions = Vec::new();
        while shard < SHARD_COUNT {
            let guard = self.index.read(namespace.tag(), shard);
            let (table, segments) = (&guard.table, &guard.segments);
            if table.is_empty() {
                shard += 1;
                bucket = 0;
                continue;
            }
            let mask = (table.capacity() - 1) as u32;
            loop {
                positions.clear();
                table.bucket_positions(bucket as usize, &mut positions);
                for &position in &positions {
                    let slot = table.slot(position);
                    if slot.is_expired(now_ms) {
                        continue;
                    }
                    let location = slot.location();
                    let segment = segments.get(location.segment);
                    let header = segment.bytes(location.offset as usize, RECORD_HEADER_BYTES);
                    let (key_len, _) = format::peek_lengths(header);
                    keys.push(
                        segment
                            .bytes(location.offset as usize + RECORD_HEADER_BYTES, key_len)
                            .to_vec(),
                    );
                }
                // Redis's reverse-binary cursor: stays correct when the table grows between
                // calls, because buckets are visited in the order of their reversed bits.
                bucket |= !mask;
                bucket = bucket.reverse_bits().wrapping_add(1).reverse_bits();
                if bucket == 0 {
                    shard += 1;
                    break;
                }
                if keys.len() >= count {
                    return Ok((((shard as u64) << 32) | bucket as u64, keys));
                }
            }
            if keys.len() >= count && shard < SHARD_COUNT {
                return Ok(((shard as u64) << 32, keys));
            }
        }
        Ok((0, keys))
    }
}

impl Inner {
    /// Calls `visit` for every live record of `namespace` whose key starts with `prefix`, one
    /// shard at a time under that shard's read lock; returns how many of the namespace's index
    /// slots it examined. Only the namespace's own tables are walked (`index::Shard::tables`),
    /// so the cost follows the namespace's size, not the index's. A record that fails its
    /// checksum stops the walk with the error.
    pub(super) fn for_each_in(
        &self,
        namespace: Namespace,
        prefix: &[u8],
        mut visit: impl FnMut(LiveRecord<'_>),
    ) -> Result<u64> {
        let now_ms = self.config.clock.now_ms();
        let mut examined = 0u64;
        for shard in 0..SHARD_COUNT {
            let guard = self.index.read(namespace.tag(), shard);
            let (table, segments) = (&guard.table, &guard.segments);
            // A record's header and key prefix: its first two cache lines.
            let ask_for = |slot: &Slot| {
                let location = slot.location();
                let bytes = segments
                    .get(location.segment)
                    .bytes_from(location.offset as usize);
                bytes.iter().step_by(64).take(2).for_each(prefetch);
            };
            let mut ahead = table.iter();
            ahead.by_ref().take(WALK_LOOKAHEAD).for_each(ask_for);
            for slot in table.iter() {
                if let Some(next) = ahead.next() {
                    ask_for(next);
                }
                examined += 1;
                if slot.is_expired(now_ms) {
                    continue;
                }
                let location = slot.location();
                let segment = segments.get(location.segment);
                let offset = location.offset as usize;
                let header = segment.bytes(offset, RECORD_HEADER_BYTES);
                let (key_len, _) = format::peek_lengths(header);
                if key_len < prefix.len()
                    || segment.bytes_checked(offset + RECORD_HEADER_BYTES, prefix.len())
                        != Some(prefix)
                {
                    continue;
                }
                let record = segment
                    .record_at(offset, self.verify_on_read(segment))
                    .map_err(|e| decode_error(segment, location, e))?;
                visit(LiveRecord {
                    key: record.key,
                    value: record.value,
                    seq: record.seq,
                    expiry_ms: record.expiry_ms,
                });
            }
        }
        Ok(examined)
    }
}

/// The engine error for an indexed record that does not decode.
pub(super) fn decode_error(
    segment: &Segment,
    location: Location,
    error: format::DecodeError,
) -> Error {
    match error {
        format::DecodeError::Corrupt(c) => {
            Error::corrupt(segment.display_path(), c.offset, c.reason)
        }
        other => Error::corrupt(
            segment.display_path(),
            location.offset as u64,
            format!("indexed record unreadable: {other:?}"),
        ),
    }
}
