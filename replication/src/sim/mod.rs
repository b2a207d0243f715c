//! A deterministic simulator: `nodes` raft nodes in one process, over a network that drops,
//! delays, duplicates, reorders and partitions messages, with crashes that lose whatever was
//! not persisted, restarts, clock skew, client proposals and leadership transfers. Every
//! choice comes from one seed, so a failing seed replays exactly. After every step the
//! [`checker`] checks raft's safety properties; at the end the network heals and the run must
//! make progress (liveness).
//!
//! Nodes forget applied entries from memory (`Node::compact`) and from their simulated disk
//! (the disk's log then starts after an offset), so a leader serves lagging followers from
//! its disk (`Ready::wanted`, `Node::send_stored`) or, once its disk lacks them too, with a
//! snapshot of its state machine (`Node::send_snapshot`). The snapshot's bytes move outside
//! the network (the server ships files over its own channel); `InstallSnapshot` travels in
//! it like any message: dropped, delayed, duplicated. It carries the membership as of its
//! index, which the installing machine keeps with its state machine for its restarts.

mod checker;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{Config, Membership};
use crate::core::{Faults, Node, Persisted, Role, SnapshotPoint, Wanted};
use crate::linearizability::{
    self, kv, KvCommand, KvInput, KvModel, KvOutput, KvState, Limits, Operation, Outcome,
};
use crate::message::{ConfChange, ConfChangeKind, HardState, Message, NodeId};
use crate::rng::Rng;
use crate::wire;
pub(crate) use checker::{Checked, Checker, Property, Violation};

/// The longest delay of a message after the network heals, in steps.
const CALM_DELAY_STEPS_MAX: u64 = 3;

/// The knobs of one run. Rates are per mille of steps (or of messages, for the network's).
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// The voters at the start: nodes 1..=nodes.
    pub(crate) nodes: u64,
    /// Nodes nodes+1..=nodes+spare_nodes, started only when a membership change adds them.
    pub(crate) spare_nodes: u64,
    /// A membership change proposed on the leader: promote a caught-up learner, add a spare
    /// as a learner, or remove a member.
    pub(crate) conf_change_per_mille: u64,
    pub(crate) steps: u64,
    pub(crate) drop_per_mille: u64,
    pub(crate) duplicate_per_mille: u64,
    /// A message is delivered 0..=this many steps after it was sent, in random order among
    /// those due, except that a link keeps its in-order messages in order.
    pub(crate) delay_steps_max: u64,
    /// Messages that may overtake those sent before them on their link. Within one
    /// connection messages keep their order; reconnections and retries are where they do not.
    pub(crate) reorder_per_mille: u64,
    pub(crate) propose_per_mille: u64,
    /// Of the steps left after the events above, the share (per mille) that ticks a node;
    /// the rest deliver messages or handle a `Ready` in equal parts. Small enough that a
    /// round trip takes well under an election timeout (raft's timing requirement, §5.6);
    /// large, and elections churn.
    pub(crate) tick_per_mille: u64,
    pub(crate) transfer_per_mille: u64,
    pub(crate) crash_per_mille: u64,
    /// A crash while a `Ready` is written (after a random part of it), before its messages
    /// leave, per handled `Ready`.
    pub(crate) crash_in_ready_per_mille: u64,
    pub(crate) restart_per_mille: u64,
    pub(crate) partition_per_mille: u64,
    pub(crate) heal_per_mille: u64,
    /// Steps allowed after healing for a leader to appear and every acknowledged proposal to
    /// be applied everywhere.
    pub(crate) liveness_rounds: u64,
    pub(crate) append_entries_max: usize,
    /// Per handled `Ready`: the node forgets applied entries from memory...
    pub(crate) compact_per_mille: u64,
    /// ... and from its disk, whose log then starts after an offset (only a snapshot can
    /// bring a follower that needs what is gone back).
    pub(crate) disk_compact_per_mille: u64,
    /// Per handled `Ready` of a leader with entries: the leader writes them without waiting
    /// for them to be durable (`Node::advance_unsynced`); a flush completes 1..=this many
    /// steps later (`Node::synced`), and a crash before it loses them.
    pub(crate) unsynced_per_mille: u64,
    pub(crate) unsynced_flush_steps_max: u64,
    pub(crate) pre_vote: bool,
    pub(crate) check_quorum: bool,
    /// 0: ticks are events of their own, one random node at a time at its own rate (clocks
    /// that agree on nothing). N: a clock every node shares, ticking every node once every N
    /// steps and never otherwise, under which leader leases (`Node::lease_round`) are
    /// checked: no node may lead a term while a leader of another term holds a lease
    /// (`Property::LeaseSafety`).
    pub(crate) lease_tick_steps: u64,
    /// How many ticks after its round's date a lease runs (`election_ticks - 2`, as the
    /// server's; tests of the check raise it).
    pub(crate) lease_ticks: u64,
    pub(crate) faults: Faults,
    /// A broken client path (tests of the linearizability check): the accepting node answers
    /// at once, from its own state machine as it is, instead of when the entry is applied.
    pub(crate) answer_on_propose: bool,
    /// Print every event to stderr (`FLIN_RAFT_TRACE=1`, with `FLIN_RAFT_SEED` to follow
    /// one failing seed).
    pub(crate) trace: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            nodes: 3,
            spare_nodes: 0,
            conf_change_per_mille: 0,
            steps: 3000,
            drop_per_mille: 50,
            duplicate_per_mille: 30,
            delay_steps_max: 12,
            reorder_per_mille: 50,
            propose_per_mille: 80,
            tick_per_mille: 100,
            transfer_per_mille: 3,
            crash_per_mille: 4,
            crash_in_ready_per_mille: 10,
            restart_per_mille: 25,
            partition_per_mille: 4,
            heal_per_mille: 8,
            liveness_rounds: 3000,
            append_entries_max: 4,
            compact_per_mille: 30,
            disk_compact_per_mille: 10,
            unsynced_per_mille: 500,
            unsynced_flush_steps_max: 20,
            pre_vote: true,
            check_quorum: true,
            lease_tick_steps: 0,
            lease_ticks: u64::from(Config::new(1, Membership::new([1])).election_ticks - 2),
            faults: Faults::default(),
            answer_on_propose: false,
            trace: std::env::var_os("FLIN_RAFT_TRACE").is_some(),
        }
    }
}

/// What a run did, for the sweep's summary and the replay test.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) proposals: u64,
    pub(crate) acknowledged: u64,
    pub(crate) crashes: u64,
    pub(crate) terms: u64,
    pub(crate) commit: u64,
    /// A digest of every event in order: two runs of one seed must agree on it.
    pub(crate) digest: u64,
    /// Client histories too large for the linearizability checker's budget (not checked).
    pub(crate) unchecked_histories: u64,
    /// Membership changes applied by the most advanced node.
    pub(crate) conf_changes: u64,
    /// Appends a leader sent from its disk (entries its memory had forgotten).
    pub(crate) stored_appends: u64,
    /// Snapshots followers installed.
    pub(crate) snapshots_installed: u64,
    /// Of those, the ones that skipped a membership change the follower had not applied: it
    /// learned the membership from the snapshot alone.
    pub(crate) snapshots_across_changes: u64,
    /// Leaders' `Ready`s written without waiting for a flush, and the entries crashes took
    /// from leaders' disks before a flush made them durable.
    pub(crate) unsynced_readys: u64,
    pub(crate) unsynced_lost: u64,
}

/// One simulated machine: the node while it runs, and what survives a crash.
struct Machine {
    node: Option<Node>,
    disk: Persisted,
    /// Ticks per tick event: 1..=3, so clocks run at different rates (redrawn at restart).
    tick_rate: u32,
    /// Proposals this node accepted as leader and has not seen applied: index -> (term, data).
    /// A crash forgets them (the client sees its connection drop).
    pending: BTreeMap<u64, (u64, Vec<u8>)>,
    /// The state machine (durable in the simulation, as the engine's is): the entries
    /// applied, and the key-value map they make.
    applied: Vec<Vec<u8>>,
    kv: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The membership the applied entries make (durable with them), or the last installed
    /// snapshot's with the entries applied since, which a restart hands to the node.
    membership: Membership,
    /// Membership changes among the applied entries.
    conf_changes: u64,
    /// The operator started this node: an initial voter, or a spare once proposed as a learner.
    provisioned: bool,
    /// The first entry on `disk` not known durable (a leader's, written unsynced): a crash
    /// loses it and what follows.
    unsynced_from: Option<u64>,
    /// Flushes under way: (the step it completes at, durable through index, asked in term).
    flushes: Vec<(u64, u64, u64)>,
}

struct InFlight {
    deliver_at: u64,
    /// The order of sending, over the whole network.
    sent: u64,
    /// Delivered after every in-order message sent before it on its link (as a TCP connection
    /// delivers); otherwise it may overtake them.
    in_order: bool,
    message: Message,
}

pub(crate) struct Sim {
    options: Options,
    rng: Rng,
    machines: BTreeMap<NodeId, Machine>,
    network: Vec<InFlight>,
    /// Messages sent so far (`InFlight::sent`).
    sent: u64,
    /// Per link (from, to): when its last in-order message is delivered.
    link_clock: BTreeMap<(NodeId, NodeId), u64>,
    /// Each node's side of a partition (messages cross only between equal sides).
    sides: BTreeMap<NodeId, u64>,
    /// Links that lose every message in one direction: (from, to).
    one_way_cuts: BTreeSet<(NodeId, NodeId)>,
    checker: Checker,
    now: u64,
    /// Proposals a leader reported committed: (index, data). They must never be lost.
    acknowledged: Vec<(u64, Vec<u8>)>,
    report: Report,
    /// The network is healed and faults are off.
    calm: bool,
    /// Snapshots leaders moved to followers, by their point: the data of every entry they
    /// hold (committed data is the same on every node, so one store serves all).
    snapshots: BTreeMap<(u64, u64), Vec<Vec<u8>>>,
    /// Leases by node, under `lease_tick_steps`.
    leases: BTreeMap<NodeId, LeaseWatch>,
    /// Every proposal a node accepted, by proposal number: its client call (step, command)
    /// and, once its entry was applied on the node that accepted it, the answer (step,
    /// output). Checked for linearizability at the end of the run.
    history: BTreeMap<u64, Call>,
}

/// What a leader's lease is, as the server computes it: its heartbeat rounds dated by the
/// step that made them, and the step its lease runs to (0: none).
#[derive(Default)]
struct LeaseWatch {
    dates: Vec<(u64, u64)>,
    term: u64,
    until: u64,
}

/// One client's command in the history.
struct Call {
    called: u64,
    input: KvInput,
    answered: Option<(u64, KvOutput)>,
}

/// The keys clients use: few, so commands on one key overlap.
const KEYS: u64 = 4;

/// A proposal's data: `n|key|command`, the command `get`, `set:v`, `incr` or `cas:old:new`
/// (`-` for a missing old value).
fn encode(n: u64, input: &KvInput) -> Vec<u8> {
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    let command = match &input.command {
        KvCommand::Get => "get".to_string(),
        KvCommand::Set(v) => format!("set:{}", text(v)),
        KvCommand::Incr => "incr".to_string(),
        KvCommand::CompareAndSet { expected, new } => format!(
            "cas:{}:{}",
            expected.as_deref().map_or("-".to_string(), text),
            text(new)
        ),
    };
    format!("{n}|{}|{command}", text(&input.key)).into_bytes()
}

fn decode(data: &[u8]) -> Option<(u64, KvInput)> {
    let text = std::str::from_utf8(data).ok()?;
    let mut parts = text.splitn(3, '|');
    let n = parts.next()?.parse().ok()?;
    let key = parts.next()?.as_bytes().to_vec();
    let input = match parts.next()?.split(':').collect::<Vec<_>>().as_slice() {
        ["get"] => KvInput::get(key),
        ["set", v] => KvInput::set(key, v.as_bytes()),
        ["incr"] => KvInput::incr(key),
        ["cas", old, new] => {
            KvInput::compare_and_set(key, (*old != "-").then_some(old.as_bytes()), new.as_bytes())
        }
        _ => return None,
    };
    Some((n, input))
}

/// The term of the entry at `index` on `disk` (its offset's term at the offset).
fn disk_term_at(disk: &Persisted, index: u64) -> Option<u64> {
    match index {
        _ if index == disk.offset => Some(disk.offset_term),
        _ if index < disk.offset => None,
        _ => disk
            .entries
            .get((index - disk.offset - 1) as usize)
            .map(|entry| entry.term),
    }
}

/// How many membership changes the entries in `applied` make of `membership` (as
/// `Machine::conf_changes` counts them).
fn conf_changes_in(mut membership: Membership, applied: &[Vec<u8>]) -> u64 {
    let mut changes = 0;
    for data in applied {
        if let Some(Ok((change, _))) = wire::decode_conf_change(data) {
            if let Ok(next) = membership.changed(change) {
                membership = next;
                changes += 1;
            }
        }
    }
    changes
}

/// The key-value map the commands in `applied` make, in order.
fn state_of(applied: &[Vec<u8>]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut kv = BTreeMap::new();
    for data in applied {
        if let Some((_, input)) = decode(data) {
            let state = KvState(kv.get(&input.key).cloned());
            match kv::apply(&state, &input.command).0 .0 {
                Some(value) => kv.insert(input.key.clone(), value),
                None => kv.remove(&input.key),
            };
        }
    }
    kv
}

impl Sim {
    pub(crate) fn new(seed: u64, options: Options) -> Sim {
        let mut rng = Rng::new(seed);
        let mut machines = BTreeMap::new();
        let initial_membership = Membership::new(1..=options.nodes);
        let ids = 1..=options.nodes + options.spare_nodes;
        for id in ids.clone() {
            machines.insert(
                id,
                Machine {
                    node: None,
                    disk: Persisted::default(),
                    tick_rate: 1 + rng.below(3) as u32,
                    pending: BTreeMap::new(),
                    applied: Vec::new(),
                    kv: BTreeMap::new(),
                    // A spare, too, starts from the initial voters and learns the rest from
                    // the log (as `flin-server --join` does).
                    membership: Membership::new(1..=options.nodes),
                    conf_changes: 0,
                    provisioned: id <= options.nodes,
                    unsynced_from: None,
                    flushes: Vec::new(),
                },
            );
        }
        let mut sim = Sim {
            sides: ids.map(|id| (id, 0)).collect(),
            one_way_cuts: BTreeSet::new(),
            options,
            rng,
            machines,
            network: Vec::new(),
            sent: 0,
            link_clock: BTreeMap::new(),
            checker: Checker::new(initial_membership),
            now: 0,
            acknowledged: Vec::new(),
            history: BTreeMap::new(),
            leases: BTreeMap::new(),
            report: Report::default(),
            calm: false,
            snapshots: BTreeMap::new(),
        };
        for id in 1..=sim.options.nodes {
            sim.start(id);
        }
        sim
    }

    fn config(&self, id: NodeId) -> Config {
        let membership = self.machines[&id].membership.clone();
        let mut config = Config::new(id, membership);
        config.append_entries_max = self.options.append_entries_max;
        config.inflight_appends_max = 4;
        config.pre_vote = self.options.pre_vote;
        config.check_quorum = self.options.check_quorum;
        config
    }

    fn start(&mut self, id: NodeId) {
        let seed = self.rng.next_u64();
        let config = self.config(id);
        let faults = self.options.faults;
        let machine = self.machines.get_mut(&id).expect("a machine");
        assert!(machine.node.is_none(), "node {id} is running");
        let mut node = Node::restart(config, seed, machine.disk.clone());
        node.set_faults(faults);
        machine.node = Some(node);
        machine.tick_rate = 1 + self.rng.below(3) as u32;
        self.checker.restarted(id);
        self.trace(|| format!("start {id}"));
    }

    fn crash(&mut self, id: NodeId) {
        let machine = self.machines.get_mut(&id).expect("a machine");
        if let Some(node) = machine.node.take() {
            let disk = &machine.disk;
            let disk_term = disk.entries.last().map_or(disk.offset_term, |e| e.term);
            if node.role() == Role::Leader && disk.hard_state.term.max(disk_term) < node.term() {
                // A lone voter wins its election inside one step, in memory; its term and
                // vote were never written, nor did any message leave (they leave after the
                // `Ready` is written). Nothing of that leadership survives, and after the
                // restart the node may vote for another in the same term (seed 7258 of the
                // one-clock membership sweep).
                self.checker.forget_leader(node.term(), id);
            }
            machine.pending.clear();
            // What a leader wrote and no flush made durable is gone.
            machine.flushes.clear();
            if let Some(first) = machine.unsynced_from.take() {
                let disk = &mut machine.disk;
                let end = disk.offset + disk.entries.len() as u64;
                self.report.unsynced_lost += (end + 1).saturating_sub(first);
                disk.entries
                    .truncate((first - 1).saturating_sub(disk.offset) as usize);
                let end = disk.offset + disk.entries.len() as u64;
                assert!(
                    disk.applied <= end && disk.hard_state.commit <= end,
                    "node {id} applied or committed entries that were not durable"
                );
            }
            self.report.crashes += 1;
            self.digest(&[7, id]);
            self.trace(|| format!("crash {id}"));
        }
    }

    /// Flushes that complete at this step: the disk is durable through their index, and the
    /// node is told (`Node::synced`), if it still leads the term the flush was asked in (a
    /// node leads a term once and never cuts its own log meanwhile; otherwise the entries
    /// flushed may have been replaced since, and the disk is left as it is, the stricter case).
    fn complete_flushes(&mut self) {
        let now = self.now;
        let mut completed = Vec::new();
        for (&id, machine) in self.machines.iter_mut() {
            let Some(node) = machine.node.as_mut() else {
                continue;
            };
            let mut i = 0;
            while i < machine.flushes.len() {
                if machine.flushes[i].0 > now {
                    i += 1;
                    continue;
                }
                let (_, through, term) = machine.flushes.swap_remove(i);
                if node.role() != Role::Leader || node.term() != term {
                    continue;
                }
                let end = machine.disk.offset + machine.disk.entries.len() as u64;
                if machine.unsynced_from.is_some_and(|first| first <= through) {
                    machine.unsynced_from = (through < end).then_some(through + 1);
                }
                node.synced(through, term);
                // The commit index saved so far stopped at what was durable (`handle_ready`):
                // it follows the flush, as the server's periodic commit save does.
                let durable = machine.unsynced_from.map_or(end, |first| first - 1);
                let commit = &mut machine.disk.hard_state.commit;
                *commit = (*commit).max(node.commit_index().min(durable));
                completed.push((id, through));
            }
        }
        for (id, through) in completed {
            self.digest(&[8, id, through]);
            self.trace(|| format!("flushed {id} through {through}"));
        }
    }

    fn digest(&mut self, words: &[u64]) {
        for &word in words {
            self.report.digest = (self.report.digest ^ word)
                .wrapping_mul(0x0100_0000_01b3)
                .rotate_left(5);
        }
    }

    fn trace(&self, describe: impl FnOnce() -> String) {
        if self.options.trace {
            eprintln!("[{:>6}] {}", self.now, describe());
        }
    }

    fn running(&self) -> Vec<NodeId> {
        self.machines
            .iter()
            .filter(|(_, machine)| machine.node.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    fn pick(&mut self, ids: &[NodeId]) -> Option<NodeId> {
        match ids.len() {
            0 => None,
            len => Some(ids[self.rng.below(len as u64) as usize]),
        }
    }

    /// The running leader of the highest term, as a client that follows redirects finds it.
    fn leader(&self) -> Option<NodeId> {
        self.machines
            .iter()
            .filter_map(|(&id, machine)| machine.node.as_ref().map(|node| (id, node)))
            .filter(|(_, node)| node.role() == Role::Leader)
            .max_by_key(|(_, node)| node.term())
            .map(|(id, _)| id)
    }

    /// Runs the faulty phase, then heals and checks liveness.
    pub(crate) fn run(mut self) -> Result<Report, Violation> {
        for _ in 0..self.options.steps {
            self.step()?;
        }
        self.heal_and_settle()?;
        self.report.acknowledged = self.acknowledged.len() as u64;
        self.check_history()?;
        Ok(self.report)
    }

    /// The clients' history, linearizable against the key-value model (a timeout, where the
    /// search is too large, is counted, not failed).
    fn check_history(&mut self) -> Checked {
        let history: Vec<Operation<KvInput, KvOutput>> = self
            .history
            .iter()
            .map(|(n, call)| match &call.answered {
                Some((at, output)) => Operation::completed(
                    *n,
                    call.called,
                    call.input.clone(),
                    (*at).max(call.called),
                    output.clone(),
                ),
                None => Operation::unknown(*n, call.called, call.input.clone()),
            })
            .collect();
        let limits = Limits {
            steps_max: 2_000_000,
            ..Limits::default()
        };
        match linearizability::check(&KvModel, &history, limits) {
            Outcome::Ok => Ok(()),
            Outcome::Timeout { .. } => {
                self.report.unchecked_histories += 1;
                Ok(())
            }
            Outcome::Illegal(illegal) => Err(Violation {
                property: Property::Linearizability,
                step: self.now,
                detail: format!("{illegal}"),
            }),
        }
    }

    fn step(&mut self) -> Checked {
        self.now += 1;
        self.checker.step = self.now;
        self.complete_flushes();
        let period = self.options.lease_tick_steps;
        if period > 0 && self.now.is_multiple_of(period) {
            for id in self.running() {
                let node = self.machines.get_mut(&id).and_then(|m| m.node.as_mut());
                node.expect("running").tick();
                self.digest(&[5, id]);
            }
        }
        let options = &self.options;
        let mut roll = self.rng.below(1000);
        let thresholds = [
            options.propose_per_mille,
            options.transfer_per_mille,
            options.crash_per_mille,
            options.restart_per_mille,
            options.partition_per_mille,
            options.heal_per_mille,
            options.conf_change_per_mille,
        ];
        let mut event = thresholds.len();
        for (kind, &threshold) in thresholds.iter().enumerate() {
            if roll < threshold {
                event = kind;
                break;
            }
            roll -= threshold;
        }
        match event {
            0 => self.propose()?,
            1 => self.transfer()?,
            2 => {
                let running = self.running();
                if let Some(id) = self.pick(&running) {
                    self.crash(id);
                }
            }
            3 => {
                let crashed: Vec<NodeId> = self
                    .machines
                    .iter()
                    .filter(|(_, m)| m.node.is_none() && m.provisioned)
                    .map(|(&id, _)| id)
                    .collect();
                if let Some(id) = self.pick(&crashed) {
                    self.start(id);
                }
            }
            4 => self.partition(),
            5 => self.heal(),
            6 => self.change_membership(),
            _ => {
                let roll = self.rng.below(1000);
                if roll < self.options.tick_per_mille {
                    if self.options.lease_tick_steps == 0 {
                        self.tick_one()?;
                    }
                } else if roll < (1000 + self.options.tick_per_mille) / 2 {
                    // A few at a time, so the network carries more than the nodes produce.
                    for _ in 0..1 + self.rng.below(4) {
                        self.deliver_one()?;
                    }
                } else {
                    let running = self.running();
                    if let Some(id) = self.pick(&running) {
                        self.handle_ready(id)?;
                    }
                }
            }
        }
        self.check_all()
    }

    fn check_all(&mut self) -> Checked {
        for machine in self.machines.values() {
            if let Some(node) = &machine.node {
                self.checker.observe(node)?;
            }
        }
        self.check_leases()
    }

    /// Under `lease_tick_steps`: dates every heartbeat round by the step that made it (it
    /// leaves later), computes each leader's lease as the server does (the date of
    /// `lease_round` plus `lease_ticks` ticks), and fails if a node leads a term while
    /// another node's lease of an older term still runs: that node could serve a read that
    /// misses a write the new leader acknowledged.
    fn check_leases(&mut self) -> Checked {
        if self.options.lease_tick_steps == 0 || self.calm {
            return Ok(());
        }
        let span = self.options.lease_ticks * self.options.lease_tick_steps;
        for (&id, machine) in &self.machines {
            let watch = self.leases.entry(id).or_default();
            let Some(node) = machine.node.as_ref() else {
                *watch = LeaseWatch::default(); // a crashed node serves nothing
                continue;
            };
            let made = node.heartbeat_round();
            if watch.dates.last().is_none_or(|&(round, _)| round < made) {
                watch.dates.push((made, self.now));
            }
            watch.term = node.term();
            watch.until = node
                .lease_round()
                .and_then(|round| watch.dates.iter().find(|&&(made, _)| made >= round))
                .map_or(0, |&(_, date)| (date + span).max(watch.until));
        }
        for (&id, machine) in &self.machines {
            let Some(node) = machine.node.as_ref() else {
                continue;
            };
            if node.role() != Role::Leader {
                continue;
            }
            for (&other, watch) in &self.leases {
                if other != id && watch.until > self.now && watch.term < node.term() {
                    return Err(Violation {
                        property: Property::LeaseSafety,
                        step: self.now,
                        detail: format!(
                            "node {id} leads term {} while node {other}'s lease of term {} runs to step {}",
                            node.term(),
                            watch.term,
                            watch.until
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    fn propose(&mut self) -> Checked {
        // Most clients find the leader; some ask whoever they are connected to.
        let target = match self.leader() {
            Some(leader) if self.rng.chance(800) => Some(leader),
            _ => {
                let running = self.running();
                self.pick(&running)
            }
        };
        let Some(id) = target else { return Ok(()) };
        self.report.proposals += 1;
        let n = self.report.proposals;
        let key = format!("k{}", self.rng.below(KEYS));
        let value = |rng: &mut Rng| rng.below(3).to_string().into_bytes();
        let input = match self.rng.below(10) {
            0..=2 => KvInput::get(key),
            3..=5 => KvInput::incr(key),
            6 | 7 => KvInput::set(key, value(&mut self.rng)),
            _ => {
                let old = self.rng.below(4);
                let expected = (old < 3).then(|| old.to_string().into_bytes());
                KvInput::compare_and_set(key, expected.as_deref(), value(&mut self.rng))
            }
        };
        let data = encode(n, &input);
        let machine = self.machines.get_mut(&id).expect("a machine");
        let node = machine.node.as_mut().expect("running");
        match node.propose(data.clone()) {
            Ok(index) => {
                let answered = self.options.answer_on_propose.then(|| {
                    let state = KvState(machine.kv.get(&input.key).cloned());
                    (self.now, kv::apply(&state, &input.command).1)
                });
                self.history.insert(
                    n,
                    Call {
                        called: self.now,
                        input,
                        answered,
                    },
                );
                machine.pending.insert(index, (node.term(), data));
                self.digest(&[1, id, index]);
                self.trace(|| format!("propose at {id}: index {index}"));
            }
            Err(_) => self.digest(&[8, id]),
        }
        Ok(())
    }

    fn transfer(&mut self) -> Checked {
        let Some(leader) = self.leader() else {
            return Ok(());
        };
        let to = 1 + self.rng.below(self.machines.len() as u64);
        let node = self
            .machines
            .get_mut(&leader)
            .and_then(|m| m.node.as_mut())
            .expect("running");
        let _ = node.transfer_leader(to);
        self.digest(&[2, leader, to]);
        self.trace(|| format!("transfer {leader} -> {to}"));
        Ok(())
    }

    /// What an operator does on the leader: promote a learner that caught up, add a spare as
    /// a learner (starting it once the change is accepted), or remove a random member. The
    /// core refuses what breaks its rules (a change pending, the last voter, a learner behind).
    fn change_membership(&mut self) {
        let Some(leader) = self.leader() else { return };
        let spare = self
            .machines
            .iter()
            .find(|(_, machine)| !machine.provisioned)
            .map(|(&id, _)| id);
        let node = self.machines[&leader].node.as_ref().expect("running");
        let caught_up = node.caught_up_learners();
        let members: Vec<NodeId> = node.membership().members().collect();
        let change = match (caught_up.first(), spare, self.rng.below(3)) {
            (Some(&learner), _, 0 | 1) => ConfChange {
                kind: ConfChangeKind::PromoteLearner,
                node: learner,
            },
            (_, Some(spare), 0) => ConfChange {
                kind: ConfChangeKind::AddLearner,
                node: spare,
            },
            _ => {
                let Some(node) = self.pick(&members) else {
                    return;
                };
                ConfChange {
                    kind: ConfChangeKind::RemoveNode,
                    node,
                }
            }
        };
        let node = self
            .machines
            .get_mut(&leader)
            .and_then(|machine| machine.node.as_mut())
            .expect("running");
        let result = node.propose_conf_change(change, &[]);
        self.digest(&[10, leader, change.node, u64::from(result.is_ok())]);
        self.trace(|| format!("change at {leader}: {change:?} -> {result:?}"));
        if result.is_ok() && change.kind == ConfChangeKind::AddLearner {
            self.machines
                .get_mut(&change.node)
                .expect("a machine")
                .provisioned = true;
            self.start(change.node);
        }
    }

    /// The membership the most advanced node applied: who an operator keeps running.
    fn latest_membership(&self) -> Membership {
        self.machines
            .values()
            .max_by_key(|machine| machine.applied.len())
            .expect("a machine")
            .membership
            .clone()
    }

    /// Splits the nodes in two random sides, or cuts one link in one direction.
    fn partition(&mut self) {
        if self.rng.chance(500) {
            for id in 1..=self.machines.len() as u64 {
                let side = self.rng.below(2);
                self.sides.insert(id, side);
            }
            let sides: Vec<u64> = self.sides.values().copied().collect();
            self.digest(&sides);
            self.trace(|| format!("partition sides {sides:?}"));
        } else {
            let from = 1 + self.rng.below(self.machines.len() as u64);
            let to = 1 + self.rng.below(self.machines.len() as u64);
            self.one_way_cuts.insert((from, to));
            self.digest(&[9, from, to]);
            self.trace(|| format!("cut {from} -> {to}"));
        }
    }

    fn heal(&mut self) {
        for side in self.sides.values_mut() {
            *side = 0;
        }
        self.one_way_cuts.clear();
        self.digest(&[3]);
        self.trace(|| "heal".to_string());
    }

    fn connected(&self, from: NodeId, to: NodeId) -> bool {
        self.sides[&from] == self.sides[&to] && !self.one_way_cuts.contains(&(from, to))
    }

    fn send(&mut self, message: Message) {
        if !self.connected(message.from, message.to) {
            return;
        }
        if !self.calm && self.rng.chance(self.options.drop_per_mille) {
            return;
        }
        let copies = if !self.calm && self.rng.chance(self.options.duplicate_per_mille) {
            2
        } else {
            1
        };
        let link = (message.from, message.to);
        for _ in 0..copies {
            let mut deliver_at = self.now + self.rng.below(self.delay_steps_max() + 1);
            let in_order = !self.rng.chance(self.options.reorder_per_mille);
            if in_order {
                let clock = self.link_clock.entry(link).or_insert(0);
                deliver_at = deliver_at.max(*clock);
                *clock = deliver_at;
            }
            self.sent += 1;
            self.network.push(InFlight {
                deliver_at,
                sent: self.sent,
                in_order,
                message: message.clone(),
            });
        }
    }

    /// Once calm, messages travel well within an election timeout, as raft's timing
    /// requirement (§5.6) assumes: liveness is owed only then.
    fn delay_steps_max(&self) -> u64 {
        match self.calm {
            true => self.options.delay_steps_max.min(CALM_DELAY_STEPS_MAX),
            false => self.options.delay_steps_max,
        }
    }

    fn deliver_one(&mut self) -> Checked {
        let due: Vec<usize> = (0..self.network.len())
            .filter(|&position| self.network[position].deliver_at <= self.now)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let mut position = due[self.rng.below(due.len() as u64) as usize];
        let chosen = &self.network[position];
        if chosen.in_order {
            // The link's oldest in-order message goes first.
            let link = (chosen.message.from, chosen.message.to);
            position = due
                .iter()
                .copied()
                .filter(|&other| {
                    let other = &self.network[other];
                    other.in_order && (other.message.from, other.message.to) == link
                })
                .min_by_key(|&other| self.network[other].sent)
                .expect("the chosen message qualifies");
        }
        let message = self.network.swap_remove(position).message;
        self.deliver(message)
    }

    fn deliver(&mut self, message: Message) -> Checked {
        let (from, to, term) = (message.from, message.to, message.term);
        if !self.connected(from, to) {
            return Ok(());
        }
        let machine = self.machines.get_mut(&to).expect("a machine");
        let Some(node) = machine.node.as_mut() else {
            return Ok(());
        };
        if self.options.trace {
            eprintln!("[{:>6}] deliver {message:?}", self.now);
        }
        node.step(message).expect("a well-addressed message");
        self.digest(&[4, from, to, term]);
        Ok(())
    }

    fn tick_one(&mut self) -> Checked {
        let running = self.running();
        let Some(id) = self.pick(&running) else {
            return Ok(());
        };
        let machine = self.machines.get_mut(&id).expect("a machine");
        let node = machine.node.as_mut().expect("running");
        for _ in 0..machine.tick_rate {
            node.tick();
        }
        self.digest(&[5, id]);
        self.trace(|| format!("tick {id}"));
        Ok(())
    }

    /// Persists, sends and applies one node's `Ready`, as the server's loop will.
    fn handle_ready(&mut self, id: NodeId) -> Checked {
        let machine = self.machines.get_mut(&id).expect("a machine");
        let Some(node) = machine.node.as_mut() else {
            return Ok(());
        };
        if !node.has_ready() {
            return Ok(());
        }
        let leads = node.role() == Role::Leader;
        let term = node.term();
        let ready = node.ready();
        // A crash may strike while the `Ready` is being written: the cut first, then some of
        // the entries, then the hard state; the messages leave only after all of it.
        let crash = !self.calm && self.rng.chance(self.options.crash_in_ready_per_mille);
        let written = match crash {
            true => self.rng.below(ready.entries.len() as u64 + 2) as usize,
            false => ready.entries.len() + 1,
        };
        // Only what reached the disk existed: entries a crash kept from being written were
        // never seen by anyone, and the node may append others at their (index, term) after
        // the restart. (A lone voter does: it wins the same term again when its vote was
        // lost with the entries; found by the membership sweep, seed 4745.)
        let entries_written = written.min(ready.entries.len());
        self.checker
            .persisted(node, &ready.entries[..entries_written])?;
        if let Some(point) = ready.snapshot {
            let membership = ready
                .snapshot_membership
                .clone()
                .expect("a snapshot comes with its membership");
            let data = &self.snapshots[&(point.index, point.term)];
            self.checker
                .snapshot_installed(node, point.index, data, &membership)?;
            // The state machine becomes the snapshot's, its membership included (durable
            // with it: a restart hands it back, the change entries being gone).
            let skipped = &data[machine.applied.len()..];
            if skipped.iter().any(|data| wire::is_conf_change(data)) {
                self.report.snapshots_across_changes += 1;
            }
            let initial = Membership::new(1..=self.options.nodes);
            machine.conf_changes = conf_changes_in(initial, data);
            machine.applied = data.clone();
            machine.kv = state_of(data);
            machine.membership = membership;
            machine.disk.entries.clear();
            machine.unsynced_from = None;
            machine.disk.offset = point.index;
            machine.disk.offset_term = point.term;
            machine.disk.applied = point.index;
            self.report.snapshots_installed += 1;
            if self.options.trace {
                eprintln!(
                    "[{:>6}] install snapshot at {id}: {point:?}, {:?}",
                    self.now, machine.membership
                );
            }
        }
        let disk = &mut machine.disk;
        if let Some(index) = ready.truncate_after {
            disk.entries.truncate((index - disk.offset) as usize);
        }
        // Entries a leader wrote unsynced come again once it stepped down (the core counts
        // them as not persisted): those still on disk in the same term are kept, as the
        // server's `persist` keeps them; at the first that differs the disk is cut.
        let mut to_write = &ready.entries[..entries_written];
        while let Some(first) = to_write.first() {
            let end = disk.offset + disk.entries.len() as u64;
            if first.index > end {
                break;
            }
            if disk_term_at(disk, first.index) == Some(first.term) {
                to_write = &to_write[1..];
            } else {
                disk.entries
                    .truncate((first.index - 1 - disk.offset) as usize);
                break;
            }
        }
        let end = disk.offset + disk.entries.len() as u64;
        if machine.unsynced_from.is_some_and(|first| first > end) {
            machine.unsynced_from = None;
        }
        if let Some(first) = to_write.first() {
            assert_eq!(first.index, end + 1, "a gap in the persisted log");
        }
        disk.entries.extend(to_write.iter().cloned());
        // A leader's own entries, written without waiting for a flush (`advance_unsynced`);
        // any other `Ready` with entries flushes, which makes everything written durable.
        let unsynced = !crash
            && leads
            && !ready.entries.is_empty()
            && self.rng.chance(self.options.unsynced_per_mille);
        if unsynced {
            self.report.unsynced_readys += 1;
            if let Some(first) = to_write.first() {
                let from = machine
                    .unsynced_from
                    .map_or(first.index, |u| u.min(first.index));
                machine.unsynced_from = Some(from);
            }
            let through = disk.offset + disk.entries.len() as u64;
            let due = self.now + 1 + self.rng.below(self.options.unsynced_flush_steps_max);
            machine.flushes.push((due, through, term));
        } else if !ready.entries.is_empty() && !crash {
            machine.unsynced_from = None;
        }
        if written > ready.entries.len() {
            if let Some(hard_state) = ready.hard_state {
                // The commit index is saved only as far as the log is durable (the server
                // flushes its log before it saves one).
                let durable = machine
                    .unsynced_from
                    .map_or(disk.offset + disk.entries.len() as u64, |first| first - 1);
                disk.hard_state = HardState {
                    commit: hard_state.commit.min(durable),
                    ..hard_state
                };
            }
        }
        self.digest(&[
            6,
            id,
            ready.entries.len() as u64,
            ready.messages.len() as u64,
            written as u64,
            u64::from(unsynced),
        ]);
        self.trace(|| {
            format!(
                "ready {id}: cut {:?}, {} entries ({written} parts written), {:?}, {} messages, {} to apply",
                ready.truncate_after,
                ready.entries.len(),
                ready.hard_state,
                ready.messages.len(),
                ready.committed.len()
            )
        });
        if crash {
            // Nothing was sent or applied.
            self.crash(id);
            return Ok(());
        }
        for message in ready.messages {
            self.send(message);
        }
        let machine = self.machines.get_mut(&id).expect("a machine");
        for entry in &ready.committed {
            self.checker.applied(id, entry)?;
            assert_eq!(
                entry.index,
                machine.applied.len() as u64 + 1,
                "applied out of order"
            );
            machine.applied.push(entry.data.to_vec());
            if let Some(Ok((change, _))) = wire::decode_conf_change(&entry.data) {
                if let Ok(membership) = machine.membership.changed(change) {
                    machine.membership = membership;
                    machine.conf_changes += 1;
                }
            }
            // The state machine: every node runs the command; the node that accepted the
            // proposal answers its client with the output.
            let output = decode(&entry.data).map(|(n, input)| {
                let state = KvState(machine.kv.get(&input.key).cloned());
                let (state, output) = kv::apply(&state, &input.command);
                match state.0 {
                    Some(value) => machine.kv.insert(input.key.clone(), value),
                    None => machine.kv.remove(&input.key),
                };
                (n, output)
            });
            if let Some((term, data)) = machine.pending.remove(&entry.index) {
                if term == entry.term {
                    assert_eq!(data, entry.data, "a leader's own entry changed");
                    self.acknowledged.push((entry.index, data));
                    if let Some((n, output)) = output {
                        if let Some(call) = self.history.get_mut(&n) {
                            call.answered.get_or_insert((self.now, output));
                        }
                    }
                }
            }
        }
        machine.disk.applied = machine.applied.len() as u64;
        let node = machine.node.as_mut().expect("running");
        match unsynced {
            true => node.advance_unsynced(),
            false => node.advance(),
        }
        for wanted in ready.wanted {
            self.serve(id, wanted);
        }
        self.maybe_compact(id);
        Ok(())
    }

    /// Heals the network, restarts every member, turns faults off and runs until it settles.
    /// A leader's follower needs entries from `wanted.from_index`, which the leader's memory
    /// lost: from its disk if it holds them, else a snapshot of its state machine.
    fn serve(&mut self, id: NodeId, wanted: Wanted) {
        let append_entries_max = self.options.append_entries_max as u64;
        let machine = self.machines.get_mut(&id).expect("a machine");
        let disk = &machine.disk;
        let node = machine.node.as_mut().expect("running");
        let from = wanted.from_index;
        if from > disk.offset {
            let prev_term = disk_term_at(disk, from - 1).expect("the disk holds what memory lost");
            let first = (from - disk.offset - 1) as usize;
            // Committed entries only (the disk may hold more, which memory still has).
            let committed = (node.commit_index() - disk.offset) as usize;
            let last = (first + append_entries_max as usize)
                .min(disk.entries.len())
                .min(committed);
            let entries = disk.entries[first..last].to_vec();
            let sent = node.send_stored(wanted.to, prev_term, entries);
            self.report.stored_appends += u64::from(sent);
            self.digest(&[10, id, wanted.to, from, u64::from(sent)]);
            self.trace(|| format!("send stored {id} -> {}: from {from} ({sent})", wanted.to));
            return;
        }
        let index = machine.applied.len() as u64;
        let term = disk_term_at(disk, index).expect("the disk holds the applied entry's term");
        let point = SnapshotPoint { index, term };
        self.snapshots
            .entry((index, term))
            .or_insert_with(|| machine.applied.clone());
        let sent = node.send_snapshot(wanted.to, point);
        self.digest(&[11, id, wanted.to, index, u64::from(sent)]);
        self.trace(|| format!("send snapshot {id} -> {}: {point:?} ({sent})", wanted.to));
    }

    /// Sometimes forgets applied entries: from memory, and sometimes from the disk too.
    fn maybe_compact(&mut self, id: NodeId) {
        let forget_memory = self.rng.chance(self.options.compact_per_mille);
        let forget_disk = self.rng.chance(self.options.disk_compact_per_mille);
        let keep = self.rng.below(4);
        let machine = self.machines.get_mut(&id).expect("a machine");
        let through = machine.disk.applied.saturating_sub(keep);
        if forget_memory {
            let node = machine.node.as_mut().expect("running");
            node.compact(through);
        }
        let disk = &mut machine.disk;
        if forget_disk && through > disk.offset {
            let term = disk_term_at(disk, through).expect("an applied entry is on disk");
            disk.entries.drain(..(through - disk.offset) as usize);
            disk.offset = through;
            disk.offset_term = term;
        }
        if forget_memory || forget_disk {
            self.digest(&[12, id, through]);
            self.trace(|| format!("compact {id} through {through} (disk: {forget_disk})"));
        }
    }

    /// Heals the network, restarts every node, turns faults off and runs until it settles.
    fn heal_and_settle(&mut self) -> Checked {
        self.calm = true;
        self.heal();
        for _ in 0..self.options.liveness_rounds {
            self.run_members_only();
            self.now += 1;
            self.checker.step = self.now;
            self.complete_flushes();
            for id in self.running() {
                self.machines
                    .get_mut(&id)
                    .and_then(|m| m.node.as_mut())
                    .expect("running")
                    .tick();
                self.handle_ready(id)?;
            }
            let due: Vec<InFlight> = {
                let (mut due, later): (Vec<InFlight>, _) = std::mem::take(&mut self.network)
                    .into_iter()
                    .partition(|in_flight| in_flight.deliver_at <= self.now);
                self.network = later;
                due.sort_by_key(|in_flight| (in_flight.deliver_at, in_flight.sent));
                due
            };
            for in_flight in due {
                self.deliver(in_flight.message)?;
            }
            for id in self.running() {
                self.handle_ready(id)?;
            }
            self.check_all()?;
            if self.settled() {
                self.finish_report();
                return Ok(());
            }
        }
        let leader = self.leader();
        let lagging: Vec<String> = self
            .machines
            .iter()
            .filter_map(|(&id, machine)| Some((id, machine, machine.node.as_ref()?)))
            .map(|(id, machine, node)| {
                format!(
                    "node {id}: {:?} term {} commit {} last {} applied {}",
                    node.role(),
                    node.term(),
                    node.commit_index(),
                    node.last_index(),
                    machine.applied.len()
                )
            })
            .collect();
        Err(Violation {
            property: Property::Liveness,
            step: self.now,
            detail: format!(
                "after {} calm rounds: leader {leader:?}, applied per node {lagging:?}, {} acknowledged",
                self.options.liveness_rounds,
                self.acknowledged.len()
            ),
        })
    }

    /// The operator's part once calm: every member of the latest membership runs, and a node
    /// removed from it is stopped once no member still counts it (a removed node that never
    /// learned it was removed would otherwise campaign forever, while a member that has not
    /// applied the removal yet may still need its vote; docs/operations.md says the same).
    fn run_members_only(&mut self) {
        let latest = self.latest_membership();
        let counted: BTreeSet<NodeId> = latest
            .members()
            .flat_map(|id| self.machines[&id].membership.members().collect::<Vec<_>>())
            .collect();
        for id in self.machines.keys().copied().collect::<Vec<_>>() {
            let running = self.machines[&id].node.is_some();
            match (latest.contains(id), running) {
                (true, false) => self.start(id),
                (false, true) if !counted.contains(&id) => self.crash(id),
                _ => {}
            }
        }
    }

    /// A leader has committed its whole log, every member has applied it, and so every
    /// acknowledged proposal is applied on every member.
    fn settled(&self) -> bool {
        let Some(leader) = self.leader() else {
            return false;
        };
        let leader = self.machines[&leader].node.as_ref().expect("running");
        let commit = leader.commit_index();
        let members: Vec<&Machine> = leader
            .membership()
            .members()
            .map(|id| &self.machines[&id])
            .collect();
        if commit != leader.last_index()
            || members
                .iter()
                .any(|machine| machine.applied.len() as u64 != commit)
        {
            return false;
        }
        self.acknowledged.iter().all(|(index, data)| {
            members
                .iter()
                .all(|machine| machine.applied.get(*index as usize - 1) == Some(data))
        })
    }

    fn finish_report(&mut self) {
        let leader = self.leader().expect("settled");
        let node = self.machines[&leader].node.as_ref().expect("running");
        self.report.terms = node.term();
        self.report.commit = node.commit_index();
        self.report.conf_changes = self.machines[&leader].conf_changes;
    }
}
