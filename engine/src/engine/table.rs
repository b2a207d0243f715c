//! The segments in use, by slot.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::segment::{Segment, SegmentSlot};

/// The segments in use, by slot. The engine's copy sits behind `Inner::segments`; every change
/// to it is published to the index shards (`Index::publish_segments`), whose snapshots lookups
/// use.
#[derive(Clone, Default)]
pub(crate) struct SegmentTable {
    slots: Vec<Option<Arc<Segment>>>,
    free: Vec<SegmentSlot>,
}

impl SegmentTable {
    pub fn get(&self, slot: SegmentSlot) -> &Arc<Segment> {
        self.slots[slot as usize]
            .as_ref()
            .unwrap_or_else(|| panic!("index points at empty segment slot {slot}"))
    }

    /// A free slot number for a segment about to be created.
    pub fn reserve(&mut self) -> Result<SegmentSlot> {
        if let Some(slot) = self.free.pop() {
            return Ok(slot);
        }
        if self.slots.len() > SegmentSlot::MAX as usize {
            return Err(Error::Invalid("too many segments (65536)".into()));
        }
        self.slots.push(None);
        Ok((self.slots.len() - 1) as SegmentSlot)
    }

    pub fn release(&mut self, slot: SegmentSlot) {
        assert!(
            self.slots[slot as usize].is_none(),
            "release of a slot in use"
        );
        self.free.push(slot);
    }

    pub fn install(&mut self, segment: Arc<Segment>) {
        let slot = segment.slot as usize;
        self.slots[slot] = Some(segment);
    }

    pub fn remove(&mut self, slot: SegmentSlot) -> Option<Arc<Segment>> {
        let removed = self.slots[slot as usize].take();
        if removed.is_some() {
            self.free.push(slot);
        }
        removed
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Segment>> {
        self.slots.iter().flatten()
    }
}
