//! Membership changes, one server at a time (the raft dissertation's §4.1, etcd's
//! `ConfChange`): a leader proposes a change as an entry of its own and refuses another until
//! that one is applied (etcd's `pendingConfIndex`). Every node uses the latest membership in
//! its log, applied or not, as the dissertation does (etcd switches when it applies: see
//! docs/replication.md, "Membership changes", for why not here, and the safety argument).

use super::{Node, Role};
use crate::config::Membership;
use crate::error::{Error, Result};
use crate::message::{ConfChange, ConfChangeKind, NodeId};
use crate::progress::{Progress, ProgressState};
use crate::wire;

/// How many applied memberships a node remembers for [`Node::membership_at`]: a snapshot
/// taken before the `MEMBERSHIPS_KEPT`th last change cannot be sent. Changes are rare (an
/// operator's), and a snapshot is taken at or near the applied index, so a few would do; each
/// is a few ids.
const MEMBERSHIPS_KEPT: usize = 64;

impl Node {
    /// Appends a membership change (leader only) and returns its index; `payload` rides in
    /// the same entry after the change (the core never reads it). Refused while an earlier
    /// change is not applied, when the change does not fit the membership (an id in use, a
    /// promotion of a non-learner, the removal of the last voter), and for a promotion of a
    /// learner that has not caught up ([`Node::learner_caught_up`]).
    pub fn propose_conf_change(&mut self, change: ConfChange, payload: &[u8]) -> Result<u64> {
        self.assert_advanced();
        if self.role != Role::Leader || !self.is_voter() {
            return Err(self.not_leader());
        }
        if self.transferee.is_some() {
            return Err(Error::TransferInProgress);
        }
        if self.pending_conf_index > self.log.applied {
            return Err(Error::ChangePending {
                index: self.pending_conf_index,
            });
        }
        self.config.membership.changed(change)?;
        if change.kind == ConfChangeKind::PromoteLearner && !self.learner_caught_up(change.node) {
            let match_index = self.progress.get(&change.node).map_or(0, |p| p.match_index);
            return Err(Error::LearnerBehind {
                node: change.node,
                match_index,
            });
        }
        let mut data = Vec::new();
        wire::encode_conf_change(change, payload, &mut data);
        let index = self.append_proposal(data.into())?;
        self.pending_conf_index = index;
        Ok(index)
    }

    /// The index no new change may be proposed before it is applied (0: none).
    pub fn pending_conf_index(&self) -> u64 {
        self.pending_conf_index
    }

    /// Whether the leader knows `learner`'s log to match its own (its progress is past
    /// probing) to within `learner_lag_max` entries of the commit index. Always false on a
    /// node that does not lead.
    pub fn learner_caught_up(&self, learner: NodeId) -> bool {
        if self.role != Role::Leader || !self.config.membership.is_learner(learner) {
            return false;
        }
        self.progress.get(&learner).is_some_and(|progress| {
            progress.state == ProgressState::Replicate
                && progress.match_index + self.config.learner_lag_max >= self.log.commit
        })
    }

    /// The learners a leader could promote now (for a caller that promotes automatically).
    pub fn caught_up_learners(&self) -> Vec<NodeId> {
        self.config
            .membership
            .learners()
            .filter(|&learner| self.learner_caught_up(learner))
            .collect()
    }

    /// Forgets the unapplied changes at `from` and after, and reads them again from the log
    /// (after an append that may have cut it at `from`, and at restart).
    pub(super) fn rescan_conf_changes(&mut self, from: u64) {
        self.unapplied_changes.retain(|&(index, _)| index < from);
        let from = from.max(self.log.applied + 1);
        if from <= self.log.last_index() {
            for entry in self.log.slice(from, self.log.last_index()) {
                if let Some(Ok((change, _))) = wire::decode_conf_change(&entry.data) {
                    self.unapplied_changes.push((entry.index, change));
                }
            }
        }
        self.config.membership = self.membership_with_changes();
    }

    /// The applied membership with every unapplied change made. A change that does not fit
    /// (it cannot come from a leader that follows the rules above) or whose header is broken
    /// changes nothing, on every node alike.
    fn membership_with_changes(&self) -> Membership {
        let mut membership = self.applied_membership.clone();
        for &(_, change) in &self.unapplied_changes {
            if let Ok(next) = membership.changed(change) {
                membership = next;
            }
        }
        membership
    }

    /// The leader appended `change` at `index`: it is in force from now on.
    pub(super) fn conf_change_appended(&mut self, index: u64, change: ConfChange) {
        self.unapplied_changes.push((index, change));
        let before = self.config.membership.clone();
        self.config.membership = self.membership_with_changes();
        if self.config.membership == before || self.role != Role::Leader {
            return;
        }
        let node = change.node;
        match change.kind {
            ConfChangeKind::AddLearner if node != self.id() => {
                let next_index = self.log.last_index() + 1;
                self.progress.insert(node, Progress::new(next_index));
            }
            ConfChangeKind::RemoveNode if node != self.id() => {
                self.progress.remove(&node);
            }
            _ => {}
        }
        if self
            .transferee
            .is_some_and(|to| !self.config.membership.is_voter(to))
        {
            self.transferee = None;
        }
        // A smaller quorum may commit what the larger one had not.
        self.maybe_commit();
    }

    /// The membership in force as of `index`: what the changes through `index` made of the
    /// membership this node started from (the one a leader sends with a snapshot through
    /// `index`). `None` beyond the log, and below the oldest membership this node remembers:
    /// the index it restarted or installed a snapshot at, or the `MEMBERSHIPS_KEPT`th last
    /// change it applied.
    pub fn membership_at(&self, index: u64) -> Option<Membership> {
        if index > self.log.last_index() {
            return None;
        }
        if index >= self.log.applied {
            let mut membership = self.applied_membership.clone();
            let changes = self.unapplied_changes.iter();
            for &(_, change) in changes.take_while(|&&(at, _)| at <= index) {
                if let Ok(next) = membership.changed(change) {
                    membership = next;
                }
            }
            return Some(membership);
        }
        self.membership_history
            .iter()
            .rev()
            .find(|&&(from, _)| from <= index)
            .map(|(_, membership)| membership.clone())
    }

    /// The log restarted after a snapshot through `index`: its changes are gone with it, and
    /// the snapshot's membership is the applied one and the one in force (no entry follows
    /// it yet). Nothing older is known any more.
    pub(super) fn snapshot_membership_adopted(&mut self, index: u64, membership: Membership) {
        self.unapplied_changes.clear();
        self.config.membership = membership.clone();
        self.applied_membership = membership.clone();
        self.membership_history.clear();
        self.membership_history.push_back((index, membership));
    }

    /// The entries through `through` are applied: their changes move into the applied
    /// membership. A leader whose own removal is applied, and so committed, steps down (etcd's
    /// `stepDownOnRemoval`); the remaining voters hold the change and elect a leader among
    /// themselves.
    pub(super) fn conf_changes_applied(&mut self, through: u64) {
        let applied = self
            .unapplied_changes
            .iter()
            .take_while(|&&(index, _)| index <= through)
            .count();
        for (index, change) in self.unapplied_changes.drain(..applied) {
            if let Ok(next) = self.applied_membership.changed(change) {
                self.applied_membership = next.clone();
                self.membership_history.push_back((index, next));
                if self.membership_history.len() > MEMBERSHIPS_KEPT {
                    self.membership_history.pop_front();
                }
            }
        }
        if self.role == Role::Leader && !self.promotable() {
            self.become_follower(self.term, None);
        }
    }
}
