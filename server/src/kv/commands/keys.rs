//! Key-space commands: DEL UNLINK EXISTS TOUCH EXPIRE PEXPIRE EXPIREAT PEXPIREAT EXPIRETIME
//! PEXPIRETIME TTL PTTL PERSIST TYPE KEYS SCAN RANDOMKEY RENAME RENAMENX COPY OBJECT.

use super::integer;
use crate::cmd::connection::select_database;
use crate::cmd::{is, unknown_subcommand};
use crate::context::{Call, Outcome};
use crate::frame::Frame;
use crate::kv::expiry::{ExpireCondition, ExpiryUnit, TtlFormat};
use crate::kv::keys::{self, ScanOptions, SCAN_COUNT_DEFAULT};
use crate::kv::object;
use crate::kv::{KvError, KvRead};

/// DEL and UNLINK (the engine frees space in the background either way).
pub fn del(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let deleted = call.write(|txn| keys::delete(txn, &args[1..]))?;
    Ok(Frame::Integer(deleted as i64))
}

pub fn exists(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    Ok(Frame::Integer(
        keys::count_existing(call, &args[1..])? as i64
    ))
}

/// EXPIRE's option words: each NX/XX/GT/LT, then the combinations Redis refuses.
fn parse_condition(options: &[&[u8]]) -> Result<ExpireCondition, KvError> {
    let mut condition = ExpireCondition::default();
    for option in options {
        match () {
            _ if is(option, "NX") => condition.nx = true,
            _ if is(option, "XX") => condition.xx = true,
            _ if is(option, "GT") => condition.gt = true,
            _ if is(option, "LT") => condition.lt = true,
            _ => return Err(KvError::UnsupportedOption(option.to_vec())),
        }
    }
    condition.check()
}

fn expire_generic(
    call: &mut Call<'_, '_>,
    args: &[&[u8]],
    unit: ExpiryUnit,
    command: &'static str,
) -> Outcome {
    let condition = parse_condition(&args[3..])?;
    let amount = integer(args[2])?;
    let absolute_ms = unit
        .to_absolute_ms(amount, call.now_ms())
        .ok_or(KvError::InvalidExpire { command })?;
    let key = args[1];
    let set = call.write(|txn| keys::expire(txn, key, absolute_ms, condition))?;
    Ok(Frame::Integer(set as i64))
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

fn ttl_generic(call: &mut Call<'_, '_>, key: &[u8], format: TtlFormat) -> Outcome {
    Ok(Frame::Integer(keys::ttl(call, key)?.reply(format)))
}

pub fn ttl(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    ttl_generic(call, args[1], TtlFormat::Seconds)
}

pub fn pttl(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    ttl_generic(call, args[1], TtlFormat::Milliseconds)
}

pub fn expiretime(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    ttl_generic(call, args[1], TtlFormat::UnixSeconds)
}

pub fn pexpiretime(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    ttl_generic(call, args[1], TtlFormat::UnixMilliseconds)
}

pub fn persist(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let key = args[1];
    let removed = call.write(|txn| keys::persist(txn, key))?;
    Ok(Frame::Integer(removed as i64))
}

pub fn type_of(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    Ok(Frame::Simple(keys::type_name(call, args[1])?.into()))
}

pub fn keys(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let found = keys::matching_keys(&call.read(), args[1])?;
    Ok(Frame::Array(found.into_iter().map(Frame::Bulk).collect()))
}

/// SCAN's options: MATCH, COUNT and TYPE, each with its value, in any order and repeated (the
/// last wins).
fn parse_scan_options<'a>(args: &[&'a [u8]]) -> Result<ScanOptions<'a>, KvError> {
    let mut options = ScanOptions {
        pattern: None,
        count: SCAN_COUNT_DEFAULT,
        only_strings: true,
    };
    for pair in args.chunks(2) {
        let [name, value] = pair else {
            return Err(KvError::Syntax);
        };
        if is(name, "MATCH") {
            options.pattern = Some(*value).filter(|p| *p != b"*");
        } else if is(name, "COUNT") {
            let asked = integer(value)?;
            if asked < 1 {
                return Err(KvError::Syntax);
            }
            options.count = asked as usize;
        } else if is(name, "TYPE") {
            // Redis compares the name with each key's type name, case-insensitively: an
            // unknown name is no error, it just matches nothing (Redis kept it so as not to
            // break clients; Valkey 8 made it an error).
            options.only_strings = is(value, "string");
        } else {
            return Err(KvError::Syntax);
        }
    }
    Ok(options)
}

pub fn scan(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let cursor = keys::parse_cursor(args[1])?;
    let options = parse_scan_options(&args[2..])?;
    let (next, page) = keys::scan(&call.read(), cursor, &options)?;
    Ok(Frame::Array(vec![
        Frame::bulk(next.to_string()),
        Frame::Array(page.into_iter().map(Frame::Bulk).collect()),
    ]))
}

pub fn randomkey(call: &mut Call<'_, '_>, _args: &[&[u8]]) -> Outcome {
    let seed = call.shared.next_random();
    Ok(match keys::random_key(&call.read(), seed)? {
        Some(key) => Frame::Bulk(key),
        None => Frame::Null,
    })
}

pub fn rename(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (source, destination) = (args[1], args[2]);
    call.write(|txn| keys::rename(txn, source, destination, false))?;
    Ok(Frame::ok())
}

pub fn renamenx(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (source, destination) = (args[1], args[2]);
    let renamed = call.write(|txn| keys::rename(txn, source, destination, true))?;
    Ok(Frame::Integer(renamed as i64))
}

/// COPY's options: REPLACE, and DB with the one database there is (another index is refused
/// as SELECT refuses it).
pub fn copy(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let mut replace = false;
    let mut index = 3;
    while index < args.len() {
        if is(args[index], "REPLACE") {
            replace = true;
        } else if is(args[index], "DB") && index + 1 < args.len() {
            select_database(args[index + 1])?;
            index += 1;
        } else {
            return Err(KvError::Syntax.into());
        }
        index += 1;
    }
    let (source, destination) = (args[1], args[2]);
    let copied = call.write(|txn| keys::copy(txn, source, destination, replace))?;
    Ok(Frame::Integer(copied as i64))
}

/// TOUCH: how many of the keys exist (Flin keeps no access times to update).
pub fn touch(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    exists(call, args)
}

/// OBJECT HELP's lines, as Redis words them.
const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

/// OBJECT's subcommands and their arities, which the dispatcher checks (inside MULTI too).
pub const OBJECT_SUBCOMMANDS: &[(&str, i64)] = &[
    ("encoding", 3),
    ("freq", 3),
    ("help", 2),
    ("idletime", 3),
    ("refcount", 3),
];

/// OBJECT ENCODING|FREQ|IDLETIME|REFCOUNT key, OBJECT HELP (subcommand and arity checked by
/// the dispatcher). A missing key answers null.
pub fn object(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let null_or_integer = |value: Option<i64>| value.map_or(Frame::Null, Frame::Integer);
    let sub = String::from_utf8_lossy(args[1]).to_ascii_lowercase();
    match sub.as_str() {
        "help" => Ok(Frame::Array(
            OBJECT_HELP
                .iter()
                .map(|line| Frame::Simple((*line).into()))
                .collect(),
        )),
        "encoding" => Ok(match object::encoding_at(call, args[2])? {
            Some(encoding) => Frame::bulk(encoding.name()),
            None => Frame::Null,
        }),
        "refcount" => Ok(null_or_integer(object::refcount_at(call, args[2])?)),
        "freq" => {
            let untracked = KvError::FrequencyNotTracked;
            Ok(null_or_integer(object::untracked_at(
                call, args[2], untracked,
            )?))
        }
        "idletime" => {
            let untracked = KvError::IdleTimeNotTracked;
            Ok(null_or_integer(object::untracked_at(
                call, args[2], untracked,
            )?))
        }
        _ => Err(unknown_subcommand(args[1], "OBJECT")),
    }
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
        let config = flin_engine::Config::memory()
            .background_compaction(false)
            .clock(clock);
        let shared = crate::context::Shared::new(config, crate::config::Options::default());
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
    fn any_cursor_is_safe_to_continue_from() {
        // The parse itself: kv::keys's unit test of the same name.
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

    #[test]
    fn copy_touch() {
        let mut h = Harness::new();
        assert_eq!(h.run("copy a b"), int(0));
        h.run("setex a 100 1");
        assert_eq!(h.run("copy a b"), int(1));
        assert_eq!(h.run("ttl b"), int(100), "COPY keeps the TTL");
        h.run("set c 3");
        assert_eq!(h.run("copy a c"), int(0));
        assert_eq!(h.run("get c"), bulk("3"));
        assert_eq!(h.run("copy a c replace db 0"), int(1));
        assert_eq!(h.run("get c"), bulk("1"));
        assert_eq!(
            h.run("copy a a"),
            err("ERR source and destination objects are the same")
        );
        assert_eq!(h.run("copy a b db 1"), err("ERR DB index is out of range"));
        assert_eq!(
            h.run("copy a b db x"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            h.run("copy a b db 4294967296"),
            err("ERR value is out of range, value must between -2147483648 and 2147483647")
        );
        assert_eq!(h.run("copy a b db"), err("ERR syntax error"));
        assert_eq!(h.run("copy a b foo"), err("ERR syntax error"));
        assert_eq!(h.run("touch a b missing a"), int(3));
    }

    #[test]
    fn object() {
        let mut h = Harness::new();
        h.run("mset int 42 big 12345 text hello");
        h.run(&format!("set long {}", "x".repeat(45)));
        let encoding = |h: &mut Harness, key: &str| h.run(&format!("object encoding {key}"));
        assert_eq!(encoding(&mut h, "int"), bulk("int"));
        assert_eq!(encoding(&mut h, "text"), bulk("embstr"));
        assert_eq!(encoding(&mut h, "long"), bulk("raw"));
        assert_eq!(encoding(&mut h, "missing"), Frame::Null);
        assert_eq!(h.run("object refcount int"), int(2147483647));
        assert_eq!(h.run("object refcount big"), int(1));
        assert_eq!(h.run("object freq missing"), Frame::Null);
        assert!(
            matches!(h.run("object freq int"), Frame::Error(text) if text.starts_with("ERR An LFU maxmemory policy is not selected"))
        );
        assert_eq!(h.run("object idletime missing"), Frame::Null);
        assert_eq!(
            h.run("object idletime int"),
            err("ERR Flin does not record when a key was last accessed, idle time not tracked.")
        );
        let Frame::Array(help) = h.run("object help") else {
            panic!("help")
        };
        assert_eq!(help.len(), 15);
        assert_eq!(
            h.run("object encoding"),
            err("ERR wrong number of arguments for 'object|encoding' command")
        );
        assert_eq!(
            h.run("object help x"),
            err("ERR wrong number of arguments for 'object|help' command")
        );
        assert_eq!(
            h.run("object foo k"),
            err("ERR unknown subcommand 'foo'. Try OBJECT HELP.")
        );
        // Checked before queuing, as Redis does: the EXEC is then refused.
        assert_eq!(h.run("multi"), ok());
        assert_eq!(
            h.run("Object foo"),
            err("ERR unknown subcommand 'foo'. Try OBJECT HELP.")
        );
        assert_eq!(
            h.run("object freq"),
            err("ERR wrong number of arguments for 'object|freq' command")
        );
        assert_eq!(
            h.run("exec"),
            err("EXECABORT Transaction discarded because of previous errors.")
        );
    }
}
