//! The key-value model: writers that run SET (plain, EX, PX), MSET, INCR/INCRBY, DEL,
//! EXPIRE/PEXPIRE, MULTI/EXEC and GET on keys of their own, and the check after a restart.
//!
//! Each writer owns its keys (`kv:w<writer>:k<i>` for values, `kv:w<writer>:c<i>` for
//! counters), so what it should find depends on its own operations alone. A connection's
//! commands are applied in order, so after a crash the writer's keys must show the state after
//! some prefix of its operations: at least every acknowledged one under `--fsync always`
//! (in-flight ones may or may not have been applied, but only in order and each whole), any
//! prefix under `everysec` and `no` (what was lost is a recent suffix). The check finds the
//! prefixes that explain every key at once; none means a broken promise, and the message says
//! which key broke it and how (lost acknowledged write, deleted or expired key back, torn
//! value, half a batch, counter off).
//!
//! Values check themselves: `<key>#<op>#<filler>#<fnv64 of the rest, hex>`, so a torn, mixed
//! or misplaced value is caught by its own bytes. Every value is different (the op number is
//! unique per writer), so a value names the operation that wrote it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::client::{encode, Client, Reply};
use super::model::{CycleFacts, Fsync, Model, Tally, Violation, Writer};
use super::now_ms;
use super::rng::Rng;

const MODEL: &str = "kv";
/// How long a reply may take before the writer reports the server as stuck.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// A TTL that never passes during a run.
const LONG_TTL_SECONDS: u64 = 3600;
/// Short TTLs, so expiries pass during the run and across restarts.
const SHORT_TTL_MS_MIN: u64 = 20;
const SHORT_TTL_MS_MAX: u64 = 400;
/// Both clocks are read in whole milliseconds; this covers the rounding.
const EXPIRY_MARGIN_MS: u64 = 2;
/// `latest_ms` of an expiry whose command has not been answered yet.
const UNKNOWN_MS: u64 = u64::MAX;
/// Keys SCAN returns per call while the check looks for keys nobody wrote.
const SCAN_COUNT: &str = "1000";

/// How much load the model puts on the server.
#[derive(Clone, Copy, Debug)]
pub struct KvSettings {
    pub writers: usize,
    pub value_keys: usize,
    pub counter_keys: usize,
    /// Each writer pipelines 1..=this many operations (drawn per cycle).
    pub pipeline_max: usize,
    /// Largest value filler; a few values this large cross segment boundaries.
    pub value_bytes_max: usize,
}

/// When a value expires, as far as the writer can know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    Never,
    /// Far beyond the run.
    Long,
    /// Expired for sure from `latest_ms` on, alive for sure before `earliest_ms`.
    Short {
        earliest_ms: u64,
        latest_ms: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ValueState {
    Absent,
    /// The value written by operation `op`, `len` bytes long.
    Present {
        op: u64,
        len: usize,
        expiry: Expiry,
    },
}

impl ValueState {
    /// `Absent` if the value has expired for sure by `now`.
    fn live_at(self, now: u64) -> ValueState {
        match self {
            ValueState::Present {
                expiry: Expiry::Short { latest_ms, .. },
                ..
            } if now >= latest_ms => ValueState::Absent,
            other => other,
        }
    }

    /// A value whose expiry may or may not have passed: its replies are ambiguous until it
    /// has expired for sure, so the writer leaves it alone (reads only) until then.
    fn unsettled_at(self, now: u64) -> bool {
        matches!(self, ValueState::Present { expiry: Expiry::Short { latest_ms, .. }, .. } if now < latest_ms)
    }
}

/// What one operation does to the writer's keys, in order.
#[derive(Clone, Debug)]
enum Effect {
    Value(usize, ValueState),
    Counter(usize, i64),
}

/// The reply an operation must get.
#[derive(Clone, Debug)]
enum Expected {
    Ok,
    Queued,
    Integer(i64),
    /// A GET of value key `key`, whose state was `state` when the GET was sent.
    Value {
        key: usize,
        state: ValueState,
    },
    Exec(Vec<Expected>),
}

#[derive(Clone, Debug)]
struct Operation {
    number: u64,
    /// For messages: the command and what it touched.
    label: String,
    effects: Vec<Effect>,
    replies: Vec<Expected>,
    sent_ms: u64,
    acknowledged_ms: Option<u64>,
}

#[derive(Clone, Debug)]
struct State {
    values: Vec<ValueState>,
    counters: Vec<i64>,
}

impl State {
    fn apply(&mut self, effect: &Effect) {
        match *effect {
            Effect::Value(key, state) => self.values[key] = state,
            Effect::Counter(key, delta) => self.counters[key] += delta,
        }
    }
}

/// What a value key holds after the restart.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Absent,
    Present {
        op: u64,
        len: usize,
        /// `None` when only GET was read (during the run).
        ttl: Option<SeenTtl>,
    },
    Corrupt(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SeenTtl {
    Never,
    /// Milliseconds left: a long TTL reads above `LONG_TTL_SECONDS / 2` seconds, a short one at
    /// most `SHORT_TTL_MS_MAX`, so the two cannot be mistaken for each other.
    Positive(i64),
    /// Expired between the GET and the PTTL.
    Gone,
}

/// Whether a key in `state` may read as `seen` at a time between `t0` and `t1`.
fn matches(state: ValueState, seen: &Seen, t0: u64, t1: u64) -> bool {
    match (state, seen) {
        (ValueState::Absent, Seen::Absent) => true,
        (
            ValueState::Present {
                expiry: Expiry::Short { earliest_ms, .. },
                ..
            },
            Seen::Absent,
        ) => t1 >= earliest_ms,
        (
            ValueState::Present { op, len, expiry },
            Seen::Present {
                op: seen_op,
                len: seen_len,
                ttl,
            },
        ) => {
            let ttl_fits = match (expiry, ttl) {
                (_, None) => true,
                (Expiry::Never, Some(ttl)) => *ttl == SeenTtl::Never,
                (Expiry::Long, Some(SeenTtl::Positive(ms))) => {
                    *ms > (LONG_TTL_SECONDS * 1000 / 2) as i64
                }
                (Expiry::Short { latest_ms, .. }, Some(SeenTtl::Positive(ms))) => {
                    *ms <= SHORT_TTL_MS_MAX as i64 && t0 < latest_ms
                }
                (Expiry::Short { latest_ms, .. }, Some(SeenTtl::Gone)) => t0 < latest_ms,
                (_, Some(_)) => false,
            };
            let alive = match expiry {
                Expiry::Short { latest_ms, .. } => t0 < latest_ms,
                _ => true,
            };
            op == *seen_op && len == *seen_len && ttl_fits && alive
        }
        _ => false,
    }
}

fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The value operation `op` writes under `key`, with `filler` bytes of padding.
fn make_value(key: &[u8], op: u64, filler: usize) -> Vec<u8> {
    let mut value = Vec::with_capacity(key.len() + filler + 48);
    value.extend_from_slice(key);
    value.extend_from_slice(format!("#{op}#").as_bytes());
    let mut x = crate::mix(op ^ fnv64(key));
    for i in 0..filler {
        if i % 8 == 0 {
            x = crate::mix(x);
        }
        value.push(b'a' + ((x >> ((i % 8) * 8)) as u8 % 26));
    }
    value.push(b'#');
    let checksum = fnv64(&value);
    value.extend_from_slice(format!("{checksum:016x}").as_bytes());
    value
}

/// The op number a value under `key` names, if its bytes check out.
fn parse_value(key: &[u8], value: &[u8]) -> Result<u64, String> {
    let shown = || String::from_utf8_lossy(&value[..value.len().min(80)]).into_owned();
    let Some(body_len) = value.len().checked_sub(16) else {
        return Err(format!(
            "{} bytes, too short for a checksum: {:?}",
            value.len(),
            shown()
        ));
    };
    let stored = std::str::from_utf8(&value[body_len..])
        .ok()
        .and_then(|hex| u64::from_str_radix(hex, 16).ok());
    if stored != Some(fnv64(&value[..body_len])) {
        return Err(format!(
            "checksum mismatch over {} bytes (torn or corrupt value): {:?}",
            value.len(),
            shown()
        ));
    }
    let rest = value
        .strip_prefix(key)
        .and_then(|rest| rest.strip_prefix(b"#"))
        .ok_or_else(|| format!("a whole value of another key: {:?}", shown()))?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no op number: {:?}", shown()))
}

fn observe_value(key: &[u8], reply: &Reply, ttl: Option<&Reply>) -> Seen {
    let value = match reply {
        Reply::Bulk(None) => return Seen::Absent,
        Reply::Bulk(Some(value)) => value,
        other => return Seen::Corrupt(format!("GET replied {other:?}")),
    };
    let op = match parse_value(key, value) {
        Ok(op) => op,
        Err(why) => return Seen::Corrupt(why),
    };
    let ttl = match ttl {
        None => None,
        Some(Reply::Integer(-1)) => Some(SeenTtl::Never),
        Some(Reply::Integer(-2)) => Some(SeenTtl::Gone),
        Some(Reply::Integer(n)) if *n > 0 => Some(SeenTtl::Positive(*n)),
        Some(other) => return Seen::Corrupt(format!("PTTL replied {other:?}")),
    };
    Seen::Present {
        op,
        len: value.len(),
        ttl,
    }
}

fn observe_counter(reply: &Reply) -> Result<i64, String> {
    match reply {
        Reply::Bulk(None) => Ok(0),
        Reply::Bulk(Some(value)) => std::str::from_utf8(value)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| format!("not an integer: {:?}", String::from_utf8_lossy(value))),
        other => Err(format!("GET replied {other:?}")),
    }
}

fn describe(state: ValueState) -> String {
    match state {
        ValueState::Absent => "no value".into(),
        ValueState::Present { op, len, expiry } => {
            let expiry = match expiry {
                Expiry::Never => String::new(),
                Expiry::Long => ", long TTL".into(),
                Expiry::Short {
                    earliest_ms,
                    latest_ms,
                } => format!(", expiring between {earliest_ms} and {latest_ms} ms"),
            };
            format!("op {op}'s value ({len} bytes{expiry})")
        }
    }
}

fn describe_seen(seen: &Seen) -> String {
    match seen {
        Seen::Absent => "no value".into(),
        Seen::Present { op, len, ttl } => format!("op {op}'s value ({len} bytes, ttl {ttl:?})"),
        Seen::Corrupt(why) => format!("a corrupt value: {why}"),
    }
}

/// One connection's operations on its own keys.
pub struct KvWriter {
    index: usize,
    settings: KvSettings,
    value_names: Vec<Vec<u8>>,
    counter_names: Vec<Vec<u8>>,
    /// Verified after the last restart: what the keys held when this cycle began.
    base: State,
    /// `base` plus every operation sent this cycle: what the next operation is decided on.
    current: State,
    /// This cycle's operations, in the order they were sent.
    operations: Vec<Operation>,
    /// `operations[..acknowledged]` were answered.
    acknowledged: usize,
    /// Operation numbers go on across cycles, so every value ever written is different.
    next_number: u64,
}

/// What kind of operation to send next; weights below.
#[derive(Clone, Copy)]
enum Kind {
    Set,
    SetLongTtl,
    SetShortTtl,
    MSet,
    Incr,
    Del,
    ExpireLong,
    ExpireShort,
    Multi,
    Get,
}

const KINDS: [(Kind, u64); 10] = [
    (Kind::Set, 25),
    (Kind::SetLongTtl, 4),
    (Kind::SetShortTtl, 4),
    (Kind::MSet, 12),
    (Kind::Incr, 20),
    (Kind::Del, 10),
    (Kind::ExpireLong, 4),
    (Kind::ExpireShort, 4),
    (Kind::Multi, 10),
    (Kind::Get, 7),
];

/// An operation being put together.
struct Draft {
    label: String,
    request: Vec<u8>,
    effects: Vec<Effect>,
    replies: Vec<Expected>,
}

impl KvWriter {
    fn new(index: usize, settings: KvSettings) -> KvWriter {
        let names = |kind: char, count: usize| -> Vec<Vec<u8>> {
            (0..count)
                .map(|i| format!("kv:w{index}:{kind}{i}").into_bytes())
                .collect()
        };
        let base = State {
            values: vec![ValueState::Absent; settings.value_keys],
            counters: vec![0; settings.counter_keys],
        };
        KvWriter {
            index,
            settings,
            value_names: names('k', settings.value_keys),
            counter_names: names('c', settings.counter_keys),
            current: base.clone(),
            base,
            operations: Vec::new(),
            acknowledged: 0,
            next_number: 1,
        }
    }

    fn violation(&self, what: String) -> Violation {
        Violation {
            model: MODEL,
            writer: Some(self.index),
            what,
        }
    }

    /// A value key whose replies are predictable now, if one turns up in a few tries.
    fn settled_key(&self, rng: &mut Rng, now: u64) -> Option<usize> {
        (0..8)
            .map(|_| rng.below(self.settings.value_keys as u64) as usize)
            .find(|&key| !self.current.values[key].unsettled_at(now))
    }

    fn filler_len(&self, rng: &mut Rng) -> usize {
        let max = self.settings.value_bytes_max as u64;
        match rng.below(100) {
            0..=69 => rng.below(64.min(max) + 1) as usize,
            70..=96 => rng.below(2048.min(max) + 1) as usize,
            _ => rng.below(max + 1) as usize,
        }
    }

    /// Adds `SET key value [EX|PX ttl]` to `draft` as part of operation `number`.
    fn draft_set(
        &mut self,
        draft: &mut Draft,
        key: usize,
        number: u64,
        ttl: Kind,
        rng: &mut Rng,
        now: u64,
    ) {
        let value = make_value(&self.value_names[key], number, self.filler_len(rng));
        let mut args: Vec<Vec<u8>> = vec![
            b"SET".to_vec(),
            self.value_names[key].clone(),
            value.clone(),
        ];
        let expiry = match ttl {
            Kind::SetLongTtl => {
                args.extend([b"EX".to_vec(), LONG_TTL_SECONDS.to_string().into_bytes()]);
                Expiry::Long
            }
            Kind::SetShortTtl => {
                let ttl_ms = rng.between(SHORT_TTL_MS_MIN, SHORT_TTL_MS_MAX);
                args.extend([b"PX".to_vec(), ttl_ms.to_string().into_bytes()]);
                Expiry::Short {
                    earliest_ms: now + ttl_ms,
                    latest_ms: UNKNOWN_MS,
                }
            }
            _ => Expiry::Never,
        };
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        encode(&mut draft.request, &refs);
        let state = ValueState::Present {
            op: number,
            len: value.len(),
            expiry,
        };
        self.current.values[key] = state;
        draft.effects.push(Effect::Value(key, state));
        draft.replies.push(Expected::Ok);
    }

    fn draft_incr(&mut self, draft: &mut Draft, rng: &mut Rng) {
        let key = rng.below(self.settings.counter_keys as u64) as usize;
        let name = &self.counter_names[key];
        let delta = if rng.percent(50) {
            encode(&mut draft.request, &[b"INCR", name]);
            1
        } else {
            let delta = rng.between(1, 1000) as i64;
            encode(
                &mut draft.request,
                &[b"INCRBY", name, delta.to_string().as_bytes()],
            );
            delta
        };
        self.current.counters[key] += delta;
        draft.effects.push(Effect::Counter(key, delta));
        draft
            .replies
            .push(Expected::Integer(self.current.counters[key]));
    }

    fn draft_del(&mut self, draft: &mut Draft, keys: &[usize], now: u64) {
        let mut args: Vec<&[u8]> = vec![b"DEL"];
        let mut deleted = 0;
        for &key in keys {
            args.push(&self.value_names[key]);
            if self.current.values[key].live_at(now) != ValueState::Absent {
                deleted += 1;
            }
            self.current.values[key] = ValueState::Absent;
            draft.effects.push(Effect::Value(key, ValueState::Absent));
        }
        encode(&mut draft.request, &args);
        draft.replies.push(Expected::Integer(deleted));
    }

    /// Decides the next operation, records it as sent, and returns its bytes.
    fn next_operation(&mut self, rng: &mut Rng) -> Vec<u8> {
        let now = now_ms();
        let number = self.next_number;
        self.next_number += 1;
        let mut draft = Draft {
            label: String::new(),
            request: Vec::new(),
            effects: Vec::new(),
            replies: Vec::new(),
        };
        let weights: Vec<u64> = KINDS.iter().map(|(_, w)| *w).collect();
        let kind = KINDS[rng.weighted(&weights)].0;
        let settled = self.settled_key(rng, now);
        match (kind, settled) {
            (Kind::Set | Kind::SetLongTtl | Kind::SetShortTtl, Some(key)) => {
                self.draft_set(&mut draft, key, number, kind, rng, now);
                draft.label = format!(
                    "SET k{key}{}",
                    match kind {
                        Kind::SetLongTtl => " EX",
                        Kind::SetShortTtl => " PX",
                        _ => "",
                    }
                );
            }
            (Kind::MSet, Some(first)) => {
                let mut keys = vec![first];
                keys.extend((0..rng.between(1, 5)).filter_map(|_| self.settled_key(rng, now)));
                let mut args: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
                for &key in &keys {
                    let value = make_value(&self.value_names[key], number, self.filler_len(rng));
                    let state = ValueState::Present {
                        op: number,
                        len: value.len(),
                        expiry: Expiry::Never,
                    };
                    self.current.values[key] = state;
                    draft.effects.push(Effect::Value(key, state));
                    args.extend([self.value_names[key].clone(), value]);
                }
                let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                encode(&mut draft.request, &refs);
                draft.replies.push(Expected::Ok);
                draft.label = format!("MSET {keys:?}");
            }
            (Kind::Incr, _) => {
                self.draft_incr(&mut draft, rng);
                draft.label = format!("{:?}", draft.effects[0]);
            }
            (Kind::Del, Some(first)) => {
                let mut keys = vec![first];
                keys.extend((0..rng.below(3)).filter_map(|_| self.settled_key(rng, now)));
                self.draft_del(&mut draft, &keys, now);
                draft.label = format!("DEL {keys:?}");
            }
            (Kind::ExpireLong | Kind::ExpireShort, Some(key)) => {
                let name = self.value_names[key].clone();
                let (args, expiry) = if matches!(kind, Kind::ExpireLong) {
                    (
                        vec![
                            b"EXPIRE".to_vec(),
                            name,
                            LONG_TTL_SECONDS.to_string().into_bytes(),
                        ],
                        Expiry::Long,
                    )
                } else {
                    let ttl_ms = rng.between(SHORT_TTL_MS_MIN, SHORT_TTL_MS_MAX);
                    (
                        vec![b"PEXPIRE".to_vec(), name, ttl_ms.to_string().into_bytes()],
                        Expiry::Short {
                            earliest_ms: now + ttl_ms,
                            latest_ms: UNKNOWN_MS,
                        },
                    )
                };
                let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                encode(&mut draft.request, &refs);
                match self.current.values[key].live_at(now) {
                    ValueState::Absent => draft.replies.push(Expected::Integer(0)),
                    ValueState::Present { op, len, .. } => {
                        let state = ValueState::Present { op, len, expiry };
                        self.current.values[key] = state;
                        draft.effects.push(Effect::Value(key, state));
                        draft.replies.push(Expected::Integer(1));
                    }
                }
                draft.label = format!("{} k{key}", String::from_utf8_lossy(&args[0]));
            }
            (Kind::Multi, Some(_)) => {
                encode(&mut draft.request, &[b"MULTI"]);
                let mut inner = Draft {
                    label: String::new(),
                    request: Vec::new(),
                    effects: Vec::new(),
                    replies: Vec::new(),
                };
                let commands = rng.between(2, 5);
                for _ in 0..commands {
                    match (rng.below(3), self.settled_key(rng, now)) {
                        (0, Some(key)) => {
                            self.draft_set(&mut inner, key, number, Kind::Set, rng, now)
                        }
                        (1, Some(key)) => self.draft_del(&mut inner, &[key], now),
                        _ => self.draft_incr(&mut inner, rng),
                    }
                }
                draft.request.extend_from_slice(&inner.request);
                encode(&mut draft.request, &[b"EXEC"]);
                draft.replies.push(Expected::Ok);
                draft
                    .replies
                    .extend(inner.replies.iter().map(|_| Expected::Queued));
                draft.replies.push(Expected::Exec(inner.replies));
                draft.effects = inner.effects;
                draft.label = format!("MULTI/EXEC {:?}", draft.effects);
            }
            // GET, or no key whose replies are predictable right now.
            _ => {
                let key = rng.below(self.settings.value_keys as u64) as usize;
                encode(&mut draft.request, &[b"GET", &self.value_names[key]]);
                draft.replies.push(Expected::Value {
                    key,
                    state: self.current.values[key],
                });
                draft.label = format!("GET k{key}");
            }
        }
        self.operations.push(Operation {
            number,
            label: draft.label,
            effects: draft.effects,
            replies: draft.replies,
            sent_ms: now,
            acknowledged_ms: None,
        });
        draft.request
    }

    fn check_reply(
        &self,
        expected: &Expected,
        reply: &Reply,
        sent_ms: u64,
        now: u64,
    ) -> Result<(), String> {
        let fits = match (expected, reply) {
            (Expected::Ok, Reply::Simple(text)) => text == "OK",
            (Expected::Queued, Reply::Simple(text)) => text == "QUEUED",
            (Expected::Integer(n), Reply::Integer(got)) => n == got,
            (Expected::Value { key, state }, reply) => {
                let seen = observe_value(&self.value_names[*key], reply, None);
                if !matches(*state, &seen, sent_ms, now) {
                    return Err(format!(
                        "GET {} read {} but the writer's own operations left {}",
                        String::from_utf8_lossy(&self.value_names[*key]),
                        describe_seen(&seen),
                        describe(*state)
                    ));
                }
                true
            }
            (Expected::Exec(inner), Reply::Array(Some(items))) if inner.len() == items.len() => {
                for (expected, item) in inner.iter().zip(items) {
                    self.check_reply(expected, item, sent_ms, now)?;
                }
                true
            }
            _ => false,
        };
        if fits {
            Ok(())
        } else {
            Err(format!("expected {expected:?}, got {reply:?}"))
        }
    }

    /// Marks the oldest unanswered operation answered at `now`; a short expiry it set now has a
    /// known latest end.
    fn acknowledge(&mut self, now: u64) {
        let operation = &mut self.operations[self.acknowledged];
        operation.acknowledged_ms = Some(now);
        let sent_ms = operation.sent_ms;
        for effect in &mut operation.effects {
            let Effect::Value(key, state) = effect else {
                continue;
            };
            let before = *state;
            if let ValueState::Present {
                expiry:
                    Expiry::Short {
                        earliest_ms,
                        latest_ms,
                    },
                ..
            } = state
            {
                if *latest_ms == UNKNOWN_MS {
                    // The server read its clock between the send and the reply.
                    *latest_ms = *earliest_ms - sent_ms + now + EXPIRY_MARGIN_MS;
                }
            }
            if self.current.values[*key] == before {
                self.current.values[*key] = *state;
            }
        }
        self.acknowledged += 1;
    }

    /// The writer's keys after the first `prefix` operations of this cycle.
    fn state_after(&self, prefix: usize) -> State {
        let mut state = self.base.clone();
        for operation in &self.operations[..prefix] {
            operation.effects.iter().for_each(|e| state.apply(e));
        }
        state
    }

    /// Finds the prefixes of this cycle's operations that explain what was read back.
    fn check(
        &mut self,
        values: &[Seen],
        counters: &[Result<i64, String>],
        (t0, t1): (u64, u64),
        facts: &CycleFacts,
    ) -> Result<Tally, Vec<Violation>> {
        // An operation still in flight at the kill ran, if at all, before it.
        for operation in &mut self.operations[self.acknowledged..] {
            for effect in &mut operation.effects {
                if let Effect::Value(
                    _,
                    ValueState::Present {
                        expiry:
                            Expiry::Short {
                                earliest_ms,
                                latest_ms,
                            },
                        ..
                    },
                ) = effect
                {
                    *latest_ms =
                        *earliest_ms - operation.sent_ms + facts.kill_ms + EXPIRY_MARGIN_MS;
                }
            }
        }
        let mut violations = Vec::new();
        for (key, seen) in values.iter().enumerate() {
            if let Seen::Corrupt(why) = seen {
                violations.push(self.violation(format!(
                    "{}: {why}",
                    String::from_utf8_lossy(&self.value_names[key])
                )));
            }
        }
        for (key, seen) in counters.iter().enumerate() {
            if let Err(why) = seen {
                violations.push(self.violation(format!(
                    "{}: {why}",
                    String::from_utf8_lossy(&self.counter_names[key])
                )));
            }
        }
        if !violations.is_empty() {
            return Err(violations);
        }
        let counters: Vec<i64> = counters
            .iter()
            .map(|c| *c.as_ref().expect("checked"))
            .collect();
        let total = self.operations.len();
        let lowest = match facts.fsync {
            Fsync::Always => self.acknowledged,
            Fsync::EverySec | Fsync::No => 0,
        };
        // Walk the prefixes, keeping count of the keys the current one fails to explain.
        let mut state = self.base.clone();
        let value_fits =
            |state: &State, key: usize| matches(state.values[key], &values[key], t0, t1);
        let mut value_ok: Vec<bool> = (0..values.len()).map(|k| value_fits(&state, k)).collect();
        let mut counter_ok: Vec<bool> = (0..counters.len())
            .map(|k| state.counters[k] == counters[k])
            .collect();
        let mut misfits = value_ok
            .iter()
            .chain(&counter_ok)
            .filter(|ok| !**ok)
            .count();
        let mut explained = None;
        let mut closest = (usize::MAX, lowest);
        for prefix in 0..=total {
            if prefix > 0 {
                for effect in &self.operations[prefix - 1].effects {
                    state.apply(effect);
                    let (was, now) = match *effect {
                        Effect::Value(key, _) => {
                            let now = value_fits(&state, key);
                            (std::mem::replace(&mut value_ok[key], now), now)
                        }
                        Effect::Counter(key, _) => {
                            let now = state.counters[key] == counters[key];
                            (std::mem::replace(&mut counter_ok[key], now), now)
                        }
                    };
                    misfits = misfits + was as usize - now as usize;
                }
            }
            if prefix >= lowest {
                if misfits == 0 {
                    explained = Some(prefix);
                }
                if misfits < closest.0 {
                    closest = (misfits, prefix);
                }
            }
        }
        let Some(prefix) = explained else {
            return Err(self.diagnose(values, &counters, closest.1, (t0, t1), facts));
        };
        let tally = Tally {
            acknowledged: self.acknowledged as u64,
            in_flight: (total - self.acknowledged) as u64,
            in_flight_applied: prefix.saturating_sub(self.acknowledged) as u64,
            acknowledged_lost: self.acknowledged.saturating_sub(prefix) as u64,
            keys_checked: (values.len() + counters.len()) as u64,
        };
        self.base = self.state_after(prefix);
        self.current = self.base.clone();
        self.operations.clear();
        self.acknowledged = 0;
        Ok(tally)
    }

    /// Says, key by key, why the closest prefix does not explain what was read.
    fn diagnose(
        &self,
        values: &[Seen],
        counters: &[i64],
        prefix: usize,
        (t0, t1): (u64, u64),
        facts: &CycleFacts,
    ) -> Vec<Violation> {
        let expected = self.state_after(prefix);
        let total = self.operations.len();
        let acknowledged = self.acknowledged;
        let context = format!(
            "(closest prefix: {prefix} of this cycle's {total} operations, {acknowledged} acknowledged, fsync {})",
            facts.fsync.as_str()
        );
        let history = |touches: &dyn Fn(&Effect) -> bool| -> String {
            self.operations
                .iter()
                .enumerate()
                .filter(|(_, op)| op.effects.iter().any(touches))
                .map(|(i, op)| {
                    let status = if i < acknowledged {
                        "acked"
                    } else {
                        "in flight"
                    };
                    format!("#{} {} ({status})", op.number, op.label)
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut violations = Vec::new();
        for (key, seen) in values.iter().enumerate() {
            let want = expected.values[key];
            if matches(want, seen, t0, t1) {
                continue;
            }
            let why = match (want, seen) {
                (ValueState::Absent, Seen::Present { .. }) => {
                    let deleted = self.operations[..prefix].iter().rev().find_map(|op| {
                        op.effects.iter().rev().find_map(|e| match e {
                            Effect::Value(k, s) if *k == key => Some(*s),
                            _ => None,
                        })
                    });
                    match (deleted, self.base.values[key]) {
                        (Some(ValueState::Absent), _) | (None, ValueState::Absent) => "a deleted key came back",
                        _ => "an expired key came back",
                    }
                }
                (ValueState::Present { expiry: Expiry::Short { latest_ms, .. }, .. }, Seen::Present { .. }) if t0 >= latest_ms => {
                    "an expired key came back"
                }
                (ValueState::Present { op, .. }, Seen::Present { op: seen_op, .. }) if *seen_op < op => {
                    "an acknowledged write was lost (an older value is back)"
                }
                (ValueState::Present { .. }, Seen::Absent) => "an acknowledged write was lost (the key is gone)",
                (ValueState::Present { op, .. }, Seen::Present { op: seen_op, .. }) if *seen_op == op => {
                    "the value or its TTL differs from what was written"
                }
                _ => "a value from an operation that cannot explain it (a batch split, or out of order)",
            };
            violations.push(self.violation(format!(
                "{}: {why}: expected {}, found {} {context}; this cycle's operations on it: [{}]",
                String::from_utf8_lossy(&self.value_names[key]),
                describe(want),
                describe_seen(seen),
                history(&|e| matches!(e, Effect::Value(k, _) if *k == key)),
            )));
        }
        for (key, &seen) in counters.iter().enumerate() {
            let want = expected.counters[key];
            if want == seen {
                continue;
            }
            let most = self.state_after(total).counters[key];
            let least = self.state_after(acknowledged).counters[key];
            let why = if seen < least {
                "acknowledged increments were lost"
            } else if seen > most {
                "the counter exceeds its acknowledged plus in-flight increments"
            } else {
                "the counter fits, but not with the same prefix as the other keys (a batch split?)"
            };
            violations.push(self.violation(format!(
                "{}: {why}: expected {want} ({least} acknowledged, at most {most}), found {seen} {context}; this cycle's operations on it: [{}]",
                String::from_utf8_lossy(&self.counter_names[key]),
                history(&|e| matches!(e, Effect::Counter(k, _) if *k == key)),
            )));
        }
        if violations.is_empty() {
            violations.push(self.violation(format!("no prefix explains the keys {context}")));
        }
        violations
    }
}

impl Writer for KvWriter {
    fn drive(&mut self, addr: SocketAddr, stop: &AtomicBool, mut rng: Rng) -> Vec<Violation> {
        debug_assert!(self.operations.is_empty(), "verify() clears the cycle");
        let depth = rng.between(1, self.settings.pipeline_max as u64) as usize;
        let Ok(mut client) = Client::connect(addr, REPLY_TIMEOUT) else {
            return Vec::new(); // killed before this writer got going
        };
        while !stop.load(Ordering::Relaxed) {
            while self.operations.len() - self.acknowledged < depth {
                let request = self.next_operation(&mut rng);
                if client.send(&request).is_err() {
                    return Vec::new(); // the server died; the operation stays in flight
                }
            }
            let operation = &self.operations[self.acknowledged];
            let mut replies = Vec::with_capacity(operation.replies.len());
            for _ in 0..operation.replies.len() {
                match client.read_reply() {
                    Ok(reply) => replies.push(reply),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        return vec![self.violation(format!(
                            "no reply to #{} {} within {REPLY_TIMEOUT:?}",
                            operation.number, operation.label
                        ))];
                    }
                    Err(_) => return Vec::new(), // the server died
                }
            }
            let now = now_ms();
            for (expected, reply) in operation.replies.iter().zip(&replies) {
                if let Err(why) = self.check_reply(expected, reply, operation.sent_ms, now) {
                    return vec![self.violation(format!(
                        "wrong reply to #{} {}: {why}",
                        operation.number, operation.label
                    ))];
                }
            }
            self.acknowledge(now);
        }
        Vec::new()
    }
}

/// The key-value model: its writers and the check of the whole key space.
pub struct KvModel {
    writers: Vec<KvWriter>,
}

impl KvModel {
    pub fn new(settings: KvSettings) -> KvModel {
        KvModel {
            writers: (0..settings.writers)
                .map(|i| KvWriter::new(i, settings))
                .collect(),
        }
    }

    fn violation(what: String) -> Violation {
        Violation {
            model: MODEL,
            writer: None,
            what,
        }
    }

    /// Every key in the key space must be one a writer owns: a key nobody wrote means key
    /// bytes were damaged or a record was misread.
    fn check_key_space(&self, client: &mut Client) -> Result<usize, Vec<Violation>> {
        let io = |e: std::io::Error| vec![Self::violation(format!("SCAN failed: {e}"))];
        let mut known = std::collections::HashSet::new();
        for writer in &self.writers {
            known.extend(
                writer
                    .value_names
                    .iter()
                    .chain(&writer.counter_names)
                    .cloned(),
            );
        }
        let mut cursor = b"0".to_vec();
        let mut unknown = Vec::new();
        let mut seen = 0;
        loop {
            let reply = client
                .call(&[b"SCAN", &cursor, b"COUNT", SCAN_COUNT.as_bytes()])
                .map_err(io)?;
            let Reply::Array(Some(parts)) = reply else {
                return Err(vec![Self::violation(format!("SCAN replied {reply:?}"))]);
            };
            let [Reply::Bulk(Some(next)), Reply::Array(Some(keys))] = parts.as_slice() else {
                return Err(vec![Self::violation(format!("SCAN replied {parts:?}"))]);
            };
            for key in keys {
                let Reply::Bulk(Some(key)) = key else {
                    return Err(vec![Self::violation(format!("SCAN listed {key:?}"))]);
                };
                seen += 1;
                // The document model's outbox keys are its own to check.
                if !known.contains(key) && !key.starts_with(super::doc::KEY_PREFIX) {
                    unknown.push(String::from_utf8_lossy(key).into_owned());
                }
            }
            if next.as_slice() == b"0" {
                break;
            }
            cursor = next.clone();
        }
        if unknown.is_empty() {
            Ok(seen)
        } else {
            Err(vec![Self::violation(format!(
                "{} keys that no writer wrote: {:?}",
                unknown.len(),
                &unknown[..unknown.len().min(10)]
            ))])
        }
    }
}

impl Model for KvModel {
    fn name(&self) -> &'static str {
        MODEL
    }

    fn writers(&mut self) -> Vec<&mut dyn Writer> {
        self.writers
            .iter_mut()
            .map(|w| w as &mut dyn Writer)
            .collect()
    }

    fn verify(&mut self, client: &mut Client, facts: &CycleFacts) -> Result<Tally, Vec<Violation>> {
        let io =
            |e: std::io::Error| vec![Self::violation(format!("reading keys back failed: {e}"))];
        let t0 = now_ms();
        let mut request = Vec::new();
        for writer in &self.writers {
            for name in &writer.value_names {
                encode(&mut request, &[b"GET", name]);
                encode(&mut request, &[b"PTTL", name]);
            }
            for name in &writer.counter_names {
                encode(&mut request, &[b"GET", name]);
            }
        }
        client.send(&request).map_err(io)?;
        let mut readings = Vec::with_capacity(self.writers.len());
        for writer in &self.writers {
            let mut values = Vec::with_capacity(writer.value_names.len());
            for name in &writer.value_names {
                let value = client.read_reply().map_err(io)?;
                let ttl = client.read_reply().map_err(io)?;
                values.push(observe_value(name, &value, Some(&ttl)));
            }
            let mut counters = Vec::with_capacity(writer.counter_names.len());
            for _ in &writer.counter_names {
                counters.push(observe_counter(&client.read_reply().map_err(io)?));
            }
            readings.push((values, counters));
        }
        let t1 = now_ms();
        let mut tally = Tally::default();
        let mut violations = Vec::new();
        for (writer, (values, counters)) in self.writers.iter_mut().zip(readings) {
            match writer.check(&values, &counters, (t0, t1), facts) {
                Ok(part) => tally += part,
                Err(mut found) => violations.append(&mut found),
            }
        }
        if let Err(mut found) = self.check_key_space(client) {
            violations.append(&mut found);
        }
        if violations.is_empty() {
            Ok(tally)
        } else {
            Err(violations)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_check_themselves() {
        let value = make_value(b"kv:w1:k2", 77, 300);
        assert_eq!(parse_value(b"kv:w1:k2", &value), Ok(77));
        assert!(parse_value(b"kv:w1:k3", &value)
            .unwrap_err()
            .contains("another key"));
        for cut in 0..value.len() {
            assert!(
                parse_value(b"kv:w1:k2", &value[..cut]).is_err(),
                "torn at {cut}"
            );
        }
        let mut flipped = value.clone();
        flipped[20] ^= 1;
        assert!(parse_value(b"kv:w1:k2", &flipped)
            .unwrap_err()
            .contains("checksum"));
        assert!(!value.ends_with(&[0u8; 32]));
    }

    #[test]
    fn short_expiries_match_either_way_only_inside_their_window() {
        let state = ValueState::Present {
            op: 3,
            len: 10,
            expiry: Expiry::Short {
                earliest_ms: 100,
                latest_ms: 200,
            },
        };
        let present = Seen::Present {
            op: 3,
            len: 10,
            ttl: Some(SeenTtl::Positive(100)),
        };
        assert!(matches(state, &present, 50, 60));
        assert!(!matches(state, &Seen::Absent, 50, 60));
        assert!(matches(state, &Seen::Absent, 150, 160));
        assert!(matches(state, &present, 150, 160));
        assert!(matches(state, &Seen::Absent, 250, 260));
        assert!(
            !matches(state, &present, 250, 260),
            "an expired key must not come back"
        );
        let long = Seen::Present {
            op: 3,
            len: 10,
            ttl: Some(SeenTtl::Positive(3_599_000)),
        };
        assert!(
            !matches(state, &long, 50, 60),
            "a long TTL is not a short one"
        );
        let state = ValueState::Present {
            op: 3,
            len: 10,
            expiry: Expiry::Long,
        };
        assert!(matches(state, &long, 50, 60));
        assert!(
            !matches(state, &present, 50, 60),
            "a short TTL is not a long one"
        );
    }

    fn writer_with(operations: Vec<(Vec<Effect>, bool)>) -> KvWriter {
        let settings = KvSettings {
            writers: 1,
            value_keys: 2,
            counter_keys: 1,
            pipeline_max: 1,
            value_bytes_max: 16,
        };
        let mut writer = KvWriter::new(0, settings);
        for (number, (effects, acknowledged)) in operations.into_iter().enumerate() {
            writer.operations.push(Operation {
                number: number as u64 + 1,
                label: format!("op{}", number + 1),
                effects,
                replies: Vec::new(),
                sent_ms: 0,
                acknowledged_ms: acknowledged.then_some(0),
            });
            writer.acknowledged += acknowledged as usize;
        }
        writer
    }

    fn put(key: usize, op: u64) -> Effect {
        Effect::Value(
            key,
            ValueState::Present {
                op,
                len: 5,
                expiry: Expiry::Never,
            },
        )
    }

    fn seen(op: u64) -> Seen {
        Seen::Present {
            op,
            len: 5,
            ttl: Some(SeenTtl::Never),
        }
    }

    const ALWAYS: CycleFacts = CycleFacts {
        fsync: Fsync::Always,
        kill_ms: 0,
    };
    const EVERYSEC: CycleFacts = CycleFacts {
        fsync: Fsync::EverySec,
        kill_ms: 0,
    };

    #[test]
    fn a_prefix_with_every_acknowledged_operation_passes() {
        // op1 acked: k0 = 1; op2 in flight: batch k0 = 2, k1 = 2, counter += 5.
        let ops = || {
            vec![
                (vec![put(0, 1)], true),
                (vec![put(0, 2), put(1, 2), Effect::Counter(0, 5)], false),
            ]
        };
        let tally = writer_with(ops())
            .check(&[seen(1), Seen::Absent], &[Ok(0)], (0, 0), &ALWAYS)
            .unwrap();
        assert_eq!(
            (tally.acknowledged, tally.in_flight, tally.in_flight_applied),
            (1, 1, 0)
        );
        let tally = writer_with(ops())
            .check(&[seen(2), seen(2)], &[Ok(5)], (0, 0), &ALWAYS)
            .unwrap();
        assert_eq!(tally.in_flight_applied, 1);
    }

    #[test]
    fn half_a_batch_fails() {
        let ops = vec![(vec![put(0, 1)], true), (vec![put(0, 2), put(1, 2)], false)];
        let errors = writer_with(ops)
            .check(&[seen(2), Seen::Absent], &[Ok(0)], (0, 0), &ALWAYS)
            .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn a_lost_acknowledged_write_fails_under_always_but_not_everysec() {
        let ops = || vec![(vec![put(0, 1)], true), (vec![put(0, 2)], true)];
        let errors = writer_with(ops())
            .check(&[seen(1), Seen::Absent], &[Ok(0)], (0, 0), &ALWAYS)
            .unwrap_err();
        assert!(
            errors[0].what.contains("acknowledged write was lost"),
            "{errors:?}"
        );
        let tally = writer_with(ops())
            .check(&[seen(1), Seen::Absent], &[Ok(0)], (0, 0), &EVERYSEC)
            .unwrap();
        assert_eq!(tally.acknowledged_lost, 1);
    }

    #[test]
    fn a_lost_middle_is_not_a_suffix() {
        // k0 from op 3 survived, but op 2's k1 did not: not a prefix.
        let ops = vec![
            (vec![put(0, 1)], true),
            (vec![put(1, 2)], true),
            (vec![put(0, 3)], true),
        ];
        assert!(writer_with(ops)
            .check(&[seen(3), Seen::Absent], &[Ok(0)], (0, 0), &EVERYSEC)
            .is_err());
    }

    #[test]
    fn deleted_keys_and_counters_are_checked() {
        let ops = vec![
            (vec![put(0, 1)], true),
            (vec![Effect::Value(0, ValueState::Absent)], true),
            (vec![Effect::Counter(0, 3)], true),
        ];
        let errors = writer_with(ops)
            .check(&[seen(1), Seen::Absent], &[Ok(4)], (0, 0), &ALWAYS)
            .unwrap_err();
        let text: Vec<_> = errors.iter().map(|v| v.what.as_str()).collect();
        assert!(text[0].contains("deleted key came back"), "{text:?}");
        assert!(text[1].contains("exceeds its acknowledged"), "{text:?}");
    }
}
