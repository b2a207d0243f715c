//! [`KvModel`]: one register per key, with GET, SET, INCR and compare-and-set as Flin's KV
//! commands do them (INCR as Redis's: a missing key counts as 0, the value is stored as its
//! decimal text, and a value that is not a 64-bit decimal integer or would overflow is refused
//! and left alone).

use std::fmt;

use super::Model;

/// The key-value register model; a part is a key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvModel;

/// A command on one key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KvInput {
    pub key: Vec<u8>,
    pub command: KvCommand,
}

/// What a client asked of a key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum KvCommand {
    /// Answered with [`KvOutput::Value`].
    Get,
    /// Answered with [`KvOutput::Done`].
    Set(Vec<u8>),
    /// Answered with [`KvOutput::Incremented`] or [`KvOutput::Refused`].
    Incr,
    /// Set `new` if the value is `expected` (`None`: the key is missing). Answered with
    /// [`KvOutput::Swapped`].
    CompareAndSet {
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
}

/// What the store answered.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// GET: the value, or `None` if the key is missing.
    Value(Option<Vec<u8>>),
    /// SET: done.
    Done,
    /// INCR: the new value.
    Incremented(i64),
    /// INCR refused: the value is not a decimal 64-bit integer, or would overflow.
    Refused,
    /// Compare-and-set: whether it set the value.
    Swapped(bool),
}

/// A key: the part of the history an operation belongs to.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KvKey(pub Vec<u8>);

/// A key's value, or `None` if it is missing.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct KvState(pub Option<Vec<u8>>);

impl KvInput {
    pub fn get(key: impl Into<Vec<u8>>) -> KvInput {
        KvInput::new(key, KvCommand::Get)
    }

    pub fn set(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> KvInput {
        KvInput::new(key, KvCommand::Set(value.into()))
    }

    pub fn incr(key: impl Into<Vec<u8>>) -> KvInput {
        KvInput::new(key, KvCommand::Incr)
    }

    pub fn compare_and_set(
        key: impl Into<Vec<u8>>,
        expected: Option<&[u8]>,
        new: impl Into<Vec<u8>>,
    ) -> KvInput {
        let command = KvCommand::CompareAndSet {
            expected: expected.map(<[u8]>::to_vec),
            new: new.into(),
        };
        KvInput::new(key, command)
    }

    fn new(key: impl Into<Vec<u8>>, command: KvCommand) -> KvInput {
        KvInput {
            key: key.into(),
            command,
        }
    }
}

impl KvOutput {
    /// A GET's answer: `value` (`None`: missing).
    pub fn value(value: Option<&[u8]>) -> KvOutput {
        KvOutput::Value(value.map(<[u8]>::to_vec))
    }
}

impl Model for KvModel {
    type Part = KvKey;
    type Input = KvInput;
    type Output = KvOutput;
    type State = KvState;

    fn part(&self, input: &KvInput) -> KvKey {
        KvKey(input.key.clone())
    }

    fn init(&self) -> KvState {
        KvState(None)
    }

    fn step(&self, state: &KvState, input: &KvInput, output: Option<&KvOutput>) -> Option<KvState> {
        let (next, expected) = apply(state, &input.command);
        match output {
            None => Some(next),
            Some(output) if *output == expected => Some(next),
            Some(output) => {
                assert!(
                    answers(&input.command, output),
                    "history bug: {input:?} answered with {output:?}"
                );
                None
            }
        }
    }

    fn is_read_only(&self, input: &KvInput, output: Option<&KvOutput>) -> bool {
        matches!(
            (&input.command, output),
            (KvCommand::Get, _)
                | (KvCommand::Incr, Some(KvOutput::Refused))
                | (
                    KvCommand::CompareAndSet { .. },
                    Some(KvOutput::Swapped(false))
                )
        )
    }

    /// A SET's or compare-and-set's value is its own if no other SET or compare-and-set of
    /// the key writes it and no INCR can reach it: INCRs step from 0 (a missing key) or from a
    /// written integer, one at a time, so with `m` INCRs on the key they reach only values 1 to
    /// `m` above one of those.
    fn sole_writes(&self, inputs: &[&KvInput]) -> Vec<Option<KvState>> {
        let written = |input: &KvInput| match &input.command {
            KvCommand::Set(value) | KvCommand::CompareAndSet { new: value, .. } => {
                Some(value.clone())
            }
            KvCommand::Get | KvCommand::Incr => None,
        };
        let mut writers: std::collections::HashMap<Vec<u8>, usize> = Default::default();
        let mut bases = vec![0i64];
        let mut incrs = 0i64;
        for input in inputs {
            if matches!(input.command, KvCommand::Incr) {
                incrs += 1;
            }
            if let Some(value) = written(input) {
                bases.extend(parse_integer(&value));
                *writers.entry(value).or_default() += 1;
            }
        }
        bases.sort_unstable();
        let reached_by_incr = |value: &[u8]| {
            parse_integer(value).is_some_and(|value| {
                // A base in value - incrs ..= value - 1.
                let low = value.saturating_sub(incrs);
                let from = bases.partition_point(|&base| base < low);
                bases.get(from).is_some_and(|&base| base < value)
            })
        };
        inputs
            .iter()
            .map(|input| {
                let value = written(input)?;
                (writers[&value] == 1 && !reached_by_incr(&value)).then_some(KvState(Some(value)))
            })
            .collect()
    }

    fn only_from(&self, input: &KvInput, output: &KvOutput, state: &KvState) -> bool {
        match (&input.command, output) {
            (KvCommand::Get, KvOutput::Value(value)) => *value == state.0,
            (KvCommand::CompareAndSet { expected, .. }, KvOutput::Swapped(true)) => {
                *expected == state.0
            }
            // An INCR that answered n found n - 1 (or, for 1, a missing key or "0").
            (KvCommand::Incr, KvOutput::Incremented(n)) => {
                *n != 1
                    && n.checked_sub(1).is_some_and(|before| {
                        state.0.as_deref() == Some(before.to_string().as_bytes())
                    })
            }
            _ => false,
        }
    }
}

/// What `command` does to `state`, and what it answers.
/// Runs `command` on a key's `state`: the new state and the answer (a replica's state machine
/// uses it too, so the model and the system under test agree on what the commands mean).
pub fn apply(state: &KvState, command: &KvCommand) -> (KvState, KvOutput) {
    match command {
        KvCommand::Get => (state.clone(), KvOutput::Value(state.0.clone())),
        KvCommand::Set(value) => (KvState(Some(value.clone())), KvOutput::Done),
        KvCommand::Incr => {
            let current = match &state.0 {
                None => Some(0),
                Some(value) => parse_integer(value),
            };
            match current.and_then(|current| current.checked_add(1)) {
                Some(new) => (
                    KvState(Some(new.to_string().into_bytes())),
                    KvOutput::Incremented(new),
                ),
                None => (state.clone(), KvOutput::Refused),
            }
        }
        KvCommand::CompareAndSet { expected, new } => {
            if state.0 == *expected {
                (KvState(Some(new.clone())), KvOutput::Swapped(true))
            } else {
                (state.clone(), KvOutput::Swapped(false))
            }
        }
    }
}

/// True if `output` is the kind of answer `command` gets (a mismatch is a harness bug).
fn answers(command: &KvCommand, output: &KvOutput) -> bool {
    matches!(
        (command, output),
        (KvCommand::Get, KvOutput::Value(_))
            | (KvCommand::Set(_), KvOutput::Done)
            | (
                KvCommand::Incr,
                KvOutput::Incremented(_) | KvOutput::Refused
            )
            | (KvCommand::CompareAndSet { .. }, KvOutput::Swapped(_))
    )
}

/// A value as INCR reads it, Redis's way: optional `-`, digits, no leading zero (except "0"),
/// no `+` or spaces, within i64.
fn parse_integer(value: &[u8]) -> Option<i64> {
    let digits = value.strip_prefix(b"-").unwrap_or(value);
    let canonical = match digits {
        [] => false,
        [b'0'] => value.len() == 1,
        [first, ..] => *first != b'0' && digits.iter().all(u8::is_ascii_digit),
    };
    if !canonical {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Bytes as text where they are printable, escaped where not.
struct Text<'a>(&'a [u8]);

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

fn text_or_missing(value: &Option<Vec<u8>>) -> String {
    match value {
        Some(value) => format!("{:?}", Text(value)),
        None => "missing".to_owned(),
    }
}

impl fmt::Debug for KvInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = Text(&self.key);
        match &self.command {
            KvCommand::Get => write!(f, "GET {key:?}"),
            KvCommand::Set(value) => write!(f, "SET {key:?} {:?}", Text(value)),
            KvCommand::Incr => write!(f, "INCR {key:?}"),
            KvCommand::CompareAndSet { expected, new } => write!(
                f,
                "CAS {key:?} {} -> {:?}",
                text_or_missing(expected),
                Text(new)
            ),
        }
    }
}

impl fmt::Debug for KvCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let input = KvInput {
            key: Vec::new(),
            command: self.clone(),
        };
        write!(f, "{input:?}")
    }
}

impl fmt::Debug for KvOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvOutput::Value(value) => write!(f, "{}", text_or_missing(value)),
            KvOutput::Done => write!(f, "OK"),
            KvOutput::Incremented(new) => write!(f, "{new}"),
            KvOutput::Refused => write!(f, "refused"),
            KvOutput::Swapped(swapped) => write!(f, "{swapped}"),
        }
    }
}

impl fmt::Debug for KvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", Text(&self.0))
    }
}

impl fmt::Debug for KvState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", text_or_missing(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(value: Option<&str>) -> KvState {
        KvState(value.map(|value| value.as_bytes().to_vec()))
    }

    #[test]
    fn incr_counts_a_missing_key_as_zero() {
        let next = KvModel.step(
            &state(None),
            &KvInput::incr("k"),
            Some(&KvOutput::Incremented(1)),
        );
        assert_eq!(next, Some(state(Some("1"))));
    }

    #[test]
    fn incr_refuses_what_redis_refuses() {
        for value in [
            "abc",
            "",
            "-",
            "01",
            "+1",
            " 1",
            "9223372036854775807",
            "1.5",
        ] {
            let (next, output) = apply(&state(Some(value)), &KvCommand::Incr);
            assert_eq!(output, KvOutput::Refused, "{value:?}");
            assert_eq!(next, state(Some(value)));
        }
        let (next, output) = apply(&state(Some("-1")), &KvCommand::Incr);
        assert_eq!((next, output), (state(Some("0")), KvOutput::Incremented(0)));
    }

    #[test]
    fn compare_and_set_on_a_missing_key() {
        let input = KvInput::compare_and_set("k", None, "v");
        let (next, output) = apply(&state(None), &input.command);
        assert_eq!((next, output), (state(Some("v")), KvOutput::Swapped(true)));
        let (next, output) = apply(&state(Some("w")), &input.command);
        assert_eq!((next, output), (state(Some("w")), KvOutput::Swapped(false)));
    }

    #[test]
    fn an_unknown_outcome_applies_the_command() {
        let next = KvModel.step(&state(Some("41")), &KvInput::incr("k"), None);
        assert_eq!(next, Some(state(Some("42"))));
    }

    #[test]
    fn a_value_is_a_write_s_own_unless_another_write_or_an_incr_reaches_it() {
        let inputs = [
            KvInput::set("k", "a"),
            KvInput::set("k", "b"),
            KvInput::compare_and_set("k", None, "b"),
            KvInput::set("k", "10"),
            KvInput::set("k", "12"),
            KvInput::set("k", "15"),
            KvInput::set("k", "2"),
            KvInput::incr("k"),
            KvInput::incr("k"),
            KvInput::get("k"),
        ];
        let refs: Vec<&KvInput> = inputs.iter().collect();
        let sole: Vec<Option<KvState>> = KvModel.sole_writes(&refs);
        // "a": its own. "b": written twice. "10": its own (10 - 2 = 8 is no base). "12": two
        // INCRs from "10" reach it. "15": its own. "2": two INCRs from a missing key (0) reach
        // it. INCR and GET write nothing of their own.
        let own = |value: &str| Some(state(Some(value)));
        assert_eq!(
            sole,
            vec![
                own("a"),
                None,
                None,
                own("10"),
                None,
                own("15"),
                None,
                None,
                None,
                None
            ]
        );
    }

    #[test]
    fn what_an_answer_proves_the_state_was() {
        let only = |input: &KvInput, output: KvOutput, value: Option<&str>| {
            KvModel.only_from(input, &output, &state(value))
        };
        assert!(only(
            &KvInput::get("k"),
            KvOutput::value(Some(b"v")),
            Some("v")
        ));
        assert!(!only(&KvInput::get("k"), KvOutput::value(None), Some("v")));
        let cas = KvInput::compare_and_set("k", Some(b"a"), "b");
        assert!(only(&cas, KvOutput::Swapped(true), Some("a")));
        assert!(!only(&cas, KvOutput::Swapped(false), Some("b")));
        assert!(only(
            &KvInput::incr("k"),
            KvOutput::Incremented(42),
            Some("41")
        ));
        assert!(!only(
            &KvInput::incr("k"),
            KvOutput::Incremented(42),
            Some("42")
        ));
        // 1 may come from a missing key as well as from "0".
        assert!(!only(
            &KvInput::incr("k"),
            KvOutput::Incremented(1),
            Some("0")
        ));
        assert!(!only(&KvInput::incr("k"), KvOutput::Refused, Some("x")));
    }

    #[test]
    #[should_panic(expected = "history bug")]
    fn an_answer_of_the_wrong_kind_is_a_harness_bug() {
        KvModel.step(&state(None), &KvInput::get("k"), Some(&KvOutput::Done));
    }
}
