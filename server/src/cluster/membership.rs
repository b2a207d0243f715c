//! The membership record: a membership change travels as one engine batch, a put of the
//! System key [`MEMBERSHIP_KEY`] whose value names the change, the membership before and
//! after it, and the client address of every member of either (docs/replication.md,
//! "Membership in the server"; docs/ARCHITECTURE.md, decision 81). The leader proposes that
//! entry with the core's change header in front (`Node::propose_conf_change`); a follower
//! strips the header and appends the put like any entry, so every node's engine holds the
//! latest record, and a restart finds the membership there.
//!
//! The value is JSON, so an operator can read it back (`DEBUG`-free: it is a System key):
//! `{"change":"add_learner","node":4,"before":{"voters":[1,2],"learners":[]},
//! "after":{"voters":[1,2],"learners":[4]},"addresses":{"1":"127.0.0.1:7150",...},
//! "removed":[3]}`.
//!
//! `removed` lists every node any change so far removed, carried from record to record, so
//! that a removed id is never added again (etcd refuses it too: a node that comes back under a
//! removed id may hold an old log or, on a wiped disk, have forgotten a vote it cast). A
//! record written before the list existed reads as having none.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use flin_engine::{LogOp, Namespace, Op, RecordKind, WriteBatch};
use flin_replication::{ConfChange, ConfChangeKind, Membership, NodeId};
use serde_json::{json, Value};

/// The System key of the membership record.
pub const MEMBERSHIP_KEY: &[u8] = b"cluster/membership";

/// One membership change as the log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub change: ConfChange,
    pub before: Membership,
    pub after: Membership,
    /// The client address of every member of `before` and `after`.
    pub addresses: BTreeMap<NodeId, SocketAddr>,
    /// Every node removed by this change or an earlier one.
    pub removed: BTreeSet<NodeId>,
}

fn kind_name(kind: ConfChangeKind) -> &'static str {
    match kind {
        ConfChangeKind::AddLearner => "add_learner",
        ConfChangeKind::PromoteLearner => "promote_learner",
        ConfChangeKind::RemoveNode => "remove_node",
    }
}

fn membership_json(membership: &Membership) -> Value {
    json!({
        "voters": membership.voters().collect::<Vec<_>>(),
        "learners": membership.learners().collect::<Vec<_>>(),
    })
}

fn ids(value: &Value, what: &str) -> Result<Vec<NodeId>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("membership record: {what} is not a list"))?
        .iter()
        .map(|id| {
            id.as_u64()
                .filter(|&id| id > 0)
                .ok_or_else(|| format!("membership record: {what} holds {id}, not a node id"))
        })
        .collect()
}

fn membership_of(value: &Value, what: &str) -> Result<Membership, String> {
    let voters = ids(&value["voters"], &format!("{what}.voters"))?;
    let learners = ids(&value["learners"], &format!("{what}.learners"))?;
    if voters.is_empty() {
        return Err(format!("membership record: {what} has no voter"));
    }
    if let Some(both) = learners.iter().find(|id| voters.contains(id)) {
        return Err(format!(
            "membership record: node {both} is both a voter and a learner in {what}"
        ));
    }
    Ok(Membership::with_learners(voters, learners))
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let addresses: serde_json::Map<String, Value> = self
            .addresses
            .iter()
            .map(|(id, addr)| (id.to_string(), Value::String(addr.to_string())))
            .collect();
        json!({
            "change": kind_name(self.change.kind),
            "node": self.change.node,
            "before": membership_json(&self.before),
            "after": membership_json(&self.after),
            "addresses": addresses,
            "removed": self.removed,
        })
        .to_string()
        .into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Record, String> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("membership record: not JSON: {e}"))?;
        let kind = match value["change"].as_str() {
            Some("add_learner") => ConfChangeKind::AddLearner,
            Some("promote_learner") => ConfChangeKind::PromoteLearner,
            Some("remove_node") => ConfChangeKind::RemoveNode,
            _ => {
                return Err(format!(
                    "membership record: unknown change {}",
                    value["change"]
                ))
            }
        };
        let node = value["node"]
            .as_u64()
            .filter(|&node| node > 0)
            .ok_or_else(|| format!("membership record: node {} is not an id", value["node"]))?;
        let mut addresses = BTreeMap::new();
        for (id, addr) in value["addresses"]
            .as_object()
            .ok_or("membership record: no addresses")?
        {
            let id: NodeId = id
                .parse()
                .map_err(|_| format!("membership record: address of '{id}', not a node id"))?;
            let addr: SocketAddr = addr
                .as_str()
                .and_then(|addr| addr.parse().ok())
                .ok_or_else(|| format!("membership record: node {id}'s address {addr}"))?;
            addresses.insert(id, addr);
        }
        let removed = match &value["removed"] {
            Value::Null => BTreeSet::new(),
            list => ids(list, "removed")?.into_iter().collect(),
        };
        Ok(Record {
            change: ConfChange { kind, node },
            before: membership_of(&value["before"], "before")?,
            after: membership_of(&value["after"], "after")?,
            addresses,
            removed,
        })
    }

    /// The latest record the engine holds (the System key's current value), if any.
    pub fn latest(engine: &flin_engine::Engine) -> Result<Option<Record>, String> {
        engine
            .get(Namespace::System, MEMBERSHIP_KEY)
            .map_err(|e| format!("cannot read the membership record: {e}"))?
            .map(|value| Record::decode(&value.value))
            .transpose()
    }

    /// The nodes removed once this change is made: `removed` of the record before it (none
    /// when there was none) and the node this change removes.
    pub fn removed_after(previous: Option<&Record>, change: ConfChange) -> BTreeSet<NodeId> {
        let mut removed = previous.map(|r| r.removed.clone()).unwrap_or_default();
        if change.kind == ConfChangeKind::RemoveNode {
            removed.insert(change.node);
        }
        removed
    }

    /// The engine batch that carries this record.
    pub fn batch(&self) -> WriteBatch {
        let mut batch = WriteBatch::new();
        batch.put(Namespace::System, MEMBERSHIP_KEY, &self.encode(), 0);
        batch
    }

    /// The record an entry's ops carry, if they are exactly one put of [`MEMBERSHIP_KEY`]
    /// (only the raft thread writes that key, and always alone).
    pub fn in_ops(ops: &[LogOp]) -> Option<Result<Record, String>> {
        match ops {
            [op] if is_record(op.kind, op.namespace, &op.key) => Some(Record::decode(&op.value)),
            _ => None,
        }
    }

    /// The record an entry's ops carry (decoded in place: `entry::decode_ops`), as
    /// [`Record::in_ops`].
    pub fn in_entry(ops: &[Op<'_>]) -> Option<Result<Record, String>> {
        match ops {
            [op] if is_record_op(op) => Some(Record::decode(op.value)),
            _ => None,
        }
    }
}

/// The first bytes of a removal notice (a raft connection starts with `FLINRAFT`, a snapshot
/// connection with `FLINSNAP`): the cluster port's acceptor peeks them.
pub const NOTICE_MAGIC: &[u8; 8] = b"FLINGONE";
/// The version of the notice's bytes.
pub const NOTICE_VERSION: u8 = 1;
/// Magic, version, the sender's id, the removed node's id, an index and a term.
pub const NOTICE_BYTES: usize = 41;

/// What a leader that applied a node's removal sends that node on a connection of its own, and
/// what any member sends a removed node that sent it a message (docs/replication.md, "Removal
/// notice, byte by byte"): the leader stops sending a node entries once its removal is
/// appended, so without it a removed follower would not learn that its removal was committed,
/// and one that was down would come back believing it is a member. The node stops itself on
/// it (etcd's removed member is told the same way: its peers answer it "removed"). Only a
/// removal that is applied (so committed) is noticed, and a removed id is never added again,
/// so the notice stays true.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The node that sends it: the leader that applied the removal, or a member the removed
    /// node sent a message to.
    pub from: NodeId,
    pub node: NodeId,
    pub index: u64,
    pub term: u64,
}

impl Notice {
    pub fn encode(&self) -> [u8; NOTICE_BYTES] {
        let mut bytes = [0u8; NOTICE_BYTES];
        bytes[..8].copy_from_slice(NOTICE_MAGIC);
        bytes[8] = NOTICE_VERSION;
        for (at, field) in [self.from, self.node, self.index, self.term]
            .into_iter()
            .enumerate()
        {
            bytes[9 + 8 * at..17 + 8 * at].copy_from_slice(&field.to_le_bytes());
        }
        bytes
    }

    pub fn decode(bytes: &[u8; NOTICE_BYTES]) -> Result<Notice, String> {
        if &bytes[..8] != NOTICE_MAGIC {
            return Err("removal notice: bad magic at byte 0".into());
        }
        if bytes[8] != NOTICE_VERSION {
            return Err(format!(
                "removal notice: version {} at byte 8 (not {NOTICE_VERSION})",
                bytes[8]
            ));
        }
        let field = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let notice = Notice {
            from: field(9),
            node: field(17),
            index: field(25),
            term: field(33),
        };
        for (name, value, at) in [("sender", notice.from, 9), ("node", notice.node, 17)] {
            if value == 0 {
                return Err(format!("removal notice: {name} id 0 at byte {at}"));
            }
        }
        Ok(notice)
    }
}

/// Whether `op` writes a membership record (alone in its entry, it is one).
pub fn is_record_op(op: &Op<'_>) -> bool {
    is_record(op.kind, op.namespace, op.key)
}

fn is_record(kind: RecordKind, namespace: Namespace, key: &[u8]) -> bool {
    kind == RecordKind::Put && namespace == Namespace::System && key == MEMBERSHIP_KEY
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        let before = Membership::new([1, 2]);
        let change = ConfChange {
            kind: ConfChangeKind::AddLearner,
            node: 4,
        };
        Record {
            change,
            after: before.changed(change).unwrap(),
            before,
            addresses: [1, 2, 4]
                .into_iter()
                .map(|id| (id, SocketAddr::from(([127, 0, 0, 1], 7150 + id as u16))))
                .collect(),
            removed: BTreeSet::from([3]),
        }
    }

    #[test]
    fn a_record_reads_back_from_its_batch() {
        let record = record();
        let batch = record.batch();
        assert_eq!(
            Record::in_entry(&batch.iter().collect::<Vec<_>>()),
            Some(Ok(record.clone()))
        );
        let text = String::from_utf8(record.encode()).unwrap();
        assert!(text.contains(r#""learners":[4]"#), "{text}");
        assert!(text.contains(r#""removed":[3]"#), "{text}");
    }

    #[test]
    fn removed_nodes_carry_from_record_to_record() {
        let first = record();
        let removal = ConfChange {
            kind: ConfChangeKind::RemoveNode,
            node: 2,
        };
        assert_eq!(
            Record::removed_after(Some(&first), removal),
            BTreeSet::from([2, 3])
        );
        assert_eq!(
            Record::removed_after(Some(&first), first.change),
            BTreeSet::from([3])
        );
        assert_eq!(Record::removed_after(None, removal), BTreeSet::from([2]));
        // A record written before the list existed has none.
        let mut old: Value = serde_json::from_slice(&first.encode()).unwrap();
        old.as_object_mut().unwrap().remove("removed");
        let old = Record::decode(old.to_string().as_bytes()).unwrap();
        assert!(old.removed.is_empty());
        assert_eq!(
            Record {
                removed: first.removed.clone(),
                ..old
            },
            first
        );
    }

    #[test]
    fn a_notice_reads_back_and_broken_ones_say_where() {
        let notice = Notice {
            from: 1,
            node: 4,
            index: 1234,
            term: 7,
        };
        let bytes = notice.encode();
        assert_eq!(&bytes[..9], b"FLINGONE\x01");
        assert_eq!(Notice::decode(&bytes), Ok(notice));
        for (at, byte, why) in [
            (0, b'X', "bad magic at byte 0"),
            (8, 2, "version 2 at byte 8"),
        ] {
            let mut broken = bytes;
            broken[at] = byte;
            let error = Notice::decode(&broken).unwrap_err();
            assert!(error.contains(why), "{error}");
        }
        let zero = Notice { node: 0, ..notice }.encode();
        assert!(Notice::decode(&zero)
            .unwrap_err()
            .contains("node id 0 at byte 17"));
    }

    #[test]
    fn other_batches_are_not_records_and_broken_records_say_why() {
        let mut batch = WriteBatch::new();
        batch.put(Namespace::Kv, MEMBERSHIP_KEY, b"{}", 0);
        assert_eq!(Record::in_entry(&batch.iter().collect::<Vec<_>>()), None);
        let mut two = record().batch();
        two.put(Namespace::Kv, b"k", b"v", 0);
        assert_eq!(Record::in_entry(&two.iter().collect::<Vec<_>>()), None);
        for broken in [
            &b"not json"[..],
            br#"{"change":"grow","node":4}"#,
            br#"{"change":"remove_node","node":0}"#,
            br#"{"change":"remove_node","node":3,"addresses":{},"before":{"voters":[],"learners":[]},"after":{"voters":[1],"learners":[]}}"#,
            br#"{"change":"remove_node","node":3,"addresses":{},"before":{"voters":[1],"learners":[1]},"after":{"voters":[1],"learners":[]}}"#,
            br#"{"change":"remove_node","node":3,"addresses":{},"before":{"voters":[1,3],"learners":[]},"after":{"voters":[1],"learners":[]},"removed":[0]}"#,
            br#"{"change":"remove_node","node":3,"addresses":{},"before":{"voters":[1,3],"learners":[]},"after":{"voters":[1],"learners":[]},"removed":3}"#,
        ] {
            let error = Record::decode(broken).unwrap_err();
            assert!(error.starts_with("membership record:"), "{error}");
        }
    }
}
