//! String semantics: SET and its variants, GETEX, multi-key sets, APPEND, ranges and counters.
//! Each write function decides through a [`KvWrite`] and queues its writes only once it has
//! decided, so a refusal writes nothing.

use flin_engine::{Value, KEY_BYTES_MAX};

use super::core::{put_or_expire, KvError, KvRead, KvWrite, Result, STRING_BYTES_MAX};
use super::expiry::{ExpiryArg, ExpiryChange};
use crate::number::{format_f64, parse_f64, parse_i64};

/// SET's NX / XX / IFEQ / IFNE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SetCondition<'a> {
    #[default]
    Always,
    /// NX: only if the key is absent.
    IfAbsent,
    /// XX: only if it exists.
    IfPresent,
    /// IFEQ (Redis 8.4's compare-and-set): only if the key holds exactly these bytes; a
    /// missing key is equal to nothing and is not created.
    IfEqual(&'a [u8]),
    /// IFNE: only if the key is missing or holds other bytes.
    IfNotEqual(&'a [u8]),
}

/// SET's options, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetOptions<'a> {
    pub condition: SetCondition<'a>,
    /// GET: answer the old value.
    pub get: bool,
    pub expiry: ExpiryChange,
}

impl SetOptions<'static> {
    /// A plain `SET key value`: unconditional, clears the TTL.
    pub const PLAIN: SetOptions<'static> = SetOptions {
        condition: SetCondition::Always,
        get: false,
        expiry: ExpiryChange::Clear,
    };
}

/// What SET did.
#[derive(Debug, PartialEq, Eq)]
pub struct SetOutcome {
    /// The condition held and the value was written (or, with a past expiry, the key deleted).
    pub written: bool,
    /// The old value, read only when the options needed it (GET, NX/XX/IFEQ/IFNE, KEEPTTL).
    pub old: Option<Vec<u8>>,
}

pub fn set(
    txn: &mut impl KvWrite,
    key: &[u8],
    value: &[u8],
    options: &SetOptions<'_>,
) -> Result<SetOutcome> {
    // A plain SET needs nothing of the old value: reading it would copy it for nothing.
    let needs_old = options.condition != SetCondition::Always
        || options.get
        || options.expiry == ExpiryChange::Keep;
    let old = if needs_old { txn.get(key)? } else { None };
    let condition_failed = match options.condition {
        SetCondition::Always => false,
        SetCondition::IfAbsent => old.is_some(),
        SetCondition::IfPresent => old.is_none(),
        SetCondition::IfEqual(expected) => old.as_ref().is_none_or(|old| old.value != expected),
        SetCondition::IfNotEqual(other) => old.as_ref().is_some_and(|old| old.value == other),
    };
    if !condition_failed {
        let expiry_ms = match options.expiry {
            ExpiryChange::Clear | ExpiryChange::Persist => 0,
            ExpiryChange::Keep => old.as_ref().map_or(0, |old| old.expiry_ms),
            ExpiryChange::At(ms) => ms.max(0) as u64,
        };
        put_or_expire(txn, key, value, expiry_ms)?;
    }
    Ok(SetOutcome {
        written: !condition_failed,
        old: old.map(|old| old.value),
    })
}

/// SETNX: whether the key was absent and is now set.
pub fn set_if_absent(txn: &mut impl KvWrite, key: &[u8], value: &[u8]) -> Result<bool> {
    if txn.contains(key)? {
        return Ok(false);
    }
    txn.put(key, value, 0)?;
    Ok(true)
}

/// SETEX / PSETEX: the value with an expiry already checked to be in the future.
pub fn set_expiring(
    txn: &mut impl KvWrite,
    key: &[u8],
    value: &[u8],
    expiry_ms: u64,
) -> Result<()> {
    txn.put(key, value, expiry_ms)
}

/// GETSET: the old value; the new one has no TTL.
pub fn get_and_set(txn: &mut impl KvWrite, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
    let old = txn.get(key)?;
    txn.put(key, value, 0)?;
    Ok(old.map(|old| old.value))
}

/// GETDEL.
pub fn get_and_delete(txn: &mut impl KvWrite, key: &[u8]) -> Result<Option<Vec<u8>>> {
    let old = txn.get(key)?;
    if old.is_some() {
        txn.delete(key)?;
    }
    Ok(old.map(|old| old.value))
}

/// What GETEX with an option does to the TTL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetExChange {
    Persist,
    /// EX/PX/EXAT/PXAT, checked only once the key is found.
    At(ExpiryArg),
}

/// GETEX with an option: the value, after changing its TTL. A missing key is answered before
/// the expiry amount is looked at (Redis 7.2).
pub fn get_and_change_expiry(
    txn: &mut impl KvWrite,
    key: &[u8],
    change: GetExChange,
) -> Result<Option<Vec<u8>>> {
    let Some(old) = txn.get(key)? else {
        return Ok(None);
    };
    let expiry_ms = match change {
        GetExChange::Persist => 0,
        GetExChange::At(arg) => arg.absolute_ms(txn.now_ms())?.max(0) as u64,
    };
    if expiry_ms != old.expiry_ms {
        put_or_expire(txn, key, &old.value, expiry_ms)?;
    }
    Ok(Some(old.value))
}

/// Refuses MSET-style pairs with a key past the engine's limit before anything is queued, so
/// a bad key cannot leave half the pairs written in EXEC's shared transaction. The error is
/// the engine's own, as SET gives it for the same key.
fn check_keys<'a>(keys: impl Iterator<Item = &'a [u8]>) -> Result<()> {
    for key in keys {
        if key.len() > KEY_BYTES_MAX {
            return Err(KvError::Engine(flin_engine::Error::TooLarge {
                field: "key",
                bytes: key.len(),
                limit: KEY_BYTES_MAX,
            }));
        }
    }
    Ok(())
}

/// MSET: `pairs` holds keys and values alternating (an even count); writes every pair,
/// atomically.
pub fn set_many(txn: &mut impl KvWrite, pairs: &[&[u8]]) -> Result<()> {
    check_keys(pairs.chunks_exact(2).map(|pair| pair[0]))?;
    for pair in pairs.chunks_exact(2) {
        txn.put(pair[0], pair[1], 0)?;
    }
    Ok(())
}

/// MSETNX: every pair if no key exists; whether it did.
pub fn set_many_if_absent(txn: &mut impl KvWrite, pairs: &[&[u8]]) -> Result<bool> {
    check_keys(pairs.chunks_exact(2).map(|pair| pair[0]))?;
    for pair in pairs.chunks_exact(2) {
        if txn.contains(pair[0])? {
            return Ok(false);
        }
    }
    for pair in pairs.chunks_exact(2) {
        txn.put(pair[0], pair[1], 0)?;
    }
    Ok(true)
}

/// APPEND: the new length; keeps the TTL.
pub fn append(txn: &mut impl KvWrite, key: &[u8], suffix: &[u8]) -> Result<usize> {
    let (mut value, expiry_ms) = match txn.get(key)? {
        Some(old) => (old.value, old.expiry_ms),
        None => (Vec::new(), 0),
    };
    if value.len() + suffix.len() > STRING_BYTES_MAX {
        return Err(KvError::StringTooLong);
    }
    value.extend_from_slice(suffix);
    txn.put(key, &value, expiry_ms)?;
    Ok(value.len())
}

/// STRLEN (0 for a missing key).
pub fn length(read: &impl KvRead, key: &[u8]) -> Result<usize> {
    Ok(read.read_with(key, |value, _| value.len())?.unwrap_or(0))
}

/// GETRANGE (empty for a missing key).
pub fn range(read: &impl KvRead, key: &[u8], start: i64, end: i64) -> Result<Vec<u8>> {
    Ok(read
        .read_with(key, |value, _| substring(value, start, end).to_vec())?
        .unwrap_or_default())
}

/// GETRANGE's index rules (Redis 7): negative indexes count from the end, then both are
/// clamped to the string.
pub fn substring(value: &[u8], mut start: i64, mut end: i64) -> &[u8] {
    let length = value.len() as i64;
    if (start < 0 && end < 0 && start > end) || length == 0 {
        return &[];
    }
    if start < 0 {
        start += length;
    }
    if end < 0 {
        end += length;
    }
    start = start.max(0);
    end = end.max(0).min(length - 1);
    if start > end {
        return &[];
    }
    &value[start as usize..=end as usize]
}

/// SETRANGE: the new length; keeps the TTL. An empty patch writes nothing (and on a missing
/// key replies 0).
pub fn set_range(txn: &mut impl KvWrite, key: &[u8], offset: i64, patch: &[u8]) -> Result<usize> {
    if offset < 0 {
        return Err(KvError::OffsetOutOfRange);
    }
    let offset = offset as usize;
    let (mut value, expiry_ms) = match txn.get(key)? {
        Some(old) => (old.value, old.expiry_ms),
        None if patch.is_empty() => return Ok(0),
        None => (Vec::new(), 0),
    };
    if patch.is_empty() {
        return Ok(value.len());
    }
    if offset.saturating_add(patch.len()) > STRING_BYTES_MAX {
        return Err(KvError::StringTooLong);
    }
    let end = offset + patch.len();
    if value.len() < end {
        value.resize(end, 0);
    }
    value[offset..end].copy_from_slice(patch);
    txn.put(key, &value, expiry_ms)?;
    Ok(value.len())
}

/// Adds `delta` to the integer at `key` (0 if missing), keeping its TTL; the new value.
pub fn increment(txn: &mut impl KvWrite, key: &[u8], delta: i64) -> Result<i64> {
    let old: Option<Value> = txn.get(key)?;
    let (current, expiry_ms) = match &old {
        Some(old) => (
            parse_i64(&old.value).ok_or(KvError::NotInteger)?,
            old.expiry_ms,
        ),
        None => (0, 0),
    };
    let next = current
        .checked_add(delta)
        .ok_or(KvError::IncrementOverflow)?;
    txn.put(key, next.to_string().as_bytes(), expiry_ms)?;
    Ok(next)
}

/// DECRBY's delta as an increment (`-9223372036854775808` cannot be negated).
pub fn decrement_delta(amount: i64) -> Result<i64> {
    amount.checked_neg().ok_or(KvError::DecrementOverflow)
}

/// INCRBYFLOAT: adds `delta` to the float at `key` (0 if missing), keeping its TTL; the new
/// value as stored.
pub fn increment_float(txn: &mut impl KvWrite, key: &[u8], delta: f64) -> Result<String> {
    let old = txn.get(key)?;
    let (current, expiry_ms) = match &old {
        Some(old) => (
            parse_f64(&old.value).ok_or(KvError::NotFloat)?,
            old.expiry_ms,
        ),
        None => (0.0, 0),
    };
    let next = current + delta;
    if !next.is_finite() {
        return Err(KvError::NanOrInfinity);
    }
    let text = format_f64(next);
    txn.put(key, text.as_bytes(), expiry_ms)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::expiry::ExpiryUnit;
    use crate::kv::testing::Kv;

    #[test]
    fn substring_follows_redis_7() {
        assert_eq!(substring(b"abc", -1, -2), b"");
        assert_eq!(substring(b"Hello", 0, 100), b"Hello");
        assert_eq!(substring(b"Hello", -3, -1), b"llo");
        assert_eq!(substring(b"Hello", -100, 0), b"H");
        assert_eq!(substring(b"", 0, -1), b"");
        assert_eq!(substring(b"abc", 2, 1), b"");
        assert_eq!(substring(b"abc", i64::MIN, i64::MAX), b"abc");
    }

    #[test]
    fn set_conditions_and_ttls() {
        let kv = Kv::new();
        kv.write(|txn| {
            let plain = set(txn, b"k", b"v", &SetOptions::PLAIN)?;
            assert_eq!(
                plain,
                SetOutcome {
                    written: true,
                    old: None
                }
            );
            let nx = SetOptions {
                condition: SetCondition::IfAbsent,
                get: true,
                expiry: ExpiryChange::Clear,
            };
            assert_eq!(
                set(txn, b"k", b"w", &nx)?,
                SetOutcome {
                    written: false,
                    old: Some(b"v".to_vec())
                }
            );
            let at = ExpiryChange::At(txn.now_ms() as i64 + 5_000);
            let with_ttl = SetOptions {
                expiry: at,
                ..SetOptions::PLAIN
            };
            set(txn, b"t", b"1", &with_ttl)?;
            let keep = SetOptions {
                expiry: ExpiryChange::Keep,
                ..SetOptions::PLAIN
            };
            set(txn, b"t", b"2", &keep)?;
            assert_eq!(txn.expiry_of(b"t")?, Some(txn.now_ms() + 5_000));
            let past = SetOptions {
                expiry: ExpiryChange::At(1),
                ..SetOptions::PLAIN
            };
            assert!(set(txn, b"t", b"3", &past)?.written);
            assert!(!txn.contains(b"t")?);
            Ok(())
        });
    }

    #[test]
    fn ifeq_and_ifne_compare_the_value() {
        let kv = Kv::new();
        kv.write(|txn| {
            let when = |condition| SetOptions {
                condition,
                ..SetOptions::PLAIN
            };
            let written = |old: Option<&[u8]>| SetOutcome {
                written: true,
                old: old.map(<[u8]>::to_vec),
            };
            let refused = |old: Option<&[u8]>| SetOutcome {
                written: false,
                old: old.map(<[u8]>::to_vec),
            };
            let ifeq = when(SetCondition::IfEqual(b"a"));
            assert_eq!(set(txn, b"k", b"b", &ifeq)?, refused(None));
            assert!(!txn.contains(b"k")?, "IFEQ does not create a missing key");
            let ifne = when(SetCondition::IfNotEqual(b"a"));
            assert_eq!(set(txn, b"k", b"a", &ifne)?, written(None));
            assert_eq!(set(txn, b"k", b"c", &ifne)?, refused(Some(b"a")));
            assert_eq!(set(txn, b"k", b"b", &ifeq)?, written(Some(b"a")));
            assert_eq!(set(txn, b"k", b"c", &ifeq)?, refused(Some(b"b")));
            assert_eq!(txn.get(b"k")?.map(|found| found.value), Some(b"b".to_vec()));
            assert_eq!(set(txn, b"k", b"c", &ifne)?, written(Some(b"b")));
            Ok(())
        });
    }

    #[test]
    fn refusals_write_nothing() {
        let kv = Kv::new();
        kv.write(|txn| {
            txn.put(b"s", b"abc", 0)?;
            assert!(matches!(increment(txn, b"s", 1), Err(KvError::NotInteger)));
            txn.put(b"n", b"9223372036854775807", 0)?;
            assert!(matches!(
                increment(txn, b"n", 1),
                Err(KvError::IncrementOverflow)
            ));
            assert!(matches!(
                decrement_delta(i64::MIN),
                Err(KvError::DecrementOverflow)
            ));
            assert!(matches!(
                increment_float(txn, b"s", 1.0),
                Err(KvError::NotFloat)
            ));
            assert!(matches!(
                set_range(txn, b"s", -1, b"x"),
                Err(KvError::OffsetOutOfRange)
            ));
            assert!(matches!(
                set_range(txn, b"s", STRING_BYTES_MAX as i64, b"x"),
                Err(KvError::StringTooLong)
            ));
            let long_key = vec![b'k'; KEY_BYTES_MAX + 1];
            assert!(matches!(
                set_many(txn, &[b"a", b"1", &long_key, b"2"]),
                Err(KvError::Engine(_))
            ));
            assert!(!txn.contains(b"a")?, "nothing of a refused MSET is written");
            Ok(())
        });
    }

    #[test]
    fn getex_reads_the_amount_only_for_a_found_key() {
        let kv = Kv::new();
        kv.write(|txn| {
            let invalid = GetExChange::At(ExpiryArg {
                unit: ExpiryUnit::Seconds,
                amount: Some(0),
                command: "getex",
            });
            assert_eq!(get_and_change_expiry(txn, b"missing", invalid)?, None);
            txn.put(b"g", b"v", 0)?;
            assert!(matches!(
                get_and_change_expiry(txn, b"g", invalid),
                Err(KvError::InvalidExpire { command: "getex" })
            ));
            let in_ten = GetExChange::At(ExpiryArg {
                unit: ExpiryUnit::Seconds,
                amount: Some(10),
                command: "getex",
            });
            assert_eq!(
                get_and_change_expiry(txn, b"g", in_ten)?,
                Some(b"v".to_vec())
            );
            assert_eq!(txn.expiry_of(b"g")?, Some(txn.now_ms() + 10_000));
            get_and_change_expiry(txn, b"g", GetExChange::Persist)?;
            assert_eq!(txn.expiry_of(b"g")?, Some(0));
            Ok(())
        });
    }

    #[test]
    fn counters_ranges_and_appends_keep_the_ttl() {
        let kv = Kv::new();
        kv.write(|txn| {
            let expiry = txn.now_ms() + 100_000;
            txn.put(b"c", b"5", expiry)?;
            assert_eq!(increment(txn, b"c", -7)?, -2);
            assert_eq!(increment_float(txn, b"c", 0.5)?, "-1.5");
            assert_eq!(append(txn, b"c", b"x")?, 5);
            assert_eq!(set_range(txn, b"c", 6, b"yz")?, 8);
            assert_eq!(txn.get(b"c")?.unwrap().value, b"-1.5x\0yz");
            assert_eq!(txn.expiry_of(b"c")?, Some(expiry));
            assert_eq!(length(txn, b"c")?, 8);
            assert_eq!(range(txn, b"c", -2, -1)?, b"yz");
            assert_eq!(range(txn, b"none", 0, -1)?, b"");
            assert_eq!(set_range(txn, b"none", 0, b"")?, 0);
            assert!(!txn.contains(b"none")?);
            Ok(())
        });
    }
}
