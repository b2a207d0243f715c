//! The queue model's records in the engine's Queue namespace: their keys and values.
//!
//! | key | value |
//! |---|---|
//! | `q` name | a queue's declaration ([`QueueOptions`] and its qid) |
//! | `Q` | the next qid (qids are never reused: a deleted queue's leftover messages never join a new one) |
//! | `N` | the message-id high-water mark: ids below it may have been handed out |
//! | `m` qid (u32 BE) id (u64 BE) | one message ([`StoredMessage`]) |
//! | `x` name | an exchange's declaration (its kind) |
//! | `b` u16 BE len, exchange, u16 BE len, queue, binding | one binding (value: the binding) |
//!
//! Integers in values are little-endian; every value starts with a version byte (1).

use super::routing::HeadersMatch;
use super::QueueError;

pub const QUEUE_PREFIX: u8 = b'q';
pub const NEXT_QID_KEY: &[u8] = b"Q";
pub const HIGH_WATER_KEY: &[u8] = b"N";
pub const MESSAGE_PREFIX: u8 = b'm';
pub const EXCHANGE_PREFIX: u8 = b'x';
pub const BINDING_PREFIX: u8 = b'b';
const VERSION: u8 = 1;

/// What a full queue does with one more message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse the push (RabbitMQ's `reject-publish`).
    Reject,
    /// Drop (or dead-letter) the oldest ready message (RabbitMQ's default, `drop-head`).
    DropHead,
}

/// A queue's declared options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueOptions {
    pub durable: bool,
    pub exclusive: bool,
    /// Ready messages at most (0: no limit).
    pub max_len: u64,
    pub overflow: Overflow,
    /// Message time-to-live in ms (0: none).
    pub ttl_ms: u64,
    pub dlq: Option<Vec<u8>>,
    /// Deliveries before a message is dead-lettered (0: no limit).
    pub max_deliveries: u32,
    /// How long a delivered message may stay unacknowledged (0: forever).
    pub visibility_ms: u64,
}

/// RabbitMQ's consumer acknowledgement timeout (30 minutes) is the default visibility.
pub const DEFAULT_VISIBILITY_MS: u64 = 30 * 60 * 1000;

impl Default for QueueOptions {
    fn default() -> QueueOptions {
        QueueOptions {
            durable: true,
            exclusive: false,
            max_len: 0,
            overflow: Overflow::DropHead,
            ttl_ms: 0,
            dlq: None,
            max_deliveries: 0,
            visibility_ms: DEFAULT_VISIBILITY_MS,
        }
    }
}

/// A message as stored: everything but its id and queue (in the key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    pub priority: u8,
    /// Deliveries so far (written when a delivered message comes back).
    pub deliveries: u32,
    /// Absolute expiry in ms (0: none).
    pub expiry_ms: u64,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub payload: Vec<u8>,
}

/// An exchange's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn name(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }

    fn tag(self) -> u8 {
        self as u8
    }

    fn from_tag(tag: u8) -> Option<ExchangeKind> {
        [
            ExchangeKind::Direct,
            ExchangeKind::Fanout,
            ExchangeKind::Topic,
            ExchangeKind::Headers,
        ]
        .into_iter()
        .find(|k| k.tag() == tag)
    }
}

/// What a binding matches on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BindingRule {
    /// A binding key (direct, topic; ignored by fanout).
    Key(Vec<u8>),
    /// Header pairs, all or any.
    Headers {
        all: bool,
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
}

impl BindingRule {
    pub fn headers_mode(all: bool) -> HeadersMatch {
        if all {
            HeadersMatch::All
        } else {
            HeadersMatch::Any
        }
    }
}

pub fn queue_key(name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + name.len());
    key.push(QUEUE_PREFIX);
    key.extend_from_slice(name);
    key
}

pub fn exchange_key(name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + name.len());
    key.push(EXCHANGE_PREFIX);
    key.extend_from_slice(name);
    key
}

pub fn message_key(qid: u32, id: u64) -> [u8; 13] {
    let mut key = [0u8; 13];
    key[0] = MESSAGE_PREFIX;
    key[1..5].copy_from_slice(&qid.to_be_bytes());
    key[5..].copy_from_slice(&id.to_be_bytes());
    key
}

/// The qid and id of a message key.
pub fn parse_message_key(key: &[u8]) -> Option<(u32, u64)> {
    if key.len() != 13 || key[0] != MESSAGE_PREFIX {
        return None;
    }
    Some((
        u32::from_be_bytes(key[1..5].try_into().ok()?),
        u64::from_be_bytes(key[5..].try_into().ok()?),
    ))
}

pub fn binding_key(exchange: &[u8], queue: &[u8], rule: &BindingRule) -> Vec<u8> {
    let mut key = vec![BINDING_PREFIX];
    key.extend_from_slice(&(exchange.len() as u16).to_be_bytes());
    key.extend_from_slice(exchange);
    key.extend_from_slice(&(queue.len() as u16).to_be_bytes());
    key.extend_from_slice(queue);
    key.extend_from_slice(&encode_rule(rule));
    key
}

/// The exchange, queue and rule of a binding record.
pub fn parse_binding(key: &[u8]) -> Option<(Vec<u8>, Vec<u8>, BindingRule)> {
    let mut r = Reader::new(key.get(1..)?);
    let exchange = r.bytes16()?;
    let queue = r.bytes16()?;
    let rule = decode_rule(&mut r)?;
    Some((exchange, queue, rule))
}

fn encode_rule(rule: &BindingRule) -> Vec<u8> {
    let mut out = Vec::new();
    match rule {
        BindingRule::Key(key) => {
            out.push(0);
            put_bytes(&mut out, key);
        }
        BindingRule::Headers { all, pairs } => {
            out.push(if *all { 1 } else { 2 });
            out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
            for (k, v) in pairs {
                put_bytes(&mut out, k);
                put_bytes(&mut out, v);
            }
        }
    }
    out
}

fn decode_rule(r: &mut Reader<'_>) -> Option<BindingRule> {
    match r.u8()? {
        0 => Some(BindingRule::Key(r.bytes()?)),
        mode @ (1 | 2) => {
            let count = r.u32()? as usize;
            let mut pairs = Vec::with_capacity(count.min(1024));
            for _ in 0..count {
                pairs.push((r.bytes()?, r.bytes()?));
            }
            Some(BindingRule::Headers {
                all: mode == 1,
                pairs,
            })
        }
        _ => None,
    }
}

pub fn encode_queue(qid: u32, options: &QueueOptions) -> Vec<u8> {
    let mut out = vec![VERSION];
    out.extend_from_slice(&qid.to_le_bytes());
    out.push(options.durable as u8 | (options.exclusive as u8) << 1);
    out.extend_from_slice(&options.max_len.to_le_bytes());
    out.push(match options.overflow {
        Overflow::Reject => 0,
        Overflow::DropHead => 1,
    });
    out.extend_from_slice(&options.ttl_ms.to_le_bytes());
    match &options.dlq {
        Some(dlq) => {
            out.push(1);
            put_bytes(&mut out, dlq);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&options.max_deliveries.to_le_bytes());
    out.extend_from_slice(&options.visibility_ms.to_le_bytes());
    out
}

pub fn decode_queue(value: &[u8]) -> Result<(u32, QueueOptions), QueueError> {
    let corrupt = || QueueError::Corrupt("queue declaration".into());
    let mut r = Reader::new(value);
    (r.u8() == Some(VERSION))
        .then_some(())
        .ok_or_else(corrupt)?;
    let parse = |r: &mut Reader<'_>| -> Option<(u32, QueueOptions)> {
        let qid = r.u32()?;
        let flags = r.u8()?;
        let max_len = r.u64()?;
        let overflow = match r.u8()? {
            0 => Overflow::Reject,
            _ => Overflow::DropHead,
        };
        let ttl_ms = r.u64()?;
        let dlq = match r.u8()? {
            1 => Some(r.bytes()?),
            _ => None,
        };
        Some((
            qid,
            QueueOptions {
                durable: flags & 1 != 0,
                exclusive: flags & 2 != 0,
                max_len,
                overflow,
                ttl_ms,
                dlq,
                max_deliveries: r.u32()?,
                visibility_ms: r.u64()?,
            },
        ))
    };
    parse(&mut r).ok_or_else(corrupt)
}

pub fn encode_exchange(kind: ExchangeKind) -> Vec<u8> {
    vec![VERSION, kind.tag()]
}

pub fn decode_exchange(value: &[u8]) -> Option<ExchangeKind> {
    match value {
        [VERSION, tag] => ExchangeKind::from_tag(*tag),
        _ => None,
    }
}

pub fn encode_message(message: &StoredMessage) -> Vec<u8> {
    let headers: usize = message
        .headers
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len())
        .sum();
    let mut out = Vec::with_capacity(18 + headers + message.payload.len());
    out.push(VERSION);
    out.push(message.priority);
    out.extend_from_slice(&message.deliveries.to_le_bytes());
    out.extend_from_slice(&message.expiry_ms.to_le_bytes());
    out.extend_from_slice(&(message.headers.len() as u32).to_le_bytes());
    for (k, v) in &message.headers {
        put_bytes(&mut out, k);
        put_bytes(&mut out, v);
    }
    out.extend_from_slice(&message.payload);
    out
}

/// Offset of the deliveries field in a message value (rewritten when a message comes back).
pub const DELIVERIES_OFFSET: usize = 2;

pub fn decode_message(value: &[u8]) -> Result<StoredMessage, QueueError> {
    let mut r = Reader::new(value);
    let parse = |r: &mut Reader<'_>| -> Option<StoredMessage> {
        if r.u8()? != VERSION {
            return None;
        }
        let priority = r.u8()?;
        let deliveries = r.u32()?;
        let expiry_ms = r.u64()?;
        let count = r.u32()? as usize;
        let mut headers = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            headers.push((r.bytes()?, r.bytes()?));
        }
        Some(StoredMessage {
            priority,
            deliveries,
            expiry_ms,
            headers,
            payload: r.rest().to_vec(),
        })
    };
    parse(&mut r).ok_or_else(|| QueueError::Corrupt("message".into()))
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let len = self.u32()? as usize;
        Some(self.take(len)?.to_vec())
    }

    fn bytes16(&mut self) -> Option<Vec<u8>> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().ok()?) as usize;
        Some(self.take(len)?.to_vec())
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let options = QueueOptions {
            durable: true,
            exclusive: false,
            max_len: 7,
            overflow: Overflow::Reject,
            ttl_ms: 1500,
            dlq: Some(b"dead".to_vec()),
            max_deliveries: 3,
            visibility_ms: 250,
        };
        assert_eq!(
            decode_queue(&encode_queue(9, &options)).unwrap(),
            (9, options)
        );
        let message = StoredMessage {
            priority: 7,
            deliveries: 2,
            expiry_ms: 123,
            headers: vec![(b"k".to_vec(), b"".to_vec()), (b"".to_vec(), b"v".to_vec())],
            payload: b"payload\0bytes".to_vec(),
        };
        let value = encode_message(&message);
        assert_eq!(decode_message(&value).unwrap(), message);
        assert_eq!(
            value[DELIVERIES_OFFSET..DELIVERIES_OFFSET + 4],
            2u32.to_le_bytes()
        );
        assert!(decode_message(&value[..10]).is_err());
        assert_eq!(
            parse_message_key(&message_key(3, 1 << 40)),
            Some((3, 1 << 40))
        );
        let rule = BindingRule::Headers {
            all: false,
            pairs: vec![(b"a".to_vec(), b"1".to_vec())],
        };
        assert_eq!(
            parse_binding(&binding_key(b"ex", b"q\0", &rule)),
            Some((b"ex".to_vec(), b"q\0".to_vec(), rule))
        );
        for kind in [
            ExchangeKind::Direct,
            ExchangeKind::Fanout,
            ExchangeKind::Topic,
            ExchangeKind::Headers,
        ] {
            assert_eq!(decode_exchange(&encode_exchange(kind)), Some(kind));
        }
    }
}
