//! Queue replies: from the typed value a queue row answers with to what a method returns.
//! Each function checks the value's whole shape (types, counts, ranges), so a server that
//! answers something else gives a [`ProtocolError`] naming what was wrong, never a panic or
//! a silently wrong message. Pure functions of a [`Value`], unit-tested with hand-built ones.

use std::time::Duration;

use super::{Binding, ExchangeBinding, HeadersMatch, Message, Overflow, QueueInfo};
use crate::binary::Value;
use crate::client::error::{Error, ProtocolError, Result};

/// Highest priority a message can have (QUEUE.PUSH's PRIORITY 0-9).
pub const PRIORITY_MAX: u8 = 9;

/// Fields of a message in a POP or BPOP reply: id, payload, priority, deliveries, headers.
const MESSAGE_FIELDS: usize = 5;

/// The word a message push starts with.
const MESSAGE_PUSH: &[u8] = b"message";

pub(crate) fn unexpected(opcode: u8, what: &'static str) -> Error {
    Error::Protocol(ProtocolError::UnexpectedValue { opcode, what })
}

/// The simple `OK` of DECLARE, SUBSCRIBE, BIND and the like.
pub(crate) fn ok(value: &Value, opcode: u8) -> Result<()> {
    match value {
        Value::Simple(text) if text == "OK" => Ok(()),
        _ => Err(unexpected(opcode, "a reply other than OK")),
    }
}

/// QUEUE.UNSUBSCRIBE: the count of subscriptions ended (docs/commands.md), or the `OK` the
/// queue spec first gave it; either means done.
pub(crate) fn ok_or_count(value: &Value, opcode: u8) -> Result<()> {
    match value {
        Value::Integer(_) => count(value, opcode).map(|_| ()),
        _ => ok(value, opcode),
    }
}

/// A non-negative integer: a count, a message id.
pub(crate) fn count(value: &Value, opcode: u8) -> Result<u64> {
    match value {
        Value::Integer(n) => u64::try_from(*n).map_err(|_| unexpected(opcode, "a negative count")),
        _ => Err(unexpected(opcode, "a non-integer where a count was due")),
    }
}

/// EXCHANGE.UNBIND: 1 if the binding was there, 0 if not.
pub(crate) fn flag(value: &Value, opcode: u8) -> Result<bool> {
    match count(value, opcode)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(unexpected(opcode, "a count above 1 for one binding")),
    }
}

pub(crate) fn items(value: &Value, opcode: u8) -> Result<&[Value]> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        _ => Err(unexpected(opcode, "a non-array where an array was due")),
    }
}

pub(crate) fn byte_string(value: &Value, opcode: u8) -> Result<Vec<u8>> {
    value
        .as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| unexpected(opcode, "a non-string where a string was due"))
}

/// QUEUE.LIST, EXCHANGE.LIST: names.
pub(crate) fn names(value: &Value, opcode: u8) -> Result<Vec<Vec<u8>>> {
    items(value, opcode)?
        .iter()
        .map(|name| byte_string(name, opcode))
        .collect()
}

/// QUEUE.MPUSH: one id per payload sent.
pub(crate) fn ids(value: &Value, opcode: u8, expected: usize) -> Result<Vec<u64>> {
    let items = items(value, opcode)?;
    if items.len() != expected {
        return Err(unexpected(opcode, "a number of ids other than of payloads"));
    }
    items.iter().map(|id| count(id, opcode)).collect()
}

/// Header pairs: a map (RESP3, and every binary reply) or a flat array k v k v (RESP2's
/// shape, accepted so a proxy that flattened maps is understood).
pub(crate) fn headers(value: &Value, opcode: u8) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    match value {
        Value::Map(pairs) => pairs
            .iter()
            .map(|(key, value)| Ok((byte_string(key, opcode)?, byte_string(value, opcode)?)))
            .collect(),
        Value::Array(flat) if flat.len() % 2 == 0 => flat
            .chunks_exact(2)
            .map(|pair| {
                Ok((
                    byte_string(&pair[0], opcode)?,
                    byte_string(&pair[1], opcode)?,
                ))
            })
            .collect(),
        _ => Err(unexpected(opcode, "headers that are not a map")),
    }
}

/// One message from its five fields: id, payload, priority, deliveries, headers.
fn message_fields(fields: &[Value], opcode: u8) -> Result<Message> {
    let [id, payload, priority, deliveries, headers_value] = fields else {
        return Err(unexpected(opcode, "a message that is not 5 fields"));
    };
    let priority = count(priority, opcode)?;
    if priority > u64::from(PRIORITY_MAX) {
        return Err(unexpected(opcode, "a message priority above 9"));
    }
    let Value::Bulk(payload) = payload else {
        return Err(unexpected(opcode, "a message payload that is not bulk"));
    };
    let deliveries = u32::try_from(count(deliveries, opcode)?)
        .map_err(|_| unexpected(opcode, "a delivery count above u32"))?;
    Ok(Message {
        id: count(id, opcode)?,
        payload: payload.clone(),
        priority: priority as u8,
        deliveries,
        headers: headers(headers_value, opcode)?,
    })
}

/// QUEUE.POP: the messages (none when the queue had none ready).
pub(crate) fn messages(value: &Value, opcode: u8) -> Result<Vec<Message>> {
    items(value, opcode)?
        .iter()
        .map(|message| {
            let fields = items(message, opcode)?;
            if fields.len() != MESSAGE_FIELDS {
                return Err(unexpected(opcode, "a message that is not 5 fields"));
            }
            message_fields(fields, opcode)
        })
        .collect()
}

/// QUEUE.BPOP: the messages, `None` when the wait timed out.
pub(crate) fn optional_messages(value: &Value, opcode: u8) -> Result<Option<Vec<Message>>> {
    match value {
        Value::Null => Ok(None),
        _ => messages(value, opcode).map(Some),
    }
}

/// A message push: `["message", queue, id, payload, priority, deliveries, headers]`.
/// Returns the queue it came from and the message.
pub(crate) fn pushed_message(value: &Value, opcode: u8) -> Result<(Vec<u8>, Message)> {
    let Value::Array(items) = value else {
        return Err(unexpected(opcode, "a push that is not an array"));
    };
    let [kind, queue, fields @ ..] = &items[..] else {
        return Err(unexpected(opcode, "a push shorter than a message"));
    };
    if kind.as_bytes() == Some(b"cancelled") {
        // ["cancelled", queue]: the server ended the subscription (its queue was deleted).
        return Err(unexpected(
            opcode,
            "a \"cancelled\" push: the subscription's queue was deleted",
        ));
    }
    if kind.as_bytes() != Some(MESSAGE_PUSH) {
        return Err(unexpected(opcode, "a push other than \"message\""));
    }
    if fields.len() != MESSAGE_FIELDS {
        return Err(unexpected(opcode, "a message push that is not 7 items"));
    }
    Ok((byte_string(queue, opcode)?, message_fields(fields, opcode)?))
}

/// QUEUE.INFO's map, looked up by field name.
struct InfoMap<'v> {
    pairs: &'v [(Value, Value)],
    opcode: u8,
}

impl<'v> InfoMap<'v> {
    fn get(&self, field: &'static str) -> Result<&'v Value> {
        self.pairs
            .iter()
            .find(|(key, _)| key.as_bytes() == Some(field.as_bytes()))
            .map(|(_, value)| value)
            .ok_or(Error::Protocol(ProtocolError::MissingField {
                opcode: self.opcode,
                field,
            }))
    }

    fn count(&self, field: &'static str) -> Result<u64> {
        count(self.get(field)?, self.opcode)
    }

    /// A limit where 0 (or null) means none: MAXLEN, TTL, MAXDELIVERIES, VISIBILITY.
    fn limit(&self, field: &'static str) -> Result<Option<u64>> {
        match self.get(field)? {
            Value::Null => Ok(None),
            value => Ok(Some(count(value, self.opcode)?).filter(|n| *n > 0)),
        }
    }

    fn duration(&self, field: &'static str) -> Result<Option<Duration>> {
        Ok(self.limit(field)?.map(Duration::from_millis))
    }

    /// A RESP3 boolean, or RESP2's integer 0/1.
    fn flag(&self, field: &'static str) -> Result<bool> {
        match self.get(field)? {
            Value::Boolean(flag) => Ok(*flag),
            Value::Integer(0) => Ok(false),
            Value::Integer(1) => Ok(true),
            _ => Err(unexpected(
                self.opcode,
                "a QUEUE.INFO flag that is not boolean",
            )),
        }
    }

    fn overflow(&self) -> Result<Overflow> {
        let value = self.get("overflow")?;
        if *value == Value::Null {
            return Ok(Overflow::DropHead);
        }
        let word = value.as_bytes().unwrap_or_default();
        if word.eq_ignore_ascii_case(b"reject") {
            Ok(Overflow::Reject)
        } else if word.eq_ignore_ascii_case(b"drophead") {
            Ok(Overflow::DropHead)
        } else {
            Err(unexpected(
                self.opcode,
                "an overflow other than reject or drophead",
            ))
        }
    }

    fn dlq(&self) -> Result<Option<Vec<u8>>> {
        match self.get("dlq")? {
            Value::Null => Ok(None),
            value => Ok(Some(byte_string(value, self.opcode)?).filter(|name| !name.is_empty())),
        }
    }
}

/// QUEUE.INFO: a map with the queue's options and counters. Fields the client does not know
/// are ignored (a newer server may add some); a missing one is a protocol error naming it.
pub(crate) fn info(value: &Value, opcode: u8) -> Result<QueueInfo> {
    let Value::Map(pairs) = value else {
        return Err(unexpected(opcode, "a QUEUE.INFO reply that is not a map"));
    };
    let map = InfoMap { pairs, opcode };
    let max_deliveries = match map.limit("maxdeliveries")? {
        Some(n) => {
            Some(u32::try_from(n).map_err(|_| unexpected(opcode, "maxdeliveries above u32"))?)
        }
        None => None,
    };
    Ok(QueueInfo {
        name: byte_string(map.get("name")?, opcode)?,
        durable: map.flag("durable")?,
        exclusive: map.flag("exclusive")?,
        max_len: map.limit("maxlen")?,
        overflow: map.overflow()?,
        ttl: map.duration("ttl")?,
        dlq: map.dlq()?,
        max_deliveries,
        visibility: map.duration("visibility")?,
        ready: map.count("ready")?,
        in_flight: map.count("inflight")?,
        consumers: map.count("consumers")?,
        pushed: map.count("pushed")?,
        delivered: map.count("delivered")?,
        acked: map.count("acked")?,
        dead_lettered: map.count("deadlettered")?,
    })
}

/// EXCHANGE.BINDINGS: `[queue, key]` or `[queue, "HEADERS", "ALL"|"ANY", k, v, ...]` each.
pub(crate) fn bindings(value: &Value, opcode: u8) -> Result<Vec<ExchangeBinding>> {
    items(value, opcode)?
        .iter()
        .map(|entry| {
            let entry = items(entry, opcode)?;
            let queue = entry
                .first()
                .ok_or_else(|| unexpected(opcode, "an empty binding"))?;
            let queue = byte_string(queue, opcode)?;
            let binding = match &entry[1..] {
                [key] => Binding::Key(byte_string(key, opcode)?),
                [headers_word, matching, pairs @ ..]
                    if headers_word
                        .as_bytes()
                        .is_some_and(|word| word.eq_ignore_ascii_case(b"HEADERS"))
                        && pairs.len() % 2 == 0 =>
                {
                    let matching = match matching.as_bytes() {
                        Some(word) if word.eq_ignore_ascii_case(b"ALL") => HeadersMatch::All,
                        Some(word) if word.eq_ignore_ascii_case(b"ANY") => HeadersMatch::Any,
                        _ => return Err(unexpected(opcode, "a headers binding not ALL or ANY")),
                    };
                    let headers = pairs
                        .chunks_exact(2)
                        .map(|pair| {
                            Ok((
                                byte_string(&pair[0], opcode)?,
                                byte_string(&pair[1], opcode)?,
                            ))
                        })
                        .collect::<Result<_>>()?;
                    Binding::Headers { matching, headers }
                }
                _ => return Err(unexpected(opcode, "a binding of another shape")),
            };
            Ok(ExchangeBinding { queue, binding })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPCODE: u8 = 0x48;

    fn bulk(bytes: &str) -> Value {
        Value::Bulk(bytes.as_bytes().to_vec())
    }

    fn header_map(pairs: &[(&str, &str)]) -> Value {
        Value::Map(pairs.iter().map(|(k, v)| (bulk(k), bulk(v))).collect())
    }

    fn message_value(id: i64, payload: &str, priority: i64, deliveries: i64) -> Vec<Value> {
        vec![
            Value::Integer(id),
            bulk(payload),
            Value::Integer(priority),
            Value::Integer(deliveries),
            header_map(&[("trace", "abc")]),
        ]
    }

    fn protocol_what(error: Error) -> String {
        match error {
            Error::Protocol(error) => error.to_string(),
            other => panic!("not a protocol error: {other:?}"),
        }
    }

    #[test]
    fn scalars() {
        assert!(ok(&Value::Simple("OK".into()), OPCODE).is_ok());
        assert!(ok(&Value::Simple("QUEUED".into()), OPCODE).is_err());
        assert!(ok(&Value::Integer(1), OPCODE).is_err());
        assert_eq!(count(&Value::Integer(42), OPCODE).unwrap(), 42);
        assert!(
            protocol_what(count(&Value::Integer(-1), OPCODE).unwrap_err()).contains("negative")
        );
        assert!(count(&bulk("42"), OPCODE).is_err());
        assert!(flag(&Value::Integer(1), OPCODE).unwrap());
        assert!(!flag(&Value::Integer(0), OPCODE).unwrap());
        assert!(flag(&Value::Integer(2), OPCODE).is_err());
        assert!(ok_or_count(&Value::Simple("OK".into()), OPCODE).is_ok());
        assert!(ok_or_count(&Value::Integer(0), OPCODE).is_ok());
        assert!(ok_or_count(&Value::Integer(-1), OPCODE).is_err());
        assert!(ok_or_count(&Value::Null, OPCODE).is_err());
    }

    #[test]
    fn names_and_ids() {
        let list = Value::Array(vec![bulk("a"), Value::Simple("b".into())]);
        assert_eq!(
            names(&list, OPCODE).unwrap(),
            [b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(
            names(&Value::Array(vec![]), OPCODE).unwrap(),
            Vec::<Vec<u8>>::new()
        );
        assert!(names(&Value::Array(vec![Value::Integer(1)]), OPCODE).is_err());
        assert!(names(&Value::Null, OPCODE).is_err());
        let batch = Value::Array(vec![Value::Integer(7), Value::Integer(8)]);
        assert_eq!(ids(&batch, OPCODE, 2).unwrap(), [7, 8]);
        assert!(protocol_what(ids(&batch, OPCODE, 3).unwrap_err()).contains("ids"));
    }

    #[test]
    fn pop_replies() {
        let reply = Value::Array(vec![
            Value::Array(message_value(1, "first", 9, 1)),
            Value::Array(message_value(2, "", 0, 3)),
        ]);
        let popped = messages(&reply, OPCODE).unwrap();
        assert_eq!(
            popped[0],
            Message {
                id: 1,
                payload: b"first".to_vec(),
                priority: 9,
                deliveries: 1,
                headers: vec![(b"trace".to_vec(), b"abc".to_vec())],
            }
        );
        assert_eq!((popped[1].id, popped[1].deliveries), (2, 3));
        assert!(popped[1].payload.is_empty());
        assert_eq!(messages(&Value::Array(vec![]), OPCODE).unwrap(), vec![]);
        // BPOP: null is a timeout, an array the messages.
        assert_eq!(optional_messages(&Value::Null, OPCODE).unwrap(), None);
        assert_eq!(optional_messages(&reply, OPCODE).unwrap().unwrap().len(), 2);
        // RESP2-shaped headers (a flat array) are understood too.
        let mut flat = message_value(3, "x", 1, 1);
        flat[4] = Value::Array(vec![bulk("k"), bulk("v")]);
        let popped = messages(&Value::Array(vec![Value::Array(flat)]), OPCODE).unwrap();
        assert_eq!(popped[0].headers, [(b"k".to_vec(), b"v".to_vec())]);
    }

    #[test]
    fn malformed_messages_are_protocol_errors() {
        let bad = |fields: Vec<Value>| {
            protocol_what(messages(&Value::Array(vec![Value::Array(fields)]), OPCODE).unwrap_err())
        };
        assert!(bad(message_value(1, "p", 10, 1)).contains("priority above 9"));
        assert!(bad(message_value(1, "p", -1, 1)).contains("negative"));
        assert!(bad(message_value(-5, "p", 1, 1)).contains("negative"));
        assert!(bad(message_value(1, "p", 1, 1 << 40)).contains("u32"));
        assert!(bad(message_value(1, "p", 1, 1)[..4].to_vec()).contains("5 fields"));
        let mut text_payload = message_value(1, "p", 1, 1);
        text_payload[1] = Value::Integer(3);
        assert!(bad(text_payload).contains("payload"));
        let mut odd_headers = message_value(1, "p", 1, 1);
        odd_headers[4] = Value::Array(vec![bulk("k")]);
        assert!(bad(odd_headers).contains("headers"));
        assert!(messages(&Value::Array(vec![Value::Null]), OPCODE).is_err());
        assert!(optional_messages(&Value::Integer(0), OPCODE).is_err());
    }

    #[test]
    fn message_pushes() {
        let mut push = vec![bulk("message"), bulk("jobs")];
        push.extend(message_value(11, "work", 4, 2));
        let (queue, message) = pushed_message(&Value::Array(push.clone()), 0x4C).unwrap();
        assert_eq!(queue, b"jobs");
        assert_eq!(
            (
                message.id,
                &message.payload[..],
                message.priority,
                message.deliveries
            ),
            (11, &b"work"[..], 4, 2)
        );
        // "message" as a simple string is the same word.
        push[0] = Value::Simple("message".into());
        assert!(pushed_message(&Value::Array(push.clone()), 0x4C).is_ok());
        push[0] = bulk("subscribe");
        assert!(
            protocol_what(pushed_message(&Value::Array(push.clone()), 0x4C).unwrap_err())
                .contains("other than")
        );
        push[0] = bulk("message");
        push.pop();
        assert!(
            protocol_what(pushed_message(&Value::Array(push), 0x4C).unwrap_err())
                .contains("7 items")
        );
        assert!(pushed_message(&Value::Array(vec![bulk("message")]), 0x4C).is_err());
        assert!(pushed_message(&bulk("message"), 0x4C).is_err());
    }

    fn info_pairs() -> Vec<(Value, Value)> {
        let field = |name: &str, value: Value| (bulk(name), value);
        vec![
            field("name", bulk("jobs")),
            field("durable", Value::Boolean(true)),
            field("exclusive", Value::Integer(0)),
            field("maxlen", Value::Integer(1000)),
            field("overflow", bulk("reject")),
            field("ttl", Value::Integer(0)),
            field("dlq", bulk("jobs.dead")),
            field("maxdeliveries", Value::Integer(5)),
            field("visibility", Value::Integer(30_000)),
            field("ready", Value::Integer(10)),
            field("inflight", Value::Integer(2)),
            field("consumers", Value::Integer(1)),
            field("pushed", Value::Integer(20)),
            field("delivered", Value::Integer(12)),
            field("acked", Value::Integer(8)),
            field("deadlettered", Value::Integer(1)),
            field("some-future-field", Value::Double(1.5)),
        ]
    }

    #[test]
    fn queue_info() {
        let parsed = info(&Value::Map(info_pairs()), 0x45).unwrap();
        assert_eq!(
            parsed,
            QueueInfo {
                name: b"jobs".to_vec(),
                durable: true,
                exclusive: false,
                max_len: Some(1000),
                overflow: Overflow::Reject,
                ttl: None,
                dlq: Some(b"jobs.dead".to_vec()),
                max_deliveries: Some(5),
                visibility: Some(Duration::from_secs(30)),
                ready: 10,
                in_flight: 2,
                consumers: 1,
                pushed: 20,
                delivered: 12,
                acked: 8,
                dead_lettered: 1,
            }
        );
        // Nulls for the unset options.
        let mut pairs = info_pairs();
        for (key, value) in &mut pairs {
            if matches!(
                key.as_bytes(),
                Some(b"maxlen" | b"overflow" | b"dlq" | b"visibility")
            ) {
                *value = Value::Null;
            }
        }
        let parsed = info(&Value::Map(pairs), 0x45).unwrap();
        assert_eq!(parsed.max_len, None);
        assert_eq!(parsed.overflow, Overflow::DropHead);
        assert_eq!(parsed.dlq, None);
        assert_eq!(parsed.visibility, None);
    }

    #[test]
    fn malformed_queue_info() {
        let without = |field: &str| {
            let pairs = info_pairs()
                .into_iter()
                .filter(|(key, _)| key.as_bytes() != Some(field.as_bytes()))
                .collect();
            protocol_what(info(&Value::Map(pairs), 0x45).unwrap_err())
        };
        assert_eq!(
            without("inflight"),
            "no field 'inflight' in the response to opcode 0x45"
        );
        assert!(without("name").contains("'name'"));
        let with = |field: &str, value: Value| {
            let mut pairs = info_pairs();
            for (key, old) in &mut pairs {
                if key.as_bytes() == Some(field.as_bytes()) {
                    *old = value.clone();
                }
            }
            info(&Value::Map(pairs), 0x45)
        };
        assert!(with("durable", Value::Integer(2)).is_err());
        assert!(with("overflow", bulk("sideways")).is_err());
        assert!(with("ready", Value::Integer(-1)).is_err());
        assert!(with("maxdeliveries", Value::Integer(1 << 40)).is_err());
        assert_eq!(
            with("overflow", Value::Simple("DROPHEAD".into()))
                .unwrap()
                .overflow,
            Overflow::DropHead
        );
        assert!(info(&Value::Array(vec![]), 0x45).is_err());
    }

    #[test]
    fn exchange_bindings() {
        let reply = Value::Array(vec![
            Value::Array(vec![bulk("q1"), bulk("orders.#")]),
            Value::Array(vec![
                bulk("q2"),
                bulk("HEADERS"),
                bulk("ANY"),
                bulk("format"),
                bulk("pdf"),
            ]),
            Value::Array(vec![bulk("q3"), bulk("HEADERS"), bulk("ALL")]),
        ]);
        assert_eq!(
            bindings(&reply, 0x55).unwrap(),
            [
                ExchangeBinding {
                    queue: b"q1".to_vec(),
                    binding: Binding::key("orders.#"),
                },
                ExchangeBinding {
                    queue: b"q2".to_vec(),
                    binding: Binding::headers(HeadersMatch::Any, [("format", "pdf")]),
                },
                ExchangeBinding {
                    queue: b"q3".to_vec(),
                    binding: Binding::Headers {
                        matching: HeadersMatch::All,
                        headers: vec![],
                    },
                },
            ]
        );
        let bad = |entry: Vec<Value>| bindings(&Value::Array(vec![Value::Array(entry)]), 0x55);
        assert!(bad(vec![]).is_err());
        assert!(bad(vec![bulk("q")]).is_err());
        assert!(bad(vec![bulk("q"), bulk("HEADERS"), bulk("SOME")]).is_err());
        assert!(bad(vec![bulk("q"), bulk("HEADERS"), bulk("ALL"), bulk("k")]).is_err());
        assert!(bad(vec![bulk("q"), bulk("k"), bulk("extra")]).is_err());
    }
}
