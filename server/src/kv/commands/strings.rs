//! String commands: GET SET SETNX SETEX PSETEX GETSET GETDEL GETEX MGET MSET MSETNX APPEND
//! STRLEN GETRANGE SETRANGE INCR INCRBY DECR DECRBY INCRBYFLOAT LCS.

use super::{bulk_or_null, integer};
use crate::cmd::{is, wrong_arity};
use crate::context::{Call, Outcome};
use crate::frame::Frame;
use crate::kv::expiry::{storable_expiry, ExpiryArg, ExpiryChange, ExpiryUnit};
use crate::kv::lcs::{self, LcsAnswer, LcsQuery};
use crate::kv::strings::{self, GetExChange, SetCondition, SetOptions};
use crate::kv::{KvError, KvRead};
use crate::number::{parse_f64, parse_i64};

/// SET's and GETEX's option words, parsed as Redis's `parseExtendedStringArgumentsOrReply`
/// does; the expiry amount is only parsed, not checked (SET checks it at once, GETEX only
/// once the key is found, as Redis 7.2 does).
#[derive(Debug, Default)]
struct StringOptions<'a> {
    condition: SetCondition<'a>,
    get: bool,
    keep_ttl: bool,
    persist: bool,
    expiry: Option<ExpiryArg>,
}

fn parse_string_options<'a>(
    args: &[&'a [u8]],
    command: &'static str,
) -> Result<StringOptions<'a>, KvError> {
    let is_set = command == "set";
    let mut options = StringOptions::default();
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
        let other_unit = |unit: ExpiryUnit| options.expiry.is_some_and(|given| given.unit != unit);
        // NX and XX may repeat (Redis allows it) but not meet each other, IFEQ or IFNE.
        let nx_allowed = matches!(
            options.condition,
            SetCondition::Always | SetCondition::IfAbsent
        );
        let xx_allowed = matches!(
            options.condition,
            SetCondition::Always | SetCondition::IfPresent
        );
        if is_set && is(option, "NX") && nx_allowed {
            options.condition = SetCondition::IfAbsent;
        } else if is_set && is(option, "XX") && xx_allowed {
            options.condition = SetCondition::IfPresent;
        } else if let (true, Some(compared)) = (is_set && is(option, "IFEQ"), next) {
            options.condition = only_condition(options.condition, SetCondition::IfEqual(compared))?;
            index += 1;
        } else if let (true, Some(compared)) = (is_set && is(option, "IFNE"), next) {
            let condition = SetCondition::IfNotEqual(compared);
            options.condition = only_condition(options.condition, condition)?;
            index += 1;
        } else if is_set && is(option, "GET") {
            options.get = true;
        } else if is_set && is(option, "KEEPTTL") && options.expiry.is_none() {
            options.keep_ttl = true;
        } else if !is_set && is(option, "PERSIST") && options.expiry.is_none() {
            options.persist = true;
        } else if let (Some(unit), Some(amount)) = (unit, next) {
            if options.keep_ttl || options.persist || other_unit(unit) {
                return Err(KvError::Syntax);
            }
            options.expiry = Some(ExpiryArg {
                unit,
                amount: parse_i64(amount),
                command,
            });
            index += 1;
        } else {
            return Err(KvError::Syntax);
        }
        index += 1;
    }
    Ok(options)
}

/// IFEQ and IFNE exclude every other condition (NX, XX, or a second IFEQ/IFNE), as in Redis
/// 8.4: `-ERR syntax error`.
fn only_condition<'a>(
    given: SetCondition<'a>,
    new: SetCondition<'a>,
) -> Result<SetCondition<'a>, KvError> {
    match given {
        SetCondition::Always => Ok(new),
        _ => Err(KvError::Syntax),
    }
}

pub fn get(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    Ok(bulk_or_null(call.get(args[1])?.map(|found| found.value)))
}

pub fn set(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let parsed = parse_string_options(&args[3..], "set")?;
    let expiry = match parsed.expiry {
        Some(arg) => ExpiryChange::At(arg.absolute_ms(call.now_ms())?),
        None if parsed.keep_ttl => ExpiryChange::Keep,
        None => ExpiryChange::Clear,
    };
    let options = SetOptions {
        condition: parsed.condition,
        get: parsed.get,
        expiry,
    };
    let (key, value) = (args[1], args[2]);
    let outcome = call.write(|txn| strings::set(txn, key, value, &options))?;
    Ok(match (options.get, outcome.written) {
        (true, _) => bulk_or_null(outcome.old),
        (false, true) => Frame::ok(),
        (false, false) => Frame::Null,
    })
}

pub fn setnx(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (key, value) = (args[1], args[2]);
    let set = call.write(|txn| strings::set_if_absent(txn, key, value))?;
    Ok(Frame::Integer(set as i64))
}

fn set_with_ttl(
    call: &mut Call<'_, '_>,
    args: &[&[u8]],
    unit: ExpiryUnit,
    command: &'static str,
) -> Outcome {
    let arg = ExpiryArg {
        unit,
        amount: Some(integer(args[2])?),
        command,
    };
    let expiry_ms = storable_expiry(arg.absolute_ms(call.now_ms())?);
    let (key, value) = (args[1], args[3]);
    call.write(|txn| strings::set_expiring(txn, key, value, expiry_ms))?;
    Ok(Frame::ok())
}

pub fn setex(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    set_with_ttl(call, args, ExpiryUnit::Seconds, "setex")
}

pub fn psetex(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    set_with_ttl(call, args, ExpiryUnit::Milliseconds, "psetex")
}

pub fn getset(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (key, value) = (args[1], args[2]);
    Ok(bulk_or_null(
        call.write(|txn| strings::get_and_set(txn, key, value))?,
    ))
}

pub fn getdel(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let key = args[1];
    Ok(bulk_or_null(
        call.write(|txn| strings::get_and_delete(txn, key))?,
    ))
}

pub fn getex(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let parsed = parse_string_options(&args[2..], "getex")?;
    let change = match parsed.expiry {
        Some(arg) => GetExChange::At(arg),
        None if parsed.persist => GetExChange::Persist,
        // No option: a plain read, no write.
        None => return get(call, args),
    };
    let key = args[1];
    Ok(bulk_or_null(call.write(|txn| {
        strings::get_and_change_expiry(txn, key, change)
    })?))
}

pub fn mget(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let values = call.get_many(&args[1..])?;
    Ok(Frame::Array(values.into_iter().map(bulk_or_null).collect()))
}

/// MSET-style arguments: the name, then keys and values alternating.
fn pairs<'a>(args: &'a [&'a [u8]], command: &str) -> Result<&'a [&'a [u8]], Frame> {
    if args.len().is_multiple_of(2) {
        return Err(wrong_arity(command));
    }
    Ok(&args[1..])
}

pub fn mset(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let pairs = pairs(args, "mset")?;
    call.write(|txn| strings::set_many(txn, pairs))?;
    Ok(Frame::ok())
}

pub fn msetnx(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let pairs = pairs(args, "msetnx")?;
    let set = call.write(|txn| strings::set_many_if_absent(txn, pairs))?;
    Ok(Frame::Integer(set as i64))
}

pub fn append(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (key, suffix) = (args[1], args[2]);
    let length = call.write(|txn| strings::append(txn, key, suffix))?;
    Ok(Frame::Integer(length as i64))
}

pub fn strlen(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    Ok(Frame::Integer(strings::length(call, args[1])? as i64))
}

pub fn getrange(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (start, end) = (integer(args[2])?, integer(args[3])?);
    Ok(Frame::Bulk(strings::range(call, args[1], start, end)?))
}

pub fn setrange(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let offset = integer(args[2])?;
    let (key, patch) = (args[1], args[3]);
    let length = call.write(|txn| strings::set_range(txn, key, offset, patch))?;
    Ok(Frame::Integer(length as i64))
}

fn increment(call: &mut Call<'_, '_>, key: &[u8], delta: i64) -> Outcome {
    Ok(Frame::Integer(
        call.write(|txn| strings::increment(txn, key, delta))?,
    ))
}

pub fn incr(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    increment(call, args[1], 1)
}

pub fn decr(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    increment(call, args[1], -1)
}

pub fn incrby(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let delta = integer(args[2])?;
    increment(call, args[1], delta)
}

pub fn decrby(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let delta = strings::decrement_delta(integer(args[2])?)?;
    increment(call, args[1], delta)
}

pub fn incrbyfloat(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let delta = parse_f64(args[2]).ok_or(KvError::NotFloat)?;
    let key = args[1];
    let text = call.write(|txn| strings::increment_float(txn, key, delta))?;
    Ok(Frame::Bulk(text.into_bytes()))
}

/// LCS's options: `[LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]`, in any order.
struct LcsOptions {
    query: LcsQuery,
    with_match_length: bool,
}

fn parse_lcs_options(args: &[&[u8]]) -> Result<LcsOptions, KvError> {
    let (mut length, mut indexes, mut with_match_length) = (false, false, false);
    let mut min_length = 0i64;
    let mut index = 0;
    while index < args.len() {
        let option = args[index];
        let more = index + 1 < args.len();
        if is(option, "IDX") {
            indexes = true;
        } else if is(option, "LEN") {
            length = true;
        } else if is(option, "WITHMATCHLEN") {
            with_match_length = true;
        } else if is(option, "MINMATCHLEN") && more {
            min_length = integer(args[index + 1])?.max(0);
            index += 1;
        } else {
            return Err(KvError::Syntax);
        }
        index += 1;
    }
    let query = match (length, indexes) {
        (true, true) => return Err(KvError::LcsLenAndIdx),
        (_, true) => LcsQuery::Matches {
            min_length: min_length as u64,
        },
        (true, false) => LcsQuery::Length,
        (false, false) => LcsQuery::Sequence,
    };
    Ok(LcsOptions {
        query,
        with_match_length,
    })
}

pub fn lcs(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let options = parse_lcs_options(&args[3..])?;
    Ok(
        match lcs::lcs_of_keys(call, args[1], args[2], options.query)? {
            LcsAnswer::Sequence(sequence) => Frame::Bulk(sequence),
            LcsAnswer::Length(length) => Frame::Integer(length as i64),
            LcsAnswer::Matches { matches, length } => {
                let range = |(start, end): (u32, u32)| {
                    Frame::Array(vec![
                        Frame::Integer(start as i64),
                        Frame::Integer(end as i64),
                    ])
                };
                let matches = matches
                    .into_iter()
                    .map(|run| {
                        let mut entry = vec![range(run.a), range(run.b)];
                        if options.with_match_length {
                            entry.push(Frame::Integer(run.length as i64));
                        }
                        Frame::Array(entry)
                    })
                    .collect();
                Frame::Map(vec![
                    (Frame::bulk("matches"), Frame::Array(matches)),
                    (Frame::bulk("len"), Frame::Integer(length as i64)),
                ])
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use crate::cmd::test_support::*;
    use crate::frame::Frame;
    use crate::kv::strings::substring;

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

    #[test]
    fn lcs_shapes() {
        let mut h = Harness::new();
        h.run("mset a ohmytext b mynewtext");
        assert_eq!(h.run("lcs a b"), bulk("mytext"));
        assert_eq!(h.run("lcs a b len"), int(6));
        let range = |start, end| Frame::Array(vec![int(start), int(end)]);
        let idx = h.run("lcs a b idx minmatchlen 4 withmatchlen");
        assert_eq!(
            idx,
            Frame::Map(vec![
                (
                    bulk("matches"),
                    Frame::Array(vec![Frame::Array(vec![range(4, 7), range(5, 8), int(4)])])
                ),
                (bulk("len"), int(6)),
            ])
        );
        assert_eq!(
            h.run("lcs a b len idx"),
            err("ERR If you want both the length and indexes, please just use IDX.")
        );
        assert_eq!(h.run("lcs a b minmatchlen"), err("ERR syntax error"));
        assert_eq!(
            h.run("lcs a b minmatchlen x"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(h.run("lcs a missing"), bulk(""));
        assert_eq!(
            h.run("lcs missing missing idx"),
            Frame::Map(vec![
                (bulk("matches"), Frame::Array(vec![])),
                (bulk("len"), int(0)),
            ])
        );
    }
}
