//! A log entry's data as raft carries it: the engine ops one seq wrote, in the order written,
//! so a follower appends exactly the records its leader wrote (`Engine::append_entry`).
//!
//! Bytes (little-endian): `count: u32`, then per op `kind: u8` (the engine's `RecordKind`),
//! `namespace: u8` (its tag), `expiry_ms: u64`, `key_len: u32`, key, `value_len: u32`, value.
//! The empty entry a new leader appends to commit its term (raft §5.4.2) carries no data;
//! it is written as one put of [`LEADER_KEY`] in the System namespace (the engine has no
//! empty entries), holding the term and the leader's id.

use flin_engine::{LogEntry, Namespace, Op, RecordKind, WriteBatch};

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
    out.extend_from_slice(&(entry.ops.len() as u32).to_le_bytes());
    for op in &entry.ops {
        out.push(op.kind as u8);
        out.push(op.namespace.tag());
        out.extend_from_slice(&op.expiry_ms.to_le_bytes());
        out.extend_from_slice(&(op.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&op.key);
        out.extend_from_slice(&(op.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&op.value);
    }
    out
}

/// The batch a leader's entry data stands for; `term` and `leader` fill the empty entry.
pub fn decode(data: &[u8], term: u64, leader: u64) -> Result<WriteBatch, String> {
    let mut batch = WriteBatch::new();
    if data.is_empty() {
        let mut value = term.to_le_bytes().to_vec();
        value.extend_from_slice(&leader.to_le_bytes());
        batch.put(Namespace::System, LEADER_KEY, &value, 0);
        return Ok(batch);
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
        batch.push_op(&Op {
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
    Ok(batch)
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
    use flin_engine::{Config, Engine};

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
        let copied = decode(&data, entry.term, 1).unwrap();
        follower.append_entry(1, entry.term, &copied).unwrap();
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
            let error = decode(&data[..cut], 1, 1).expect_err("a truncation is refused");
            assert!(error.contains("at byte"), "{error}");
        }
        let mut longer = data.clone();
        longer.push(0);
        assert!(decode(&longer, 1, 1)
            .unwrap_err()
            .contains("after the last op"));
    }

    #[test]
    fn the_empty_entry_writes_the_leader_key() {
        let batch = decode(&[], 7, 2).unwrap();
        let op = batch.op(0);
        assert_eq!((op.namespace, op.key), (Namespace::System, LEADER_KEY));
        assert_eq!(&op.value[..8], &7u64.to_le_bytes());
    }
}
