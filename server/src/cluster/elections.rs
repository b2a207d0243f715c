//! The raft thread's account of its elections, one Info line per step, so that a slow failover
//! can be read from the nodes' logs: when a node last heard from its leader, when it started a
//! pre-vote or a vote and who answered what, what it answered others (a pre-vote left
//! unanswered was ignored: the node was within its leader lease), and when it became leader
//! or follower. The core (`flin_replication::Node`) has no clock and no log; this watches its
//! inputs, its outputs and its role from the driver instead.

use std::time::Instant;

use flin_replication::{Body, Message, Node, NodeId, Role};

use crate::log::Level;

use super::LogFn;

/// What the last look at the node saw, and when things happened.
pub struct ElectionLog {
    role: Role,
    term: u64,
    leader: Option<NodeId>,
    /// The last append or heartbeat from a leader (the node's start until the first).
    last_leader_contact: Instant,
    /// When the current pre-vote or vote began.
    campaign_started: Option<Instant>,
    log: LogFn,
}

impl ElectionLog {
    pub fn new(node: &Node, log: LogFn) -> ElectionLog {
        ElectionLog {
            role: node.role(),
            term: node.term(),
            leader: node.leader(),
            last_leader_contact: Instant::now(),
            campaign_started: None,
            log,
        }
    }

    fn since_contact_ms(&self) -> u128 {
        self.last_leader_contact.elapsed().as_millis()
    }

    /// Notes a message before the node steps it.
    pub fn received(&mut self, message: &Message, node: &Node) {
        let from = message.from;
        match &message.body {
            Body::Append { .. } | Body::Heartbeat { .. } if message.term >= node.term() => {
                self.last_leader_contact = Instant::now();
            }
            Body::PreVote { .. } | Body::Vote { .. } => {
                let kind = match message.body {
                    Body::PreVote { .. } => "pre-vote",
                    _ => "vote",
                };
                (self.log)(
                    Level::Info,
                    &format!(
                        "raft: node {from} asks for a {kind} in term {} (we are {:?} in term {}, leader {:?}, last heard {} ms ago)",
                        message.term,
                        node.role(),
                        node.term(),
                        node.leader(),
                        self.since_contact_ms()
                    ),
                );
            }
            Body::PreVoteResponse { granted } | Body::VoteResponse { granted }
                if matches!(node.role(), Role::PreCandidate | Role::Candidate) =>
            {
                let kind = match message.body {
                    Body::PreVoteResponse { .. } => "pre-vote",
                    _ => "vote",
                };
                let answer = if *granted { "granted" } else { "refused" };
                (self.log)(
                    Level::Info,
                    &format!(
                        "raft: node {from} {answer} our {kind} (its term {}){}",
                        message.term,
                        self.campaign_age()
                    ),
                );
            }
            _ => {}
        }
    }

    /// Notes a message the node sends (only the answers to others' campaigns are logged).
    pub fn sent(&self, message: &Message) {
        let (kind, granted) = match message.body {
            Body::PreVoteResponse { granted } => ("pre-vote", granted),
            Body::VoteResponse { granted } => ("vote", granted),
            _ => return,
        };
        let answer = if granted { "granted" } else { "refused" };
        (self.log)(
            Level::Info,
            &format!(
                "raft: {answer} node {}'s {kind} (answer in term {})",
                message.to, message.term
            ),
        );
    }

    /// The peer's connection closed and its port refuses connections.
    pub fn peer_gone(&self, peer: NodeId, node: &Node) {
        let role = if node.leader() == Some(peer) {
            "our leader"
        } else {
            "a peer"
        };
        (self.log)(
            Level::Info,
            &format!(
                "raft: node {peer} ({role}) is gone (its connection closed, its port refuses), {} ms after the last leader contact",
                self.since_contact_ms()
            ),
        );
    }

    /// Logs a change of role, term or leader since the last look.
    pub fn watch(&mut self, node: &Node) {
        let (role, term, leader) = (node.role(), node.term(), node.leader());
        if role == self.role && term == self.term && leader == self.leader {
            return;
        }
        let line = match role {
            Role::PreCandidate if self.role != Role::PreCandidate || term != self.term => {
                self.campaign_started = Some(Instant::now());
                Some(format!(
                    "raft: pre-vote for term {} started, {} ms after the last leader contact",
                    term + 1,
                    self.since_contact_ms()
                ))
            }
            Role::Candidate if self.role != Role::Candidate || term != self.term => {
                let started = self.campaign_started.get_or_insert_with(Instant::now);
                Some(format!(
                    "raft: vote for term {term} started ({} ms into the campaign, {} ms after the last leader contact)",
                    started.elapsed().as_millis(),
                    self.since_contact_ms()
                ))
            }
            Role::Leader if self.role != Role::Leader => Some(format!(
                "raft: won the vote for term {term}{}, {} ms after the last leader contact",
                self.campaign_age(),
                self.since_contact_ms()
            )),
            Role::Follower => {
                let lost = matches!(self.role, Role::PreCandidate | Role::Candidate);
                let line = format!(
                    "raft: follower in term {term}, leader {leader:?}{}{}",
                    if lost { ", campaign given up" } else { "" },
                    if lost {
                        self.campaign_age()
                    } else {
                        String::new()
                    },
                );
                self.campaign_started = None;
                Some(line)
            }
            _ => None,
        };
        if let Some(line) = line {
            (self.log)(Level::Info, &line);
        }
        if role == Role::Leader {
            self.campaign_started = None;
        }
        (self.role, self.term, self.leader) = (role, term, leader);
    }

    fn campaign_age(&self) -> String {
        match self.campaign_started {
            Some(started) => format!(" after {} ms of campaign", started.elapsed().as_millis()),
            None => String::new(),
        }
    }
}
