//! The client against a scripted fake server: whatever bytes come back, a
//! call returns a typed error (protocol or network), never panics, and the
//! pool replaces the connection. The real server is exercised in
//! server/tests/client.rs.

mod fake;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use fake::{fake_server, frame, push_frame, Answer};
use flin_net::binary::{self, Header, Status, HEADER_LEN};
use flin_net::client::{Client, ClientOptions, Connection, Error, ProtocolError, Value};

/// A client of a server that answers every request with `reply(header)`.
fn client_of(reply: impl Fn(&Header) -> Vec<u8> + Send + Sync + 'static) -> Client {
    let addr = fake_server(Arc::new(move |header, _body| {
        Some(Answer::Send(reply(header)))
    }));
    Client::connect_with(addr, ClientOptions::new().pool_size(1)).unwrap()
}

fn protocol_error(result: flin_net::client::Result<impl std::fmt::Debug>) -> ProtocolError {
    match result {
        Err(Error::Protocol(error)) => error,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[test]
fn wrong_magic_version_id_or_opcode_are_protocol_errors() {
    let client = client_of(|h| {
        let mut reply = frame(h.opcode, 0, h.request_id, b"v");
        reply[0] = b'*';
        reply
    });
    assert!(matches!(
        protocol_error(client.kv().get("k")),
        ProtocolError::Frame(flin_net::Error::BadMagic { got: b'*' })
    ));

    let client = client_of(|h| {
        let mut reply = frame(h.opcode, 0, h.request_id, b"v");
        reply[1] = 9;
        reply
    });
    assert!(matches!(
        protocol_error(client.kv().get("k")),
        ProtocolError::Frame(flin_net::Error::UnsupportedVersion { got: 9 })
    ));

    let client = client_of(|h| frame(h.opcode, 0, h.request_id.wrapping_add(1), b"v"));
    let ProtocolError::UnexpectedRequestId { expected, got } = protocol_error(client.kv().get("k"))
    else {
        panic!("expected an id mismatch");
    };
    assert_eq!(got, expected.wrapping_add(1));

    let client = client_of(|h| frame(0x13, 0, h.request_id, &1u64.to_le_bytes()));
    assert!(matches!(
        protocol_error(client.kv().del("k")),
        ProtocolError::UnexpectedOpcode {
            expected: 0x12,
            got: 0x13
        }
    ));
}

#[test]
fn statuses_and_bodies_that_do_not_fit_the_request_are_protocol_errors() {
    // An unknown status byte.
    let client = client_of(|h| frame(h.opcode, 0x7E, h.request_id, b""));
    assert!(matches!(
        protocol_error(client.kv().get("k")),
        ProtocolError::Frame(flin_net::Error::UnknownStatus { got: 0x7E })
    ));
    // NOT_STORED is no answer to GET.
    let client = client_of(|h| frame(h.opcode, Status::NotStored as u8, h.request_id, b""));
    assert!(matches!(
        protocol_error(client.kv().get("k")),
        ProtocolError::UnexpectedStatus {
            opcode: 0x10,
            status: Status::NotStored
        }
    ));
    // INCR's i64 cut to 4 bytes.
    let client = client_of(|h| frame(h.opcode, 0, h.request_id, &[1, 0, 0, 0]));
    assert!(matches!(
        protocol_error(client.kv().incr("n")),
        ProtocolError::Frame(flin_net::Error::Truncated { .. })
    ));
    // SET's OK with a body.
    let client = client_of(|h| frame(h.opcode, 0, h.request_id, b"surprise"));
    assert!(matches!(
        protocol_error(client.kv().set("k", "v")),
        ProtocolError::Frame(flin_net::Error::TrailingBytes { .. })
    ));
    // DEL of one key removing 7.
    let client = client_of(|h| frame(h.opcode, 0, h.request_id, &7u64.to_le_bytes()));
    assert!(matches!(
        protocol_error(client.kv().del("k")),
        ProtocolError::UnexpectedValue { opcode: 0x12, .. }
    ));
    // A TTL of -5 ms.
    let client = client_of(|h| frame(h.opcode, 0, h.request_id, &(-5i64).to_le_bytes()));
    assert!(matches!(
        protocol_error(client.kv().ttl("k")),
        ProtocolError::UnexpectedValue { opcode: 0x17, .. }
    ));
    // MGET claiming 3 values and holding 1.
    let client = client_of(|h| {
        let mut body = 3u32.to_le_bytes().to_vec();
        body.extend_from_slice(&1u32.to_le_bytes());
        body.push(b'x');
        frame(h.opcode, 0, h.request_id, &body)
    });
    assert!(matches!(
        protocol_error(client.kv().mget(&["a", "b", "c"])),
        ProtocolError::Frame(flin_net::Error::Truncated { .. })
    ));
    // SCAN whose key count is over the batch limit.
    let client = client_of(|h| {
        let mut body = 0u64.to_le_bytes().to_vec();
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        frame(h.opcode, 0, h.request_id, &body)
    });
    assert!(matches!(
        protocol_error(client.kv().scan_page(0, 10, None)),
        ProtocolError::Frame(flin_net::Error::TooManyItems { .. })
    ));
}

#[test]
fn a_body_over_the_client_limit_is_refused_from_its_header() {
    let addr = fake_server(Arc::new(|h: &Header, _: &[u8]| {
        // Claims 1 MiB and sends only the header: the client must not wait
        // for (or buffer) the body.
        let mut reply = frame(h.opcode, 0, h.request_id, b"");
        reply[8..12].copy_from_slice(&(1u32 << 20).to_le_bytes());
        Some(Answer::Send(reply))
    }));
    let options = ClientOptions::new().max_response_body_bytes(1024);
    let client = Client::connect_with(addr, options).unwrap();
    assert!(matches!(
        protocol_error(client.kv().get("k")),
        ProtocolError::Frame(flin_net::Error::BodyTooLong {
            len: 1048576,
            limit: 1024
        })
    ));
}

#[test]
fn a_resp_error_line_is_shown_as_such() {
    let client = client_of(|_| b"-ERR max number of clients reached\r\n".to_vec());
    let ProtocolError::Resp(line) = protocol_error(client.kv().get("k")) else {
        panic!("expected the RESP line");
    };
    assert_eq!(line, "ERR max number of clients reached");
}

#[test]
fn server_errors_keep_the_connection_and_protocol_errors_replace_it() {
    // Request 1 is refused with ERROR, request 2 gets garbage, request 3 is
    // answered properly; the refusal must not cost the connection, the
    // garbage must.
    let addr = fake_server(Arc::new(|h: &Header, body: &[u8]| {
        Some(Answer::Send(match body {
            b"\x01\0\0\0a" => frame(h.opcode, Status::Error as u8, h.request_id, b"ERR no"),
            b"\x01\0\0\0b" => frame(h.opcode, 0, h.request_id ^ 0xFF, b""),
            _ => frame(h.opcode, 0, h.request_id, b"fine"),
        }))
    }));
    let client = Client::connect_with(addr, ClientOptions::new().pool_size(1)).unwrap();
    let error = client.kv().get("a").unwrap_err();
    assert_eq!(error.status(), Some(Status::Error));
    let Error::Server(server) = error else {
        unreachable!()
    };
    assert_eq!(server.message, "ERR no");
    assert_eq!(client.open_connections(), 1);
    assert!(client.kv().get("b").unwrap_err().is_protocol());
    assert_eq!(
        client.open_connections(),
        0,
        "the broken connection is gone"
    );
    assert_eq!(client.kv().get("c").unwrap().as_deref(), Some(&b"fine"[..]));
    assert_eq!(client.open_connections(), 1);
}

#[test]
fn a_server_that_closes_mid_reply_is_a_network_error() {
    let addr = fake_server(Arc::new(|h: &Header, _: &[u8]| {
        let reply = frame(h.opcode, 0, h.request_id, b"a long value");
        Some(Answer::SendAndClose(reply[..HEADER_LEN + 3].to_vec()))
    }));
    let client = Client::connect(addr).unwrap();
    let Err(Error::Network(error)) = client.kv().get("k") else {
        panic!("expected a network error");
    };
    assert_eq!(error.kind(), ErrorKind::UnexpectedEof);
}

#[test]
fn a_silent_server_is_a_network_error_after_the_read_timeout() {
    let addr = fake_server(Arc::new(|_: &Header, _: &[u8]| {
        Some(Answer::Send(Vec::new()))
    }));
    let options = ClientOptions::new().read_timeout(Some(Duration::from_millis(50)));
    let client = Client::connect_with(addr, options).unwrap();
    let Err(Error::Network(error)) = client.kv().get("k") else {
        panic!("expected a network error");
    };
    assert!(
        matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{error:?}"
    );
    assert_eq!(
        client.open_connections(),
        0,
        "a timed-out connection is dropped"
    );
}

#[test]
fn a_pipeline_checks_every_reply_id() {
    // Answers the second request of each connection with the first one's id.
    let addr = fake_server(Arc::new(|h: &Header, _: &[u8]| {
        let id = if h.request_id.is_multiple_of(2) {
            h.request_id - 1
        } else {
            h.request_id
        };
        Some(Answer::Send(frame(h.opcode, 0, id, b"v")))
    }));
    let client = Client::connect(addr).unwrap();
    let mut pipeline = client.pipeline();
    pipeline.kv().get("a").get("b").get("c");
    assert!(matches!(
        pipeline.execute(),
        Err(Error::Protocol(ProtocolError::UnexpectedRequestId { .. }))
    ));
    assert!(pipeline.is_empty(), "execute empties the pipeline");
}

#[test]
fn a_request_over_the_limits_is_refused_before_sending() {
    let addr = fake_server(Arc::new(|h: &Header, _: &[u8]| {
        Some(Answer::Send(frame(h.opcode, 0, h.request_id, b"")))
    }));
    let client = Client::connect(addr).unwrap();
    let keys = vec![&b"k"[..]; binary::MAX_BATCH_ITEMS + 1];
    assert!(matches!(
        client.kv().mdel(&keys),
        Err(Error::Request(flin_net::Error::TooManyItems { .. }))
    ));
    let mut pipeline = client.pipeline();
    pipeline.kv().set("a", "1").mget(&keys).set("b", "2");
    assert!(matches!(pipeline.execute(), Err(Error::Request(_))));
    // The connection was never touched.
    client.kv().set("a", "1").unwrap();
    assert_eq!(client.open_connections(), 1);
}

#[test]
fn pushes_between_responses_are_set_aside_and_responses_stay_checked() {
    // Every answer is preceded by a push naming the request it came before.
    let addr = fake_server(Arc::new(|h: &Header, _: &[u8]| {
        let mut reply = push_frame(0xF0, |value| {
            value.array(2);
            value.bulk(b"before");
            value.integer(i64::from(h.request_id));
        });
        let mut body = Vec::new();
        binary::ValueWriter::new(&mut body).simple("OK");
        reply.extend(frame(h.opcode, 0, h.request_id, &body));
        Some(Answer::Send(reply))
    }));
    let options = ClientOptions::new().pool_size(1);
    let client = Client::connect_with(addr, options.clone()).unwrap();
    assert_eq!(
        client.command(&["SET", "k", "v"]).unwrap(),
        Value::Simple("OK".into())
    );
    // The pooled connection holds an unread push: it is not reused, but replaced.
    assert_eq!(
        client.command(&["SET", "k", "w"]).unwrap(),
        Value::Simple("OK".into())
    );

    let mut connection = Connection::open(addr, &options).unwrap();
    for _ in 0..3 {
        assert_eq!(
            connection.command(&["PING"]).unwrap(),
            Value::Simple("OK".into())
        );
    }
    assert_eq!(connection.queued_pushes(), 3);
    for id in 1..=3 {
        let push = connection.receive_push().unwrap();
        assert_eq!(push.opcode, 0xF0);
        assert_eq!(
            push.value,
            Value::Array(vec![Value::Bulk(b"before".to_vec()), Value::Integer(id)])
        );
    }
    assert!(connection.try_receive_push().is_none());
}

#[test]
fn receive_push_waits_for_a_push_and_a_timeout_keeps_the_connection() {
    // A subscriber's server: answers the first request, then pushes once, 150 ms later.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut header = [0u8; HEADER_LEN];
        stream.read_exact(&mut header).unwrap();
        let header = binary::peek_header(&header).unwrap();
        let mut body = vec![0u8; header.body_len];
        stream.read_exact(&mut body).unwrap();
        let mut ok = Vec::new();
        binary::ValueWriter::new(&mut ok).simple("OK");
        stream
            .write_all(&frame(header.opcode, 0, header.request_id, &ok))
            .unwrap();
        std::thread::sleep(Duration::from_millis(150));
        stream
            .write_all(&push_frame(0x40, |value| value.bulk(b"late")))
            .unwrap();
        // Hold the connection until the client leaves.
        let _ = stream.read(&mut [0u8; 1]);
    });
    let options = ClientOptions::new().read_timeout(Some(Duration::from_millis(50)));
    let mut connection = Connection::open(addr, &options).unwrap();
    assert_eq!(
        connection.command(&["SUB"]).unwrap(),
        Value::Simple("OK".into())
    );
    // Nothing yet: a timeout, and the connection is still good.
    let Err(Error::Network(error)) = connection.receive_push() else {
        panic!("expected a timeout");
    };
    assert!(matches!(
        error.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    assert!(!connection.is_broken());
    let push = (0..20)
        .find_map(|_| connection.receive_push().ok())
        .expect("the push arrives within a second");
    assert_eq!(push.opcode, 0x40);
    assert_eq!(push.value, Value::Bulk(b"late".to_vec()));
    assert!(!connection.is_broken());
}

#[test]
fn hostile_pushes_break_the_connection() {
    // A push whose value does not decode.
    let client = client_of(|h| {
        let mut reply = frame(0xF0, Status::Push as u8, 0, &[0x42]);
        reply.extend(frame(h.opcode, 0, h.request_id, &[0]));
        reply
    });
    assert!(matches!(
        protocol_error(client.command(&["PING"])),
        ProtocolError::Frame(flin_net::Error::UnknownValueTag { tag: 0x42, .. })
    ));
    // More pushes than the queue holds.
    let addr = fake_server(Arc::new(|h: &Header, _: &[u8]| {
        let mut reply = Vec::new();
        for _ in 0..3 {
            reply.extend(push_frame(0xF0, |value| value.null()));
        }
        reply.extend(frame(h.opcode, 0, h.request_id, &[0]));
        Some(Answer::Send(reply))
    }));
    let options = ClientOptions::new().max_queued_pushes(2);
    let client = Client::connect_with(addr, options).unwrap();
    assert!(matches!(
        protocol_error(client.command(&["PING"])),
        ProtocolError::PushQueueFull { limit: 2 }
    ));
    // A typed value that does not decode, in a response.
    let client = client_of(|h| frame(h.opcode, 0, h.request_id, &[0x05, 9, 0, 0, 0]));
    assert!(matches!(
        protocol_error(client.command(&["KEYS", "*"])),
        ProtocolError::Frame(flin_net::Error::Truncated { .. })
    ));
}
