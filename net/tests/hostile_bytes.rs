//! Random bytes through the RESP and binary request parsers as a connection feeds them: in
//! random chunks through the resumable checker. Whatever the chunking, the same commands come
//! out and the same error ends them; nothing panics; a frame never claims more than the buffer
//! holds; every error offset lies inside the bytes received.
//!
//! Cases: proptest's default (256), or `PROPTEST_CASES=100000` for a long run. The fuzz targets
//! in `fuzz/` drive the same parsers (docs/reliability.md).

use flin_net::binary::{self, parse_request, parse_response, MAX_REQUEST_BODY_BYTES};
use flin_net::resp::{self, Checker};
use flin_net::Error;
use proptest::prelude::*;

/// Every command in `input`, fed `chunks` bytes at a time (cycling through the sizes), and the
/// error that stopped them, if any.
fn resp_commands(input: &[u8], chunks: &[usize]) -> (Vec<Vec<Vec<u8>>>, Option<String>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut start = 0;
    let mut fed = 0;
    let mut checker = Checker::new();
    let mut ranges = Vec::new();
    let mut commands = Vec::new();
    let mut sizes = chunks.iter().cycle();
    while fed < input.len() {
        let size = (*sizes.next().unwrap()).max(1);
        let more = &input[fed..(fed + size).min(input.len())];
        buf.extend_from_slice(more);
        fed += more.len();
        loop {
            match checker.check(&buf[start..]) {
                Ok(frame) => {
                    assert!(
                        frame.len <= buf.len() - start,
                        "frame longer than the buffer"
                    );
                    resp::parse(&mut buf[start..], &frame, &mut ranges);
                    assert_eq!(ranges.len(), frame.argc);
                    let frame_bytes = &buf[start..start + frame.len];
                    if frame.argc > 0 {
                        commands.push(
                            ranges
                                .iter()
                                .map(|r| frame_bytes[r.clone()].to_vec())
                                .collect(),
                        );
                    }
                    start += frame.len;
                }
                Err(Error::Incomplete) => break,
                Err(error) => {
                    assert_offset_inside(&error, buf.len() - start);
                    return (commands, Some(error.to_string()));
                }
            }
        }
    }
    (commands, None)
}

fn assert_offset_inside(error: &Error, received: usize) {
    let offset = match *error {
        Error::InvalidMultibulkLength { offset }
        | Error::InvalidBulkLength { offset }
        | Error::ExpectedBulk { offset, .. }
        | Error::ExpectedCrlf { offset }
        | Error::UnbalancedQuotes { offset } => offset,
        _ => return,
    };
    assert!(
        offset < received,
        "error {error} names byte {offset} of {received} received"
    );
}

fn resp_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            Just(b'*'),
            Just(b'$'),
            Just(b'\r'),
            Just(b'\n'),
            Just(b'1'),
            Just(b'3'),
            Just(b'-'),
            Just(b'"'),
            Just(b' '),
            Just(b'\\'),
            any::<u8>(),
        ],
        0..256,
    )
}

proptest! {
    #[test]
    fn resp_chunking_changes_nothing(input in resp_bytes(), chunks in proptest::collection::vec(1usize..17, 1..5)) {
        let whole = resp_commands(&input, &[input.len().max(1)]);
        let chunked = resp_commands(&input, &chunks);
        prop_assert_eq!(whole, chunked);
    }

    /// Valid commands with random bytes spliced in somewhere.
    #[test]
    fn resp_damaged_commands(
        args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 1..5),
        at in any::<prop::sample::Index>(), junk in proptest::collection::vec(any::<u8>(), 1..4),
        chunks in proptest::collection::vec(1usize..9, 1..4),
    ) {
        let mut input = format!("*{}\r\n", args.len()).into_bytes();
        for arg in &args {
            input.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            input.extend_from_slice(arg);
            input.extend_from_slice(b"\r\n");
        }
        let clean = resp_commands(&input, &chunks);
        prop_assert_eq!(clean, (vec![args.clone()], None));
        let at = at.index(input.len());
        input.splice(at..at, junk);
        prop_assert_eq!(resp_commands(&input, &[input.len()]), resp_commands(&input, &chunks));
    }

    #[test]
    fn binary_frames_fed_in_chunks(input in proptest::collection::vec(
        prop_oneof![Just(0xFBu8), Just(1), Just(0), Just(0x11), Just(4), any::<u8>()], 0..200),
        chunk in 1usize..20,
    ) {
        let mut received = 0;
        let mut start = 0;
        while received < input.len() {
            received = (received + chunk).min(input.len());
            loop {
                let buf = &input[start..received];
                match binary::check(buf, MAX_REQUEST_BODY_BYTES) {
                    Ok(len) => {
                        prop_assert!(len <= buf.len());
                        let body_len = len - binary::HEADER_LEN;
                        match parse_request(&buf[..len]) {
                            Ok(_) => {}
                            Err(Error::Truncated { offset, .. } | Error::TrailingBytes { offset }) => {
                                prop_assert!(offset <= body_len, "offset {} past body {}", offset, body_len);
                            }
                            Err(_) => {}
                        }
                        if let Ok(response) = parse_response(&buf[..len]) {
                            let _ = response.typed_value();
                        }
                        start += len;
                    }
                    Err(Error::Incomplete) => break,
                    Err(_) => return Ok(()),
                }
            }
        }
    }
}

proptest! {
    /// Typed values (CALL and table responses, push frames) from bytes a hostile server
    /// could send: tags, counts and lengths mixed with anything. Decoding returns a value or
    /// an error; it never panics, never recurses past the depth limit, and never allocates
    /// from a count the body cannot hold.
    #[test]
    fn typed_values_from_hostile_bytes(body in proptest::collection::vec(
        prop_oneof![0u8..12, Just(0xFF), Just(0x05), any::<u8>()], 0..512)) {
        if let Ok(value) = binary::decode_value(&body) {
            let mut again = Vec::new();
            binary::ValueWriter::new(&mut again).value(&value);
            prop_assert_eq!(again, body, "a decoded value encodes back to its bytes");
        }
    }
}
