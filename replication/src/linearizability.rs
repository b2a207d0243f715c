//! A linearizability checker for client histories: did a (replicated) store behave like one
//! copy of the data, each operation taking effect at one instant between its call and its return?
//!
//! # Layout
//! - this file: the [`Model`] seam (what a correct single copy does), the history
//!   ([`Operation`], [`Returned`]), the [`Limits`] of a check and its [`Outcome`], and [`check`],
//!   which splits a history into independent parts and checks each.
//! - `search`: the search for a legal order of one part (Wing & Gong, with Lowe's just-in-time
//!   linearization and memoization, and reads first), and the explanation it builds when there
//!   is none.
//! - `kv`: [`KvModel`], a key-value register per key with GET, SET, INCR and compare-and-set.
//!
//! # Use
//! A harness records, for each client operation, the time it sent the request, the input, and
//! the time and content of the reply, or no reply ([`Operation::unknown`]) when the client gave
//! up; then calls `check(&KvModel, &history, Limits::default())`. [`Outcome::Illegal`] prints
//! (`Display`) the last operations of the longest legal order found and the one that could
//! not follow them.
//!
//! # The algorithm
//! A history is linearizable if its operations can be put in one sequential order that (a) the
//! model accepts, every operation producing the output the client saw, and (b) respects real
//! time: if A returned before B was called, A comes before B. The check is Porcupine's
//! (Athalye's Go checker), which follows Lowe, "Testing for linearizability" (2017), itself Wing &
//! Gong's 1993 search made practical:
//!
//! 1. **P-compositionality.** Linearizability is local (Herlihy & Wing): a history is
//!    linearizable if and only if each object's sub-history is. [`Model::part`] names the object
//!    an operation touches (for [`KvModel`], its key) and each part is searched on its own, so the
//!    cost grows with the concurrency on one key, not with the size of the whole history.
//! 2. **Just-in-time linearization.** Calls and returns are laid out in time order in a doubly
//!    linked list. The search walks it from the front: at a call, it tries to linearize that
//!    operation now (the model must accept its output from the current state); if that works,
//!    the call and its return are lifted out of the list and the walk restarts from the front.
//!    At a return, the operation returning has not been linearized yet although it must have
//!    taken effect by now: every choice since the last decision is exhausted, so the search
//!    backtracks (pops the last linearized operation, restores the state and the two entries,
//!    and tries the next call after it). The list is empty: a legal order was found. The search
//!    backtracks past the first decision: there is none.
//! 3. **Memoization.** Two paths that have linearized the same *set* of operations and reached
//!    the same model state have the same future, so each (set, state) pair is explored once.
//!    Operations are numbered in call order, so a set is almost always "everything before some
//!    point, plus a few": it is stored as the index of its first non-full 64-bit word and the
//!    words from there to its last set bit, a few words however long the history.
//! 4. **Reads first** (ours; Lowe's argument). A pending operation that changes no state
//!    ([`Model::is_read_only`]: a GET, a compare-and-set that failed, a refused INCR) and whose
//!    output fits the current state is linearized at once, and the other choices at that point
//!    are not tried: any legal order that places it later stays legal with it moved here,
//!    since it was already called, every remaining operation returns after that, and it leaves
//!    every state as it found it. On one key with 16 clients this cut a check from 6.9 s to
//!    0.4 s. A test compares every verdict with a brute-force search over all orders.
//!
//! # Unknown outcomes
//! An operation whose client never saw a reply (it timed out, the connection or the server
//! died) may or may not have taken effect. As in Porcupine and Knossos, its return is placed
//! after every other event and any output is accepted: the search may linearize it anywhere
//! after its call, and linearizing it after everything else is the same as never. An unknown
//! operation that cannot change the state ([`Model::is_read_only`], e.g. a GET) constrains
//! nothing and is dropped before the search.
//!
//! Each unknown write stays a candidate at every point until the end of the history, so a key
//! where a failover left tens of them in flight multiplies the configurations by every subset
//! of them linearized so far: real-process histories ran out of their step budget on such a
//! key (docs/reliability.md). Two rules, for a write whose effect no other operation of the
//! part can produce ([`Model::sole_writes`]: it leaves state `w`, which is not the initial
//! state), so that the state is `w` only after it took effect:
//! - **Seen: its return is bounded.** If completed operations were possible only from `w`
//!   ([`Model::only_from`]: a GET that returned its value), it took effect before the first of
//!   them returned: its return is placed there instead of at the end. Exact (sound and
//!   complete): every legal order already has it there.
//! - **Never seen: left out first.** Leaving out an unknown operation is one of the outcomes
//!   it may have had, so a legal order without the unseen ones is a legal order of the
//!   history: the part is searched without them first, and only if that finds none (an unseen
//!   write can still explain, say, a compare-and-set that failed) searched again with them,
//!   under a budget of its own.
//!
//! # Time
//! Times are nanoseconds from one clock that every client shares (in the simulator, its clock;
//! across processes, a monotonic clock on one machine). Intervals are closed: an operation
//! called at the instant another returned is concurrent with it, not after it, so equal
//! timestamps never make a history illegal. A call recorded after the request was sent, or a
//! return recorded before the reply arrived, would make the checker claim more order than there
//! was: record the call before sending and the return after receiving.
//!
//! # Limits
//! - The search is exponential in the worst case (the problem is NP-complete, Gibbons &
//!   Korach 1997). It is near linear when few operations on one key overlap. It slows down
//!   with the number of blind writes (SET) on one key in flight at once, whose order only
//!   later reads pin down, and with the number of lost (unknown-outcome) INCRs on one key:
//!   each stays a candidate until the end of the history, so the cost grows with the
//!   operations after them times their number. Measured on generated legal histories (each
//!   client busy about 75% of the time; "all commands" is 40% GET, 25% SET, 20% INCR, 15%
//!   CAS; 2-core AMD EPYC VM shared with other builds; `cargo test -p flin-replication
//!   --release large_generated_histories -- --ignored --nocapture`):
//!
//!   | history | operations | time |
//!   |---|---|---|
//!   | all commands, 16 clients over 8 keys, 1% unknown | 160,000 | 0.23 s |
//!   | all commands, 8 clients on 1 key, 25% unknown | 80,000 | 0.91 s |
//!   | all commands, 16 clients on 1 key, 1% unknown | 160,000 | 9.1 s |
//!   | all commands, 24 clients on 1 key | 24,000 | Timeout (50M steps, 8 s) |
//!   | GET and SET, 12 clients on 1 key | 120,000 | 14 s |
//!   | GET and SET, 16 clients on 1 key | 16,000 | 16 s; 160,000: Timeout |
//!   | GET and INCR, 32 clients on 1 key | 320,000 | 0.98 s |
//!   | GET and INCR, 4 clients on 1 key, 5% unknown | 4,000 | 0.5 s; 40,000: Timeout |
//!
//!   Unknown writes of values only they write no longer linger (the two rules under "Unknown
//!   outcomes"): 24 of them in flight before a successful swap are decided within 2 M steps,
//!   where the plain search (`Limits::unknown_write_rules` off) runs out
//!   (`unknown_writes_left_by_a_failover_do_not_exhaust_the_budget`). An illegal part gets no
//!   such help: its second search has every unknown write in it.
//!
//!   So a harness should spread its clients over keys (a few in flight per key) and move to a
//!   fresh key every few thousand operations, as Jepsen's independent-keys workloads do, and
//!   write unique values so that a read pins where a write went.
//! - Every check runs under [`Limits`]: a budget of search steps for each part
//!   (deterministic: the same history always ends the same way), an optional wall-clock limit
//!   for the whole check, and a bound on the memory a part's memo table may take. A part that
//!   exceeds one is left undecided and the other parts are still checked: an illegal part
//!   anywhere gives [`Outcome::Illegal`]; otherwise [`Outcome::Timeout`] says nothing either
//!   way about the history.
//! - [`Outcome::Illegal`] is exact (a legal order does not exist); the explanation is the
//!   deepest point the search reached, which is usually but not always where the bug is.
//! - Only what clients saw is checked. A write that no read observes can be lost without the
//!   checker noticing; the harness must read what it wrote (and check durability apart).

pub mod kv;
mod search;
#[cfg(test)]
mod tests;

use std::fmt;
use std::hash::Hash;
use std::time::{Duration, Instant};

pub use kv::{KvCommand, KvInput, KvKey, KvModel, KvOutput, KvState};

/// What one correct, single copy of the data does: the specification a history is checked
/// against.
///
/// The model must be deterministic given the state and the output: `step` returns the one state
/// an operation leads to, or `None` if the output the client saw is impossible from `state`.
pub trait Model {
    /// The independent object an operation touches (a key). Operations on different parts never
    /// constrain each other, so each part is checked on its own (P-compositionality).
    type Part: Ord + Clone + fmt::Debug;
    /// What the client asked. Equal inputs must do the same thing: the search treats two
    /// unknown-outcome operations with equal inputs as interchangeable.
    type Input: Clone + Eq + Hash + fmt::Debug;
    /// What the client was told.
    type Output: Clone + fmt::Debug;
    /// The state of one part. Equal states must have equal futures: the memo table relies on it.
    type State: Clone + Eq + Hash + fmt::Debug;

    /// The part `input` touches.
    fn part(&self, input: &Self::Input) -> Self::Part;

    /// The state of a part that no operation has touched yet.
    fn init(&self) -> Self::State;

    /// The state after applying `input` to `state`, if the store could have answered `output`;
    /// `output` is `None` when the outcome is unknown (any output is accepted). `None` if the
    /// output is impossible from `state`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;

    /// True if `input`, answered `output` (`None`: unknown), changes no state whatever the
    /// state (a read; a compare-and-set that failed). Such an operation with an unknown outcome
    /// is dropped, and a pending one whose output fits the state is linearized at once
    /// without trying the alternatives. Answering false is always correct, only slower.
    fn is_read_only(&self, input: &Self::Input, output: Option<&Self::Output>) -> bool {
        let _ = (input, output);
        false
    }

    /// For each operation of one part (`inputs`, in any order), the state it leaves whenever it
    /// takes effect and changes the state, if no other operation of the part can leave that
    /// state and it is not the initial one (a SET of a value nothing else writes, nor an INCR
    /// could reach): then the state is that only after the operation took effect. With
    /// [`Model::only_from`] it lets the check tie an unknown-outcome write to what others saw
    /// of it (see "Unknown outcomes" in the module doc). `None` is always correct, only
    /// slower; the default answers `None` for every operation.
    fn sole_writes(&self, inputs: &[&Self::Input]) -> Vec<Option<Self::State>> {
        vec![None; inputs.len()]
    }

    /// True if `input` answered `output` is possible only from `state` (a GET that returned
    /// it; a compare-and-set that succeeded expecting it; an INCR that answered one more). Answering false is always correct,
    /// only slower.
    fn only_from(&self, input: &Self::Input, output: &Self::Output, state: &Self::State) -> bool {
        let _ = (input, output, state);
        false
    }
}

/// One client operation: what was asked, when, and what came back (if anything did).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// The client that issued it. Only for explanations: the check does not assume a client
    /// waits for one operation before the next (after a timeout it does not).
    pub client: u64,
    /// When the request was sent, in ns on the history's clock.
    pub call_ns: u64,
    /// What was asked.
    pub input: I,
    /// The reply, or `None` if the outcome is unknown: the operation may have taken effect at
    /// any point after its call, or never.
    pub returned: Option<Returned<O>>,
}

/// The reply to an [`Operation`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Returned<O> {
    /// When the reply was received, in ns on the history's clock; never before the call.
    pub at_ns: u64,
    /// What the store answered.
    pub output: O,
}

impl<I, O> Operation<I, O> {
    /// An operation whose reply arrived at `return_ns`.
    pub fn completed(client: u64, call_ns: u64, input: I, return_ns: u64, output: O) -> Self {
        Operation {
            client,
            call_ns,
            input,
            returned: Some(Returned {
                at_ns: return_ns,
                output,
            }),
        }
    }

    /// An operation whose outcome is unknown (no reply).
    pub fn unknown(client: u64, call_ns: u64, input: I) -> Self {
        Operation {
            client,
            call_ns,
            input,
            returned: None,
        }
    }
}

/// How much a check may spend before it gives up with [`Outcome::Timeout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Search steps (one call tried or one backtrack) in one part. Deterministic. Per part, so
    /// that one hard key cannot keep the others from being checked.
    pub steps_max: u64,
    /// Wall-clock time over all parts, if set. Not deterministic: for interactive tools.
    pub time_max: Option<Duration>,
    /// Approximate bytes the memo table of one part may hold (set words, state, overhead; not
    /// what a state points to on the heap).
    pub memo_bytes_max: u64,
    /// Apply the rules for unknown-outcome writes ("Unknown outcomes" in the module doc). On
    /// by default; off, every unknown write is searched to the end of the history, as before
    /// the rules (to compare the two on one history: `flin-clustertest --recheck --plain`).
    pub unknown_write_rules: bool,
}

impl Limits {
    /// Search steps allowed a part by default: a legal part costs a few steps per operation
    /// plus its backtracks, so this is room for millions of operations (about 10 s).
    pub const STEPS_MAX_DEFAULT: u64 = 50_000_000;
    /// Memo table bytes allowed by default.
    pub const MEMO_BYTES_MAX_DEFAULT: u64 = 1 << 30;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            steps_max: Limits::STEPS_MAX_DEFAULT,
            time_max: None,
            memo_bytes_max: Limits::MEMO_BYTES_MAX_DEFAULT,
            unknown_write_rules: true,
        }
    }
}

/// The verdict on a history.
#[derive(Debug)]
pub enum Outcome<M: Model> {
    /// Every part has a legal order: the history is linearizable.
    Ok,
    /// A part has no legal order (the first such part, in [`Model::Part`] order), whatever
    /// became of the others.
    Illegal(Box<Illegal<M>>),
    /// No part is illegal as far as the search got, but a limit ran out in at least one, so
    /// the history may or may not be linearizable.
    Timeout {
        /// The first part (in [`Model::Part`] order) where a limit ran out.
        part: M::Part,
        /// Which limit.
        exhausted: Exhausted,
    },
}

impl<M: Model> Outcome<M> {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }

    pub fn is_illegal(&self) -> bool {
        matches!(self, Outcome::Illegal(_))
    }
}

/// The limit that ended a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exhausted {
    Steps,
    Time,
    Memory,
}

/// Why a part has no legal order, as far as the search got: the longest legal prefix it built
/// and the operation it could not place after it.
#[derive(Debug)]
pub struct Illegal<M: Model> {
    /// The part (key) with no legal order.
    pub part: M::Part,
    /// How many operations of the part the deepest legal prefix held.
    pub linearized: usize,
    /// Its last few operations, oldest first, each with the state it left.
    pub last_linearized: Vec<Linearized<M>>,
    /// The state at the end of that prefix.
    pub state: M::State,
    /// The operation that returned before any order could place it: it must come next, or one
    /// of `pending` before it, and none of them could (or each led to a dead end).
    pub stuck: Cited<M>,
    /// Operations called before `stuck` returned and not in the prefix (`stuck` among them),
    /// the first few in call order.
    pub pending: Vec<Cited<M>>,
}

/// An operation of the history, with its index in the slice given to [`check`].
#[derive(Debug)]
pub struct Cited<M: Model> {
    pub index: usize,
    pub operation: Operation<M::Input, M::Output>,
}

/// An operation placed in a legal prefix, and the state after it.
#[derive(Debug)]
pub struct Linearized<M: Model> {
    pub index: usize,
    pub operation: Operation<M::Input, M::Output>,
    pub state_after: M::State,
}

/// How many operations an explanation quotes from the prefix, and from the pending ones.
pub const EXPLANATION_OPERATIONS_MAX: usize = 8;

/// Checks `history` against `model` within `limits`.
///
/// Panics if the history is malformed (a return before its call): that is a bug in whatever
/// recorded it, not a property of the store.
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    limits: Limits,
) -> Outcome<M> {
    for (index, operation) in history.iter().enumerate() {
        if let Some(returned) = &operation.returned {
            assert!(
                returned.at_ns >= operation.call_ns,
                "history operation {index} returns at {} ns, before its call at {} ns",
                returned.at_ns,
                operation.call_ns
            );
        }
    }
    let started = Instant::now();
    let mut first_timeout = None;
    for (part, indices) in partition(model, history) {
        let unknown = match limits.unknown_write_rules {
            true => unknown_writes(model, history, &indices),
            false => UnknownWrites::none(),
        };
        if !unknown.unseen.is_empty() {
            let seen_only: Vec<usize> = indices
                .iter()
                .copied()
                .filter(|index| !unknown.unseen.contains(index))
                .collect();
            let mut budget = search::Budget::new(limits, started);
            let outcome =
                search::check_part(model, history, &seen_only, &unknown.returns, &mut budget);
            if matches!(outcome, search::PartOutcome::Ok) {
                continue;
            }
        }
        let mut budget = search::Budget::new(limits, started);
        match search::check_part(model, history, &indices, &unknown.returns, &mut budget) {
            search::PartOutcome::Ok => {}
            search::PartOutcome::Illegal(found) => {
                return Outcome::Illegal(Box::new(found.cite::<M>(part, history)))
            }
            search::PartOutcome::Timeout(exhausted) => {
                first_timeout.get_or_insert(Outcome::Timeout { part, exhausted });
            }
        }
    }
    first_timeout.unwrap_or(Outcome::Ok)
}

/// The unknown-outcome writes of one part whose effect only they produce (see "Unknown
/// outcomes" in the module doc).
struct UnknownWrites {
    /// Those some completed operation saw: history index -> the latest it may return at (the
    /// first return of an operation possible only from the state it leaves).
    returns: std::collections::HashMap<usize, u64>,
    /// Those no completed operation saw (history indices).
    unseen: std::collections::HashSet<usize>,
}

impl UnknownWrites {
    fn none() -> UnknownWrites {
        UnknownWrites {
            returns: Default::default(),
            unseen: Default::default(),
        }
    }
}

fn unknown_writes<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    indices: &[usize],
) -> UnknownWrites {
    let mut unknown = UnknownWrites::none();
    let init = model.init();
    let inputs: Vec<&M::Input> = indices.iter().map(|&index| &history[index].input).collect();
    let sole = model.sole_writes(&inputs);
    for (&index, written) in indices.iter().zip(sole) {
        let operation = &history[index];
        if operation.returned.is_some() {
            continue;
        }
        let Some(written) = written.filter(|written| *written != init) else {
            continue;
        };
        let first_seen = indices
            .iter()
            .filter_map(|&other| {
                let returned = history[other].returned.as_ref()?;
                model
                    .only_from(&history[other].input, &returned.output, &written)
                    .then_some(returned.at_ns)
            })
            .min();
        match first_seen {
            // Seen before it was called: no legal order, which the search reports.
            Some(at_ns) => {
                unknown.returns.insert(index, at_ns.max(operation.call_ns));
            }
            None => {
                unknown.unseen.insert(index);
            }
        }
    }
    unknown
}

/// The operations of each part, as indices into `history` in history order, without the
/// unknown-outcome reads (they constrain nothing).
fn partition<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
) -> std::collections::BTreeMap<M::Part, Vec<usize>> {
    let mut parts: std::collections::BTreeMap<M::Part, Vec<usize>> = Default::default();
    for (index, operation) in history.iter().enumerate() {
        if operation.returned.is_none() && model.is_read_only(&operation.input, None) {
            continue;
        }
        parts
            .entry(model.part(&operation.input))
            .or_default()
            .push(index);
    }
    parts
}

impl<M: Model> fmt::Display for Illegal<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "not linearizable: part {:?}: after {} operations in a legal order, in state {:?}, \
             none of the operations pending could go next",
            self.part, self.linearized, self.state
        )?;
        writeln!(f, "  the legal order ends with:")?;
        for step in &self.last_linearized {
            writeln!(
                f,
                "    {}; then {:?}",
                describe(step.index, &step.operation),
                step.state_after
            )?;
        }
        writeln!(
            f,
            "  must be placed next (it returned), or one of the pending before it:"
        )?;
        writeln!(
            f,
            "    {}",
            describe(self.stuck.index, &self.stuck.operation)
        )?;
        writeln!(f, "  pending:")?;
        for cited in &self.pending {
            writeln!(f, "    {}", describe(cited.index, &cited.operation))?;
        }
        Ok(())
    }
}

fn describe<I: fmt::Debug, O: fmt::Debug>(index: usize, operation: &Operation<I, O>) -> String {
    match &operation.returned {
        Some(returned) => format!(
            "#{index} client {} [{}..{}] ns {:?} -> {:?}",
            operation.client, operation.call_ns, returned.at_ns, operation.input, returned.output
        ),
        None => format!(
            "#{index} client {} [{}..?] ns {:?} -> unknown",
            operation.client, operation.call_ns, operation.input
        ),
    }
}
