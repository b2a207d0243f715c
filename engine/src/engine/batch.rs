//! The typed list of writes the engine applies atomically ([`WriteBatch`]), and how a group of
//! writes is encoded into the log.

use crate::error::{Error, Result};
use crate::format::{
    self, Namespace, RecordKind, FLAG_IN_BATCH, KEY_BYTES_MAX, RECORD_HEADER_BYTES, VALUE_BYTES_MAX,
};

/// What the write path needs of one write: implemented by `OpView`, a put or delete
/// borrowing its key and value (from a `WriteBatch`'s buffer, or from `Engine::put`'s
/// arguments, which then allocates nothing).
pub(crate) trait WriteOp {
    fn namespace(&self) -> Namespace;
    fn key(&self) -> &[u8];
    /// Value and expiry of a put; `None` for a delete.
    fn put_value(&self) -> Option<(&[u8], u64)>;

    fn record_len(&self) -> usize {
        format::record_len(
            self.key().len(),
            self.put_value().map_or(0, |(v, _)| v.len()),
        )
    }

    fn validate(&self) -> Result<()> {
        if self.key().len() > KEY_BYTES_MAX {
            return Err(Error::TooLarge {
                field: "key",
                bytes: self.key().len(),
                limit: KEY_BYTES_MAX,
            });
        }
        if let Some((value, expiry_ms)) = self.put_value() {
            if value.len() > VALUE_BYTES_MAX {
                return Err(Error::TooLarge {
                    field: "value",
                    bytes: value.len(),
                    limit: VALUE_BYTES_MAX,
                });
            }
            if expiry_ms > format::EXPIRY_MS_MAX {
                return Err(Error::Invalid(format!(
                    "expiry {expiry_ms} ms is out of range"
                )));
            }
        }
        Ok(())
    }
}

/// One write, borrowing its key and value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpView<'a> {
    pub(crate) namespace: Namespace,
    pub(crate) key: &'a [u8],
    /// Value and expiry of a put; `None` for a delete.
    pub(crate) put: Option<(&'a [u8], u64)>,
}

impl WriteOp for OpView<'_> {
    fn namespace(&self) -> Namespace {
        self.namespace
    }

    fn key(&self) -> &[u8] {
        self.key
    }

    fn put_value(&self) -> Option<(&[u8], u64)> {
        self.put
    }
}

/// Bytes a group of writes takes in the log: one record, or a batch record around them.
pub(super) fn encoded_len<O: WriteOp>(ops: &[O]) -> usize {
    match ops.len() {
        1 => ops[0].record_len(),
        _ => RECORD_HEADER_BYTES + ops.iter().map(WriteOp::record_len).sum::<usize>(),
    }
}

/// Several writes applied all-or-nothing, also across a crash. Keys and values are copied
/// into one buffer, back to back: a batch of a hundred puts makes a few allocations as it
/// grows, not two per put (they were a tenth of a batched put's time).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// Every op's key, then (for a put) its value.
    bytes: Vec<u8>,
    ops: Vec<BatchOp>,
}

/// Where one write of a `WriteBatch` lies in its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BatchOp {
    pub(crate) namespace: Namespace,
    /// Offset of the key in `WriteBatch::bytes`; the value follows the key.
    start: usize,
    key_len: usize,
    value_len: usize,
    /// `Some(expiry_ms)` for a put (0 = no expiry), `None` for a delete.
    expiry_ms: Option<u64>,
}

/// Most operations one batch may hold.
pub const BATCH_OPS_MAX: usize = 1 << 20;

impl WriteBatch {
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    pub fn put(
        &mut self,
        namespace: Namespace,
        key: &[u8],
        value: &[u8],
        expiry_ms: u64,
    ) -> &mut Self {
        self.push(namespace, key, value, Some(expiry_ms))
    }

    pub fn delete(&mut self, namespace: Namespace, key: &[u8]) -> &mut Self {
        self.push(namespace, key, &[], None)
    }

    pub(crate) fn push(
        &mut self,
        namespace: Namespace,
        key: &[u8],
        value: &[u8],
        expiry_ms: Option<u64>,
    ) -> &mut Self {
        self.ops.push(BatchOp {
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

    /// Write number `i`.
    pub(crate) fn op(&self, i: usize) -> OpView<'_> {
        let op = &self.ops[i];
        let key_end = op.start + op.key_len;
        OpView {
            namespace: op.namespace,
            key: &self.bytes[op.start..key_end],
            put: op
                .expiry_ms
                .map(|expiry_ms| (&self.bytes[key_end..key_end + op.value_len], expiry_ms)),
        }
    }

    /// Every write, in order.
    pub(crate) fn views(&self) -> Vec<OpView<'_>> {
        (0..self.ops.len()).map(|i| self.op(i)).collect()
    }
}

/// Encodes writes: a single one as a plain record, several inside a batch record.
pub(super) fn encode_batch<O: WriteOp>(out: &mut [u8], ops: &[O], seq: u64) {
    let single = ops.len() == 1;
    let (mut at, flags) = if single {
        (0, 0)
    } else {
        (RECORD_HEADER_BYTES, FLAG_IN_BATCH)
    };
    for op in ops {
        at += match op.put_value() {
            Some((value, expiry_ms)) => format::encode_record(
                &mut out[at..],
                RecordKind::Put,
                op.namespace().tag(),
                flags,
                seq,
                expiry_ms,
                op.key(),
                value,
            ),
            None => format::encode_record(
                &mut out[at..],
                RecordKind::Delete,
                op.namespace().tag(),
                flags,
                seq,
                0,
                op.key(),
                &[],
            ),
        };
    }
    if !single {
        format::encode_header(
            out,
            RecordKind::Batch,
            0,
            0,
            seq,
            0,
            0,
            at - RECORD_HEADER_BYTES,
        );
        format::seal_record(&mut out[..at]);
    }
}
