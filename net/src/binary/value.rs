//! Typed values: the body of a table command's response and of a push frame.
//!
//! A value is a tag byte and its payload; aggregates hold further values, so one body can
//! carry what a RESP3 reply carries (`docs/protocol.md` draws every tag):
//!
//! ```text
//! tag   type          payload
//! 0x00  null          -
//! 0x01  simple        bytes (UTF-8 text)
//! 0x02  error         bytes (UTF-8 text, starts with its code: "ERR ...")
//! 0x03  integer       i64
//! 0x04  bulk          bytes
//! 0x05  array         u32 count, count values
//! 0x06  map           u32 count, count (key value, value value) pairs
//! 0x07  set           u32 count, count values
//! 0x08  double        f64 (IEEE 754 bits, little-endian)
//! 0x09  boolean       u8 0 or 1
//! 0x0A  verbatim      3 bytes format ("txt", "mkd"), then bytes text
//! 0x0B  big number    bytes (ASCII decimal digits, optional leading '-')
//! ```
//!
//! [`ValueWriter`] appends values (the server side, with the method names of
//! [`crate::resp::Reply`] so a reply tree is written the same way in both protocols);
//! [`decode_value`] reads one body into a [`Value`] (the client side). The decoder trusts
//! nothing: it checks every length against the bytes present before it allocates, refuses a
//! count larger than the bytes left (every value takes at least one byte, so a claimed count
//! never drives an allocation larger than the body), and stops at [`MAX_VALUE_DEPTH`] levels
//! of nesting, so hostile bytes give an error, never a panic or a stack overflow.

use super::frame::BodyReader;
use crate::error::{Error, Result};

/// Tag bytes, one per type.
pub mod tag {
    /// No value (RESP's null bulk string and null array alike).
    pub const NULL: u8 = 0x00;
    /// A short status text (`OK`, `QUEUED`).
    pub const SIMPLE: u8 = 0x01;
    /// An error inside an aggregate (an EXEC reply); a top-level error is a status instead.
    pub const ERROR: u8 = 0x02;
    /// A signed 64-bit integer.
    pub const INTEGER: u8 = 0x03;
    /// A byte string.
    pub const BULK: u8 = 0x04;
    /// An ordered list of values.
    pub const ARRAY: u8 = 0x05;
    /// Key-value pairs.
    pub const MAP: u8 = 0x06;
    /// Unordered distinct values.
    pub const SET: u8 = 0x07;
    /// A 64-bit float.
    pub const DOUBLE: u8 = 0x08;
    /// True or false.
    pub const BOOLEAN: u8 = 0x09;
    /// Text with a three-letter format.
    pub const VERBATIM: u8 = 0x0A;
    /// An integer too large for 64 bits, as decimal digits.
    pub const BIG_NUMBER: u8 = 0x0B;
}

/// Deepest nesting of aggregates a decoder accepts (an array in an array ... 64 levels).
/// Deep enough for any reply a command builds (EXEC of arrays of arrays), shallow enough that
/// the recursive decoder's stack stays small.
pub const MAX_VALUE_DEPTH: usize = 64;

/// A decoded value. Text types hold `String`s: the decoder refuses text that is not UTF-8.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value.
    Null,
    /// A status text (`OK`).
    Simple(String),
    /// An error inside an aggregate; starts with its code (`ERR ...`, `WRONGTYPE ...`).
    Error(String),
    /// An integer.
    Integer(i64),
    /// A byte string.
    Bulk(Vec<u8>),
    /// An ordered list.
    Array(Vec<Value>),
    /// Key-value pairs, in the order sent.
    Map(Vec<(Value, Value)>),
    /// Unordered distinct values, in the order sent.
    Set(Vec<Value>),
    /// A float.
    Double(f64),
    /// A boolean.
    Boolean(bool),
    /// Text with its three-letter format (`txt`).
    Verbatim {
        /// `txt`, `mkd`, ...
        format: [u8; 3],
        /// The text.
        text: String,
    },
    /// Decimal digits of an integer outside 64 bits.
    BigNumber(String),
}

impl Value {
    /// The bytes of a bulk, simple or verbatim value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(bytes) => Some(bytes),
            Value::Simple(text) | Value::Verbatim { text, .. } => Some(text.as_bytes()),
            _ => None,
        }
    }

    /// The integer of an integer value.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Value::Integer(value) => Some(*value),
            _ => None,
        }
    }
}

/// Appends typed values to a buffer (a response or push body).
pub struct ValueWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> ValueWriter<'a> {
    /// A writer that appends to `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        ValueWriter { out }
    }

    fn bytes_field(&mut self, bytes: &[u8]) {
        // A value over 4 GiB cannot be in a body whose length is a u32; `FrameWriter::finish`
        // refuses the frame, so the length written here never reaches a peer.
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.out.extend_from_slice(&len.to_le_bytes());
        self.out.extend_from_slice(bytes);
    }

    fn header(&mut self, tag: u8, count: usize) {
        self.out.push(tag);
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        self.out.extend_from_slice(&count.to_le_bytes());
    }

    /// Null.
    pub fn null(&mut self) {
        self.out.push(tag::NULL);
    }

    /// A status text.
    pub fn simple(&mut self, text: &str) {
        self.out.push(tag::SIMPLE);
        self.bytes_field(text.as_bytes());
    }

    /// An error inside an aggregate.
    pub fn error(&mut self, text: &str) {
        self.out.push(tag::ERROR);
        self.bytes_field(text.as_bytes());
    }

    /// An integer.
    pub fn integer(&mut self, value: i64) {
        self.out.push(tag::INTEGER);
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    /// A byte string.
    pub fn bulk(&mut self, value: &[u8]) {
        self.out.push(tag::BULK);
        self.bytes_field(value);
    }

    /// Starts an array of `len` values; write them next.
    pub fn array(&mut self, len: usize) {
        self.header(tag::ARRAY, len);
    }

    /// Starts a map of `len` pairs; write key, value, key, value... next.
    pub fn map(&mut self, len: usize) {
        self.header(tag::MAP, len);
    }

    /// Starts a set of `len` values.
    pub fn set(&mut self, len: usize) {
        self.header(tag::SET, len);
    }

    /// A float (all 64 bits, so NaN payloads and -0.0 survive).
    pub fn double(&mut self, value: f64) {
        self.out.push(tag::DOUBLE);
        self.out.extend_from_slice(&value.to_bits().to_le_bytes());
    }

    /// A boolean.
    pub fn boolean(&mut self, value: bool) {
        self.out.push(tag::BOOLEAN);
        self.out.push(value as u8);
    }

    /// Text with a three-letter format.
    pub fn verbatim(&mut self, format: &[u8; 3], text: &[u8]) {
        self.out.push(tag::VERBATIM);
        self.out.extend_from_slice(format);
        self.bytes_field(text);
    }

    /// An integer beyond 64 bits, as its decimal digits.
    pub fn big_number(&mut self, digits: &str) {
        self.out.push(tag::BIG_NUMBER);
        self.bytes_field(digits.as_bytes());
    }

    /// A whole decoded value (tests, proxies).
    pub fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.null(),
            Value::Simple(text) => self.simple(text),
            Value::Error(text) => self.error(text),
            Value::Integer(n) => self.integer(*n),
            Value::Bulk(bytes) => self.bulk(bytes),
            Value::Array(items) => {
                self.array(items.len());
                items.iter().for_each(|item| self.value(item));
            }
            Value::Map(pairs) => {
                self.map(pairs.len());
                for (key, item) in pairs {
                    self.value(key);
                    self.value(item);
                }
            }
            Value::Set(items) => {
                self.set(items.len());
                items.iter().for_each(|item| self.value(item));
            }
            Value::Double(x) => self.double(*x),
            Value::Boolean(b) => self.boolean(*b),
            Value::Verbatim { format, text } => self.verbatim(format, text.as_bytes()),
            Value::BigNumber(digits) => self.big_number(digits),
        }
    }
}

/// Decodes a body that holds exactly one value.
pub fn decode_value(body: &[u8]) -> Result<Value> {
    let mut reader = BodyReader::new(body);
    let value = read_value(&mut reader, 0)?;
    reader.finish()?;
    Ok(value)
}

fn read_value(reader: &mut BodyReader<'_>, depth: usize) -> Result<Value> {
    let offset = reader.offset();
    let tag = reader.u8("tag")?;
    Ok(match tag {
        tag::NULL => Value::Null,
        tag::SIMPLE => Value::Simple(read_text(reader, "simple")?),
        tag::ERROR => Value::Error(read_text(reader, "error")?),
        tag::INTEGER => Value::Integer(reader.i64("integer")?),
        tag::BULK => Value::Bulk(reader.bytes("bulk")?.to_vec()),
        tag::ARRAY | tag::SET | tag::MAP => {
            if depth >= MAX_VALUE_DEPTH {
                return Err(Error::ValueTooDeep {
                    limit: MAX_VALUE_DEPTH,
                    offset,
                });
            }
            let count = reader.u32("count")? as usize;
            // Every value takes at least one byte (a map pair two): a count above the bytes
            // left is a lie, refused before anything is allocated for it.
            let per_item = if tag == tag::MAP { 2 } else { 1 };
            if count.saturating_mul(per_item) > reader.rest_view().len() {
                return Err(Error::Truncated {
                    field: "count",
                    offset,
                });
            }
            if tag == tag::MAP {
                let mut pairs = Vec::with_capacity(count);
                for _ in 0..count {
                    let key = read_value(reader, depth + 1)?;
                    pairs.push((key, read_value(reader, depth + 1)?));
                }
                Value::Map(pairs)
            } else {
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(read_value(reader, depth + 1)?);
                }
                if tag == tag::SET {
                    Value::Set(items)
                } else {
                    Value::Array(items)
                }
            }
        }
        tag::DOUBLE => Value::Double(f64::from_bits(reader.u64("double")?)),
        tag::BOOLEAN => match reader.u8("boolean")? {
            0 => Value::Boolean(false),
            1 => Value::Boolean(true),
            got => {
                return Err(Error::InvalidBoolean {
                    got,
                    offset: offset + 1,
                })
            }
        },
        tag::VERBATIM => {
            let format = reader.array3("format")?;
            Value::Verbatim {
                format,
                text: read_text(reader, "verbatim")?,
            }
        }
        tag::BIG_NUMBER => Value::BigNumber(read_text(reader, "big number")?),
        _ => return Err(Error::UnknownValueTag { tag, offset }),
    })
}

fn read_text(reader: &mut BodyReader<'_>, field: &'static str) -> Result<String> {
    let offset = reader.offset();
    let bytes = reader.bytes(field)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::InvalidText { field, offset })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ValueWriter::new(&mut out).value(value);
        out
    }

    #[test]
    fn bytes_are_as_documented() {
        let value = Value::Array(vec![
            Value::Null,
            Value::Simple("OK".into()),
            Value::Integer(-2),
            Value::Bulk(b"v".to_vec()),
            Value::Boolean(true),
        ]);
        let mut expected = vec![tag::ARRAY, 5, 0, 0, 0, tag::NULL];
        expected.extend_from_slice(&[tag::SIMPLE, 2, 0, 0, 0, b'O', b'K']);
        expected.push(tag::INTEGER);
        expected.extend_from_slice(&(-2i64).to_le_bytes());
        expected.extend_from_slice(&[tag::BULK, 1, 0, 0, 0, b'v', tag::BOOLEAN, 1]);
        assert_eq!(encoded(&value), expected);
        assert_eq!(decode_value(&expected).unwrap(), value);

        let mut expected = vec![tag::VERBATIM, b't', b'x', b't', 2, 0, 0, 0, b'h', b'i'];
        let verbatim = Value::Verbatim {
            format: *b"txt",
            text: "hi".into(),
        };
        assert_eq!(encoded(&verbatim), expected);
        expected.clear();
        expected.push(tag::DOUBLE);
        expected.extend_from_slice(&1.5f64.to_bits().to_le_bytes());
        assert_eq!(encoded(&Value::Double(1.5)), expected);
    }

    #[test]
    fn hostile_bodies_are_errors() {
        let text = |bytes: &[u8]| decode_value(bytes).unwrap_err().to_string();
        assert_eq!(text(&[]), "truncated field 'tag' at body offset 0");
        assert_eq!(text(&[0x42]), "unknown value tag 0x42 at body offset 0");
        assert_eq!(
            text(&[tag::NULL, 0]),
            "unexpected trailing bytes at body offset 1"
        );
        assert_eq!(
            text(&[tag::BOOLEAN, 2]),
            "invalid boolean 2 at body offset 1"
        );
        assert_eq!(
            text(&[tag::SIMPLE, 1, 0, 0, 0, 0xFF]),
            "field 'simple' at body offset 1 is not UTF-8"
        );
        // A count of 4 billion with 3 bytes left: refused before allocating.
        assert_eq!(
            text(&[tag::ARRAY, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0]),
            "truncated field 'count' at body offset 0"
        );
        // A map claiming 2 pairs with 3 bytes left.
        assert_eq!(
            text(&[tag::MAP, 2, 0, 0, 0, 0, 0, 0]),
            "truncated field 'count' at body offset 0"
        );
        let mut deep = Vec::new();
        for _ in 0..100_000 {
            deep.extend_from_slice(&[tag::ARRAY, 1, 0, 0, 0]);
        }
        deep.push(tag::NULL);
        assert_eq!(
            text(&deep),
            format!(
                "values nested deeper than {MAX_VALUE_DEPTH} levels at body offset {}",
                MAX_VALUE_DEPTH * 5
            )
        );
        let mut at_limit = Vec::new();
        for _ in 0..MAX_VALUE_DEPTH {
            at_limit.extend_from_slice(&[tag::ARRAY, 1, 0, 0, 0]);
        }
        at_limit.push(tag::NULL);
        assert!(decode_value(&at_limit).is_ok());
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let text = "[a-zA-Z0-9 ]{0,8}";
        let leaf = prop_oneof![
            Just(Value::Null),
            text.prop_map(Value::Simple),
            text.prop_map(Value::Error),
            any::<i64>().prop_map(Value::Integer),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bulk),
            any::<f64>().prop_map(Value::Double),
            any::<bool>().prop_map(Value::Boolean),
            (text, any::<[u8; 3]>()).prop_map(|(text, format)| Value::Verbatim { format, text }),
            "-?[0-9]{1,30}".prop_map(Value::BigNumber),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Set),
                proptest::collection::vec((inner.clone(), inner), 0..3).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        /// Encode, decode, encode again: the same bytes (compared as bytes, so NaN doubles
        /// count as equal to themselves).
        #[test]
        fn values_round_trip(value in any_value()) {
            let bytes = encoded(&value);
            let decoded = decode_value(&bytes).unwrap();
            prop_assert_eq!(encoded(&decoded), bytes);
        }

        #[test]
        fn random_bodies_never_panic(body in proptest::collection::vec(
            prop_oneof![0u8..12, Just(0xFF), any::<u8>()], 0..96)) {
            let _ = decode_value(&body);
        }

        /// A valid value with one byte changed or the end cut off decodes or fails cleanly.
        #[test]
        fn damaged_values_never_panic(value in any_value(), at in any::<prop::sample::Index>(),
                                      byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
            let mut bytes = encoded(&value);
            let at = at.index(bytes.len());
            bytes[at] = byte;
            let _ = decode_value(&bytes);
            let cut = cut.index(bytes.len());
            let _ = decode_value(&bytes[..cut]);
        }
    }
}
