//! The seam the key-value core runs over, and what it fails with: [`KvRead`] (a live key's
//! value and expiry, at one time), [`KvWrite`] (puts and deletes queued in a transaction under
//! the writer lock), [`KvScan`] (the committed key space, a page at a time) and [`KvError`].
//!
//! The server implements the traits for its own types (`context::KvTxn`, `context::Call`,
//! `store::Reader`); the core's unit tests run the same functions on an in-memory engine
//! (`kv::testing`). Nothing here knows sockets, frames or argument lists.

use flin_engine::{Value, VALUE_BYTES_MAX};

/// The result of a key-value core function.
pub type Result<T> = std::result::Result<T, KvError>;

/// Redis's `proto-max-bulk-len`: the largest string a command may build (and the engine's
/// largest value).
pub const STRING_BYTES_MAX: usize = VALUE_BYTES_MAX;

/// Why a key-value operation was refused. Each variant stands for one of Redis's error
/// replies; the command shell (`kv::commands`) turns it into Redis's exact text. A refusal writes nothing:
/// every core function decides before it queues a write.
#[derive(Debug)]
pub enum KvError {
    /// An option list that does not parse.
    Syntax,
    /// An integer argument, or a value read as one, that is not a 64-bit integer in Redis's
    /// strict form.
    NotInteger,
    /// A float argument or value that is not a number.
    NotFloat,
    /// INCR/INCRBY/DECR/DECRBY past the i64 range.
    IncrementOverflow,
    /// `DECRBY key -9223372036854775808`: the decrement itself cannot be negated.
    DecrementOverflow,
    /// INCRBYFLOAT whose result is not finite.
    NanOrInfinity,
    /// A string would grow past [`STRING_BYTES_MAX`].
    StringTooLong,
    /// SETRANGE with a negative offset.
    OffsetOutOfRange,
    /// An expiry that is not positive, overflows, or (absolute) is not after the epoch;
    /// `command` is the lower-case name Redis's message shows.
    InvalidExpire { command: &'static str },
    /// EXPIRE's options: an unknown word (as given).
    UnsupportedOption(Vec<u8>),
    /// EXPIRE's options: NX with XX, GT or LT.
    NxWithOtherCondition,
    /// EXPIRE's options: GT with LT.
    GtWithLt,
    /// RENAME/RENAMENX of a missing key.
    NoSuchKey,
    /// A SCAN cursor that does not parse.
    InvalidCursor,
    /// COPY onto itself.
    SameObject,
    /// A bit offset that is not an integer in `0..=BIT_OFFSET_MAX`.
    BitOffset,
    /// SETBIT's value is not 0 or 1.
    BitValue,
    /// BITPOS's bit is not 0 or 1.
    BitArgument,
    /// BITFIELD's type is not `i1`..`i64` or `u1`..`u63`.
    BitfieldType,
    /// BITFIELD's OVERFLOW is not WRAP, SAT or FAIL.
    BitfieldOverflowType,
    /// BITFIELD_RO with SET or INCRBY.
    BitfieldReadOnly,
    /// BITOP NOT with more than one source.
    BitopNotSources,
    /// LCS with both LEN and IDX.
    LcsLenAndIdx,
    /// LCS whose table would pass [`STRING_BYTES_MAX`].
    LcsTableTooLarge,
    /// OBJECT FREQ: access frequencies are tracked only under an LFU eviction policy, which
    /// Flin does not have.
    FrequencyNotTracked,
    /// OBJECT IDLETIME: Flin does not record when a key was last read (docs/commands.md).
    IdleTimeNotTracked,
    /// The storage engine refused (a key or value over its limit, writes after a failed
    /// flush, ...).
    Engine(flin_engine::Error),
}

impl From<flin_engine::Error> for KvError {
    fn from(error: flin_engine::Error) -> KvError {
        KvError::Engine(error)
    }
}

/// Reads of live keys, all at one time ([`KvRead::now_ms`]): expired keys are absent.
pub trait KvRead {
    /// The time expiries are compared with, in ms since the epoch.
    fn now_ms(&self) -> u64;

    /// A live key's value and expiry (0: none).
    fn get(&self, key: &[u8]) -> Result<Option<Value>>;

    /// Whether a live key exists.
    fn contains(&self, key: &[u8]) -> Result<bool>;

    /// Runs `read` on a live key's value and expiry, in place where the view allows it (no
    /// copy of the value).
    fn read_with<R>(&self, key: &[u8], read: impl FnOnce(&[u8], u64) -> R) -> Result<Option<R>> {
        Ok(self
            .get(key)?
            .map(|found| read(&found.value, found.expiry_ms)))
    }

    /// The values of several keys, in order (MGET).
    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter()
            .map(|key| Ok(self.get(key)?.map(|found| found.value)))
            .collect()
    }

    /// A live key's expiry (0: none).
    fn expiry_of(&self, key: &[u8]) -> Result<Option<u64>> {
        self.read_with(key, |_, expiry_ms| expiry_ms)
    }
}

/// Writes, queued in a transaction that holds the writer lock: reads see them, and they
/// commit together as one log entry (or not at all, if the command refuses).
pub trait KvWrite: KvRead {
    /// Writes `value` with `expiry_ms` (0: none).
    fn put(&mut self, key: &[u8], value: &[u8], expiry_ms: u64) -> Result<()>;

    /// Deletes the key if it exists; returns whether it did.
    fn delete(&mut self, key: &[u8]) -> Result<bool>;

    /// Counts a write to `key` that left no record, so WATCH sees it.
    fn touch(&mut self, key: &[u8]);
}

/// The committed key space as a whole (KEYS, SCAN, RANDOMKEY): these walk the engine's index,
/// which holds committed keys only (inside EXEC they see the state before the transaction,
/// docs/commands.md).
pub trait KvScan {
    /// Up to about `count` keys from `cursor`, and the cursor to continue from (0: done).
    fn scan_page(&self, cursor: u64, count: usize) -> Result<(u64, Vec<Vec<u8>>)>;

    /// A key picked from `seed`, if any.
    fn random_key(&self, seed: u64) -> Result<Option<Vec<u8>>>;
}

/// Writes `value` under `key` with `expiry_ms` (0 = none); an expiry at or before now deletes
/// the key instead, as Redis does.
pub fn put_or_expire(
    txn: &mut impl KvWrite,
    key: &[u8],
    value: &[u8],
    expiry_ms: u64,
) -> Result<()> {
    if expiry_ms != 0 && expiry_ms <= txn.now_ms() {
        if !txn.delete(key)? {
            // Nothing to delete, nothing written: WATCH must still see the write.
            txn.touch(key);
        }
    } else {
        txn.put(key, value, expiry_ms)?;
    }
    Ok(())
}
