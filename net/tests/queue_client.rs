//! `client.queue()` over real sockets against a scripted fake server: each method sends its
//! row's opcode and arguments and decodes the reply the server scripts; blocking pops
//! outlive the read timeout and restore it; a subscription owns its connection, receives
//! pushes, keeps those that arrive during an ack, and refuses pushes it cannot take. The
//! real server is exercised in server/tests/queue_client.rs (see QUEUE_CLIENT_E2E.md).

mod fake;

use std::collections::HashSet;
use std::io::ErrorKind;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake::{fake_server_per_connection, frame, push_frame, Answer};
use flin_net::binary::{Header, Status, ValueWriter};
use flin_net::client::{
    Binding, Client, ClientOptions, Error, ExchangeBinding, ExchangeKind, HeadersMatch, Message,
    Overflow, ProtocolError, PushOptions, QueueOptions,
};

/// The arguments of an argument-list body.
fn arguments(body: &[u8]) -> Vec<Vec<u8>> {
    let word = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().unwrap()) as usize;
    let count = word(0);
    let mut at = 4;
    (0..count)
        .map(|_| {
            let len = word(at);
            at += 4 + len;
            body[at - len..at].to_vec()
        })
        .collect()
}

fn text(args: &[Vec<u8>]) -> Vec<String> {
    args.iter()
        .map(|arg| String::from_utf8(arg.clone()).unwrap())
        .collect()
}

/// An OK response to `header` with the typed value `write` writes.
fn reply(header: &Header, write: impl FnOnce(&mut ValueWriter<'_>)) -> Vec<u8> {
    let mut body = Vec::new();
    write(&mut ValueWriter::new(&mut body));
    frame(header.opcode, Status::Ok as u8, header.request_id, &body)
}

fn error_reply(header: &Header, message: &str) -> Vec<u8> {
    frame(
        header.opcode,
        Status::Error as u8,
        header.request_id,
        message.as_bytes(),
    )
}

/// Writes a message's five fields: id, payload, priority, deliveries, one header.
fn write_message(value: &mut ValueWriter<'_>, id: i64, payload: &[u8]) {
    value.integer(id);
    value.bulk(payload);
    value.integer(5);
    value.integer(1);
    value.map(1);
    value.bulk(b"trace");
    value.bulk(b"t1");
}

fn message(id: u64, payload: &[u8]) -> Message {
    Message {
        id,
        payload: payload.to_vec(),
        priority: 5,
        deliveries: 1,
        headers: vec![(b"trace".to_vec(), b"t1".to_vec())],
    }
}

/// A push of message `id` from `queue`.
fn message_push(opcode: u8, queue: &[u8], id: i64) -> Vec<u8> {
    push_frame(opcode, |value| {
        value.array(7);
        value.bulk(b"message");
        value.bulk(queue);
        write_message(value, id, format!("m{id}").as_bytes());
    })
}

/// Every request the canned server received: opcode and arguments.
type Log = Arc<Mutex<Vec<(u8, Vec<String>)>>>;

/// A server with one canned answer per queue opcode.
fn canned_server(log: Log) -> std::net::SocketAddr {
    fake_server_per_connection(move || {
        let log = Arc::clone(&log);
        move |header: &Header, body: &[u8]| {
            let args = arguments(body);
            log.lock().unwrap().push((header.opcode, text(&args)));
            let h = header;
            Some(Answer::Send(match h.opcode {
                0x40 | 0x50 | 0x51 | 0x52 => reply(h, |v| v.simple("OK")),
                0x41 => reply(h, |v| v.integer(3)),
                0x42 => reply(h, |v| v.integer(2)),
                0x43 => reply(h, |v| v.integer(5)),
                0x44 | 0x54 => reply(h, |v| {
                    v.array(2);
                    v.bulk(b"a");
                    v.bulk(b"b");
                }),
                0x45 => reply(h, |v| {
                    let counters: [(&str, i64); 13] = [
                        ("maxlen", 0),
                        ("ttl", 60_000),
                        ("maxdeliveries", 0),
                        ("visibility", 30_000),
                        ("ready", 5),
                        ("inflight", 1),
                        ("consumers", 2),
                        ("pushed", 9),
                        ("delivered", 4),
                        ("acked", 3),
                        ("deadlettered", 0),
                        ("exclusive", 0),
                        ("durable", 1),
                    ];
                    v.map(counters.len() + 3);
                    v.bulk(b"name");
                    v.bulk(&args[0]);
                    v.bulk(b"overflow");
                    v.bulk(b"drophead");
                    v.bulk(b"dlq");
                    v.null();
                    for (key, n) in counters {
                        v.bulk(key.as_bytes());
                        v.integer(n);
                    }
                }),
                0x46 => reply(h, |v| v.integer(42)),
                0x47 => {
                    let payloads = args.iter().position(|a| a == b"PAYLOADS").unwrap();
                    let count = args.len() - payloads - 1;
                    reply(h, |v| {
                        v.array(count);
                        (0..count).for_each(|i| v.integer(100 + i as i64));
                    })
                }
                0x48 => reply(h, |v| {
                    v.array(1);
                    v.array(5);
                    write_message(v, 7, b"job");
                }),
                0x49 => reply(h, |v| v.null()),
                0x4A => reply(h, |v| v.integer(args.len() as i64 - 1)),
                0x4B => reply(h, |v| v.integer(args.len() as i64 - 2)),
                0x53 => reply(h, |v| v.integer(1)),
                0x55 => reply(h, |v| {
                    v.array(2);
                    v.array(2);
                    v.bulk(b"q1");
                    v.bulk(b"orders.*");
                    v.array(5);
                    v.bulk(b"q2");
                    v.bulk(b"HEADERS");
                    v.bulk(b"ALL");
                    v.bulk(b"format");
                    v.bulk(b"pdf");
                }),
                0x56 => reply(h, |v| v.integer(2)),
                _ => error_reply(h, "ERR unknown command"),
            }))
        }
    })
}

#[test]
fn each_method_sends_its_row_and_decodes_its_reply() {
    let log: Log = Arc::default();
    let addr = canned_server(Arc::clone(&log));
    let client = Client::connect_with(addr, ClientOptions::new().pool_size(1)).unwrap();
    let queues = client.queue();
    let push = PushOptions::new().priority(3).header("k", "v");

    queues
        .declare("jobs", &QueueOptions::new().max_len(10, Overflow::Reject))
        .unwrap();
    assert_eq!(queues.delete("jobs").unwrap(), 3);
    assert_eq!(queues.purge("jobs").unwrap(), 2);
    assert_eq!(queues.len("jobs").unwrap(), 5);
    assert_eq!(
        queues.list(Some(b"j*")).unwrap(),
        [b"a".to_vec(), b"b".to_vec()]
    );
    let info = queues.info("jobs").unwrap();
    assert_eq!(info.name, b"jobs");
    assert!(info.durable && !info.exclusive);
    assert_eq!(
        (info.max_len, info.overflow, info.ttl, info.dlq.clone()),
        (
            None,
            Overflow::DropHead,
            Some(Duration::from_secs(60)),
            None
        )
    );
    assert_eq!(
        (info.ready, info.in_flight, info.consumers, info.pushed),
        (5, 1, 2, 9)
    );
    assert_eq!(queues.push("jobs", "p", &push).unwrap(), 42);
    assert_eq!(
        queues.push_many("jobs", &["a", "b", "c"], &push).unwrap(),
        [100, 101, 102]
    );
    assert_eq!(
        queues.push_many::<&[u8]>("jobs", &[], &push).unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(queues.pop("jobs", 10, true).unwrap(), [message(7, b"job")]);
    assert_eq!(
        queues
            .bpop("jobs", Duration::from_millis(20), 1, false)
            .unwrap(),
        None
    );
    assert_eq!(queues.ack("jobs", &[1, 2]).unwrap(), 2);
    assert_eq!(queues.nack("jobs", &[1], false).unwrap(), 1);
    queues
        .exchange_declare("ex", ExchangeKind::Topic, true)
        .unwrap();
    queues.exchange_delete("ex").unwrap();
    queues.bind("ex", "q1", &Binding::key("orders.*")).unwrap();
    assert!(queues
        .unbind("ex", "q1", &Binding::key("orders.*"))
        .unwrap());
    assert_eq!(
        queues.exchange_list().unwrap(),
        [b"a".to_vec(), b"b".to_vec()]
    );
    assert_eq!(
        queues.bindings("ex").unwrap(),
        [
            ExchangeBinding {
                queue: b"q1".to_vec(),
                binding: Binding::key("orders.*"),
            },
            ExchangeBinding {
                queue: b"q2".to_vec(),
                binding: Binding::headers(HeadersMatch::All, [("format", "pdf")]),
            },
        ]
    );
    assert_eq!(
        queues
            .publish("ex", "orders.new", "hi", &PushOptions::new(), true)
            .unwrap(),
        2
    );

    let sent = log.lock().unwrap().clone();
    let expected: Vec<(u8, Vec<&str>)> = vec![
        (
            0x40,
            vec!["jobs", "DURABLE", "MAXLEN", "10", "OVERFLOW", "REJECT"],
        ),
        (0x41, vec!["jobs"]),
        (0x42, vec!["jobs"]),
        (0x43, vec!["jobs"]),
        (0x44, vec!["j*"]),
        (0x45, vec!["jobs"]),
        (0x46, vec!["jobs", "p", "PRIORITY", "3", "HEADER", "k", "v"]),
        (
            0x47,
            vec![
                "jobs", "PRIORITY", "3", "HEADER", "k", "v", "PAYLOADS", "a", "b", "c",
            ],
        ),
        (0x48, vec!["jobs", "COUNT", "10", "NOACK"]),
        (0x49, vec!["jobs", "20", "COUNT", "1"]),
        (0x4A, vec!["jobs", "1", "2"]),
        (0x4B, vec!["jobs", "1", "DEAD"]),
        (0x50, vec!["ex", "TOPIC", "DURABLE"]),
        (0x51, vec!["ex"]),
        (0x52, vec!["ex", "q1", "orders.*"]),
        (0x53, vec!["ex", "q1", "orders.*"]),
        (0x54, vec![]),
        (0x55, vec!["ex"]),
        (0x56, vec!["ex", "orders.new", "hi", "MANDATORY"]),
    ];
    assert_eq!(sent.len(), expected.len(), "one request per call: {sent:?}");
    for ((opcode, args), (expected_opcode, expected_args)) in sent.iter().zip(&expected) {
        assert_eq!(
            (*opcode, args),
            (
                *expected_opcode,
                &expected_args.iter().map(|a| a.to_string()).collect()
            ),
        );
    }
}

#[test]
fn a_reply_of_the_wrong_shape_is_a_protocol_error_and_replaces_the_connection() {
    let addr = fake_server_per_connection(|| {
        |h: &Header, _: &[u8]| {
            Some(Answer::Send(match h.opcode {
                // A message with priority 12.
                0x48 => reply(h, |v| {
                    v.array(1);
                    v.array(5);
                    v.integer(1);
                    v.bulk(b"p");
                    v.integer(12);
                    v.integer(1);
                    v.map(0);
                }),
                0x43 => error_reply(h, "ERR no such queue 'nope'"),
                _ => reply(h, |v| v.bulk(b"not a count")),
            }))
        }
    });
    let client = Client::connect_with(addr, ClientOptions::new().pool_size(1)).unwrap();
    let queues = client.queue();
    let Err(Error::Protocol(ProtocolError::UnexpectedValue { opcode: 0x48, what })) =
        queues.pop("q", 1, true)
    else {
        panic!("expected a protocol error");
    };
    assert!(what.contains("priority"), "{what}");
    assert!(queues
        .push("q", "p", &PushOptions::new())
        .unwrap_err()
        .is_protocol());
    // A server error names the problem and keeps the connection.
    let error = queues.len("nope").unwrap_err();
    assert_eq!(error.status(), Some(Status::Error));
    assert!(error.to_string().contains("no such queue 'nope'"));
    assert_eq!(client.open_connections(), 1);
}

#[test]
fn a_blocking_pop_outlives_the_read_timeout_and_restores_it() {
    // BPOP and LEN are answered 300 ms late; the client's reads time out after 100 ms.
    let addr = fake_server_per_connection(|| {
        |h: &Header, _: &[u8]| {
            std::thread::sleep(Duration::from_millis(300));
            Some(Answer::Send(match h.opcode {
                0x49 => reply(h, |v| v.null()),
                _ => reply(h, |v| v.integer(0)),
            }))
        }
    });
    let options = ClientOptions::new()
        .pool_size(1)
        .read_timeout(Some(Duration::from_millis(100)));
    let client = Client::connect_with(addr, options).unwrap();
    let started = Instant::now();
    let popped = client
        .queue()
        .bpop("q", Duration::from_millis(400), 1, true)
        .unwrap();
    assert_eq!(popped, None);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The pooled connection went back with its 100 ms timeout: a late LEN times out.
    let Err(Error::Network(error)) = client.queue().len("q") else {
        panic!("expected a read timeout");
    };
    assert!(matches!(
        error.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
}

/// A subscriber's server session: SUBSCRIBE is answered OK followed by pushes of messages
/// 1..=3; an ACK gets a push of message 4 before its answer; other pushes come from a queue
/// named by the test.
fn subscription_server(push_opcode: u8, push_queue: &'static [u8]) -> std::net::SocketAddr {
    fake_server_per_connection(move || {
        move |h: &Header, body: &[u8]| {
            let args = arguments(body);
            Some(Answer::Send(match h.opcode {
                0x4C => {
                    let mut out = reply(h, |v| v.simple("OK"));
                    for id in 1..=3 {
                        out.extend(message_push(push_opcode, push_queue, id));
                    }
                    out
                }
                0x4A => {
                    let mut out = message_push(push_opcode, push_queue, 4);
                    out.extend(reply(h, |v| v.integer(args.len() as i64 - 1)));
                    out
                }
                // UNSUBSCRIBE: the count of subscriptions ended (the client takes OK too).
                0x4B | 0x4D => reply(h, |v| v.integer(if h.opcode == 0x4B { 1 } else { 0 })),
                _ => error_reply(h, "ERR unexpected"),
            }))
        }
    })
}

#[test]
fn a_subscription_owns_a_connection_and_hands_out_pushed_messages() {
    let addr = subscription_server(0x4C, b"jobs");
    let client = Client::connect_with(addr, ClientOptions::new().pool_size(1)).unwrap();
    let mut jobs = client.queue().subscribe("jobs", 10).unwrap();
    assert_eq!(jobs.queue(), b"jobs");
    // Not a pooled connection: the pool still has only the one `connect` opened.
    assert_eq!(client.open_connections(), 1);
    let wait = Duration::from_secs(2);
    for id in 1..=3 {
        let message = jobs.next(wait).unwrap().expect("a pushed message");
        assert_eq!(message, message_with_payload(id));
    }
    // Nothing more: `None` after the wait, and the subscription goes on.
    let started = Instant::now();
    assert_eq!(jobs.next(Duration::from_millis(50)).unwrap(), None);
    assert!(started.elapsed() >= Duration::from_millis(40));
    assert!(!jobs.is_broken());
    // A message pushed while the ack's answer is awaited is kept for `next`.
    assert_eq!(jobs.ack(&[1, 2, 3]).unwrap(), 3);
    assert_eq!(jobs.buffered(), 1);
    assert_eq!(
        jobs.next(Duration::ZERO).unwrap(),
        Some(message_with_payload(4))
    );
    assert_eq!(jobs.nack(&[4], true).unwrap(), 1);
    jobs.unsubscribe().unwrap();
}

fn message_with_payload(id: u64) -> Message {
    message(id, format!("m{id}").as_bytes())
}

#[test]
fn a_subscription_made_by_name_takes_pushes_of_kind_call() {
    let addr = subscription_server(0xF0, b"jobs");
    let client = Client::connect(addr).unwrap();
    let mut jobs = client.queue().subscribe("jobs", 1).unwrap();
    assert_eq!(
        jobs.next(Duration::from_secs(2)).unwrap(),
        Some(message_with_payload(1))
    );
}

#[test]
fn pushes_a_subscription_cannot_take_break_it() {
    for (opcode, queue, what) in [
        (0x4C, &b"other"[..], "not subscribed"),
        (0x60, &b"jobs"[..], "kind other than"),
    ] {
        let addr = subscription_server(opcode, queue);
        let client = Client::connect(addr).unwrap();
        let mut jobs = client.queue().subscribe("jobs", 1).unwrap();
        let Err(Error::Protocol(ProtocolError::UnexpectedValue { what: got, .. })) =
            jobs.next(Duration::from_secs(2))
        else {
            panic!("expected a protocol error for a push from {queue:?}, kind 0x{opcode:02x}");
        };
        assert!(got.contains(what), "{got}");
        assert!(jobs.is_broken());
        assert!(jobs.ack(&[1]).unwrap_err().is_network());
    }
}

#[test]
fn a_consumer_acks_on_the_connection_that_popped() {
    // Each connection's in-flight ids, as the server keeps them: an ack of an id another
    // connection popped is refused.
    let next_id = Arc::new(Mutex::new(0i64));
    let addr = fake_server_per_connection(move || {
        let next_id = Arc::clone(&next_id);
        let mut in_flight = HashSet::new();
        move |h: &Header, body: &[u8]| {
            let args = arguments(body);
            Some(Answer::Send(match h.opcode {
                0x40 => reply(h, |v| v.simple("OK")),
                0x48 | 0x49 => {
                    let mut next_id = next_id.lock().unwrap();
                    *next_id += 1;
                    in_flight.insert(next_id.to_string().into_bytes());
                    let id = *next_id;
                    reply(h, |v| {
                        v.array(1);
                        v.array(5);
                        write_message(v, id, b"job");
                    })
                }
                0x4A if args[1..].iter().all(|id| in_flight.contains(id)) => {
                    args[1..].iter().for_each(|id| {
                        in_flight.remove(id);
                    });
                    reply(h, |v| v.integer(args.len() as i64 - 1))
                }
                0x4A => error_reply(h, "ERR QUEUE.ACK id not in flight for this connection"),
                _ => error_reply(h, "ERR unexpected"),
            }))
        }
    });
    let client = Client::connect(addr).unwrap();
    let mut first = client.queue().consumer().unwrap();
    let mut second = client.queue().consumer().unwrap();
    first
        .declare("tmp", &QueueOptions::new().transient().exclusive())
        .unwrap();
    let popped = first.pop("jobs", 1, false).unwrap();
    assert_eq!(popped[0].id, 1);
    let waited = first
        .bpop("jobs", Duration::from_millis(10), 1, false)
        .unwrap()
        .unwrap();
    assert_eq!(waited[0].id, 2);
    let refused = second.ack("jobs", &[1]).unwrap_err();
    assert!(refused.is_server() && !second.is_broken());
    assert_eq!(first.ack("jobs", &[1, 2]).unwrap(), 2);
    assert_eq!(client.open_connections(), 1);
}
