//! RESP values as the tool sees them: every RESP2 and RESP3 reply type, parsed from raw bytes
//! with the text of each element kept (an integer keeps its digits, a double its spelling), so
//! two replies are equal exactly when their bytes are.

use std::fmt;

/// Deepest nesting accepted in a reply (EXEC of CLIENT INFO is three levels; this is plenty).
const DEPTH_MAX: usize = 16;
/// Largest bulk the tool accepts in a reply: the scripts never write more than a few MiB.
const BULK_BYTES_MAX: usize = 64 << 20;

/// One reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+text`
    Simple(Vec<u8>),
    /// `-text` (RESP3 `!len` blob errors are folded in here too).
    Error(Vec<u8>),
    /// `:digits`, as sent.
    Integer(Vec<u8>),
    /// `$len` bytes.
    Bulk(Vec<u8>),
    /// `$-1` (RESP2 null bulk).
    NullBulk,
    /// `*-1` (RESP2 null array).
    NullArray,
    /// `_` (RESP3 null).
    Null,
    /// `*n`
    Array(Vec<Value>),
    /// `%n`
    Map(Vec<(Value, Value)>),
    /// `~n`
    Set(Vec<Value>),
    /// `>n`
    Push(Vec<Value>),
    /// `,text`
    Double(Vec<u8>),
    /// `#t` / `#f`
    Bool(bool),
    /// `=len` with its 3-byte format and the text.
    Verbatim(Vec<u8>, Vec<u8>),
    /// `(digits`
    BigNumber(Vec<u8>),
    /// The server closed the connection instead of replying.
    Closed,
    /// No (complete) reply within the read timeout.
    Timeout,
}

impl Value {
    pub fn integer(&self) -> Option<i64> {
        match self {
            Value::Integer(text) => std::str::from_utf8(text).ok()?.parse().ok(),
            _ => None,
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }

    /// Whether this is one of the null forms.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::NullBulk | Value::NullArray | Value::Null)
    }

    /// The elements of an array-like reply (array, set, push).
    pub fn elements(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) | Value::Set(items) | Value::Push(items) => Some(items),
            _ => None,
        }
    }

    /// Key-value pairs of a map, or of a RESP2 flat array of even length.
    pub fn pairs(&self) -> Option<Vec<(&Value, &Value)>> {
        match self {
            Value::Map(pairs) => Some(pairs.iter().map(|(k, v)| (k, v)).collect()),
            Value::Array(items) if items.len() % 2 == 0 => {
                Some(items.chunks(2).map(|pair| (&pair[0], &pair[1])).collect())
            }
            _ => None,
        }
    }

    /// The bytes of a bulk, simple string or verbatim text.
    pub fn text(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(bytes) | Value::Simple(bytes) | Value::Verbatim(_, bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The kind of reply, for messages and shape comparisons.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Simple(_) => "simple",
            Value::Error(_) => "error",
            Value::Integer(_) => "integer",
            Value::Bulk(_) => "bulk",
            Value::NullBulk => "null-bulk",
            Value::NullArray => "null-array",
            Value::Null => "null",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Set(_) => "set",
            Value::Push(_) => "push",
            Value::Double(_) => "double",
            Value::Bool(_) => "bool",
            Value::Verbatim(..) => "verbatim",
            Value::BigNumber(_) => "big-number",
            Value::Closed => "closed",
            Value::Timeout => "timeout",
        }
    }
}

/// Bytes shown escaped, as redis-cli shows them (`"a\r\n\x00"`).
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &byte in self.0 {
            match byte {
                b'"' => f.write_str("\\\"")?,
                b'\\' => f.write_str("\\\\")?,
                b'\r' => f.write_str("\\r")?,
                b'\n' => f.write_str("\\n")?,
                b'\t' => f.write_str("\\t")?,
                0x20..=0x7e => write!(f, "{}", byte as char)?,
                _ => write!(f, "\\x{byte:02x}")?,
            }
        }
        f.write_str("\"")
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, open: &str, items: &[Value]| {
            f.write_str(open)?;
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{item}")?;
            }
            f.write_str("]")
        };
        match self {
            Value::Simple(text) => write!(f, "+{}", Escaped(text)),
            Value::Error(text) => write!(f, "-{}", Escaped(text)),
            Value::Integer(text) => write!(f, ":{}", String::from_utf8_lossy(text)),
            Value::Bulk(bytes) => write!(f, "{}", Escaped(bytes)),
            Value::NullBulk => f.write_str("$-1"),
            Value::NullArray => f.write_str("*-1"),
            Value::Null => f.write_str("_"),
            Value::Array(items) => list(f, "[", items),
            Value::Set(items) => list(f, "~[", items),
            Value::Push(items) => list(f, ">[", items),
            Value::Map(pairs) => {
                f.write_str("{")?;
                for (index, (key, value)) in pairs.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{key}: {value}")?;
                }
                f.write_str("}")
            }
            Value::Double(text) => write!(f, ",{}", String::from_utf8_lossy(text)),
            Value::Bool(value) => write!(f, "#{}", if *value { 't' } else { 'f' }),
            Value::Verbatim(format, text) => {
                write!(f, "={}:{}", String::from_utf8_lossy(format), Escaped(text))
            }
            Value::BigNumber(text) => write!(f, "({}", String::from_utf8_lossy(text)),
            Value::Closed => f.write_str("<connection closed>"),
            Value::Timeout => f.write_str("<no reply>"),
        }
    }
}

/// Parses one reply from the start of `buffer`: `Ok(None)` if it is not complete yet,
/// otherwise the value and the bytes it took.
pub fn parse(buffer: &[u8]) -> Result<Option<(Value, usize)>, String> {
    parse_at(buffer, 0, 0)
}

fn line_at(buffer: &[u8], start: usize) -> Option<(&[u8], usize)> {
    let rest = buffer.get(start..)?;
    let end = rest.windows(2).position(|pair| pair == b"\r\n")?;
    Some((&rest[..end], start + end + 2))
}

fn length_of(text: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| format!("bad length {}", Escaped(text)))
}

fn parse_at(buffer: &[u8], start: usize, depth: usize) -> Result<Option<(Value, usize)>, String> {
    if depth > DEPTH_MAX {
        return Err("reply nested too deeply".into());
    }
    let Some(&kind) = buffer.get(start) else {
        return Ok(None);
    };
    let Some((line, after)) = line_at(buffer, start + 1) else {
        return Ok(None);
    };
    let text = line.to_vec();
    let value = match kind {
        b'+' => Value::Simple(text),
        b'-' => Value::Error(text),
        b':' => Value::Integer(text),
        b',' => Value::Double(text),
        b'(' => Value::BigNumber(text),
        b'_' => Value::Null,
        b'#' => match line {
            b"t" => Value::Bool(true),
            b"f" => Value::Bool(false),
            _ => return Err(format!("bad boolean {}", Escaped(line))),
        },
        b'$' | b'=' | b'!' => {
            let length = length_of(line)?;
            if length == -1 && kind == b'$' {
                return Ok(Some((Value::NullBulk, after)));
            }
            let length = usize::try_from(length)
                .ok()
                .filter(|length| *length <= BULK_BYTES_MAX)
                .ok_or_else(|| format!("bad bulk length {length}"))?;
            let end = after + length;
            if buffer.len() < end + 2 {
                return Ok(None);
            }
            if &buffer[end..end + 2] != b"\r\n" {
                return Err("bulk not followed by CRLF".into());
            }
            let body = buffer[after..end].to_vec();
            let value = match kind {
                b'$' => Value::Bulk(body),
                b'!' => Value::Error(body),
                _ => {
                    if body.len() < 4 || body[3] != b':' {
                        return Err("verbatim string without a format".into());
                    }
                    Value::Verbatim(body[..3].to_vec(), body[4..].to_vec())
                }
            };
            return Ok(Some((value, end + 2)));
        }
        b'*' | b'~' | b'>' | b'%' => {
            let count = length_of(line)?;
            if count == -1 && kind == b'*' {
                return Ok(Some((Value::NullArray, after)));
            }
            let count = usize::try_from(count).map_err(|_| format!("bad count {count}"))?;
            let elements = if kind == b'%' { count * 2 } else { count };
            let mut items = Vec::with_capacity(elements.min(1024));
            let mut position = after;
            for _ in 0..elements {
                match parse_at(buffer, position, depth + 1)? {
                    Some((item, next)) => {
                        items.push(item);
                        position = next;
                    }
                    None => return Ok(None),
                }
            }
            let value = match kind {
                b'*' => Value::Array(items),
                b'~' => Value::Set(items),
                b'>' => Value::Push(items),
                _ => {
                    let mut pairs = Vec::with_capacity(count);
                    let mut items = items.into_iter();
                    while let (Some(key), Some(value)) = (items.next(), items.next()) {
                        pairs.push((key, value));
                    }
                    Value::Map(pairs)
                }
            };
            return Ok(Some((value, position)));
        }
        other => return Err(format!("unknown reply type byte 0x{other:02x}")),
    };
    Ok(Some((value, after)))
}

/// A command as a multibulk request.
pub fn encode(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    flin_net::resp::encode_command(&mut out, args);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bytes: &[u8]) -> Value {
        let (value, used) = parse(bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len(), "whole input consumed");
        value
    }

    #[test]
    fn parses_every_type() {
        assert_eq!(one(b"+OK\r\n"), Value::Simple(b"OK".to_vec()));
        assert_eq!(one(b"-ERR x\r\n"), Value::Error(b"ERR x".to_vec()));
        assert_eq!(one(b":-5\r\n").integer(), Some(-5));
        assert_eq!(one(b"$3\r\na\r\n\r\n"), Value::Bulk(b"a\r\n".to_vec()));
        assert_eq!(one(b"$-1\r\n"), Value::NullBulk);
        assert_eq!(one(b"*-1\r\n"), Value::NullArray);
        assert_eq!(one(b"_\r\n"), Value::Null);
        assert_eq!(one(b"#t\r\n"), Value::Bool(true));
        assert_eq!(one(b",1.5\r\n"), Value::Double(b"1.5".to_vec()));
        assert_eq!(one(b"(123\r\n"), Value::BigNumber(b"123".to_vec()));
        assert_eq!(
            one(b"=7\r\ntxt:abc\r\n"),
            Value::Verbatim(b"txt".to_vec(), b"abc".to_vec())
        );
        assert_eq!(
            one(b"%1\r\n$1\r\na\r\n:1\r\n"),
            Value::Map(vec![(
                Value::Bulk(b"a".to_vec()),
                Value::Integer(b"1".to_vec())
            )])
        );
        assert_eq!(
            one(b"*2\r\n~1\r\n:1\r\n>0\r\n"),
            Value::Array(vec![
                Value::Set(vec![Value::Integer(b"1".to_vec())]),
                Value::Push(vec![])
            ])
        );
        assert_eq!(one(b"!5\r\nERR x\r\n"), Value::Error(b"ERR x".to_vec()));
    }

    #[test]
    fn incomplete_and_bad_input() {
        for partial in [
            &b""[..],
            b"+OK",
            b"+OK\r",
            b"$3\r\nab",
            b"*2\r\n:1\r\n",
            b"%1\r\n:1\r\n",
        ] {
            assert_eq!(parse(partial).unwrap(), None, "{}", Escaped(partial));
        }
        assert!(parse(b"?x\r\n").is_err());
        assert!(parse(b"$3\r\nabcd\r\n").is_err());
        assert!(parse(b"$x\r\n").is_err());
        assert!(parse(b"#x\r\n").is_err());
        // Two replies back to back: the first one's length is reported.
        assert_eq!(
            parse(b":1\r\n:2\r\n").unwrap(),
            Some((Value::Integer(b"1".to_vec()), 4))
        );
    }

    #[test]
    fn encodes_and_shows() {
        assert_eq!(
            encode(&[b"GET".to_vec(), b"".to_vec()]),
            b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n"
        );
        assert_eq!(Escaped(b"a\"\x00\r").to_string(), "\"a\\\"\\x00\\r\"");
        let shown = Value::Array(vec![Value::NullBulk, Value::Integer(b"3".to_vec())]);
        assert_eq!(shown.to_string(), "[$-1, :3]");
    }
}
