//! The checker against a brute-force search on small random histories: every order of the
//! operations that respects real time, every subset of the unknown-outcome ones left out,
//! each run on a register written here apart from `KvModel`. The verdicts must agree, which
//! tests the search, its memo and its read-first rule for soundness and completeness alike.

use super::super::*;
use super::KvOperation;
use crate::rng::Rng;

const VALUES: [Option<&str>; 4] = [None, Some("a"), Some("b"), Some("1")];

fn present(value: Option<&'static str>) -> &'static str {
    value.unwrap_or("a")
}

/// A random operation with a random (often impossible) answer. With `unique`, half the writes
/// write a value of their own (`u<client>`) and reads and swaps may name any client's, so the
/// checker's rules for unknown writes that only they could have made visible come into play.
fn random_operation(rng: &mut Rng, client: u64, unique: bool) -> KvOperation {
    let key = rng.pick(&["x", "y"]);
    let seen = |rng: &mut Rng| -> Option<String> {
        match unique && rng.below(2) == 0 {
            true => Some(format!("u{}", rng.below(7))),
            false => rng.pick(&VALUES).map(str::to_owned),
        }
    };
    let written = |rng: &mut Rng| -> String {
        match unique && rng.below(2) == 0 {
            true => format!("u{client}"),
            false => present(rng.pick(&VALUES)).to_owned(),
        }
    };
    let (input, output) = match rng.below(4) {
        0 => {
            let value = seen(rng);
            (
                KvInput::get(key),
                KvOutput::value(value.as_deref().map(str::as_bytes)),
            )
        }
        1 => (KvInput::set(key, written(rng)), KvOutput::Done),
        2 => {
            let output = match rng.below(4) {
                0 => KvOutput::Refused,
                answer => KvOutput::Incremented(answer as i64),
            };
            (KvInput::incr(key), output)
        }
        _ => {
            let expected = seen(rng);
            let new = written(rng);
            let swapped = rng.below(2) == 0;
            (
                KvInput::compare_and_set(key, expected.as_deref().map(str::as_bytes), new),
                KvOutput::Swapped(swapped),
            )
        }
    };
    let call_ns = rng.below(20);
    if rng.below(6) == 0 {
        Operation::unknown(client, call_ns, input)
    } else {
        Operation::completed(client, call_ns, input, call_ns + rng.below(10), output)
    }
}

/// One register per key, written without `KvModel`: the answer `command` gets, and the new
/// value.
fn perform(value: &Option<Vec<u8>>, command: &KvCommand) -> (Option<Vec<u8>>, KvOutput) {
    match command {
        KvCommand::Get => (value.clone(), KvOutput::Value(value.clone())),
        KvCommand::Set(new) => (Some(new.clone()), KvOutput::Done),
        KvCommand::Incr => {
            let text = value.as_deref().unwrap_or(b"0");
            let number = std::str::from_utf8(text).ok().and_then(|text| {
                let leading_zero = text.starts_with('0') && text != "0";
                let canonical = !text.starts_with('+') && !leading_zero;
                canonical.then(|| text.parse::<i64>().ok()).flatten()
            });
            match number {
                Some(number) => (
                    Some((number + 1).to_string().into_bytes()),
                    KvOutput::Incremented(number + 1),
                ),
                None => (value.clone(), KvOutput::Refused),
            }
        }
        KvCommand::CompareAndSet { expected, new } => {
            if value == expected {
                (Some(new.clone()), KvOutput::Swapped(true))
            } else {
                (value.clone(), KvOutput::Swapped(false))
            }
        }
    }
}

/// True if some order of `remaining` (history indices) respects real time and every answer.
fn some_order_fits(
    history: &[KvOperation],
    remaining: &mut Vec<usize>,
    values: &mut std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>,
) -> bool {
    if remaining.is_empty() {
        return true;
    }
    for position in 0..remaining.len() {
        let candidate = &history[remaining[position]];
        // It can go next unless another remaining operation returned before it was called.
        let must_wait = remaining.iter().any(|&other| {
            let other = &history[other];
            matches!(&other.returned, Some(returned) if returned.at_ns < candidate.call_ns)
        });
        if must_wait {
            continue;
        }
        let key = candidate.input.key.clone();
        let before = values.get(&key).cloned().flatten();
        let (after, answer) = perform(&before, &candidate.input.command);
        if matches!(&candidate.returned, Some(returned) if returned.output != answer) {
            continue;
        }
        values.insert(key.clone(), after);
        let index = remaining.remove(position);
        let fits = some_order_fits(history, remaining, values);
        remaining.insert(position, index);
        values.insert(key, before);
        if fits {
            return true;
        }
    }
    false
}

fn brute_force_linearizable(history: &[KvOperation]) -> bool {
    let unknown: Vec<usize> = (0..history.len())
        .filter(|&index| history[index].returned.is_none())
        .collect();
    // Each unknown operation either took effect (somewhere after its call) or never did.
    (0..1u32 << unknown.len()).any(|taken| {
        let mut remaining: Vec<usize> = (0..history.len())
            .filter(|&index| match unknown.iter().position(|&u| u == index) {
                Some(bit) => taken & (1 << bit) != 0,
                None => true,
            })
            .collect();
        some_order_fits(history, &mut remaining, &mut Default::default())
    })
}

fn verdicts_agree(unique: bool, unknown_per_six: u64) {
    let mut verdicts = [0usize; 2];
    for seed in 0..3000 {
        let mut rng = Rng::new(seed);
        let length = 1 + rng.below(7);
        let history: Vec<KvOperation> = (0..length)
            .map(|client| {
                let mut op = random_operation(&mut rng, client, unique);
                if op.returned.is_some() && rng.below(6) < unknown_per_six {
                    op.returned = None;
                }
                op
            })
            .collect();
        let expected = brute_force_linearizable(&history);
        let outcome = check(&KvModel, &history, Limits::default());
        assert!(
            !matches!(outcome, Outcome::Timeout { .. }),
            "seed {seed}: {outcome:?}"
        );
        assert_eq!(
            outcome.is_ok(),
            expected,
            "seed {seed}: checker says {outcome:?}, brute force says {expected}: {history:#?}"
        );
        verdicts[usize::from(expected)] += 1;
    }
    // Both verdicts must be common for the agreement to mean something.
    assert!(verdicts.iter().all(|&count| count > 300), "{verdicts:?}");
}

#[test]
fn verdicts_agree_with_brute_force() {
    verdicts_agree(false, 0);
}

/// Writes of values only they write, a third of them of unknown outcome: the checker's rules
/// for unknown writes (left out first when unseen, placed before the first read that saw
/// them) must not change a verdict.
#[test]
fn verdicts_agree_with_brute_force_with_values_of_their_own() {
    verdicts_agree(true, 1);
}
