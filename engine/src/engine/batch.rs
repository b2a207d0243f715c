//! The typed list of writes the engine applies atomically ([`WriteBatch`], each write an
//! [`Op`]), and how a group of writes is encoded into the log. This list is the unit that
//! crosses from a data model to the engine, and later from a leader to its followers: data, not
//! code, so it can be logged, replicated, replayed and inspected.

use crate::error::{Error, Result};
use crate::format::{
    self, Header, Namespace, RecordKind, FLAG_IN_BATCH, KEY_BYTES_MAX, RECORD_HEADER_BYTES,
    VALUE_BYTES_MAX,
};

/// One write, borrowing its key and value (from a [`WriteBatch`]'s buffer, from the log, or
/// from `Engine::put`'s arguments, which then allocates nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op<'a> {
    /// `Put`, `Delete`, `Append` or `DropRange` (never `Batch`).
    pub kind: RecordKind,
    pub namespace: Namespace,
    /// The key; for `DropRange`, the key prefix it covers.
    pub key: &'a [u8],
    /// The value; empty for `Delete`; for `DropRange`, the bound (exclusive) that the rest of a
    /// covered key sorts before.
    pub value: &'a [u8],
    /// Absolute expiry in ms since the epoch (0 = none); only a `Put` may have one.
    pub expiry_ms: u64,
}

impl Op<'_> {
    /// Bytes of the record this op becomes (as a member of a batch or on its own).
    #[inline]
    pub fn record_len(&self) -> usize {
        format::record_len(self.key.len(), self.value.len())
    }

    /// Checks the limits a write must respect before anything is appended.
    #[inline]
    pub fn validate(&self) -> Result<()> {
        if self.key.len() > KEY_BYTES_MAX {
            return Err(Error::TooLarge {
                field: "key",
                bytes: self.key.len(),
                limit: KEY_BYTES_MAX,
            });
        }
        if self.value.len() > VALUE_BYTES_MAX {
            return Err(Error::TooLarge {
                field: "value",
                bytes: self.value.len(),
                limit: VALUE_BYTES_MAX,
            });
        }
        match self.kind {
            RecordKind::Put => Ok(()),
            RecordKind::Delete | RecordKind::Append | RecordKind::DropRange
                if self.expiry_ms == 0 =>
            {
                Ok(())
            }
            RecordKind::Batch => Err(Error::Invalid("a batch cannot be a batch member".into())),
            kind => Err(Error::Invalid(format!("a {kind:?} record has no expiry"))),
        }
    }

    /// This op's record header, for a write at `seq` in `term`.
    fn header(&self, flags: u16, seq: u64, term: u64) -> Header {
        Header {
            kind: self.kind,
            namespace_tag: self.namespace.tag(),
            flags,
            seq,
            term,
            expiry_ms: self.expiry_ms,
        }
    }
}

/// A group of writes the write path takes: a slice of ops (`Engine::put`'s one), or a
/// [`WriteBatch`], read in place (collecting its ops into a vector cost an allocation a write).
pub(crate) trait Ops {
    fn count(&self) -> usize;
    fn at(&self, i: usize) -> Op<'_>;
}

impl Ops for [Op<'_>] {
    #[inline]
    fn count(&self) -> usize {
        self.len()
    }

    #[inline]
    fn at(&self, i: usize) -> Op<'_> {
        self[i]
    }
}

impl Ops for WriteBatch {
    #[inline]
    fn count(&self) -> usize {
        self.len()
    }

    #[inline]
    fn at(&self, i: usize) -> Op<'_> {
        self.op(i)
    }
}

/// Bytes a group of writes takes in the log: one record, or a batch record around them.
pub(super) fn encoded_len<O: Ops + ?Sized>(ops: &O) -> usize {
    match ops.count() {
        1 => ops.at(0).record_len(),
        n => RECORD_HEADER_BYTES + (0..n).map(|i| ops.at(i).record_len()).sum::<usize>(),
    }
}

/// Several writes applied all-or-nothing, also across a crash. Keys and values are copied
/// into one buffer, back to back: a batch of a hundred puts makes a few allocations as it
/// grows, not two per put (they were a tenth of a batched put's time).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// Every op's key, then its value.
    bytes: Vec<u8>,
    ops: Vec<BatchOp>,
}

/// Where one write of a `WriteBatch` lies in its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BatchOp {
    kind: RecordKind,
    namespace: Namespace,
    /// Offset of the key in `WriteBatch::bytes`; the value follows the key.
    start: usize,
    key_len: usize,
    value_len: usize,
    expiry_ms: u64,
}

/// Most operations one batch may hold.
pub const BATCH_OPS_MAX: usize = 1 << 20;

impl WriteBatch {
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// Sets `key` to `value` (expiring at `expiry_ms`, 0 = never).
    pub fn put(
        &mut self,
        namespace: Namespace,
        key: &[u8],
        value: &[u8],
        expiry_ms: u64,
    ) -> &mut Self {
        self.push(RecordKind::Put, namespace, key, value, expiry_ms)
    }

    /// Removes `key` (a tombstone record, written whether or not the key exists).
    pub fn delete(&mut self, namespace: Namespace, key: &[u8]) -> &mut Self {
        self.push(RecordKind::Delete, namespace, key, &[], 0)
    }

    /// Appends a log-only record: it stays in the log (found again by its seq) until a
    /// `drop_range` covers it, and never enters the hash index.
    pub fn append(&mut self, namespace: Namespace, key: &[u8], value: &[u8]) -> &mut Self {
        self.push(RecordKind::Append, namespace, key, value, 0)
    }

    /// Drops every log-only record of `namespace` whose key starts with `prefix` and whose
    /// rest sorts before `bound`, written before this batch. A bound may only grow: a lower
    /// one than the namespace's current marker for `prefix` is refused when the batch is
    /// written.
    pub fn drop_range(&mut self, namespace: Namespace, prefix: &[u8], bound: &[u8]) -> &mut Self {
        self.push(RecordKind::DropRange, namespace, prefix, bound, 0)
    }

    /// Adds an op as read from elsewhere (a replicated entry, a replay).
    pub fn push_op(&mut self, op: &Op<'_>) -> &mut Self {
        self.push(op.kind, op.namespace, op.key, op.value, op.expiry_ms)
    }

    fn push(
        &mut self,
        kind: RecordKind,
        namespace: Namespace,
        key: &[u8],
        value: &[u8],
        expiry_ms: u64,
    ) -> &mut Self {
        self.ops.push(BatchOp {
            kind,
            namespace,
            start: self.bytes.len(),
            key_len: key.len(),
            value_len: value.len(),
            expiry_ms,
        });
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(value);
        self
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Makes room for `ops` more writes holding `bytes` more key and value bytes.
    pub fn reserve(&mut self, ops: usize, bytes: usize) {
        self.ops.reserve(ops);
        self.bytes.reserve(bytes);
    }

    /// Bytes the batch's buffers hold allocated.
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.bytes.capacity() + self.ops.capacity() * std::mem::size_of::<BatchOp>()
    }

    /// Forgets every op, keeping the buffers for reuse.
    pub fn clear(&mut self) {
        self.ops.clear();
        self.bytes.clear();
    }

    /// Write number `i`.
    pub fn op(&self, i: usize) -> Op<'_> {
        let op = &self.ops[i];
        let key_end = op.start + op.key_len;
        Op {
            kind: op.kind,
            namespace: op.namespace,
            key: &self.bytes[op.start..key_end],
            value: &self.bytes[key_end..key_end + op.value_len],
            expiry_ms: op.expiry_ms,
        }
    }

    /// Every write, in order.
    pub fn iter(&self) -> impl Iterator<Item = Op<'_>> + '_ {
        (0..self.ops.len()).map(|i| self.op(i))
    }
}

/// Encodes writes at `seq` in `term`: a single one as a plain record, several inside a batch
/// record.
pub(super) fn encode_batch<O: Ops + ?Sized>(out: &mut [u8], ops: &O, seq: u64, term: u64) {
    let single = ops.count() == 1;
    let (mut at, flags) = if single {
        (0, 0)
    } else {
        (RECORD_HEADER_BYTES, FLAG_IN_BATCH)
    };
    for i in 0..ops.count() {
        let op = ops.at(i);
        at += format::encode_record(
            &mut out[at..],
            &op.header(flags, seq, term),
            op.key,
            op.value,
        );
    }
    if !single {
        let header = Header {
            kind: RecordKind::Batch,
            namespace_tag: 0,
            flags: 0,
            seq,
            term,
            expiry_ms: 0,
        };
        format::encode_header(out, &header, 0, at - RECORD_HEADER_BYTES);
        format::seal_record(&mut out[..at]);
    }
}
