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
            1, 2, 2,
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
            _ => vec![
                word("HELLO"),
                word(["2", "3", "4", "x"][self.rng.below(4) as usize]),
            ],
        };
        self.mutate(&mut args);
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
