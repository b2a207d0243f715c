//! The safety properties of raft's Figure 3, checked after every simulator step against what
//! every node has done so far (including nodes that crashed since).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::config::Membership;
use crate::core::{Node, Role};
use crate::message::{Entry, NodeId};
use crate::wire;

/// Which property broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Property {
    /// At most one leader per term.
    ElectionSafety,
    /// A leader is a voter, in the membership in force or (while its own removal is not
    /// applied) in the applied one: never a learner or a node not added.
    OnlyVotersLead,
    /// Two entries with the same index and term hold the same data and follow the same log.
    LogMatching,
    /// An entry committed in term t is in the log of every leader of a term >= t.
    LeaderCompleteness,
    /// No two nodes apply (or see committed) different entries at one index.
    StateMachineSafety,
    /// A node's applied membership is what the applied log makes of the initial membership
    /// through its applied index (after restarts and snapshots alike); a snapshot carries the
    /// membership in force at its index, and a node that installs one uses it with the
    /// changes its log holds after that index.
    MembershipAgreement,
    /// After healing, a leader exists and every acknowledged proposal is applied everywhere.
    Liveness,
    /// The clients' history of key-value commands (proposed, answered when their entry was
    /// applied on the node that accepted it) is linearizable.
    Linearizability,
    /// Under one shared clock, no node leads a term while a leader of an older term still
    /// holds a lease (`Node::lease_round` dated as the server dates it).
    LeaseSafety,
}

#[derive(Clone, Debug)]
pub(crate) struct Violation {
    pub(crate) property: Property,
    pub(crate) step: u64,
    pub(crate) detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} broken at step {}: {}",
            self.property, self.step, self.detail
        )
    }
}

pub(crate) type Checked = Result<(), Violation>;

/// An entry as the checker remembers it: its term and a copy of its data.
type Seen = (u64, Vec<u8>);

pub(crate) struct Checker {
    pub(crate) step: u64,
    /// The leader of each term seen so far.
    leaders: BTreeMap<u64, NodeId>,
    /// (index, term) -> (term of the entry before it, data): every entry any node persisted.
    entries: HashMap<(u64, u64), (u64, Vec<u8>)>,
    /// index -> (term, data, the lowest term in which some node saw it committed).
    committed: BTreeMap<u64, (u64, Vec<u8>, u64)>,
    /// index -> what was applied there.
    applied: BTreeMap<u64, Seen>,
    /// For each leader's term: committed entries through this index were found in its log.
    leader_checked_through: BTreeMap<u64, u64>,
    /// Each node's commit index when last looked at (reset on restart).
    commit_seen: BTreeMap<NodeId, u64>,
    /// The voters every node starts from.
    initial_membership: Membership,
    /// index -> the membership the applied change at that index made (changes that do not
    /// fit change nothing, as in the core).
    memberships: BTreeMap<u64, Membership>,
}

impl Checker {
    pub(crate) fn new(initial_membership: Membership) -> Checker {
        Checker {
            step: 0,
            leaders: BTreeMap::new(),
            entries: HashMap::new(),
            committed: BTreeMap::new(),
            applied: BTreeMap::new(),
            leader_checked_through: BTreeMap::new(),
            commit_seen: BTreeMap::new(),
            initial_membership,
            memberships: BTreeMap::new(),
        }
    }

    /// The membership in force as of `index` by the applied log. Every index up to any node's
    /// applied index has been applied somewhere (a snapshot holds what its leader applied), and
    /// in order, so no change at or below `index` is missing here.
    fn membership_as_of(&self, index: u64) -> &Membership {
        self.memberships
            .range(..=index)
            .next_back()
            .map_or(&self.initial_membership, |(_, membership)| membership)
    }

    /// The membership `changes` (entries' data, in order) make of `membership`.
    fn with_changes<'a>(
        mut membership: Membership,
        changes: impl Iterator<Item = &'a [u8]>,
    ) -> Membership {
        for data in changes {
            if let Some(Ok((change, _))) = wire::decode_conf_change(data) {
                if let Ok(next) = membership.changed(change) {
                    membership = next;
                }
            }
        }
        membership
    }
    fn violation(&self, property: Property, detail: String) -> Violation {
        Violation {
            property,
            step: self.step,
            detail,
        }
    }

    /// Entries a node is about to persist: same (index, term) must mean same data and same
    /// term before it, which by induction means the same prefix (log matching).
    pub(crate) fn persisted(&mut self, node: &Node, entries: &[Entry]) -> Checked {
        for entry in entries {
            let prev_term = node
                .term_at(entry.index - 1)
                .expect("entries follow the log");
            let key = (entry.index, entry.term);
            match self.entries.get(&key) {
                None => {
                    self.entries.insert(key, (prev_term, entry.data.to_vec()));
                }
                Some((seen_prev_term, seen_data)) => {
                    if *seen_prev_term != prev_term || *seen_data != entry.data {
                        return Err(self.violation(
                            Property::LogMatching,
                            format!(
                                "node {} holds index {} term {} after term {prev_term}, another node after term {seen_prev_term} (data equal: {})",
                                node.id(),
                                entry.index,
                                entry.term,
                                *seen_data == entry.data
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    pub(crate) fn applied(&mut self, node: NodeId, entry: &Entry) -> Checked {
        match self.applied.get(&entry.index) {
            None => {
                self.applied
                    .insert(entry.index, (entry.term, entry.data.to_vec()));
                let before = self.membership_as_of(entry.index - 1);
                let after = Checker::with_changes(before.clone(), [&entry.data[..]].into_iter());
                if after != *before {
                    self.memberships.insert(entry.index, after);
                }
                Ok(())
            }
            Some((term, data)) if *term == entry.term && *data == entry.data => Ok(()),
            Some((term, _)) => Err(self.violation(
                Property::StateMachineSafety,
                format!(
                    "node {node} applied index {} term {}, another node term {term}",
                    entry.index, entry.term
                ),
            )),
        }
    }

    /// A node replaced its state machine by a snapshot through `index` holding the data of
    /// every entry through it: each must be what was applied there elsewhere, `membership`
    /// (what the leader sent with it) must be the one in force at `index`, and the node must
    /// now use it with the changes its log holds after `index` (in force once appended).
    pub(crate) fn snapshot_installed(
        &mut self,
        node: &Node,
        index: u64,
        data: &[Vec<u8>],
        membership: &Membership,
    ) -> Checked {
        let id = node.id();
        self.snapshot_data_installed(id, data)?;
        let expected = self.membership_as_of(index);
        if membership != expected {
            return Err(self.violation(
                Property::MembershipAgreement,
                format!("node {id} installed a snapshot through {index} with membership {membership:?}; the log makes it {expected:?}"),
            ));
        }
        let after = (index + 1..=node.last_index())
            .filter_map(|at| node.entry(at))
            .map(|entry| &entry.data[..]);
        let in_force = Checker::with_changes(expected.clone(), after);
        if *node.membership() != in_force || node.applied_membership() != expected {
            return Err(self.violation(
                Property::MembershipAgreement,
                format!(
                    "node {id} installed a snapshot through {index} ({expected:?}) and holds {} entries after it: it uses {:?} (applied {:?}), not {in_force:?}",
                    node.last_index() - index,
                    node.membership(),
                    node.applied_membership()
                ),
            ));
        }
        Ok(())
    }

    fn snapshot_data_installed(&mut self, node: NodeId, data: &[Vec<u8>]) -> Checked {
        for (position, data) in data.iter().enumerate() {
            let index = position as u64 + 1;
            if let Some((_, applied)) = self.applied.get(&index) {
                if applied != data {
                    return Err(self.violation(
                        Property::StateMachineSafety,
                        format!("node {node} installed a snapshot whose index {index} differs from what was applied there"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `node` led `term` in memory only and crashed before anything of it was written or
    /// sent: that leadership never happened.
    pub(crate) fn forget_leader(&mut self, term: u64, node: NodeId) {
        if self.leaders.get(&term) == Some(&node) {
            self.leaders.remove(&term);
        }
    }

    pub(crate) fn restarted(&mut self, node: NodeId) {
        self.commit_seen.remove(&node);
    }

    /// Looks at one live node after a step.
    pub(crate) fn observe(&mut self, node: &Node) -> Checked {
        self.observe_commit(node)?;
        self.observe_membership(node)?;
        if node.role() == Role::Leader {
            self.observe_leader(node)?;
        }
        Ok(())
    }

    fn observe_commit(&mut self, node: &Node) -> Checked {
        let seen = self.commit_seen.get(&node.id()).copied().unwrap_or(0);
        let commit = node.commit_index();
        // Below the node's first index: forgotten after it was seen committed, or part of an
        // installed snapshot (checked by `snapshot_installed`).
        for index in (seen + 1).max(node.first_index())..=commit {
            let entry = node.entry(index).expect("commit within the log");
            let term_seen = node.term();
            match self.committed.get_mut(&index) {
                None => {
                    self.committed
                        .insert(index, (entry.term, entry.data.to_vec(), term_seen));
                }
                Some((term, data, first_term)) => {
                    if *term != entry.term || *data != entry.data {
                        let detail = format!(
                            "node {} has index {index} committed with term {}, another node with term {term}",
                            node.id(),
                            entry.term
                        );
                        return Err(self.violation(Property::StateMachineSafety, detail));
                    }
                    *first_term = (*first_term).min(term_seen);
                }
            }
        }
        self.commit_seen.insert(node.id(), commit.max(seen));
        Ok(())
    }

    fn observe_membership(&self, node: &Node) -> Checked {
        let applied = node.applied_index();
        let expected = self.membership_as_of(applied);
        if node.applied_membership() != expected {
            return Err(self.violation(
                Property::MembershipAgreement,
                format!(
                    "node {} has {:?} applied through {applied}; the log makes it {expected:?}",
                    node.id(),
                    node.applied_membership()
                ),
            ));
        }
        Ok(())
    }

    fn observe_leader(&mut self, node: &Node) -> Checked {
        let id = node.id();
        if !node.membership().is_voter(id) && !node.applied_membership().is_voter(id) {
            return Err(self.violation(
                Property::OnlyVotersLead,
                format!(
                    "node {id} leads term {} with membership {:?} (applied {:?})",
                    node.term(),
                    node.membership(),
                    node.applied_membership()
                ),
            ));
        }
        let term = node.term();
        let leader = *self.leaders.entry(term).or_insert(node.id());
        if leader != node.id() {
            return Err(self.violation(
                Property::ElectionSafety,
                format!("nodes {leader} and {} both led term {term}", node.id()),
            ));
        }
        // A leader's log only grows, so what was checked stays checked.
        let checked = self.leader_checked_through.get(&term).copied().unwrap_or(0);
        let mut through = checked;
        for (&index, (entry_term, data, committed_in)) in self.committed.range(checked + 1..) {
            if *committed_in > term {
                break; // committed after this term began: this leader need not hold it (yet)
            }
            if index < node.first_index() {
                // Forgotten after it was applied here (the applied check covered it).
                through = index;
                continue;
            }
            let held = node.entry(index);
            if held.map(|entry| (entry.term, entry.data.as_slice()))
                != Some((*entry_term, data.as_slice()))
            {
                return Err(self.violation(
                    Property::LeaderCompleteness,
                    format!(
                        "leader {} of term {term} lacks index {index} (term {entry_term}), committed by term {committed_in}; it holds {:?}",
                        node.id(),
                        held.map(|entry| entry.term)
                    ),
                ));
            }
            through = index;
        }
        self.leader_checked_through.insert(term, through);
        Ok(())
    }
}
