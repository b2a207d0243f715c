//! A log entry's data as raft carries it: the engine ops one seq wrote, in the order written,
//! so a follower appends exactly the records its leader wrote (`Engine::append_entry`).
//!
//! Bytes (little-endian): `count: u32`, then per op `kind: u8` (the engine's `RecordKind`),
//! `namespace: u8` (its tag), `expiry_ms: u64`, `key_len: u32`, key, `value_len: u32`, value.
//! The empty entry a new leader appends to commit its term (raft §5.4.2) carries no data;
//! it is written as one put of [`LEADER_KEY`] in the System namespace (the engine has no
//! empty entries), holding the term and the leader's id.

use flin_engine::{LogEntry, Namespace, Op, RecordKind};

/// The System key the empty entry of each term writes.
pub const LEADER_KEY: &[u8] = b"cluster/leader";

/// Encodes `entry`'s ops.
pub fn encode(entry: &LogEntry) -> Vec<u8> {
    let bytes: usize = entry
        .ops
        .iter()
        .map(|op| 18 + op.key.len() + op.value.len())
        .sum();
    let mut out = Vec::with_capacity(4 + bytes);
    let mut writer = EntryWriter::begin(&mut out);
    for op in &entry.ops {
        writer.op(&op.as_op());
    }
    writer.finish();
    out
}

/// Lays out one entry's data at the end of a buffer, op by op, for a reader that hands the
/// ops over one at a time (`LogReader::next_ops`): the leader lays a whole batch of proposals
/// out in one buffer that their `EntryData` share (docs/ARCHITECTURE.md, decision 94).
pub struct EntryWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Where the op count goes, written by `finish`.
    count_at: usize,
    count: u32,
}

impl<'a> EntryWriter<'a> {
    pub fn begin(out: &'a mut Vec<u8>) -> EntryWriter<'a> {
        let count_at = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        EntryWriter {
            out,
            count_at,
            count: 0,
        }
    }

    pub fn op(&mut self, op: &Op<'_>) {
        let out = &mut *self.out;
        out.push(op.kind as u8);
        out.push(op.namespace.tag());
        out.extend_from_slice(&op.expiry_ms.to_le_bytes());
        out.extend_from_slice(&(op.key.len() as u32).to_le_bytes());
        out.extend_from_slice(op.key);
        out.extend_from_slice(&(op.value.len() as u32).to_le_bytes());
        out.extend_from_slice(op.value);
        self.count += 1;
    }

    pub fn finish(self) {
        self.out[self.count_at..self.count_at + 4].copy_from_slice(&self.count.to_le_bytes());
    }
}

/// The value the empty entry of `term` puts at [`LEADER_KEY`]: the term and the leader's id.
pub fn leader_value(term: u64, leader: u64) -> [u8; 16] {
    let mut value = [0; 16];
    value[..8].copy_from_slice(&term.to_le_bytes());
    value[8..].copy_from_slice(&leader.to_le_bytes());
    value
}

/// The ops a leader's entry data stands for, borrowed from it, appended to `ops` (a follower
/// appends them with `Engine::append_entry_ops`, no batch built); the empty entry stands for
/// one put of `leader_value` (made by [`leader_value`]) at [`LEADER_KEY`].
pub fn decode_ops<'a>(
    data: &'a [u8],
    leader_value: &'a [u8],
    ops: &mut Vec<Op<'a>>,
) -> Result<(), String> {
    if data.is_empty() {
        ops.push(Op {
            kind: RecordKind::Put,
            namespace: Namespace::System,
            key: LEADER_KEY,
            value: leader_value,
            expiry_ms: 0,
        });
        return Ok(());
    }
    let mut at = 0;
    let count = u32::from_le_bytes(take::<4>(data, &mut at, "op count")?);
    for n in 0..count {
        let [kind] = take::<1>(data, &mut at, "op kind")?;
        let kind = RecordKind::from_u8(kind)
            .filter(|kind| *kind != RecordKind::Batch)
            .ok_or_else(|| format!("op {n}: unknown kind {kind} at byte {}", at - 1))?;
        let [tag] = take::<1>(data, &mut at, "namespace")?;
        let namespace = Namespace::from_tag(tag)
            .ok_or_else(|| format!("op {n}: unknown namespace {tag} at byte {}", at - 1))?;
        let expiry_ms = u64::from_le_bytes(take::<8>(data, &mut at, "expiry")?);
        let key = slice(data, &mut at, "key")?;
        let value = slice(data, &mut at, "value")?;
        ops.push(Op {
            kind,
            namespace,
            key,
            value,
            expiry_ms,
        });
    }
    if at != data.len() {
        return Err(format!("{} bytes after the last op", data.len() - at));
    }
    Ok(())
}

fn take<const N: usize>(data: &[u8], at: &mut usize, what: &str) -> Result<[u8; N], String> {
    let bytes = data
        .get(*at..*at + N)
        .ok_or_else(|| format!("entry data ends inside the {what} at byte {}", *at))?;
    *at += N;
    Ok(bytes.try_into().expect("N bytes"))
}

fn slice<'a>(data: &'a [u8], at: &mut usize, what: &str) -> Result<&'a [u8], String> {
    let len = u32::from_le_bytes(take::<4>(data, at, what)?) as usize;
    let bytes = data
        .get(*at..*at + len)
        .ok_or_else(|| format!("entry data ends inside the {what} at byte {}", *at))?;
    *at += len;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flin_engine::{Config, Engine, WriteBatch};

    fn decode(data: &[u8]) -> Result<Vec<Op<'_>>, String> {
        let mut ops = Vec::new();
        decode_ops(data, b"unused", &mut ops)?;
        Ok(ops)
    }

    #[test]
    fn an_entry_read_from_one_engine_appends_the_same_records_in_another() {
        let leader = Engine::open(Config::memory().replicated(0)).unwrap();
        let follower = Engine::open(Config::memory().replicated(0)).unwrap();
        let mut batch = WriteBatch::new();
        batch
            .put(Namespace::Kv, b"a", b"1", 0)
            .put(Namespace::Kv, b"b", b"2", 99_999_999_999_999)
            .delete(Namespace::Kv, b"c")
            .append(Namespace::Stream, b"s", b"record")
            .drop_range(Namespace::Document, b"x", b"y");
        leader.write(&batch).unwrap();
        let entry = leader.entry(1).unwrap().unwrap();
        let data = encode(&entry);
        let copied = decode(&data).unwrap();
        follower.append_entry_ops(1, entry.term, &copied).unwrap();
        assert_eq!(follower.entry(1).unwrap().unwrap().ops, entry.ops);
        assert_eq!(
            follower.get(Namespace::Kv, b"a").unwrap().unwrap().value,
            b"1"
        );
    }

    #[test]
    fn every_truncation_of_an_entry_is_refused_with_where() {
        let engine = Engine::open(Config::memory()).unwrap();
        let mut batch = WriteBatch::new();
        batch
            .put(Namespace::Kv, b"key", b"value", 0)
            .delete(Namespace::Kv, b"k2");
        engine.write(&batch).unwrap();
        let data = encode(&engine.entry(1).unwrap().unwrap());
        for cut in 1..data.len() {
            let error = decode(&data[..cut]).expect_err("a truncation is refused");
            assert!(error.contains("at byte"), "{error}");
        }
        let mut longer = data.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().contains("after the last op"));
    }

    #[test]
    fn the_empty_entry_writes_the_leader_key() {
        let value = leader_value(7, 2);
        let mut ops = Vec::new();
        decode_ops(&[], &value, &mut ops).unwrap();
        let [op] = &ops[..] else {
            panic!("one op: {ops:?}")
        };
        assert_eq!((op.namespace, op.key), (Namespace::System, LEADER_KEY));
        assert_eq!(&op.value[..8], &7u64.to_le_bytes());
        assert_eq!(&op.value[8..], &2u64.to_le_bytes());
    }
}
