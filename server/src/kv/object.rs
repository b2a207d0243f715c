//! OBJECT's answers for a string. Flin stores every value as its bytes, so it answers from
//! them with Redis's rules for a string written by SET: what Redis would have made of those
//! bytes (docs/commands.md says where Redis's answer also depends on how the value was
//! written).

use super::core::{KvError, KvRead, Result};
use crate::number::parse_i64;

/// Longest string Redis keeps in one allocation with its object header
/// (`OBJ_ENCODING_EMBSTR_SIZE_LIMIT`).
const EMBSTR_BYTES_MAX: usize = 44;

/// Redis shares one object for each integer below this (`OBJ_SHARED_INTEGERS`).
const SHARED_INTEGERS: i64 = 10_000;

/// The reference count Redis reports for a shared object (`OBJ_SHARED_REFCOUNT`, `INT_MAX`).
const SHARED_REFCOUNT: i64 = i32::MAX as i64;

/// Redis's string encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// A 64-bit integer in Redis's strict form (at most 20 bytes).
    Int,
    /// Up to 44 bytes, stored with the object.
    Embstr,
    /// Anything longer.
    Raw,
}

impl Encoding {
    /// Redis's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Int => "int",
            Encoding::Embstr => "embstr",
            Encoding::Raw => "raw",
        }
    }
}

/// The encoding Redis's `tryObjectEncoding` gives these bytes.
pub fn encoding_of(value: &[u8]) -> Encoding {
    if parse_i64(value).is_some() {
        Encoding::Int
    } else if value.len() <= EMBSTR_BYTES_MAX {
        Encoding::Embstr
    } else {
        Encoding::Raw
    }
}

/// The reference count Redis reports for these bytes: its shared integers (0 to 9999) report
/// `INT_MAX`, any other string 1.
pub fn refcount_of(value: &[u8]) -> i64 {
    match parse_i64(value) {
        Some(number) if (0..SHARED_INTEGERS).contains(&number) => SHARED_REFCOUNT,
        _ => 1,
    }
}

/// OBJECT ENCODING (`None`: no such key).
pub fn encoding_at(read: &impl KvRead, key: &[u8]) -> Result<Option<Encoding>> {
    read.read_with(key, |value, _| encoding_of(value))
}

/// OBJECT REFCOUNT (`None`: no such key).
pub fn refcount_at(read: &impl KvRead, key: &[u8]) -> Result<Option<i64>> {
    read.read_with(key, |value, _| refcount_of(value))
}

/// OBJECT FREQ (access frequency, tracked by Redis only under an LFU eviction policy, which
/// Flin does not have) and OBJECT IDLETIME (time since the last access, which Flin does not
/// record: a read would have to write): `Ok(None)` for a missing key, as Redis answers first,
/// else `untracked`.
pub fn untracked_at(read: &impl KvRead, key: &[u8], untracked: KvError) -> Result<Option<i64>> {
    if read.contains(key)? {
        return Err(untracked);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_follow_redis_rules_for_set() {
        assert_eq!(encoding_of(b"0"), Encoding::Int);
        assert_eq!(encoding_of(b"-9223372036854775808"), Encoding::Int);
        assert_eq!(encoding_of(b"9223372036854775808"), Encoding::Embstr);
        for not_canonical in [&b"01"[..], b"+1", b" 1", b"-0", b"1.0"] {
            assert_eq!(encoding_of(not_canonical), Encoding::Embstr);
        }
        assert_eq!(encoding_of(b""), Encoding::Embstr);
        assert_eq!(encoding_of(&[b'x'; 44]), Encoding::Embstr);
        assert_eq!(encoding_of(&[b'x'; 45]), Encoding::Raw);
        assert_eq!(encoding_of(&[b'1'; 45]), Encoding::Raw);
        assert_eq!(Encoding::Int.name(), "int");
    }

    #[test]
    fn small_integers_are_shared() {
        assert_eq!(refcount_of(b"0"), 2_147_483_647);
        assert_eq!(refcount_of(b"9999"), 2_147_483_647);
        assert_eq!(refcount_of(b"10000"), 1);
        assert_eq!(refcount_of(b"-1"), 1);
        assert_eq!(refcount_of(b"007"), 1);
        assert_eq!(refcount_of(b"hello"), 1);
    }
}
