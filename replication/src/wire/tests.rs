use proptest::prelude::*;

use super::*;
use crate::rng::Rng;

fn message(body: Body) -> Message {
    Message {
        from: 1,
        to: 2,
        term: 7,
        body,
    }
}

fn entry(term: u64, index: u64, data: &[u8]) -> Entry {
    Entry {
        term,
        index,
        data: data.into(),
    }
}

/// One message of every body, with values that make a swapped field visible.
fn every_body() -> Vec<Message> {
    vec![
        message(Body::PreVote {
            last_index: 11,
            last_term: 12,
        }),
        message(Body::PreVoteResponse { granted: true }),
        message(Body::PreVoteResponse { granted: false }),
        message(Body::Vote {
            last_index: 13,
            last_term: 14,
            transfer: true,
        }),
        message(Body::VoteResponse { granted: true }),
        message(Body::Append {
            prev_index: 15,
            prev_term: 16,
            entries: vec![],
            commit: 17,
        }),
        message(Body::Append {
            prev_index: 15,
            prev_term: 6,
            entries: vec![entry(6, 16, b"abc"), entry(7, 17, b""), entry(7, 18, b"xy")],
            commit: 16,
        }),
        message(Body::AppendAccepted { match_index: 19 }),
        message(Body::AppendRejected {
            prev_index: 20,
            hint_index: 21,
            hint_term: 22,
        }),
        message(Body::Heartbeat {
            commit: 23,
            round: 7,
        }),
        message(Body::HeartbeatResponse { round: 7 }),
        message(Body::TimeoutNow),
        message(Body::InstallSnapshot {
            index: 29,
            term: 31,
            membership: Membership::new([1, 2, 3]),
        }),
        message(Body::InstallSnapshot {
            index: 32,
            term: 33,
            membership: Membership::with_learners([2, 5], [4, 9, 1 << 40]),
        }),
    ]
}

fn encoded(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode(message, &mut out);
    out
}

#[test]
fn every_body_round_trips() {
    for message in every_body() {
        let bytes = encoded(&message);
        assert_eq!(bytes.len(), encoded_len(&message), "{message:?}");
        assert_eq!(decode(&bytes), Ok(message.clone()));
    }
}

#[test]
fn header_bytes_are_as_documented() {
    let bytes = encoded(&Message {
        from: 0x0102,
        to: 3,
        term: u64::MAX,
        body: Body::Heartbeat {
            commit: 5,
            round: 2,
        },
    });
    let mut expected = vec![1, 8, 0x02, 0x01, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0];
    expected.extend_from_slice(&[0xFF; 8]);
    expected.extend_from_slice(&[5, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(bytes, expected);
}

/// The fields of `message`'s encoding in order, as (name, offset, width): the table in
/// docs/replication.md, written out a second time so the decoder's errors can be checked.
fn layout(message: &Message) -> Vec<(String, usize, usize)> {
    let mut fields = Vec::new();
    let mut at = 0;
    let mut field = |name: &str, width: usize| {
        fields.push((name.to_string(), at, width));
        at += width;
    };
    field("version", 1);
    field("body tag", 1);
    field("from", 8);
    field("to", 8);
    field("term", 8);
    match &message.body {
        Body::PreVote { .. } => {
            field("last_index", 8);
            field("last_term", 8);
        }
        Body::PreVoteResponse { .. } | Body::VoteResponse { .. } => field("granted", 1),
        Body::Vote { .. } => {
            field("last_index", 8);
            field("last_term", 8);
            field("transfer", 1);
        }
        Body::Append { entries, .. } => {
            field("prev_index", 8);
            field("prev_term", 8);
            field("commit", 8);
            field("entry count", 4);
            for (i, entry) in entries.iter().enumerate() {
                field(&format!("entries[{i}].term"), 8);
                field(&format!("entries[{i}].index"), 8);
                field(&format!("entries[{i}].data length"), 4);
                field(&format!("entries[{i}].data"), entry.data.len());
            }
        }
        Body::AppendAccepted { .. } => field("match_index", 8),
        Body::AppendRejected { .. } => {
            field("prev_index", 8);
            field("hint_index", 8);
            field("hint_term", 8);
        }
        Body::Heartbeat { .. } => {
            field("commit", 8);
            field("round", 8);
        }
        Body::HeartbeatResponse { .. } => field("round", 8),
        Body::TimeoutNow => {}
        Body::InstallSnapshot { membership, .. } => {
            field("index", 8);
            field("term", 8);
            field("voter count", 4);
            for i in 0..membership.voters().count() {
                field(&format!("voters[{i}]"), 8);
            }
            field("learner count", 4);
            for i in 0..membership.learners().count() {
                field(&format!("learners[{i}]"), 8);
            }
        }
    }
    fields
}

/// Cutting a valid encoding anywhere names the field the cut falls in, where it starts, and
/// how many of its bytes are there; an append whose count claims more entries than the rest
/// could hold is refused at the count.
#[test]
fn every_truncation_names_its_field() {
    for message in every_body() {
        let bytes = encoded(&message);
        let fields = layout(&message);
        assert_eq!(fields.last().map(|(_, at, w)| at + w), Some(bytes.len()));
        for cut in 0..bytes.len() {
            let error = decode(&bytes[..cut]).expect_err("a truncated message decodes");
            let (name, offset, width) = fields
                .iter()
                .find(|(_, at, width)| at + width > cut)
                .cloned()
                .expect("the cut is inside a field");
            let expected = match &message.body {
                Body::Append { entries, .. } if offset >= MESSAGE_HEADER_LEN + APPEND_FIXED_LEN => {
                    let count_at = MESSAGE_HEADER_LEN + 24;
                    let rest = cut - (count_at + 4);
                    if rest < entries.len() * ENTRY_HEADER_LEN {
                        WireError::new(
                            "entry count",
                            count_at,
                            WireErrorKind::Truncated {
                                needed: entries.len() * ENTRY_HEADER_LEN,
                                available: rest,
                            },
                        )
                    } else {
                        let kind = WireErrorKind::Truncated {
                            needed: width,
                            available: cut - offset,
                        };
                        WireError::new(name, offset, kind)
                    }
                }
                // A count claiming more ids than the rest holds is refused at the count.
                Body::InstallSnapshot { .. } if name.ends_with(']') => {
                    let list = if name.starts_with("voters") {
                        "voter"
                    } else {
                        "learner"
                    };
                    let count_field = format!("{list} count");
                    let (_, count_at, _) = fields
                        .iter()
                        .find(|(field, _, _)| *field == count_field)
                        .cloned()
                        .expect("a count");
                    let ids = fields
                        .iter()
                        .filter(|(field, _, _)| field.starts_with(&format!("{list}s[")))
                        .count();
                    WireError::new(
                        count_field,
                        count_at,
                        WireErrorKind::Truncated {
                            needed: ids * 8,
                            available: cut - (count_at + 4),
                        },
                    )
                }
                _ => WireError::new(
                    name,
                    offset,
                    WireErrorKind::Truncated {
                        needed: width,
                        available: cut - offset,
                    },
                ),
            };
            assert_eq!(error, expected, "{message:?} cut at {cut}");
        }
    }
}

#[test]
fn trailing_bytes_are_refused() {
    for message in every_body() {
        let mut bytes = encoded(&message);
        let len = bytes.len();
        bytes.push(0);
        assert_eq!(
            decode(&bytes),
            Err(WireError::new(
                "message",
                len,
                WireErrorKind::TrailingBytes { count: 1 }
            ))
        );
    }
}

#[test]
fn unknown_version_tag_and_bool_are_named() {
    let mut bytes = encoded(&message(Body::VoteResponse { granted: true }));
    bytes[0] = 2;
    assert_eq!(
        decode(&bytes).unwrap_err(),
        WireError::new("version", 0, WireErrorKind::UnknownVersion(2))
    );
    bytes[0] = VERSION;
    bytes[1] = 0;
    assert_eq!(
        decode(&bytes).unwrap_err(),
        WireError::new("body tag", 1, WireErrorKind::UnknownTag(0))
    );
    bytes[1] = 12;
    assert_eq!(
        decode(&bytes).unwrap_err().kind,
        WireErrorKind::UnknownTag(12)
    );
    bytes[1] = tag::VOTE_RESPONSE;
    bytes[MESSAGE_HEADER_LEN] = 2;
    let error = decode(&bytes).unwrap_err();
    assert_eq!(
        error,
        WireError::new("granted", MESSAGE_HEADER_LEN, WireErrorKind::InvalidBool(2))
    );
    assert_eq!(error.to_string(), "invalid boolean 2 in granted at byte 26");
}

/// A claimed count or length far beyond the input is refused before anything is reserved
/// (a 4-billion-entry vector would abort the process, not return an error).
#[test]
fn huge_claims_are_refused_without_allocating() {
    let mut bytes = encoded(&message(Body::Append {
        prev_index: 0,
        prev_term: 0,
        entries: vec![entry(1, 1, b"x")],
        commit: 0,
    }));
    let count_at = MESSAGE_HEADER_LEN + 24;
    bytes[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let error = decode(&bytes).unwrap_err();
    assert_eq!(
        (error.field.as_str(), error.offset),
        ("entry count", count_at)
    );

    bytes[count_at..count_at + 4].copy_from_slice(&1u32.to_le_bytes());
    let length_at = count_at + 4 + 16;
    bytes[length_at..length_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        decode(&bytes).unwrap_err(),
        WireError::new(
            "entries[0].data length",
            length_at,
            WireErrorKind::OverLimit {
                length: u32::MAX as u64,
                limit: MESSAGE_BYTES_MAX as u64
            }
        )
    );
    let claimed = (MESSAGE_BYTES_MAX as u32).to_le_bytes();
    bytes[length_at..length_at + 4].copy_from_slice(&claimed);
    assert_eq!(
        decode(&bytes).unwrap_err(),
        WireError::new(
            "entries[0].data",
            length_at + 4,
            WireErrorKind::Truncated {
                needed: MESSAGE_BYTES_MAX,
                available: 1
            }
        )
    );
}

#[test]
fn a_large_entry_round_trips() {
    let data: Vec<u8> = (0..(5 << 20)).map(|i| (i % 251) as u8).collect();
    let message = message(Body::Append {
        prev_index: 1,
        prev_term: 1,
        entries: vec![entry(2, 2, &data)],
        commit: 1,
    });
    assert_eq!(decode(&encoded(&message)), Ok(message));
}

#[test]
#[should_panic(expected = "over MESSAGE_BYTES_MAX")]
fn encoding_over_the_limit_is_a_bug() {
    let message = message(Body::Append {
        prev_index: 1,
        prev_term: 1,
        entries: vec![entry(2, 2, &vec![0; MESSAGE_BYTES_MAX])],
        commit: 1,
    });
    encode(&message, &mut Vec::new());
}

/// Random mutations of valid encodings (flipped bytes, cuts, insertions) never panic, and
/// whatever decodes re-encodes to the same bytes: the encoding has one form per message.
#[test]
fn mutated_encodings_never_panic() {
    let valid: Vec<Vec<u8>> = every_body().iter().map(encoded).collect();
    let cases = std::env::var("WIRE_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(5_000u64);
    for seed in 0..cases {
        let mut rng = Rng::new(seed);
        let mut bytes = rng.pick(&valid);
        for _ in 0..=rng.below(4) {
            let at = rng.below(bytes.len() as u64 + 1) as usize;
            match rng.below(4) {
                0 if at < bytes.len() => bytes[at] = rng.next_u64() as u8,
                1 => bytes.truncate(at),
                2 => bytes.insert(at, rng.next_u64() as u8),
                _ if at + 4 <= bytes.len() => {
                    // A 4-byte field (a count or a length) set to something large.
                    let value = (rng.next_u64() as u32).to_le_bytes();
                    bytes[at..at + 4].copy_from_slice(&value);
                }
                _ => {}
            }
        }
        if let Ok(message) = decode(&bytes) {
            assert_eq!(encoded(&message), bytes, "seed {seed}");
        }
        let mut reader = FrameReader::new();
        reader.push(&bytes);
        while let Some(Ok(_)) = reader.next() {}
    }
}

fn arbitrary_entry() -> impl Strategy<Value = Entry> {
    (
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(term, index, data)| Entry {
            term,
            index,
            data: data.into(),
        })
}

fn arbitrary_body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(last_index, last_term)| Body::PreVote {
            last_index,
            last_term
        }),
        any::<bool>().prop_map(|granted| Body::PreVoteResponse { granted }),
        (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
            |(last_index, last_term, transfer)| Body::Vote {
                last_index,
                last_term,
                transfer
            }
        ),
        any::<bool>().prop_map(|granted| Body::VoteResponse { granted }),
        (
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(arbitrary_entry(), 0..8),
            any::<u64>()
        )
            .prop_map(|(prev_index, prev_term, entries, commit)| Body::Append {
                prev_index,
                prev_term,
                entries,
                commit
            }),
        any::<u64>().prop_map(|match_index| Body::AppendAccepted { match_index }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(prev_index, hint_index, hint_term)| Body::AppendRejected {
                prev_index,
                hint_index,
                hint_term
            }
        ),
        (any::<u64>(), any::<u64>()).prop_map(|(commit, round)| Body::Heartbeat { commit, round }),
        any::<u64>().prop_map(|round| Body::HeartbeatResponse { round }),
        Just(Body::TimeoutNow),
        (any::<u64>(), any::<u64>(), arbitrary_membership()).prop_map(
            |(index, term, membership)| Body::InstallSnapshot {
                index,
                term,
                membership
            }
        ),
    ]
}

fn arbitrary_membership() -> impl Strategy<Value = Membership> {
    (
        prop::collection::btree_set(1u64..64, 1..6),
        prop::collection::btree_set(1u64..64, 0..4),
    )
        .prop_map(|(voters, learners)| {
            let learners: Vec<NodeId> = learners.difference(&voters).copied().collect();
            Membership::with_learners(voters, learners)
        })
}

fn arbitrary_message() -> impl Strategy<Value = Message> {
    (any::<u64>(), any::<u64>(), any::<u64>(), arbitrary_body()).prop_map(
        |(from, to, term, body)| Message {
            from,
            to,
            term,
            body,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn any_message_round_trips(message in arbitrary_message()) {
        let bytes = encoded(&message);
        prop_assert_eq!(bytes.len(), encoded_len(&message));
        prop_assert_eq!(decode(&bytes), Ok(message));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
        let _ = decode_hello(&bytes);
        let mut reader = FrameReader::new();
        reader.push(&bytes);
        let _ = reader.take_hello();
        for _ in 0..bytes.len() {
            if !matches!(reader.next(), Some(Ok(_))) {
                break;
            }
        }
    }

    #[test]
    fn random_messages_survive_any_split(
        messages in prop::collection::vec(arbitrary_message(), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut stream = Vec::new();
        for message in &messages {
            write_frame(message, &mut stream);
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut reader = FrameReader::new();
        let mut read = Vec::new();
        let mut from = 0;
        for cut in cuts.into_iter().chain([stream.len()]) {
            reader.push(&stream[from..cut]);
            from = cut;
            while let Some(result) = reader.next() {
                read.push(result.expect("a valid stream decodes"));
            }
        }
        prop_assert_eq!(read, messages);
        prop_assert_eq!(reader.buffered(), 0);
    }
}

// ---------------------------------------------------------------------------------------------
// Frames and the hello

fn frames(messages: &[Message]) -> Vec<u8> {
    let mut stream = Vec::new();
    for message in messages {
        write_frame(message, &mut stream);
    }
    stream
}

#[test]
fn a_frame_is_a_length_and_an_encoding() {
    let message = message(Body::TimeoutNow);
    let mut frame = Vec::new();
    write_frame(&message, &mut frame);
    assert_eq!(frame[..4], (MESSAGE_HEADER_LEN as u32).to_le_bytes());
    assert_eq!(frame[4..], encoded(&message));
}

#[test]
fn every_split_point_yields_the_same_messages() {
    let messages = every_body();
    let stream = frames(&messages);
    for split in 0..=stream.len() {
        let mut reader = FrameReader::new();
        let mut read = Vec::new();
        for part in [&stream[..split], &stream[split..]] {
            reader.push(part);
            while let Some(result) = reader.next() {
                read.push(result.unwrap());
            }
        }
        assert_eq!(read, messages, "split at {split}");
        assert_eq!(reader.buffered(), 0);
    }
}

#[test]
fn byte_at_a_time_yields_each_message_once_complete() {
    let messages = every_body();
    let stream = frames(&messages);
    let ends: Vec<usize> = messages
        .iter()
        .scan(0, |end, message| {
            *end += FRAME_PREFIX_LEN + encoded_len(message);
            Some(*end)
        })
        .collect();
    let mut reader = FrameReader::new();
    let mut read = Vec::new();
    for (at, byte) in stream.iter().enumerate() {
        reader.push(&[*byte]);
        if let Some(result) = reader.next() {
            assert!(ends.contains(&(at + 1)), "a message before its last byte");
            read.push(result.unwrap());
        }
        assert!(reader.next().is_none());
    }
    assert_eq!(read, messages);
}

#[test]
fn a_frame_over_the_limit_is_refused_from_its_prefix() {
    let mut stream = frames(&[message(Body::TimeoutNow)]);
    let first_len = stream.len();
    stream.extend_from_slice(&(MESSAGE_BYTES_MAX as u32 + 1).to_le_bytes());
    let mut reader = FrameReader::new();
    reader.push(&stream);
    assert!(matches!(reader.next(), Some(Ok(_))));
    let expected = WireError::new(
        "frame length",
        first_len,
        WireErrorKind::OverLimit {
            length: MESSAGE_BYTES_MAX as u64 + 1,
            limit: MESSAGE_BYTES_MAX as u64,
        },
    );
    assert_eq!(reader.next(), Some(Err(expected.clone())));
    // The stream is out of step: the error stays.
    reader.push(&frames(&[message(Body::TimeoutNow)]));
    assert_eq!(reader.next(), Some(Err(expected)));
}

#[test]
fn a_bad_frame_error_counts_from_the_stream_start() {
    let mut stream = frames(&[message(Body::TimeoutNow)]);
    let second = stream.len();
    let mut bad = frames(&[message(Body::TimeoutNow)]);
    bad[FRAME_PREFIX_LEN + 1] = 99;
    stream.extend_from_slice(&bad);
    let mut reader = FrameReader::new();
    reader.push(&stream);
    assert!(matches!(reader.next(), Some(Ok(_))));
    assert_eq!(
        reader.next(),
        Some(Err(WireError::new(
            "body tag",
            second + FRAME_PREFIX_LEN + 1,
            WireErrorKind::UnknownTag(99)
        )))
    );
}

#[test]
fn hello_round_trips_and_is_checked() {
    let mut hello = Vec::new();
    encode_hello(3, &mut hello);
    assert_eq!(hello.len(), HELLO_LEN);
    assert_eq!(&hello[..9], b"FLINRAFT\x01");
    assert_eq!(decode_hello(&hello), Ok(3));

    for cut in 0..HELLO_LEN {
        let error = decode_hello(&hello[..cut]).unwrap_err();
        assert!(
            matches!(error.kind, WireErrorKind::Truncated { .. }),
            "{cut}"
        );
    }
    let mut bad = hello.clone();
    bad[0] = b'X';
    assert_eq!(
        decode_hello(&bad).unwrap_err().kind,
        WireErrorKind::BadMagic
    );
    let mut bad = hello.clone();
    bad[8] = 2;
    assert_eq!(
        decode_hello(&bad).unwrap_err(),
        WireError::new("hello version", 8, WireErrorKind::UnknownVersion(2))
    );
    let mut zero = Vec::new();
    encode_hello(0, &mut zero);
    assert_eq!(
        decode_hello(&zero).unwrap_err(),
        WireError::new("node id", 9, WireErrorKind::ZeroNodeId)
    );
}

#[test]
fn a_connection_is_a_hello_then_frames() {
    let messages = every_body();
    let mut stream = Vec::new();
    encode_hello(2, &mut stream);
    stream.extend_from_slice(&frames(&messages));
    for split in 0..=stream.len() {
        let mut reader = FrameReader::new();
        reader.push(&stream[..split]);
        let early = reader.take_hello();
        assert_eq!(early.is_some(), split >= HELLO_LEN);
        reader.push(&stream[split..]);
        let hello = early.or_else(|| reader.take_hello());
        assert_eq!(hello, Some(Ok(2)));
        let mut read = Vec::new();
        while let Some(result) = reader.next() {
            read.push(result.unwrap());
        }
        assert_eq!(read, messages, "split at {split}");
    }
}

// ---- Membership changes inside entry data ----

fn conf_change(kind: ConfChangeKind, node: NodeId) -> ConfChange {
    ConfChange { kind, node }
}

#[test]
fn a_conf_change_round_trips_with_its_payload_and_bytes_as_documented() {
    for (kind, byte) in [
        (ConfChangeKind::AddLearner, 1),
        (ConfChangeKind::PromoteLearner, 2),
        (ConfChangeKind::RemoveNode, 3),
    ] {
        let change = conf_change(kind, 0x0102);
        let mut data = Vec::new();
        encode_conf_change(change, b"ops", &mut data);
        let mut expected = b"FLINCONF".to_vec();
        expected.extend_from_slice(&[1, byte, 2, 1, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(b"ops");
        assert_eq!(data, expected);
        assert_eq!(decode_conf_change(&data), Some(Ok((change, &b"ops"[..]))));
    }
    assert_eq!(decode_conf_change(b"n|k|get"), None);
    assert_eq!(decode_conf_change(b""), None);
}

#[test]
fn a_broken_conf_change_header_is_named() {
    let mut data = Vec::new();
    encode_conf_change(conf_change(ConfChangeKind::RemoveNode, 3), &[], &mut data);
    for cut in CONF_CHANGE_MAGIC.len()..CONF_CHANGE_HEADER_LEN {
        let error = decode_conf_change(&data[..cut])
            .expect("prefixed")
            .expect_err("truncated");
        assert!(
            matches!(error.kind, WireErrorKind::Truncated { .. }),
            "{error}"
        );
    }
    let mut bad = data.clone();
    bad[8] = 9;
    let error = decode_conf_change(&bad).unwrap().unwrap_err();
    assert_eq!(
        (error.field.as_str(), error.offset, error.kind),
        ("change version", 8, WireErrorKind::UnknownVersion(9))
    );
    let mut bad = data.clone();
    bad[9] = 0;
    let error = decode_conf_change(&bad).unwrap().unwrap_err();
    assert_eq!(error.kind, WireErrorKind::UnknownTag(0));
    let mut bad = data;
    bad[10] = 0;
    let error = decode_conf_change(&bad).unwrap().unwrap_err();
    assert_eq!(
        (error.field.as_str(), error.offset, error.kind),
        ("change node id", 10, WireErrorKind::ZeroNodeId)
    );
}

// ---- InstallSnapshot's membership ----

/// An InstallSnapshot's bytes with `voters` and `learners` written as given (the encoder
/// only ever writes valid ones).
fn install_snapshot_bytes(voters: &[u64], learners: &[u64]) -> Vec<u8> {
    let mut bytes = encoded(&message(Body::InstallSnapshot {
        index: 5,
        term: 2,
        membership: Membership::new([1]),
    }));
    bytes.truncate(MESSAGE_HEADER_LEN + 16);
    for list in [voters, learners] {
        bytes.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for id in list {
            bytes.extend_from_slice(&id.to_le_bytes());
        }
    }
    bytes
}

/// Where the voter count starts.
const VOTER_COUNT_AT: usize = MESSAGE_HEADER_LEN + 16;

#[test]
fn install_snapshot_bytes_are_as_documented() {
    let bytes = encoded(&message(Body::InstallSnapshot {
        index: 0x0105,
        term: 3,
        membership: Membership::with_learners([1, 2], [0x0304]),
    }));
    let body = &bytes[MESSAGE_HEADER_LEN..];
    let mut expected = vec![0x05, 0x01, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0];
    expected.extend_from_slice(&[2, 0, 0, 0]);
    expected.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend_from_slice(&[1, 0, 0, 0]);
    expected.extend_from_slice(&[0x04, 0x03, 0, 0, 0, 0, 0, 0]);
    assert_eq!(body, expected);
    assert_eq!(bytes[1], 11, "the tag");
    assert_eq!(body.len(), INSTALL_SNAPSHOT_FIXED_LEN + 3 * 8);
    assert_eq!(
        install_snapshot_bytes(&[1, 2], &[0x0304])[VOTER_COUNT_AT..],
        body[16..]
    );
}

#[test]
fn a_membership_of_the_most_members_round_trips() {
    let voters = 1..=1000u64;
    let learners = 1001..=Membership::MEMBERS_MAX as u64;
    let message = message(Body::InstallSnapshot {
        index: 1,
        term: 1,
        membership: Membership::with_learners(voters.clone(), learners.clone()),
    });
    assert_eq!(decode(&encoded(&message)), Ok(message));
    // One more is refused at the learner count, before any id is read.
    let learners: Vec<u64> = (1001..=Membership::MEMBERS_MAX as u64 + 1).collect();
    let voters: Vec<u64> = voters.collect();
    let learner_count_at = VOTER_COUNT_AT + 4 + 8 * voters.len();
    assert_eq!(
        decode(&install_snapshot_bytes(&voters, &learners)),
        Err(WireError::new(
            "learner count",
            learner_count_at,
            WireErrorKind::OverLimit {
                length: 25,
                limit: 24
            }
        ))
    );
}

#[test]
fn too_many_ids_are_refused_at_their_count_without_allocating() {
    // A count over the limit, whatever follows.
    let mut bytes = install_snapshot_bytes(&[1], &[]);
    bytes[VOTER_COUNT_AT..VOTER_COUNT_AT + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        decode(&bytes),
        Err(WireError::new(
            "voter count",
            VOTER_COUNT_AT,
            WireErrorKind::OverLimit {
                length: u32::MAX as u64,
                limit: Membership::MEMBERS_MAX as u64
            }
        ))
    );
    // A count within the limit that claims more ids than the bytes that remain.
    bytes[VOTER_COUNT_AT..VOTER_COUNT_AT + 4].copy_from_slice(&3u32.to_le_bytes());
    assert_eq!(
        decode(&bytes),
        Err(WireError::new(
            "voter count",
            VOTER_COUNT_AT,
            WireErrorKind::Truncated {
                needed: 24,
                available: 12
            }
        ))
    );
    let bytes = install_snapshot_bytes(&[1, 2], &[3]);
    let learner_count_at = VOTER_COUNT_AT + 4 + 16;
    let mut cut = bytes[..bytes.len() - 1].to_vec();
    assert_eq!(
        decode(&cut),
        Err(WireError::new(
            "learner count",
            learner_count_at,
            WireErrorKind::Truncated {
                needed: 8,
                available: 7
            }
        ))
    );
    cut.truncate(learner_count_at + 2);
    assert_eq!(
        decode(&cut).unwrap_err().to_string(),
        format!("truncated learner count at byte {learner_count_at}: needs 4 bytes, 2 left")
    );
}

#[test]
fn a_broken_membership_is_named() {
    let voters_at = VOTER_COUNT_AT + 4;
    let cases: Vec<(Vec<u8>, WireError)> = vec![
        (
            install_snapshot_bytes(&[], &[4]),
            WireError::new("voter count", VOTER_COUNT_AT, WireErrorKind::NoVoters),
        ),
        (
            install_snapshot_bytes(&[1, 0], &[]),
            WireError::new("voters[1]", voters_at + 8, WireErrorKind::ZeroNodeId),
        ),
        (
            install_snapshot_bytes(&[2, 2], &[]),
            WireError::new(
                "voters[1]",
                voters_at + 8,
                WireErrorKind::NodeIdNotAscending { previous: 2, id: 2 },
            ),
        ),
        (
            install_snapshot_bytes(&[1], &[5, 3]),
            WireError::new(
                "learners[1]",
                voters_at + 8 + 4 + 8,
                WireErrorKind::NodeIdNotAscending { previous: 5, id: 3 },
            ),
        ),
        (
            install_snapshot_bytes(&[1, 3], &[2, 3]),
            WireError::new(
                "learners[1]",
                voters_at + 16 + 4 + 8,
                WireErrorKind::LearnerIsVoter(3),
            ),
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(decode(&bytes), Err(expected));
    }
    let error = decode(&install_snapshot_bytes(&[1, 3], &[2, 3])).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("learners[1] 3 at byte {} is a voter too", voters_at + 28)
    );
}
