//! Key-space commands: DEL UNLINK EXISTS EXPIRE PEXPIRE EXPIREAT PEXPIREAT EXPIRETIME
//! PEXPIRETIME TTL PTTL PERSIST TYPE KEYS SCAN RANDOMKEY RENAME RENAMENX.

use super::strings::{invalid_expire, put_or_expire, storable_expiry, ExpiryUnit};
use super::{int_arg, is, shown, syntax_error};
use crate::context::{Call, Outcome, KV};
use crate::frame::Frame;
use crate::glob;

/// SCAN's default COUNT, as in Redis.
const SCAN_COUNT_DEFAULT: usize = 10;
/// Keys fetched per engine scan step while KEYS walks the whole key space.
const KEYS_SCAN_STEP: usize = 1024;

/// DEL and UNLINK (the engine frees space in the background either way).
pub fn del(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    call.write(|txn| {
        let mut deleted = 0;
        for key in &args[1..] {
            deleted += txn.delete(key)? as i64;
        }
        Ok(Frame::Integer(deleted))
    })
}

pub fn exists(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let mut count = 0;
    for key in &args[1..] {
        count += call.exists(key)? as i64;
    }
    Ok(Frame::Integer(count))
}

/// EXPIRE's NX/XX/GT/LT condition.
#[derive(Clone, Copy, Default)]
struct ExpireCondition {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

impl ExpireCondition {
    fn parse(options: &[&[u8]]) -> Result<ExpireCondition, Frame> {
        let mut condition = ExpireCondition::default();
        for option in options {
            match () {
                _ if is(option, "NX") => condition.nx = true,
                _ if is(option, "XX") => condition.xx = true,
                _ if is(option, "GT") => condition.gt = true,
                _ if is(option, "LT") => condition.lt = true,
                _ => {
                    return Err(Frame::error(format!(
                        "ERR Unsupported option {}",
                        shown(option)
                    )))
                }
            }
        }
        if condition.nx && (condition.xx || condition.gt || condition.lt) {
            return Err(Frame::error(
                "ERR NX and XX, GT or LT options at the same time are not compatible",
            ));
        }
        if condition.gt && condition.lt {
            return Err(Frame::error(
                "ERR GT and LT options at the same time are not compatible",
            ));
        }
        Ok(condition)
    }

    /// Whether the new expiry may replace `current_ms` (0 = none, which GT/LT treat as
    /// infinite).
    fn allows(self, current_ms: u64, new_ms: i64) -> bool {
        let has_ttl = current_ms != 0;
        !(self.nx && has_ttl
            || self.xx && !has_ttl
            || self.gt && (!has_ttl || new_ms <= current_ms as i64)
            || self.lt && has_ttl && new_ms >= current_ms as i64)
    }
}

fn expire_generic(
    call: &mut Call<'_, '_>,
    args: &[&[u8]],
    unit: ExpiryUnit,
    command: &'static str,
) -> Outcome {
    let condition = ExpireCondition::parse(&args[3..])?;
    let amount = int_arg(args[2])?;
    let absolute_ms = unit
        .to_absolute_ms(amount, call.now_ms())
        .ok_or_else(|| invalid_expire(command))?;
    let expiry_ms = storable_expiry(absolute_ms);
    let key = args[1];
    call.write(|txn| {
        let Some(old) = txn.get(key)? else {
            return Ok(Frame::Integer(0));
        };
        if !condition.allows(old.expiry_ms, absolute_ms) {
            return Ok(Frame::Integer(0));
        }
        // A past or zero expiry deletes the key (put_or_expire), as in Redis.
        let expiry_ms = expiry_ms.max(1);
        put_or_expire(txn, key, &old.value, expiry_ms)?;
        Ok(Frame::Integer(1))
    })
}

pub fn expire(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    expire_generic(call, args, ExpiryUnit::Seconds, "expire")
}

pub fn pexpire(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    expire_generic(call, args, ExpiryUnit::Milliseconds, "pexpire")
}

pub fn expireat(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    expire_generic(call, args, ExpiryUnit::UnixSeconds, "expireat")
}

pub fn pexpireat(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    expire_generic(call, args, ExpiryUnit::UnixMilliseconds, "pexpireat")
}

/// A key's expiry: `None` if missing, `Some(0)` if it has none.
fn expiry_of(call: &Call<'_, '_>, key: &[u8]) -> Result<Option<u64>, Frame> {
    if call.is_in_transaction() {
        return Ok(call.get(key)?.map(|found| found.expiry_ms));
    }
    Ok(call.read().expiry_of(KV, key)?)
}

/// TTL/PTTL/EXPIRETIME/PEXPIRETIME: -2 missing, -1 no expiry, else `present(expiry_ms)`.
fn ttl_generic(
    call: &mut Call<'_, '_>,
    key: &[u8],
    present: impl FnOnce(u64, u64) -> i64,
) -> Outcome {
    // The time first: the lookup reads the clock again, no earlier, and finds the key live
    // only if its expiry is after that, so the remaining time is at least 1 ms. (Read the
    // other way round, a key live at the lookup could be past its expiry at `now`, and PTTL
    // would reply 0, which Redis, with one time per command, never does.)
    let now_ms = call.now_ms();
    Ok(Frame::Integer(match expiry_of(call, key)? {
        None => -2,
        Some(0) => -1,
        Some(expiry_ms) => present(expiry_ms, now_ms),
    }))
}

pub fn ttl(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    // Redis rounds the remaining milliseconds to the nearest second.
    ttl_generic(call, args[1], |expiry, now| {
        ((expiry.saturating_sub(now) + 500) / 1000) as i64
    })
}

pub fn pttl(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    ttl_generic(call, args[1], |expiry, now| {
        expiry.saturating_sub(now) as i64
    })
}

pub fn expiretime(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    ttl_generic(call, args[1], |expiry, _| ((expiry + 500) / 1000) as i64)
}

pub fn pexpiretime(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    ttl_generic(call, args[1], |expiry, _| expiry as i64)
}

pub fn persist(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let key = args[1];
    call.write(|txn| match txn.get(key)? {
        Some(old) if old.expiry_ms != 0 => {
            txn.put(key, &old.value, 0)?;
            Ok(Frame::Integer(1))
        }
        _ => Ok(Frame::Integer(0)),
    })
}

pub fn type_of(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let kind = if call.exists(args[1])? {
        "string"
    } else {
        "none"
    };
    Ok(Frame::Simple(kind.into()))
}

pub fn keys(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let pattern = args[1];
    let match_all = pattern == b"*";
    let mut found = Vec::new();
    let mut cursor = 0;
    loop {
        let (next, page) = call.read().scan(KV, cursor, KEYS_SCAN_STEP)?;
        found.extend(
            page.into_iter()
                .filter(|key| match_all || glob::matches(pattern, key))
                .map(Frame::Bulk),
        );
        if next == 0 {
            return Ok(Frame::Array(found));
        }
        cursor = next;
    }
}

/// A SCAN cursor as Redis reads it (`strtoul` in base 10, then a check for a leading space,
/// trailing bytes and overflow): the empty string is 0, a `+` or `-` sign is allowed and a
/// negative number wraps (`-1` is `u64::MAX`), as C's `strtoul` does.
fn parse_cursor(text: &[u8]) -> Option<u64> {
    let (negative, digits) = match text.first() {
        None => return Some(0),
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        Some(_) => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let magnitude = digits.iter().try_fold(0u64, |value, digit| {
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })?;
    Some(if negative {
        magnitude.wrapping_neg()
    } else {
        magnitude
    })
}

pub fn scan(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let cursor = parse_cursor(args[1]).ok_or_else(|| Frame::error("ERR invalid cursor"))?;
    let mut pattern: Option<&[u8]> = None;
    let mut count = SCAN_COUNT_DEFAULT;
    let mut only_strings = true;
    let mut index = 2;
    while index < args.len() {
        let value = args.get(index + 1).copied().ok_or_else(syntax_error)?;
        if is(args[index], "MATCH") {
            pattern = Some(value).filter(|p| *p != b"*");
        } else if is(args[index], "COUNT") {
            let asked = int_arg(value)?;
            if asked < 1 {
                return Err(syntax_error());
            }
            count = asked as usize;
        } else if is(args[index], "TYPE") {
            // Redis compares the name with each key's type name, case-insensitively: an
            // unknown name is no error, it just matches nothing (Redis kept it so as not to
            // break clients; Valkey 8 made it an error).
            only_strings = is(value, "string");
        } else {
            return Err(syntax_error());
        }
        index += 2;
    }
    let (next, page) = call.read().scan(KV, cursor, count)?;
    let keys = page
        .into_iter()
        .filter(|key| only_strings && pattern.is_none_or(|pattern| glob::matches(pattern, key)))
        .map(Frame::Bulk)
        .collect();
    Ok(Frame::Array(vec![
        Frame::bulk(next.to_string()),
        Frame::Array(keys),
    ]))
}

pub fn randomkey(call: &mut Call<'_, '_>, _args: &[&[u8]]) -> Outcome {
    let seed = call.shared.next_random();
    Ok(match call.read().random_key(KV, seed)? {
        Some(key) => Frame::Bulk(key),
        None => Frame::Null,
    })
}

/// Moves `source` (value and TTL) to `destination`; `only_if_absent` is RENAMENX.
fn rename_generic(call: &mut Call<'_, '_>, args: &[&[u8]], only_if_absent: bool) -> Outcome {
    let (source, destination) = (args[1], args[2]);
    call.write(|txn| {
        let Some(value) = txn.get(source)? else {
            return Err(Frame::error("ERR no such key"));
        };
        if source == destination {
            return Ok(if only_if_absent {
                Frame::Integer(0)
            } else {
                Frame::ok()
            });
        }
        if only_if_absent && txn.contains(destination)? {
            return Ok(Frame::Integer(0));
        }
        txn.put(destination, &value.value, value.expiry_ms)?;
        txn.delete(source)?;
        Ok(if only_if_absent {
            Frame::Integer(1)
        } else {
            Frame::ok()
        })
    })
}

pub fn rename(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    rename_generic(call, args, false)
}

pub fn renamenx(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    rename_generic(call, args, true)
}

#[cfg(test)]
mod tests {
    use crate::cmd::test_support::*;
    use crate::frame::Frame;

    #[test]
    fn del_exists_type() {
        let mut h = Harness::new();
        h.run("mset a 1 b 2");
        assert_eq!(h.run("exists a a b c"), int(3));
        assert_eq!(h.run("type a"), Frame::Simple("string".into()));
        assert_eq!(h.run("type zz"), Frame::Simple("none".into()));
        assert_eq!(h.run("del a b c"), int(2));
        assert_eq!(h.run("unlink a"), int(0));
        assert_eq!(h.run("exists a b"), int(0));
    }

    #[test]
    fn expire_family() {
        let mut h = Harness::new();
        assert_eq!(h.run("expire k 10"), int(0));
        assert_eq!(h.run("ttl k"), int(-2));
        h.run("set k v");
        assert_eq!(h.run("ttl k"), int(-1));
        assert_eq!(h.run("pttl k"), int(-1));
        assert_eq!(h.run("expire k 10 xx"), int(0));
        assert_eq!(h.run("expire k 10 gt"), int(0));
        assert_eq!(h.run("expire k 10 nx"), int(1));
        assert_eq!(h.run("expire k 20 nx"), int(0));
        assert_eq!(h.run("expire k 5 gt"), int(0));
        assert_eq!(h.run("expire k 50 gt"), int(1));
        assert_eq!(h.run("expire k 60 lt"), int(0));
        assert_eq!(h.run("expire k 30 lt"), int(1));
        assert_eq!(h.run("ttl k"), int(30));
        assert_eq!(h.run("pexpire k 1500"), int(1));
        assert_eq!(h.run("pttl k"), int(1500));
        assert_eq!(h.run("ttl k"), int(2));
        assert_eq!(h.run("pexpiretime k"), int((START_MS + 1500) as i64));
        assert_eq!(
            h.run("expiretime k"),
            int(((START_MS + 2000) / 1000) as i64)
        );
        assert_eq!(
            h.run(&format!("expireat k {}", START_MS / 1000 + 100)),
            int(1)
        );
        assert_eq!(h.run("ttl k"), int(100));
        assert_eq!(h.run(&format!("pexpireat k {}", START_MS + 7)), int(1));
        assert_eq!(h.run("pttl k"), int(7));
        assert_eq!(h.run("persist k"), int(1));
        assert_eq!(h.run("persist k"), int(0));
        assert_eq!(h.run("ttl k"), int(-1));
        assert_eq!(
            h.run("expire k 10 nx xx"),
            err("ERR NX and XX, GT or LT options at the same time are not compatible")
        );
        assert_eq!(
            h.run("expire k 10 gt lt"),
            err("ERR GT and LT options at the same time are not compatible")
        );
        assert_eq!(h.run("expire k 10 foo"), err("ERR Unsupported option foo"));
        assert_eq!(
            h.run("expire k x"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            h.run("expire k 9223372036854775807"),
            err("ERR invalid expire time in 'expire' command")
        );
        assert_eq!(h.run("expire k -1"), int(1));
        assert_eq!(h.run("exists k"), int(0));
        h.run("set k v");
        assert_eq!(h.run("expire k 0"), int(1));
        assert_eq!(h.run("get k"), Frame::Null);
        h.run("set k v px 100");
        h.clock.advance(100);
        assert_eq!(h.run("ttl k"), int(-2));
    }

    /// A clock that moves 1 ms at every reading, so every pair of readings in a command
    /// differs, as it can on a real clock.
    struct TickingClock(std::sync::atomic::AtomicU64);

    impl flin_engine::Clock for TickingClock {
        fn now_ms(&self) -> u64 {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[test]
    fn pttl_of_a_live_key_is_never_zero() {
        use std::sync::Arc;
        let clock = Arc::new(TickingClock(START_MS.into()));
        let engine = flin_engine::Engine::open(
            flin_engine::Config::memory()
                .background_compaction(false)
                .clock(clock),
        )
        .unwrap();
        let shared = crate::context::Shared::new(engine, crate::config::Options::default());
        let mut session = crate::context::Session::new(1, "127.0.0.1:1".parse().unwrap(), true);
        let mut run = |args: &[&[u8]]| crate::dispatch::execute(&shared, &mut session, args).0;
        // Several expiries, so the expiry falls on every phase of the readings' ticks.
        for px in 20..30 {
            let px = px.to_string();
            assert_eq!(run(&[b"set", b"k", b"v", b"px", px.as_bytes()]), ok());
            let mut readings = Vec::new();
            loop {
                let Frame::Integer(pttl) = run(&[b"pttl", b"k"]) else {
                    panic!("pttl")
                };
                readings.push(pttl);
                if pttl == -2 {
                    break;
                }
            }
            assert!(readings.len() > 2, "{readings:?}");
            assert!(!readings.contains(&0), "PTTL replied 0: {readings:?}");
        }
    }

    #[test]
    fn keys_scan_randomkey() {
        let mut h = Harness::new();
        assert_eq!(h.run("randomkey"), Frame::Null);
        for i in 0..30 {
            h.run(&format!("set user:{i} x"));
        }
        h.run("set other x");
        let Frame::Array(all) = h.run("keys *") else {
            panic!()
        };
        assert_eq!(all.len(), 31);
        let Frame::Array(users) = h.run("keys user:1*") else {
            panic!()
        };
        assert_eq!(users.len(), 11);
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor = "0".to_string();
        loop {
            let Frame::Array(reply) = h.run(&format!("scan {cursor} match user:* count 7")) else {
                panic!()
            };
            let Frame::Bulk(next) = &reply[0] else {
                panic!()
            };
            let Frame::Array(keys) = &reply[1] else {
                panic!()
            };
            for key in keys {
                let Frame::Bulk(key) = key else { panic!() };
                assert!(key.starts_with(b"user:"));
                seen.insert(key.clone());
            }
            cursor = String::from_utf8(next.clone()).unwrap();
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(seen.len(), 30);
        let Frame::Array(reply) = h.run("scan 0 count 1000 type hash") else {
            panic!()
        };
        assert_eq!(reply[1], Frame::Array(vec![]));
        let Frame::Array(reply) = h.run("scan 0 count 1000 type foo") else {
            panic!()
        };
        assert_eq!(
            reply[1],
            Frame::Array(vec![]),
            "an unknown type matches nothing"
        );
        let Frame::Array(reply) = h.run("scan 0 count 1000 type STRING") else {
            panic!()
        };
        assert!(matches!(&reply[1], Frame::Array(keys) if keys.len() == 31));
        assert_eq!(h.run("scan x"), err("ERR invalid cursor"));
        assert_eq!(h.run("scan 0 count 0"), err("ERR syntax error"));
        assert_eq!(h.run("scan 0 count"), err("ERR syntax error"));
        assert_eq!(h.run("scan 0 foo bar"), err("ERR syntax error"));
        assert!(matches!(h.run("randomkey"), Frame::Bulk(_)));
        // As in Redis, the empty key matches only "*" (KEYS's "everything") and "".
        h.run_args(&[b"set", b"", b"x"]);
        let Frame::Array(all) = h.run("keys *") else {
            panic!()
        };
        assert_eq!(all.len(), 32);
        let Frame::Array(stars) = h.run("keys **") else {
            panic!()
        };
        assert_eq!(stars.len(), 31, "'**' does not match the empty key");
        assert_eq!(h.run_args(&[b"keys", b""]), Frame::Array(vec![bulk("")]));
    }

    #[test]
    fn scan_cursors_read_as_strtoul_does() {
        use super::parse_cursor;
        assert_eq!(parse_cursor(b"0"), Some(0));
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"00"), Some(0));
        assert_eq!(parse_cursor(b"+7"), Some(7));
        assert_eq!(parse_cursor(b"-0"), Some(0));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
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
            assert_eq!(
                parse_cursor(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Any cursor is safe to continue from: past the end it finishes the scan.
        let mut h = Harness::new();
        h.run("set a 1");
        for cursor in ["-1", "4294967295", "123456789012", ""] {
            let Frame::Array(reply) = h.run_args(&[b"scan", cursor.as_bytes()]) else {
                panic!("scan {cursor:?}")
            };
            assert!(
                matches!(&reply[..], [Frame::Bulk(_), Frame::Array(_)]),
                "scan {cursor:?}"
            );
        }
    }

    #[test]
    fn rename_family() {
        let mut h = Harness::new();
        assert_eq!(h.run("rename a b"), err("ERR no such key"));
        assert_eq!(h.run("renamenx a b"), err("ERR no such key"));
        h.run("setex a 100 1");
        assert_eq!(h.run("rename a a"), ok());
        assert_eq!(h.run("rename a b"), ok());
        assert_eq!(h.run("get b"), bulk("1"));
        assert_eq!(h.run("ttl b"), int(100));
        assert_eq!(h.run("exists a"), int(0));
        h.run("set c 3");
        assert_eq!(h.run("renamenx b c"), int(0));
        assert_eq!(h.run("renamenx b b"), int(0));
        assert_eq!(h.run("renamenx b d"), int(1));
        assert_eq!(h.run("get d"), bulk("1"));
    }
}
