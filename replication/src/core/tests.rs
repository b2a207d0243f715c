//! Unit tests of the core, each naming the part of the raft paper (or of etcd's design) it
//! checks. A tiny in-process network delivers every message at once, unless a link is cut.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::config::Membership;
use crate::message::{ConfChange, ConfChangeKind};
use crate::wire;

fn config(id: NodeId) -> Config {
    Config::new(id, Membership::new([1, 2, 3]))
}

fn entries(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(position, &term)| Entry {
            term,
            index: position as u64 + 1,
            data: format!("e{}", position + 1).into_bytes().into(),
        })
        .collect()
}

fn persisted(term: u64, log_terms: &[u64]) -> Persisted {
    Persisted {
        hard_state: HardState {
            term,
            vote: None,
            commit: 0,
        },
        entries: entries(log_terms),
        applied: 0,
        ..Persisted::default()
    }
}

/// Three nodes and instant delivery.
struct Cluster {
    nodes: BTreeMap<NodeId, Node>,
    /// Links cut in both directions.
    cut: BTreeSet<NodeId>,
    /// Every message delivered so far.
    delivered: Vec<Message>,
    applied: BTreeMap<NodeId, Vec<Entry>>,
    /// What each leader's `Ready`s asked of storage, in order (`Ready::wanted`).
    wanted: Vec<Wanted>,
    /// Snapshots each node was told to install (`Ready::snapshot`), with their membership.
    installed: Vec<(NodeId, SnapshotPoint, Membership)>,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster::restarted([
            Persisted::default(),
            Persisted::default(),
            Persisted::default(),
        ])
    }

    fn restarted(disks: [Persisted; 3]) -> Cluster {
        let nodes = disks
            .into_iter()
            .enumerate()
            .map(|(position, disk)| {
                let id = position as u64 + 1;
                let mut node = Node::restart(config(id), id * 1000, disk);
                // Restarted long ago: the start hold (a lease it may have promised) is over.
                node.start_hold = false;
                (id, node)
            })
            .collect();
        Cluster {
            nodes,
            cut: BTreeSet::new(),
            delivered: Vec::new(),
            applied: BTreeMap::new(),
            wanted: Vec::new(),
            installed: Vec::new(),
        }
    }

    fn node(&mut self, id: NodeId) -> &mut Node {
        self.nodes.get_mut(&id).expect("a node")
    }

    /// Handles every `Ready` and delivers every message until the cluster is quiet.
    fn settle(&mut self) {
        assert!(self.settle_within(100_000), "no quiet after 100,000 rounds");
    }

    /// [`Cluster::settle`] for at most `rounds` rounds of delivery: whether it went quiet.
    fn settle_within(&mut self, rounds: usize) -> bool {
        for _ in 0..rounds {
            let mut messages = Vec::new();
            for (&id, node) in &mut self.nodes {
                if node.has_ready() {
                    let ready = node.ready();
                    messages.extend(ready.messages);
                    self.wanted.extend(ready.wanted);
                    if let Some(point) = ready.snapshot {
                        let membership = ready.snapshot_membership.expect("with the snapshot");
                        self.installed.push((id, point, membership));
                    }
                    self.applied.entry(id).or_default().extend(ready.committed);
                    node.advance();
                }
            }
            if messages.is_empty() {
                return true;
            }
            for message in messages {
                if self.cut.contains(&message.from) || self.cut.contains(&message.to) {
                    continue;
                }
                self.delivered.push(message.clone());
                self.node(message.to).step(message).expect("well addressed");
            }
        }
        false
    }

    /// Ticks `id` alone until it leads (every other node keeps quiet).
    fn elect(&mut self, id: NodeId) {
        for _ in 0..100 {
            self.node(id).tick();
            self.settle();
            if self.node(id).role() == Role::Leader {
                return;
            }
        }
        panic!("node {id} was not elected");
    }

    /// Ticks every node `ticks` times, settling after each round.
    fn tick_all(&mut self, ticks: u32) {
        for _ in 0..ticks {
            for node in self.nodes.values_mut() {
                node.tick();
            }
            self.settle();
        }
    }

    fn log_terms(&mut self, id: NodeId) -> Vec<u64> {
        let node = self.node(id);
        (1..=node.last_index())
            .map(|index| node.entry(index).unwrap().term)
            .collect()
    }
}

fn message(from: NodeId, to: NodeId, term: u64, body: Body) -> Message {
    Message {
        from,
        to,
        term,
        body,
    }
}

/// Steps `message` into `node` and returns what the node says back.
fn answer(node: &mut Node, message: Message) -> Vec<Message> {
    node.step(message).expect("well addressed");
    let ready = node.ready();
    node.advance();
    ready.messages
}

#[test]
fn an_election_makes_one_leader_that_the_others_follow() {
    // §5.2: a timed-out follower becomes candidate, wins a majority, and leads its term.
    let mut cluster = Cluster::new();
    cluster.elect(1);
    assert_eq!(cluster.node(1).term(), 1);
    for id in [2, 3] {
        assert_eq!(cluster.node(id).role(), Role::Follower);
        assert_eq!(cluster.node(id).leader(), Some(1));
        assert_eq!(cluster.node(id).term(), 1);
    }
    // The leader's empty entry of its term is committed and applied everywhere (§8).
    assert_eq!(cluster.node(1).commit_index(), 1);
    cluster.tick_all(2);
    assert!(cluster.applied.values().all(|applied| applied.len() == 1));
}

#[test]
fn election_timeouts_are_randomized_within_one_to_two_timeouts() {
    // §5.2: randomized timeouts in [election_ticks, 2 * election_ticks).
    let mut seen = BTreeSet::new();
    for seed in 0..50 {
        let mut node = Node::restart(config(1), seed, Persisted::default());
        let mut ticks = 0;
        while node.role() == Role::Follower {
            node.tick();
            ticks += 1;
        }
        assert!((10..20).contains(&ticks), "campaigned after {ticks} ticks");
        seen.insert(ticks);
    }
    assert!(seen.len() > 3, "timeouts hardly vary: {seen:?}");
}

#[test]
fn a_vote_is_given_once_per_term_and_survives_a_restart() {
    // §5.2: at most one vote per term, on disk before the answer leaves (Figure 2).
    let mut node = Node::new(config(1), 1);
    let ask = |from, term| {
        message(
            from,
            1,
            term,
            Body::Vote {
                last_index: 0,
                last_term: 0,
                transfer: false,
            },
        )
    };
    node.step(ask(2, 1)).unwrap();
    let ready = node.ready();
    assert_eq!(
        ready.hard_state,
        Some(HardState {
            term: 1,
            vote: Some(2),
            commit: 0
        })
    );
    assert_eq!(ready.messages[0].body, Body::VoteResponse { granted: true });
    node.advance();
    let refused = answer(&mut node, ask(3, 1));
    assert_eq!(refused[0].body, Body::VoteResponse { granted: false });

    let disk = Persisted {
        hard_state: ready.hard_state.unwrap(),
        ..Persisted::default()
    };
    let mut restarted = Node::restart(config(1), 2, disk);
    let refused = answer(&mut restarted, ask(3, 1));
    assert_eq!(refused[0].body, Body::VoteResponse { granted: false });
}

#[test]
fn a_vote_is_refused_to_a_candidate_with_a_staler_log() {
    // §5.4.1: compare last terms, then lengths.
    for (candidate_last_index, candidate_last_term, granted) in
        [(3, 1, false), (1, 2, false), (2, 2, true), (1, 3, true)]
    {
        let mut node = Node::restart(config(1), 1, persisted(2, &[1, 2]));
        node.start_hold = false; // restarted long ago
        let body = Body::Vote {
            last_index: candidate_last_index,
            last_term: candidate_last_term,
            transfer: false,
        };
        let reply = answer(&mut node, message(2, 1, 3, body));
        assert_eq!(
            reply[0].body,
            Body::VoteResponse { granted },
            "candidate's last entry {candidate_last_index} of term {candidate_last_term}"
        );
    }
}

/// Node 1 restarted with entries of terms [1, 2] in term 2, made leader of term 3 by hand;
/// returns it with its own empty entry (index 3) persisted.
fn leader_with_an_old_term_entry(faults: Faults) -> Node {
    let mut node = Node::restart(config(1), 1, persisted(2, &[1, 2]));
    node.set_faults(faults);
    while node.role() != Role::PreCandidate {
        node.tick();
    }
    let _ = node.ready();
    node.advance();
    answer(
        &mut node,
        message(2, 1, 3, Body::PreVoteResponse { granted: true }),
    );
    assert_eq!(node.role(), Role::Candidate);
    answer(
        &mut node,
        message(2, 1, 3, Body::VoteResponse { granted: true }),
    );
    assert_eq!(node.role(), Role::Leader);
    assert_eq!(node.last_index(), 3);
    node
}

#[test]
fn an_old_term_entry_is_not_committed_by_counting_replicas() {
    // §5.4.2 (Figure 8): a majority holding entry 2 (term 2) does not commit it in term 3;
    // the leader's own entry of term 3 reaching a majority commits both.
    let mut node = leader_with_an_old_term_entry(Faults::default());
    answer(
        &mut node,
        message(2, 1, 3, Body::AppendAccepted { match_index: 2 }),
    );
    assert_eq!(node.commit_index(), 0);
    answer(
        &mut node,
        message(2, 1, 3, Body::AppendAccepted { match_index: 3 }),
    );
    assert_eq!(node.commit_index(), 3);
}

#[test]
fn the_broken_build_does_commit_old_terms_by_counting() {
    // The switch the simulator's checker is tested against really breaks §5.4.2.
    let faults = Faults {
        commit_counts_old_terms: true,
        ..Faults::default()
    };
    let mut node = leader_with_an_old_term_entry(faults);
    answer(
        &mut node,
        message(2, 1, 3, Body::AppendAccepted { match_index: 2 }),
    );
    assert_eq!(node.commit_index(), 2);
}

#[test]
fn a_follower_replaces_a_conflicting_suffix_and_one_hint_finds_it() {
    // §5.3: the leader backs off until the logs match, the follower drops what conflicts.
    // With etcd's hint the whole term-2 run is skipped at once.
    let mut cluster = Cluster::restarted([
        persisted(3, &[1, 3, 3]),
        persisted(2, &[1, 2, 2, 2, 2]),
        persisted(3, &[1, 3]),
    ]);
    cluster.elect(1);
    cluster.tick_all(3);
    let leader_log = cluster.log_terms(1);
    assert_eq!(leader_log, vec![1, 3, 3, 4]);
    assert_eq!(cluster.log_terms(2), leader_log);
    assert_eq!(cluster.log_terms(3), leader_log);
    let rejections = cluster
        .delivered
        .iter()
        .filter(|message| message.to == 1 && matches!(message.body, Body::AppendRejected { .. }))
        .count();
    assert!(rejections <= 2, "{rejections} rejections");
}

#[test]
fn appends_are_batched_and_bounded_in_flight() {
    let mut cluster = Cluster::new();
    for node in cluster.nodes.values_mut() {
        node.config.append_entries_max = 4;
        node.config.inflight_appends_max = 2;
    }
    cluster.elect(1);
    cluster.tick_all(1);
    let leader = cluster.node(1);
    for value in 0..20u8 {
        leader.propose(vec![value]).unwrap();
    }
    let ready = leader.ready();
    leader.advance();
    let to_two: Vec<usize> = ready
        .messages
        .iter()
        .filter(|message| message.to == 2)
        .map(|message| match &message.body {
            Body::Append { entries, .. } => entries.len(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    // Two appends of four entries: the pipeline's bound, not one message per proposal.
    assert_eq!(to_two, vec![4, 4]);
    // Everything arrives once the answers come back.
    for message in ready.messages {
        cluster.node(message.to).step(message).unwrap();
    }
    cluster.settle();
    cluster.tick_all(2);
    assert_eq!(cluster.node(2).commit_index(), 21);
}

#[test]
fn pre_vote_keeps_a_rejoining_node_from_disturbing_the_leader() {
    // etcd's pre-vote: an isolated node's timeouts do not raise its term, so when it
    // returns, the leader stays.
    let mut cluster = Cluster::new();
    cluster.elect(1);
    cluster.cut.insert(3);
    cluster.tick_all(100);
    assert_eq!(cluster.node(3).term(), 1);
    cluster.cut.clear();
    cluster.tick_all(30);
    assert_eq!(cluster.node(1).role(), Role::Leader);
    assert_eq!(cluster.node(1).term(), 1);
    assert_eq!(cluster.node(3).leader(), Some(1));
}

#[test]
fn a_leader_cut_off_from_its_majority_steps_down() {
    // check-quorum: within two election timeouts of losing its followers.
    let mut cluster = Cluster::new();
    cluster.elect(1);
    cluster.cut.insert(1);
    cluster.tick_all(20);
    assert_eq!(cluster.node(1).role(), Role::Follower);
    // The other two elect a leader of a later term among themselves.
    cluster.tick_all(60);
    let leaders: Vec<NodeId> = [2, 3]
        .into_iter()
        .filter(|&id| cluster.node(id).role() == Role::Leader)
        .collect();
    assert_eq!(leaders.len(), 1);
    assert!(cluster.node(leaders[0]).term() > 1);
}

#[test]
fn leadership_moves_on_request() {
    // etcd's transfer: catch the target up, send TimeoutNow, it wins the next term.
    let mut cluster = Cluster::new();
    cluster.elect(1);
    cluster.node(1).propose(b"x".to_vec()).unwrap();
    cluster.node(1).transfer_leader(2).unwrap();
    assert_eq!(
        cluster.node(1).propose(b"y".to_vec()),
        Err(Error::TransferInProgress)
    );
    cluster.settle();
    assert_eq!(cluster.node(2).role(), Role::Leader);
    assert_eq!(cluster.node(2).term(), 2);
    assert_eq!(cluster.node(1).role(), Role::Follower);
    assert_eq!(cluster.node(1).leader(), Some(2));
}

#[test]
fn followers_that_forget_a_dead_leader_elect_another_within_half_an_election_timeout() {
    // etcd-io/raft's ForgetLeader: out of their lease, the followers grant pre-votes at once,
    // and a forgotten leader makes a follower campaign after 1..=election_ticks/2 ticks, not
    // election_ticks..2*election_ticks after the leader's last message.
    let mut cluster = Cluster::new();
    cluster.elect(1);
    cluster.tick_all(1);
    cluster.cut.insert(1);
    for id in [2, 3] {
        cluster.node(id).forget_leader();
        assert_eq!(cluster.node(id).leader(), None);
    }
    let half = config(1).election_ticks / 2;
    cluster.tick_all(half);
    let leaders: Vec<NodeId> = [2, 3]
        .into_iter()
        .filter(|&id| cluster.node(id).role() == Role::Leader)
        .collect();
    assert_eq!(leaders.len(), 1, "no leader within {half} ticks");
    assert_eq!(cluster.node(leaders[0]).term(), 2);
}

#[test]
fn one_follower_forgetting_a_live_leader_does_not_disturb_it() {
    // The other follower still hears the leader (its lease holds), so a pre-vote of the one
    // that forgot cannot win; the leader's next message makes it a follower again, with a
    // full election timeout.
    let mut cluster = Cluster::new();
    cluster.elect(1);
    cluster.node(3).forget_leader();
    cluster.tick_all(40);
    assert_eq!(cluster.node(1).role(), Role::Leader);
    assert_eq!(cluster.node(1).term(), 1);
    assert_eq!(cluster.node(3).leader(), Some(1));
    assert!(cluster.node(3).election_timeout >= config(3).election_ticks);
}

#[test]
fn two_pre_votes_at_once_do_not_split_the_election() {
    // Both followers of a dead leader start a pre-vote for the same term before either hears
    // the other's: if each granted the other's, both would become candidates with one vote
    // each. The tie goes to the better log, then the lower id.
    let mut cluster = Cluster::new();
    cluster.elect(1);
    cluster.tick_all(1);
    cluster.cut.insert(1);
    let mut asks = Vec::new();
    for id in [2, 3] {
        let node = cluster.node(id);
        node.forget_leader();
        node.campaign(Campaign::Timeout);
        assert_eq!(node.role(), Role::PreCandidate);
        let ready = node.ready();
        node.advance();
        asks.extend(ready.messages.into_iter().filter(|m| m.to != 1));
    }
    let mut answers = Vec::new();
    for ask in asks {
        let to = ask.to;
        answers.extend(answer(cluster.node(to), ask));
    }
    let grants: Vec<(NodeId, NodeId)> = answers
        .iter()
        .filter(|m| m.body == Body::PreVoteResponse { granted: true })
        .map(|m| (m.from, m.to))
        .collect();
    assert_eq!(grants, vec![(3, 2)]);
    for message in answers {
        let to = message.to;
        cluster.node(to).step(message).unwrap();
    }
    cluster.settle();
    assert_eq!(cluster.node(2).role(), Role::Leader);
    assert_eq!(cluster.node(2).term(), 2);
    assert_eq!(cluster.node(3).leader(), Some(2));
}

#[test]
fn a_follower_that_grants_a_pre_vote_waits_a_full_timeout() {
    // The asker's real vote is on its way: campaigning before it arrives would split it.
    let mut cluster = Cluster::new();
    cluster.elect(1);
    let node = cluster.node(3);
    node.forget_leader();
    let answers = answer(
        node,
        message(
            2,
            3,
            2,
            Body::PreVote {
                last_index: 1,
                last_term: 1,
            },
        ),
    );
    assert_eq!(answers[0].body, Body::PreVoteResponse { granted: true });
    assert_eq!(node.election_elapsed, 0);
    assert!(node.election_timeout >= config(3).election_ticks);
}

#[test]
fn forgetting_is_for_followers_of_a_known_leader() {
    let mut cluster = Cluster::new();
    cluster.elect(1);
    cluster.node(1).forget_leader();
    assert_eq!(cluster.node(1).leader(), Some(1));
    assert_eq!(cluster.node(1).role(), Role::Leader);
}

#[test]
fn proposals_are_refused_where_they_cannot_go() {
    let mut cluster = Cluster::new();
    assert_eq!(
        cluster.node(2).propose(vec![]),
        Err(Error::NotLeader { leader: None })
    );
    cluster.elect(1);
    assert_eq!(
        cluster.node(2).propose(vec![]),
        Err(Error::NotLeader { leader: Some(1) })
    );
    let leader = cluster.node(1);
    leader.config.entry_bytes_max = 4;
    leader.config.uncommitted_entries_max = 2;
    assert_eq!(
        leader.propose(vec![0; 5]),
        Err(Error::TooLarge { bytes: 5 })
    );
    leader.propose(vec![1]).unwrap();
    leader.propose(vec![2]).unwrap();
    assert_eq!(leader.propose(vec![3]), Err(Error::Busy));
}

#[test]
fn messages_from_nobody_or_for_others_are_refused_and_strangers_are_heard() {
    let mut node = Node::new(config(1), 1);
    let heartbeat = Body::Heartbeat {
        commit: 0,
        round: 4,
    };
    for from in [0, 1] {
        assert_eq!(
            node.step(message(from, 1, 1, heartbeat.clone())),
            Err(Error::UnknownNode(from))
        );
    }
    assert_eq!(
        node.step(message(2, 3, 1, heartbeat.clone())),
        Err(Error::Misdelivered { to: 3 })
    );
    // The dissertation's §4.1: a node answers without consulting its membership (a voter it
    // has not heard of yet may be a leader to others).
    let replies = answer(&mut node, message(9, 1, 1, heartbeat));
    assert_eq!(replies[0].body, Body::HeartbeatResponse { round: 4 });
    assert_eq!(node.leader(), Some(9));
}

#[test]
#[should_panic(expected = "advance()")]
fn nothing_may_happen_between_ready_and_advance() {
    let mut node = Node::new(config(1), 1);
    let _ready = node.ready();
    node.tick();
}

#[test]
fn a_leader_counts_its_own_entry_only_once_persisted() {
    // Our own log is part of the majority only as far as `advance` confirmed it on disk.
    let (mut cluster, index, term) = leader_with_a_proposal();
    let leader = cluster.node(1);
    leader.step(accepted(2, term, index)).unwrap();
    assert!(leader.commit_index() < index);
    let ready = leader.ready();
    assert_eq!(ready.entries.last().map(|entry| entry.index), Some(index));
    leader.advance();
    assert_eq!(leader.commit_index(), index);
}

/// Follower `from`'s acknowledgement to leader 1 of its log through `index`, in `term`.
fn accepted(from: NodeId, term: u64, index: u64) -> Message {
    message(from, 1, term, Body::AppendAccepted { match_index: index })
}

/// Node 1 leading a settled 3-node cluster, having proposed `b"x"` (not yet handed out):
/// (cluster, the proposal's index, the term).
fn leader_with_a_proposal() -> (Cluster, u64, u64) {
    let mut cluster = Cluster::new();
    cluster.elect(1);
    cluster.tick_all(1);
    let leader = cluster.node(1);
    let index = leader.propose(b"x".to_vec()).unwrap();
    let term = leader.term();
    (cluster, index, term)
}

/// `leader_with_a_proposal`, the proposal then handed out in a `Ready` written without a
/// flush (`advance_unsynced`).
fn leader_with_an_unsynced_entry() -> (Cluster, u64, u64) {
    let (mut cluster, index, term) = leader_with_a_proposal();
    let leader = cluster.node(1);
    let ready = leader.ready();
    assert_eq!(ready.entries.last().map(|entry| entry.index), Some(index));
    leader.advance_unsynced();
    (cluster, index, term)
}

#[test]
fn a_leader_s_unsynced_entry_counts_and_applies_only_once_its_flush_is_reported() {
    // Decision 98: the leader's own entry written without a flush is not part of its majority
    // until `synced`; the followers' acknowledgements alone can commit it, but the leader
    // hands it out to apply only once its own flush is reported.
    let (mut cluster, index, term) = leader_with_an_unsynced_entry();
    let leader = cluster.node(1);
    leader.step(accepted(2, term, index)).unwrap();
    assert!(
        leader.commit_index() < index,
        "one follower and an unflushed leader committed"
    );
    assert_eq!(leader.own_durable(), index - 1);
    leader.step(accepted(3, term, index)).unwrap();
    assert_eq!(
        leader.commit_index(),
        index,
        "both followers are a majority"
    );
    let ready = leader.ready();
    assert!(ready.committed.iter().all(|entry| entry.index < index));
    leader.advance();
    // A flush asked in an older term, or not reaching the entry, changes nothing.
    leader.synced(index, term - 1);
    leader.synced(index - 1, term);
    assert_eq!(leader.own_durable(), index - 1);
    assert!(!leader.has_ready());
    leader.synced(index, term);
    assert_eq!(leader.own_durable(), index);
    let ready = leader.ready();
    assert_eq!(ready.committed.last().map(|entry| entry.index), Some(index));
    leader.advance();
}

#[test]
fn a_leader_s_unsynced_entry_and_one_follower_commit_once_the_flush_is_reported() {
    let (mut cluster, index, term) = leader_with_an_unsynced_entry();
    let leader = cluster.node(1);
    leader.step(accepted(2, term, index)).unwrap();
    assert!(leader.commit_index() < index);
    leader.synced(index, term);
    assert_eq!(leader.commit_index(), index);
}

#[test]
fn a_leader_that_steps_down_with_unsynced_entries_persists_them_again() {
    // Stepping down, the node counts them as not persisted: its next `Ready` hands them out
    // again (so its caller flushes them before it acknowledges anything as a follower), and
    // an empty `Ready` in between does not count as a flush.
    let (mut cluster, index, term) = leader_with_an_unsynced_entry();
    let leader = cluster.node(1);
    let _ = leader.ready();
    leader.advance();
    assert_eq!(
        leader.own_durable(),
        index - 1,
        "a Ready without entries flushed nothing"
    );
    leader
        .step(message(
            2,
            1,
            term + 1,
            Body::Heartbeat {
                commit: 0,
                round: 1,
            },
        ))
        .unwrap();
    assert_eq!(leader.role(), Role::Follower);
    let ready = leader.ready();
    assert_eq!(
        ready
            .entries
            .iter()
            .map(|entry| entry.index)
            .collect::<Vec<_>>(),
        vec![index],
        "the unsynced entry is handed out to persist again"
    );
    assert!(ready.truncate_after.is_none());
    leader.advance();
    assert!(!leader.has_ready());
    // A report of the old flush arriving now changes nothing.
    leader.synced(index, term);
    assert_eq!(leader.own_durable(), index);
}

#[test]
fn a_restart_with_entries_ahead_of_the_hard_state_takes_their_term_as_voted_for_itself() {
    // A crash after a Ready's entries were written and before its hard state. A vote for
    // another in that Ready never left; but a lone voter wins its term in memory with its own
    // vote and writes its entries of the term: were it free to vote again in that term, a
    // second leader of the term could follow (the one-clock membership sweep's seed 7258
    // came near it). Voting for itself again only keeps it from voting in the term.
    let mut disk = persisted(2, &[1, 3]);
    disk.hard_state.vote = Some(2);
    let mut node = Node::restart(config(1), 1, disk);
    assert_eq!(node.term(), 3);
    let ready = node.ready();
    assert_eq!(
        ready.hard_state,
        Some(HardState {
            term: 3,
            vote: Some(1),
            commit: 0
        })
    );
    node.advance();
    node.start_hold = false; // restarted long ago
    let ask = Body::Vote {
        last_index: 5,
        last_term: 3,
        transfer: false,
    };
    let refused = answer(&mut node, message(3, 1, 3, ask));
    assert_eq!(refused[0].body, Body::VoteResponse { granted: false });
}

#[test]
fn a_compacted_leader_feeds_followers_from_what_it_holds_and_skips_one_it_cannot() {
    let mut cluster = Cluster::new();
    cluster.elect(1);
    for n in 0..5u8 {
        cluster.node(1).propose(vec![n]).unwrap();
    }
    cluster.settle();
    // Node 3 falls behind; the leader forgets everything applied (what its storage keeps).
    cluster.cut.insert(3);
    for n in 5..8u8 {
        cluster.node(1).propose(vec![n]).unwrap();
    }
    cluster.settle();
    let applied = cluster.node(1).applied_index();
    assert_eq!(applied, 9, "the empty entry of term 1 and 8 proposals");
    assert_eq!(cluster.node(1).compact(applied), 10);
    assert_eq!(cluster.node(1).entry(9), None, "forgotten");
    // Node 2 keeps up from what the leader holds.
    cluster.node(1).propose(vec![8]).unwrap();
    cluster.settle();
    assert_eq!(cluster.node(1).commit_index(), 10);
    assert_eq!(cluster.node(2).last_index(), 10);
    // Node 3 needs entries 7..=9, which the leader forgot: it asks its caller for them
    // (`Ready::wanted`; this cluster never serves them), sends nothing it cannot (no panic),
    // and the majority goes on committing.
    cluster.cut.clear();
    cluster.tick_all(6);
    cluster.node(1).propose(vec![9]).unwrap();
    cluster.settle();
    assert_eq!(cluster.node(1).commit_index(), 11);
    assert_eq!(cluster.node(3).last_index(), 6);
    assert!(cluster.wanted.contains(&Wanted {
        to: 3,
        from_index: 7
    }));
}

#[test]
fn a_node_restarted_after_an_offset_rejoins_and_catches_up() {
    let mut cluster = Cluster::new();
    cluster.elect(1);
    for n in 0..4u8 {
        cluster.node(1).propose(vec![n]).unwrap();
    }
    cluster.settle();
    // Node 2 restarts holding only its entries after 3 (its storage has the rest applied).
    let held: Vec<Entry> = (4..=5)
        .map(|index| cluster.node(2).entry(index).unwrap().clone())
        .collect();
    let disk = Persisted {
        hard_state: HardState {
            term: cluster.node(2).term(),
            vote: Some(1),
            commit: 5,
        },
        entries: held,
        applied: 3,
        offset: 3,
        offset_term: 1,
    };
    cluster.nodes.insert(2, Node::restart(config(2), 77, disk));
    assert_eq!(cluster.node(2).first_index(), 4);
    assert_eq!(cluster.node(2).last_index(), 5);
    cluster.node(1).propose(vec![4]).unwrap();
    cluster.settle();
    assert_eq!(cluster.node(2).last_index(), 6);
    assert_eq!(cluster.node(1).commit_index(), 6);
    // The next heartbeat carries the commit index.
    cluster.tick_all(2);
    assert_eq!(cluster.node(2).commit_index(), 6);
    let applied: Vec<u64> = cluster.applied[&2].iter().map(|e| e.index).collect();
    assert!(
        applied.ends_with(&[4, 5, 6]),
        "after the restart node 2 applies from its applied index on: {applied:?}"
    );
}

// ---- Membership changes (the dissertation's §4.1, etcd's ConfChange) ----

fn change(kind: ConfChangeKind, node: NodeId) -> ConfChange {
    ConfChange { kind, node }
}

impl Cluster {
    /// Starts node `id` as a new node joining with the initial voters' membership.
    fn start_joining(&mut self, id: NodeId) {
        let node = Node::new(config_joining(id), id * 1000);
        self.nodes.insert(id, node);
    }

    fn change(&mut self, leader: NodeId, kind: ConfChangeKind, node: NodeId) -> Result<u64> {
        self.node(leader)
            .propose_conf_change(change(kind, node), b"payload")
    }

    fn voters(&mut self, id: NodeId) -> Vec<NodeId> {
        self.node(id).membership().voters().collect()
    }
}

fn config_joining(id: NodeId) -> Config {
    Config::new(id, Membership::new([1, 2, 3]))
}

#[test]
fn a_second_change_is_refused_until_the_first_is_applied() {
    let mut cluster = Cluster::new();
    cluster.elect(1);
    cluster.start_joining(4);
    let first = cluster.change(1, ConfChangeKind::AddLearner, 4).unwrap();
    assert_eq!(
        cluster.change(1, ConfChangeKind::RemoveNode, 3),
        Err(Error::ChangePending { index: first })
    );
    cluster.settle();
    assert_eq!(cluster.node(1).applied_index(), first);
    cluster.change(1, ConfChangeKind::RemoveNode, 3).unwrap();
}

#[test]
fn a_new_leader_changes_nothing_before_its_first_entry_is_applied() {
    // etcd's pendingConfIndex after an election; the fix to the single-server change bug
    // (a leader must commit an entry of its term before changing the membership).
    let mut node = Node::new(config(1), 1);
    node.become_candidate();
    node.become_leader();
    let first = node.last_index();
    assert_eq!(node.pending_conf_index(), first);
    assert_eq!(
        node.propose_conf_change(change(ConfChangeKind::AddLearner, 4), &[]),
        Err(Error::ChangePending { index: first })
    );
}

#[test]
fn changes_that_do_not_fit_are_refused() {
    let mut cluster = Cluster::new();
    cluster.elect(1);
    assert_eq!(
        cluster.change(1, ConfChangeKind::AddLearner, 2),
        Err(Error::AlreadyMember(2))
    );
    assert_eq!(
        cluster.change(1, ConfChangeKind::PromoteLearner, 3),
        Err(Error::NotALearner(3))
    );
    assert_eq!(
        cluster.change(1, ConfChangeKind::RemoveNode, 9),
        Err(Error::UnknownNode(9))
    );
    assert_eq!(
        cluster.change(2, ConfChangeKind::RemoveNode, 3),
        Err(Error::NotLeader { leader: Some(1) })
    );
    let mut data = Vec::new();
    wire::encode_conf_change(change(ConfChangeKind::RemoveNode, 3), &[], &mut data);
    assert_eq!(cluster.node(1).propose(data), Err(Error::ReservedData));
    let mut alone = Node::new(Config::new(1, Membership::new([1])), 1);
    alone.tick_all_until_leader();
    assert_eq!(
        alone.propose_conf_change(change(ConfChangeKind::RemoveNode, 1), &[]),
        Err(Error::LastVoter(1))
    );
}

impl Node {
    /// A one-voter node: tick until it elects itself, handling its `Ready`s.
    fn tick_all_until_leader(&mut self) {
        for _ in 0..100 {
            self.tick();
            if self.has_ready() {
                self.ready();
                self.advance();
            }
            if self.role() == Role::Leader && self.applied_index() == self.last_index() {
                return;
            }
        }
        panic!("a lone voter was not elected");
    }
}

#[test]
fn a_learner_gets_the_log_but_never_votes_counts_or_campaigns() {
    let mut cluster = Cluster::new();
    cluster.elect(1);
    cluster.node(1).propose(b"before".to_vec()).unwrap();
    cluster.settle();
    cluster.start_joining(4);
    cluster.change(1, ConfChangeKind::AddLearner, 4).unwrap();
    cluster.settle();
    let leader_last = cluster.node(1).last_index();
    assert_eq!(cluster.node(4).last_index(), leader_last);
    assert!(cluster.node(4).membership().is_learner(4));
    assert_eq!(cluster.node(1).match_index(4), Some(leader_last));
    // Never campaigns, however long it hears nothing.
    cluster.cut.insert(1);
    cluster.delivered.clear();
    for _ in 0..100 {
        cluster.node(4).tick();
        cluster.settle();
    }
    assert_eq!(cluster.node(4).role(), Role::Follower);
    assert!(cluster.delivered.iter().all(|message| message.from != 4));
    cluster.cut.clear();
    // Counts in no quorum: with both other voters cut off, the learner's copy commits nothing.
    cluster.cut.extend([2, 3]);
    let commit = cluster.node(1).commit_index();
    let index = cluster.node(1).propose(b"after".to_vec()).unwrap();
    cluster.settle();
    assert_eq!(cluster.node(4).last_index(), index);
    assert_eq!(cluster.node(1).commit_index(), commit);
}

#[test]
fn a_learner_is_promoted_only_once_caught_up() {
    let mut cluster = Cluster::new();
    cluster.elect(1);
    cluster.start_joining(4);
    cluster.cut.insert(4);
    cluster.change(1, ConfChangeKind::AddLearner, 4).unwrap();
    cluster.settle();
    assert!(!cluster.node(1).learner_caught_up(4));
    assert_eq!(
        cluster.change(1, ConfChangeKind::PromoteLearner, 4),
        Err(Error::LearnerBehind {
            node: 4,
            match_index: 0
        })
    );
    cluster.cut.clear();
    cluster.tick_all(cluster_heartbeat_ticks());
    assert_eq!(cluster.node(1).caught_up_learners(), vec![4]);
    cluster
        .change(1, ConfChangeKind::PromoteLearner, 4)
        .unwrap();
    cluster.settle();
    for id in 1..=4 {
        assert_eq!(cluster.voters(id), vec![1, 2, 3, 4], "node {id}");
    }
    assert_eq!(cluster.node(1).membership().quorum(), 3);
}

fn cluster_heartbeat_ticks() -> u32 {
    config(1).heartbeat_ticks
}

#[test]
fn removing_a_dead_voter_shrinks_the_quorum() {
    let mut cluster = Cluster::new();
    cluster.elect(1);
    cluster.cut.insert(3);
    cluster.change(1, ConfChangeKind::RemoveNode, 3).unwrap();
    cluster.settle();
    assert_eq!(cluster.voters(1), vec![1, 2]);
    assert_eq!(cluster.node(1).membership().quorum(), 2);
    assert_eq!(cluster.node(1).match_index(3), None);
    // Two of two now: with node 2 cut off as well, nothing commits.
    cluster.cut.insert(2);
    let commit = cluster.node(1).commit_index();
    cluster.node(1).propose(b"x".to_vec()).unwrap();
    cluster.settle();
    assert_eq!(cluster.node(1).commit_index(), commit);
    cluster.cut.remove(&2);
    cluster.tick_all(cluster_heartbeat_ticks());
    assert_eq!(cluster.node(1).commit_index(), cluster.node(1).last_index());
}

#[test]
fn a_removed_leader_steps_down_once_the_removal_is_applied_and_never_campaigns() {
    let mut cluster = Cluster::new();
    cluster.elect(1);
    let index = cluster.change(1, ConfChangeKind::RemoveNode, 1).unwrap();
    // Not a voter in the membership in force: it takes nothing new while it commits its removal.
    assert_eq!(
        cluster.node(1).propose(b"x".to_vec()),
        Err(Error::NotLeader { leader: None })
    );
    assert_eq!(cluster.node(1).role(), Role::Leader);
    cluster.settle();
    assert!(cluster.node(1).applied_index() >= index);
    assert_eq!(cluster.node(1).role(), Role::Follower);
    assert_eq!(cluster.voters(2), vec![2, 3]);
    cluster.tick_all(60);
    let leaders: Vec<NodeId> = [1, 2, 3]
        .into_iter()
        .filter(|&id| cluster.node(id).role() == Role::Leader)
        .collect();
    assert_eq!(leaders.len(), 1);
    assert_ne!(leaders[0], 1);
    // The removed node never campaigns again.
    cluster.delivered.clear();
    for _ in 0..100 {
        cluster.node(1).tick();
        cluster.settle();
    }
    assert!(cluster.delivered.iter().all(|message| message.from != 1));
}

#[test]
fn a_change_cut_from_the_log_is_undone() {
    // A follower uses the membership its log holds, applied or not; a new leader's conflicting
    // entry cuts the change and restores the one before it.
    let mut node = Node::new(config(2), 2);
    let mut data = Vec::new();
    wire::encode_conf_change(change(ConfChangeKind::RemoveNode, 3), &[], &mut data);
    let entries = vec![
        Entry {
            term: 1,
            index: 1,
            data: Default::default(),
        },
        Entry {
            term: 1,
            index: 2,
            data: data.into(),
        },
    ];
    let append = Body::Append {
        prev_index: 0,
        prev_term: 0,
        entries,
        commit: 0,
    };
    answer(&mut node, message(1, 2, 1, append));
    assert_eq!(node.membership().voters().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(node.applied_membership(), &Membership::new([1, 2, 3]));
    let replace = Body::Append {
        prev_index: 1,
        prev_term: 1,
        entries: vec![Entry {
            term: 2,
            index: 2,
            data: Default::default(),
        }],
        commit: 0,
    };
    answer(&mut node, message(3, 2, 2, replace));
    assert_eq!(node.membership(), &Membership::new([1, 2, 3]));
}

#[test]
fn a_restarted_node_takes_its_applied_membership_and_the_changes_after_it() {
    let mut data = Vec::new();
    wire::encode_conf_change(change(ConfChangeKind::AddLearner, 4), &[], &mut data);
    let mut disk = persisted(1, &[1, 1]);
    disk.entries[1].data = data.into();
    let node = Node::restart(config(1), 1, disk);
    assert_eq!(node.applied_membership(), &Membership::new([1, 2, 3]));
    assert!(node.membership().is_learner(4));
}

#[test]
fn a_two_voter_cluster_that_removes_its_leader_elects_the_other() {
    // The trap of switching on apply (etcd's rule), found by the simulator: node 2 holds the
    // committed removal of node 1 without knowing it is committed. By the applied membership
    // it would still need node 1's vote (refused whenever node 1 holds entries past the
    // removal); by the membership in its log it is the only voter.
    let mut cluster = Cluster::new();
    cluster.elect(1);
    cluster.change(1, ConfChangeKind::RemoveNode, 3).unwrap();
    cluster.settle();
    cluster.cut.insert(3);
    let removal = cluster.change(1, ConfChangeKind::RemoveNode, 1).unwrap();
    cluster.settle();
    assert_eq!(cluster.node(1).role(), Role::Follower);
    assert!(cluster.node(2).commit_index() < removal);
    assert_eq!(cluster.voters(2), vec![2]);
    cluster.tick_all(60);
    assert_eq!(cluster.node(2).role(), Role::Leader);
    assert!(cluster.node(2).applied_index() >= removal);
}

/// A cluster whose leader (node 1) forgot entries 1..=9 from memory while node 3 was cut off
/// after entry 6; returns the leader's log as its storage keeps it.
fn leader_that_forgot_what_node_3_needs() -> (Cluster, Vec<Entry>) {
    let mut cluster = Cluster::new();
    cluster.elect(1);
    for n in 0..5u8 {
        cluster.node(1).propose(vec![n]).unwrap();
    }
    cluster.settle();
    cluster.cut.insert(3);
    for n in 5..8u8 {
        cluster.node(1).propose(vec![n]).unwrap();
    }
    cluster.settle();
    let storage: Vec<Entry> = (1..=9)
        .map(|index| cluster.node(1).entry(index).unwrap().clone())
        .collect();
    assert_eq!(cluster.node(1).compact(9), 10);
    assert_eq!(cluster.node(3).last_index(), 6);
    cluster.cut.clear();
    (cluster, storage)
}

#[test]
fn a_follower_behind_the_leader_s_memory_is_fed_from_its_storage() {
    let (mut cluster, storage) = leader_that_forgot_what_node_3_needs();
    for _ in 0..20 {
        cluster.tick_all(1);
        for wanted in std::mem::take(&mut cluster.wanted) {
            assert_eq!(wanted.to, 3, "only node 3 lags");
            let from = wanted.from_index as usize;
            let prev_term = if from == 1 { 0 } else { storage[from - 2].term };
            // Two at a time, so the pipeline takes several.
            let entries = storage[from - 1..].iter().take(2).cloned().collect();
            cluster.node(1).send_stored(3, prev_term, entries);
        }
        cluster.settle();
        if cluster.node(3).commit_index() == cluster.node(1).commit_index() {
            break;
        }
    }
    assert_eq!(cluster.node(3).commit_index(), 9);
    assert!(cluster.installed.is_empty(), "no snapshot was needed");
    let applied: Vec<Entry> = cluster.applied[&3].clone();
    assert_eq!(
        applied, storage,
        "node 3 applied the leader's log, 7..=9 from storage"
    );
    // Stored entries that no longer start where the follower needs them are not sent.
    assert!(!cluster
        .node(1)
        .send_stored(3, storage[3].term, storage[4..6].to_vec()));
}

#[test]
fn a_want_served_before_the_next_ready_is_not_asked_for_again() {
    let (mut cluster, storage) = leader_that_forgot_what_node_3_needs();
    let term = cluster.node(1).term();
    // Node 3 refuses an append after entry 9 (it has 6): the leader backs off to 7, which it
    // no longer holds in memory, so node 3 is listed as wanting entry 7 in the next `Ready`.
    let rejected = Body::AppendRejected {
        prev_index: 9,
        hint_index: 6,
        hint_term: storage[5].term,
    };
    cluster
        .node(1)
        .step(message(3, 1, term, rejected.clone()))
        .unwrap();
    // The caller serves it before taking that `Ready` (the server's paced feed does).
    assert!(cluster
        .node(1)
        .send_stored(3, storage[5].term, storage[6..8].to_vec()));
    let ready = cluster.node(1).ready();
    assert!(
        ready.wanted.is_empty(),
        "entry 7 was sent already: {:?}",
        ready.wanted
    );
    cluster.node(1).advance();
    // Without the send, the want is handed out.
    let (mut cluster, _) = leader_that_forgot_what_node_3_needs();
    cluster
        .node(1)
        .step(message(3, 1, term, rejected.clone()))
        .unwrap();
    assert_eq!(
        cluster.node(1).ready().wanted,
        vec![Wanted {
            to: 3,
            from_index: 7
        }]
    );
}

#[test]
fn a_follower_behind_the_leader_s_storage_installs_a_snapshot_and_rejoins() {
    let (mut cluster, storage) = leader_that_forgot_what_node_3_needs();
    let point = SnapshotPoint {
        index: 9,
        term: storage[8].term,
    };
    for _ in 0..20 {
        cluster.tick_all(1);
        for wanted in std::mem::take(&mut cluster.wanted) {
            assert_eq!(wanted.to, 3, "only node 3 lags");
            assert!(cluster.node(1).send_snapshot(3, point));
        }
        cluster.settle();
        if !cluster.installed.is_empty() {
            break;
        }
    }
    assert_eq!(
        cluster.installed,
        vec![(3, point, Membership::new([1, 2, 3]))]
    );
    let node = cluster.node(3);
    assert_eq!((node.first_index(), node.commit_index()), (10, 9));
    assert_eq!(node.applied_index(), 9, "the snapshot counts as applied");
    assert_eq!(node.term_at(9), Some(point.term));
    // It follows the leader from there on, through appends from memory.
    cluster.node(1).propose(vec![42]).unwrap();
    cluster.settle();
    cluster.tick_all(2);
    assert_eq!(cluster.node(3).last_index(), 10);
    assert_eq!(cluster.node(3).commit_index(), 10);
    assert_eq!(cluster.node(3).entry(10).unwrap().data, vec![42]);
    // A duplicate of the InstallSnapshot changes nothing: the follower has it committed.
    let term = cluster.node(1).term();
    let answers = answer(
        cluster.node(3),
        message(
            1,
            3,
            term,
            Body::InstallSnapshot {
                index: 9,
                term: point.term,
                membership: Membership::new([1, 2, 3]),
            },
        ),
    );
    assert_eq!(answers[0].body, Body::AppendAccepted { match_index: 10 });
    assert_eq!(cluster.node(3).last_index(), 10);
}

#[test]
fn a_follower_holding_the_snapshot_s_last_entry_keeps_its_log() {
    let mut cluster = Cluster::new();
    cluster.elect(1);
    cluster.node(1).propose(vec![1]).unwrap();
    cluster.settle();
    // Node 2 gets entry 3 from the leader; it learns that 3 is committed only later.
    cluster.cut.insert(3);
    cluster.node(1).propose(vec![2]).unwrap();
    cluster.settle();
    let term = cluster.node(1).term();
    let before = cluster.node(2).last_index();
    let commit = cluster.node(2).commit_index();
    let at = before;
    let snapshot = Body::InstallSnapshot {
        index: at,
        term,
        membership: Membership::new([1, 2, 3]),
    };
    let answers = answer(cluster.node(2), message(1, 2, term, snapshot));
    assert!(at > commit, "node 2 does not know entry {at} committed yet");
    assert_eq!(answers[0].body, Body::AppendAccepted { match_index: at });
    assert_eq!(cluster.node(2).last_index(), before, "the log is kept");
    assert_eq!(cluster.node(2).commit_index(), at);
    assert!(cluster.installed.is_empty());
}

// ---- Snapshots and membership (etcd's ConfState in the snapshot's metadata) ----

fn conf_change_entry(term: u64, index: u64, kind: ConfChangeKind, node: NodeId) -> Entry {
    let mut data = Vec::new();
    wire::encode_conf_change(change(kind, node), &[], &mut data);
    Entry {
        term,
        index,
        data: data.into(),
    }
}

/// Feeds every `wanted` of the cluster with a snapshot of the leader at its applied index,
/// until a snapshot is installed somewhere.
fn serve_with_snapshots(cluster: &mut Cluster, leader: NodeId) {
    for _ in 0..20 {
        cluster.tick_all(1);
        for wanted in std::mem::take(&mut cluster.wanted) {
            let node = cluster.node(leader);
            let index = node.applied_index();
            let point = SnapshotPoint {
                index,
                term: node.term_at(index).expect("the applied entry's term"),
            };
            assert!(node.send_snapshot(wanted.to, point));
        }
        cluster.settle();
        if !cluster.installed.is_empty() {
            return;
        }
    }
    panic!("no snapshot was installed");
}

#[test]
fn a_snapshot_past_a_membership_change_carries_the_membership_the_follower_then_uses() {
    // Node 3 is cut off while node 4 is added and promoted and node 2 removed; the leader
    // then forgets the changes' entries. The snapshot it sends node 3 is all node 3 will ever
    // learn of them.
    let mut cluster = Cluster::new();
    cluster.elect(1);
    cluster.cut.insert(3);
    cluster.start_joining(4);
    cluster.change(1, ConfChangeKind::AddLearner, 4).unwrap();
    cluster.settle();
    cluster
        .change(1, ConfChangeKind::PromoteLearner, 4)
        .unwrap();
    cluster.settle();
    let removal = cluster.change(1, ConfChangeKind::RemoveNode, 2).unwrap();
    cluster.settle();
    cluster.node(1).propose(b"after".to_vec()).unwrap();
    cluster.settle();
    let expected = Membership::new([1, 3, 4]);
    assert_eq!(cluster.node(1).applied_membership(), &expected);
    let applied = cluster.node(1).applied_index();
    cluster.node(1).compact(applied);
    cluster.cut.remove(&3);
    serve_with_snapshots(&mut cluster, 1);

    let (to, point, membership) = cluster.installed[0].clone();
    assert_eq!((to, point.index), (3, applied));
    assert!(point.index > removal, "the snapshot skips the changes");
    assert_eq!(membership, expected, "Ready::snapshot_membership");
    let node = cluster.node(3);
    assert_eq!(node.membership(), &expected);
    assert_eq!(node.applied_membership(), &expected);
    assert_eq!(node.membership_at(point.index), Some(expected.clone()));
    assert_eq!(
        node.membership_at(point.index - 1),
        None,
        "older than it knows"
    );

    // A restart given the snapshot's membership (what the caller kept with it) and a disk
    // whose log starts after the snapshot comes back with it.
    let disk = Persisted {
        hard_state: HardState {
            term: node.term(),
            vote: None,
            commit: point.index,
        },
        entries: Vec::new(),
        offset: point.index,
        offset_term: point.term,
        applied: point.index,
    };
    let restarted = Node::restart(Config::new(3, membership), 3, disk);
    assert_eq!(restarted.membership(), &expected);
    assert_eq!(restarted.applied_membership(), &expected);
}

#[test]
fn a_follower_holding_the_snapshot_s_entry_keeps_a_later_change_in_force() {
    // Decision 80's rule: a change is in force once appended. The follower's log holds the
    // snapshot's last entry (index 2) and, after it, an unapplied AddLearner at index 3; log
    // matching makes 1..=2 the leader's, so the log stays and so does the change.
    let mut disk = persisted(1, &[1, 1]);
    disk.entries
        .push(conf_change_entry(1, 3, ConfChangeKind::AddLearner, 4));
    let mut node = Node::restart(config(2), 2, disk);
    let snapshot = Body::InstallSnapshot {
        index: 2,
        term: 1,
        membership: Membership::new([1, 2, 3]),
    };
    node.step(message(1, 2, 1, snapshot)).unwrap();
    let ready = node.ready();
    node.advance();
    assert_eq!(ready.snapshot, None, "nothing to install");
    assert_eq!(ready.snapshot_membership, None);
    assert_eq!(node.last_index(), 3, "the log is kept");
    assert_eq!(node.commit_index(), 2);
    assert_eq!(node.applied_membership(), &Membership::new([1, 2, 3]));
    assert_eq!(
        node.membership(),
        &Membership::with_learners([1, 2, 3], [4]),
        "the change after the snapshot is in force"
    );
}

#[test]
fn a_follower_whose_log_conflicts_drops_its_changes_and_takes_the_snapshot_s() {
    // Node 2 holds an uncommitted AddLearner of an old term; the leader's snapshot through 5
    // (term 2) says node 3 was removed. The log restarts after the snapshot: the old change
    // goes with it, and the snapshot's membership is in force.
    let mut disk = persisted(1, &[1]);
    disk.entries
        .push(conf_change_entry(1, 2, ConfChangeKind::AddLearner, 4));
    let mut node = Node::restart(config(2), 2, disk);
    assert!(node.membership().is_learner(4));
    let snapshot_membership = Membership::new([1, 2]);
    let snapshot = Body::InstallSnapshot {
        index: 5,
        term: 2,
        membership: snapshot_membership.clone(),
    };
    node.step(message(1, 2, 2, snapshot)).unwrap();
    let ready = node.ready();
    node.advance();
    assert_eq!(ready.snapshot, Some(SnapshotPoint { index: 5, term: 2 }));
    assert_eq!(ready.snapshot_membership, Some(snapshot_membership.clone()));
    assert_eq!(
        ready.messages[0].body,
        Body::AppendAccepted { match_index: 5 }
    );
    assert_eq!(node.membership(), &snapshot_membership);
    assert_eq!(node.applied_membership(), &snapshot_membership);
    // A change appended after the snapshot is in force at once, as any.
    let append = Body::Append {
        prev_index: 5,
        prev_term: 2,
        entries: vec![conf_change_entry(2, 6, ConfChangeKind::AddLearner, 7)],
        commit: 5,
    };
    answer(&mut node, message(1, 2, 2, append));
    assert_eq!(node.membership(), &Membership::with_learners([1, 2], [7]));
    assert_eq!(node.applied_membership(), &snapshot_membership);
}

#[test]
fn a_leader_knows_the_membership_as_of_any_index_since_it_started() {
    let mut node = Node::new(Config::new(1, Membership::new([1])), 1);
    node.tick_all_until_leader();
    let start = node.applied_index();
    let mut expected = vec![(start, Membership::new([1]))];
    for learner in 2..=4 {
        let index = node
            .propose_conf_change(change(ConfChangeKind::AddLearner, learner), &[])
            .unwrap();
        node.propose(vec![learner as u8]).unwrap();
        while node.has_ready() {
            node.ready();
            node.advance();
        }
        assert_eq!(node.applied_index(), index + 1);
        expected.push((index, node.applied_membership().clone()));
    }
    // Unapplied: a change appended and not yet committed counts from its index too.
    let pending = node
        .propose_conf_change(change(ConfChangeKind::RemoveNode, 2), &[])
        .unwrap();
    expected.push((pending, node.membership().clone()));
    for window in expected.windows(2) {
        let ((from, membership), (next, _)) = (&window[0], &window[1]);
        for index in *from..*next {
            assert_eq!(
                node.membership_at(index).as_ref(),
                Some(membership),
                "{index}"
            );
        }
    }
    assert_eq!(
        node.membership_at(pending).as_ref(),
        Some(node.membership())
    );
    assert_eq!(node.membership_at(pending + 1), None, "beyond the log");
    assert_eq!(node.membership_at(0), Some(Membership::new([1])));

    // Restarted from its applied index, it knows nothing older: a snapshot from before it
    // cannot be sent with its membership.
    let applied = node.applied_index();
    let disk = Persisted {
        hard_state: HardState {
            term: node.term(),
            vote: Some(1),
            commit: applied,
        },
        entries: (applied + 1..=node.last_index())
            .map(|index| node.entry(index).unwrap().clone())
            .collect(),
        offset: applied,
        offset_term: node.term_at(applied).unwrap(),
        applied,
    };
    let config = Config::new(1, node.applied_membership().clone());
    let restarted = Node::restart(config, 1, disk);
    assert_eq!(restarted.membership_at(applied - 1), None);
    assert_eq!(
        restarted.membership_at(applied).as_ref(),
        Some(node.applied_membership())
    );
    assert_eq!(
        restarted.membership_at(pending).as_ref(),
        Some(node.membership())
    );

    // Leading again, it refuses to guess the membership of a snapshot older than that; a
    // caller that knows it (from the snapshot's own state) gives it.
    let mut restarted = restarted;
    restarted.tick_all_until_leader();
    let old = SnapshotPoint {
        index: applied - 1,
        term: restarted.term_at(applied).unwrap(),
    };
    assert!(!restarted.send_snapshot(3, old));
    assert!(!restarted.has_ready(), "nothing was sent");
    let known = expected[expected.len() - 2].1.clone();
    assert!(restarted.send_snapshot_with(3, old, known.clone()));
    let sent = restarted.ready().messages;
    restarted.advance();
    let snapshot = Body::InstallSnapshot {
        index: old.index,
        term: old.term,
        membership: known,
    };
    assert!(
        sent.iter().any(|m| m.to == 3 && m.body == snapshot),
        "{sent:?}"
    );
}

#[test]
fn a_node_restarted_in_a_term_refuses_votes_for_its_first_election_timeout() {
    // Before its crash it may have answered a leader's heartbeat, which promised that leader
    // no vote for anyone else for an election timeout (the lease); it does not remember.
    let ticks = config(1).election_ticks;
    let vote = |transfer| Body::Vote {
        last_index: 3,
        last_term: 3,
        transfer,
    };
    let mut node = Node::restart(config(1), 1, persisted(2, &[1, 2]));
    for _ in 0..ticks - 1 {
        assert!(answer(&mut node, message(2, 1, 3, vote(false))).is_empty());
        node.tick();
    }
    assert!(answer(&mut node, message(2, 1, 3, vote(false))).is_empty());
    assert_eq!(node.term(), 2, "an ignored vote request changes no term");
    node.tick();
    let granted = answer(&mut node, message(2, 1, 3, vote(false)));
    assert_eq!(granted[0].body, Body::VoteResponse { granted: true });

    // A transfer's vote ignores leases, this one too.
    let mut node = Node::restart(config(1), 1, persisted(2, &[1, 2]));
    let granted = answer(&mut node, message(2, 1, 3, vote(true)));
    assert_eq!(granted[0].body, Body::VoteResponse { granted: true });

    // A node that never ran promised nothing.
    let mut node = Node::new(config(1), 1);
    let granted = answer(&mut node, message(2, 1, 1, vote(false)));
    assert_eq!(granted[0].body, Body::VoteResponse { granted: true });

    // Hearing from a leader ends the hold: from then on the lease is that leader's.
    let mut node = Node::restart(config(1), 1, persisted(2, &[1, 2]));
    let beat = Body::Heartbeat {
        commit: 0,
        round: 1,
    };
    answer(&mut node, message(3, 1, 2, beat));
    assert!(!node.start_hold);
}

#[test]
fn the_lease_round_is_the_oldest_heartbeat_round_a_majority_answered() {
    let mut cluster = Cluster::new();
    cluster.elect(1);
    // The new leader's first round went out with its first append and was answered.
    let first = cluster.node(1).heartbeat_round();
    assert!(first >= 1);
    assert_eq!(cluster.node(1).lease_round(), Some(first));
    assert_eq!(
        cluster.node(2).lease_round(),
        None,
        "a follower has no lease"
    );

    // Both followers cut off: new rounds go out unanswered, the lease stays where it was.
    cluster.cut.extend([2, 3]);
    for _ in 0..config(1).heartbeat_ticks {
        cluster.node(1).tick();
        cluster.settle();
    }
    assert!(cluster.node(1).heartbeat_round() > first);
    assert_eq!(cluster.node(1).lease_round(), Some(first));

    // One follower back: it and the leader are a majority, and it answers the next round.
    cluster.cut.remove(&3);
    for _ in 0..config(1).heartbeat_ticks {
        cluster.node(1).tick();
        cluster.settle();
    }
    let latest = cluster.node(1).heartbeat_round();
    assert_eq!(cluster.node(1).lease_round(), Some(latest));

    // An answer naming a round not sent yet counts only as far as the rounds sent: it
    // must not answer the rounds to come.
    let forged = Body::HeartbeatResponse {
        round: latest + 100,
    };
    let term = cluster.node(1).term();
    cluster.node(1).step(message(2, 1, term, forged)).unwrap();
    cluster.node(1).ready();
    cluster.node(1).advance();
    cluster.cut.extend([2, 3]);
    for _ in 0..config(1).heartbeat_ticks {
        cluster.node(1).tick();
        cluster.settle();
    }
    assert!(cluster.node(1).heartbeat_round() > latest);
    assert_eq!(cluster.node(1).lease_round(), Some(latest));

    // A transfer hands out a vote that ignores leases: no lease while one is under way.
    cluster.cut.clear();
    cluster.node(1).transfer_leader(2).unwrap();
    assert_eq!(cluster.node(1).lease_round(), None);
}

#[test]
fn a_snapshot_older_than_what_the_follower_holds_does_not_stall_it() {
    // A stale `wanted` served late: the snapshot's point is below the follower's known match.
    // Its probe must not restart below that match, or every answer (no higher than the known
    // match) leaves the progress where it was and the same append goes out forever.
    let mut cluster = Cluster::new();
    for node in cluster.nodes.values_mut() {
        node.config.append_entries_max = 2;
    }
    cluster.elect(1);
    for i in 0..8u8 {
        cluster.node(1).propose(vec![i]).unwrap();
        cluster.settle();
    }
    let commit = cluster.node(1).commit_index();
    assert_eq!(cluster.node(1).match_index(2), Some(commit));
    let term = cluster.node(1).entry(commit - 6).unwrap().term;
    let point = SnapshotPoint {
        index: commit - 6,
        term,
    };
    assert!(cluster.node(1).send_snapshot(2, point));
    assert!(
        cluster.settle_within(1000),
        "the leader and node 2 never go quiet"
    );
    cluster.node(1).propose(vec![9]).unwrap();
    cluster.tick_all(4);
    let last = cluster.node(1).last_index();
    assert_eq!(cluster.node(2).last_index(), last);
    assert_eq!(cluster.node(1).match_index(2), Some(last));
}
