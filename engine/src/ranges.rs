//! Range markers: how whole ranges of log-only (`Append`) records are dropped with one record.
//!
//! A `DropRange` record in namespace `ns` with key `prefix` and value `bound` drops every
//! `Append` record of `ns` whose key starts with `prefix`, whose rest of the key sorts
//! (bytewise) before `bound`, and whose seq is lower than the marker's. Only the newest marker
//! of a `(namespace, prefix)` is in effect, and a marker's bound may only grow (the write path
//! refuses a lower one), so which records are dropped never depends on which older markers
//! compaction has already removed.
//!
//! The markers in effect live here, in memory: written by the write path, rebuilt by recovery
//! from the marker records (recovery keeps the highest seq of each prefix), consulted by
//! compaction to leave covered records behind and by readers that want only live records.

use std::collections::{BTreeMap, HashMap};

use crate::index::Location;

/// The marker in effect for one `(namespace, prefix)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Marker {
    /// Keys whose rest (after the prefix) sorts before this are dropped.
    pub bound: Vec<u8>,
    /// The marker record's seq: only records written before it are dropped.
    pub seq: u64,
    /// Where the marker record is (compaction keeps it while it is the one in effect).
    pub location: Location,
    /// Bytes of the marker record.
    pub record_len: usize,
}

/// Every marker in effect, by namespace tag and prefix.
#[derive(Default)]
pub(crate) struct RangeMarkers {
    markers: HashMap<(u8, Vec<u8>), Marker>,
    /// Prefix lengths in use per namespace tag, with how many markers use each: a key is
    /// checked against a prefix of each length.
    prefix_lengths: [BTreeMap<usize, usize>; 8],
    /// Bumped whenever the markers change, so cached coverage figures know they are stale.
    generation: u64,
}

impl RangeMarkers {
    /// The marker in effect for `prefix` of namespace `tag`.
    pub fn get(&self, tag: u8, prefix: &[u8]) -> Option<&Marker> {
        self.markers.get(&(tag, prefix.to_vec()))
    }

    /// Why a new marker with this bound may not be written, if it may not: its bound is lower
    /// than the one in effect (that would bring back records that compaction may already have
    /// dropped, depending on timing).
    pub fn refusal(&self, tag: u8, prefix: &[u8], bound: &[u8]) -> Option<String> {
        let current = self.get(tag, prefix)?;
        (bound < current.bound.as_slice()).then(|| {
            format!(
                "drop_range bound {bound:?} is lower than the bound {:?} already in effect for \
                 prefix {prefix:?}: a bound may only grow",
                current.bound
            )
        })
    }

    /// Installs a marker if it is newer than the one in effect for its prefix; returns the
    /// marker it replaced (whose record is now dead), or the new one itself if it lost (an
    /// older marker found later by recovery: its record is dead).
    pub fn install(&mut self, tag: u8, prefix: &[u8], marker: Marker) -> Option<Marker> {
        self.generation += 1;
        match self.markers.get_mut(&(tag, prefix.to_vec())) {
            Some(current) if current.seq > marker.seq => Some(marker),
            Some(current) => Some(std::mem::replace(current, marker)),
            None => {
                *self.prefix_lengths[tag as usize]
                    .entry(prefix.len())
                    .or_default() += 1;
                self.markers.insert((tag, prefix.to_vec()), marker);
                None
            }
        }
    }

    /// The marker that drops an `Append` record of namespace `tag` with this key and seq, if
    /// any.
    pub fn covering(&self, tag: u8, key: &[u8], seq: u64) -> Option<&Marker> {
        for &length in self.prefix_lengths[tag as usize]
            .range(..=key.len())
            .map(|(l, _)| l)
        {
            let Some(marker) = self.markers.get(&(tag, key[..length].to_vec())) else {
                continue;
            };
            if seq < marker.seq && &key[length..] < marker.bound.as_slice() {
                return Some(marker);
            }
        }
        None
    }

    /// Puts back the marker that was in effect for `prefix` (`None`: none) after a truncation
    /// removed a newer one.
    pub fn restore(&mut self, tag: u8, prefix: &[u8], before: Option<Marker>) {
        self.generation += 1;
        let key = (tag, prefix.to_vec());
        match before {
            Some(marker) => {
                if self.markers.insert(key, marker).is_none() {
                    *self.prefix_lengths[tag as usize]
                        .entry(prefix.len())
                        .or_default() += 1;
                }
            }
            None => {
                if self.markers.remove(&key).is_some() {
                    let lengths = &mut self.prefix_lengths[tag as usize];
                    let count = lengths.get_mut(&prefix.len()).expect("length counted");
                    *count -= 1;
                    if *count == 0 {
                        lengths.remove(&prefix.len());
                    }
                }
            }
        }
    }

    /// Whether the marker record at `location` is the one in effect for its prefix.
    pub fn is_current(&self, tag: u8, prefix: &[u8], location: Location) -> bool {
        self.get(tag, prefix)
            .is_some_and(|m| m.location == location)
    }

    /// Moves the marker in effect for `prefix` to its copy at `to` (compaction moved it).
    pub fn relocate(&mut self, tag: u8, prefix: &[u8], from: Location, to: Location) {
        if let Some(marker) = self.markers.get_mut(&(tag, prefix.to_vec())) {
            if marker.location == from {
                marker.location = to;
            }
        }
    }

    /// Whether namespace `tag` has any marker (readers skip the check otherwise).
    pub fn any_in(&self, tag: u8) -> bool {
        !self.prefix_lengths[tag as usize].is_empty()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every marker in effect, as (namespace tag, prefix, marker).
    pub fn iter(&self) -> impl Iterator<Item = (u8, &[u8], &Marker)> {
        self.markers
            .iter()
            .map(|((tag, prefix), marker)| (*tag, prefix.as_slice(), marker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(bound: &[u8], seq: u64) -> Marker {
        Marker {
            bound: bound.to_vec(),
            seq,
            location: Location {
                segment: 0,
                offset: seq as u32,
            },
            record_len: 0,
        }
    }

    #[test]
    fn covers_keys_under_the_prefix_below_the_bound_written_before_it() {
        let mut markers = RangeMarkers::default();
        assert!(markers.install(3, b"t/p0/", marker(b"0005", 10)).is_none());
        assert!(markers.covering(3, b"t/p0/0004", 9).is_some());
        assert!(
            markers.covering(3, b"t/p0/0005", 9).is_none(),
            "bound is exclusive"
        );
        assert!(
            markers.covering(3, b"t/p0/0004", 10).is_none(),
            "written after"
        );
        assert!(
            markers.covering(3, b"t/p1/0001", 1).is_none(),
            "other prefix"
        );
        assert!(
            markers.covering(2, b"t/p0/0001", 1).is_none(),
            "other namespace"
        );
        assert!(
            markers.covering(3, b"t/p0", 1).is_none(),
            "shorter than the prefix"
        );
    }

    #[test]
    fn newest_marker_wins_and_a_bound_may_only_grow() {
        let mut markers = RangeMarkers::default();
        markers.install(3, b"p", marker(b"5", 10));
        assert!(markers.refusal(3, b"p", b"4").is_some());
        assert!(markers.refusal(3, b"p", b"5").is_none());
        let replaced = markers.install(3, b"p", marker(b"7", 20)).unwrap();
        assert_eq!(replaced.seq, 10);
        // Recovery may find the older marker after the newer one: it loses.
        let lost = markers.install(3, b"p", marker(b"5", 10)).unwrap();
        assert_eq!(lost.seq, 10);
        assert_eq!(markers.get(3, b"p").unwrap().bound, b"7");
        assert!(markers.is_current(
            3,
            b"p",
            Location {
                segment: 0,
                offset: 20
            }
        ));
    }
}
