//! The seeded random mode: sequences of commands over a small key space with arguments drawn
//! from pools of edge values (valid and invalid), random option lists, wrong arities, MULTI
//! blocks, WATCH races from a second connection, pipelines and protocol switches. Every
//! choice follows from the seed, so a seed replays its sequence.
//!
//! Relative expiries are long (100 s and more) or already past, so no key expires while a
//! sequence runs and replies do not depend on timing (TTL readings are compared with a
//! tolerance). Floats added by INCRBYFLOAT are exact in binary, so f64 and long double agree.

use std::time::{SystemTime, UNIX_EPOCH};

use flin_benches::crashtest::rng::Rng;

use crate::session::Step;

const KEYS: &[&[u8]] = &[
    b"k1",
    b"k2",
    b"k3",
    b"k4",
    b"",
    b"\x00\xff",
    b"user:1",
    b"user:10",
];
const VALUES: &[&[u8]] = &[
    b"",
    b"v",
    b"0",
    b"1",
    b"-1",
    b"42",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"9223372036854775806",
    b"10.5",
    b"-2.25",
    b"1e3",
    b"abc",
    b" 1",
    b"01",
    b"+1",
    b"-0",
    b"\x00\xff\r\n",
    b"hello world",
    b"3.0",
    b"1.5e2",
];
const INTEGERS: &[&[u8]] = &[
    b"0",
    b"1",
    b"-1",
    b"2",
    b"7",
    b"100",
    b"-100",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"x",
    b"",
    b"1.5",
    b" 1",
    b"01",
    b"+1",
    b"-0",
    b"4294967296",
];
/// Offsets for GETRANGE (any) and SETRANGE (small, or past the 512 MiB limit: never one that
/// would make either server allocate hundreds of MiB).
const RANGE_OFFSETS: &[&[u8]] = &[
    b"0",
    b"1",
    b"2",
    b"-1",
    b"-2",
    b"5",
    b"-5",
    b"100",
    b"-100",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"x",
];
const SETRANGE_OFFSETS: &[&[u8]] = &[
    b"0",
    b"1",
    b"3",
    b"10",
    b"-1",
    b"536870912",
    b"9223372036854775807",
    b"x",
    b"",
];
/// Relative expiries: long enough never to run out during a run, or invalid/past.
const SECONDS: &[&[u8]] = &[
    b"100",
    b"1000",
    b"86400",
    b"0",
    b"-1",
    b"-100",
    b"x",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"9223372036854775",
    b"1.5",
    b"",
];
const MILLISECONDS: &[&[u8]] = &[
    b"100000",
    b"1000000",
    b"0",
    b"-1",
    b"x",
    b"9223372036854775807",
    b"-9223372036854775808",
];
const FLOATS: &[&[u8]] = &[
    b"1", b"0.5", b"-0.25", b"1.5", b"1e3", b"-3", b"0", b"2.5e-1", b"x", b"", b"nan", b"inf",
    b"-inf", b" 1", b"1e", b".5", b"+2",
];
const PATTERNS: &[&[u8]] = &[
    b"*", b"k*", b"k?", b"?", b"[k]*", b"[^k]*", b"k[1-3]", b"user:*", b"*1*", b"\\*", b"[", b"",
    b"k[", b"*\x00*",
];
const GETEX_OPTIONS: &[&[u8]] = &[
    b"EX", b"PX", b"EXAT", b"PXAT", b"PERSIST", b"KEEPTTL", b"NX",
];
const SET_OPTIONS: &[&[u8]] = &[
    b"NX", b"XX", b"GET", b"EX", b"PX", b"EXAT", b"PXAT", b"KEEPTTL", b"nx", b"get", b"FOO",
];
const EXPIRE_OPTIONS: &[&[u8]] = &[b"NX", b"XX", b"GT", b"LT", b"gt", b"FOO"];
/// GT and LT compare a new relative expiry with one set moments earlier: whether "now + 100 s"
/// is greater than the last "now + 100 s" depends on the millisecond each server read, so
/// relative EXPIRE/PEXPIRE draw from this pool, and GT/LT go with absolute times only.
const RELATIVE_EXPIRE_OPTIONS: &[&[u8]] = &[b"NX", b"XX", b"nx", b"FOO"];

/// Bit offsets for SETBIT, and for BITFIELD's writes: small, or refused (past bit 2^32 - 1,
/// negative, not integers). Never one near the limit, which would make both servers build a
/// 512 MiB string.
const BIT_OFFSETS: &[&[u8]] = &[
    b"0",
    b"1",
    b"7",
    b"8",
    b"15",
    b"63",
    b"100",
    b"-1",
    b"x",
    b"",
    b"1.5",
    b"4294967296",
    b"9223372036854775807",
];
/// Reads may look anywhere: GETBIT and BITFIELD's GET allocate nothing.
const READ_BIT_OFFSETS: &[&[u8]] = &[b"4294967295", b"4294967294", b"1000000"];
const BIT_VALUES: &[&[u8]] = &[b"0", b"1", b"0", b"1", b"2", b"-1", b"x", b""];
const BIT_UNITS: &[&[u8]] = &[b"BYTE", b"BIT", b"bit", b"byte", b"FOO"];
const BITOP_NAMES: &[&[u8]] = &[b"AND", b"OR", b"XOR", b"NOT", b"and", b"not", b"NAND"];
const FIELD_TYPES: &[&[u8]] = &[
    b"u8", b"i8", b"u1", b"i1", b"u4", b"i5", b"i16", b"u16", b"i64", b"u63", b"u64", b"i65",
    b"i0", b"x8", b"U8", b"",
];
/// BITFIELD offsets for any op: small, `#N`, refused.
const FIELD_OFFSETS: &[&[u8]] = &[
    b"0",
    b"1",
    b"5",
    b"8",
    b"13",
    b"#0",
    b"#1",
    b"#3",
    b"100",
    b"-1",
    b"x",
    b"#",
    b"#-1",
    b"4294967296",
];
const OVERFLOW_MODES: &[&[u8]] = &[b"WRAP", b"SAT", b"FAIL", b"fail", b"FOO"];
const LCS_OPTIONS: &[&[u8]] = &[
    b"LEN",
    b"IDX",
    b"WITHMATCHLEN",
    b"MINMATCHLEN",
    b"idx",
    b"FOO",
];
const LCS_LENGTHS: &[&[u8]] = &[b"0", b"1", b"2", b"3", b"-1", b"x"];
/// COPY's DB: the one database Flin has, and indexes both servers refuse (never 1-15, which
/// Redis has and Flin does not: a documented divergence the curated script shows).
const COPY_DATABASES: &[&[u8]] = &[b"0", b"x", b"16", b"-1", b"4294967296", b""];
const OBJECT_SUBCOMMANDS: &[&[u8]] = &[
    b"ENCODING",
    b"REFCOUNT",
    b"FREQ",
    b"IDLETIME",
    b"HELP",
    b"encoding",
    b"FOO",
];

/// Draws one sequence.
pub struct Generator {
    rng: Rng,
    now_s: u64,
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        let now_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Generator {
            rng: Rng::new(seed),
            now_s,
        }
    }

    fn pick(&mut self, pool: &[&[u8]]) -> Vec<u8> {
        pool[self.rng.below(pool.len() as u64) as usize].to_vec()
    }

    fn key(&mut self) -> Vec<u8> {
        self.pick(KEYS)
    }

    /// An absolute time: in the future (a long way), in the past, or odd.
    fn unix_seconds(&mut self) -> Vec<u8> {
        match self.rng.below(5) {
            0 => (self.now_s + 1500 + self.rng.below(1000)).to_string(),
            1 => (self.now_s - 100).to_string(),
            2 => "1".into(),
            3 => "0".into(),
            _ => "-5".into(),
        }
        .into_bytes()
    }

    fn unix_milliseconds(&mut self) -> Vec<u8> {
        match self.rng.below(4) {
            0 => ((self.now_s + 1500) * 1000 + self.rng.below(1_000_000)).to_string(),
            1 => ((self.now_s - 100) * 1000).to_string(),
            2 => "1".into(),
            3 if self.rng.percent(25) => "9223372036854775807".into(),
            _ => ((self.now_s + 1500) * 1000).to_string(),
        }
        .into_bytes()
    }

    /// The value that follows an expiry option word.
    fn expiry_amount(&mut self, option: &[u8]) -> Vec<u8> {
        match option.to_ascii_uppercase().as_slice() {
            b"EX" => self.pick(SECONDS),
            b"PX" => self.pick(MILLISECONDS),
            b"EXAT" => self.unix_seconds(),
            _ => self.unix_milliseconds(),
        }
    }

    /// A random option list: mostly valid combinations, sometimes odd ones.
    fn options(&mut self, pool: &[&[u8]], with_amounts: bool) -> Vec<Vec<u8>> {
        let count = self.rng.weighted(&[4, 4, 2, 1]);
        let mut options = Vec::new();
        for _ in 0..count {
            let option = self.pick(pool);
            let upper = option.to_ascii_uppercase();
            let takes_amount = matches!(upper.as_slice(), b"EX" | b"PX" | b"EXAT" | b"PXAT");
            options.push(option.clone());
            if with_amounts && takes_amount && !self.rng.percent(5) {
                let amount = self.expiry_amount(&option);
                options.push(amount);
            }
        }
        options
    }

    /// One command (arguments, name first).
    pub fn command(&mut self) -> Vec<Vec<u8>> {
        let weights = [
            10, 12, 4, 3, 3, 3, 2, 3, 4, 2, 3, 3, 4, 3, 5, 3, 3, 6, 4, 3, 2, 3, 2, 2, 2, 2, 1, 1,
            1, 2, 4, 2, 3, 3, 3, 4, 2, 2, 1, 2, 2,
        ];
        let word = |text: &str| text.as_bytes().to_vec();
        let mut args = match self.rng.weighted(&weights) {
            0 => vec![word("GET"), self.key()],
            1 => {
                let mut args = vec![word("SET"), self.key(), self.pick(VALUES)];
                args.extend(self.options(SET_OPTIONS, true));
                args
            }
            2 => vec![word("SETNX"), self.key(), self.pick(VALUES)],
            3 => vec![
                word("SETEX"),
                self.key(),
                self.pick(SECONDS),
                self.pick(VALUES),
            ],
            4 => vec![
                word("PSETEX"),
                self.key(),
                self.pick(MILLISECONDS),
                self.pick(VALUES),
            ],
            5 => vec![word("GETSET"), self.key(), self.pick(VALUES)],
            6 => vec![word("GETDEL"), self.key()],
            7 => {
                let mut args = vec![word("GETEX"), self.key()];
                args.extend(self.options(GETEX_OPTIONS, true));
                args
            }
            8 => {
                let mut args = vec![word("MGET")];
                for _ in 0..self.rng.between(1, 4) {
                    args.push(self.key());
                }
                args
            }
            9 | 10 => {
                let name = if self.rng.percent(50) {
                    "MSET"
                } else {
                    "MSETNX"
                };
                let mut args = vec![word(name)];
                for _ in 0..self.rng.between(1, 3) {
                    args.push(self.key());
                    args.push(self.pick(VALUES));
                }
                args
            }
            11 => vec![word("APPEND"), self.key(), self.pick(VALUES)],
            12 => vec![word("STRLEN"), self.key()],
            13 => vec![
                word("GETRANGE"),
                self.key(),
                self.pick(RANGE_OFFSETS),
                self.pick(RANGE_OFFSETS),
            ],
            14 => vec![
                word("SETRANGE"),
                self.key(),
                self.pick(SETRANGE_OFFSETS),
                self.pick(VALUES),
            ],
            15 => {
                let name = ["INCR", "DECR"][self.rng.below(2) as usize];
                vec![word(name), self.key()]
            }
            16 => {
                let name = ["INCRBY", "DECRBY"][self.rng.below(2) as usize];
                vec![word(name), self.key(), self.pick(INTEGERS)]
            }
            17 => vec![word("INCRBYFLOAT"), self.key(), self.pick(FLOATS)],
            18 => {
                let name = ["DEL", "UNLINK", "EXISTS"][self.rng.below(3) as usize];
                let mut args = vec![word(name)];
                for _ in 0..self.rng.between(1, 3) {
                    args.push(self.key());
                }
                args
            }
            19 => {
                let name =
                    ["EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"][self.rng.below(4) as usize];
                let amount = match name {
                    "EXPIRE" => self.pick(SECONDS),
                    "PEXPIRE" => self.pick(MILLISECONDS),
                    "EXPIREAT" => self.unix_seconds(),
                    _ => self.unix_milliseconds(),
                };
                let mut args = vec![word(name), self.key(), amount];
                let pool = if name.ends_with("AT") {
                    EXPIRE_OPTIONS
                } else {
                    RELATIVE_EXPIRE_OPTIONS
                };
                args.extend(self.options(pool, false));
                args
            }
            20 => {
                let name = [
                    "TTL",
                    "PTTL",
                    "EXPIRETIME",
                    "PEXPIRETIME",
                    "PERSIST",
                    "TYPE",
                ][self.rng.below(6) as usize];
                vec![word(name), self.key()]
            }
            21 => vec![word("KEYS"), self.pick(PATTERNS)],
            22 => {
                let mut args = vec![word("SCAN"), word("0")];
                for _ in 0..self.rng.below(3) {
                    match self.rng.below(4) {
                        0 => args.extend([word("MATCH"), self.pick(PATTERNS)]),
                        1 => args.extend([word("COUNT"), self.pick(INTEGERS)]),
                        2 => args.extend([
                            word("TYPE"),
                            word(["string", "hash", "foo"][self.rng.below(3) as usize]),
                        ]),
                        _ => args.push(word("COUNT")),
                    }
                }
                args
            }
            23 => {
                let name = ["RENAME", "RENAMENX"][self.rng.below(2) as usize];
                vec![word(name), self.key(), self.key()]
            }
            24 => vec![word(["DBSIZE", "RANDOMKEY"][self.rng.below(2) as usize])],
            25 => vec![word(["FLUSHALL", "FLUSHDB"][self.rng.below(2) as usize])],
            26 => vec![
                word("SELECT"),
                word(["0", "x", "16", "-1"][self.rng.below(4) as usize]),
            ],
            27 => vec![word("NOSUCH"), self.key()],
            28 => vec![word("ECHO"), self.pick(VALUES)],
            29 => vec![word("PING")],
            30 => vec![
                word("SETBIT"),
                self.key(),
                self.pick(BIT_OFFSETS),
                self.pick(BIT_VALUES),
            ],
            31 => vec![word("GETBIT"), self.key(), self.read_bit_offset()],
            32 => {
                let mut args = vec![word("BITCOUNT"), self.key()];
                args.extend(self.bit_range(2));
                args
            }
            33 => {
                let bit = self.pick(&[b"0", b"1", b"1", b"0", b"2", b"x"]);
                let mut args = vec![word("BITPOS"), self.key(), bit];
                args.extend(self.bit_range(1));
                args
            }
            34 => {
                let mut args = vec![word("BITOP"), self.pick(BITOP_NAMES), self.key()];
                for _ in 0..self.rng.between(1, 3) {
                    args.push(self.key());
                }
                args
            }
            35 => {
                let name = ["BITFIELD", "BITFIELD", "BITFIELD_RO"][self.rng.below(3) as usize];
                let mut args = vec![word(name), self.key()];
                args.extend(self.field_ops(name == "BITFIELD_RO"));
                args
            }
            36 => {
                let mut args = vec![word("LCS"), self.key(), self.key()];
                for _ in 0..self.rng.below(3) {
                    let option = self.pick(LCS_OPTIONS);
                    let takes_length = option.eq_ignore_ascii_case(b"MINMATCHLEN");
                    args.push(option);
                    if takes_length && !self.rng.percent(10) {
                        args.push(self.pick(LCS_LENGTHS));
                    }
                }
                args
            }
            37 => {
                let mut args = vec![word("COPY"), self.key(), self.key()];
                if self.rng.percent(40) {
                    args.push(word(
                        ["REPLACE", "replace", "FOO"][self.rng.below(3) as usize],
                    ));
                }
                if self.rng.percent(20) {
                    args.extend([word("DB"), self.pick(COPY_DATABASES)]);
                }
                args
            }
            38 => {
                let mut args = vec![word("TOUCH")];
                for _ in 0..self.rng.between(1, 3) {
                    args.push(self.key());
                }
                args
            }
            39 => vec![word("OBJECT"), self.pick(OBJECT_SUBCOMMANDS), self.key()],
            _ => vec![
                word("HELLO"),
                word(["2", "3", "4", "x"][self.rng.below(4) as usize]),
            ],
        };
        self.mutate(&mut args);
        args
    }

    /// A GETBIT offset: anywhere, even at the limit (reading allocates nothing).
    fn read_bit_offset(&mut self) -> Vec<u8> {
        if self.rng.percent(15) {
            self.pick(READ_BIT_OFFSETS)
        } else {
            self.pick(BIT_OFFSETS)
        }
    }

    /// BITCOUNT's (`required` 2) or BITPOS's (1) optional range: none, or start, end and a
    /// unit word, each sometimes left out.
    fn bit_range(&mut self, required: u64) -> Vec<Vec<u8>> {
        let parts = match self.rng.below(4) {
            0 => 0,
            1 => required,
            2 => 2,
            _ => 3,
        };
        let mut args: Vec<Vec<u8>> = (0..parts.min(2))
            .map(|_| self.pick(RANGE_OFFSETS))
            .collect();
        if parts == 3 {
            args.push(self.pick(BIT_UNITS));
        }
        args
    }

    /// BITFIELD's operations: GET, SET, INCRBY and OVERFLOW in any order (BITFIELD_RO mostly
    /// GETs). Writes stay near the start of the string.
    fn field_ops(&mut self, read_only: bool) -> Vec<Vec<u8>> {
        let word = |text: &str| text.as_bytes().to_vec();
        let mut args = Vec::new();
        for _ in 0..self.rng.between(1, 4) {
            let kind = if read_only && self.rng.percent(80) {
                0
            } else {
                self.rng.below(4)
            };
            match kind {
                0 => {
                    let offset = if self.rng.percent(10) {
                        self.pick(READ_BIT_OFFSETS)
                    } else {
                        self.pick(FIELD_OFFSETS)
                    };
                    args.extend([word("GET"), self.pick(FIELD_TYPES), offset]);
                }
                1 | 2 => {
                    let name = if kind == 1 { "SET" } else { "INCRBY" };
                    args.extend([
                        word(name),
                        self.pick(FIELD_TYPES),
                        self.pick(FIELD_OFFSETS),
                        self.pick(INTEGERS),
                    ]);
                }
                _ => args.extend([word("OVERFLOW"), self.pick(OVERFLOW_MODES)]),
            }
        }
        args
    }

    /// A command to queue in MULTI: not HELLO, whose protocol switch Flin applies to the
    /// whole EXEC reply where Redis applies it from that element on (docs/commands.md).
    fn command_in_multi(&mut self) -> Vec<Vec<u8>> {
        loop {
            let args = self.command();
            if !args[0].eq_ignore_ascii_case(b"HELLO") {
                return args;
            }
        }
    }

    /// Sometimes a wrong arity or a name in odd case.
    fn mutate(&mut self, args: &mut Vec<Vec<u8>>) {
        if self.rng.percent(4) && args.len() > 1 {
            args.pop();
        } else if self.rng.percent(3) {
            args.push(self.pick(VALUES));
        }
        if self.rng.percent(20) {
            let name: Vec<u8> = args[0]
                .iter()
                .map(|byte| {
                    if self.rng.percent(50) {
                        byte.to_ascii_lowercase()
                    } else {
                        *byte
                    }
                })
                .collect();
            args[0] = name;
        }
    }

    /// A sequence of about `commands` commands as steps: single commands, MULTI blocks (with
    /// another connection writing watched keys), and pipelines.
    pub fn steps(&mut self, commands: usize) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut drawn = 0;
        let word = |text: &str| text.as_bytes().to_vec();
        while drawn < commands {
            match self.rng.weighted(&[80, 8, 6, 3, 3]) {
                0 => {
                    steps.push(Step::Command {
                        client: 0,
                        args: self.command(),
                    });
                    drawn += 1;
                }
                1 => {
                    // WATCH, another client maybe writes, MULTI ... EXEC or DISCARD.
                    if self.rng.percent(60) {
                        let mut watch = vec![word("WATCH")];
                        for _ in 0..self.rng.between(1, 2) {
                            watch.push(self.key());
                        }
                        steps.push(Step::Command {
                            client: 0,
                            args: watch,
                        });
                    }
                    if self.rng.percent(40) {
                        steps.push(Step::Command {
                            client: 1,
                            args: self.command(),
                        });
                    }
                    steps.push(Step::Command {
                        client: 0,
                        args: vec![word("MULTI")],
                    });
                    for _ in 0..self.rng.between(0, 5) {
                        let args = match self.rng.below(12) {
                            0 => vec![word("WATCH"), self.key()],
                            1 => vec![word("MULTI")],
                            _ => self.command_in_multi(),
                        };
                        steps.push(Step::Command { client: 0, args });
                        drawn += 1;
                    }
                    let end = if self.rng.percent(85) {
                        "EXEC"
                    } else {
                        "DISCARD"
                    };
                    steps.push(Step::Command {
                        client: 0,
                        args: vec![word(end)],
                    });
                    drawn += 2;
                }
                2 => {
                    // A pipeline (no SCAN or DBSIZE: the session follows or retries those only
                    // as single commands).
                    let mut commands = Vec::new();
                    while commands.len() < self.rng.between(2, 6) as usize {
                        let args = self.command();
                        let name = args[0].to_ascii_uppercase();
                        if name != b"SCAN" && name != b"DBSIZE" {
                            commands.push(args);
                        }
                    }
                    drawn += commands.len();
                    steps.push(Step::Pipeline {
                        client: 0,
                        commands,
                    });
                }
                3 => {
                    let args = [&b"EXEC"[..], b"DISCARD", b"UNWATCH"][self.rng.below(3) as usize];
                    steps.push(Step::Command {
                        client: 0,
                        args: vec![args.to_vec()],
                    });
                    drawn += 1;
                }
                _ => {
                    steps.push(Step::Command {
                        client: 1,
                        args: self.command(),
                    });
                    drawn += 1;
                }
            }
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(steps: &[Step]) -> Vec<String> {
        steps.iter().map(|step| format!("{step:?}")).collect()
    }

    #[test]
    fn a_seed_replays_its_sequence() {
        let a = Generator::new(7).steps(300);
        let b = Generator::new(7).steps(300);
        assert_eq!(shown(&a), shown(&b));
        assert_ne!(shown(&a), shown(&Generator::new(8).steps(300)));
    }

    #[test]
    fn sequences_avoid_what_cannot_be_compared() {
        let steps = Generator::new(1).steps(5000);
        let mut saw_multi = false;
        for step in &steps {
            let commands: Vec<&Vec<Vec<u8>>> = match step {
                Step::Command { args, .. } => vec![args],
                Step::Pipeline { commands, .. } => {
                    for args in commands {
                        let name = args[0].to_ascii_uppercase();
                        assert!(
                            name != b"SCAN" && name != b"DBSIZE",
                            "no SCAN/DBSIZE in pipelines"
                        );
                    }
                    commands.iter().collect()
                }
                _ => vec![],
            };
            for args in commands {
                let name = args[0].to_ascii_uppercase();
                saw_multi |= name == b"MULTI";
                if name == b"SELECT" {
                    assert!(args.get(1).is_none_or(|db| db != b"1"), "never another db");
                }
                if name == b"SETBIT" && args.len() > 2 {
                    assert!(
                        BIT_OFFSETS.contains(&args[2].as_slice()),
                        "SETBIT never writes near the 512 MiB limit"
                    );
                }
                if name == b"BITFIELD" {
                    for op in args.windows(3) {
                        if op[0] == b"SET" || op[0] == b"INCRBY" {
                            assert!(FIELD_OFFSETS.contains(&op[2].as_slice()), "small writes");
                        }
                    }
                }
                if name == b"COPY" {
                    assert!(
                        !args
                            .windows(2)
                            .any(|pair| pair[0] == b"DB" && pair[1] == b"1"),
                        "never another db"
                    );
                }
                if name == b"SETRANGE" && args.len() > 2 {
                    let offset: i64 = std::str::from_utf8(&args[2])
                        .ok()
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(0);
                    assert!(offset <= 10 || offset >= 536_870_912, "no huge allocation");
                }
            }
        }
        assert!(saw_multi);
    }
}
