//! RESP request framing: check that a whole command is buffered, then parse
//! it into argument ranges without copying.
//!
//! Requests are either multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, what
//! client libraries send) or inline (`GET k\r\n`, what a person types into
//! telnet). A buffer starting with `*` is multibulk, anything else inline,
//! exactly as Redis decides.
//!
//! [`Checker::check`] validates a frame without allocating and remembers how
//! far it got, so a large command that arrives over many reads is not
//! re-scanned from its first byte every time (that would be quadratic in the
//! number of arguments). [`parse`] then walks the validated frame and records
//! each argument as a range of the buffer; it cannot fail.

use std::ops::Range;

use crate::error::{Error, Result};

/// Longest bulk string accepted (Redis's `proto-max-bulk-len` default).
pub const MAX_BULK_BYTES: usize = 512 * 1024 * 1024;
/// Most arguments in one multibulk command (Redis's limit for clients).
pub const MAX_ARGS: usize = 1024 * 1024;
/// Longest inline command, and longest `*`/`$` count line, without a newline
/// (Redis's `PROTO_INLINE_MAX_SIZE`).
pub const MAX_INLINE_BYTES: usize = 64 * 1024;
/// Largest whole command (Redis's `client-query-buffer-limit` default): it
/// bounds the read buffer a single client can make the server hold.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024 * 1024;
/// Most elements a command may have before its connection has authenticated (with a password
/// set): Redis's limit, so a client without the password cannot make the server buffer much.
pub const UNAUTHENTICATED_MAX_ARGS: usize = 10;
/// Largest bulk string before authentication (Redis's 16 KiB).
pub const UNAUTHENTICATED_MAX_BULK_BYTES: usize = 16 * 1024;

/// How a checked frame is laid out; [`parse`] needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// `*N\r\n` followed by N bulk strings.
    Multibulk,
    /// One line of space-separated, possibly quoted, words.
    Inline,
}

/// A complete command at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Bytes the command occupies; consume them after handling it.
    pub len: usize,
    /// Number of arguments. Zero for an empty inline line or `*0`/`*-1`,
    /// which Redis skips without a reply.
    pub argc: usize,
    /// Multibulk or inline.
    pub kind: FrameKind,
}

/// Resumable frame checker; one per connection.
///
/// Between calls the buffer must still start at the same frame (more bytes
/// may have been appended). After a frame is returned the checker is ready
/// for the next one; after an error the connection is closed, so its state no
/// longer matters.
#[derive(Debug, Clone)]
pub struct Checker {
    /// Largest frame accepted; [`MAX_FRAME_BYTES`] unless configured.
    max_frame_bytes: usize,
    /// Bytes of the current frame validated so far (multibulk), or searched
    /// for a newline so far (inline).
    checked_bytes: usize,
    /// Elements still to validate; meaningful while `in_multibulk`.
    args_left: usize,
    /// Elements announced by the `*` line.
    argc: usize,
    /// The `*` line has been read.
    in_multibulk: bool,
    /// The connection has not authenticated yet: the `UNAUTHENTICATED_*` limits apply.
    unauthenticated: bool,
}

impl Default for Checker {
    fn default() -> Self {
        Checker::with_max_frame_bytes(MAX_FRAME_BYTES)
    }
}

impl Checker {
    /// A checker at the start of a frame, with the default frame limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// A checker with a smaller (or larger) frame limit than
    /// [`MAX_FRAME_BYTES`], like Redis's `client-query-buffer-limit`.
    pub fn with_max_frame_bytes(max_frame_bytes: usize) -> Self {
        Checker {
            max_frame_bytes,
            checked_bytes: 0,
            args_left: 0,
            argc: 0,
            in_multibulk: false,
            unauthenticated: false,
        }
    }

    /// Holds the next frames to [`UNAUTHENTICATED_MAX_ARGS`] elements of at most
    /// [`UNAUTHENTICATED_MAX_BULK_BYTES`] each (`true`), or lifts that (`false`). The server
    /// sets it before each frame while a password is required and not yet given.
    pub fn set_unauthenticated(&mut self, unauthenticated: bool) {
        self.unauthenticated = unauthenticated;
    }

    /// Checks whether `buf` starts with a whole command. Returns
    /// [`Error::Incomplete`] if more bytes are needed, a protocol error if the
    /// bytes can never form a valid command.
    pub fn check(&mut self, buf: &[u8]) -> Result<Frame> {
        let first = *buf.first().ok_or(Error::Incomplete)?;
        let result = if first == b'*' {
            self.check_multibulk(buf)
        } else {
            self.check_inline(buf)
        };
        if !matches!(result, Err(Error::Incomplete)) {
            // Ready for the next frame; the limits stay as they are.
            self.checked_bytes = 0;
            self.args_left = 0;
            self.argc = 0;
            self.in_multibulk = false;
        }
        result
    }

    fn check_multibulk(&mut self, buf: &[u8]) -> Result<Frame> {
        if !self.in_multibulk {
            let (count, next) = read_count_line(buf, 1, true)?;
            let count = count
                .filter(|n| *n <= MAX_ARGS as i64)
                .ok_or(Error::InvalidMultibulkLength { offset: 1 })?;
            if self.unauthenticated && count > UNAUTHENTICATED_MAX_ARGS as i64 {
                return Err(Error::UnauthenticatedMultibulkLength { offset: 1 });
            }
            if count <= 0 {
                return Ok(Frame {
                    len: next,
                    argc: 0,
                    kind: FrameKind::Multibulk,
                });
            }
            self.in_multibulk = true;
            self.argc = count as usize;
            self.args_left = count as usize;
            self.checked_bytes = next;
        }
        while self.args_left > 0 {
            let at = self.checked_bytes;
            let marker = *buf.get(at).ok_or(Error::Incomplete)?;
            if marker != b'$' {
                return Err(Error::ExpectedBulk {
                    got: marker,
                    offset: at,
                });
            }
            let (len, value_start) = read_count_line(buf, at + 1, false)?;
            let len = len
                .filter(|n| (0..=MAX_BULK_BYTES as i64).contains(n))
                .ok_or(Error::InvalidBulkLength { offset: at + 1 })? as usize;
            if self.unauthenticated && len > UNAUTHENTICATED_MAX_BULK_BYTES {
                return Err(Error::UnauthenticatedBulkLength { offset: at + 1 });
            }
            let value_end = value_start + len;
            // Checked on the claimed length, before any of the value arrives,
            // so a client cannot make the buffer grow towards an impossible frame.
            if value_end + 2 > self.max_frame_bytes {
                return Err(Error::FrameTooLarge {
                    len: value_end + 2,
                    limit: self.max_frame_bytes,
                });
            }
            if buf.len() < value_end + 2 {
                return Err(Error::Incomplete);
            }
            if &buf[value_end..value_end + 2] != b"\r\n" {
                return Err(Error::ExpectedCrlf { offset: value_end });
            }
            self.checked_bytes = value_end + 2;
            self.args_left -= 1;
        }
        Ok(Frame {
            len: self.checked_bytes,
            argc: self.argc,
            kind: FrameKind::Multibulk,
        })
    }

    fn check_inline(&mut self, buf: &[u8]) -> Result<Frame> {
        let search_from = self.checked_bytes.min(buf.len());
        let Some(newline) = find_byte(&buf[search_from..], b'\n').map(|i| i + search_from) else {
            if buf.len() > MAX_INLINE_BYTES {
                return Err(Error::InlineTooLong {
                    limit: MAX_INLINE_BYTES,
                });
            }
            self.checked_bytes = buf.len();
            return Err(Error::Incomplete);
        };
        if newline > MAX_INLINE_BYTES {
            return Err(Error::InlineTooLong {
                limit: MAX_INLINE_BYTES,
            });
        }
        let line_end = inline_line_end(buf, newline);
        let mut argc = 0;
        let mut reader: &[u8] = buf;
        split_inline(&mut reader, line_end, |_| argc += 1)?;
        Ok(Frame {
            len: newline + 1,
            argc,
            kind: FrameKind::Inline,
        })
    }
}

/// Parses a frame that [`Checker::check`] accepted: fills `args` with the
/// byte range of every argument in `buf`. Inline arguments with quotes or
/// escapes are unescaped in place (the result is never longer than the
/// source), which is why `buf` is mutable; multibulk frames are only read.
///
/// # Panics
/// If `frame` was not returned by `check` for this `buf`.
pub fn parse(buf: &mut [u8], frame: &Frame, args: &mut Vec<Range<usize>>) {
    args.clear();
    if frame.argc == 0 {
        return;
    }
    match frame.kind {
        FrameKind::Multibulk => parse_multibulk(&buf[..frame.len], frame.argc, args),
        FrameKind::Inline => {
            let line_end = inline_line_end(buf, frame.len - 1);
            let mut writer: &mut [u8] = &mut buf[..line_end];
            split_inline(&mut writer, line_end, |range| args.push(range))
                .expect("inline frame was checked");
        }
    }
}

fn parse_multibulk(buf: &[u8], argc: usize, args: &mut Vec<Range<usize>>) {
    let (_, mut at) = read_count_line(buf, 1, true).expect("multibulk frame was checked");
    for _ in 0..argc {
        let (len, value_start) =
            read_count_line(buf, at + 1, false).expect("multibulk frame was checked");
        let value_end = value_start + len.expect("multibulk frame was checked") as usize;
        args.push(value_start..value_end);
        at = value_end + 2;
    }
    assert_eq!(
        at,
        buf.len(),
        "parsed multibulk length differs from the checked one"
    );
}

/// Reads a `*N`/`$N` count line whose digits start at `start`. Returns the
/// value (`None` if it is not a strict decimal integer) and the offset after
/// the CRLF.
fn read_count_line(buf: &[u8], start: usize, multibulk: bool) -> Result<(Option<i64>, usize)> {
    let rest = buf.get(start..).unwrap_or(&[]);
    // Only a short prefix can hold a count; never scan further than that.
    let window = &rest[..rest.len().min(MAX_INLINE_BYTES + 1)];
    let Some(cr) = find_byte(window, b'\r') else {
        if rest.len() > MAX_INLINE_BYTES {
            return Err(Error::CountLineTooLong { multibulk });
        }
        return Err(Error::Incomplete);
    };
    let lf = *rest.get(cr + 1).ok_or(Error::Incomplete)?;
    let value = if lf == b'\n' {
        parse_decimal(&rest[..cr])
    } else {
        None
    };
    Ok((value, start + cr + 2))
}

/// Strict decimal: optional `-`, digits, no leading zeros, no `+`, no
/// spaces, fits in i64 (Redis's `string2ll`).
fn parse_decimal(digits: &[u8]) -> Option<i64> {
    let (negative, body) = match digits.split_first() {
        Some((b'-', body)) => (true, body),
        _ => (false, digits),
    };
    if body.is_empty() || body.len() > 19 || (body[0] == b'0' && (body.len() > 1 || negative)) {
        return None;
    }
    let mut value: i64 = 0;
    for &b in body {
        if !b.is_ascii_digit() {
            return None;
        }
        let digit = (b - b'0') as i64;
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(digit)?
        } else {
            value.checked_add(digit)?
        };
    }
    Some(value)
}

fn find_byte(haystack: &[u8], needle: u8) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// End of an inline line's content: the newline, less a `\r` before it.
fn inline_line_end(buf: &[u8], newline: usize) -> usize {
    if newline > 0 && buf[newline - 1] == b'\r' {
        newline - 1
    } else {
        newline
    }
}

/// Access to the inline line for [`split_inline`]: read-only while checking,
/// writable while parsing (to unescape in place). One tokenizer serves both,
/// so the check and the parse cannot disagree about the quoting rules.
trait LineBytes {
    fn byte(&self, at: usize) -> u8;
    fn put(&mut self, at: usize, byte: u8);
}

impl LineBytes for &[u8] {
    fn byte(&self, at: usize) -> u8 {
        self[at]
    }
    fn put(&mut self, _at: usize, _byte: u8) {}
}

impl LineBytes for &mut [u8] {
    fn byte(&self, at: usize) -> u8 {
        self[at]
    }
    fn put(&mut self, at: usize, byte: u8) {
        self[at] = byte;
    }
}

/// Redis's `isspace` set, which separates inline arguments.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Splits an inline line the way Redis's `sdssplitargs` does and calls
/// `emit` with each argument's range (after unescaping, when writing).
fn split_inline<B: LineBytes>(
    line: &mut B,
    line_end: usize,
    mut emit: impl FnMut(Range<usize>),
) -> Result<()> {
    let mut at = 0;
    loop {
        while at < line_end && is_space(line.byte(at)) {
            at += 1;
        }
        if at == line_end {
            return Ok(());
        }
        let (value_end, next) = split_token(line, line_end, at)?;
        emit(at..value_end);
        at = next;
    }
}

/// One argument starting at `start`. Returns where its unescaped value ends
/// and where scanning continues. Writes go to an index never past the one
/// being read, so unescaping in place is safe.
fn split_token<B: LineBytes>(
    line: &mut B,
    line_end: usize,
    start: usize,
) -> Result<(usize, usize)> {
    let mut read = start;
    let mut write = start;
    let mut quote: Option<u8> = None;
    loop {
        if read >= line_end {
            return match quote {
                Some(_) => Err(Error::UnbalancedQuotes { offset: read }),
                None => Ok((write, read)),
            };
        }
        let c = line.byte(read);
        let next = |i: usize| {
            if i < line_end {
                Some(line.byte(i))
            } else {
                None
            }
        };
        let mut out = c;
        match quote {
            Some(b'"') => {
                let escaped_hex = match (next(read + 1), next(read + 2), next(read + 3)) {
                    (Some(b'x'), Some(high), Some(low)) if c == b'\\' => {
                        hex_value(high).zip(hex_value(low))
                    }
                    _ => None,
                };
                if let Some((high, low)) = escaped_hex {
                    out = (high << 4) | low;
                    read += 3;
                } else if c == b'\\' && next(read + 1).is_some() {
                    read += 1;
                    out = match line.byte(read) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    };
                } else if c == b'"' {
                    return close_quote(line, line_end, write, read);
                }
            }
            Some(_) => {
                if c == b'\\' && next(read + 1) == Some(b'\'') {
                    read += 1;
                    out = b'\'';
                } else if c == b'\'' {
                    return close_quote(line, line_end, write, read);
                }
            }
            None => match c {
                b' ' | b'\n' | b'\r' | b'\t' => return Ok((write, read)),
                b'"' | b'\'' => {
                    quote = Some(c);
                    read += 1;
                    continue;
                }
                _ => {}
            },
        }
        line.put(write, out);
        write += 1;
        read += 1;
    }
}

/// A closing quote must be followed by a space or the end of the line.
fn close_quote<B: LineBytes>(
    line: &B,
    line_end: usize,
    write: usize,
    quote_at: usize,
) -> Result<(usize, usize)> {
    let after = quote_at + 1;
    if after < line_end && !is_space(line.byte(after)) {
        return Err(Error::UnbalancedQuotes { offset: after });
    }
    Ok((write, after))
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks and parses every command in `input`, as the event loop does.
    fn parse_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>> {
        let mut buf = input.to_vec();
        let mut start = 0;
        let mut checker = Checker::new();
        let mut args = Vec::new();
        let mut commands = Vec::new();
        loop {
            let frame = match checker.check(&buf[start..]) {
                Ok(frame) => frame,
                Err(Error::Incomplete) => return Ok(commands),
                Err(err) => return Err(err),
            };
            assert!(
                frame.len <= buf.len() - start,
                "frame longer than the buffer"
            );
            parse(&mut buf[start..], &frame, &mut args);
            assert_eq!(args.len(), frame.argc);
            if frame.argc > 0 {
                commands.push(
                    args.iter()
                        .map(|r| buf[start..][r.clone()].to_vec())
                        .collect(),
                );
            }
            start += frame.len;
        }
    }

    fn cmd(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    fn error_text(input: &[u8]) -> String {
        parse_all(input).expect_err("should fail").to_string()
    }

    #[test]
    fn multibulk_command() {
        let got = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").unwrap();
        assert_eq!(got, vec![cmd(&["GET", "k"])]);
    }

    #[test]
    fn binary_safe_bulk_values() {
        let got = parse_all(b"*2\r\n$3\r\nSET\r\n$4\r\n\r\n\0\xff\r\n").unwrap();
        assert_eq!(got, vec![vec![b"SET".to_vec(), b"\r\n\0\xff".to_vec()]]);
    }

    #[test]
    fn empty_multibulk_is_skipped() {
        let got = parse_all(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n").unwrap();
        assert_eq!(got, vec![cmd(&["PING"])]);
    }

    #[test]
    fn inline_commands() {
        let got = parse_all(b"GET k\r\n\r\n\nSET  a\tb\n  PING  \r\n").unwrap();
        assert_eq!(
            got,
            vec![cmd(&["GET", "k"]), cmd(&["SET", "a", "b"]), cmd(&["PING"])]
        );
    }

    #[test]
    fn inline_quoting_follows_redis() {
        let got = parse_all(b"SET \"a b\" 'c d'\r\n").unwrap();
        assert_eq!(got, vec![cmd(&["SET", "a b", "c d"])]);
        let got = parse_all(b"SET \"\\x41\\n\\\"q\\\\\" 'it\\'s' \"\"\r\n").unwrap();
        assert_eq!(got, vec![cmd(&["SET", "A\n\"q\\", "it's", ""])]);
        // A quote inside a word opens a quoted part, as in sdssplitargs.
        assert_eq!(parse_all(b"a\"b c\"\n").unwrap(), vec![cmd(&["ab c"])]);
    }

    #[test]
    fn unbalanced_quotes() {
        assert_eq!(
            error_text(b"SET \"abc\r\n"),
            "Protocol error: unbalanced quotes in request at byte 8"
        );
        assert_eq!(
            error_text(b"SET 'a'b\r\n"),
            "Protocol error: unbalanced quotes in request at byte 7"
        );
    }

    #[test]
    fn malformed_multibulk_errors() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"*x\r\n",
                "Protocol error: invalid multibulk length at byte 1",
            ),
            (
                b"*1048577\r\n",
                "Protocol error: invalid multibulk length at byte 1",
            ),
            (
                b"*01\r\n",
                "Protocol error: invalid multibulk length at byte 1",
            ),
            (
                b"*1\r\n$-1\r\n",
                "Protocol error: invalid bulk length at byte 5",
            ),
            (
                b"*1\r\n$536870913\r\n",
                "Protocol error: invalid bulk length at byte 5",
            ),
            (
                b"*1\r\n$3x\r\n",
                "Protocol error: invalid bulk length at byte 5",
            ),
            (
                b"*1\r\nx3\r\n",
                "Protocol error: expected '$', got 'x' at byte 4",
            ),
            (
                b"*1\r\n$3\r\nabcde",
                "Protocol error: expected CRLF after bulk string at byte 11",
            ),
            (
                b"*2\r\n$1\r\na\r\n:1\r\n",
                "Protocol error: expected '$', got ':' at byte 11",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                &error_text(input),
                expected,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn limits_checked_before_the_bytes_arrive() {
        // A huge claimed bulk fails on its header, not after buffering it.
        let mut checker = Checker::new();
        let err = checker.check(b"*1\r\n$99999999999\r\n").unwrap_err();
        assert!(matches!(err, Error::InvalidBulkLength { offset: 5 }));
        // The frame limit trips on the header of the bulk that would pass it.
        let mut checker = Checker::with_max_frame_bytes(100);
        let input = b"*3\r\n$10\r\n0123456789\r\n$80\r\n";
        assert!(matches!(
            checker.check(input),
            Err(Error::FrameTooLarge {
                len: 108,
                limit: 100
            })
        ));
    }

    #[test]
    fn unauthenticated_limits_apply_only_while_set() {
        let mut checker = Checker::new();
        checker.set_unauthenticated(true);
        assert!(matches!(
            checker.check(b"*11\r\n"),
            Err(Error::UnauthenticatedMultibulkLength { offset: 1 })
        ));
        // The limit survives the reset after a frame, and a partial frame.
        assert_eq!(checker.check(b"*1\r\n$1\r\na\r\n").unwrap().argc, 1);
        assert!(checker
            .check(b"*2\r\n$1\r\na\r\n")
            .is_err_and(|e| e.is_incomplete()));
        assert!(matches!(
            checker.check(b"*2\r\n$1\r\na\r\n$16385\r\n"),
            Err(Error::UnauthenticatedBulkLength { offset: 12 })
        ));
        let mut at_limit = b"*10\r\n$16384\r\n".to_vec();
        at_limit.extend(vec![b'x'; UNAUTHENTICATED_MAX_BULK_BYTES]);
        at_limit.extend(b"\r\n");
        for _ in 1..UNAUTHENTICATED_MAX_ARGS {
            at_limit.extend(b"$0\r\n\r\n");
        }
        assert_eq!(checker.check(&at_limit).unwrap().argc, 10);
        checker.set_unauthenticated(false);
        assert!(checker.check(b"*11\r\n").is_err_and(|e| e.is_incomplete()));
        assert!(checker
            .check(b"*11\r\n$16385\r\n")
            .is_err_and(|e| e.is_incomplete()));
    }

    #[test]
    fn overlong_lines() {
        let long = vec![b'a'; MAX_INLINE_BYTES + 1];
        assert!(matches!(
            Checker::new().check(&long),
            Err(Error::InlineTooLong { .. })
        ));
        let mut count = b"*1".to_vec();
        count.resize(count.len() + MAX_INLINE_BYTES + 1, b'1');
        assert_eq!(
            Checker::new().check(&count).unwrap_err().to_string(),
            "Protocol error: too big mbulk count string"
        );
        assert!(matches!(
            Checker::new().check(&long[..MAX_INLINE_BYTES]),
            Err(Error::Incomplete)
        ));
    }

    #[test]
    fn pipelined_buffer_with_many_commands() {
        let mut input = Vec::new();
        for i in 0..1000 {
            if i % 3 == 0 {
                input.extend_from_slice(format!("SET k{i} v{i}\r\n").as_bytes());
            } else {
                let key = format!("k{i}");
                input.extend_from_slice(
                    format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes(),
                );
            }
        }
        let got = parse_all(&input).unwrap();
        assert_eq!(got.len(), 1000);
        assert_eq!(got[999], cmd(&["SET", "k999", "v999"]));
        assert_eq!(got[998], cmd(&["GET", "k998"]));
    }

    /// A buffer of several commands delivered in two pieces, split at every
    /// byte, yields the same commands; the checker resumes across the split.
    #[test]
    fn every_split_point() {
        let input: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nPING\r\n\
            SET \"a b\" 'c'\n*0\r\n*1\r\n$0\r\n\r\nGET x\r\n";
        let whole = parse_all(input).unwrap();
        assert_eq!(whole.len(), 5);
        for split in 0..=input.len() {
            let mut buf = input[..split].to_vec();
            let mut start = 0;
            let mut checker = Checker::new();
            let mut args = Vec::new();
            let mut got = Vec::new();
            let mut fed_rest = false;
            loop {
                match checker.check(&buf[start..]) {
                    Ok(frame) => {
                        parse(&mut buf[start..], &frame, &mut args);
                        if frame.argc > 0 {
                            got.push(
                                args.iter()
                                    .map(|r| buf[start..][r.clone()].to_vec())
                                    .collect::<Vec<_>>(),
                            );
                        }
                        start += frame.len;
                    }
                    Err(Error::Incomplete) if !fed_rest => {
                        buf.extend_from_slice(&input[split..]);
                        fed_rest = true;
                    }
                    Err(Error::Incomplete) => break,
                    Err(err) => panic!("split {split}: {err}"),
                }
            }
            assert_eq!(got, whole, "split at {split}");
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let input = b"*2\r\n$4\r\nECHO\r\n$3\r\nabc\r\n";
        let mut checker = Checker::new();
        for end in 0..input.len() {
            assert!(checker.check(&input[..end]).unwrap_err().is_incomplete());
        }
        let frame = checker.check(input).unwrap();
        assert_eq!(frame.len, input.len());
        assert_eq!(frame.argc, 2);
    }

    #[test]
    fn strict_decimal() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"-12"), Some(-12));
        assert_eq!(parse_decimal(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_decimal(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"01",
            b"-0",
            b" 1",
            b"1 ",
            b"9223372036854775808",
        ] {
            assert_eq!(
                parse_decimal(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Random bytes never panic and never yield a frame longer than
            /// the buffer or an argument outside it.
            #[test]
            fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                let _ = parse_all(&bytes);
            }

            /// Random bytes after a valid multibulk header exercise the deeper states.
            #[test]
            fn random_multibulk_tails(tail in proptest::collection::vec(
                prop_oneof![Just(b'$'), Just(b'\r'), Just(b'\n'), Just(b'1'), Just(b'2'), any::<u8>()], 0..128)) {
                let mut bytes = b"*2\r\n".to_vec();
                bytes.extend_from_slice(&tail);
                let _ = parse_all(&bytes);
            }

            #[test]
            fn random_inline_quotes(line in proptest::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\''), Just(b'\\'), Just(b' '), Just(b'x'), Just(b'4'), Just(b'\n')], 0..64)) {
                let _ = parse_all(&line);
            }
        }
    }
}
