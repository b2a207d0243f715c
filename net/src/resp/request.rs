//! Encoding requests, the client's side of RESP: a command as an array of bulk strings, what
//! `parse` reads on the server. Used by the tools and tests that speak RESP to a server
//! (flin-bench, the crash harness, the Redis differential tester, integration tests).

use super::reply::format_i64;

/// Appends an array header, `*<len>\r\n`.
pub fn encode_array_header(out: &mut Vec<u8>, len: usize) {
    out.push(b'*');
    out.extend_from_slice(format_i64(len as i64, &mut [0; 20]));
    out.extend_from_slice(b"\r\n");
}

/// Appends one bulk string, `$<len>\r\n<bytes>\r\n`.
pub fn encode_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(format_i64(bytes.len() as i64, &mut [0; 20]));
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// Appends a whole command: `args[0]` is its name.
pub fn encode_command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    encode_array_header(out, args.len());
    for arg in args {
        encode_bulk(out, arg.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{parse, Checker, Frame};

    #[test]
    fn a_command_reads_back_through_the_parser() {
        let mut out = Vec::new();
        encode_command(&mut out, &[&b"SET"[..], b"k", b"", b"with\r\nbytes"]);
        assert_eq!(
            out,
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n$11\r\nwith\r\nbytes\r\n"
        );
        let mut checker = Checker::default();
        let frame: Frame = checker.check(&out).expect("a whole frame");
        assert_eq!(frame.len, out.len());
        let mut ranges = Vec::new();
        parse(&mut out, &frame, &mut ranges);
        let args: Vec<&[u8]> = ranges.iter().map(|range| &out[range.clone()]).collect();
        assert_eq!(args, [&b"SET"[..], b"k", b"", b"with\r\nbytes"]);
    }
}
