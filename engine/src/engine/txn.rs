//! [`Txn`]: reads that see a transaction's own queued writes, under the writer lock.

use std::collections::HashMap;

use super::{Inner, Op, Value, WriteBatch, BATCH_OPS_MAX};
use crate::error::{Error, Result};
use crate::format::{Namespace, RecordKind};

/// A transaction in progress (see `Engine::begin`): it holds the writer lock. Reads see the
/// transaction's own writes.
pub struct Txn<'a> {
    pub(super) writer: std::sync::MutexGuard<'a, super::Writer>,
    pub(super) inner: &'a Inner,
    pub(super) batch: WriteBatch,
    /// Latest queued op per key, for read-your-writes; built by the first read of a
    /// transaction that holds more than `OVERLAY_AFTER_OPS` writes (below that a linear scan is
    /// cheaper than hashing), then kept up to date by every write. A transaction that only
    /// writes (MSET) never builds it: hashing and copying each key again cost a quarter of the
    /// server's CPU in a 100-key MSET benchmark (docs/benchmarks.md, issue 4).
    pub(super) overlay: std::cell::OnceCell<HashMap<(Namespace, Vec<u8>), usize>>,
    /// The clock reading every expiry check of the transaction uses, taken at its first need
    /// (a blind write never reads the clock).
    pub(super) now_ms: std::cell::OnceCell<u64>,
}

const OVERLAY_AFTER_OPS: usize = 16;

/// Batches whose buffers are kept for the next transaction at most this big (bytes), so one
/// huge transaction does not pin its memory.
const SPARE_BATCH_BYTES_MAX: usize = 1 << 20;

impl Drop for Txn<'_> {
    /// Gives the batch buffer back to the writer, emptied, for the next transaction.
    fn drop(&mut self) {
        let mut batch = std::mem::take(&mut self.batch);
        if batch.capacity_bytes() <= SPARE_BATCH_BYTES_MAX {
            batch.clear();
            self.writer.spare_batch = batch;
        }
    }
}

impl Txn<'_> {
    /// Index of the latest queued indexed write (put or delete) of a key.
    fn pending_op(&self, namespace: Namespace, key: &[u8]) -> Option<usize> {
        let batch = &self.batch;
        let matches =
            |op: &Op<'_>| op.kind.is_indexed() && op.namespace == namespace && op.key == key;
        if batch.len() <= OVERLAY_AFTER_OPS && self.overlay.get().is_none() {
            return (0..batch.len()).rev().find(|&at| matches(&batch.op(at)));
        }
        let overlay = self.overlay.get_or_init(|| {
            batch
                .iter()
                .enumerate()
                .filter(|(_, op)| op.kind.is_indexed())
                .map(|(at, op)| ((op.namespace, op.key.to_vec()), at))
                .collect()
        });
        overlay.get(&(namespace, key.to_vec())).copied()
    }

    /// A queued write's value and expiry, if it is a put still live at the transaction's time.
    fn pending_value(&self, at: usize) -> Option<(&[u8], u64)> {
        let op = self.batch.op(at);
        (op.kind == RecordKind::Put && (op.expiry_ms == 0 || op.expiry_ms > self.now_ms()))
            .then_some((op.value, op.expiry_ms))
    }

    /// The clock reading all the transaction's expiry checks use (taken at its first use).
    pub fn now_ms(&self) -> u64 {
        *self.now_ms.get_or_init(|| self.inner.config.clock.now_ms())
    }

    /// The key's current value, including this transaction's own writes; expired keys are
    /// absent.
    pub fn get(&self, namespace: Namespace, key: &[u8]) -> Result<Option<Value>> {
        if let Some(at) = self.pending_op(namespace, key) {
            return Ok(self.pending_value(at).map(|(value, expiry_ms)| Value {
                value: value.to_vec(),
                expiry_ms,
            }));
        }
        self.inner
            .get_with_at(namespace, key, Some(self.now_ms()), |v| Value {
                value: v.value.to_vec(),
                expiry_ms: v.expiry_ms,
            })
    }

    /// Whether the key exists (seeing this transaction's writes).
    pub fn contains(&self, namespace: Namespace, key: &[u8]) -> Result<bool> {
        if let Some(at) = self.pending_op(namespace, key) {
            return Ok(self.pending_value(at).is_some());
        }
        Ok(self
            .inner
            .lookup_at(namespace, key, Some(self.now_ms()))
            .is_some())
    }

    /// The key's version (see `Engine::version`) as committed before this transaction; keys
    /// this transaction wrote report `None` for "changed".
    pub fn version(&self, namespace: Namespace, key: &[u8]) -> Option<u64> {
        if self.pending_op(namespace, key).is_some() {
            return None;
        }
        self.inner.version_at(namespace, key, Some(self.now_ms()))
    }

    /// Queues a put.
    pub fn put(
        &mut self,
        namespace: Namespace,
        key: &[u8],
        value: &[u8],
        expiry_ms: u64,
    ) -> Result<()> {
        self.push(Op {
            kind: RecordKind::Put,
            namespace,
            key,
            value,
            expiry_ms,
        })
    }

    /// Queues a delete if the key exists; returns whether it did.
    pub fn delete(&mut self, namespace: Namespace, key: &[u8]) -> Result<bool> {
        if !self.contains(namespace, key)? {
            return Ok(false);
        }
        self.push(Op {
            kind: RecordKind::Delete,
            namespace,
            key,
            value: &[],
            expiry_ms: 0,
        })?;
        Ok(true)
    }

    /// Queues any write (a log-only append, a range marker, or a put or delete as is).
    pub fn push(&mut self, op: Op<'_>) -> Result<()> {
        op.validate()?;
        if self.batch.len() >= BATCH_OPS_MAX {
            return Err(Error::Invalid(format!(
                "transaction exceeds {BATCH_OPS_MAX} writes"
            )));
        }
        self.batch.push_op(&op);
        if op.kind.is_indexed() {
            if let Some(overlay) = self.overlay.get_mut() {
                overlay.insert((op.namespace, op.key.to_vec()), self.batch.len() - 1);
            }
        }
        Ok(())
    }

    /// Writes queued so far.
    pub fn pending(&self) -> usize {
        self.batch.len()
    }

    /// The writes queued so far, in order.
    pub fn batch(&self) -> &WriteBatch {
        &self.batch
    }

    /// Appends the queued writes as one entry (`None`: nothing was queued, nothing written),
    /// then takes `keys` out of the index (`Engine::forget`) if the append succeeded, and
    /// keeps the writer lock: the transaction goes on, empty, and its next commit is another
    /// entry. For a model that keeps state beside the log and must change it after its entry
    /// committed and before any other writer decides (the queue model, decision 70). A
    /// replicated engine forgets nothing. If the append fails, the queued writes stay queued
    /// (drop the transaction).
    pub fn commit_part<K: AsRef<[u8]>>(
        &mut self,
        namespace: Namespace,
        keys: &[K],
    ) -> Result<Option<u64>> {
        let seq = if self.batch.is_empty() {
            None
        } else {
            let Txn {
                writer,
                inner,
                batch,
                ..
            } = self;
            let seq = inner.append(writer, batch)?;
            batch.clear();
            // Its positions named ops of the committed batch.
            self.overlay = std::cell::OnceCell::new();
            Some(seq)
        };
        if self.inner.undo.is_none() {
            for key in keys {
                self.inner.forget(namespace, key.as_ref());
            }
        }
        Ok(seq)
    }

    /// Appends the queued writes as one entry and returns its seq (`None`: nothing was
    /// queued, nothing written), then releases the writer lock. Does not wait for durability:
    /// pass the seq to `Engine::wait_durable`.
    pub fn commit(mut self) -> Result<Option<u64>> {
        if self.batch.is_empty() {
            return Ok(None);
        }
        let Txn {
            writer,
            inner,
            batch,
            ..
        } = &mut self;
        inner.append(writer, batch).map(Some)
    }
}
