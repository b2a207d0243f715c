//! The search for a legal order of one part: Wing & Gong's backtracking over the calls and
//! returns in time order, with Lowe's just-in-time linearization and a memo of
//! (linearized set, state) pairs. See the parent module for the algorithm.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::mem;
use std::time::Instant;

use super::EXPLANATION_OPERATIONS_MAX;
use super::{Cited, Exhausted, Illegal, Limits, Linearized, Model, Operation};

/// What is left of a check's [`Limits`] for one part (the wall clock runs from the check's
/// start).
pub(super) struct Budget {
    limits: Limits,
    steps: u64,
    started: Instant,
}

/// How often (in steps) the wall clock is read, so a step stays a few nanoseconds.
const STEPS_BETWEEN_CLOCK_READS: u64 = 4096;

impl Budget {
    pub(super) fn new(limits: Limits, started: Instant) -> Budget {
        Budget {
            limits,
            steps: 0,
            started,
        }
    }

    /// Takes one step, or says which limit forbids it.
    fn spend_step(&mut self) -> Result<(), Exhausted> {
        if self.steps >= self.limits.steps_max {
            return Err(Exhausted::Steps);
        }
        self.steps += 1;
        if let Some(time_max) = self.limits.time_max {
            if self.steps.is_multiple_of(STEPS_BETWEEN_CLOCK_READS)
                && self.started.elapsed() > time_max
            {
                return Err(Exhausted::Time);
            }
        }
        Ok(())
    }
}

pub(super) enum PartOutcome<S> {
    Ok,
    Illegal(Found<S>),
    Timeout(Exhausted),
}

/// The deepest point the search reached in a part with no legal order, with history indices.
pub(super) struct Found<S> {
    linearized: usize,
    /// The last few operations of the prefix, oldest first, with the state after each.
    last_linearized: Vec<(usize, S)>,
    state: S,
    stuck: usize,
    pending: Vec<usize>,
}

impl<S> Found<S> {
    pub(super) fn cite<M: Model<State = S>>(
        self,
        part: M::Part,
        history: &[Operation<M::Input, M::Output>],
    ) -> Illegal<M> {
        let cite = |index: usize| Cited {
            index,
            operation: history[index].clone(),
        };
        Illegal {
            part,
            linearized: self.linearized,
            last_linearized: self
                .last_linearized
                .into_iter()
                .map(|(index, state_after)| Linearized {
                    index,
                    operation: history[index].clone(),
                    state_after,
                })
                .collect(),
            state: self.state,
            stuck: cite(self.stuck),
            pending: self.pending.into_iter().map(cite).collect(),
        }
    }
}

/// Searches the operations `indices` of `history` (one part) for a legal order. `returns`
/// places the return of some unknown-outcome operations (history index -> ns) instead of at
/// the end (`UnknownWrites`).
pub(super) fn check_part<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    indices: &[usize],
    returns: &HashMap<usize, u64>,
    budget: &mut Budget,
) -> PartOutcome<M::State> {
    let mut search = Search::new(
        model,
        history,
        indices,
        returns,
        budget.limits.memo_bytes_max,
    );
    match search.run(budget) {
        Ok(true) => PartOutcome::Ok,
        Ok(false) => PartOutcome::Illegal(search.deepest.expect("a dead end was recorded")),
        Err(exhausted) => PartOutcome::Timeout(exhausted),
    }
}

/// The state of the search in one part.
struct Search<'a, M: Model> {
    model: &'a M,
    history: &'a [Operation<M::Input, M::Output>],
    /// History indices by local number, in call order: a linearized set is then mostly a full
    /// prefix of bits, and its memo key stays a few words long.
    operations: Vec<usize>,
    entries: Entries,
    /// For an operation with an unknown outcome, the last one called before it with the same
    /// input and an unknown outcome too (see `Search::new`).
    unknown_twin_before: Vec<Option<usize>>,
    linearized: OperationSet,
    /// The (linearized set, state) pairs already reached; every one not on the current path
    /// has no legal completion.
    memo: HashSet<(MemoKey, M::State)>,
    memo_bytes: u64,
    memo_bytes_max: u64,
    /// The current path, first decision first.
    stack: Vec<Decision<M::State>>,
    state: M::State,
    /// The dead end at the deepest point so far, for the explanation.
    deepest: Option<Found<M::State>>,
}

/// An operation linearized on the current path.
struct Decision<S> {
    operation: usize,
    /// The state before it, restored when it is undone.
    state_before: S,
    /// It changes no state: it was linearized as soon as it could be, which is never worse
    /// than later, so undoing it means the configuration before it is a dead end too.
    read_only: bool,
}

/// What trying to linearize one operation next gave.
enum Tried {
    Linearized,
    /// Legal, but the configuration it leads to was explored before (and failed).
    Explored,
    /// The model refuses its output from the current state.
    Refused,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(
        model: &'a M,
        history: &'a [Operation<M::Input, M::Output>],
        indices: &[usize],
        returns: &HashMap<usize, u64>,
        memo_bytes_max: u64,
    ) -> Self {
        let mut operations = indices.to_vec();
        operations.sort_by_key(|&index| (history[index].call_ns, index));
        Search {
            model,
            history,
            entries: Entries::new(history, &operations, returns),
            unknown_twin_before: unknown_twins(history, &operations),
            linearized: OperationSet::new(operations.len()),
            operations,
            memo: HashSet::new(),
            memo_bytes: 0,
            memo_bytes_max,
            stack: Vec::new(),
            state: model.init(),
            deepest: None,
        }
    }

    /// True if a legal order exists, false if not.
    fn run(&mut self, budget: &mut Budget) -> Result<bool, Exhausted> {
        // At a configuration just reached, a pending read consistent with the state goes
        // first (see `linearize_a_read`); then the calls are walked in time order.
        let mut just_reached = true;
        let mut entry = self.entries.first();
        while !self.entries.is_empty() {
            if just_reached {
                just_reached = false;
                match self.linearize_a_read(budget)? {
                    Some(Tried::Linearized) => {
                        just_reached = true;
                        continue;
                    }
                    Some(Tried::Explored) => match self.backtrack() {
                        Some(next) => {
                            entry = next;
                            continue;
                        }
                        None => return Ok(false),
                    },
                    Some(Tried::Refused) | None => entry = self.entries.first(),
                }
            }
            budget.spend_step()?;
            assert!(
                entry != self.entries.head(),
                "the walk passed every entry without meeting a return"
            );
            if Entries::is_call(entry) {
                match self.try_linearize(entry / 2)? {
                    Tried::Linearized => just_reached = true,
                    Tried::Explored | Tried::Refused => entry = self.entries.next(entry),
                }
            } else {
                // This operation has returned but is not linearized, and no call before it
                // leads anywhere: a dead end.
                self.note_dead_end(entry);
                match self.backtrack() {
                    Some(next) => entry = next,
                    None => return Ok(false),
                }
            }
        }
        Ok(true)
    }

    /// Linearizes the first pending operation that changes no state and whose output fits the
    /// state, if there is one. Doing so at once is never worse than later (Lowe's argument for
    /// reads): any legal completion with it later stays legal with it moved here, as it is
    /// pending (called before every remaining return) and leaves every state as it was. So the
    /// other choices at this configuration need not be tried.
    fn linearize_a_read(&mut self, budget: &mut Budget) -> Result<Option<Tried>, Exhausted> {
        let mut entry = self.entries.first();
        while Entries::is_call(entry) {
            budget.spend_step()?;
            let local = entry / 2;
            let operation = &self.history[self.operations[local]];
            if self.model.is_read_only(&operation.input, output(operation)) {
                match self.try_linearize(local)? {
                    Tried::Refused => {}
                    tried => return Ok(Some(tried)),
                }
            }
            entry = self.entries.next(entry);
        }
        Ok(None)
    }

    fn try_linearize(&mut self, local: usize) -> Result<Tried, Exhausted> {
        if let Some(twin) = self.unknown_twin_before[local] {
            if !self.linearized.contains(twin) {
                return Ok(Tried::Refused);
            }
        }
        let operation = &self.history[self.operations[local]];
        let output = output(operation);
        let Some(next_state) = self.model.step(&self.state, &operation.input, output) else {
            return Ok(Tried::Refused);
        };
        self.linearized.insert(local);
        let key = self.linearized.memo_key();
        let key_bytes = key.bytes::<M::State>();
        if !self.memo.insert((key, next_state.clone())) {
            self.linearized.remove(local);
            return Ok(Tried::Explored);
        }
        self.memo_bytes += key_bytes;
        if self.memo_bytes > self.memo_bytes_max {
            return Err(Exhausted::Memory);
        }
        let read_only = self.model.is_read_only(&operation.input, output);
        self.stack.push(Decision {
            operation: local,
            state_before: mem::replace(&mut self.state, next_state),
            read_only,
        });
        self.entries.lift(local);
        Ok(Tried::Linearized)
    }

    /// Undoes decisions up to and including the last one that was a choice, and returns the
    /// entry after its call (the next alternative), or `None` if no choice is left.
    fn backtrack(&mut self) -> Option<usize> {
        loop {
            let decision = self.stack.pop()?;
            self.state = decision.state_before;
            self.linearized.remove(decision.operation);
            self.entries.unlift(decision.operation);
            if !decision.read_only {
                return Some(self.entries.next(Entries::call_of(decision.operation)));
            }
        }
    }

    /// Records the dead end at return `entry` if it is the deepest so far.
    fn note_dead_end(&mut self, entry: usize) {
        let deeper = match &self.deepest {
            Some(found) => self.stack.len() > found.linearized,
            None => true,
        };
        if deeper {
            self.deepest = Some(snapshot(
                &self.entries,
                &self.operations,
                &self.stack,
                &self.state,
                entry,
            ));
        }
    }
}

/// For each operation (local number) with an unknown outcome, the last one called before it
/// with an equal input and an unknown outcome, which must be linearized first.
///
/// Such twins are interchangeable: both may go anywhere after their calls (their returns are
/// at the end), accept any output and do the same thing, so in any legal order the earlier
/// called can take the earlier of their two places. Trying only that order turns the subsets
/// of k lost INCRs on a key (2^k sets, k + 1 states) into k + 1 configurations.
fn unknown_twins<I: Eq + Hash, O>(
    history: &[Operation<I, O>],
    operations: &[usize],
) -> Vec<Option<usize>> {
    let mut last_unknown_with_input: HashMap<&I, usize> = HashMap::new();
    operations
        .iter()
        .enumerate()
        .map(|(local, &index)| {
            let operation = &history[index];
            if operation.returned.is_some() {
                return None;
            }
            last_unknown_with_input.insert(&operation.input, local)
        })
        .collect()
}

fn output<I, O>(operation: &Operation<I, O>) -> Option<&O> {
    operation.returned.as_ref().map(|returned| &returned.output)
}

/// The explanation at a dead end: the prefix on `stack`, the state, the operation whose return
/// `entry` is, and the calls still in the list before it.
fn snapshot<S: Clone>(
    entries: &Entries,
    operations: &[usize],
    stack: &[Decision<S>],
    state: &S,
    entry: usize,
) -> Found<S> {
    let tail_start = stack.len().saturating_sub(EXPLANATION_OPERATIONS_MAX);
    let last_linearized = (tail_start..stack.len())
        .map(|position| {
            let state_after = match stack.get(position + 1) {
                Some(next) => next.state_before.clone(),
                None => state.clone(),
            };
            (operations[stack[position].operation], state_after)
        })
        .collect();
    let mut pending = Vec::new();
    let mut walk = entries.first();
    while walk != entry && pending.len() < EXPLANATION_OPERATIONS_MAX {
        debug_assert!(
            Entries::is_call(walk),
            "only calls precede the first return"
        );
        pending.push(operations[walk / 2]);
        walk = entries.next(walk);
    }
    Found {
        linearized: stack.len(),
        last_linearized,
        state: state.clone(),
        stuck: operations[entry / 2],
        pending,
    }
}

/// The calls and returns of one part in time order, as a circular doubly linked list over
/// arrays (dancing links): entry `2k` is operation `k`'s call, `2k + 1` its return, and the
/// last slot is the head. Lifting an operation unlinks both its entries; unlifting relinks them
/// from the links they kept, in the reverse order.
struct Entries {
    next: Vec<usize>,
    previous: Vec<usize>,
}

impl Entries {
    fn new<I, O>(
        history: &[Operation<I, O>],
        operations: &[usize],
        returns: &HashMap<usize, u64>,
    ) -> Entries {
        let count = operations.len() * 2;
        let head = count;
        // Sort key: (outcome unknown, time, return after call, operation). Unknown returns go
        // after everything unless `returns` places them; at equal times calls come first, so
        // touching intervals overlap.
        let mut order: Vec<usize> = (0..count).collect();
        order.sort_by_key(|&entry| {
            let index = operations[entry / 2];
            let operation = &history[index];
            if Entries::is_call(entry) {
                (false, operation.call_ns, false, entry / 2)
            } else {
                match (&operation.returned, returns.get(&index)) {
                    (Some(returned), _) => (false, returned.at_ns, true, entry / 2),
                    (None, Some(&at_ns)) => (false, at_ns, true, entry / 2),
                    (None, None) => (true, 0, true, entry / 2),
                }
            }
        });
        let mut next = vec![head; count + 1];
        let mut previous = vec![head; count + 1];
        let mut last = head;
        for &entry in &order {
            next[last] = entry;
            previous[entry] = last;
            last = entry;
        }
        next[last] = head;
        previous[head] = last;
        Entries { next, previous }
    }

    fn head(&self) -> usize {
        self.next.len() - 1
    }

    fn first(&self) -> usize {
        self.next[self.head()]
    }

    fn next(&self, entry: usize) -> usize {
        self.next[entry]
    }

    fn is_empty(&self) -> bool {
        self.first() == self.head()
    }

    fn is_call(entry: usize) -> bool {
        entry.is_multiple_of(2)
    }

    fn call_of(operation: usize) -> usize {
        operation * 2
    }

    fn lift(&mut self, operation: usize) {
        self.unlink(operation * 2);
        self.unlink(operation * 2 + 1);
    }

    fn unlift(&mut self, operation: usize) {
        self.relink(operation * 2 + 1);
        self.relink(operation * 2);
    }

    fn unlink(&mut self, entry: usize) {
        let (previous, next) = (self.previous[entry], self.next[entry]);
        self.next[previous] = next;
        self.previous[next] = previous;
    }

    fn relink(&mut self, entry: usize) {
        let (previous, next) = (self.previous[entry], self.next[entry]);
        self.next[previous] = entry;
        self.previous[next] = entry;
    }
}

/// The set of linearized operations (local numbers), with the exact count of leading full
/// words and of words up to the last set bit kept up to date, so its memo key is cheap.
struct OperationSet {
    words: Vec<u64>,
    /// `words[..full_below]` are all ones and `words[full_below]` is not.
    full_below: usize,
    /// `words[used_below..]` are all zero and `words[used_below - 1]` is not.
    used_below: usize,
}

/// A linearized set as a memo key: how many leading words are full, then the words from there
/// to the last set bit. Canonical: equal sets give equal keys.
#[derive(Clone, PartialEq, Eq, Hash)]
struct MemoKey {
    full_below: u32,
    words: Box<[u64]>,
}

impl MemoKey {
    /// Approximate bytes a memo entry with this key takes.
    fn bytes<S>(&self) -> u64 {
        const HASH_TABLE_OVERHEAD_BYTES: usize = 16;
        (mem::size_of::<(MemoKey, S)>() + self.words.len() * 8 + HASH_TABLE_OVERHEAD_BYTES) as u64
    }
}

impl OperationSet {
    fn new(count: usize) -> OperationSet {
        OperationSet {
            words: vec![0; count.div_ceil(64)],
            full_below: 0,
            used_below: 0,
        }
    }

    fn contains(&self, operation: usize) -> bool {
        self.words[operation / 64] & (1u64 << (operation % 64)) != 0
    }

    fn insert(&mut self, operation: usize) {
        let word = operation / 64;
        let bit = 1u64 << (operation % 64);
        assert!(
            self.words[word] & bit == 0,
            "operation {operation} linearized twice"
        );
        self.words[word] |= bit;
        self.used_below = self.used_below.max(word + 1);
        while self.full_below < self.words.len() && self.words[self.full_below] == u64::MAX {
            self.full_below += 1;
        }
    }

    fn remove(&mut self, operation: usize) {
        let word = operation / 64;
        let bit = 1u64 << (operation % 64);
        assert!(
            self.words[word] & bit != 0,
            "operation {operation} undone but not linearized"
        );
        self.words[word] &= !bit;
        self.full_below = self.full_below.min(word);
        while self.used_below > 0 && self.words[self.used_below - 1] == 0 {
            self.used_below -= 1;
        }
    }

    fn memo_key(&self) -> MemoKey {
        let end = self.used_below.max(self.full_below);
        MemoKey {
            full_below: u32::try_from(self.full_below).expect("fewer than 2^38 operations a part"),
            words: self.words[self.full_below..end].into(),
        }
    }
}
