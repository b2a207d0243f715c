//! Generated histories: a simulated linearizable store (every operation takes effect at one
//! random instant inside its interval) must always pass; the same histories mutated where the
//! mutation provably breaks linearizability must fail; and a store whose deposed leader keeps
//! serving reads must be caught.
//!
//! Every value a history writes is unique: SET and compare-and-set write a fresh multiple of
//! [`VALUE_STRIDE`], and INCR climbs from there (or from 0) by fewer than `VALUE_STRIDE` steps.
//! So each value is produced by at most one operation, which is what makes the mutations
//! provably illegal (see each one).

use super::super::*;
use super::KvOperation;
use crate::rng::Rng;

/// The spacing of written values: far more than the INCRs one history can make.
const VALUE_STRIDE: u64 = 1_000_000;

/// A value no history writes.
const NEVER_WRITTEN: &[u8] = b"never-written";

#[derive(Clone, Copy, Debug)]
struct Workload {
    clients: u64,
    operations_per_client: u64,
    keys: u64,
    /// How many of the clients only read (the first ones): a client that writes times out on a
    /// deposed leader and finds the new one, a client that only reads may never.
    readers: u64,
    /// Which commands the clients send.
    mix: Mix,
    /// Of the operations that reach a working leader, how many get no reply (half of those
    /// took effect, half did not).
    unknown_percent: u64,
    /// Pause between a client's operations, at most.
    think_ns_max: u64,
    /// Length of an operation's interval, at most.
    duration_ns_max: u64,
    /// The leader is partitioned away and replaced at this instant, if set.
    deposed_at_ns: Option<u64>,
    /// Whether the old leader confirms it still leads (read index, lease) before it answers a
    /// read; if not, after `deposed_at_ns` it answers from its stale copy.
    leader_checks_quorum: bool,
}

impl Workload {
    fn small() -> Workload {
        Workload {
            clients: 4,
            operations_per_client: 40,
            keys: 3,
            readers: 0,
            mix: Mix::ALL,
            unknown_percent: 5,
            think_ns_max: 20,
            duration_ns_max: 60,
            deposed_at_ns: None,
            leader_checks_quorum: true,
        }
    }
}

/// Percentages of GET, SET, INCR and compare-and-set (summing to 100).
#[derive(Clone, Copy, Debug)]
struct Mix([u64; 4]);

impl Mix {
    const ALL: Mix = Mix([40, 25, 20, 15]);
    const SETS: Mix = Mix([40, 60, 0, 0]);
    const INCRS: Mix = Mix([40, 0, 60, 0]);

    fn pick(self, rng: &mut Rng) -> Kind {
        let kinds = [Kind::Get, Kind::Set, Kind::Incr, Kind::CompareAndSet];
        let mut draw = rng.below(100);
        for (kind, percent) in kinds.into_iter().zip(self.0) {
            if draw < percent {
                return kind;
            }
            draw -= percent;
        }
        unreachable!("a mix sums to 100")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Get,
    Set,
    Incr,
    CompareAndSet,
}

/// What became of a planned operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Took effect at `at_ns`; the client saw the reply if `replied`.
    Applied { at_ns: u64, replied: bool },
    /// Never took effect, and the client saw no reply.
    Lost,
    /// A read the deposed leader answered from its copy as of the deposition.
    Stale,
}

#[derive(Clone, Copy, Debug)]
struct Planned {
    client: u64,
    call_ns: u64,
    return_ns: u64,
    key: u64,
    kind: Kind,
    fate: Fate,
}

/// A generated history, with what the generator knows about it.
struct Generated {
    history: Vec<KvOperation>,
    /// The indices of the reads a deposed leader answered from its copy.
    stale_reads: Vec<usize>,
    /// Stale reads that provably break linearizability: a SET on their key completed before
    /// they were called, on the new leader.
    provably_stale_reads: usize,
}

fn generate(seed: u64, workload: Workload) -> Generated {
    let mut rng = Rng::new(seed);
    let plan = plan(&mut rng, workload);
    perform(&mut rng, workload, &plan)
}

/// When each client calls what, and when each operation takes effect (if it does).
fn plan(rng: &mut Rng, workload: Workload) -> Vec<Planned> {
    let mut plan = Vec::new();
    for client in 0..workload.clients {
        let mut now_ns = rng.below(workload.think_ns_max + 1);
        let mut talks_to_old_leader = true;
        for _ in 0..workload.operations_per_client {
            let duration_ns = 1 + rng.below(workload.duration_ns_max);
            let effect_ns = now_ns + rng.below(duration_ns + 1);
            let kind = if client < workload.readers {
                Kind::Get
            } else {
                workload.mix.pick(rng)
            };
            let cut_off = match workload.deposed_at_ns {
                Some(deposed_at_ns) => talks_to_old_leader && effect_ns >= deposed_at_ns,
                None => false,
            };
            let fate = if cut_off {
                if kind == Kind::Get && !workload.leader_checks_quorum {
                    Fate::Stale
                } else {
                    // The old leader cannot commit (or confirm a read): the client times out
                    // and finds the new leader.
                    talks_to_old_leader = false;
                    Fate::Lost
                }
            } else if rng.chance(10 * workload.unknown_percent) {
                if rng.chance(10 * 50) {
                    Fate::Applied {
                        at_ns: effect_ns,
                        replied: false,
                    }
                } else {
                    Fate::Lost
                }
            } else {
                Fate::Applied {
                    at_ns: effect_ns,
                    replied: true,
                }
            };
            plan.push(Planned {
                client,
                call_ns: now_ns,
                return_ns: now_ns + duration_ns,
                key: rng.below(workload.keys),
                kind,
                fate,
            });
            now_ns += duration_ns + rng.below(workload.think_ns_max + 1);
        }
    }
    plan
}

/// Runs the plan against one register per key (written apart from [`KvModel`], so a bug there
/// is not mirrored here), in the order operations take effect.
fn perform(rng: &mut Rng, workload: Workload, plan: &[Planned]) -> Generated {
    let mut values: Vec<Option<Vec<u8>>> = vec![None; workload.keys as usize];
    let mut values_when_deposed = None;
    let mut writes = 0u64;
    let mut fresh_value = || {
        writes += 1;
        (writes * VALUE_STRIDE).to_string().into_bytes()
    };
    let mut history: Vec<Option<KvOperation>> = vec![None; plan.len()];

    let mut applied: Vec<usize> = (0..plan.len())
        .filter(|&index| matches!(plan[index].fate, Fate::Applied { .. }))
        .collect();
    applied.sort_by_key(|&index| match plan[index].fate {
        Fate::Applied { at_ns, .. } => (at_ns, plan[index].client),
        _ => unreachable!("only applied operations"),
    });
    for index in applied {
        let Fate::Applied { at_ns, replied } = plan[index].fate else {
            unreachable!("only applied operations")
        };
        if workload
            .deposed_at_ns
            .is_some_and(|deposed_at_ns| at_ns >= deposed_at_ns)
        {
            values_when_deposed.get_or_insert_with(|| values.clone());
        }
        let planned = plan[index];
        let value = &mut values[planned.key as usize];
        let (input, output) = apply(rng, planned, value, &mut fresh_value);
        history[index] = Some(record(planned, input, replied.then_some(output)));
    }
    let values_when_deposed = values_when_deposed.unwrap_or(values);

    for (index, planned) in plan.iter().enumerate() {
        let key = key_name(planned.key);
        match planned.fate {
            Fate::Applied { .. } => {}
            Fate::Lost => {
                let input = match planned.kind {
                    Kind::Get => KvInput::get(key),
                    Kind::Set => KvInput::set(key, fresh_value()),
                    Kind::Incr => KvInput::incr(key),
                    Kind::CompareAndSet => KvInput::compare_and_set(key, None, fresh_value()),
                };
                history[index] = Some(record(*planned, input, None));
            }
            Fate::Stale => {
                let seen = values_when_deposed[planned.key as usize].as_deref();
                let output = KvOutput::value(seen);
                history[index] = Some(record(*planned, KvInput::get(key), Some(output)));
            }
        }
    }
    let history: Vec<KvOperation> = history
        .into_iter()
        .map(|operation| operation.expect("every planned operation recorded"))
        .collect();
    let provably_stale_reads = count_provably_stale_reads(plan, &history, workload.deposed_at_ns);
    let stale_reads = (0..plan.len())
        .filter(|&index| plan[index].fate == Fate::Stale)
        .collect();
    Generated {
        history,
        stale_reads,
        provably_stale_reads,
    }
}

/// Chooses the operation's arguments and applies it to `value`: the input and the reply.
fn apply(
    rng: &mut Rng,
    planned: Planned,
    value: &mut Option<Vec<u8>>,
    fresh_value: &mut impl FnMut() -> Vec<u8>,
) -> (KvInput, KvOutput) {
    let key = key_name(planned.key);
    match planned.kind {
        Kind::Get => (KvInput::get(key), KvOutput::value(value.as_deref())),
        Kind::Set => {
            let new = fresh_value();
            *value = Some(new.clone());
            (KvInput::set(key, new), KvOutput::Done)
        }
        Kind::Incr => {
            let current: i64 = match value {
                Some(text) => std::str::from_utf8(text).unwrap().parse().unwrap(),
                None => 0,
            };
            *value = Some((current + 1).to_string().into_bytes());
            (KvInput::incr(key), KvOutput::Incremented(current + 1))
        }
        Kind::CompareAndSet => {
            let expected = match rng.below(3) {
                0 | 1 => value.clone(),
                _ => Some(NEVER_WRITTEN.to_vec()),
            };
            let new = fresh_value();
            let swapped = *value == expected;
            if swapped {
                *value = Some(new.clone());
            }
            let input = KvInput::compare_and_set(key, expected.as_deref(), new);
            (input, KvOutput::Swapped(swapped))
        }
    }
}

fn key_name(key: u64) -> String {
    format!("key{key}")
}

fn record(planned: Planned, input: KvInput, output: Option<KvOutput>) -> KvOperation {
    match output {
        Some(output) => Operation::completed(
            planned.client,
            planned.call_ns,
            input,
            planned.return_ns,
            output,
        ),
        None => Operation::unknown(planned.client, planned.call_ns, input),
    }
}

/// Stale reads called after a SET on their key had completed on the new leader: the value
/// they saw was produced once, before that SET took effect, so no order can place them.
fn count_provably_stale_reads(
    plan: &[Planned],
    history: &[KvOperation],
    deposed_at_ns: Option<u64>,
) -> usize {
    let Some(deposed_at_ns) = deposed_at_ns else {
        return 0;
    };
    let on_new_leader = |index: usize| match plan[index].fate {
        Fate::Applied { at_ns, replied } => replied && at_ns >= deposed_at_ns,
        _ => false,
    };
    plan.iter()
        .filter(|read| read.fate == Fate::Stale)
        .filter(|read| {
            let key = key_name(read.key).into_bytes();
            history.iter().enumerate().any(|(index, write)| {
                on_new_leader(index)
                    && is_completed_set(write, &key)
                    && return_ns(write) < read.call_ns
            })
        })
        .count()
}

fn is_completed_set(operation: &KvOperation, key: &[u8]) -> bool {
    operation.input.key == key
        && matches!(operation.input.command, KvCommand::Set(_))
        && operation.returned.is_some()
}

fn is_completed(operation: &KvOperation, key: &[u8], command: &KvCommand) -> bool {
    operation.input.key == key
        && std::mem::discriminant(&operation.input.command) == std::mem::discriminant(command)
        && operation.returned.is_some()
}

fn return_ns(operation: &KvOperation) -> u64 {
    operation.returned.as_ref().expect("completed").at_ns
}

/// Makes a completed GET return a value overwritten before it was called: SET W1 completed
/// before SET W2 was called, W2 completed before the GET was called, and the GET now returns
/// W1's value. W1 is the only writer of that value and took effect before W2, so the GET cannot
/// follow W2 and still see it. `None` if the history has no such triple.
fn mutate_stale_read(history: &[KvOperation]) -> Option<Vec<KvOperation>> {
    for (read_index, read) in history.iter().enumerate() {
        let key = &read.input.key;
        if !is_completed(read, key, &KvCommand::Get) {
            continue;
        }
        let Some(later) = history
            .iter()
            .filter(|write| is_completed_set(write, key) && return_ns(write) < read.call_ns)
            .max_by_key(|write| write.call_ns)
        else {
            continue;
        };
        let Some(earlier) = history
            .iter()
            .find(|write| is_completed_set(write, key) && return_ns(write) < later.call_ns)
        else {
            continue;
        };
        let KvCommand::Set(overwritten) = &earlier.input.command else {
            unreachable!("a SET")
        };
        let mut mutated = history.to_vec();
        mutated[read_index].returned.as_mut().unwrap().output =
            KvOutput::Value(Some(overwritten.clone()));
        return Some(mutated);
    }
    None
}

/// Makes the last completed GET return a value no operation wrote.
fn mutate_never_written(history: &[KvOperation]) -> Option<Vec<KvOperation>> {
    let index = history
        .iter()
        .rposition(|read| is_completed(read, &read.input.key, &KvCommand::Get))?;
    let mut mutated = history.to_vec();
    mutated[index].returned.as_mut().unwrap().output = KvOutput::value(Some(NEVER_WRITTEN));
    Some(mutated)
}

/// Makes a completed INCR return what another completed INCR on its key returned (a lost
/// update). Each value is produced once, so its predecessor exists once and only one INCR can
/// climb from it.
fn mutate_lost_incr(history: &[KvOperation]) -> Option<Vec<KvOperation>> {
    for (first_index, first) in history.iter().enumerate() {
        let key = &first.input.key;
        if !is_completed(first, key, &KvCommand::Incr) {
            continue;
        }
        let Some(second_index) = history.iter().enumerate().position(|(index, second)| {
            index != first_index
                && is_completed(second, key, &KvCommand::Incr)
                && second.returned != first.returned
        }) else {
            continue;
        };
        let mut mutated = history.to_vec();
        let first_output = first.returned.as_ref().unwrap().output.clone();
        mutated[second_index].returned.as_mut().unwrap().output = first_output;
        return Some(mutated);
    }
    None
}

/// Turns a legal history into a provably illegal one, if it has what the mutation needs.
type Mutation = fn(&[KvOperation]) -> Option<Vec<KvOperation>>;

fn assert_linearizable(seed: u64, history: &[KvOperation]) {
    match check(&KvModel, history, Limits::default()) {
        Outcome::Ok => {}
        Outcome::Illegal(illegal) => panic!("seed {seed}: a legal history rejected:\n{illegal}"),
        timeout => panic!("seed {seed}: {timeout:?}"),
    }
}

fn assert_illegal(seed: u64, what: &str, history: &[KvOperation]) {
    let outcome = check(&KvModel, history, Limits::default());
    assert!(
        outcome.is_illegal(),
        "seed {seed}: {what} not caught: {outcome:?}"
    );
}

const SEEDS: u64 = 200;

#[test]
fn generated_legal_histories_pass() {
    for seed in 0..SEEDS {
        let generated = generate(seed, Workload::small());
        assert_linearizable(seed, &generated.history);
    }
}

#[test]
fn generated_legal_histories_with_many_unknown_outcomes_pass() {
    let workload = Workload {
        unknown_percent: 25,
        ..Workload::small()
    };
    for seed in 0..SEEDS {
        assert_linearizable(seed, &generate(seed, workload).history);
    }
}

#[test]
fn mutated_histories_fail() {
    let mut mutated = [0usize; 3];
    for seed in 0..SEEDS {
        let history = generate(seed, Workload::small()).history;
        let mutations: [(&str, Mutation); 3] = [
            ("a read of an overwritten value", mutate_stale_read),
            ("a read of a value never written", mutate_never_written),
            ("a lost INCR", mutate_lost_incr),
        ];
        for (count, (what, mutate)) in mutated.iter_mut().zip(mutations) {
            if let Some(illegal) = mutate(&history) {
                assert_illegal(seed, what, &illegal);
                *count += 1;
            }
        }
    }
    // The mutations must actually have been tried on nearly every seed.
    for count in mutated {
        assert!(
            count as u64 >= SEEDS * 9 / 10,
            "mutated only {mutated:?} of {SEEDS}"
        );
    }
}

/// The bug class the checker exists for: after a partition the old leader, which does not
/// confirm it still leads before answering reads, serves reads from its copy while the new
/// leader takes writes.
#[test]
fn a_deposed_leader_serving_stale_reads_is_caught() {
    let broken = Workload {
        deposed_at_ns: Some(500),
        leader_checks_quorum: false,
        readers: 1,
        unknown_percent: 0,
        ..Workload::small()
    };
    let mut exercised = 0;
    let mut caught = 0;
    for seed in 0..SEEDS {
        let generated = generate(seed, broken);
        let outcome = check(&KvModel, &generated.history, Limits::default());
        if generated.provably_stale_reads > 0 {
            exercised += 1;
            assert!(
                outcome.is_illegal(),
                "seed {seed}: stale reads not caught: {outcome:?}"
            );
        }
        if let Outcome::Illegal(illegal) = &outcome {
            // The explanation points at the bug: the operation it cannot place is one of the
            // reads the deposed leader answered.
            assert!(
                generated.stale_reads.contains(&illegal.stuck.index),
                "seed {seed}: the explanation misses the stale reads:\n{illegal}"
            );
            caught += 1;
        }
    }
    assert!(
        exercised as u64 >= SEEDS * 9 / 10,
        "the bug showed in only {exercised} of {SEEDS} seeds"
    );
    assert!(caught >= exercised);

    // The same runs with a leader that confirms its leadership first are linearizable.
    let fixed = Workload {
        leader_checks_quorum: true,
        ..broken
    };
    for seed in 0..SEEDS {
        assert_linearizable(seed, &generate(seed, fixed).history);
    }
}

#[test]
fn generation_follows_the_seed() {
    let first = generate(7, Workload::small()).history;
    let again = generate(7, Workload::small()).history;
    assert_eq!(first, again);
    assert_ne!(first, generate(8, Workload::small()).history);
}

/// Sizes and times for docs, not a pass/fail benchmark:
/// `cargo test -p flin-replication --release large_generated_histories -- --ignored --nocapture`.
#[test]
#[ignore = "seconds to minutes; prints how long large histories take"]
fn large_generated_histories() {
    let cases = [
        (
            "all commands, 16 clients over 8 keys, 1% unknown",
            Mix::ALL,
            16,
            8,
            1,
        ),
        (
            "all commands, 8 clients on 1 key, 5% unknown",
            Mix::ALL,
            8,
            1,
            5,
        ),
        (
            "all commands, 8 clients on 1 key, 25% unknown",
            Mix::ALL,
            8,
            1,
            25,
        ),
        (
            "all commands, 16 clients on 1 key, 1% unknown",
            Mix::ALL,
            16,
            1,
            1,
        ),
        (
            "all commands, 24 clients on 1 key, no unknown",
            Mix::ALL,
            24,
            1,
            0,
        ),
        (
            "GET and SET, 8 clients on 1 key, 1% unknown",
            Mix::SETS,
            8,
            1,
            1,
        ),
        (
            "GET and SET, 12 clients on 1 key, no unknown",
            Mix::SETS,
            12,
            1,
            0,
        ),
        (
            "GET and SET, 16 clients on 1 key, no unknown",
            Mix::SETS,
            16,
            1,
            0,
        ),
        (
            "GET and INCR, 32 clients on 1 key, no unknown",
            Mix::INCRS,
            32,
            1,
            0,
        ),
        (
            "GET and INCR, 4 clients on 1 key, 5% unknown",
            Mix::INCRS,
            4,
            1,
            5,
        ),
        (
            "GET and INCR, 8 clients on 1 key, 1% unknown",
            Mix::INCRS,
            8,
            1,
            1,
        ),
    ];
    for (what, mix, clients, keys, unknown_percent) in cases {
        for operations_per_client in [1_000, 10_000] {
            let workload = Workload {
                clients,
                operations_per_client,
                keys,
                mix,
                unknown_percent,
                ..Workload::small()
            };
            let history = generate(1, workload).history;
            let started = std::time::Instant::now();
            let outcome = check(&KvModel, &history, Limits::default());
            let elapsed = started.elapsed();
            let verdict = match &outcome {
                Outcome::Ok => "Ok".to_owned(),
                other => format!("{other:?}"),
            };
            eprintln!(
                "{what}: {} operations: {verdict} in {:.3} s",
                history.len(),
                elapsed.as_secs_f64()
            );
        }
    }
}
