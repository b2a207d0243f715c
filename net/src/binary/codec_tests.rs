//! Round trips, split points, malformed frames and random bytes for the
//! binary codec.

use super::*;
use crate::error::Error;

/// One request of every opcode (SET and SCAN twice, for their flags).
fn every_request() -> Vec<u8> {
    let mut out = Vec::new();
    encode_ping(&mut out, 1, b"hi").unwrap();
    encode_auth(&mut out, 2, b"", b"secret").unwrap();
    encode_get(&mut out, 3, b"k").unwrap();
    encode_set(
        &mut out,
        4,
        b"k",
        b"v\0\xff",
        Some(1500),
        SetCondition::IfAbsent,
    )
    .unwrap();
    encode_set(&mut out, 5, b"k", b"", None, SetCondition::IfPresent).unwrap();
    encode_del(&mut out, 6, b"k").unwrap();
    encode_exists(&mut out, 7, b"k").unwrap();
    encode_incr(&mut out, 8, b"n").unwrap();
    encode_incr_by(&mut out, 9, b"n", -7).unwrap();
    encode_expire(&mut out, 10, b"k", 60_000).unwrap();
    encode_ttl(&mut out, 11, b"k").unwrap();
    encode_mget(&mut out, 12, &[b"a", b"", b"c"]).unwrap();
    encode_mset(&mut out, 13, &[(b"a", b"1"), (b"b", b"2")]).unwrap();
    encode_mdel(&mut out, 14, &[b"a", b"b"]).unwrap();
    encode_scan(&mut out, 15, 0, 100, Some(b"user:*")).unwrap();
    encode_scan(&mut out, 16, 42, 10, None).unwrap();
    encode_call(&mut out, 17, &[&b"APPEND"[..], b"k", b"\0"]).unwrap();
    out
}

fn expected_ops() -> Vec<String> {
    vec![
        "Ping { payload: [104, 105] }",
        "Auth { username: [], password: [115, 101, 99, 114, 101, 116] }",
        "Get { key: [107] }",
        "Set { key: [107], value: [118, 0, 255], ttl_ms: Some(1500), condition: IfAbsent }",
        "Set { key: [107], value: [], ttl_ms: None, condition: IfPresent }",
        "Del { key: [107] }",
        "Exists { key: [107] }",
        "Incr { key: [110] }",
        "IncrBy { key: [110], delta: -7 }",
        "Expire { key: [107], ttl_ms: 60000 }",
        "Ttl { key: [107] }",
        "MGet [[97], [], [99]]",
        "MSet [([97], [49]), ([98], [50])]",
        "MDel [[97], [98]]",
        "Scan { cursor: 0, count: 100, pattern: Some([117, 115, 101, 114, 58, 42]) }",
        "Scan { cursor: 42, count: 10, pattern: None }",
        "Call [[65, 80, 80, 69, 78, 68], [107], [0]]",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// Describes an op, expanding the lazy batch iterators.
fn describe(op: &Op<'_>) -> String {
    match op {
        Op::MGet { keys } => format!("MGet {:?}", keys.clone().collect::<Vec<_>>()),
        Op::MDel { keys } => format!("MDel {:?}", keys.clone().collect::<Vec<_>>()),
        Op::MSet { pairs } => format!("MSet {:?}", pairs.clone().collect::<Vec<_>>()),
        Op::Call { args } => format!("Call {:?}", args.clone().collect::<Vec<_>>()),
        Op::Command { name, args, .. } => {
            format!("Command {name} {:?}", args.clone().collect::<Vec<_>>())
        }
        other => format!("{other:?}"),
    }
}

/// Checks and parses every request in `buf`, as the event loop does.
fn decode_all(buf: &[u8]) -> crate::Result<Vec<(u32, String)>> {
    let mut start = 0;
    let mut got = Vec::new();
    loop {
        let len = match check(&buf[start..], MAX_REQUEST_BODY_BYTES) {
            Ok(len) => len,
            Err(Error::Incomplete) => return Ok(got),
            Err(err) => return Err(err),
        };
        assert!(len <= buf.len() - start, "frame longer than the buffer");
        let request = parse_request(&buf[start..start + len])?;
        assert_eq!(request.op.opcode(), buf[start + 2]);
        got.push((request.request_id, describe(&request.op)));
        start += len;
    }
}

#[test]
fn every_opcode_round_trips() {
    let got = decode_all(&every_request()).unwrap();
    let ids: Vec<u32> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=17).collect::<Vec<_>>());
    let ops: Vec<String> = got.into_iter().map(|(_, op)| op).collect();
    assert_eq!(ops, expected_ops());
}

#[test]
fn header_bytes_are_as_documented() {
    let mut out = Vec::new();
    encode_get(&mut out, 0x0403_0201, b"key").unwrap();
    assert_eq!(
        out,
        [0xFB, 1, 0x10, 0, 1, 2, 3, 4, 7, 0, 0, 0, 3, 0, 0, 0, b'k', b'e', b'y']
    );
}

#[test]
fn every_split_point() {
    let input = every_request();
    let whole = decode_all(&input).unwrap();
    for split in 0..=input.len() {
        let mut got = decode_all(&input[..split]).unwrap();
        // Resume from the first frame the first piece did not complete.
        let consumed: usize = {
            let mut at = 0;
            while let Ok(len) = check(&input[at..split], MAX_REQUEST_BODY_BYTES) {
                at += len;
            }
            at
        };
        got.extend(decode_all(&input[consumed..]).unwrap());
        assert_eq!(got, whole, "split at {split}");
    }
}

#[test]
fn responses_round_trip() {
    let mut request_bytes = Vec::new();
    encode_mget(&mut request_bytes, 77, &[b"a", b"b"]).unwrap();
    let request = parse_request(&request_bytes).unwrap();

    let mut out = Vec::new();
    request
        .respond(&mut out, Status::Ok)
        .u32(2)
        .optional_bytes(Some(b"1"))
        .optional_bytes(None)
        .finish()
        .unwrap();
    let response = parse_response(&out).unwrap();
    assert_eq!(
        (response.opcode, response.status, response.request_id),
        (0x20, Status::Ok, 77)
    );
    let values: Vec<_> = response.values().unwrap().collect();
    assert_eq!(values, vec![Some(&b"1"[..]), None]);

    let mut out = Vec::new();
    request
        .respond(&mut out, Status::Ok)
        .u64(7)
        .u32(1)
        .bytes(b"key")
        .finish()
        .unwrap();
    let page = parse_response(&out).unwrap().scan_page().unwrap();
    assert_eq!(page.cursor, 7);
    assert_eq!(page.keys.collect::<Vec<_>>(), vec![&b"key"[..]]);

    let mut out = Vec::new();
    request
        .respond(&mut out, Status::Ok)
        .i64(-2)
        .finish()
        .unwrap();
    assert_eq!(parse_response(&out).unwrap().integer().unwrap(), -2);

    let mut out = Vec::new();
    request
        .respond(&mut out, Status::Ok)
        .u64(3)
        .finish()
        .unwrap();
    assert_eq!(parse_response(&out).unwrap().count().unwrap(), 3);

    let mut out = Vec::new();
    request
        .respond(&mut out, Status::NotFound)
        .finish()
        .unwrap();
    assert_eq!(parse_response(&out).unwrap().status, Status::NotFound);

    let mut out = Vec::new();
    encode_error(
        &mut out,
        0x55,
        9,
        Status::UnknownOpcode,
        "unknown opcode 0x55",
    );
    let response = parse_response(&out).unwrap();
    assert_eq!(response.status, Status::UnknownOpcode);
    assert_eq!(response.message(), "unknown opcode 0x55");
}

#[test]
fn malformed_frames_give_precise_errors() {
    let text = |bytes: &[u8]| {
        check(bytes, MAX_REQUEST_BODY_BYTES)
            .and_then(|_| parse_request(bytes).map(|_| ()))
            .expect_err("should fail")
            .to_string()
    };
    assert_eq!(text(b"*1\r\n"), "bad magic 0x2a at byte 0");
    assert_eq!(text(&[0xFB, 9]), "unsupported protocol version 9 at byte 1");
    assert_eq!(
        text(&[0xFB, 1, 0x7E, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        "unknown opcode 0x7e"
    );
    assert_eq!(
        text(&[0xFB, 1, 0x10, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]),
        format!("body length 4294967295 exceeds limit {MAX_REQUEST_BODY_BYTES}")
    );
    // GET whose key claims 9 bytes but the body holds 5.
    assert_eq!(
        text(&[0xFB, 1, 0x10, 0, 0, 0, 0, 0, 5, 0, 0, 0, 9, 0, 0, 0, b'k']),
        "truncated field 'key' at body offset 0"
    );
    // SET with a value length field cut short.
    assert_eq!(
        text(&[0xFB, 1, 0x11, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, b'k', 1, 0]),
        "truncated field 'value' at body offset 5"
    );
    assert_eq!(
        text(&[0xFB, 1, 0x10, 0, 0, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0, 0, b'k', b'!']),
        "unexpected trailing bytes at body offset 5"
    );
    assert_eq!(
        text(&[0xFB, 1, 0x10, 0x04, 0, 0, 0, 0, 0, 0, 0, 0]),
        "unknown flags 0x04 for opcode 0x10"
    );
    assert_eq!(
        text(&[0xFB, 1, 0x11, 0x03, 0, 0, 0, 0, 0, 0, 0, 0]),
        "conflicting flags 0x03 for opcode 0x11"
    );
    assert_eq!(
        text(&[0xFB, 1, 0x20, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F]),
        format!("batch of 2147483647 items exceeds limit {MAX_BATCH_ITEMS}")
    );
    // A claimed count far above the keys present fails on the first missing key.
    assert_eq!(
        text(&[0xFB, 1, 0x20, 0, 0, 0, 0, 0, 4, 0, 0, 0, 100, 0, 0, 0]),
        "truncated field 'key' at body offset 4"
    );
}

/// Rows the way the data-model issues will add them, one per reserved range: a row is all a
/// command needs to be encoded, parsed and answered.
static MODEL_ROWS: &[CommandSpec] = &[
    CommandSpec {
        name: "queue.push",
        opcode: 0x40,
        arity: -3,
        body: commands::Body::Arguments,
    },
    CommandSpec {
        name: "stream.future",
        opcode: 0x7E,
        arity: 4,
        body: commands::Body::Arguments,
    },
    CommandSpec {
        name: "doc.future",
        opcode: 0x9F,
        arity: -2,
        body: commands::Body::Arguments,
    },
];

/// Smallest argument list a row's arity allows.
fn minimal_arguments(spec: &CommandSpec) -> Vec<Vec<u8>> {
    let count = (spec.arity.unsigned_abs() as usize).saturating_sub(1);
    (0..count).map(|i| format!("arg{i}").into_bytes()).collect()
}

#[test]
fn every_table_row_parses_into_its_command() {
    commands::check_table(MODEL_ROWS).unwrap();
    let rows = TABLE.iter().chain(MODEL_ROWS).enumerate();
    for (i, spec) in rows {
        let args = minimal_arguments(spec);
        let mut out = Vec::new();
        encode_command(&mut out, i as u32, spec, &args).unwrap();
        assert_eq!(out[2], spec.opcode);
        let table = if TABLE.contains(spec) {
            TABLE
        } else {
            MODEL_ROWS
        };
        let request = super::request::parse_request_in(&out, table).unwrap();
        assert_eq!(request.request_id, i as u32);
        assert_eq!(request.op.opcode(), spec.opcode);
        let Op::Command {
            name, args: parsed, ..
        } = request.op.clone()
        else {
            panic!("{} parsed as {:?}", spec.name, request.op);
        };
        assert_eq!(name, spec.name);
        assert_eq!(parsed.map(<[u8]>::to_vec).collect::<Vec<_>>(), args);
        // The response echoes the row's opcode.
        let mut response = Vec::new();
        request
            .reply_to()
            .respond(&mut response, Status::Ok)
            .value(|value| value.integer(7))
            .finish()
            .unwrap();
        let response = parse_response(&response).unwrap();
        assert_eq!(
            (response.opcode, response.request_id),
            (spec.opcode, i as u32)
        );
        assert_eq!(response.typed_value().unwrap(), Value::Integer(7));
    }
    // A row's opcode in a frame parsed with the real table (which lacks it: 0x7E is a free
    // stream opcode) is unknown, and recoverable: the connection goes on.
    let future = &MODEL_ROWS[1];
    assert!(commands::by_opcode(TABLE, future.opcode).is_none());
    let mut out = Vec::new();
    encode_command(&mut out, 1, future, &minimal_arguments(future)).unwrap();
    let error = parse_request(&out).unwrap_err();
    assert!(matches!(error, Error::UnknownOpcode { opcode: 0x7E }));
    assert!(error.is_recoverable());
}

#[test]
fn table_rows_refuse_flags_and_wrong_arity() {
    let mut out = Vec::new();
    let error = encode_command(&mut out, 1, &MODEL_ROWS[1], &[b"only one"]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "wrong number of arguments for 'stream.future' command (1 after the name)"
    );
    assert!(out.is_empty(), "a refused request leaves nothing behind");
    encode_command(&mut out, 1, &MODEL_ROWS[0], &[b"q", b"m"]).unwrap();
    out[3] = 0x01;
    let error = super::request::parse_request_in(&out, MODEL_ROWS).unwrap_err();
    assert_eq!(error.to_string(), "unknown flags 0x01 for opcode 0x40");
}

#[test]
fn call_carries_any_command_and_a_typed_answer() {
    let mut out = Vec::new();
    encode_call(&mut out, 9, &["SET", "k", "v", "PX", "100"]).unwrap();
    assert_eq!(&out[..4], &[MAGIC, VERSION, 0xF0, 0]);
    let mut body = 5u32.to_le_bytes().to_vec();
    for arg in ["SET", "k", "v", "PX", "100"] {
        body.extend_from_slice(&(arg.len() as u32).to_le_bytes());
        body.extend_from_slice(arg.as_bytes());
    }
    assert_eq!(
        &out[HEADER_LEN..],
        &body[..],
        "body as docs/protocol.md draws it"
    );
    let request = parse_request(&out).unwrap();
    let Op::Call { args } = &request.op else {
        panic!("not a call: {:?}", request.op);
    };
    assert_eq!(args.len(), 5);
    let mut response = Vec::new();
    request
        .respond(&mut response, Status::Ok)
        .value(|value| {
            value.array(2);
            value.simple("OK");
            value.bulk(b"x");
        })
        .finish()
        .unwrap();
    assert_eq!(
        parse_response(&response).unwrap().typed_value().unwrap(),
        Value::Array(vec![Value::Simple("OK".into()), Value::Bulk(b"x".to_vec())])
    );
}

/// The byte-by-byte examples of docs/protocol.md.
#[test]
fn the_documented_examples_are_exact() {
    let mut call = Vec::new();
    encode_call(&mut call, 9, &["GET", "k"]).unwrap();
    assert_eq!(
        call,
        [
            0xFB, 1, 0xF0, 0, 9, 0, 0, 0, 0x10, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, b'G', b'E', b'T',
            1, 0, 0, 0, b'k'
        ]
    );
    let mut value = Vec::new();
    let mut writer = ValueWriter::new(&mut value);
    writer.array(2);
    writer.simple("OK");
    writer.integer(42);
    assert_eq!(
        value,
        [5, 2, 0, 0, 0, 1, 2, 0, 0, 0, b'O', b'K', 3, 42, 0, 0, 0, 0, 0, 0, 0]
    );
    let mut push = Vec::new();
    encode_push(&mut push, 0xF0, |value| {
        value.array(3);
        value.bulk(b"message");
        value.bulk(b"news");
        value.bulk(b"hi");
    })
    .unwrap();
    let mut expected = vec![
        0xFB, 1, 0xF0, 0x20, 0, 0, 0, 0, 0x21, 0, 0, 0, 5, 3, 0, 0, 0,
    ];
    expected.extend_from_slice(b"\x04\x07\0\0\0message\x04\x04\0\0\0news\x04\x02\0\0\0hi");
    assert_eq!(push, expected);
}

#[test]
fn push_frames_are_told_apart_by_their_status_byte() {
    let mut out = Vec::new();
    encode_push(&mut out, Opcode::Call as u8, |value| {
        value.array(3);
        value.bulk(b"message");
        value.bulk(b"news");
        value.bulk(b"hello");
    })
    .unwrap();
    let header = peek_header(&out).unwrap();
    assert_eq!(
        (header.opcode, header.flags_or_status, header.request_id),
        (0xF0, 0x20, 0)
    );
    let push = parse_response(&out).unwrap();
    assert!(push.is_push());
    assert_eq!(
        push.typed_value().unwrap(),
        Value::Array(vec![
            Value::Bulk(b"message".to_vec()),
            Value::Bulk(b"news".to_vec()),
            Value::Bulk(b"hello".to_vec()),
        ])
    );
}

#[test]
fn unknown_opcode_is_the_only_recoverable_error() {
    let err = parse_request(&[0xFB, 1, 0x7F, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
    assert!(err.is_recoverable());
    assert!(!Error::BadMagic { got: 0 }.is_recoverable());
}

#[test]
fn oversized_request_is_refused_by_the_encoder() {
    let mut out = b"keep".to_vec();
    let huge = vec![0u8; MAX_REQUEST_BODY_BYTES];
    let err = encode_set(&mut out, 1, b"k", &huge, None, SetCondition::Always).unwrap_err();
    assert!(matches!(err, Error::BodyTooLong { .. }));
    assert_eq!(out, b"keep", "a refused frame leaves nothing behind");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_all(&bytes);
            let _ = parse_response(&bytes).map(|r| (r.values().map(|v| v.count()), r.scan_page().map(|p| p.keys.count()), r.typed_value()));
        }

        /// Valid headers with random bodies reach the body decoders.
        #[test]
        fn random_bodies_never_panic(
            opcode in prop_oneof![Just(0x01u8), Just(0x02), 0x10u8..0x18, 0x20u8..0x23, Just(0x28), Just(0xF0), Just(0x40), Just(0x61)],
            flag_bits in 0u8..8,
            body in proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(2), any::<u8>()], 0..64),
        ) {
            let mut frame = vec![MAGIC, VERSION, opcode, flag_bits, 0, 0, 0, 0];
            frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
            frame.extend_from_slice(&body);
            if let Ok(request) = parse_request(&frame) {
                let _ = describe(&request.op);
            }
            if let Ok(request) = super::request::parse_request_in(&frame, MODEL_ROWS) {
                let _ = describe(&request.op);
            }
            frame[3] = 0;
            if let Ok(response) = parse_response(&frame) {
                let _ = response.values().map(|v| v.count());
                let _ = response.scan_page().map(|p| p.keys.count());
                let _ = response.typed_value();
            }
        }
    }
}
