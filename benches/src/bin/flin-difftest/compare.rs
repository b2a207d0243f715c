//! Deciding whether Redis's reply and Flin's reply to the same command agree.
//!
//! Equal bytes always agree. Otherwise a reply pair may still agree under one of a few named
//! rules, each for something that legitimately differs between two servers (ids, clocks,
//! iteration order, version strings) or that docs/commands.md documents as a deliberate
//! difference. Anything else is a divergence. The rules look at the command the reply answers,
//! so a tolerance never leaks to other commands.

use crate::resp::Value;

/// Milliseconds two PTTL/PEXPIRETIME readings may differ by: the two servers are asked one
/// after the other, and a relative expiry was set on each at slightly different times.
pub const PTTL_TOLERANCE_MS: i64 = 250;
/// The same for TTL/EXPIRETIME, in seconds (a rounding step either side).
pub const TTL_TOLERANCE_S: i64 = 1;
/// Relative difference allowed between INCRBYFLOAT results (Redis: long double, Flin: f64).
const FLOAT_RELATIVE_TOLERANCE: f64 = 1e-14;
/// Redis formats INCRBYFLOAT results with `%.17Lf`: differences below the 17th decimal place
/// are its rounding.
const REDIS_FLOAT_DECIMALS_STEP: f64 = 1e-17;

/// How a pair of replies compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Byte for byte the same.
    Same,
    /// Different bytes, accepted by the named rule.
    Tolerated(&'static str),
    /// A divergence docs/commands.md documents as deliberate ("Differs from Redis"): counted
    /// and shown apart, not a failure.
    Known(&'static str),
    /// A divergence.
    Differ,
}

/// Documented divergences in a read's reply only: the command changes nothing, so the two
/// servers' states still agree after it (random mode does not start them afresh, and the
/// replies after it in an EXEC or pipeline are judged on their own).
const REPLY_ONLY_RULES: &[&str] = &["object-encoding-by-value", "object-idletime-not-tracked"];

/// Whether a documented divergence is in a reply only (see [`REPLY_ONLY_RULES`]).
pub fn reply_only(rule: &str) -> bool {
    REPLY_ONLY_RULES.contains(&rule)
}

impl Verdict {
    fn and(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::Differ, _) | (_, Verdict::Differ) => Verdict::Differ,
            // The one that may leave the servers' states apart speaks for both.
            (Verdict::Known(first), Verdict::Known(second)) => {
                Verdict::Known(if reply_only(first) { second } else { first })
            }
            (Verdict::Known(rule), _) | (_, Verdict::Known(rule)) => Verdict::Known(rule),
            (Verdict::Tolerated(rule), _) | (_, Verdict::Tolerated(rule)) => {
                Verdict::Tolerated(rule)
            }
            _ => Verdict::Same,
        }
    }

    fn tolerate_if(ok: bool, rule: &'static str) -> Verdict {
        if ok {
            Verdict::Tolerated(rule)
        } else {
            Verdict::Differ
        }
    }
}

/// What the compared reply answers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context<'a> {
    /// The command, when the reply answers one known command (not for raw bytes).
    pub args: Option<&'a [Vec<u8>]>,
    /// The commands EXEC ran, when the reply is EXEC's.
    pub queued: Option<&'a [Vec<Vec<u8>>]>,
    /// The reply is one element of EXEC's array.
    pub in_exec: bool,
}

impl<'a> Context<'a> {
    #[cfg(test)]
    pub fn command(args: &'a [Vec<u8>]) -> Context<'a> {
        Context {
            args: Some(args),
            ..Context::default()
        }
    }
}

fn upper(arg: Option<&Vec<u8>>) -> String {
    arg.map(|arg| String::from_utf8_lossy(arg).to_ascii_uppercase())
        .unwrap_or_default()
}

/// Error texts Redis 7.2 changed from 7.0 (the installed redis-server may be 7.0): 7.0's text
/// from Redis, 7.2's from Flin, is agreement.
const REDIS_7_0_WORDING: &[(&str, &str)] = &[(
    // redis/redis#11809 (7.2) put <proto> in the suggested command.
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO \
     AUTH <user> <pass> option can be used to authenticate the client and select the RESP \
     protocol version at the same time",
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO \
     <proto> AUTH <user> <pass> option can be used to authenticate the client and select the \
     RESP protocol version at the same time",
)];

/// Compares the replies of Redis and Flin.
pub fn compare(context: Context<'_>, redis: &Value, flin: &Value) -> Verdict {
    match tolerate(context, redis, flin) {
        Verdict::Differ => context
            .args
            .and_then(|args| known_divergence(args, redis, flin, context.in_exec))
            .map_or(Verdict::Differ, Verdict::Known),
        verdict => verdict,
    }
}

fn tolerate(context: Context<'_>, redis: &Value, flin: &Value) -> Verdict {
    if redis == flin {
        return Verdict::Same;
    }
    if matches!(redis, Value::Closed | Value::Timeout)
        || matches!(flin, Value::Closed | Value::Timeout)
    {
        return Verdict::Differ;
    }
    if let (Value::Error(redis_text), Value::Error(flin_text)) = (redis, flin) {
        if protocol_errors_agree(redis_text, flin_text) {
            return Verdict::Tolerated("protocol-error-offset");
        }
    }
    if let (Value::Error(redis_text), Value::Error(flin_text)) = (redis, flin) {
        if REDIS_7_0_WORDING
            .iter()
            .any(|(old, new)| redis_text == old.as_bytes() && flin_text == new.as_bytes())
        {
            return Verdict::Tolerated("redis-7.0-wording");
        }
    }
    let Some(args) = context.args else {
        return Verdict::Differ;
    };
    let name = upper(args.first());
    let sub = upper(args.get(1));
    if context.in_exec && matches!(name.as_str(), "KEYS" | "SCAN" | "RANDOMKEY" | "DBSIZE") {
        // Documented: inside EXEC these see the state before the transaction, so only the
        // kind of reply is compared (RANDOMKEY: a key or null).
        let key_or_null = |value: &Value| matches!(value, Value::Bulk(_)) || value.is_null();
        let agree = same_kind(redis, flin)
            || name == "RANDOMKEY" && key_or_null(redis) && key_or_null(flin);
        return Verdict::tolerate_if(agree, "exec-reads-pre-transaction-state");
    }
    match (name.as_str(), sub.as_str()) {
        ("HELLO", _) => hello(redis, flin),
        ("CLIENT", "LIST" | "INFO") | ("INFO", _) => {
            Verdict::tolerate_if(text_kind(redis) && same_kind(redis, flin), "server-details")
        }
        ("CLIENT", "ID") => Verdict::tolerate_if(
            redis.integer().is_some() && flin.integer().is_some(),
            "connection-id",
        ),
        ("CLIENT", "SETINFO") => redis_lacks("client-setinfo-is-7.2", redis, "setinfo"),
        ("TIME", _) => Verdict::tolerate_if(time_shape(redis) && time_shape(flin), "clock"),
        ("CONFIG", "GET") => config_get(redis, flin),
        ("COMMAND", "COUNT") => Verdict::tolerate_if(
            redis.integer().is_some() && flin.integer().is_some(),
            "command-table",
        ),
        ("COMMAND", "INFO") => command_info(redis, flin),
        ("COMMAND", "" | "LIST" | "DOCS") => {
            Verdict::tolerate_if(same_kind(redis, flin), "command-table")
        }
        ("KEYS", _) => Verdict::tolerate_if(same_members(redis, flin), "key-order"),
        ("SCAN", _) if args.get(1).is_some_and(|cursor| !is_start_cursor(cursor)) => {
            Verdict::tolerate_if(scan_page(redis) && scan_page(flin), "scan-foreign-cursor")
        }
        ("SCAN", _) => scan(redis, flin),
        ("RANDOMKEY", _) => Verdict::tolerate_if(
            redis.is_null() == flin.is_null() && same_kind(redis, flin),
            "random-key",
        ),
        ("TTL" | "EXPIRETIME", _) => within(redis, flin, TTL_TOLERANCE_S),
        ("PTTL" | "PEXPIRETIME", _) => within(redis, flin, PTTL_TOLERANCE_MS),
        ("INCRBYFLOAT", _) => close_floats(redis, flin),
        ("EXEC", _) => match context.queued {
            Some(queued) => exec(queued, redis, flin),
            None => Verdict::Differ,
        },
        _ => Verdict::Differ,
    }
}

/// Redis's and Flin's protocol errors agree when they are the same but for the " at byte N"
/// that Flin adds (docs/protocol.md).
fn protocol_errors_agree(redis: &[u8], flin: &[u8]) -> bool {
    let prefix = b"ERR Protocol error";
    if !redis.starts_with(prefix) || !flin.starts_with(prefix) {
        return false;
    }
    let flin = String::from_utf8_lossy(flin);
    let Some((stem, offset)) = flin.rsplit_once(" at byte ") else {
        return false;
    };
    offset.bytes().all(|byte| byte.is_ascii_digit()) && stem.as_bytes() == redis
}

fn same_kind(redis: &Value, flin: &Value) -> bool {
    redis.kind() == flin.kind()
}

fn text_kind(value: &Value) -> bool {
    matches!(value, Value::Bulk(_) | Value::Verbatim(..))
}

/// HELLO: the same fields in the same order with the same values, but for `server`,
/// `version` (which name the implementation) and `id` (a connection number).
fn hello(redis: &Value, flin: &Value) -> Verdict {
    let (Some(redis_pairs), Some(flin_pairs)) = (redis.pairs(), flin.pairs()) else {
        return Verdict::Differ;
    };
    if !same_kind(redis, flin) || redis_pairs.len() != flin_pairs.len() {
        return Verdict::Differ;
    }
    let agree = redis_pairs.iter().zip(&flin_pairs).all(
        |((redis_key, redis_value), (flin_key, flin_value))| {
            redis_key == flin_key
                && match redis_key.text() {
                    Some(b"server" | b"version" | b"id") => same_kind(redis_value, flin_value),
                    _ => redis_value == flin_value,
                }
        },
    );
    Verdict::tolerate_if(agree, "hello-server-version-id")
}

/// A subcommand Redis 7.0 does not know but 7.2 has: Redis's "unknown subcommand" error is
/// not held against Flin, whatever Flin replies.
fn redis_lacks(rule: &'static str, redis: &Value, subcommand: &str) -> Verdict {
    let Value::Error(text) = redis else {
        return Verdict::Differ;
    };
    let text = String::from_utf8_lossy(text).to_ascii_lowercase();
    Verdict::tolerate_if(
        text.starts_with(&format!("err unknown subcommand '{subcommand}'")),
        rule,
    )
}

fn time_shape(value: &Value) -> bool {
    matches!(value.elements(), Some([Value::Bulk(_), Value::Bulk(_)]))
}

/// CONFIG GET: every parameter Flin returns, Redis returns too (values are each server's own:
/// ports, directories, persistence). Flin knows fewer parameters, so a glob matches fewer.
fn config_get(redis: &Value, flin: &Value) -> Verdict {
    let (Some(redis_pairs), Some(flin_pairs)) = (redis.pairs(), flin.pairs()) else {
        return Verdict::Differ;
    };
    let known = flin_pairs.iter().all(|(flin_key, _)| {
        redis_pairs
            .iter()
            .any(|(redis_key, _)| redis_key == flin_key)
    });
    Verdict::tolerate_if(same_kind(redis, flin) && known, "config-values")
}

/// COMMAND INFO: per command, name, arity, flags (as a set) and key positions must agree;
/// the ACL categories, tips, key specs and subcommands that follow are Redis's detail.
fn command_info(redis: &Value, flin: &Value) -> Verdict {
    let (Some(redis_entries), Some(flin_entries)) = (redis.elements(), flin.elements()) else {
        return Verdict::Differ;
    };
    if redis_entries.len() != flin_entries.len() {
        return Verdict::Differ;
    }
    let agree = redis_entries.iter().zip(flin_entries).all(|(redis, flin)| {
        match (redis.elements(), flin.elements()) {
            (Some(redis), Some(flin)) if redis.len() >= 6 && flin.len() >= 6 => {
                redis[0..2] == flin[0..2]
                    && redis[3..6] == flin[3..6]
                    && same_members(&redis[2], &flin[2])
            }
            _ => redis == flin,
        }
    });
    Verdict::tolerate_if(agree, "command-info-detail")
}

/// The same elements, in any order (KEYS, SCAN's keys).
pub fn same_members(redis: &Value, flin: &Value) -> bool {
    let (Some(redis), Some(flin)) = (redis.elements(), flin.elements()) else {
        return false;
    };
    let sorted = |items: &[Value]| {
        let mut shown: Vec<String> = items.iter().map(|item| item.to_string()).collect();
        shown.sort();
        shown
    };
    sorted(redis) == sorted(flin)
}

/// A cursor that starts a scan (what Redis's `strtoul` reads as 0). Any other cursor the
/// script sends was not returned by the server: its meaning is each server's own (Redis walks
/// its hash table from there, Flin its index shards), so only the reply's shape is compared.
fn is_start_cursor(cursor: &[u8]) -> bool {
    let digits = cursor
        .strip_prefix(b"+")
        .or_else(|| cursor.strip_prefix(b"-"))
        .unwrap_or(cursor);
    digits.iter().all(|byte| *byte == b'0') && (digits.len() == cursor.len() || !digits.is_empty())
}

fn scan_page(value: &Value) -> bool {
    matches!(value.elements(), Some([Value::Bulk(_), Value::Array(_)]))
}

/// SCAN: `[cursor, keys]`. The runner has already followed each server's cursor to the end
/// and put every key returned into one array, so only the keys are compared, as a set.
fn scan(redis: &Value, flin: &Value) -> Verdict {
    match (redis.elements(), flin.elements()) {
        (Some([Value::Bulk(_), redis_keys]), Some([Value::Bulk(_), flin_keys])) => {
            Verdict::tolerate_if(same_members(redis_keys, flin_keys), "scan-cursor-and-order")
        }
        _ => Verdict::Differ,
    }
}

/// Two integers that are equal, or both non-negative and within `tolerance` (a remaining
/// time read a little later on one server).
fn within(redis: &Value, flin: &Value, tolerance: i64) -> Verdict {
    match (redis.integer(), flin.integer()) {
        (Some(a), Some(b)) if a >= 0 && b >= 0 => {
            Verdict::tolerate_if(a.abs_diff(b) <= tolerance as u64, "ttl-clock-skew")
        }
        _ => Verdict::Differ,
    }
}

/// INCRBYFLOAT: both bulk numbers, equal as f64 up to rounding in the last digits
/// (docs/commands.md: Flin computes in f64, Redis in long double).
fn close_floats(redis: &Value, flin: &Value) -> Verdict {
    let number = |value: &Value| match value {
        Value::Bulk(text) => std::str::from_utf8(text).ok()?.parse::<f64>().ok(),
        _ => None,
    };
    match (number(redis), number(flin)) {
        (Some(a), Some(b)) => {
            let scale = a.abs().max(b.abs()).max(f64::MIN_POSITIVE);
            // Redis prints at most 17 decimal places: below that it shows 0 where Flin
            // shows the f64's shortest decimal.
            let below_redis_precision = (a - b).abs() < REDIS_FLOAT_DECIMALS_STEP;
            Verdict::tolerate_if(
                (a - b).abs() / scale <= FLOAT_RELATIVE_TOLERANCE || below_redis_precision,
                "incrbyfloat-f64",
            )
        }
        _ => Verdict::Differ,
    }
}

/// Divergences docs/commands.md documents as deliberate, each recognised from the command
/// and both replies precisely enough that a different bug would not be taken for it.
fn known_divergence(
    args: &[Vec<u8>],
    redis: &Value,
    flin: &Value,
    in_exec: bool,
) -> Option<&'static str> {
    let name = upper(args.first());
    let flin_error = match flin {
        Value::Error(text) => Some(String::from_utf8_lossy(text).into_owned()),
        _ => None,
    };
    if name == "INCRBYFLOAT" {
        let redis_number = match redis {
            Value::Bulk(text) => std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse::<f64>().ok()),
            _ => None,
        };
        // Redis's long double reaches 1.19e4932, Flin's f64 1.8e308.
        let past_f64 = redis_number.is_some_and(|n| n.is_infinite());
        let flin_range_error = flin_error.as_deref().is_some_and(|e| {
            e == "ERR value is not a valid float"
                || e == "ERR increment would produce NaN or Infinity"
        });
        if past_f64 && flin_range_error {
            return Some("incrbyfloat-long-double-range");
        }
        // A stored value past f64's range (`1e325`, say, which SETRANGE or APPEND can build):
        // Redis reads it and the infinite increment makes the sum infinite; Flin cannot read
        // it. A valid increment rules out every other cause of Flin's refusal.
        let redis_infinite_sum = matches!(redis, Value::Error(text)
            if text == b"ERR increment would produce NaN or Infinity");
        let flin_unreadable = flin_error.as_deref() == Some("ERR value is not a valid float");
        let valid_increment = args
            .get(2)
            .and_then(|arg| std::str::from_utf8(arg).ok())
            .is_some_and(|text| text.parse::<f64>().is_ok_and(|n| !n.is_nan()));
        if redis_infinite_sum && flin_unreadable && valid_increment {
            return Some("incrbyfloat-long-double-range");
        }
        // Below long double's range Redis refuses the literal; in f64 it already read as 0.
        let redis_refused =
            matches!(redis, Value::Error(text) if text == b"ERR value is not a valid float");
        let literal = args
            .get(2)
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .unwrap_or_default();
        let underflow = literal.parse::<f64>().is_ok_and(|v| v == 0.0)
            && literal
                .split(['e', 'E'])
                .next()
                .is_some_and(|m| m.bytes().any(|b| (b'1'..=b'9').contains(&b)));
        if redis_refused && matches!(flin, Value::Bulk(_)) && underflow {
            return Some("incrbyfloat-long-double-range");
        }
    }
    if name == "OBJECT" {
        return object_divergence(&upper(args.get(1)), redis, flin, in_exec);
    }
    if name == "COPY" && copies_to_another_database(args) {
        // Flin has one database: DB n refused as SELECT n is (Redis has 16 by default).
        let refused = flin_error.as_deref() == Some("ERR DB index is out of range");
        if refused && !redis.is_error() {
            return Some("single-database");
        }
    }
    // The engine holds keys of at most 1 MiB (Redis: 512 MiB).
    let key_limit = flin_engine::KEY_BYTES_MAX;
    if flin_error.as_deref().is_some_and(|e| {
        e.starts_with("ERR key of ")
            && e.ends_with(&format!("exceeds the limit of {key_limit} bytes"))
    }) && args.iter().skip(1).any(|arg| arg.len() > key_limit)
        && !redis.is_error()
    {
        return Some("engine-key-limit");
    }
    // Error texts are strings in Flin: an echoed argument's invalid UTF-8 shows as U+FFFD.
    if let (Value::Error(redis_text), Value::Error(flin_text)) = (redis, flin) {
        if std::str::from_utf8(redis_text).is_err()
            && String::from_utf8_lossy(redis_text).as_bytes() == flin_text.as_slice()
        {
            return Some("error-text-invalid-utf8");
        }
    }
    None
}

/// OBJECT's documented divergences (docs/commands.md, OBJECT): Flin answers ENCODING and
/// REFCOUNT from the value's bytes, as Redis encodes a string SET wrote, where Redis also
/// remembers how the value was written (APPEND, SETRANGE, SETBIT, BITFIELD and BITOP leave it
/// `raw`, INCRBYFLOAT `embstr`, and a copy of a shared integer is not shared; inside EXEC, a
/// value an earlier queued command wrote is still referenced by that command's arguments, so
/// Redis counts 2, for a value INCRBYFLOAT wrote too, whatever its bytes); and it refuses
/// IDLETIME, which it does not track.
fn object_divergence(
    sub: &str,
    redis: &Value,
    flin: &Value,
    in_exec: bool,
) -> Option<&'static str> {
    match sub {
        "ENCODING" => {
            let (Value::Bulk(redis), Value::Bulk(flin)) = (redis, flin) else {
                return None;
            };
            let written_in_place = redis == b"raw" && (flin == b"embstr" || flin == b"int");
            let float_result = redis == b"embstr" && flin == b"int";
            (written_in_place || float_result).then_some("object-encoding-by-value")
        }
        "REFCOUNT" => {
            let unshared = redis.integer() == Some(1) && flin.integer() == Some(i32::MAX as i64);
            let flin_answer = flin
                .integer()
                .is_some_and(|n| n == 1 || n == i32::MAX as i64);
            let held_by_exec = in_exec && redis.integer() == Some(2) && flin_answer;
            (unshared || held_by_exec).then_some("object-encoding-by-value")
        }
        "IDLETIME" => {
            let refused = matches!(flin, Value::Error(text)
                if text == b"ERR Flin does not record when a key was last accessed, idle time not tracked.");
            (refused && redis.integer().is_some()).then_some("object-idletime-not-tracked")
        }
        _ => None,
    }
}

/// Whether COPY's options name a database Redis has and Flin does not (1 to 15: Redis's
/// default is 16 databases).
fn copies_to_another_database(args: &[Vec<u8>]) -> bool {
    args.windows(2).skip(3).any(|pair| {
        pair[0].eq_ignore_ascii_case(b"DB")
            && std::str::from_utf8(&pair[1])
                .ok()
                .and_then(|text| text.parse::<i64>().ok())
                .is_some_and(|db| (1..16).contains(&db))
    })
}

/// What one reply's verdict means for the replies that follow it in the same EXEC or
/// pipeline, which the servers computed before the tool could put their states back in step.
#[derive(Debug, Default)]
pub struct Carry {
    /// A documented divergence happened: the servers' states may differ from here on.
    known: Option<&'static str>,
    /// Keys an INCRBYFLOAT left with different digits (tolerated as f64 rounding).
    rounded_keys: Vec<Vec<u8>>,
}

impl Carry {
    /// The verdict for `args`'s reply pair, given what came before; remembers what this one
    /// leaves behind.
    pub fn follow(
        &mut self,
        args: &[Vec<u8>],
        redis: &Value,
        flin: &Value,
        verdict: Verdict,
    ) -> Verdict {
        let verdict = match (verdict, self.known) {
            (Verdict::Differ, Some(rule)) => Verdict::Known(rule),
            (Verdict::Differ, None)
                if args[1..].iter().any(|key| self.rounded_keys.contains(key)) =>
            {
                Verdict::Tolerated("after-incrbyfloat-f64")
            }
            (verdict, _) => verdict,
        };
        if let Verdict::Known(rule) = verdict {
            if !reply_only(rule) {
                self.known.get_or_insert(rule);
            }
        }
        let rounded = verdict == Verdict::Tolerated("incrbyfloat-f64") && redis != flin;
        if rounded && args[0].eq_ignore_ascii_case(b"INCRBYFLOAT") {
            self.rounded_keys.extend(args.get(1).cloned());
        } else {
            let derived = derived_from(&self.rounded_keys, args);
            self.rounded_keys.extend(derived);
        }
        verdict
    }

    /// Keys an INCRBYFLOAT left with different digits on the two servers, and keys a later
    /// command in the same EXEC or pipeline may have written from them.
    pub fn rounded_keys(&self) -> &[Vec<u8>] {
        &self.rounded_keys
    }
}

/// The arguments of a command that mentions one of `rounded` keys: any of them may be a key it
/// wrote from a rounded value (COPY's or RENAME's destination, BITOP's), so they are forgotten
/// too (deleting a key that agrees on both servers changes nothing).
fn derived_from(rounded: &[Vec<u8>], args: &[Vec<u8>]) -> Vec<Vec<u8>> {
    if args[1..].iter().any(|arg| rounded.contains(arg)) {
        args[1..]
            .iter()
            .filter(|arg| !rounded.contains(arg))
            .cloned()
            .collect()
    } else {
        Vec::new()
    }
}

/// Keys an EXEC whose INCRBYFLOATs were tolerated may have left different on the two servers:
/// each INCRBYFLOAT's key, and what later queued commands wrote from one.
pub fn rounded_in_exec(queued: &[Vec<Vec<u8>>]) -> Vec<Vec<u8>> {
    let mut rounded: Vec<Vec<u8>> = Vec::new();
    for args in queued {
        if args[0].eq_ignore_ascii_case(b"INCRBYFLOAT") && args.len() > 1 {
            rounded.push(args[1].clone());
        } else {
            let derived = derived_from(&rounded, args);
            rounded.extend(derived);
        }
    }
    rounded
}

/// EXEC: each element against the command that produced it.
fn exec(queued: &[Vec<Vec<u8>>], redis: &Value, flin: &Value) -> Verdict {
    match (redis, flin) {
        (Value::Array(redis_items), Value::Array(flin_items))
            if redis_items.len() == queued.len() && flin_items.len() == queued.len() =>
        {
            let mut carry = Carry::default();
            queued.iter().zip(redis_items.iter().zip(flin_items)).fold(
                Verdict::Same,
                |verdict, (args, (redis, flin))| {
                    let context = Context {
                        args: Some(args),
                        queued: None,
                        in_exec: true,
                    };
                    let element = compare(context, redis, flin);
                    verdict.and(carry.follow(args, redis, flin, element))
                },
            )
        }
        _ => Verdict::Differ,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<Vec<u8>> {
        line.split(' ')
            .map(|word| word.as_bytes().to_vec())
            .collect()
    }
    fn int(value: i64) -> Value {
        Value::Integer(value.to_string().into_bytes())
    }
    fn bulk(text: &str) -> Value {
        Value::Bulk(text.as_bytes().to_vec())
    }
    fn error(text: &str) -> Value {
        Value::Error(text.as_bytes().to_vec())
    }
    fn verdict(line: &str, redis: &Value, flin: &Value) -> Verdict {
        let command = args(line);
        compare(Context::command(&command), redis, flin)
    }

    #[test]
    fn equal_bytes_are_the_same_and_anything_else_differs_by_default() {
        assert_eq!(verdict("GET k", &bulk("v"), &bulk("v")), Verdict::Same);
        assert_eq!(verdict("GET k", &bulk("v"), &bulk("w")), Verdict::Differ);
        assert_eq!(
            verdict("GET k", &Value::NullBulk, &Value::Null),
            Verdict::Differ
        );
        assert_eq!(
            verdict("SET k v", &error("ERR a"), &error("ERR b")),
            Verdict::Differ
        );
        // A rule for one command does not apply to another.
        assert_eq!(verdict("INCR k", &int(1), &int(2)), Verdict::Differ);
        assert_eq!(verdict("TTL k", &Value::Closed, &int(2)), Verdict::Differ);
        let no_command = Context::default();
        assert_eq!(compare(no_command, &int(1), &int(2)), Verdict::Differ);
    }

    #[test]
    fn ttls_within_tolerance() {
        assert_eq!(
            verdict("TTL k", &int(100), &int(99)),
            Verdict::Tolerated("ttl-clock-skew")
        );
        assert_eq!(verdict("TTL k", &int(100), &int(98)), Verdict::Differ);
        assert_eq!(
            verdict("PTTL k", &int(1000), &int(900)),
            Verdict::Tolerated("ttl-clock-skew")
        );
        assert_eq!(verdict("PTTL k", &int(1000), &int(700)), Verdict::Differ);
        // -1 and -2 are states, not times: no tolerance.
        assert_eq!(verdict("TTL k", &int(-1), &int(0)), Verdict::Differ);
        assert_eq!(verdict("PTTL k", &int(-2), &int(-1)), Verdict::Differ);
        assert_eq!(
            verdict(
                "PEXPIRETIME k",
                &int(1_700_000_000_100),
                &int(1_700_000_000_000)
            ),
            Verdict::Tolerated("ttl-clock-skew")
        );
    }

    #[test]
    fn keys_and_scan_compare_as_sets() {
        let ab = Value::Array(vec![bulk("a"), bulk("b")]);
        let ba = Value::Array(vec![bulk("b"), bulk("a")]);
        let a = Value::Array(vec![bulk("a")]);
        assert_eq!(verdict("KEYS *", &ab, &ba), Verdict::Tolerated("key-order"));
        assert_eq!(verdict("KEYS *", &ab, &a), Verdict::Differ);
        let scan = |cursor: &str, keys: &Value| Value::Array(vec![bulk(cursor), keys.clone()]);
        assert_eq!(
            verdict("SCAN 0", &scan("0", &ab), &scan("0", &ba)),
            Verdict::Tolerated("scan-cursor-and-order")
        );
        assert_eq!(
            verdict("SCAN 0", &scan("0", &ab), &scan("0", &a)),
            Verdict::Differ
        );
        assert_eq!(
            verdict("SCAN 0", &scan("0", &ab), &error("ERR x")),
            Verdict::Differ
        );
    }

    #[test]
    fn hello_ignores_only_server_version_and_id() {
        let hello = |server: &str, version: &str, id: i64, mode: &str| {
            Value::Map(vec![
                (bulk("server"), bulk(server)),
                (bulk("version"), bulk(version)),
                (bulk("proto"), int(3)),
                (bulk("id"), int(id)),
                (bulk("mode"), bulk(mode)),
            ])
        };
        let redis = hello("redis", "7.0.15", 7, "standalone");
        assert_eq!(
            verdict("HELLO 3", &redis, &hello("flin", "7.2.0", 1, "standalone")),
            Verdict::Tolerated("hello-server-version-id")
        );
        assert_eq!(
            verdict("HELLO 3", &redis, &hello("flin", "7.2.0", 1, "cluster")),
            Verdict::Differ
        );
        let flat = Value::Array(vec![bulk("server"), bulk("flin")]);
        assert_eq!(verdict("HELLO 3", &redis, &flat), Verdict::Differ);
    }

    #[test]
    fn incrbyfloat_tolerates_last_digit_rounding_only() {
        assert_eq!(
            verdict(
                "INCRBYFLOAT k 0.2",
                &bulk("0.3"),
                &bulk("0.30000000000000004")
            ),
            Verdict::Tolerated("incrbyfloat-f64")
        );
        assert_eq!(
            verdict("INCRBYFLOAT k 1", &bulk("3"), &bulk("3.001")),
            Verdict::Differ
        );
        assert_eq!(
            verdict(
                "INCRBYFLOAT k x",
                &bulk("3"),
                &error("ERR value is not a valid float")
            ),
            Verdict::Differ
        );
    }

    #[test]
    fn protocol_error_offsets_and_server_details() {
        let redis = error("ERR Protocol error: unbalanced quotes in request");
        let flin = error("ERR Protocol error: unbalanced quotes in request at byte 12");
        assert_eq!(
            compare(Context::default(), &redis, &flin),
            Verdict::Tolerated("protocol-error-offset")
        );
        let other = error("ERR Protocol error: invalid bulk length at byte 12");
        assert_eq!(compare(Context::default(), &redis, &other), Verdict::Differ);
        assert_eq!(
            verdict(
                "CLIENT LIST",
                &bulk("id=3 addr=..."),
                &bulk("id=1 addr=...")
            ),
            Verdict::Tolerated("server-details")
        );
        assert_eq!(
            verdict("CLIENT LIST", &bulk("id=3"), &error("ERR x")),
            Verdict::Differ
        );
        assert_eq!(
            verdict(
                "CLIENT SETINFO lib-name x",
                &error("ERR unknown subcommand 'setinfo'. Try CLIENT HELP."),
                &Value::Simple(b"OK".to_vec())
            ),
            Verdict::Tolerated("client-setinfo-is-7.2")
        );
        assert_eq!(
            verdict(
                "CLIENT SETINFO lib-name x",
                &error("ERR syntax error"),
                &error("ERR y")
            ),
            Verdict::Differ
        );
    }

    #[test]
    fn redis_7_0_wording_is_accepted_only_against_7_2_wording() {
        let (old, new) = REDIS_7_0_WORDING[0];
        assert!(old.contains(" HELLO AUTH <user>") && new.contains(" HELLO <proto> AUTH <user>"));
        assert_eq!(
            verdict("HELLO", &error(old), &error(new)),
            Verdict::Tolerated("redis-7.0-wording")
        );
        assert_eq!(verdict("HELLO", &error(new), &error(old)), Verdict::Differ);
    }

    #[test]
    fn config_get_needs_flin_params_to_be_redis_params() {
        let redis = Value::Array(vec![
            bulk("maxmemory"),
            bulk("0"),
            bulk("maxclients"),
            bulk("10000"),
        ]);
        let flin = Value::Array(vec![bulk("maxclients"), bulk("1")]);
        assert_eq!(
            verdict("CONFIG GET max*", &redis, &flin),
            Verdict::Tolerated("config-values")
        );
        let unknown = Value::Array(vec![bulk("flin-only"), bulk("1")]);
        assert_eq!(verdict("CONFIG GET *", &redis, &unknown), Verdict::Differ);
    }

    #[test]
    fn known_divergences_are_recognised_precisely() {
        let huge = bulk(&format!("2{}", "0".repeat(308)));
        assert_eq!(
            verdict(
                "INCRBYFLOAT k 1e308",
                &huge,
                &error("ERR increment would produce NaN or Infinity")
            ),
            Verdict::Known("incrbyfloat-long-double-range")
        );
        assert_eq!(
            verdict(
                "INCRBYFLOAT k 1e-5000",
                &error("ERR value is not a valid float"),
                &bulk("1")
            ),
            Verdict::Known("incrbyfloat-long-double-range")
        );
        assert_eq!(
            verdict(
                "INCRBYFLOAT k 0",
                &error("ERR value is not a valid float"),
                &bulk("1")
            ),
            Verdict::Differ
        );
        let infinite = error("ERR increment would produce NaN or Infinity");
        let unreadable = error("ERR value is not a valid float");
        assert_eq!(
            verdict("INCRBYFLOAT k -inf", &infinite, &unreadable),
            Verdict::Known("incrbyfloat-long-double-range")
        );
        assert_eq!(
            verdict("INCRBYFLOAT k x", &infinite, &unreadable),
            Verdict::Differ
        );
        assert_eq!(
            verdict(
                "INCRBYFLOAT k 1e-300",
                &bulk("0"),
                &bulk(&format!("0.{}1", "0".repeat(299)))
            ),
            Verdict::Tolerated("incrbyfloat-f64")
        );
        let mut raw = b"ERR unknown command 'x".to_vec();
        raw.extend_from_slice(b"\xff'");
        let lossy = Value::Error(String::from_utf8_lossy(&raw).into_owned().into_bytes());
        let raw = Value::Error(raw);
        assert_eq!(
            verdict("x", &raw, &lossy),
            Verdict::Known("error-text-invalid-utf8")
        );
        assert_eq!(
            verdict("x", &raw, &error("ERR unknown command 'x'")),
            Verdict::Differ
        );
    }

    #[test]
    fn object_and_copy_divergences_are_recognised_precisely() {
        let encoding =
            |redis: &str, flin: &str| verdict("OBJECT ENCODING k", &bulk(redis), &bulk(flin));
        assert_eq!(
            encoding("raw", "embstr"),
            Verdict::Known("object-encoding-by-value")
        );
        assert_eq!(
            encoding("raw", "int"),
            Verdict::Known("object-encoding-by-value")
        );
        assert_eq!(
            encoding("embstr", "int"),
            Verdict::Known("object-encoding-by-value")
        );
        assert_eq!(encoding("int", "embstr"), Verdict::Differ);
        assert_eq!(encoding("embstr", "raw"), Verdict::Differ);
        assert_eq!(
            verdict("OBJECT REFCOUNT k", &int(1), &int(2147483647)),
            Verdict::Known("object-encoding-by-value")
        );
        assert_eq!(
            verdict("OBJECT REFCOUNT k", &int(2147483647), &int(1)),
            Verdict::Differ
        );
        let idle =
            error("ERR Flin does not record when a key was last accessed, idle time not tracked.");
        assert_eq!(
            verdict("OBJECT IDLETIME k", &int(3), &idle),
            Verdict::Known("object-idletime-not-tracked")
        );
        assert_eq!(
            verdict("OBJECT IDLETIME k", &Value::NullBulk, &idle),
            Verdict::Differ
        );
        assert_eq!(verdict("OBJECT FREQ k", &int(3), &idle), Verdict::Differ);
        let out_of_range = error("ERR DB index is out of range");
        assert_eq!(
            verdict("COPY a b DB 1", &int(1), &out_of_range),
            Verdict::Known("single-database")
        );
        assert_eq!(
            verdict("COPY a b DB 16", &int(1), &out_of_range),
            Verdict::Differ
        );
        assert_eq!(
            verdict("COPY a b REPLACE", &int(1), &out_of_range),
            Verdict::Differ
        );
        // Reply-only divergences do not speak for a whole EXEC when another one may not be.
        assert_eq!(
            Verdict::Known("object-encoding-by-value").and(Verdict::Known("single-database")),
            Verdict::Known("single-database")
        );
        let mut carry = Carry::default();
        let object = args("OBJECT IDLETIME k");
        carry.follow(
            &object,
            &int(1),
            &idle,
            Verdict::Known("object-idletime-not-tracked"),
        );
        let get = args("GET k");
        assert_eq!(
            carry.follow(&get, &bulk("a"), &bulk("b"), Verdict::Differ),
            Verdict::Differ,
            "a reply-only divergence does not excuse what follows"
        );
    }

    #[test]
    fn keys_written_from_a_rounded_float_are_forgotten_too() {
        let queued = vec![
            args("INCRBYFLOAT k 1.5"),
            args("BITOP AND d k x"),
            args("COPY d e"),
            args("GET other"),
        ];
        let rounded = rounded_in_exec(&queued);
        for key in ["k", "d", "x", "e"] {
            assert!(rounded.contains(&key.as_bytes().to_vec()), "{key}");
        }
        assert!(!rounded.contains(&b"other".to_vec()));
        let mut carry = Carry::default();
        let float = args("INCRBYFLOAT k 0.2");
        carry.follow(
            &float,
            &bulk("0.3"),
            &bulk("0.30000000000000004"),
            Verdict::Tolerated("incrbyfloat-f64"),
        );
        carry.follow(&args("COPY k c"), &int(1), &int(1), Verdict::Same);
        assert!(carry.rounded_keys().contains(&b"c".to_vec()));
    }

    #[test]
    fn scans_from_foreign_cursors_compare_shapes() {
        let page = |keys: Vec<Value>| Value::Array(vec![bulk("0"), Value::Array(keys)]);
        assert_eq!(
            verdict("SCAN -1", &page(vec![bulk("a")]), &page(vec![])),
            Verdict::Tolerated("scan-foreign-cursor")
        );
        assert_eq!(
            verdict("SCAN 0", &page(vec![bulk("a")]), &page(vec![])),
            Verdict::Differ
        );
        assert_eq!(
            verdict("SCAN 00", &page(vec![bulk("a")]), &page(vec![])),
            Verdict::Differ
        );
        assert_eq!(
            verdict("SCAN 5", &page(vec![]), &error("ERR invalid cursor")),
            Verdict::Differ
        );
    }

    #[test]
    fn exec_elements_use_their_own_commands() {
        let queued = vec![args("SET k v"), args("TTL k"), args("KEYS *")];
        let context = Context {
            args: Some(&queued[0][..0]),
            queued: Some(&queued),
            in_exec: false,
        };
        let exec_args = args("EXEC");
        let context = Context {
            args: Some(&exec_args),
            ..context
        };
        let ok = Value::Simple(b"OK".to_vec());
        let redis = Value::Array(vec![ok.clone(), int(100), Value::Array(vec![bulk("k")])]);
        let flin = Value::Array(vec![ok.clone(), int(99), Value::Array(vec![])]);
        assert!(matches!(
            compare(context, &redis, &flin),
            Verdict::Tolerated(_)
        ));
        let wrong = Value::Array(vec![Value::NullBulk, int(100), Value::Array(vec![])]);
        assert_eq!(compare(context, &redis, &wrong), Verdict::Differ);
        assert_eq!(compare(context, &redis, &Value::NullArray), Verdict::Differ);
    }
}
