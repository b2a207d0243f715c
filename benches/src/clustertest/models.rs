//! The writes to the other models (documents, queues, streams) the clients mix with their
//! key-value operations, what each client remembers of them, and each model's check at the
//! end: every acknowledged write present, nothing there that nobody wrote.
//!
//! # What each client writes
//! - **Documents**: `DOC.INSERT ct {"_id":"d<client>-<n>"}` (a unique `_id` the client
//!   chooses), and `DOC.UPDATE ct {"_id":"counter"} {"$inc":{"n":1}}` on one counter document
//!   that [`setup`] inserted.
//! - **Queues**: `QUEUE.PUSH ctq m<client>-<n>` (unique payloads), and takes: `QUEUE.POP ctq`
//!   then `QUEUE.ACK ctq <id>` of the message it got, on the same connection. An ack answered
//!   `1` consumed the message; an ack refused (`-ERR ... not in flight`, `... delivered to
//!   another connection`: the pop's connection was lost, or the leader changed in between)
//!   or never sent did not; an ack without a reply may have.
//! - **Streams**: `STREAM.PUBLISH cts PARTITION 0 s<client>-<n>` (unique values) to a topic of
//!   one partition, and consumer-group steps ([`group_step`]): every client is a member
//!   `c<client>` of the group `ctg` on that topic; it joins (`RESET EARLIEST`) when it is not a
//!   member as far as it knows, and then, if it holds the partition, `STREAM.CONSUME` a few
//!   records and `STREAM.COMMIT` past the last it got, or else `STREAM.HEARTBEAT`; a `-REBALANCE`
//!   sends it back to join (after a failover every member must: members live on the leader).
//!
//! Each is acknowledged (the reply the command gets), unknown (sent, no usable reply: it may
//! or may not have taken effect), or not sent (refused with a redirect until the operation's
//! deadline: it did not happen).
//!
//! # The checks, through the leader once the cluster healed
//! - Documents: every acknowledged insert is found (`DOC.FIND ct {}`), and every document found
//!   was inserted by a client (acked or unknown); the counter's `n` lies within [acknowledged
//!   increments, acknowledged + unknown].
//! - Queues: drained with `QUEUE.POP ctq COUNT n` and `QUEUE.ACK`: every acknowledged push
//!   not taken is there once, with the id its push was answered with; nothing is there twice
//!   or that no client pushed; a message whose ack was acknowledged is not there, was taken
//!   with an acknowledged ack only once, at its push's id, and was pushed by a client (an
//!   acknowledged ack is a majority's tombstone: the message is never delivered again, across
//!   failovers included).
//! - Streams: read from offset 0 with `STREAM.FETCH`: offsets are 0, 1, 2, ... with no gap;
//!   every acknowledged record is at the offset its publish was answered with; no value twice
//!   or that no client published. The group's committed offset never goes back: an
//!   acknowledged commit sent after another's reply came commits at least as far, and
//!   `STREAM.OFFSETS cts ctg` at the end is at least the commits that could have been the last.

use std::collections::{BTreeMap, BTreeSet};

use crate::crashtest::client::Reply;

use super::workload::{Attempt, Session};

/// The collection, queue and topic the clients write.
pub const COLLECTION: &str = "ct";
pub const QUEUE: &str = "ctq";
pub const TOPIC: &str = "cts";
/// The consumer group the clients share on the topic.
pub const GROUP: &str = "ctg";
/// Records a member consumes per group step.
const CONSUME_BATCH: &str = "20";
/// The `_id` of the counter document.
const COUNTER_ID: &str = "counter";
/// Messages or records read per call of the final drain.
const READ_BATCH: u64 = 500;

/// A write to one of the other models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelWrite {
    DocInsert,
    DocIncrement,
    QueuePush,
    QueueTake,
    StreamPublish,
}

/// What one client's writes to the other models came to.
#[derive(Debug, Default)]
pub struct ModelRecord {
    pub inserts_acked: BTreeSet<String>,
    pub inserts_unknown: BTreeSet<String>,
    pub increments_acked: u64,
    pub increments_unknown: u64,
    /// Payload -> the message id the push was answered with.
    pub pushes_acked: BTreeMap<String, i64>,
    pub pushes_unknown: BTreeSet<String>,
    /// Messages taken with an acknowledged ack: (payload, id), in the order taken.
    pub takes_acked: Vec<(String, i64)>,
    /// Messages whose ack got no reply: consumed or not.
    pub takes_unknown: BTreeSet<String>,
    /// Value -> the offset the publish was answered with.
    pub publishes_acked: BTreeMap<String, i64>,
    pub publishes_unknown: BTreeSet<String>,
    /// The group's acknowledged commits.
    pub commits_acked: Vec<GroupCommit>,
    pub commits_unknown: u64,
}

/// An acknowledged `STREAM.COMMIT`: when it was sent and when its reply came (ns on the run's
/// clock), and the offset it committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommit {
    pub sent_ns: u64,
    pub replied_ns: u64,
    pub offset: i64,
}

/// What a client knows of its membership in the group.
#[derive(Debug, Default)]
pub struct Member {
    /// The generation it joined at; `None`: it must join (again).
    generation: Option<i64>,
    /// It holds partition 0.
    holds: bool,
    /// Past the last record it consumed since it joined.
    next: Option<i64>,
}

impl ModelRecord {
    /// Adds `other`'s writes to this one's (all clients' writes, for the checks).
    pub fn merge(&mut self, other: ModelRecord) {
        self.inserts_acked.extend(other.inserts_acked);
        self.inserts_unknown.extend(other.inserts_unknown);
        self.increments_acked += other.increments_acked;
        self.increments_unknown += other.increments_unknown;
        self.pushes_acked.extend(other.pushes_acked);
        self.pushes_unknown.extend(other.pushes_unknown);
        self.takes_acked.extend(other.takes_acked);
        self.takes_unknown.extend(other.takes_unknown);
        self.publishes_acked.extend(other.publishes_acked);
        self.publishes_unknown.extend(other.publishes_unknown);
        self.commits_acked.extend(other.commits_acked);
        self.commits_unknown += other.commits_unknown;
    }

    /// Acknowledged writes, and writes of unknown outcome.
    pub fn counts(&self) -> (u64, u64) {
        let acked = self.inserts_acked.len()
            + self.pushes_acked.len()
            + self.takes_acked.len()
            + self.publishes_acked.len()
            + self.commits_acked.len()
            + self.increments_acked as usize;
        let unknown = self.inserts_unknown.len()
            + self.pushes_unknown.len()
            + self.takes_unknown.len()
            + self.publishes_unknown.len()
            + self.commits_unknown as usize
            + self.increments_unknown as usize;
        (acked as u64, unknown as u64)
    }
}

/// How a model write ended.
enum Ended {
    Acked(i64),
    Unknown,
    NotSent,
}

/// Runs `write` (the client's `sequence`-th) through `session` and records it. Returns the
/// reply the client did not expect, if any (recorded as an unknown outcome).
pub fn perform(
    session: &mut Session,
    client: u64,
    sequence: u64,
    write: ModelWrite,
    record: &mut ModelRecord,
) -> Option<String> {
    let mut odd = None;
    let mut run = |args: &[&[u8]], acked: fn(&Reply) -> Option<i64>| match session.run(args) {
        Attempt::NotSent => Ended::NotSent,
        Attempt::Unknown => Ended::Unknown,
        Attempt::Reply(reply) => match acked(&reply) {
            Some(number) => Ended::Acked(number),
            None => {
                odd = Some(format!("{} answered {reply:?}", show(args)));
                session.drop_connection();
                Ended::Unknown
            }
        },
    };
    match write {
        ModelWrite::DocInsert => {
            let id = format!("d{client}-{sequence}");
            let document = format!("{{\"_id\":\"{id}\",\"client\":{client}}}");
            let args: [&[u8]; 3] = [b"DOC.INSERT", COLLECTION.as_bytes(), document.as_bytes()];
            match run(&args, inserted_one) {
                Ended::Acked(_) => record.inserts_acked.insert(id),
                Ended::Unknown => record.inserts_unknown.insert(id),
                Ended::NotSent => false,
            };
        }
        ModelWrite::DocIncrement => {
            let filter = format!("{{\"_id\":\"{COUNTER_ID}\"}}");
            let args: [&[u8]; 4] = [
                b"DOC.UPDATE",
                COLLECTION.as_bytes(),
                filter.as_bytes(),
                br#"{"$inc":{"n":1}}"#,
            ];
            match run(&args, modified_one) {
                Ended::Acked(_) => record.increments_acked += 1,
                Ended::Unknown => record.increments_unknown += 1,
                Ended::NotSent => {}
            }
        }
        ModelWrite::QueuePush => {
            let payload = format!("m{client}-{sequence}");
            let args: [&[u8]; 3] = [b"QUEUE.PUSH", QUEUE.as_bytes(), payload.as_bytes()];
            match run(&args, integer) {
                Ended::Acked(id) => drop(record.pushes_acked.insert(payload, id)),
                Ended::Unknown => drop(record.pushes_unknown.insert(payload)),
                Ended::NotSent => {}
            }
        }
        ModelWrite::QueueTake => {
            let pop: [&[u8]; 2] = [b"QUEUE.POP", QUEUE.as_bytes()];
            let message = match session.run(&pop) {
                Attempt::Reply(Reply::Array(Some(messages))) => match messages.as_slice() {
                    [] => None,
                    [Reply::Array(Some(fields))] if fields.len() == 5 => {
                        let found = id_and_text(&fields[0], &fields[1]);
                        if found.is_none() {
                            odd = Some(format!("QUEUE.POP answered the message {fields:?}"));
                        }
                        found
                    }
                    other => {
                        odd = Some(format!("QUEUE.POP answered {other:?}"));
                        None
                    }
                },
                Attempt::Reply(reply) => {
                    odd = Some(format!("QUEUE.POP answered {reply:?}"));
                    None
                }
                // A delivery that may have happened returns when its connection closes.
                Attempt::Unknown | Attempt::NotSent => None,
            };
            if odd.is_some() {
                session.drop_connection();
            }
            let Some((id, payload)) = message else {
                return odd;
            };
            let id_text = id.to_string();
            let ack: [&[u8]; 3] = [b"QUEUE.ACK", QUEUE.as_bytes(), id_text.as_bytes()];
            match session.run(&ack) {
                Attempt::Reply(Reply::Integer(1)) => record.takes_acked.push((payload, id)),
                Attempt::Reply(Reply::Error(message))
                    if message.contains("not in flight")
                        || message.contains("delivered to another connection") => {}
                Attempt::Reply(reply) => {
                    odd = Some(format!("QUEUE.ACK {id} answered {reply:?}"));
                    session.drop_connection();
                    record.takes_unknown.insert(payload);
                }
                Attempt::Unknown => drop(record.takes_unknown.insert(payload)),
                Attempt::NotSent => {}
            }
        }
        ModelWrite::StreamPublish => {
            let value = format!("s{client}-{sequence}");
            let args: [&[u8]; 5] = [
                b"STREAM.PUBLISH",
                TOPIC.as_bytes(),
                b"PARTITION",
                b"0",
                value.as_bytes(),
            ];
            match run(&args, published_offset) {
                Ended::Acked(offset) => drop(record.publishes_acked.insert(value, offset)),
                Ended::Unknown => drop(record.publishes_unknown.insert(value)),
                Ended::NotSent => {}
            }
        }
    }
    odd
}

/// One consumer-group step of client `client` (see the module doc), on the run's `clock`.
/// Returns the reply the client did not expect, if any.
pub fn group_step(
    session: &mut Session,
    client: u64,
    member: &mut Member,
    clock: std::time::Instant,
    record: &mut ModelRecord,
) -> Option<String> {
    let consumer = format!("c{client}");
    let (topic, group) = (TOPIC.as_bytes(), GROUP.as_bytes());
    let rebalance = |reply: &Reply| matches!(reply, Reply::Error(m) if m.starts_with("REBALANCE"));
    let Some(generation) = member.generation else {
        let join: [&[u8]; 6] = [
            b"STREAM.JOIN",
            topic,
            group,
            consumer.as_bytes(),
            b"RESET",
            b"EARLIEST",
        ];
        return match session.run(&join) {
            Attempt::Reply(Reply::Array(Some(fields)))
                if fields.len() == 2 && integer(&fields[0]).is_some() =>
            {
                *member = Member {
                    generation: integer(&fields[0]),
                    holds: matches!(&fields[1], Reply::Array(Some(held)) if held.contains(&Reply::Integer(0))),
                    next: None,
                };
                None
            }
            Attempt::Reply(reply) => Some(format!("STREAM.JOIN answered {reply:?}")),
            Attempt::Unknown | Attempt::NotSent => None,
        };
    };
    let generation_text = generation.to_string();
    if !member.holds {
        let heartbeat: [&[u8]; 5] = [
            b"STREAM.HEARTBEAT",
            topic,
            group,
            consumer.as_bytes(),
            generation_text.as_bytes(),
        ];
        return match session.run(&heartbeat) {
            Attempt::Reply(Reply::Simple(ok)) if ok == "OK" => None,
            Attempt::Reply(reply) if rebalance(&reply) => {
                member.generation = None;
                None
            }
            Attempt::Reply(reply) => Some(format!("STREAM.HEARTBEAT answered {reply:?}")),
            Attempt::Unknown | Attempt::NotSent => None,
        };
    }
    let consume: [&[u8]; 6] = [
        b"STREAM.CONSUME",
        topic,
        group,
        consumer.as_bytes(),
        b"COUNT",
        CONSUME_BATCH.as_bytes(),
    ];
    match session.run(&consume) {
        Attempt::Reply(Reply::Array(Some(records))) => {
            for found in &records {
                match found {
                    Reply::Array(Some(fields)) if fields.len() == 6 => {
                        if let Some(offset) = integer(&fields[1]) {
                            member.next = Some(member.next.unwrap_or(0).max(offset + 1));
                        }
                    }
                    other => return Some(format!("STREAM.CONSUME answered the record {other:?}")),
                }
            }
        }
        Attempt::Reply(reply) if rebalance(&reply) => {
            member.generation = None;
            return None;
        }
        Attempt::Reply(reply) => return Some(format!("STREAM.CONSUME answered {reply:?}")),
        // Records it may have been given are delivered again to whoever holds the partition.
        Attempt::Unknown | Attempt::NotSent => return None,
    }
    let next = member.next?;
    let next_text = next.to_string();
    let commit: [&[u8]; 7] = [
        b"STREAM.COMMIT",
        topic,
        group,
        consumer.as_bytes(),
        generation_text.as_bytes(),
        b"0",
        next_text.as_bytes(),
    ];
    let sent_ns = super::workload::ns_since(clock);
    match session.run(&commit) {
        Attempt::Reply(Reply::Simple(ok)) if ok == "OK" => {
            record.commits_acked.push(GroupCommit {
                sent_ns,
                replied_ns: super::workload::ns_since(clock),
                offset: next,
            });
            None
        }
        Attempt::Reply(reply) if rebalance(&reply) => {
            member.generation = None;
            None
        }
        Attempt::Reply(reply) => {
            record.commits_unknown += 1;
            Some(format!("STREAM.COMMIT answered {reply:?}"))
        }
        Attempt::Unknown => {
            record.commits_unknown += 1;
            None
        }
        Attempt::NotSent => None,
    }
}

fn show(args: &[&[u8]]) -> String {
    args.iter()
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn integer(reply: &Reply) -> Option<i64> {
    match reply {
        Reply::Integer(n) => Some(*n),
        _ => None,
    }
}

/// DOC.INSERT of one document: an array of one `_id`.
fn inserted_one(reply: &Reply) -> Option<i64> {
    match reply {
        Reply::Array(Some(ids)) if ids.len() == 1 => Some(1),
        _ => None,
    }
}

/// DOC.UPDATE that modified the counter: `[1, 1, null]`.
fn modified_one(reply: &Reply) -> Option<i64> {
    match reply {
        Reply::Array(Some(fields)) if fields.len() == 3 => {
            (integer(&fields[1]) == Some(1)).then_some(1)
        }
        _ => None,
    }
}

/// STREAM.PUBLISH to partition 0: `[0, offset]`.
fn published_offset(reply: &Reply) -> Option<i64> {
    match reply {
        Reply::Array(Some(fields)) if fields.len() == 2 && integer(&fields[0]) == Some(0) => {
            integer(&fields[1])
        }
        _ => None,
    }
}

/// Creates what the clients write to (the queue, the topic, the counter document), through
/// the leader, before the faults start. Idempotent: a retry after an unknown outcome finds
/// what the first try made.
pub fn setup(session: &mut Session) -> Result<(), String> {
    let counter = format!("{{\"_id\":\"{COUNTER_ID}\",\"n\":0}}");
    let steps: [(&[&[u8]], &str); 3] = [
        (&[b"QUEUE.DECLARE", QUEUE.as_bytes()], "OK"),
        (
            &[b"STREAM.CREATE", TOPIC.as_bytes(), b"PARTITIONS", b"1"],
            "already exists",
        ),
        (
            &[b"DOC.INSERT", COLLECTION.as_bytes(), counter.as_bytes()],
            "duplicate key",
        ),
    ];
    for (args, also_fine) in steps {
        let mut last = String::new();
        let done = (0..20).any(|_| match session.run(args) {
            Attempt::Reply(Reply::Error(message)) if message.contains(also_fine) => true,
            Attempt::Reply(Reply::Error(message)) => {
                last = message;
                false
            }
            Attempt::Reply(_) => true,
            Attempt::Unknown | Attempt::NotSent => {
                last = "no reply".into();
                false
            }
        });
        if !done {
            return Err(format!("setup: {} failed: {last}", show(args)));
        }
    }
    Ok(())
}

/// What the checks found, for the report.
#[derive(Debug, Default)]
pub struct ModelSummary {
    pub documents: usize,
    pub counter: i64,
    pub messages: usize,
    /// Messages taken by the clients with an acknowledged ack.
    pub taken: usize,
    pub records: usize,
    /// The group's committed offset at the end, and the acknowledged commits.
    pub committed: i64,
    pub commits: usize,
}

/// The end checks of every model, through `session` (on the healed cluster's leader). Adds
/// each broken promise to `violations`.
pub fn check(
    session: &mut Session,
    writes: &ModelRecord,
    violations: &mut Vec<String>,
) -> ModelSummary {
    let mut summary = ModelSummary::default();
    let mut fail = |what: String| violations.push(what);
    match check_documents(session, writes, &mut summary) {
        Ok(found) => found.into_iter().for_each(&mut fail),
        Err(why) => fail(format!("documents: {why}")),
    }
    match check_queue(session, writes, &mut summary) {
        Ok(found) => found.into_iter().for_each(&mut fail),
        Err(why) => fail(format!("queue: {why}")),
    }
    match check_stream(session, writes, &mut summary) {
        Ok(found) => found.into_iter().for_each(&mut fail),
        Err(why) => fail(format!("stream: {why}")),
    }
    match check_group(session, writes, &mut summary) {
        Ok(found) => found.into_iter().for_each(&mut fail),
        Err(why) => fail(format!("group: {why}")),
    }
    summary
}

/// What a node's own copy of the other models says, read with READONLY once the nodes agree
/// on one log: the collection's document count (the counter included), the counter's `n`, the
/// stream's end offset and the group's committed offset (`STREAM.LAG`). Queues are left out: a
/// follower's queue model is loaded from its log only when it leads (docs/replication.md).
#[derive(Debug, PartialEq, Eq)]
pub struct ModelCopy {
    pub documents: i64,
    pub counter: i64,
    pub end: i64,
    pub committed: i64,
}

impl ModelCopy {
    /// The copy every node must hold, from what the checks read through the leader.
    pub fn expected(summary: &ModelSummary) -> ModelCopy {
        ModelCopy {
            documents: summary.documents as i64 + 1,
            counter: summary.counter,
            end: summary.records as i64,
            committed: summary.committed,
        }
    }
}

/// Reads a node's [`ModelCopy`] through `session` (READONLY on that node).
pub fn read_copy(session: &mut Session) -> Result<ModelCopy, String> {
    let count: [&[u8]; 3] = [b"DOC.COUNT", COLLECTION.as_bytes(), b"{}"];
    let documents = match reply(session, &count)? {
        Reply::Integer(n) => n,
        other => return Err(format!("DOC.COUNT answered {other:?}")),
    };
    let filter = format!("{{\"_id\":\"{COUNTER_ID}\"}}");
    let find: [&[u8]; 3] = [b"DOC.FIND", COLLECTION.as_bytes(), filter.as_bytes()];
    let counter = match reply(session, &find)? {
        Reply::Array(Some(found)) => match found.as_slice() {
            [Reply::Bulk(Some(text))] => serde_json::from_slice::<serde_json::Value>(text)
                .ok()
                .and_then(|document| document["n"].as_i64()),
            _ => None,
        },
        _ => None,
    }
    .ok_or("DOC.FIND of the counter did not answer one document with a number n")?;
    let lag: [&[u8]; 3] = [b"STREAM.LAG", TOPIC.as_bytes(), GROUP.as_bytes()];
    let (end, committed) = match reply(session, &lag)? {
        Reply::Array(Some(partitions)) => match partitions.as_slice() {
            [Reply::Array(Some(fields))] if fields.len() == 4 => {
                (integer(&fields[1]), integer(&fields[2]))
            }
            _ => (None, None),
        },
        _ => (None, None),
    };
    let (Some(end), Some(committed)) = (end, committed) else {
        return Err("STREAM.LAG did not answer one partition's offsets".into());
    };
    Ok(ModelCopy {
        documents,
        counter,
        end,
        committed,
    })
}

/// The queue `ctq` as the node behind `session` holds it: (ready, in flight), from
/// `QUEUE.INFO`. A node loads its queue model from its own log when it takes the leadership
/// (docs/replication.md), so this reads a node's copy only while it leads.
pub fn read_queue(session: &mut Session) -> Result<(i64, i64), String> {
    let info: [&[u8]; 2] = [b"QUEUE.INFO", QUEUE.as_bytes()];
    let Reply::Array(Some(fields)) = reply(session, &info)? else {
        return Err("QUEUE.INFO did not answer a map".into());
    };
    let field = |name: &str| {
        fields
            .chunks(2)
            .find(|pair| matches!(&pair[0], Reply::Bulk(Some(key)) if key == name.as_bytes()))
            .and_then(|pair| pair.get(1).and_then(integer))
            .ok_or_else(|| format!("QUEUE.INFO answered no integer {name}: {fields:?}"))
    };
    Ok((field("ready")?, field("inflight")?))
}

/// `args`' reply, which must come.
fn reply(session: &mut Session, args: &[&[u8]]) -> Result<Reply, String> {
    match session.run(args) {
        Attempt::Reply(Reply::Error(message)) => Err(format!("{} answered -{message}", show(args))),
        Attempt::Reply(reply) => Ok(reply),
        Attempt::Unknown | Attempt::NotSent => Err(format!("{}: no reply", show(args))),
    }
}

fn check_documents(
    session: &mut Session,
    writes: &ModelRecord,
    summary: &mut ModelSummary,
) -> Result<Vec<String>, String> {
    let args: [&[u8]; 5] = [b"DOC.FIND", COLLECTION.as_bytes(), b"{}", b"LIMIT", b"0"];
    let Reply::Array(Some(replies)) = reply(session, &args)? else {
        return Err("DOC.FIND did not answer an array".into());
    };
    let mut documents = Vec::new();
    for document in replies {
        let Reply::Bulk(Some(text)) = document else {
            return Err(format!(
                "DOC.FIND answered {document:?} among the documents"
            ));
        };
        let parsed: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| format!("a document is not JSON ({e}): {text:?}"))?;
        documents.push(parsed);
    }
    Ok(compare_documents(&documents, writes, summary))
}

/// The documents' check, on what `DOC.FIND` returned.
fn compare_documents(
    documents: &[serde_json::Value],
    writes: &ModelRecord,
    summary: &mut ModelSummary,
) -> Vec<String> {
    let mut found = BTreeSet::new();
    let mut violations = Vec::new();
    let mut counter = None;
    for document in documents {
        let id = document["_id"].as_str().unwrap_or_default().to_string();
        if id == COUNTER_ID {
            counter = document["n"].as_i64();
            continue;
        }
        if !writes.inserts_acked.contains(&id) && !writes.inserts_unknown.contains(&id) {
            violations.push(format!(
                "documents: {document} is there, no client inserted it"
            ));
        }
        if !found.insert(id.clone()) {
            violations.push(format!("documents: _id {id:?} is there twice"));
        }
    }
    summary.documents = found.len();
    let lost: Vec<&String> = writes.inserts_acked.difference(&found).collect();
    if !lost.is_empty() {
        violations.push(format!(
            "documents: {} acknowledged inserts lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        ));
    }
    let low = writes.increments_acked as i64;
    let high = low + writes.increments_unknown as i64;
    match counter {
        Some(n) if (low..=high).contains(&n) => summary.counter = n,
        Some(n) => violations.push(format!(
            "documents: the counter is {n}, outside [{low}, {high}] (acknowledged increments, \
             plus those of unknown outcome)"
        )),
        None => violations.push("documents: the counter document is missing".into()),
    }
    violations
}

/// One message or record read back: its id or offset, and its payload or value.
type Found = (i64, String);

fn check_queue(
    session: &mut Session,
    writes: &ModelRecord,
    summary: &mut ModelSummary,
) -> Result<Vec<String>, String> {
    let count = READ_BATCH.to_string();
    let mut messages = Vec::new();
    loop {
        let pop: [&[u8]; 4] = [b"QUEUE.POP", QUEUE.as_bytes(), b"COUNT", count.as_bytes()];
        let Reply::Array(Some(replies)) = reply(session, &pop)? else {
            return Err("QUEUE.POP did not answer an array".into());
        };
        if replies.is_empty() {
            break;
        }
        let mut ids = Vec::new();
        for message in replies {
            let found = match &message {
                Reply::Array(Some(fields)) if fields.len() == 5 => {
                    id_and_text(&fields[0], &fields[1])
                }
                _ => None,
            };
            let Some((id, payload)) = found else {
                return Err(format!("QUEUE.POP answered the message {message:?}"));
            };
            ids.push(id.to_string());
            messages.push((id, payload));
        }
        let mut ack: Vec<&[u8]> = vec![b"QUEUE.ACK", QUEUE.as_bytes()];
        ack.extend(ids.iter().map(|id| id.as_bytes()));
        reply(session, &ack)?;
    }
    summary.messages = messages.len();
    summary.taken = writes.takes_acked.len();
    Ok(compare_queue(&messages, writes))
}

/// The queue's check, on the messages drained at the end: `compare_log` over the pushes not
/// taken (those taken with an ack of unknown outcome may be there or not), and the takes:
/// each acknowledged one pushed by a client, at its push's id, once, and not there any more.
fn compare_queue(drained: &[Found], writes: &ModelRecord) -> Vec<String> {
    let mut violations = Vec::new();
    let mut taken: BTreeMap<&str, i64> = BTreeMap::new();
    for (payload, id) in &writes.takes_acked {
        if taken.insert(payload, *id).is_some() {
            violations.push(format!(
                "queue: {payload:?} was taken twice with an acknowledged ack"
            ));
        }
        match writes.pushes_acked.get(payload) {
            Some(pushed) if pushed != id => violations.push(format!(
                "queue: {payload:?} was pushed as message id {pushed}, taken as {id}"
            )),
            None if !writes.pushes_unknown.contains(payload) => {
                violations.push(format!("queue: {payload:?} was taken, no client pushed it"))
            }
            _ => {}
        }
    }
    for (id, payload) in drained {
        if taken.contains_key(payload.as_str()) {
            violations.push(format!(
                "queue: {payload:?} (id {id}) is there after an acknowledged ack took it"
            ));
        }
    }
    let not_taken: BTreeMap<String, i64> = writes
        .pushes_acked
        .iter()
        .filter(|(payload, _)| {
            !taken.contains_key(payload.as_str()) && !writes.takes_unknown.contains(*payload)
        })
        .map(|(payload, id)| (payload.clone(), *id))
        .collect();
    let mut maybe: BTreeSet<String> = writes.pushes_unknown.clone();
    maybe.extend(
        writes
            .takes_unknown
            .iter()
            .filter(|payload| writes.pushes_acked.contains_key(*payload))
            .cloned(),
    );
    // A taken message is "written by no client" to compare_log only if it is there, which is
    // reported above.
    maybe.extend(taken.keys().map(|payload| payload.to_string()));
    violations.extend(compare_log(
        "queue",
        "message id",
        drained,
        &not_taken,
        &maybe,
    ));
    violations
}

fn check_stream(
    session: &mut Session,
    writes: &ModelRecord,
    summary: &mut ModelSummary,
) -> Result<Vec<String>, String> {
    let count = READ_BATCH.to_string();
    let mut records = Vec::new();
    let mut violations = Vec::new();
    let mut next = 0i64;
    loop {
        let from = next.to_string();
        let fetch: [&[u8]; 6] = [
            b"STREAM.FETCH",
            TOPIC.as_bytes(),
            b"0",
            from.as_bytes(),
            b"COUNT",
            count.as_bytes(),
        ];
        let Reply::Array(Some(replies)) = reply(session, &fetch)? else {
            return Err("STREAM.FETCH did not answer an array".into());
        };
        if replies.is_empty() {
            break;
        }
        for record in replies {
            let found = match &record {
                Reply::Array(Some(fields)) if fields.len() == 6 => {
                    id_and_text(&fields[1], &fields[5])
                }
                _ => None,
            };
            let Some((offset, value)) = found else {
                return Err(format!("STREAM.FETCH answered the record {record:?}"));
            };
            if offset != next {
                violations.push(format!(
                    "stream: offset {offset} follows {}: offsets must be dense",
                    next - 1
                ));
            }
            next = offset + 1;
            records.push((offset, value));
        }
    }
    summary.records = records.len();
    let acked = &writes.publishes_acked;
    violations.extend(compare_log(
        "stream",
        "offset",
        &records,
        acked,
        &writes.publishes_unknown,
    ));
    Ok(violations)
}

fn check_group(
    session: &mut Session,
    writes: &ModelRecord,
    summary: &mut ModelSummary,
) -> Result<Vec<String>, String> {
    let offsets: [&[u8]; 3] = [b"STREAM.OFFSETS", TOPIC.as_bytes(), GROUP.as_bytes()];
    let committed = match reply(session, &offsets)? {
        Reply::Array(Some(pairs)) => match pairs.as_slice() {
            [] => -1,
            [Reply::Array(Some(pair))] if pair.len() == 2 => {
                integer(&pair[1]).ok_or_else(|| format!("STREAM.OFFSETS answered {pair:?}"))?
            }
            other => return Err(format!("STREAM.OFFSETS answered {other:?}")),
        },
        other => return Err(format!("STREAM.OFFSETS answered {other:?}")),
    };
    summary.committed = committed;
    summary.commits = writes.commits_acked.len();
    Ok(compare_commits(&writes.commits_acked, committed))
}

/// The group's check: no acknowledged commit goes back. A commit sent after another's reply
/// came commits at least as far (fencing: only the partition's holder in the current
/// generation commits, and it starts from the committed offset), and the offset read at the
/// end is at least that of the commits that could have been the last.
fn compare_commits(acked: &[GroupCommit], committed_at_end: i64) -> Vec<String> {
    let mut violations = Vec::new();
    let mut by_reply: Vec<&GroupCommit> = acked.iter().collect();
    by_reply.sort_by_key(|commit| commit.replied_ns);
    // The highest offset of the commits whose replies came first, and which one.
    let mut highest: Vec<&GroupCommit> = Vec::with_capacity(by_reply.len());
    for commit in &by_reply {
        let top = match highest.last() {
            Some(top) if top.offset >= commit.offset => top,
            _ => commit,
        };
        highest.push(top);
    }
    for commit in acked {
        let before = by_reply.partition_point(|earlier| earlier.replied_ns < commit.sent_ns);
        if let Some(earlier) = before.checked_sub(1).map(|i| highest[i]) {
            if earlier.offset > commit.offset {
                violations.push(format!(
                    "group: a commit of offset {} acknowledged at {} ns went back to {} (sent at \
                     {} ns, acknowledged)",
                    earlier.offset, earlier.replied_ns, commit.offset, commit.sent_ns
                ));
            }
        }
    }
    // The read at the end sees the last commit in some order the replies allow: one that no
    // other commit was sent after the reply of, or one of unknown outcome (those the holder
    // sends are not below its acknowledged ones).
    let last_sent = acked.iter().map(|commit| commit.sent_ns).max().unwrap_or(0);
    let lowest_last = acked
        .iter()
        .filter(|commit| commit.replied_ns >= last_sent)
        .map(|commit| commit.offset)
        .min();
    if let Some(lowest_last) = lowest_last.filter(|&offset| offset > committed_at_end) {
        violations.push(format!(
            "group: committed offset {committed_at_end} at the end, below every acknowledged \
             commit that could be the last ({lowest_last} and up)"
        ));
    }
    violations
}

fn id_and_text(id: &Reply, text: &Reply) -> Option<Found> {
    match (id, text) {
        (Reply::Integer(id), Reply::Bulk(Some(text))) => {
            Some((*id, String::from_utf8_lossy(text).into_owned()))
        }
        _ => None,
    }
}

/// The queue's or the stream's check, on what was read back (`found`: id or offset, and
/// payload): every acknowledged write there once, at the id or offset it was acknowledged
/// with; nothing twice; nothing that no client wrote (acknowledged or unknown).
fn compare_log(
    model: &str,
    place: &str,
    found: &[Found],
    acked: &BTreeMap<String, i64>,
    unknown: &BTreeSet<String>,
) -> Vec<String> {
    let mut violations = Vec::new();
    let mut seen: BTreeMap<&str, i64> = BTreeMap::new();
    for (at, text) in found {
        if seen.insert(text, *at).is_some() {
            violations.push(format!("{model}: {text:?} is there twice"));
        }
        if !acked.contains_key(text) && !unknown.contains(text) {
            violations.push(format!("{model}: {text:?} is there, no client wrote it"));
        }
    }
    let mut lost = Vec::new();
    for (text, at) in acked {
        match seen.get(text.as_str()) {
            None => lost.push(text),
            Some(got) if got != at => violations.push(format!(
                "{model}: {text:?} was acknowledged at {place} {at}, is there at {got}"
            )),
            Some(_) => {}
        }
    }
    if !lost.is_empty() {
        violations.push(format!(
            "{model}: {} acknowledged writes lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        ));
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_that_acknowledge() {
        let int = Reply::Integer;
        let ids = Reply::Array(Some(vec![Reply::Bulk(Some(b"\"d1-1\"".to_vec()))]));
        assert_eq!(inserted_one(&ids), Some(1));
        assert_eq!(inserted_one(&Reply::Array(Some(vec![]))), None);
        let modified = Reply::Array(Some(vec![int(1), int(1), Reply::Bulk(None)]));
        assert_eq!(modified_one(&modified), Some(1));
        let unmatched = Reply::Array(Some(vec![int(0), int(0), Reply::Bulk(None)]));
        assert_eq!(modified_one(&unmatched), None);
        assert_eq!(
            published_offset(&Reply::Array(Some(vec![int(0), int(7)]))),
            Some(7)
        );
        assert_eq!(
            published_offset(&Reply::Array(Some(vec![int(1), int(7)]))),
            None
        );
        assert_eq!(integer(&Reply::Simple("OK".into())), None);
    }

    fn writes() -> ModelRecord {
        let mut writes = ModelRecord::default();
        writes.pushes_acked.insert("m0-1".into(), 10);
        writes.pushes_acked.insert("m0-2".into(), 11);
        writes.pushes_unknown.insert("m1-1".into());
        writes.inserts_acked.insert("d0-1".into());
        writes.inserts_unknown.insert("d1-1".into());
        writes.increments_acked = 3;
        writes.increments_unknown = 2;
        writes
    }

    fn found(entries: &[(i64, &str)]) -> Vec<Found> {
        entries
            .iter()
            .map(|(at, text)| (*at, text.to_string()))
            .collect()
    }

    #[test]
    fn the_log_check_wants_every_acknowledged_write_at_its_place() {
        let w = writes();
        let check = |entries: &[(i64, &str)]| {
            compare_log(
                "queue",
                "id",
                &found(entries),
                &w.pushes_acked,
                &w.pushes_unknown,
            )
        };
        assert!(check(&[(10, "m0-1"), (11, "m0-2")]).is_empty());
        assert!(check(&[(10, "m0-1"), (11, "m0-2"), (12, "m1-1")]).is_empty());
        let lost = check(&[(10, "m0-1"), (12, "m1-1")]);
        assert!(lost[0].contains("1 acknowledged writes lost"), "{lost:?}");
        let moved = check(&[(10, "m0-1"), (12, "m0-2")]);
        assert!(
            moved[0].contains("acknowledged at id 11, is there at 12"),
            "{moved:?}"
        );
        let twice = check(&[(10, "m0-1"), (11, "m0-2"), (13, "m0-2")]);
        assert!(twice.iter().any(|v| v.contains("twice")), "{twice:?}");
        let invented = check(&[(10, "m0-1"), (11, "m0-2"), (12, "m9-9")]);
        assert!(invented[0].contains("no client wrote it"), "{invented:?}");
    }

    /// Takes: an acknowledged take removes its message from what must be there, and must not
    /// be there itself, nor taken twice, nor at another id; a take of unknown outcome may or
    /// may not be there.
    #[test]
    fn the_queue_check_accounts_for_the_messages_taken() {
        let mut w = writes();
        w.pushes_acked.insert("m0-3".into(), 12);
        w.takes_acked.push(("m0-2".into(), 11));
        w.takes_unknown.insert("m0-3".into());
        let check = |w: &ModelRecord, entries: &[(i64, &str)]| compare_queue(&found(entries), w);
        assert!(check(&w, &[(10, "m0-1")]).is_empty());
        assert!(check(&w, &[(10, "m0-1"), (12, "m0-3"), (13, "m1-1")]).is_empty());
        let back = check(&w, &[(10, "m0-1"), (11, "m0-2")]);
        assert!(
            back[0].contains("after an acknowledged ack took it"),
            "{back:?}"
        );
        let lost = check(&w, &[]);
        assert!(lost[0].contains("1 acknowledged writes lost"), "{lost:?}");
        let mut twice = writes();
        twice.takes_acked.push(("m0-2".into(), 11));
        twice.takes_acked.push(("m0-2".into(), 11));
        let found_twice = check(&twice, &[(10, "m0-1")]);
        assert!(found_twice[0].contains("taken twice"), "{found_twice:?}");
        let mut moved = writes();
        moved.takes_acked.push(("m0-2".into(), 15));
        let at = check(&moved, &[(10, "m0-1")]);
        assert!(
            at[0].contains("pushed as message id 11, taken as 15"),
            "{at:?}"
        );
        let mut invented = writes();
        invented.takes_acked.push(("m9-9".into(), 20));
        let none = check(&invented, &[(10, "m0-1"), (11, "m0-2")]);
        assert!(none[0].contains("no client pushed it"), "{none:?}");
        // A take of unknown outcome of a push of unknown outcome: there or not.
        let mut both = writes();
        both.takes_unknown.insert("m1-1".into());
        assert!(check(&both, &[(10, "m0-1"), (11, "m0-2")]).is_empty());
        assert!(check(&both, &[(10, "m0-1"), (11, "m0-2"), (13, "m1-1")]).is_empty());
    }

    /// A commit acknowledged after another's reply, at a lower offset, is caught, as is an
    /// end offset below an acknowledged commit; concurrent commits may land in either order.
    #[test]
    fn the_group_check_wants_no_acknowledged_commit_to_go_back() {
        let commit = |sent_ns, replied_ns, offset| GroupCommit {
            sent_ns,
            replied_ns,
            offset,
        };
        let ordered = [commit(0, 10, 5), commit(20, 30, 9), commit(40, 50, 9)];
        assert!(compare_commits(&ordered, 9).is_empty());
        assert!(compare_commits(&[], -1).is_empty());
        let back = [commit(0, 10, 5), commit(20, 30, 9), commit(40, 50, 7)];
        let found = compare_commits(&back, 9);
        assert!(
            found[0].contains("offset 9 acknowledged at 30 ns went back to 7"),
            "{found:?}"
        );
        let concurrent = [commit(0, 30, 9), commit(20, 40, 7)];
        assert!(compare_commits(&concurrent, 7).is_empty());
        assert!(compare_commits(&concurrent, 9).is_empty());
        let end = compare_commits(&ordered, 8);
        assert!(end[0].contains("committed offset 8 at the end"), "{end:?}");
        let below_both = compare_commits(&concurrent, 6);
        assert!(below_both[0].contains("(7 and up)"), "{below_both:?}");
    }

    #[test]
    fn the_document_check_bounds_the_counter() {
        let w = writes();
        let doc = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
        let check = |n: i64, ids: &[&str]| {
            let mut documents: Vec<_> = ids
                .iter()
                .map(|id| doc(&format!("{{\"_id\":\"{id}\"}}")))
                .collect();
            documents.push(doc(&format!("{{\"_id\":\"counter\",\"n\":{n}}}")));
            compare_documents(&documents, &w, &mut ModelSummary::default())
        };
        for n in 3..=5 {
            assert!(check(n, &["d0-1"]).is_empty(), "{n}");
        }
        assert!(check(2, &["d0-1"])[0].contains("outside [3, 5]"));
        assert!(check(6, &["d0-1", "d1-1"])[0].contains("outside [3, 5]"));
        assert!(check(3, &["d1-1"])[0].contains("acknowledged inserts lost"));
        assert!(check(3, &["d0-1", "x"])[0].contains("no client inserted it"));
        let no_counter = compare_documents(
            &[doc(r#"{"_id":"d0-1"}"#)],
            &w,
            &mut ModelSummary::default(),
        );
        assert!(no_counter[0].contains("counter document is missing"));
    }
}
