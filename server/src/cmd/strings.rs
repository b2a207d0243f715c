//! String commands: GET SET SETNX SETEX PSETEX GETSET GETDEL GETEX MGET MSET MSETNX APPEND
//! STRLEN GETRANGE SETRANGE INCR INCRBY DECR DECRBY INCRBYFLOAT.

use flin_engine::{KEY_BYTES_MAX, VALUE_BYTES_MAX};

use super::{int_arg, is, not_an_integer, syntax_error, wrong_arity};
use crate::context::{Call, KvTxn, Outcome, KV};
use crate::frame::Frame;
use crate::number::{format_f64, parse_f64, parse_i64};

/// Redis's `proto-max-bulk-len`: the largest string a command may build.
pub const STRING_BYTES_MAX: usize = VALUE_BYTES_MAX;

pub fn string_too_long() -> Frame {
    Frame::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
}

/// `ERR invalid expire time in 'name' command`.
pub fn invalid_expire(command: &str) -> Frame {
    Frame::error(format!("ERR invalid expire time in '{command}' command"))
}

/// How an expiry argument is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryUnit {
    /// EX / EXPIRE: seconds from now.
    Seconds,
    /// PX / PEXPIRE: milliseconds from now.
    Milliseconds,
    /// EXAT / EXPIREAT: Unix time in seconds.
    UnixSeconds,
    /// PXAT / PEXPIREAT: Unix time in milliseconds.
    UnixMilliseconds,
}

impl ExpiryUnit {
    /// The absolute expiry in ms for `amount`, or `None` if it overflows (Redis then replies
    /// "invalid expire time"). The result may be in the past or negative.
    pub fn to_absolute_ms(self, amount: i64, now_ms: u64) -> Option<i64> {
        let now_ms = now_ms as i64;
        match self {
            ExpiryUnit::Seconds => amount.checked_mul(1000)?.checked_add(now_ms),
            ExpiryUnit::Milliseconds => amount.checked_add(now_ms),
            ExpiryUnit::UnixSeconds => amount.checked_mul(1000),
            ExpiryUnit::UnixMilliseconds => Some(amount),
        }
    }
}

/// The expiry the engine stores for an absolute time in ms: a time already past (negative
/// included) is stored as 0 ms, which has expired too. The engine keeps any u64 exactly, as
/// Redis keeps any positive i64 (`PEXPIREAT k 9223372036854770000`).
pub fn storable_expiry(absolute_ms: i64) -> u64 {
    absolute_ms.max(0) as u64
}

/// What to do with the TTL when a value is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TtlChange {
    /// SET without options: the key loses its TTL.
    Clear,
    /// KEEPTTL (and GETEX without options).
    Keep,
    /// PERSIST (GETEX only).
    Persist,
    /// EX/PX/EXAT/PXAT: absolute ms, possibly already past.
    At(i64),
}

/// SET's and GETEX's options, parsed as Redis's `parseExtendedStringArgumentsOrReply` does.
#[derive(Debug)]
struct StringOptions {
    if_absent: bool,
    if_present: bool,
    get: bool,
    ttl: TtlChange,
}

/// An expiry option as given: its unit and the unparsed amount.
type PendingExpiry<'a> = Option<(ExpiryUnit, &'a [u8])>;

/// Checks the options' syntax; the expiry amount is checked by [`expiry_at`], when the
/// command gets to it (SET at once, GETEX only once the key is found, as Redis 7.2 does).
fn parse_string_options<'a>(
    args: &[&'a [u8]],
    command: &'static str,
) -> Result<(StringOptions, PendingExpiry<'a>), Frame> {
    let is_set = command == "set";
    let mut options = StringOptions {
        if_absent: false,
        if_present: false,
        get: false,
        ttl: if is_set {
            TtlChange::Clear
        } else {
            TtlChange::Keep
        },
    };
    let mut keep_ttl = false;
    let mut persist = false;
    let mut expiry: PendingExpiry<'a> = None;
    let mut index = 0;
    while index < args.len() {
        let option = args[index];
        let next = args.get(index + 1).copied();
        let unit = if is(option, "EX") {
            Some(ExpiryUnit::Seconds)
        } else if is(option, "PX") {
            Some(ExpiryUnit::Milliseconds)
        } else if is(option, "EXAT") {
            Some(ExpiryUnit::UnixSeconds)
        } else if is(option, "PXAT") {
            Some(ExpiryUnit::UnixMilliseconds)
        } else {
            None
        };
        let other_unit = |unit: ExpiryUnit| expiry.is_some_and(|(given, _)| given != unit);
        if is_set && is(option, "NX") && !options.if_present {
            options.if_absent = true;
        } else if is_set && is(option, "XX") && !options.if_absent {
            options.if_present = true;
        } else if is_set && is(option, "GET") {
            options.get = true;
        } else if is_set && is(option, "KEEPTTL") && expiry.is_none() {
            keep_ttl = true;
        } else if !is_set && is(option, "PERSIST") && expiry.is_none() {
            persist = true;
        } else if let (Some(unit), Some(amount)) = (unit, next) {
            if keep_ttl || persist || other_unit(unit) {
                return Err(syntax_error());
            }
            expiry = Some((unit, amount));
            index += 1;
        } else {
            return Err(syntax_error());
        }
        index += 1;
    }
    if keep_ttl {
        options.ttl = TtlChange::Keep;
    }
    if persist {
        options.ttl = TtlChange::Persist;
    }
    Ok((options, expiry))
}

/// The absolute expiry in ms an EX/PX/EXAT/PXAT amount asks for (Redis's
/// `getExpireMillisecondsOrReply`): a positive integer whose time the engine can store.
fn expiry_at(unit: ExpiryUnit, amount: &[u8], now_ms: u64, command: &str) -> Result<i64, Frame> {
    let amount = int_arg(amount)?;
    if amount <= 0 {
        return Err(invalid_expire(command));
    }
    let absolute = unit
        .to_absolute_ms(amount, now_ms)
        .filter(|ms| *ms > 0)
        .ok_or_else(|| invalid_expire(command))?;
    Ok(absolute)
}

/// Writes `value` under `key` with `expiry_ms` (0 = none); an expiry at or before `now` deletes
/// the key instead, as Redis does.
pub fn put_or_expire(
    txn: &mut KvTxn<'_, '_>,
    key: &[u8],
    value: &[u8],
    expiry_ms: u64,
) -> Result<(), Frame> {
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

pub fn get(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    Ok(match call.get(args[1])? {
        Some(found) => Frame::Bulk(found.value),
        None => Frame::Null,
    })
}

pub fn set(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (mut options, expiry) = parse_string_options(&args[3..], "set")?;
    if let Some((unit, amount)) = expiry {
        options.ttl = TtlChange::At(expiry_at(unit, amount, call.now_ms(), "set")?);
    }
    let (key, value) = (args[1], args[2]);
    // A plain SET needs nothing of the old value: reading it would copy it for nothing.
    let needs_old = options.if_absent
        || options.if_present
        || options.get
        || matches!(options.ttl, TtlChange::Keep);
    call.write(|txn| {
        let old = if needs_old { txn.get(key)? } else { None };
        let condition_failed =
            (options.if_absent && old.is_some()) || (options.if_present && old.is_none());
        let reply = |old: Option<flin_engine::Value>, written: bool| match (options.get, written) {
            (true, _) => old.map_or(Frame::Null, |old| Frame::Bulk(old.value)),
            (false, true) => Frame::ok(),
            (false, false) => Frame::Null,
        };
        if condition_failed {
            return Ok(reply(old, false));
        }
        let expiry_ms = match options.ttl {
            TtlChange::Clear | TtlChange::Persist => 0,
            TtlChange::Keep => old.as_ref().map_or(0, |old| old.expiry_ms),
            TtlChange::At(ms) => ms.max(0) as u64,
        };
        put_or_expire(txn, key, value, expiry_ms)?;
        Ok(reply(old, true))
    })
}

pub fn setnx(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (key, value) = (args[1], args[2]);
    call.write(|txn| {
        if txn.contains(key)? {
            return Ok(Frame::Integer(0));
        }
        txn.put(key, value, 0)?;
        Ok(Frame::Integer(1))
    })
}

fn set_with_ttl(
    call: &mut Call<'_, '_>,
    args: &[&[u8]],
    unit: ExpiryUnit,
    command: &str,
) -> Outcome {
    let amount = int_arg(args[2])?;
    if amount <= 0 {
        return Err(invalid_expire(command));
    }
    let absolute = unit
        .to_absolute_ms(amount, call.now_ms())
        .ok_or_else(|| invalid_expire(command))?;
    let expiry_ms = storable_expiry(absolute);
    let (key, value) = (args[1], args[3]);
    call.write(|txn| {
        txn.put(key, value, expiry_ms)?;
        Ok(Frame::ok())
    })
}

pub fn setex(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    set_with_ttl(call, args, ExpiryUnit::Seconds, "setex")
}

pub fn psetex(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    set_with_ttl(call, args, ExpiryUnit::Milliseconds, "psetex")
}

pub fn getset(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (key, value) = (args[1], args[2]);
    call.write(|txn| {
        let old = txn.get(key)?;
        txn.put(key, value, 0)?;
        Ok(old.map_or(Frame::Null, |old| Frame::Bulk(old.value)))
    })
}

pub fn getdel(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let key = args[1];
    call.write(|txn| {
        let old = txn.get(key)?;
        if old.is_some() {
            txn.delete(key)?;
        }
        Ok(old.map_or(Frame::Null, |old| Frame::Bulk(old.value)))
    })
}

pub fn getex(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (mut options, expiry) = parse_string_options(&args[2..], "getex")?;
    let key = args[1];
    if options.ttl == TtlChange::Keep && expiry.is_none() {
        // No option: a plain read, no write.
        return get(call, args);
    }
    call.write(|txn| {
        let Some(old) = txn.get(key)? else {
            // A missing key is answered before the expiry amount is looked at.
            return Ok(Frame::Null);
        };
        if let Some((unit, amount)) = expiry {
            options.ttl = TtlChange::At(expiry_at(unit, amount, txn.now_ms(), "getex")?);
        }
        let expiry_ms = match options.ttl {
            TtlChange::At(ms) => ms.max(0) as u64,
            _ => 0,
        };
        if expiry_ms != old.expiry_ms {
            put_or_expire(txn, key, &old.value, expiry_ms)?;
        }
        Ok(Frame::Bulk(old.value))
    })
}

pub fn mget(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let values = call.get_many(&args[1..])?;
    Ok(Frame::Array(
        values
            .into_iter()
            .map(|value| value.map_or(Frame::Null, Frame::Bulk))
            .collect(),
    ))
}

/// Checks MSET-style pairs up front, so a bad key cannot leave half the pairs written.
fn check_pairs(args: &[&[u8]], command: &str) -> Result<(), Frame> {
    if args.len().is_multiple_of(2) {
        return Err(wrong_arity(command));
    }
    if let Some(pair) = args[1..]
        .chunks(2)
        .find(|pair| pair[0].len() > KEY_BYTES_MAX)
    {
        // The engine's own wording, as SET gives it for the same key.
        return Err(Frame::from(flin_engine::Error::TooLarge {
            field: "key",
            bytes: pair[0].len(),
            limit: KEY_BYTES_MAX,
        }));
    }
    Ok(())
}

pub fn mset(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    check_pairs(args, "mset")?;
    call.write(|txn| {
        for pair in args[1..].chunks(2) {
            txn.put(pair[0], pair[1], 0)?;
        }
        Ok(Frame::ok())
    })
}

pub fn msetnx(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    check_pairs(args, "msetnx")?;
    call.write(|txn| {
        for pair in args[1..].chunks(2) {
            if txn.contains(pair[0])? {
                return Ok(Frame::Integer(0));
            }
        }
        for pair in args[1..].chunks(2) {
            txn.put(pair[0], pair[1], 0)?;
        }
        Ok(Frame::Integer(1))
    })
}

pub fn append(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (key, suffix) = (args[1], args[2]);
    call.write(|txn| {
        let (mut value, expiry_ms) = match txn.get(key)? {
            Some(old) => (old.value, old.expiry_ms),
            None => (Vec::new(), 0),
        };
        if value.len() + suffix.len() > STRING_BYTES_MAX {
            return Err(string_too_long());
        }
        value.extend_from_slice(suffix);
        txn.put(key, &value, expiry_ms)?;
        Ok(Frame::Integer(value.len() as i64))
    })
}

pub fn strlen(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let length = match &call.txn_free_len(args[1])? {
        Some(length) => *length,
        None => 0,
    };
    Ok(Frame::Integer(length as i64))
}

impl Call<'_, '_> {
    /// A value's length without copying it out when running outside EXEC.
    fn txn_free_len(&self, key: &[u8]) -> Result<Option<usize>, Frame> {
        if self.is_in_transaction() {
            return Ok(self.get(key)?.map(|found| found.value.len()));
        }
        Ok(self.read().get_with(KV, key, |found| found.value.len())?)
    }
}

pub fn getrange(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (start, end) = (int_arg(args[2])?, int_arg(args[3])?);
    let value = call
        .get(args[1])?
        .map(|found| found.value)
        .unwrap_or_default();
    Ok(Frame::Bulk(substring(&value, start, end).to_vec()))
}

/// GETRANGE's index rules (Redis 7): negative indexes count from the end, then both are
/// clamped to the string.
fn substring(value: &[u8], mut start: i64, mut end: i64) -> &[u8] {
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

pub fn setrange(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let offset = int_arg(args[2])?;
    if offset < 0 {
        return Err(Frame::error("ERR offset is out of range"));
    }
    let (key, patch) = (args[1], args[3]);
    let offset = offset as usize;
    call.write(|txn| {
        let old = txn.get(key)?;
        let (mut value, expiry_ms) = match old {
            Some(old) => (old.value, old.expiry_ms),
            None if patch.is_empty() => return Ok(Frame::Integer(0)),
            None => (Vec::new(), 0),
        };
        if patch.is_empty() {
            return Ok(Frame::Integer(value.len() as i64));
        }
        if offset.saturating_add(patch.len()) > STRING_BYTES_MAX {
            return Err(string_too_long());
        }
        let end = offset + patch.len();
        if value.len() < end {
            value.resize(end, 0);
        }
        value[offset..end].copy_from_slice(patch);
        txn.put(key, &value, expiry_ms)?;
        Ok(Frame::Integer(value.len() as i64))
    })
}

/// Adds `delta` to the integer at `key` (0 if missing), keeping its TTL.
pub fn increment(call: &mut Call<'_, '_>, key: &[u8], delta: i64) -> Outcome {
    call.write(|txn| {
        let old = txn.get(key)?;
        let (current, expiry_ms) = match &old {
            Some(old) => (
                parse_i64(&old.value).ok_or_else(not_an_integer)?,
                old.expiry_ms,
            ),
            None => (0, 0),
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| Frame::error("ERR increment or decrement would overflow"))?;
        txn.put(key, next.to_string().as_bytes(), expiry_ms)?;
        Ok(Frame::Integer(next))
    })
}

pub fn incr(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    increment(call, args[1], 1)
}

pub fn decr(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    increment(call, args[1], -1)
}

pub fn incrby(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let delta = int_arg(args[2])?;
    increment(call, args[1], delta)
}

pub fn decrby(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let delta = int_arg(args[2])?;
    let delta = delta
        .checked_neg()
        .ok_or_else(|| Frame::error("ERR decrement would overflow"))?;
    increment(call, args[1], delta)
}

pub fn incrbyfloat(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let not_a_float = || Frame::error("ERR value is not a valid float");
    let delta = parse_f64(args[2]).ok_or_else(not_a_float)?;
    let key = args[1];
    call.write(|txn| {
        let old = txn.get(key)?;
        let (current, expiry_ms) = match &old {
            Some(old) => (
                parse_f64(&old.value).ok_or_else(not_a_float)?,
                old.expiry_ms,
            ),
            None => (0.0, 0),
        };
        let next = current + delta;
        if !next.is_finite() {
            return Err(Frame::error("ERR increment would produce NaN or Infinity"));
        }
        let text = format_f64(next);
        txn.put(key, text.as_bytes(), expiry_ms)?;
        Ok(Frame::Bulk(text.into_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::substring;
    use crate::cmd::test_support::*;
    use crate::frame::Frame;

    #[test]
    fn get_set_and_options() {
        let mut h = Harness::new();
        assert_eq!(h.run("get k"), Frame::Null);
        assert_eq!(h.run("set k v"), ok());
        assert_eq!(h.run("get k"), bulk("v"));
        assert_eq!(h.run("set k v2 nx"), Frame::Null);
        assert_eq!(h.run("set k v2 xx get"), bulk("v"));
        assert_eq!(h.run("set new v xx"), Frame::Null);
        assert_eq!(h.run("set new v nx get"), Frame::Null);
        assert_eq!(h.run("get new"), bulk("v"));
        assert_eq!(h.run("set k v nx xx"), err("ERR syntax error"));
        assert_eq!(h.run("set k v ex 10 px 100"), err("ERR syntax error"));
        assert_eq!(h.run("set k v ex 10 keepttl"), err("ERR syntax error"));
        assert_eq!(h.run("set k v ex"), err("ERR syntax error"));
        assert_eq!(h.run("set k v foo"), err("ERR syntax error"));
        assert_eq!(
            h.run("set k v ex x"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            h.run("set k v ex 0"),
            err("ERR invalid expire time in 'set' command")
        );
        assert_eq!(
            h.run("set k v px -5"),
            err("ERR invalid expire time in 'set' command")
        );
        assert_eq!(
            h.run("set k v ex 9223372036854775807"),
            err("ERR invalid expire time in 'set' command")
        );
        assert_eq!(h.run("set k v ex 10"), ok());
        assert_eq!(h.run("ttl k"), int(10));
        assert_eq!(h.run("set k v2 keepttl"), ok());
        assert_eq!(h.run("ttl k"), int(10));
        assert_eq!(h.run("set k v3"), ok());
        assert_eq!(h.run("ttl k"), int(-1));
        let at = START_MS / 1000 + 100;
        assert_eq!(h.run(&format!("set k v exat {at}")), ok());
        assert_eq!(h.run("ttl k"), int(100));
        assert_eq!(h.run(&format!("set k v pxat {}", START_MS - 1)), ok());
        assert_eq!(h.run("exists k"), int(0));
        h.run("set k v px 1500");
        h.clock.advance(1500);
        assert_eq!(h.run("get k"), Frame::Null);
    }

    #[test]
    fn setnx_setex_getset_getdel_getex() {
        let mut h = Harness::new();
        assert_eq!(h.run("setnx a 1"), int(1));
        assert_eq!(h.run("setnx a 2"), int(0));
        assert_eq!(
            h.run("setex a 0 x"),
            err("ERR invalid expire time in 'setex' command")
        );
        assert_eq!(
            h.run("psetex a -1 x"),
            err("ERR invalid expire time in 'psetex' command")
        );
        assert_eq!(h.run("setex a 5 x"), ok());
        assert_eq!(h.run("pttl a"), int(5000));
        assert_eq!(h.run("psetex a 1500 y"), ok());
        assert_eq!(h.run("pttl a"), int(1500));
        assert_eq!(h.run("getset a z"), bulk("y"));
        assert_eq!(h.run("ttl a"), int(-1));
        assert_eq!(h.run("getset nope z"), Frame::Null);
        assert_eq!(h.run("getdel a"), bulk("z"));
        assert_eq!(h.run("getdel a"), Frame::Null);
        h.run("set g v");
        assert_eq!(h.run("getex g ex 100"), bulk("v"));
        assert_eq!(h.run("ttl g"), int(100));
        assert_eq!(h.run("getex g"), bulk("v"));
        assert_eq!(h.run("ttl g"), int(100));
        assert_eq!(h.run("getex g persist"), bulk("v"));
        assert_eq!(h.run("ttl g"), int(-1));
        assert_eq!(
            h.run("getex g ex 0"),
            err("ERR invalid expire time in 'getex' command")
        );
        assert_eq!(h.run("getex g persist ex 5"), err("ERR syntax error"));
        assert_eq!(h.run("getex g nx"), err("ERR syntax error"));
        assert_eq!(h.run(&format!("getex g pxat {}", START_MS - 10)), bulk("v"));
        assert_eq!(h.run("exists g"), int(0));
        assert_eq!(h.run("getex missing ex 5"), Frame::Null);
        // Redis 7.2 looks the key up before it reads the amount: a missing key is null even
        // with an invalid one; a syntax error still comes first.
        assert_eq!(h.run("getex missing ex 0"), Frame::Null);
        assert_eq!(h.run("getex missing px x"), Frame::Null);
        assert_eq!(h.run("getex missing pxat nx"), Frame::Null);
        assert_eq!(h.run("getex missing ex"), err("ERR syntax error"));
        assert_eq!(h.run("getex missing foo"), err("ERR syntax error"));
        h.run("set g v");
        assert_eq!(
            h.run("getex g px x"),
            err("ERR value is not an integer or out of range")
        );
    }

    #[test]
    fn multi_key_strings() {
        let mut h = Harness::new();
        assert_eq!(h.run("mset a 1 b 2"), ok());
        assert_eq!(
            h.run("mset a 1 b"),
            err("ERR wrong number of arguments for 'mset' command")
        );
        assert_eq!(
            h.run("mget a b c"),
            Frame::Array(vec![bulk("1"), bulk("2"), Frame::Null])
        );
        assert_eq!(h.run("msetnx c 3 a 9"), int(0));
        assert_eq!(h.run("get c"), Frame::Null);
        assert_eq!(h.run("msetnx c 3 d 4"), int(1));
        assert_eq!(h.run("mget c d"), Frame::Array(vec![bulk("3"), bulk("4")]));
        // A key past the engine's limit: the same error from SET and MSET, nothing written.
        let long_key = vec![b'k'; flin_engine::KEY_BYTES_MAX + 1];
        let refusal = err(&format!(
            "ERR key of {} bytes exceeds the limit of {} bytes",
            long_key.len(),
            flin_engine::KEY_BYTES_MAX
        ));
        assert_eq!(h.run_args(&[b"set", &long_key, b"v"]), refusal);
        assert_eq!(h.run_args(&[b"mset", b"e", b"5", &long_key, b"v"]), refusal);
        assert_eq!(
            h.run_args(&[b"msetnx", b"e", b"5", &long_key, b"v"]),
            refusal
        );
        assert_eq!(h.run("exists e"), int(0));
    }

    #[test]
    fn append_strlen_ranges() {
        let mut h = Harness::new();
        assert_eq!(h.run("append s Hello"), int(5));
        assert_eq!(h.run("append s World"), int(10));
        assert_eq!(h.run("strlen s"), int(10));
        assert_eq!(h.run("strlen none"), int(0));
        assert_eq!(h.run("getrange s 0 4"), bulk("Hello"));
        assert_eq!(h.run("getrange s -5 -1"), bulk("World"));
        assert_eq!(h.run("getrange s 5 1"), bulk(""));
        assert_eq!(h.run("getrange s 0 100"), bulk("HelloWorld"));
        assert_eq!(h.run("getrange none 0 1"), bulk(""));
        assert_eq!(h.run("setrange s 5 Redis"), int(10));
        assert_eq!(h.run("get s"), bulk("HelloRedis"));
        assert_eq!(h.run("setrange pad 3 x"), int(4));
        assert_eq!(h.run("get pad"), Frame::Bulk(b"\0\0\0x".to_vec()));
        assert_eq!(h.run_args(&[b"setrange", b"empty", b"0", b""]), int(0));
        assert_eq!(h.run("exists empty"), int(0));
        assert_eq!(h.run("setrange s -1 x"), err("ERR offset is out of range"));
        assert_eq!(
            h.run("setrange s 536870911 xx"),
            err("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
        );
        h.run("setex t 100 a");
        h.run("append t b");
        assert_eq!(h.run("ttl t"), int(100));
        assert_eq!(substring(b"abc", -1, -2), b"");
    }

    #[test]
    fn counters() {
        let mut h = Harness::new();
        assert_eq!(h.run("incr n"), int(1));
        assert_eq!(h.run("incrby n 10"), int(11));
        assert_eq!(h.run("decr n"), int(10));
        assert_eq!(h.run("decrby n 20"), int(-10));
        assert_eq!(
            h.run("incrby n x"),
            err("ERR value is not an integer or out of range")
        );
        h.run("set s abc");
        assert_eq!(
            h.run("incr s"),
            err("ERR value is not an integer or out of range")
        );
        h.run("set s 01");
        assert_eq!(
            h.run("incr s"),
            err("ERR value is not an integer or out of range")
        );
        h.run("set big 9223372036854775807");
        assert_eq!(
            h.run("incr big"),
            err("ERR increment or decrement would overflow")
        );
        assert_eq!(
            h.run("decrby big -9223372036854775808"),
            err("ERR decrement would overflow")
        );
        h.run("set f 10.50");
        assert_eq!(h.run("incrbyfloat f 0.1"), bulk("10.6"));
        assert_eq!(h.run("incrbyfloat f 5.0e3"), bulk("5010.6"));
        assert_eq!(
            h.run("incrbyfloat f x"),
            err("ERR value is not a valid float")
        );
        assert_eq!(h.run("incrbyfloat s 1"), bulk("2"));
        h.run("set s abc");
        assert_eq!(
            h.run("incrbyfloat s 1"),
            err("ERR value is not a valid float")
        );
        assert_eq!(
            h.run("incrbyfloat f inf"),
            err("ERR increment would produce NaN or Infinity")
        );
        assert_eq!(h.run("incrbyfloat hex 0x10"), bulk("16"));
        assert_eq!(h.run("incrbyfloat hex -0x1.8p1"), bulk("13"));
        assert_eq!(
            h.run("incrbyfloat hex 1e400"),
            err("ERR value is not a valid float")
        );
        assert_eq!(h.run("get hex"), bulk("13"));
        h.run("setex ttl 100 5");
        h.run("incr ttl");
        assert_eq!(h.run("ttl ttl"), int(100));
    }
}
