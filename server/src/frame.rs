//! [`Frame`]: what a command returns, as a small value tree. Commands build frames (so unit
//! tests compare values, and the binary protocol can map them to its own responses); the RESP
//! bytes come from flin-net's encoder, which picks RESP2 or RESP3 per session, and the binary
//! protocol's typed values (CALL and table commands) from its `ValueWriter`.

use flin_net::binary::ValueWriter;
use flin_net::resp::{Reply, RespVersion};

/// A command's reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `+OK`.
    Simple(std::borrow::Cow<'static, str>),
    /// `-ERR ...`: the text starts with the error code.
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    /// The null bulk string (`$-1` / `_`).
    Null,
    /// The null array (`*-1` / `_`): EXEC after a WATCH conflict.
    NullArray,
    Array(Vec<Frame>),
    /// A map (RESP3 `%`, a flat array in RESP2).
    Map(Vec<(Frame, Frame)>),
    /// A set (RESP3 `~`, an array in RESP2).
    Set(Vec<Frame>),
    /// A double (RESP3 `,`, a bulk string in RESP2).
    Double(f64),
    /// A boolean (RESP3 `#`, an integer in RESP2).
    Bool(bool),
    /// A verbatim text (RESP3 `=txt:`, a bulk string in RESP2): INFO, CLIENT LIST.
    Verbatim(String),
}

impl Frame {
    pub fn ok() -> Frame {
        Frame::Simple("OK".into())
    }

    /// An error reply; `text` starts with its code (`ERR ...`, `WRONGTYPE ...`).
    pub fn error(text: impl Into<String>) -> Frame {
        Frame::Error(text.into())
    }

    pub fn bulk(bytes: impl AsRef<[u8]>) -> Frame {
        Frame::Bulk(bytes.as_ref().to_vec())
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }

    /// Appends the frame's RESP encoding in `version` to `out`.
    pub fn encode(&self, version: RespVersion, out: &mut Vec<u8>) {
        let mut reply = Reply::new(out, version);
        self.write(&mut reply);
    }

    /// Appends the frame as a binary typed value (`flin_net::binary::value`). A null array
    /// is the one null; everything else keeps its type, as in RESP3.
    pub fn write_value(&self, value: &mut ValueWriter<'_>) {
        match self {
            Frame::Simple(text) => value.simple(text),
            Frame::Error(text) => value.error(text),
            Frame::Integer(n) => value.integer(*n),
            Frame::Bulk(bytes) => value.bulk(bytes),
            Frame::Null | Frame::NullArray => value.null(),
            Frame::Array(items) => {
                value.array(items.len());
                items.iter().for_each(|item| item.write_value(value));
            }
            Frame::Map(pairs) => {
                value.map(pairs.len());
                for (key, item) in pairs {
                    key.write_value(value);
                    item.write_value(value);
                }
            }
            Frame::Set(items) => {
                value.set(items.len());
                items.iter().for_each(|item| item.write_value(value));
            }
            Frame::Double(x) => value.double(*x),
            Frame::Bool(b) => value.boolean(*b),
            Frame::Verbatim(text) => value.verbatim(b"txt", text.as_bytes()),
        }
    }

    fn write(&self, reply: &mut Reply<'_>) {
        match self {
            Frame::Simple(text) => reply.simple(text),
            Frame::Error(text) => reply.error(text),
            Frame::Integer(value) => reply.integer(*value),
            Frame::Bulk(bytes) => reply.bulk(bytes),
            Frame::Null => reply.null(),
            Frame::NullArray => reply.null_array(),
            Frame::Array(items) => {
                reply.array(items.len());
                items.iter().for_each(|item| item.write(reply));
            }
            Frame::Map(pairs) => {
                reply.map(pairs.len());
                for (key, value) in pairs {
                    key.write(reply);
                    value.write(reply);
                }
            }
            Frame::Set(items) => {
                reply.set(items.len());
                items.iter().for_each(|item| item.write(reply));
            }
            Frame::Double(value) => reply.double(*value),
            Frame::Bool(value) => reply.boolean(*value),
            Frame::Verbatim(text) => reply.verbatim(b"txt", text.as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(frame: &Frame, version: RespVersion) -> Vec<u8> {
        let mut out = Vec::new();
        frame.encode(version, &mut out);
        out
    }

    #[test]
    fn encodes_both_versions() {
        let map = Frame::Map(vec![(Frame::bulk("a"), Frame::Integer(1))]);
        assert_eq!(bytes(&map, RespVersion::Resp2), b"*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(bytes(&map, RespVersion::Resp3), b"%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(bytes(&Frame::Null, RespVersion::Resp2), b"$-1\r\n");
        assert_eq!(bytes(&Frame::Null, RespVersion::Resp3), b"_\r\n");
        assert_eq!(bytes(&Frame::NullArray, RespVersion::Resp2), b"*-1\r\n");
        assert_eq!(
            bytes(&Frame::error("ERR x"), RespVersion::Resp2),
            b"-ERR x\r\n"
        );
        assert_eq!(bytes(&Frame::Bool(true), RespVersion::Resp2), b":1\r\n");
        assert_eq!(bytes(&Frame::Bool(true), RespVersion::Resp3), b"#t\r\n");
    }

    #[test]
    fn every_frame_becomes_the_typed_value_of_its_type() {
        use flin_net::binary::{decode_value, Value};
        let frame = Frame::Array(vec![
            Frame::ok(),
            Frame::error("ERR x"),
            Frame::Integer(-3),
            Frame::bulk("b"),
            Frame::Null,
            Frame::NullArray,
            Frame::Map(vec![(Frame::bulk("k"), Frame::Double(0.5))]),
            Frame::Set(vec![Frame::Bool(false)]),
            Frame::Verbatim("text".into()),
        ]);
        let mut out = Vec::new();
        frame.write_value(&mut ValueWriter::new(&mut out));
        assert_eq!(
            decode_value(&out).unwrap(),
            Value::Array(vec![
                Value::Simple("OK".into()),
                Value::Error("ERR x".into()),
                Value::Integer(-3),
                Value::Bulk(b"b".to_vec()),
                Value::Null,
                Value::Null,
                Value::Map(vec![(Value::Bulk(b"k".to_vec()), Value::Double(0.5))]),
                Value::Set(vec![Value::Boolean(false)]),
                Value::Verbatim {
                    format: *b"txt",
                    text: "text".into()
                },
            ])
        );
    }
}
