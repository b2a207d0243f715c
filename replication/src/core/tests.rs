//! Unit tests of the core, each naming the part of the raft paper (or of etcd's design) it
//! checks. A tiny in-process network delivers every message at once, unless a link is cut.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::config::Membership;

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
            data: format!("e{}", position + 1).into_bytes(),
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
                (id, Node::restart(config(id), id * 1000, disk))
            })
            .collect();
        Cluster {
            nodes,
            cut: BTreeSet::new(),
            delivered: Vec::new(),
            applied: BTreeMap::new(),
        }
    }

    fn node(&mut self, id: NodeId) -> &mut Node {
        self.nodes.get_mut(&id).expect("a node")
    }

    /// Handles every `Ready` and delivers every message until the cluster is quiet.
    fn settle(&mut self) {
        loop {
            let mut messages = Vec::new();
            for (&id, node) in &mut self.nodes {
                if node.has_ready() {
                    let ready = node.ready();
                    messages.extend(ready.messages);
                    self.applied.entry(id).or_default().extend(ready.committed);
                    node.advance();
                }
            }
            if messages.is_empty() {
                return;
            }
            for message in messages {
                if self.cut.contains(&message.from) || self.cut.contains(&message.to) {
                    continue;
                }
                self.delivered.push(message.clone());
                self.node(message.to).step(message).expect("well addressed");
            }
        }
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
fn messages_from_strangers_or_for_others_are_refused() {
    let mut node = Node::new(config(1), 1);
    let heartbeat = Body::Heartbeat { commit: 0 };
    assert_eq!(
        node.step(message(9, 1, 1, heartbeat.clone())),
        Err(Error::UnknownNode(9))
    );
    assert_eq!(
        node.step(message(2, 3, 1, heartbeat)),
        Err(Error::Misdelivered { to: 3 })
    );
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
    let mut cluster = Cluster::new();
    cluster.elect(1);
    cluster.tick_all(1);
    let leader = cluster.node(1);
    let index = leader.propose(b"x".to_vec()).unwrap();
    let term = leader.term();
    leader
        .step(message(
            2,
            1,
            term,
            Body::AppendAccepted { match_index: index },
        ))
        .unwrap();
    assert!(leader.commit_index() < index);
    let ready = leader.ready();
    assert_eq!(ready.entries.last().map(|entry| entry.index), Some(index));
    leader.advance();
    assert_eq!(leader.commit_index(), index);
}

#[test]
fn a_restart_with_entries_ahead_of_the_hard_state_takes_their_term_without_a_vote() {
    // A crash after a Ready's entries were written and before its hard state: any vote of
    // that Ready never left, so the node owes none.
    let mut disk = persisted(2, &[1, 3]);
    disk.hard_state.vote = Some(2);
    let mut node = Node::restart(config(1), 1, disk);
    assert_eq!(node.term(), 3);
    let ready = node.ready();
    assert_eq!(
        ready.hard_state,
        Some(HardState {
            term: 3,
            vote: None,
            commit: 0
        })
    );
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
    // Node 3 needs entries 7..=9, which only a snapshot could give it: the leader sends
    // nothing it cannot (no panic), and the majority goes on committing.
    cluster.cut.clear();
    cluster.tick_all(6);
    cluster.node(1).propose(vec![9]).unwrap();
    cluster.settle();
    assert_eq!(cluster.node(1).commit_index(), 11);
    assert_eq!(cluster.node(3).last_index(), 6);
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
