//! Key-space semantics: deleting, counting, expiring, renaming and iterating keys.

use super::core::{put_or_expire, KvError, KvRead, KvScan, KvWrite, Result};
use super::expiry::{ExpireCondition, TtlReading};
use crate::glob;

/// Keys fetched per engine scan step while KEYS walks the whole key space.
const KEYS_SCAN_STEP: usize = 1024;

/// DEL and UNLINK: how many of `keys` existed (the engine frees space in the background either
/// way).
pub fn delete(txn: &mut impl KvWrite, keys: &[&[u8]]) -> Result<usize> {
    let mut deleted = 0;
    for key in keys {
        deleted += txn.delete(key)? as usize;
    }
    Ok(deleted)
}

/// EXISTS (and TOUCH): how many of `keys` exist, each occurrence counted.
pub fn count_existing(read: &impl KvRead, keys: &[&[u8]]) -> Result<usize> {
    let mut count = 0;
    for key in keys {
        count += read.contains(key)? as usize;
    }
    Ok(count)
}

/// EXPIRE and friends: sets the key's expiry to `absolute_ms` if the key exists and the
/// condition allows; whether it did. A time at or before now deletes the key, as in Redis.
pub fn expire(
    txn: &mut impl KvWrite,
    key: &[u8],
    absolute_ms: i64,
    condition: ExpireCondition,
) -> Result<bool> {
    let Some(old) = txn.get(key)? else {
        return Ok(false);
    };
    if !condition.allows(old.expiry_ms, absolute_ms) {
        return Ok(false);
    }
    // A past or zero expiry deletes the key (put_or_expire): 0 would mean "no expiry".
    let expiry_ms = super::expiry::storable_expiry(absolute_ms).max(1);
    put_or_expire(txn, key, &old.value, expiry_ms)?;
    Ok(true)
}

/// The key's expiry for TTL and friends.
pub fn ttl(read: &impl KvRead, key: &[u8]) -> Result<TtlReading> {
    // The time first: the lookup reads the clock again, no earlier, and finds the key live
    // only if its expiry is after that, so the remaining time is at least 1 ms. (Read the
    // other way round, a key live at the lookup could be past its expiry at `now`, and PTTL
    // would reply 0, which Redis, with one time per command, never does.)
    let now_ms = read.now_ms();
    Ok(match read.expiry_of(key)? {
        None => TtlReading::Missing,
        Some(0) => TtlReading::Persistent,
        Some(expiry_ms) => TtlReading::At { expiry_ms, now_ms },
    })
}

/// PERSIST: whether a TTL was removed.
pub fn persist(txn: &mut impl KvWrite, key: &[u8]) -> Result<bool> {
    match txn.get(key)? {
        Some(old) if old.expiry_ms != 0 => {
            txn.put(key, &old.value, 0)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// TYPE: every key holds a string.
pub fn type_name(read: &impl KvRead, key: &[u8]) -> Result<&'static str> {
    Ok(if read.contains(key)? {
        "string"
    } else {
        "none"
    })
}

/// KEYS: every committed key matching the glob `pattern`.
pub fn matching_keys(scan: &impl KvScan, pattern: &[u8]) -> Result<Vec<Vec<u8>>> {
    let match_all = pattern == b"*";
    let mut found = Vec::new();
    let mut cursor = 0;
    loop {
        let (next, page) = scan.scan_page(cursor, KEYS_SCAN_STEP)?;
        found.extend(
            page.into_iter()
                .filter(|key| match_all || glob::matches(pattern, key)),
        );
        if next == 0 {
            return Ok(found);
        }
        cursor = next;
    }
}

/// SCAN's options.
#[derive(Clone, Copy, Debug)]
pub struct ScanOptions<'a> {
    /// MATCH (`None` for none or `*`).
    pub pattern: Option<&'a [u8]>,
    /// COUNT: keys to look at, about.
    pub count: usize,
    /// TYPE: whether the asked type is `string` (any other name matches no key).
    pub only_strings: bool,
}

/// SCAN's default COUNT, as in Redis.
pub const SCAN_COUNT_DEFAULT: usize = 10;

/// SCAN: one page from `cursor`, and the cursor to continue from.
pub fn scan(
    scan: &impl KvScan,
    cursor: u64,
    options: &ScanOptions<'_>,
) -> Result<(u64, Vec<Vec<u8>>)> {
    let (next, page) = scan.scan_page(cursor, options.count)?;
    let keys = page
        .into_iter()
        .filter(|key| {
            options.only_strings
                && options
                    .pattern
                    .is_none_or(|pattern| glob::matches(pattern, key))
        })
        .collect();
    Ok((next, keys))
}

/// A SCAN cursor as Redis reads it (`strtoul` in base 10, then a check for a leading space,
/// trailing bytes and overflow): the empty string is 0, a `+` or `-` sign is allowed and a
/// negative number wraps (`-1` is `u64::MAX`), as C's `strtoul` does.
pub fn parse_cursor(text: &[u8]) -> Result<u64> {
    let (negative, digits) = match text.first() {
        None => return Ok(0),
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        Some(_) => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(KvError::InvalidCursor);
    }
    let magnitude = digits
        .iter()
        .try_fold(0u64, |value, digit| {
            value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
        .ok_or(KvError::InvalidCursor)?;
    Ok(if negative {
        magnitude.wrapping_neg()
    } else {
        magnitude
    })
}

/// RANDOMKEY.
pub fn random_key(scan: &impl KvScan, seed: u64) -> Result<Option<Vec<u8>>> {
    scan.random_key(seed)
}

/// RENAME (and RENAMENX when `only_if_absent`): moves `source`'s value and TTL to
/// `destination`; whether it did (RENAMENX onto an existing key, or onto itself, does not).
pub fn rename(
    txn: &mut impl KvWrite,
    source: &[u8],
    destination: &[u8],
    only_if_absent: bool,
) -> Result<bool> {
    let Some(value) = txn.get(source)? else {
        return Err(KvError::NoSuchKey);
    };
    if source == destination {
        return Ok(!only_if_absent);
    }
    if only_if_absent && txn.contains(destination)? {
        return Ok(false);
    }
    txn.put(destination, &value.value, value.expiry_ms)?;
    txn.delete(source)?;
    Ok(true)
}

/// COPY: copies `source`'s value and TTL to `destination`; whether it did (not for a missing
/// source, nor onto an existing key without `replace`).
pub fn copy(
    txn: &mut impl KvWrite,
    source: &[u8],
    destination: &[u8],
    replace: bool,
) -> Result<bool> {
    if source == destination {
        return Err(KvError::SameObject);
    }
    let Some(value) = txn.get(source)? else {
        return Ok(false);
    };
    if !replace && txn.contains(destination)? {
        return Ok(false);
    }
    txn.put(destination, &value.value, value.expiry_ms)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::expiry::TtlFormat;
    use crate::kv::testing::Kv;

    #[test]
    fn expire_respects_conditions_and_deletes_in_the_past() {
        let kv = Kv::new();
        kv.write(|txn| {
            let now = txn.now_ms() as i64;
            assert!(!expire(txn, b"k", now + 10, ExpireCondition::default())?);
            txn.put(b"k", b"v", 0)?;
            let xx = ExpireCondition {
                xx: true,
                ..Default::default()
            };
            assert!(!expire(txn, b"k", now + 10, xx)?);
            assert!(expire(txn, b"k", now + 10, ExpireCondition::default())?);
            assert_eq!(
                ttl(txn, b"k")?.reply(TtlFormat::Milliseconds),
                10,
                "10 ms left"
            );
            assert!(persist(txn, b"k")?);
            assert!(!persist(txn, b"k")?);
            assert_eq!(ttl(txn, b"k")?, TtlReading::Persistent);
            assert!(expire(txn, b"k", now, ExpireCondition::default())?);
            assert_eq!(ttl(txn, b"k")?, TtlReading::Missing);
            Ok(())
        });
    }

    #[test]
    fn a_key_expires_with_the_clock() {
        let kv = Kv::new();
        kv.commit(|txn| {
            let expiry = txn.now_ms() + 100;
            txn.put(b"k", b"v", expiry)
        });
        let reading = ttl(&kv.reader(), b"k").unwrap();
        assert_eq!(reading.reply(TtlFormat::Milliseconds), 100);
        kv.clock.advance(100);
        assert_eq!(ttl(&kv.reader(), b"k").unwrap(), TtlReading::Missing);
    }

    #[test]
    fn rename_moves_value_and_ttl() {
        let kv = Kv::new();
        kv.write(|txn| {
            assert!(matches!(
                rename(txn, b"a", b"b", false),
                Err(KvError::NoSuchKey)
            ));
            let expiry = txn.now_ms() + 1_000;
            txn.put(b"a", b"1", expiry)?;
            assert!(rename(txn, b"a", b"a", false)?);
            assert!(!rename(txn, b"a", b"a", true)?);
            assert!(rename(txn, b"a", b"b", false)?);
            assert_eq!(txn.expiry_of(b"b")?, Some(expiry));
            assert!(!txn.contains(b"a")?);
            txn.put(b"c", b"3", 0)?;
            assert!(!rename(txn, b"b", b"c", true)?);
            assert_eq!(delete(txn, &[b"b", b"c", b"zz"])?, 2);
            Ok(())
        });
    }

    #[test]
    fn copy_keeps_the_ttl_and_replaces_only_when_asked() {
        let kv = Kv::new();
        kv.write(|txn| {
            assert!(matches!(
                copy(txn, b"a", b"a", true),
                Err(KvError::SameObject)
            ));
            assert!(!copy(txn, b"missing", b"b", true)?);
            let expiry = txn.now_ms() + 5_000;
            txn.put(b"a", b"1", expiry)?;
            txn.put(b"b", b"2", 0)?;
            assert!(!copy(txn, b"a", b"b", false)?);
            assert_eq!(txn.get(b"b")?.unwrap().value, b"2");
            assert!(copy(txn, b"a", b"b", true)?);
            let copied = txn.get(b"b")?.unwrap();
            assert_eq!((copied.value, copied.expiry_ms), (b"1".to_vec(), expiry));
            assert!(copy(txn, b"a", b"c", false)?);
            assert_eq!(count_existing(txn, &[b"a", b"b", b"c", b"a", b"d"])?, 4);
            Ok(())
        });
    }

    #[test]
    fn scan_cursors_read_as_strtoul_does() {
        assert_eq!(parse_cursor(b"0").unwrap(), 0);
        assert_eq!(parse_cursor(b"").unwrap(), 0);
        assert_eq!(parse_cursor(b"00").unwrap(), 0);
        assert_eq!(parse_cursor(b"+7").unwrap(), 7);
        assert_eq!(parse_cursor(b"-0").unwrap(), 0);
        assert_eq!(parse_cursor(b"-1").unwrap(), u64::MAX);
        assert_eq!(parse_cursor(b"18446744073709551615").unwrap(), u64::MAX);
        for bad in [
            &b"18446744073709551616"[..],
            b"-",
            b"+",
            b" 0",
            b"0 ",
            b"1.5",
            b"x",
            b"0x10",
        ] {
            assert!(
                parse_cursor(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn keys_and_scan_walk_the_committed_key_space() {
        let kv = Kv::new();
        kv.commit(|txn| {
            for key in [&b"user:1"[..], b"user:2", b"other"] {
                txn.put(key, b"x", 0)?;
            }
            Ok(())
        });
        let reader = kv.reader();
        let mut users = matching_keys(&reader, b"user:*").unwrap();
        users.sort();
        assert_eq!(users, vec![b"user:1".to_vec(), b"user:2".to_vec()]);
        let options = ScanOptions {
            pattern: None,
            count: 1000,
            only_strings: false,
        };
        assert_eq!(scan(&reader, 0, &options).unwrap(), (0, vec![]));
        let strings = ScanOptions {
            only_strings: true,
            ..options
        };
        assert_eq!(scan(&reader, 0, &strings).unwrap().1.len(), 3);
        assert!(random_key(&reader, 7).unwrap().is_some());
    }
}
