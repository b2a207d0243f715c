//! The key-value data model: Redis's strings and key space.
//!
//! # Layout
//! Each data model has a folder of this shape (issue 10): a core that knows no sockets, frames
//! or argument lists, tested on its own, and a thin command shell.
//! - The core, typed arguments in, typed results or a [`KvError`] out:
//!   - `core`: the seam the core runs over ([`KvRead`], [`KvWrite`], [`KvScan`]), [`KvError`],
//!     [`STRING_BYTES_MAX`] and `put_or_expire`, the rule every write with an expiry follows.
//!   - `strings`: SET and its variants, GETEX, MSET, APPEND, ranges, counters.
//!   - `keys`: DEL, EXISTS, TOUCH, EXPIRE, TTL, PERSIST, TYPE, KEYS, SCAN, RANDOMKEY, RENAME,
//!     COPY.
//!   - `expiry`: expiry arithmetic, pure (units, [`expiry::ExpiryChange`], EXPIRE's
//!     conditions, how TTL and friends present a reading).
//!   - `bits`: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD: pure bit operations (each
//!     property-tested against a bit-by-bit reference) and their runs on a key.
//!   - `lcs`: LCS, Redis's dynamic program and walk, pure.
//!   - `object`: OBJECT's answers for a string (encoding, reference count), pure.
//! - The shell, `commands`: the model's rows of the command table and one file per family,
//!   each command parse -> core -> [`Frame`](crate::frame::Frame); the one place a
//!   [`KvError`] becomes Redis's error text.
//! - `testing` (tests only): the core on an in-memory engine, without the dispatcher.
//!
//! # Data flow
//! `dispatch` finds the command in the table -> the shell parses `args` into the core's typed
//! arguments (options structs, an [`expiry::ExpiryArg`], offsets) -> a read calls the core with
//! the `Call` as its [`KvRead`] (inside EXEC that reads through EXEC's transaction); a write
//! calls it inside `Call::write`, with the transaction as its [`KvWrite`], and what it queued
//! commits as one log entry through `Store::write` (or joins EXEC's) -> the shell builds the
//! reply from the typed result, or from the `KvError`.

pub mod bits;
pub mod commands;
mod core;
pub mod expiry;
pub mod keys;
pub mod lcs;
pub mod object;
pub mod strings;
#[cfg(test)]
pub(crate) mod testing;

pub use self::core::{put_or_expire, KvError, KvRead, KvScan, KvWrite, Result, STRING_BYTES_MAX};
