//! RESP reply encoder for protocol versions 2 and 3.
//!
//! A [`Reply`] appends to the connection's output buffer. Each RESP3-only
//! type has the RESP2 fallback Redis itself uses (a map becomes a flat array
//! of key, value, ...; a double becomes a bulk string; a boolean becomes an
//! integer), so command code writes one thing and the negotiated version
//! decides the bytes. Integers are formatted into a stack buffer: no
//! allocation per reply.

/// The RESP version a connection speaks (`HELLO 3` switches to 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RespVersion {
    /// RESP2, the default for a new connection.
    #[default]
    Resp2,
    /// RESP3.
    Resp3,
}

/// Appends replies to `out` in the given version.
pub struct Reply<'a> {
    out: &'a mut Vec<u8>,
    version: RespVersion,
}

impl<'a> Reply<'a> {
    /// A writer that appends to `out`.
    pub fn new(out: &'a mut Vec<u8>, version: RespVersion) -> Self {
        Reply { out, version }
    }

    /// The version being written.
    pub fn version(&self) -> RespVersion {
        self.version
    }

    fn is_resp3(&self) -> bool {
        self.version == RespVersion::Resp3
    }

    /// `+OK`. A CR or LF in `text` would end the line early, so they are
    /// replaced by spaces, as Redis does for status and error lines.
    pub fn simple(&mut self, text: &str) {
        self.line(b'+', text.as_bytes());
    }

    /// `-ERR message`. The text should start with an error code (`ERR`,
    /// `WRONGTYPE`, ...); CR and LF are replaced by spaces.
    pub fn error(&mut self, text: &str) {
        self.line(b'-', text.as_bytes());
    }

    fn line(&mut self, marker: u8, text: &[u8]) {
        self.out.push(marker);
        self.out.extend(
            text.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        self.out.extend_from_slice(b"\r\n");
    }

    /// `:42`.
    pub fn integer(&mut self, value: i64) {
        self.header(b':', value);
    }

    /// `$3\r\nabc`.
    pub fn bulk(&mut self, value: &[u8]) {
        self.header(b'$', value.len() as i64);
        self.out.extend_from_slice(value);
        self.out.extend_from_slice(b"\r\n");
    }

    /// The null value: `$-1` in RESP2, `_` in RESP3.
    pub fn null(&mut self) {
        if self.is_resp3() {
            self.out.extend_from_slice(b"_\r\n");
        } else {
            self.out.extend_from_slice(b"$-1\r\n");
        }
    }

    /// A null array: `*-1` in RESP2, `_` in RESP3.
    pub fn null_array(&mut self) {
        if self.is_resp3() {
            self.out.extend_from_slice(b"_\r\n");
        } else {
            self.out.extend_from_slice(b"*-1\r\n");
        }
    }

    /// Starts an array of `len` elements; write them next.
    pub fn array(&mut self, len: usize) {
        self.header(b'*', len as i64);
    }

    /// Starts a map of `len` pairs; write key, value, key, value... next.
    /// RESP2 gets a flat array of `2 * len` elements.
    pub fn map(&mut self, len: usize) {
        if self.is_resp3() {
            self.header(b'%', len as i64);
        } else {
            self.header(b'*', 2 * len as i64);
        }
    }

    /// Starts a set of `len` elements (`~`); RESP2 gets an array.
    pub fn set(&mut self, len: usize) {
        self.header(if self.is_resp3() { b'~' } else { b'*' }, len as i64);
    }

    /// Starts a push message of `len` elements (`>`); RESP2 gets an array,
    /// which is how Redis sends pub/sub messages to RESP2 clients.
    pub fn push(&mut self, len: usize) {
        self.header(if self.is_resp3() { b'>' } else { b'*' }, len as i64);
    }

    /// A pub/sub message, `["message", channel, payload]`, as a push (`>3`) in RESP3 and
    /// the array Redis sends a subscribed RESP2 client (`*3`). A RESP2 client tells it from
    /// a reply only because it is in subscribed mode and expects nothing else: the server
    /// must send it only to a connection that subscribed (RESP3 clients can tell by the
    /// type byte).
    pub fn message(&mut self, channel: &[u8], payload: &[u8]) {
        self.push(3);
        self.bulk(b"message");
        self.bulk(channel);
        self.bulk(payload);
    }

    /// `,1.5` in RESP3, the bulk string `1.5` in RESP2. Infinities and NaN
    /// are written `inf`, `-inf`, `nan` as in Redis; finite values use the
    /// shortest text that reads back to the same double, with an exponent
    /// (`1e300`) outside `1e-5..1e17`.
    pub fn double(&mut self, value: f64) {
        use std::io::Write;
        let mut text = [0u8; 32];
        let len = {
            let mut cursor = std::io::Cursor::new(&mut text[..]);
            if value.is_nan() {
                cursor.write_all(b"nan")
            } else if value.is_infinite() {
                cursor.write_all(if value > 0.0 { b"inf" } else { b"-inf" })
            } else if value == 0.0 || (1e-5..1e17).contains(&value.abs()) {
                write!(cursor, "{value}")
            } else {
                // Plain notation would print up to 300 digits; use an exponent.
                write!(cursor, "{value:e}")
            }
            .expect("a double's shortest text fits in 32 bytes");
            cursor.position() as usize
        };
        if self.is_resp3() {
            self.out.push(b',');
            self.out.extend_from_slice(&text[..len]);
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.bulk(&text[..len]);
        }
    }

    /// `#t`/`#f` in RESP3, `:1`/`:0` in RESP2.
    pub fn boolean(&mut self, value: bool) {
        if self.is_resp3() {
            self.out
                .extend_from_slice(if value { b"#t\r\n" } else { b"#f\r\n" });
        } else {
            self.integer(value as i64);
        }
    }

    /// A verbatim string with a three-letter format (`txt`, `mkd`):
    /// `=7\r\ntxt:abc` in RESP3, the bulk string `abc` in RESP2.
    pub fn verbatim(&mut self, format: &[u8; 3], text: &[u8]) {
        if self.is_resp3() {
            self.header(b'=', text.len() as i64 + 4);
            self.out.extend_from_slice(format);
            self.out.push(b':');
            self.out.extend_from_slice(text);
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.bulk(text);
        }
    }

    /// A big number given as its decimal digits: `(123...` in RESP3, a bulk
    /// string in RESP2.
    pub fn big_number(&mut self, digits: &str) {
        if self.is_resp3() {
            self.line(b'(', digits.as_bytes());
        } else {
            self.bulk(digits.as_bytes());
        }
    }

    /// `marker`, the decimal `value`, CRLF.
    fn header(&mut self, marker: u8, value: i64) {
        self.out.push(marker);
        let mut digits = [0u8; 20];
        self.out.extend_from_slice(format_i64(value, &mut digits));
        self.out.extend_from_slice(b"\r\n");
    }
}

/// Formats `value` in decimal into `buf` and returns the written part.
/// 20 bytes hold `i64::MIN`.
pub fn format_i64(value: i64, buf: &mut [u8; 20]) -> &[u8] {
    // Work on the magnitude as u64 so i64::MIN has no overflow.
    let mut magnitude = value.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if value < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(write: impl Fn(&mut Reply<'_>)) -> (String, String) {
        let mut two = Vec::new();
        write(&mut Reply::new(&mut two, RespVersion::Resp2));
        let mut three = Vec::new();
        write(&mut Reply::new(&mut three, RespVersion::Resp3));
        (
            String::from_utf8(two).unwrap(),
            String::from_utf8(three).unwrap(),
        )
    }

    fn same(write: impl Fn(&mut Reply<'_>), expected: &str) {
        assert_eq!(both(write), (expected.to_string(), expected.to_string()));
    }

    #[test]
    fn types_shared_by_both_versions() {
        same(|r| r.simple("OK"), "+OK\r\n");
        same(|r| r.simple("a\r\nb"), "+a  b\r\n");
        same(
            |r| r.error("ERR unknown command 'x'"),
            "-ERR unknown command 'x'\r\n",
        );
        same(|r| r.integer(0), ":0\r\n");
        same(|r| r.integer(-42), ":-42\r\n");
        same(|r| r.integer(i64::MIN), ":-9223372036854775808\r\n");
        same(|r| r.integer(i64::MAX), ":9223372036854775807\r\n");
        same(|r| r.bulk(b"hello"), "$5\r\nhello\r\n");
        same(|r| r.bulk(b""), "$0\r\n\r\n");
        same(|r| r.array(2), "*2\r\n");
    }

    #[test]
    fn nulls() {
        assert_eq!(both(|r| r.null()), ("$-1\r\n".into(), "_\r\n".into()));
        assert_eq!(both(|r| r.null_array()), ("*-1\r\n".into(), "_\r\n".into()));
    }

    #[test]
    fn aggregates() {
        let map = |r: &mut Reply<'_>| {
            r.map(1);
            r.bulk(b"k");
            r.integer(1);
        };
        assert_eq!(
            both(map),
            (
                "*2\r\n$1\r\nk\r\n:1\r\n".into(),
                "%1\r\n$1\r\nk\r\n:1\r\n".into()
            )
        );
        assert_eq!(both(|r| r.set(3)), ("*3\r\n".into(), "~3\r\n".into()));
        assert_eq!(both(|r| r.push(3)), ("*3\r\n".into(), ">3\r\n".into()));
        let message = "3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n";
        assert_eq!(
            both(|r| r.message(b"news", b"hi")),
            (format!("*{message}"), format!(">{message}"))
        );
    }

    #[test]
    fn scalars_with_resp2_fallbacks() {
        assert_eq!(
            both(|r| r.double(1.5)),
            ("$3\r\n1.5\r\n".into(), ",1.5\r\n".into())
        );
        assert_eq!(
            both(|r| r.double(-0.25)),
            ("$5\r\n-0.25\r\n".into(), ",-0.25\r\n".into())
        );
        assert_eq!(
            both(|r| r.double(3.0)),
            ("$1\r\n3\r\n".into(), ",3\r\n".into())
        );
        assert_eq!(
            both(|r| r.double(f64::INFINITY)),
            ("$3\r\ninf\r\n".into(), ",inf\r\n".into())
        );
        assert_eq!(
            both(|r| r.double(f64::NEG_INFINITY)),
            ("$4\r\n-inf\r\n".into(), ",-inf\r\n".into())
        );
        assert_eq!(
            both(|r| r.double(f64::NAN)),
            ("$3\r\nnan\r\n".into(), ",nan\r\n".into())
        );
        assert_eq!(
            both(|r| r.boolean(true)),
            (":1\r\n".into(), "#t\r\n".into())
        );
        assert_eq!(
            both(|r| r.boolean(false)),
            (":0\r\n".into(), "#f\r\n".into())
        );
        assert_eq!(
            both(|r| r.verbatim(b"txt", b"Some string")),
            (
                "$11\r\nSome string\r\n".into(),
                "=15\r\ntxt:Some string\r\n".into()
            )
        );
        assert_eq!(
            both(|r| r.big_number("3492890328409238509324850943850943825024385")),
            (
                "$43\r\n3492890328409238509324850943850943825024385\r\n".into(),
                "(3492890328409238509324850943850943825024385\r\n".into()
            )
        );
    }

    #[test]
    fn doubles_round_trip_through_their_text() {
        assert_eq!(
            both(|r| r.double(1e300)),
            ("$5\r\n1e300\r\n".into(), ",1e300\r\n".into())
        );
        for value in [
            0.1,
            -0.0,
            1e300,
            -1e-300,
            f64::MAX,
            f64::MIN_POSITIVE,
            123456789.12345679,
        ] {
            let mut out = Vec::new();
            Reply::new(&mut out, RespVersion::Resp3).double(value);
            let text = std::str::from_utf8(&out[1..out.len() - 2]).unwrap();
            assert_eq!(text.parse::<f64>().unwrap(), value);
        }
    }

    #[test]
    fn format_i64_matches_std() {
        let mut buf = [0u8; 20];
        for value in [
            0,
            1,
            9,
            10,
            -1,
            -10,
            1234567890,
            i64::MIN,
            i64::MAX,
            i64::MIN + 1,
        ] {
            assert_eq!(format_i64(value, &mut buf), value.to_string().as_bytes());
        }
    }
}
