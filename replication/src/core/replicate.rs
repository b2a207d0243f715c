//! Log replication (§5.3): what a leader sends each follower, how a follower takes it, and
//! the commit rule (§5.4.2).

use super::{Node, Role, SnapshotPoint};
use crate::config::Membership;
use crate::message::{Body, Entry, EntryData, Message, NodeId};
use crate::progress::{Progress, ProgressState};
use crate::wire;

impl Node {
    pub(super) fn append_own(&mut self, data: EntryData) -> u64 {
        let index = self.log.last_index() + 1;
        let change = match wire::decode_conf_change(&data) {
            Some(Ok((change, _))) => Some(change),
            _ => None,
        };
        self.log.push(Entry {
            term: self.term,
            index,
            data,
        });
        if let Some(change) = change {
            self.conf_change_appended(index, change);
        }
        index
    }

    pub(super) fn send(&mut self, to: NodeId, body: Body) {
        self.messages.push(Message {
            from: self.id(),
            to,
            term: self.term,
            body,
        });
    }

    pub(super) fn broadcast_append(&mut self) {
        let followers: Vec<NodeId> = self.progress.keys().copied().collect();
        for follower in followers {
            self.send_appends(follower);
        }
    }

    /// Sends what `to` lacks, as many batches as its progress allows; returns how many.
    pub(super) fn send_appends(&mut self, to: NodeId) -> usize {
        let mut sent = 0;
        while self.send_append(to, false) {
            sent += 1;
            if self.progress[&to].state == ProgressState::Probe {
                break;
            }
        }
        sent
    }

    /// Sends one append to `to` if its progress allows; returns whether one went out. In
    /// `Replicate` with nothing new to send, an empty append goes out only if `send_if_empty`:
    /// it checks that the follower really holds what we believe we sent.
    pub(super) fn send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let progress = &self.progress[&to];
        if !progress.can_send(self.config.inflight_appends_max) {
            return false;
        }
        let next_index = progress.next_index;
        let last_index = self.log.last_index();
        if progress.state == ProgressState::Replicate && next_index > last_index && !send_if_empty {
            return false;
        }
        let prev_index = next_index - 1;
        let Some(prev_term) = self.log.term_at(prev_index) else {
            // The follower needs entries this node has forgotten (`Node::compact`): the
            // caller serves them from storage, or with a snapshot (`Ready::wanted`).
            self.wanted.insert(to, next_index);
            return false;
        };
        let entries = self.batch_from(next_index);
        self.send_append_of(to, prev_index, prev_term, entries);
        true
    }

    /// Sends `entries` (following `prev_index`, whose term is `prev_term`) to `to`, moving its
    /// progress as a sent append does.
    fn send_append_of(&mut self, to: NodeId, prev_index: u64, prev_term: u64, entries: Vec<Entry>) {
        let commit = self.log.commit;
        let progress = self.progress.get_mut(&to).expect("a follower");
        match progress.state {
            ProgressState::Probe => progress.probe_sent = true,
            ProgressState::Replicate => {
                if let Some(last) = entries.last() {
                    progress.next_index = last.index + 1;
                    progress.inflight.push_back(last.index);
                }
            }
        }
        self.send(
            to,
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            },
        );
    }

    /// Sends `to` entries the caller read from its storage because this node no longer holds
    /// them (`Ready::wanted`): `entries` start at the index `to` needs next and `prev_term` is
    /// the term of the entry before them. They are committed entries (the node forgets only
    /// applied ones), so every leader's log agrees with them. Returns whether an append went
    /// out: not when this node no longer leads, `to` needs another index by now, or its
    /// progress allows no append yet (it is listed in `wanted` again when it does).
    pub fn send_stored(&mut self, to: NodeId, prev_term: u64, entries: Vec<Entry>) -> bool {
        self.assert_advanced();
        if self.role != Role::Leader {
            return false;
        }
        let Some(progress) = self.progress.get(&to) else {
            return false;
        };
        let Some(first) = entries.first() else {
            return false;
        };
        if first.index != progress.next_index
            || !progress.can_send(self.config.inflight_appends_max)
        {
            return false;
        }
        for (position, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.index,
                first.index + position as u64,
                "stored entries have a gap"
            );
        }
        let last = entries.last().expect("not empty").index;
        assert!(
            last <= self.log.commit,
            "stored entries through {last} beyond the commit index {}",
            self.log.commit
        );
        self.send_append_of(to, first.index - 1, prev_term, entries);
        // What `to` was listed as wanting is answered: a `Ready` after this one must not ask
        // for it again (the caller would read it back twice).
        self.wanted.remove(&to);
        true
    }

    /// Tells `to` to install the snapshot through `point` that the caller has moved to it
    /// (serving a `Ready::wanted` its storage could not serve from the log), with the
    /// membership as of `point.index` ([`Node::membership_at`]). The snapshot must hold only
    /// committed entries. No append goes to `to` until it answers (or a heartbeat response
    /// says it may have missed this). Returns whether it went out: not when this node no
    /// longer leads, `to` is not a follower, or `point` is older than the memberships this
    /// node remembers (a snapshot at the applied index always qualifies; for an older one
    /// whose membership the caller knows, see [`Node::send_snapshot_with`]).
    pub fn send_snapshot(&mut self, to: NodeId, point: SnapshotPoint) -> bool {
        self.assert_advanced();
        match self.membership_at(point.index) {
            Some(membership) => self.send_snapshot_with(to, point, membership),
            None => false,
        }
    }

    /// [`Node::send_snapshot`] with the membership as of `point.index` given by the caller,
    /// for a snapshot older than what this node remembers (it restarted after the snapshot
    /// was taken): the caller reads it from the snapshot's own state (the server: the
    /// membership record its engine keeps). It must be the membership the committed log makes
    /// through `point.index`; the follower adopts it as is. Returns whether it went out: not
    /// when this node no longer leads or `to` is not a follower.
    pub fn send_snapshot_with(
        &mut self,
        to: NodeId,
        point: SnapshotPoint,
        membership: Membership,
    ) -> bool {
        self.assert_advanced();
        if self.role != Role::Leader || !self.progress.contains_key(&to) {
            return false;
        }
        assert!(
            point.index <= self.log.commit,
            "a snapshot through {} beyond the commit index {}",
            point.index,
            self.log.commit
        );
        let progress = self.progress.get_mut(&to).expect("a follower");
        progress.become_probe();
        // Never below what the follower is known to hold: a probe from there is answered
        // with a match no higher than the one known, which moves no progress, and the
        // same append would go out again forever (a stale `wanted` served by a snapshot
        // older than the follower's match; the one-clock membership sweep, seed 10575).
        progress.next_index = (point.index + 1).max(progress.match_index + 1);
        progress.probe_sent = true;
        self.wanted.remove(&to);
        self.send(
            to,
            Body::InstallSnapshot {
                index: point.index,
                term: point.term,
                membership,
            },
        );
        true
    }

    /// A follower's side of InstallSnapshot: a log that already holds the snapshot's last
    /// entry keeps what it has (log matching makes everything through it the leader's, so
    /// the membership it makes is the snapshot's, and a change after it stays in force);
    /// otherwise the log restarts after the snapshot, the snapshot's membership is the one in
    /// force, and the caller installs it (`Ready::snapshot`). Either way the follower matches
    /// the leader through the snapshot.
    pub(super) fn handle_install_snapshot(
        &mut self,
        leader: NodeId,
        point: SnapshotPoint,
        membership: Membership,
    ) {
        if point.index <= self.log.commit {
            let match_index = self.log.commit;
            self.send(leader, Body::AppendAccepted { match_index });
            return;
        }
        if self.log.term_at(point.index) == Some(point.term) {
            self.log.commit_to(point.index);
        } else {
            #[cfg(test)]
            let membership = match self.faults.snapshot_keeps_old_membership {
                true => self.applied_membership.clone(),
                false => membership,
            };
            self.log.restore_snapshot(point.index, point.term);
            self.snapshot_membership_adopted(point.index, membership.clone());
            self.snapshot_due = Some((point, membership));
        }
        self.send(
            leader,
            Body::AppendAccepted {
                match_index: point.index,
            },
        );
    }

    /// Entries from `from` on, up to the batch limits (at least one if there is one).
    pub(super) fn batch_from(&self, from: u64) -> Vec<Entry> {
        let last_index = self.log.last_index();
        if from > last_index {
            return Vec::new();
        }
        let through = last_index.min(from + self.config.append_entries_max as u64 - 1);
        let mut bytes = 0;
        let mut batch = Vec::new();
        for entry in self.log.slice(from, through) {
            if !batch.is_empty() && bytes + entry.data.len() > self.config.append_bytes_max {
                break;
            }
            bytes += entry.data.len();
            batch.push(entry.clone());
        }
        batch
    }

    pub(super) fn broadcast_heartbeat(&mut self) {
        self.heartbeat_round += 1;
        let round = self.heartbeat_round;
        let beats: Vec<(NodeId, u64)> = self
            .progress
            .iter()
            .map(|(&follower, progress)| (follower, self.heartbeat_commit(progress)))
            .collect();
        for (follower, commit) in beats {
            self.send(follower, Body::Heartbeat { commit, round });
        }
    }

    /// The commit index a follower may learn from a heartbeat: no more than it is known to
    /// hold of our log.
    pub(super) fn heartbeat_commit(&self, progress: &Progress) -> u64 {
        #[cfg(test)]
        if self.faults.follower_commit_unchecked {
            return self.log.commit;
        }
        progress.match_index.min(self.log.commit)
    }

    pub(super) fn handle_append(
        &mut self,
        leader: NodeId,
        prev_index: u64,
        prev_term: u64,
        entries: &[Entry],
        commit: u64,
    ) {
        if prev_index < self.log.commit {
            // Everything through our commit index matches any leader's log already.
            let match_index = self.log.commit;
            self.send(leader, Body::AppendAccepted { match_index });
            return;
        }
        match self.log.try_append(prev_index, prev_term, entries) {
            Some(match_index) => {
                if let Some(first) = entries.first() {
                    self.rescan_conf_changes(first.index);
                }
                // Only what the leader showed us matches it; beyond that our log may differ.
                let checked = match_index;
                #[cfg(test)]
                let checked = match self.faults.follower_commit_unchecked {
                    true => self.log.last_index(),
                    false => checked,
                };
                self.log.commit_to(commit.min(checked));
                self.send(leader, Body::AppendAccepted { match_index });
            }
            None => {
                let (hint_index, hint_term) =
                    self.log.last_index_with_term_at_most(prev_index, prev_term);
                self.send(
                    leader,
                    Body::AppendRejected {
                        prev_index,
                        hint_index,
                        hint_term,
                    },
                );
            }
        }
    }

    pub(super) fn handle_append_accepted(&mut self, from: NodeId, match_index: u64) {
        let Some(progress) = self.progress.get_mut(&from) else {
            return; // not (or no longer) a member
        };
        progress.recent_active = true;
        if progress.accept(match_index) {
            self.maybe_commit();
            if self.transferee == Some(from) && match_index == self.log.last_index() {
                self.handed_over = true;
                self.send(from, Body::TimeoutNow);
            }
        }
        self.send_appends(from);
    }

    pub(super) fn handle_append_rejected(
        &mut self,
        from: NodeId,
        prev_index: u64,
        hint_index: u64,
        hint_term: u64,
    ) {
        let (next_index, _) = self.log.last_index_with_term_at_most(hint_index, hint_term);
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.recent_active = true;
        let stale = match progress.state {
            ProgressState::Replicate => prev_index <= progress.match_index,
            ProgressState::Probe => prev_index + 1 != progress.next_index,
        };
        if stale {
            return;
        }
        // Back off below the rejected index, never below what is known to match.
        progress.next_index = (next_index + 1)
            .min(prev_index)
            .max(progress.match_index + 1);
        progress.become_probe();
        self.send_appends(from);
    }

    pub(super) fn handle_heartbeat_response(&mut self, from: NodeId, round: u64) {
        let inflight_appends_max = self.config.inflight_appends_max;
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.recent_active = true;
        // Never above the rounds this node sent (a peer's word is not trusted further).
        progress.acked_round = progress.acked_round.max(round.min(self.heartbeat_round));
        progress.probe_sent = false;
        // A full pipeline may be full of lost appends: let one more out, whose answer
        // (accepted or rejected) puts the progress right.
        if progress.state == ProgressState::Replicate
            && progress.inflight.len() >= inflight_appends_max
        {
            progress.inflight.pop_front();
        }
        // Appends may have been lost: in `Replicate` with nothing left to send, an empty one
        // finds out (the follower rejects it if it lacks what came before).
        if progress.match_index < self.log.last_index() && self.send_appends(from) == 0 {
            self.send_append(from, true);
        }
    }

    /// §5.3 and §5.4.2: the highest index a majority of the voters holds becomes committed,
    /// if its entry is of the current term. Our own log counts only as far as it is
    /// durable (`own_durable`); learners do not count.
    pub(super) fn maybe_commit(&mut self) -> bool {
        let membership = &self.config.membership;
        let mut matched: Vec<u64> = self
            .progress
            .iter()
            .filter(|(&follower, _)| membership.is_voter(follower))
            .map(|(_, progress)| progress.match_index)
            .collect();
        if membership.is_voter(self.config.id) {
            matched.push(self.own_durable());
        }
        if matched.len() < membership.quorum() {
            return false; // voters we do not track yet (a change applied on us, not them)
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let majority_index = matched[self.config.membership.quorum() - 1];
        let current_term = self.log.term_at(majority_index) == Some(self.term);
        #[cfg(test)]
        let current_term = current_term || self.faults.commit_counts_old_terms;
        current_term && self.log.commit_to(majority_index)
    }
}
