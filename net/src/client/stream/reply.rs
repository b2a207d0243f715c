//! Stream replies: from the typed value a stream row answers with to what a method returns.
//! Each function checks the value's whole shape, so a server that answers something else
//! gives a [`ProtocolError`] naming what was wrong, never a panic. Pure functions of a
//! [`Value`], unit-tested with hand-built ones.

use std::time::Duration;

use super::{
    Assignment, GroupInfo, Lag, PartitionInfo, Published, PublishedRange, Record, TopicInfo,
};
use crate::binary::Value;
use crate::client::error::Result;
pub(crate) use crate::client::queue::reply::{byte_string, items, names, ok, unexpected};

fn int(value: &Value, opcode: u8) -> Result<i64> {
    match value {
        Value::Integer(n) => Ok(*n),
        _ => Err(unexpected(opcode, "a non-integer where an integer was due")),
    }
}

fn count(value: &Value, opcode: u8) -> Result<u64> {
    u64::try_from(int(value, opcode)?).map_err(|_| unexpected(opcode, "a negative count"))
}

fn partition(value: &Value, opcode: u8) -> Result<u32> {
    u32::try_from(count(value, opcode)?).map_err(|_| unexpected(opcode, "a partition above u32"))
}

/// -1 is none.
fn optional(value: &Value, opcode: u8) -> Result<Option<u64>> {
    match int(value, opcode)? {
        -1 => Ok(None),
        n => u64::try_from(n)
            .map(Some)
            .map_err(|_| unexpected(opcode, "a negative offset other than -1")),
    }
}

/// A map's fields in order, or a flat array k v k v (RESP2's shape).
fn fields(value: &Value, opcode: u8) -> Result<Vec<(Vec<u8>, &Value)>> {
    match value {
        Value::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| Ok((byte_string(k, opcode)?, v)))
            .collect(),
        Value::Array(flat) if flat.len() % 2 == 0 => flat
            .chunks_exact(2)
            .map(|pair| Ok((byte_string(&pair[0], opcode)?, &pair[1])))
            .collect(),
        _ => Err(unexpected(opcode, "a non-map where a map was due")),
    }
}

fn field<'v>(fields: &[(Vec<u8>, &'v Value)], name: &str, opcode: u8) -> Result<&'v Value> {
    fields
        .iter()
        .find(|(k, _)| k == name.as_bytes())
        .map(|(_, v)| *v)
        .ok_or_else(|| unexpected(opcode, "a map without a field it must have"))
}

/// STREAM.PUBLISH: `[partition, offset]`.
pub(crate) fn published(value: &Value, opcode: u8) -> Result<Published> {
    match items(value, opcode)? {
        [p, offset] => Ok(Published {
            partition: partition(p, opcode)?,
            offset: count(offset, opcode)?,
        }),
        _ => Err(unexpected(
            opcode,
            "a publish reply that is not [partition, offset]",
        )),
    }
}

/// STREAM.MPUBLISH: `[[partition, base, count], ...]`.
pub(crate) fn ranges(value: &Value, opcode: u8) -> Result<Vec<PublishedRange>> {
    items(value, opcode)?
        .iter()
        .map(|range| match items(range, opcode)? {
            [p, base, n] => Ok(PublishedRange {
                partition: partition(p, opcode)?,
                base: count(base, opcode)?,
                count: count(n, opcode)?,
            }),
            _ => Err(unexpected(
                opcode,
                "a range that is not [partition, base, count]",
            )),
        })
        .collect()
}

fn record(value: &Value, opcode: u8) -> Result<Record> {
    let [p, offset, timestamp, key, headers, body] = items(value, opcode)? else {
        return Err(unexpected(opcode, "a record that is not 6 fields"));
    };
    let key = match key {
        Value::Null => None,
        other => Some(byte_string(other, opcode)?),
    };
    let headers = fields(headers, opcode)?
        .into_iter()
        .map(|(k, v)| Ok((k, byte_string(v, opcode)?)))
        .collect::<Result<Vec<_>>>()?;
    let Value::Bulk(body) = body else {
        return Err(unexpected(opcode, "a record value that is not bulk"));
    };
    Ok(Record {
        partition: partition(p, opcode)?,
        offset: count(offset, opcode)?,
        timestamp_ms: count(timestamp, opcode)?,
        key,
        headers,
        value: body.clone(),
    })
}

/// STREAM.FETCH, STREAM.CONSUME: the records.
pub(crate) fn records(value: &Value, opcode: u8) -> Result<Vec<Record>> {
    items(value, opcode)?
        .iter()
        .map(|r| record(r, opcode))
        .collect()
}

pub(crate) fn describe(value: &Value, opcode: u8) -> Result<TopicInfo> {
    let map = fields(value, opcode)?;
    let retention = count(field(&map, "retention", opcode)?, opcode)?;
    let retention_bytes = count(field(&map, "retentionbytes", opcode)?, opcode)?;
    let partitions = items(field(&map, "partition_info", opcode)?, opcode)?
        .iter()
        .map(|info| {
            let info = fields(info, opcode)?;
            Ok(PartitionInfo {
                partition: partition(field(&info, "partition", opcode)?, opcode)?,
                first: count(field(&info, "first", opcode)?, opcode)?,
                next: count(field(&info, "next", opcode)?, opcode)?,
                bytes: count(field(&info, "bytes", opcode)?, opcode)?,
                oldest_timestamp_ms: optional(field(&info, "oldest_timestamp", opcode)?, opcode)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TopicInfo {
        name: byte_string(field(&map, "name", opcode)?, opcode)?,
        partitions,
        retention: (retention > 0).then(|| Duration::from_millis(retention)),
        retention_bytes: (retention_bytes > 0).then_some(retention_bytes),
    })
}

/// STREAM.JOIN: `[generation, [partition, ...]]`.
pub(crate) fn assignment(value: &Value, opcode: u8) -> Result<Assignment> {
    match items(value, opcode)? {
        [generation, partitions] => Ok(Assignment {
            generation: count(generation, opcode)?,
            partitions: items(partitions, opcode)?
                .iter()
                .map(|p| partition(p, opcode))
                .collect::<Result<_>>()?,
        }),
        _ => Err(unexpected(
            opcode,
            "a join reply that is not [generation, partitions]",
        )),
    }
}

pub(crate) fn offsets(value: &Value, opcode: u8) -> Result<Vec<(u32, Option<u64>)>> {
    items(value, opcode)?
        .iter()
        .map(|pair| match items(pair, opcode)? {
            [p, committed] => Ok((partition(p, opcode)?, optional(committed, opcode)?)),
            _ => Err(unexpected(
                opcode,
                "an offset that is not [partition, committed]",
            )),
        })
        .collect()
}

pub(crate) fn lag(value: &Value, opcode: u8) -> Result<Vec<Lag>> {
    items(value, opcode)?
        .iter()
        .map(|row| match items(row, opcode)? {
            [p, end, committed, lag] => Ok(Lag {
                partition: partition(p, opcode)?,
                end: count(end, opcode)?,
                committed: optional(committed, opcode)?,
                lag: count(lag, opcode)?,
            }),
            _ => Err(unexpected(opcode, "a lag row that is not 4 fields")),
        })
        .collect()
}

pub(crate) fn groups(value: &Value, opcode: u8) -> Result<Vec<GroupInfo>> {
    items(value, opcode)?
        .iter()
        .map(|group| {
            let map = fields(group, opcode)?;
            let members = items(field(&map, "members", opcode)?, opcode)?
                .iter()
                .map(|member| match items(member, opcode)? {
                    [name, partitions] => Ok((
                        byte_string(name, opcode)?,
                        items(partitions, opcode)?
                            .iter()
                            .map(|p| partition(p, opcode))
                            .collect::<Result<Vec<_>>>()?,
                    )),
                    _ => Err(unexpected(
                        opcode,
                        "a member that is not [name, partitions]",
                    )),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(GroupInfo {
                name: byte_string(field(&map, "name", opcode)?, opcode)?,
                generation: count(field(&map, "generation", opcode)?, opcode)?,
                members,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(b: &[u8]) -> Value {
        Value::Bulk(b.to_vec())
    }

    #[test]
    fn a_record_reply_becomes_records_and_bad_shapes_are_errors() {
        let value = Value::Array(vec![Value::Array(vec![
            Value::Integer(2),
            Value::Integer(41),
            Value::Integer(1_700_000_000_000),
            bulk(b"user-1"),
            Value::Map(vec![(bulk(b"h"), bulk(b"v"))]),
            bulk(b"payload"),
        ])]);
        assert_eq!(
            records(&value, 0x67).unwrap(),
            vec![Record {
                partition: 2,
                offset: 41,
                timestamp_ms: 1_700_000_000_000,
                key: Some(b"user-1".to_vec()),
                headers: vec![(b"h".to_vec(), b"v".to_vec())],
                value: b"payload".to_vec(),
            }]
        );
        let keyless = Value::Array(vec![Value::Array(vec![
            Value::Integer(0),
            Value::Integer(0),
            Value::Integer(1),
            Value::Null,
            Value::Array(vec![]),
            bulk(b""),
        ])]);
        assert_eq!(records(&keyless, 0x67).unwrap()[0].key, None);
        let short = Value::Array(vec![Value::Array(vec![Value::Integer(0)])]);
        assert!(records(&short, 0x67).unwrap_err().is_protocol());
        let negative = Value::Array(vec![Value::Integer(-1), Value::Integer(0)]);
        assert!(published(&negative, 0x65).is_err());
    }

    #[test]
    fn publish_join_offsets_and_lag_replies() {
        let ranges_value = Value::Array(vec![Value::Array(vec![
            Value::Integer(1),
            Value::Integer(100),
            Value::Integer(3),
        ])]);
        assert_eq!(
            ranges(&ranges_value, 0x66).unwrap(),
            vec![PublishedRange {
                partition: 1,
                base: 100,
                count: 3
            }]
        );
        let joined = Value::Array(vec![
            Value::Integer(4),
            Value::Array(vec![Value::Integer(0), Value::Integer(2)]),
        ]);
        assert_eq!(
            assignment(&joined, 0x68).unwrap(),
            Assignment {
                generation: 4,
                partitions: vec![0, 2]
            }
        );
        let committed = Value::Array(vec![
            Value::Array(vec![Value::Integer(0), Value::Integer(-1)]),
            Value::Array(vec![Value::Integer(1), Value::Integer(9)]),
        ]);
        assert_eq!(
            offsets(&committed, 0x6D).unwrap(),
            vec![(0, None), (1, Some(9))]
        );
        let lags = Value::Array(vec![Value::Array(vec![
            Value::Integer(0),
            Value::Integer(10),
            Value::Integer(-1),
            Value::Integer(10),
        ])]);
        assert_eq!(
            lag(&lags, 0x6F).unwrap(),
            vec![Lag {
                partition: 0,
                end: 10,
                committed: None,
                lag: 10
            }]
        );
        assert!(ok(&Value::Simple("NO".into()), 0x60).is_err());
    }
}
