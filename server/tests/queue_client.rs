//! flin-net's queue client (`client.queue()`) against the real binary: every method over its
//! binary table row, acknowledgements on a consumer's own connection, a blocking pop longer
//! than the read timeout, subscriptions with prefetch, refusals that name the argument, and a
//! restart under a live client. (server/tests/queues.rs covers the model through RESP.)

mod common;

use std::time::{Duration, Instant};

use common::ServerGuard;
use flin_net::binary::Status;
use flin_net::client::{
    Binding, Client, ClientOptions, Error, ExchangeBinding, ExchangeKind, HeadersMatch, Overflow,
    PushOptions, QueueOptions,
};

/// Upper bound on how long a test waits for something the server does; reaching it fails the
/// test (it bounds a hang, it is not a performance assertion).
const PATIENCE: Duration = Duration::from_secs(30);

fn start() -> (tempfile::TempDir, ServerGuard, Client) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &[]);
    let client = Client::connect(server.addr).expect("connect");
    (dir, server, client)
}

fn server_error(result: flin_net::client::Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(Error::Server(error)) => {
            assert_eq!(error.status, Status::Error);
            error.message
        }
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// Polls `condition` until it holds, at most PATIENCE.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < PATIENCE, "{what} did not happen");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn every_queue_method_round_trips() {
    let (_dir, _server, client) = start();
    let queues = client.queue();

    queues.declare("jobs", &QueueOptions::new()).unwrap();
    queues.declare("jobs", &QueueOptions::new()).unwrap();
    let refused = server_error(queues.declare("jobs", &QueueOptions::new().transient()));
    assert!(refused.contains("QUEUE.DECLARE"), "{refused}");
    assert_eq!(queues.list(None).unwrap(), [b"jobs".to_vec()]);
    assert_eq!(queues.list(Some(b"j*")).unwrap(), [b"jobs".to_vec()]);
    assert!(queues.list(Some(b"x*")).unwrap().is_empty());

    let a = queues.push("jobs", "a", &PushOptions::new()).unwrap();
    let urgent = PushOptions::new()
        .priority(9)
        .ttl(Duration::from_secs(60))
        .header("k", "v");
    let b = queues.push("jobs", "b", &urgent).unwrap();
    assert_ne!(a, b);
    let batch = queues
        .push_many("jobs", &["c", "d", "e"], &PushOptions::new())
        .unwrap();
    assert_eq!(batch.len(), 3);
    assert!(batch.windows(2).all(|pair| pair[0] < pair[1]));
    assert_eq!(queues.len("jobs").unwrap(), 5);

    let info = queues.info("jobs").unwrap();
    assert_eq!(info.name, b"jobs");
    assert!(info.durable && !info.exclusive);
    assert_eq!((info.ready, info.in_flight, info.pushed), (5, 0, 5));
    assert_eq!((info.max_len, info.dlq.clone()), (None, None));

    let popped = queues.pop("jobs", 2, true).unwrap();
    assert_eq!(popped.len(), 2);
    assert_eq!(
        (popped[0].id, &popped[0].payload[..], popped[0].priority),
        (b, &b"b"[..], 9)
    );
    assert_eq!(popped[0].headers, [(b"k".to_vec(), b"v".to_vec())]);
    assert_eq!(popped[0].deliveries, 1);
    assert_eq!((popped[1].id, &popped[1].payload[..]), (a, &b"a"[..]));
    let rest = queues
        .bpop("jobs", Duration::from_secs(1), 10, true)
        .unwrap()
        .expect("three ready");
    let payloads: Vec<&[u8]> = rest.iter().map(|m| &m.payload[..]).collect();
    assert_eq!(payloads, [&b"c"[..], b"d", b"e"]);
    assert_eq!(
        queues
            .bpop("jobs", Duration::from_millis(50), 1, true)
            .unwrap(),
        None
    );
    assert!(queues.pop("jobs", 1, true).unwrap().is_empty());

    queues.push("jobs", "f", &PushOptions::new()).unwrap();
    queues.push("jobs", "g", &PushOptions::new()).unwrap();
    assert_eq!(queues.purge("jobs").unwrap(), 2);
    assert_eq!(queues.len("jobs").unwrap(), 0);
    queues.push("jobs", "h", &PushOptions::new()).unwrap();
    assert_eq!(queues.delete("jobs").unwrap(), 1);
    assert!(queues.list(None).unwrap().is_empty());
    let refused = server_error(queues.len("jobs"));
    assert!(refused.contains("jobs"), "{refused}");
}

#[test]
fn every_exchange_method_round_trips() {
    let (_dir, _server, client) = start();
    let queues = client.queue();
    queues
        .exchange_declare("ex", ExchangeKind::Topic, true)
        .unwrap();
    queues
        .exchange_declare("ex", ExchangeKind::Topic, true)
        .unwrap();
    server_error(queues.exchange_declare("ex", ExchangeKind::Direct, true));
    queues.declare("q1", &QueueOptions::new()).unwrap();
    queues.declare("q2", &QueueOptions::new()).unwrap();
    queues.bind("ex", "q1", &Binding::key("orders.*")).unwrap();
    queues.bind("ex", "q2", &Binding::key("#")).unwrap();
    assert!(queues.exchange_list().unwrap().contains(&b"ex".to_vec()));
    let mut bindings = queues.bindings("ex").unwrap();
    bindings.sort_by(|x, y| x.queue.cmp(&y.queue));
    assert_eq!(
        bindings,
        [
            ExchangeBinding {
                queue: b"q1".to_vec(),
                binding: Binding::key("orders.*"),
            },
            ExchangeBinding {
                queue: b"q2".to_vec(),
                binding: Binding::key("#"),
            },
        ]
    );
    let none = PushOptions::new();
    assert_eq!(
        queues
            .publish("ex", "orders.new", "m", &none, false)
            .unwrap(),
        2
    );
    assert_eq!(queues.len("q1").unwrap(), 1);
    assert_eq!(queues.len("q2").unwrap(), 1);
    assert_eq!(
        queues
            .publish("ex", "invoices.x", "m", &none, false)
            .unwrap(),
        1
    );
    assert!(queues.unbind("ex", "q2", &Binding::key("#")).unwrap());
    assert!(!queues.unbind("ex", "q2", &Binding::key("#")).unwrap());
    server_error(queues.publish("ex", "nothing", "m", &none, true));
    assert_eq!(queues.len("q2").unwrap(), 2);
    assert_eq!(
        queues.publish("ex", "nothing", "m", &none, false).unwrap(),
        0
    );

    queues
        .exchange_declare("hx", ExchangeKind::Headers, false)
        .unwrap();
    let all = Binding::headers(HeadersMatch::All, [("a", "1"), ("b", "2")]);
    let any = Binding::headers(HeadersMatch::Any, [("a", "1"), ("b", "2")]);
    queues.bind("hx", "q1", &all).unwrap();
    queues.bind("hx", "q2", &any).unwrap();
    let mut bindings = queues.bindings("hx").unwrap();
    bindings.sort_by(|x, y| x.queue.cmp(&y.queue));
    assert_eq!(bindings[0].binding, all);
    assert_eq!(bindings[1].binding, any);
    let one = PushOptions::new().header("a", "1");
    assert_eq!(queues.publish("hx", "", "m", &one, false).unwrap(), 1);
    let both = PushOptions::new().header("a", "1").header("b", "2");
    assert_eq!(queues.publish("hx", "", "m", &both, false).unwrap(), 2);
    queues.exchange_delete("hx").unwrap();
    assert!(!queues.exchange_list().unwrap().contains(&b"hx".to_vec()));
    assert_eq!(queues.list(None).unwrap().len(), 2);
}

#[test]
fn a_consumer_acks_on_its_own_connection() {
    let (_dir, _server, client) = start();
    let queues = client.queue();
    queues
        .declare("jobs", &QueueOptions::new().dlq("dead"))
        .unwrap();
    queues.declare("dead", &QueueOptions::new()).unwrap();
    queues
        .push_many("jobs", &["1", "2", "3"], &PushOptions::new())
        .unwrap();
    let mut consumer = queues.consumer().unwrap();
    let mut other = queues.consumer().unwrap();
    let popped = consumer.pop("jobs", 3, false).unwrap();
    assert_eq!(popped.len(), 3);
    assert!(popped.iter().all(|m| m.deliveries == 1));
    let info = queues.info("jobs").unwrap();
    assert_eq!((info.ready, info.in_flight), (0, 3));

    assert_eq!(consumer.ack("jobs", &[popped[0].id]).unwrap(), 1);
    let refused = server_error(other.ack("jobs", &[popped[1].id]));
    assert!(refused.contains("QUEUE.ACK"), "{refused}");
    assert_eq!(queues.info("jobs").unwrap().in_flight, 2);
    assert_eq!(consumer.nack("jobs", &[popped[1].id], true).unwrap(), 1);
    let again = other.pop("jobs", 1, false).unwrap();
    assert_eq!((again[0].id, again[0].deliveries), (popped[1].id, 2));
    assert_eq!(consumer.nack("jobs", &[popped[2].id], false).unwrap(), 1);
    let dead = queues.pop("dead", 1, true).unwrap();
    assert_eq!(dead[0].payload, b"3");
    assert!(
        !dead[0].headers.is_empty(),
        "reason and source in the headers"
    );

    // Dropping a consumer redelivers what it held.
    drop(other);
    eventually("redelivery on disconnect", || {
        queues.len("jobs").unwrap() == 1
    });
    let redelivered = consumer.pop("jobs", 1, false).unwrap();
    assert_eq!(redelivered[0].deliveries, 3);

    // An exclusive queue goes with its consumer's connection.
    consumer
        .declare("mine", &QueueOptions::new().transient().exclusive())
        .unwrap();
    assert!(queues.list(Some(b"mine")).unwrap().len() == 1);
    drop(consumer);
    eventually("exclusive cleanup", || {
        queues.list(Some(b"mine")).unwrap().is_empty()
    });
}

#[test]
fn a_blocking_pop_outlives_the_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &[]);
    let options = ClientOptions::new().read_timeout(Some(Duration::from_millis(200)));
    let client = Client::connect_with(server.addr, options).unwrap();
    client
        .queue()
        .declare("jobs", &QueueOptions::new())
        .unwrap();
    let mut consumer = client.queue().consumer().unwrap();
    let pusher = {
        let client = client.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            client
                .queue()
                .push("jobs", "late", &PushOptions::new())
                .unwrap()
        })
    };
    let popped = consumer
        .bpop("jobs", Duration::ZERO, 1, false)
        .unwrap()
        .expect("forever ends with a message");
    let id = pusher.join().unwrap();
    assert_eq!((popped[0].id, &popped[0].payload[..]), (id, &b"late"[..]));
    assert_eq!(consumer.ack("jobs", &[id]).unwrap(), 1);
}

#[test]
fn subscriptions_get_pushes_within_their_prefetch() {
    let (_dir, _server, client) = start();
    let queues = client.queue();
    queues.declare("jobs", &QueueOptions::new()).unwrap();
    let mut sub = queues.subscribe("jobs", 2).unwrap();
    assert_eq!(client.open_connections(), 1);
    let pushed = queues
        .push_many(
            "jobs",
            &["1", "2", "3", "4", "5"],
            &PushOptions::new().priority(4),
        )
        .unwrap();
    let first = sub.next(PATIENCE).unwrap().expect("a message");
    let second = sub.next(PATIENCE).unwrap().expect("a message");
    assert_eq!([first.id, second.id], [pushed[0], pushed[1]]);
    assert_eq!((first.priority, first.deliveries), (4, 1));
    assert_eq!(sub.next(Duration::from_millis(100)).unwrap(), None);
    assert_eq!(sub.ack(&[first.id, second.id]).unwrap(), 2);
    let third = sub.next(PATIENCE).unwrap().expect("a message");
    assert_eq!(third.id, pushed[2]);
    assert_eq!(queues.info("jobs").unwrap().consumers, 1);

    // Two subscribers with prefetch 1 share the rest round-robin; dropping one with a message
    // unacked hands it to the other.
    let mut other = queues.subscribe("jobs", 1).unwrap();
    let fourth = sub.next(PATIENCE).unwrap();
    let fifth = other.next(PATIENCE).unwrap();
    assert!(fourth.is_some() || fifth.is_some());
    drop(sub);
    let mut seen = Vec::new();
    if let Some(message) = fifth {
        other.ack(&[message.id]).unwrap();
        seen.push(message.id);
    }
    while seen.len() < 3 {
        let message = other.next(PATIENCE).unwrap().expect("redelivered");
        other.ack(&[message.id]).unwrap();
        seen.push(message.id);
    }
    seen.sort();
    assert_eq!(seen, [pushed[2], pushed[3], pushed[4]]);
    other.unsubscribe().unwrap();
    eventually("consumers back to 0", || {
        queues.info("jobs").unwrap().consumers == 0
    });
}

#[test]
fn bad_input_names_the_argument_and_keeps_the_connection() {
    let (_dir, _server, client) = start();
    let queues = client.queue();
    queues.declare("jobs", &QueueOptions::new()).unwrap();
    for message in [
        server_error(queues.len("nope")),
        server_error(queues.info("nope")),
        server_error(queues.pop("nope", 1, true)),
        server_error(queues.push("nope", "p", &PushOptions::new())),
        server_error(queues.push("jobs", "p", &PushOptions::new().priority(10))),
        server_error(queues.ack("jobs", &[12345])),
        server_error(queues.bind("no-exchange", "jobs", &Binding::key("k"))),
    ] {
        assert!(message.starts_with("ERR "), "{message}");
    }
    assert_eq!(client.open_connections(), 1);
    assert_eq!(
        queues.info("jobs").unwrap().overflow,
        Overflow::DropHead,
        "nothing changed"
    );
}

#[test]
fn a_client_sees_durable_queues_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &[]);
    let port = server.addr.port().to_string();
    let client = Client::connect(server.addr).unwrap();
    let queues = client.queue();
    queues.declare("jobs", &QueueOptions::new()).unwrap();
    queues
        .declare("scratch", &QueueOptions::new().transient())
        .unwrap();
    queues
        .push_many("jobs", &["1", "2", "3", "4"], &PushOptions::new())
        .unwrap();
    queues.push("scratch", "gone", &PushOptions::new()).unwrap();
    let mut consumer = queues.consumer().unwrap();
    let in_flight = consumer.pop("jobs", 1, false).unwrap();
    assert_eq!(queues.info("jobs").unwrap().in_flight, 1);

    assert!(server.terminate().success());
    let _server = ServerGuard::start(dir.path(), &["--port", port.as_str()]);
    // The same client reconnects; the consumer's connection died with the server.
    assert_eq!(
        queues.len("jobs").unwrap(),
        4,
        "the in-flight message is ready again"
    );
    assert!(consumer
        .ack("jobs", &[in_flight[0].id])
        .unwrap_err()
        .is_network());
    assert_eq!(queues.list(None).unwrap(), [b"jobs".to_vec()]);
    let popped = queues.pop("jobs", 4, true).unwrap();
    let payloads: Vec<&[u8]> = popped.iter().map(|m| &m.payload[..]).collect();
    assert_eq!(payloads, [&b"1"[..], b"2", b"3", b"4"]);
    let redelivered = popped.iter().find(|m| m.id == in_flight[0].id).unwrap();
    assert_eq!(
        redelivered.deliveries, 2,
        "the delivery before the restart counts"
    );
}
