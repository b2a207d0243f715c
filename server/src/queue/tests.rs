//! The queue model's core, on an engine of its own (memory, or a directory for restarts),
//! with time passed in: every rule of issue 11 that needs no socket.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flin_engine::{Config, Durability, Engine, RecordKind};

use super::codec::{BindingRule, ExchangeKind, Overflow, QueueOptions};
use super::core::{DeliveryKind, Mailbox, Message, NewMessage, QueueError, Queues, Scope::Own};
use crate::store::Store;

const T0: u64 = 1_700_000_000_000;
const A: u64 = 1;
const B: u64 = 2;

fn memory() -> (Store, Queues) {
    let (_, store, queues) = memory_with_engine();
    (store, queues)
}

fn memory_with_engine() -> (Engine, Store, Queues) {
    let engine = Engine::open(Config::memory().background_compaction(false)).expect("engine");
    let store = Store::new(engine.clone());
    let queues = Queues::load(&store).expect("load");
    (engine, store, queues)
}

/// The kinds of the ops the log entry `seq` holds.
fn entry_kinds(engine: &Engine, seq: Option<u64>) -> Vec<RecordKind> {
    engine
        .entry(seq.expect("wrote"))
        .unwrap()
        .expect("entry")
        .ops
        .iter()
        .map(|op| op.kind)
        .collect()
}

fn durable() -> QueueOptions {
    QueueOptions::default()
}

fn msg(payload: &str) -> NewMessage {
    NewMessage {
        payload: payload.as_bytes().to_vec(),
        ..NewMessage::default()
    }
}

fn with_priority(payload: &str, priority: u8) -> NewMessage {
    NewMessage {
        priority,
        ..msg(payload)
    }
}

fn payloads(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8(m.payload.clone()).unwrap())
        .collect()
}

fn push(store: &Store, queues: &Queues, queue: &str, payload: &str) -> u64 {
    queues
        .push(Own(store), queue.as_bytes(), vec![msg(payload)], A, T0)
        .unwrap()
        .0[0]
}

fn pop(
    store: &Store,
    queues: &Queues,
    queue: &str,
    count: usize,
    conn: u64,
    now: u64,
) -> Vec<Message> {
    queues
        .pop(store, queue.as_bytes(), count, false, conn, now)
        .unwrap()
        .0
}

fn counting_mailbox() -> (Arc<Mailbox>, Arc<AtomicUsize>) {
    let wakes = Arc::new(AtomicUsize::new(0));
    let counter = wakes.clone();
    (
        Mailbox::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }),
        wakes,
    )
}

#[test]
fn higher_priority_first_and_fifo_within_one() {
    let (store, queues) = memory();
    queues.declare(&store, b"q", durable(), A).unwrap();
    let batch = vec![
        with_priority("low-1", 0),
        with_priority("high-1", 9),
        with_priority("mid-1", 4),
        with_priority("low-2", 0),
        with_priority("high-2", 9),
        with_priority("mid-2", 4),
    ];
    let (ids, seq) = queues.push(Own(&store), b"q", batch, A, T0).unwrap();
    assert_eq!(ids.len(), 6);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
    assert!(seq.is_some());
    assert_eq!(queues.len(Own(&store), b"q", A).unwrap(), 6);
    let got = pop(&store, &queues, "q", 10, A, T0);
    assert_eq!(
        payloads(&got),
        ["high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2"]
    );
    assert!(got.iter().all(|m| m.deliveries == 1));
    assert_eq!(queues.len(Own(&store), b"q", A).unwrap(), 0);
}

#[test]
fn a_batch_push_is_one_log_entry() {
    let (store, queues) = memory();
    queues.declare(&store, b"q", durable(), A).unwrap();
    let before = store.reader().last_seq();
    let (_, seq) = queues
        .push(
            Own(&store),
            b"q",
            (0..100).map(|i| msg(&i.to_string())).collect(),
            A,
            T0,
        )
        .unwrap();
    assert_eq!(seq, Some(before + 1));
    assert_eq!(store.reader().last_seq(), before + 1);
}

#[test]
fn ack_of_unknown_or_foreign_ids_changes_nothing() {
    let (store, queues) = memory();
    queues.declare(&store, b"q", durable(), A).unwrap();
    let first = push(&store, &queues, "q", "one");
    let second = push(&store, &queues, "q", "two");
    pop(&store, &queues, "q", 1, A, T0);
    pop(&store, &queues, "q", 1, B, T0);
    // B holds `second`: A may not ack it, and the whole call is refused.
    assert_eq!(
        queues.ack(Own(&store), b"q", &[first, second], A, T0),
        Err(QueueError::Foreign(second))
    );
    assert_eq!(
        queues.ack(Own(&store), b"q", &[first, 999], A, T0),
        Err(QueueError::NotInFlight(999))
    );
    let info = queues.info(Own(&store), b"q", A).unwrap();
    assert_eq!((info.in_flight, info.acked), (2, 0));
    assert_eq!(
        queues
            .ack(Own(&store), b"q", &[first, first], A, T0)
            .unwrap()
            .0,
        1
    );
    assert_eq!(
        queues.ack(Own(&store), b"q", &[first], A, T0),
        Err(QueueError::NotInFlight(first))
    );
    assert_eq!(
        queues.ack(Own(&store), b"x", &[first], A, T0),
        Err(QueueError::NoQueue(b"x".to_vec()))
    );
    // The acked message is out of the index: `first` was the queue's lowest id, so its
    // floor record (`w`) stands for it, beside the counters (Q, N), the declaration and
    // `second`.
    assert_eq!(store.reader().len(super::NS), 5);
}

/// Acks in push order leave no tombstone: one floor record covers them, and their records
/// leave the index (compaction drops them). An ack above a message still held is a tombstone.
#[test]
fn in_order_acks_move_a_floor_instead_of_writing_tombstones() {
    let (engine, store, queues) = memory_with_engine();
    queues.declare(&store, b"q", durable(), A).unwrap();
    let batch = (0..100).map(|i| msg(&i.to_string())).collect();
    let (ids, _) = queues.push(Own(&store), b"q", batch, A, T0).unwrap();
    let counters_and_declaration = 3;
    let got = pop(&store, &queues, "q", 100, A, T0);
    // The 50 oldest, in one ack: one record, a Put (the floor).
    let first_half: Vec<u64> = got[..50].iter().map(|m| m.id).collect();
    let (n, seq) = queues.ack(Own(&store), b"q", &first_half, A, T0).unwrap();
    assert_eq!(n, 50);
    assert_eq!(entry_kinds(&engine, seq), [RecordKind::Put]);
    assert_eq!(engine.len(super::NS), counters_and_declaration + 1 + 50);
    // Out of order: the newest while older ones are in flight: a tombstone.
    let (_, seq) = queues.ack(Own(&store), b"q", &[ids[99]], A, T0).unwrap();
    assert_eq!(entry_kinds(&engine, seq), [RecordKind::Delete]);
    // The rest: the floor passes all of them (and the tombstoned one); only the floor moves.
    let rest: Vec<u64> = got[50..99].iter().map(|m| m.id).collect();
    let (_, seq) = queues.ack(Own(&store), b"q", &rest, A, T0).unwrap();
    assert_eq!(entry_kinds(&engine, seq), [RecordKind::Put]);
    assert_eq!(engine.len(super::NS), counters_and_declaration + 1);
    // NOACK pops use the same path.
    push(&store, &queues, "q", "x");
    let (_, seq) = queues.pop(&store, b"q", 1, true, A, T0).unwrap();
    assert_eq!(entry_kinds(&engine, seq), [RecordKind::Put]);
    assert_eq!(engine.len(super::NS), counters_and_declaration + 1);
}

#[test]
fn nack_requeues_in_place_with_a_higher_delivery_count() {
    let (store, queues) = memory();
    queues.declare(&store, b"q", durable(), A).unwrap();
    for p in ["a", "b", "c"] {
        push(&store, &queues, "q", p);
    }
    let first = pop(&store, &queues, "q", 1, A, T0);
    assert_eq!(
        queues
            .nack(Own(&store), b"q", &[first[0].id], true, A, T0)
            .unwrap()
            .0,
        1
    );
    let again = pop(&store, &queues, "q", 3, A, T0);
    assert_eq!(
        payloads(&again),
        ["a", "b", "c"],
        "back at its place in line"
    );
    assert_eq!(again[0].deliveries, 2);
    assert_eq!(again[1].deliveries, 1);
}

#[test]
fn visibility_timeout_redelivers() {
    let (store, queues) = memory();
    let options = QueueOptions {
        visibility_ms: 1000,
        ..durable()
    };
    queues.declare(&store, b"q", options, A).unwrap();
    push(&store, &queues, "q", "m");
    let got = pop(&store, &queues, "q", 1, A, T0);
    assert_eq!(queues.tick(&store, T0 + 999).unwrap(), 0);
    assert_eq!(queues.len(Own(&store), b"q", A).unwrap(), 0);
    assert_eq!(queues.tick(&store, T0 + 1000).unwrap(), 1);
    assert_eq!(queues.len(Own(&store), b"q", A).unwrap(), 1);
    // The old holder's ack is refused now: the message is ready, not in flight to it.
    assert_eq!(
        queues.ack(Own(&store), b"q", &[got[0].id], A, T0 + 1001),
        Err(QueueError::NotInFlight(got[0].id))
    );
    let again = pop(&store, &queues, "q", 1, B, T0 + 1001);
    assert_eq!((again[0].id, again[0].deliveries), (got[0].id, 2));
}

#[test]
fn a_closed_connection_returns_what_it_held() {
    let (store, queues) = memory();
    queues.declare(&store, b"q", durable(), A).unwrap();
    push(&store, &queues, "q", "m1");
    push(&store, &queues, "q", "m2");
    pop(&store, &queues, "q", 2, B, T0);
    assert_eq!(queues.len(Own(&store), b"q", A).unwrap(), 0);
    queues.connection_closed(&store, B, T0).unwrap();
    let again = pop(&store, &queues, "q", 2, A, T0);
    assert_eq!(payloads(&again), ["m1", "m2"]);
    assert!(again.iter().all(|m| m.deliveries == 2));
}

#[test]
fn max_deliveries_and_rejects_go_to_the_dlq_with_reason_and_source() {
    let (store, queues) = memory();
    queues.declare(&store, b"dead", durable(), A).unwrap();
    let options = QueueOptions {
        max_deliveries: 2,
        dlq: Some(b"dead".to_vec()),
        ..durable()
    };
    queues.declare(&store, b"q", options, A).unwrap();
    push(&store, &queues, "q", "poison");
    push(&store, &queues, "q", "rejected");
    for round in 1..=2 {
        let got = pop(&store, &queues, "q", 1, A, T0);
        assert_eq!(got[0].deliveries, round);
        queues
            .nack(Own(&store), b"q", &[got[0].id], true, A, T0)
            .unwrap();
    }
    // Second return reached MAXDELIVERIES: dead-lettered, not requeued.
    let got = pop(&store, &queues, "q", 1, A, T0);
    assert_eq!(payloads(&got), ["rejected"]);
    queues
        .nack(Own(&store), b"q", &[got[0].id], false, A, T0)
        .unwrap();
    assert_eq!(queues.len(Own(&store), b"q", A).unwrap(), 0);
    let dead = pop(&store, &queues, "dead", 10, A, T0);
    assert_eq!(payloads(&dead), ["poison", "rejected"]);
    let reason = |m: &Message| {
        m.headers
            .iter()
            .find(|(k, _)| k == super::DEATH_REASON_HEADER)
            .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
    };
    assert_eq!(reason(&dead[0]).as_deref(), Some("maxdeliveries"));
    assert_eq!(reason(&dead[1]).as_deref(), Some("rejected"));
    assert!(dead[0]
        .headers
        .contains(&(super::DEATH_QUEUE_HEADER.to_vec(), b"q".to_vec())));
    assert_eq!(queues.info(Own(&store), b"q", A).unwrap().dead_lettered, 2);
}

#[test]
fn ttl_expires_messages_into_the_dlq_or_away() {
    let (store, queues) = memory();
    queues.declare(&store, b"dead", durable(), A).unwrap();
    let options = QueueOptions {
        ttl_ms: 500,
        dlq: Some(b"dead".to_vec()),
        ..durable()
    };
    queues.declare(&store, b"q", options, A).unwrap();
    queues.declare(&store, b"nodlq", durable(), A).unwrap();
    push(&store, &queues, "q", "queue-ttl");
    let own = NewMessage {
        ttl_ms: 100,
        ..msg("own-ttl")
    };
    queues
        .push(Own(&store), b"nodlq", vec![own], A, T0)
        .unwrap();
    assert_eq!(queues.tick(&store, T0 + 99).unwrap(), 0);
    assert_eq!(queues.tick(&store, T0 + 100).unwrap(), 1);
    assert_eq!(
        queues.len(Own(&store), b"nodlq", A).unwrap(),
        0,
        "dropped: no DLQ"
    );
    // A pop past the TTL does not deliver it either.
    assert!(pop(&store, &queues, "q", 1, A, T0 + 500).is_empty());
    let dead = pop(&store, &queues, "dead", 1, A, T0 + 500);
    assert_eq!(payloads(&dead), ["queue-ttl"]);
    assert!(dead[0]
        .headers
        .contains(&(super::DEATH_REASON_HEADER.to_vec(), b"expired".to_vec())));
}

#[test]
fn maxlen_rejects_or_drops_the_head() {
    let (store, queues) = memory();
    let reject = QueueOptions {
        max_len: 2,
        overflow: Overflow::Reject,
        ..durable()
    };
    queues.declare(&store, b"r", reject, A).unwrap();
    push(&store, &queues, "r", "1");
    push(&store, &queues, "r", "2");
    assert_eq!(
        queues.push(Own(&store), b"r", vec![msg("3")], A, T0),
        Err(QueueError::Full(b"r".to_vec()))
    );
    let drop = QueueOptions {
        max_len: 2,
        ..durable()
    };
    queues.declare(&store, b"d", drop, A).unwrap();
    for p in ["1", "2", "3"] {
        push(&store, &queues, "d", p);
    }
    assert_eq!(payloads(&pop(&store, &queues, "d", 5, A, T0)), ["2", "3"]);
}

#[test]
fn redeclaring_with_other_options_names_the_option() {
    let (store, queues) = memory();
    queues.declare(&store, b"q", durable(), A).unwrap();
    assert!(
        !queues.declare(&store, b"q", durable(), A).unwrap().0,
        "exists: not created"
    );
    let other = QueueOptions {
        ttl_ms: 5,
        ..durable()
    };
    assert_eq!(
        queues.declare(&store, b"q", other, A),
        Err(QueueError::Mismatch {
            name: b"q".to_vec(),
            option: "TTL"
        })
    );
}

#[test]
fn exclusive_queues_belong_to_their_connection_and_go_with_it() {
    let (store, queues) = memory();
    let options = QueueOptions {
        exclusive: true,
        ..durable()
    };
    queues.declare(&store, b"mine", options.clone(), A).unwrap();
    push(&store, &queues, "mine", "m");
    assert_eq!(
        queues.push(Own(&store), b"mine", vec![msg("x")], B, T0),
        Err(QueueError::Locked(b"mine".to_vec()))
    );
    assert_eq!(
        queues.declare(&store, b"mine", options, B),
        Err(QueueError::Locked(b"mine".to_vec()))
    );
    queues.connection_closed(&store, B, T0).unwrap();
    assert_eq!(queues.list(None), [b"mine".to_vec()]);
    queues.connection_closed(&store, A, T0).unwrap();
    assert!(queues.list(None).is_empty());
}

#[test]
fn subscriptions_respect_prefetch_and_take_turns() {
    let (store, queues) = memory();
    queues.declare(&store, b"q", durable(), A).unwrap();
    let (box_a, _) = counting_mailbox();
    let (box_b, _) = counting_mailbox();
    queues.subscribe(&store, b"q", 2, A, &box_a, T0).unwrap();
    queues.subscribe(&store, b"q", 2, B, &box_b, T0).unwrap();
    for i in 0..10 {
        push(&store, &queues, "q", &i.to_string());
    }
    let got_a: Vec<Message> = box_a.take().into_iter().flat_map(|d| d.messages).collect();
    let got_b: Vec<Message> = box_b.take().into_iter().flat_map(|d| d.messages).collect();
    assert_eq!(
        payloads(&got_a),
        ["0", "2"],
        "round-robin, 2 unacked at most"
    );
    assert_eq!(payloads(&got_b), ["1", "3"]);
    assert_eq!(queues.len(Own(&store), b"q", A).unwrap(), 6);
    // An ack frees one slot: exactly one more message is pushed to A.
    queues
        .ack(Own(&store), b"q", &[got_a[0].id], A, T0)
        .unwrap();
    let more: Vec<Message> = box_a.take().into_iter().flat_map(|d| d.messages).collect();
    assert_eq!(payloads(&more), ["4"]);
    assert!(box_b.take().is_empty());
    // Unsubscribed, A gets nothing more; what it holds stays in flight.
    queues.unsubscribe(Some(b"q"), A).unwrap();
    queues
        .ack(Own(&store), b"q", &[got_a[1].id], A, T0)
        .unwrap();
    assert!(box_a.take().is_empty());
    assert_eq!(queues.info(Own(&store), b"q", A).unwrap().in_flight, 3);
}

#[test]
fn the_longest_waiter_gets_the_message() {
    let (store, queues) = memory();
    queues.declare(&store, b"q", durable(), A).unwrap();
    let (first, first_wakes) = counting_mailbox();
    let (second, second_wakes) = counting_mailbox();
    assert!(queues
        .pop_or_wait(&store, b"q", 1, false, A, &first, T0)
        .unwrap()
        .is_none());
    assert!(queues
        .pop_or_wait(&store, b"q", 1, false, B, &second, T0)
        .unwrap()
        .is_none());
    push(&store, &queues, "q", "m1");
    assert_eq!(first_wakes.load(Ordering::SeqCst), 1);
    assert_eq!(second_wakes.load(Ordering::SeqCst), 0);
    let delivery = first.take().pop().unwrap();
    assert_eq!(delivery.kind, DeliveryKind::Pop { noack: false });
    assert_eq!(payloads(&delivery.messages), ["m1"]);
    push(&store, &queues, "q", "m2");
    assert_eq!(payloads(&second.take().pop().unwrap().messages), ["m2"]);
    // A waiter that gave up gets nothing.
    queues
        .pop_or_wait(&store, b"q", 1, false, A, &first, T0)
        .unwrap();
    queues.stop_waiting(b"q", A);
    push(&store, &queues, "q", "m3");
    assert!(first.take().is_empty());
    assert_eq!(queues.len(Own(&store), b"q", A).unwrap(), 1);
}

#[test]
fn exchanges_route_as_rabbitmq_does_in_one_entry() {
    let (store, queues) = memory();
    for q in ["a", "b", "c"] {
        queues.declare(&store, q.as_bytes(), durable(), A).unwrap();
    }
    queues
        .exchange_declare(&store, b"direct", ExchangeKind::Direct, true)
        .unwrap();
    queues
        .exchange_declare(&store, b"fan", ExchangeKind::Fanout, true)
        .unwrap();
    queues
        .exchange_declare(&store, b"topic", ExchangeKind::Topic, true)
        .unwrap();
    queues
        .exchange_declare(&store, b"hdr", ExchangeKind::Headers, false)
        .unwrap();
    let key = |k: &str| BindingRule::Key(k.as_bytes().to_vec());
    queues.bind(&store, b"direct", b"a", key("red"), A).unwrap();
    queues.bind(&store, b"direct", b"b", key("red"), A).unwrap();
    queues
        .bind(&store, b"direct", b"c", key("blue"), A)
        .unwrap();
    for q in ["a", "b", "c"] {
        queues
            .bind(&store, b"fan", q.as_bytes(), key(""), A)
            .unwrap();
    }
    queues
        .bind(&store, b"topic", b"a", key("*.error"), A)
        .unwrap();
    queues
        .bind(&store, b"topic", b"b", key("kern.#"), A)
        .unwrap();
    let headers = BindingRule::Headers {
        all: true,
        pairs: vec![(b"format".to_vec(), b"pdf".to_vec())],
    };
    queues.bind(&store, b"hdr", b"c", headers, A).unwrap();
    assert!(matches!(
        queues.bind(
            &store,
            b"direct",
            b"a",
            BindingRule::Headers {
                all: true,
                pairs: vec![]
            },
            A
        ),
        Err(QueueError::BindingKind(_))
    ));
    let before = store.reader().last_seq();
    let published = |ex: &str, rk: &str, m: NewMessage| {
        queues
            .publish(Own(&store), ex.as_bytes(), rk.as_bytes(), m, false, T0)
            .unwrap()
    };
    let (n, seq) = published("direct", "red", msg("d"));
    assert_eq!((n, seq), (2, Some(before + 1)), "two queues, one log entry");
    assert_eq!(published("fan", "ignored", msg("f")).0, 3);
    assert_eq!(published("topic", "kern.error", msg("t")).0, 2);
    assert_eq!(published("topic", "user.error", msg("u")).0, 1);
    let pdf = NewMessage {
        headers: vec![(b"format".to_vec(), b"pdf".to_vec())],
        ..msg("h")
    };
    assert_eq!(published("hdr", "", pdf).0, 1);
    assert_eq!(published("direct", "green", msg("lost")).0, 0);
    assert_eq!(
        queues.publish(Own(&store), b"direct", b"green", msg("x"), true, T0),
        Err(QueueError::Unroutable(b"direct".to_vec()))
    );
    assert_eq!(queues.exchange_info(b"direct").unwrap().unroutable, 2);
    // The default exchange ("") routes to the queue the routing key names.
    assert_eq!(published("", "a", msg("dflt")).0, 1);
    assert_eq!(published("", "nosuch", msg("x")).0, 0);
    assert_eq!(
        payloads(&pop(&store, &queues, "a", 9, A, T0)),
        ["d", "f", "t", "u", "dflt"]
    );
    assert_eq!(
        payloads(&pop(&store, &queues, "b", 9, A, T0)),
        ["d", "f", "t"]
    );
    assert_eq!(payloads(&pop(&store, &queues, "c", 9, A, T0)), ["f", "h"]);
    assert!(
        queues
            .unbind(&store, b"direct", b"a", key("red"))
            .unwrap()
            .0
    );
    assert!(
        !queues
            .unbind(&store, b"direct", b"a", key("red"))
            .unwrap()
            .0
    );
    queues.delete(&store, b"b", A).unwrap();
    assert_eq!(
        queues.bindings(b"direct").unwrap(),
        [(b"c".to_vec(), key("blue"))]
    );
}

#[test]
fn purge_and_delete() {
    let (store, queues) = memory();
    queues.declare(&store, b"q", durable(), A).unwrap();
    for p in ["1", "2", "3"] {
        push(&store, &queues, "q", p);
    }
    pop(&store, &queues, "q", 1, A, T0);
    assert_eq!(queues.purge(Own(&store), b"q", A).unwrap().0, 2);
    assert_eq!(queues.info(Own(&store), b"q", A).unwrap().in_flight, 1);
    assert_eq!(queues.delete(&store, b"q", A).unwrap().0, 1);
    assert_eq!(
        queues.len(Own(&store), b"q", A),
        Err(QueueError::NoQueue(b"q".to_vec()))
    );
    // Only the counters' records are left.
    assert_eq!(store.reader().len(super::NS), 2);
}

/// Durable queues keep their messages across a restart (acked ones stay gone, in-flight
/// ones come back with their delivery count); transient and exclusive queues do not.
#[test]
fn a_restart_keeps_durable_state_only() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let engine = Engine::open(
            Config::directory(dir.path())
                .durability(Durability::Always)
                .background_compaction(false),
        )
        .unwrap();
        let store = Store::new(engine);
        let queues = Queues::load(&store).unwrap();
        (store, queues)
    };
    {
        let (store, queues) = open();
        queues.declare(&store, b"d", durable(), A).unwrap();
        let transient = QueueOptions {
            durable: false,
            ..durable()
        };
        queues.declare(&store, b"t", transient, A).unwrap();
        let exclusive = QueueOptions {
            exclusive: true,
            ..durable()
        };
        queues.declare(&store, b"x", exclusive, A).unwrap();
        push(&store, &queues, "t", "gone");
        for p in ["acked", "returned", "held", "ready"] {
            push(&store, &queues, "d", p);
        }
        let got = pop(&store, &queues, "d", 3, A, T0);
        queues.ack(Own(&store), b"d", &[got[0].id], A, T0).unwrap();
        queues
            .nack(Own(&store), b"d", &[got[1].id], true, A, T0)
            .unwrap();
        queues
            .exchange_declare(&store, b"ex", ExchangeKind::Direct, true)
            .unwrap();
        queues
            .bind(&store, b"ex", b"d", BindingRule::Key(b"k".to_vec()), A)
            .unwrap();
        // Not closed cleanly: the engine and model are dropped as a crash would leave them.
    }
    let (store, queues) = open();
    assert_eq!(queues.list(None), [b"d".to_vec()]);
    let got = pop(&store, &queues, "d", 10, A, T0);
    assert_eq!(payloads(&got), ["returned", "held", "ready"]);
    // "returned" was written back with 1 delivery; "held" was in flight (not counted).
    assert_eq!(
        got.iter().map(|m| m.deliveries).collect::<Vec<_>>(),
        [2, 1, 1]
    );
    let new_id = push(&store, &queues, "d", "new");
    assert!(
        new_id > got.iter().map(|m| m.id).max().unwrap(),
        "ids never reused"
    );
    assert_eq!(
        queues
            .publish(Own(&store), b"ex", b"k", msg("routed"), false, T0)
            .unwrap()
            .0,
        1
    );
}

/// What a queue of many ready messages costs in memory: a fixed entry per message, the
/// payloads staying in the log. (The figure for 10 million is in docs/benchmarks.md.)
#[test]
fn ready_messages_cost_a_fixed_entry_not_their_payload() {
    let (store, queues) = memory();
    queues.declare(&store, b"q", durable(), A).unwrap();
    let payload = "p".repeat(1000);
    for _ in 0..100 {
        let batch = (0..100).map(|_| msg(&payload)).collect();
        queues.push(Own(&store), b"q", batch, A, T0).unwrap();
    }
    let bytes = queues.ready_entry_bytes();
    assert!(bytes >= 10_000 * 16, "{bytes}");
    assert!(bytes <= 10_000 * 16 * 2, "{bytes} bytes for 10,000 entries");
}

/// Purged and deleted queues' messages stay gone after a restart although neither wrote a
/// tombstone per message (a floor, and the deleted declaration).
#[test]
fn purge_and_delete_survive_a_restart_without_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let engine = Engine::open(
            Config::directory(dir.path())
                .durability(Durability::Always)
                .background_compaction(false),
        )
        .unwrap();
        let store = Store::new(engine.clone());
        let queues = Queues::load(&store).unwrap();
        (engine, store, queues)
    };
    {
        let (engine, store, queues) = open();
        queues.declare(&store, b"p", durable(), A).unwrap();
        queues.declare(&store, b"d", durable(), A).unwrap();
        let batch = |n: usize| (0..n).map(|i| msg(&i.to_string())).collect::<Vec<_>>();
        queues.push(Own(&store), b"p", batch(1000), A, T0).unwrap();
        queues.push(Own(&store), b"d", batch(1000), A, T0).unwrap();
        let (purged, seq) = queues.purge(Own(&store), b"p", A).unwrap();
        assert_eq!(purged, 1000);
        assert_eq!(entry_kinds(&engine, seq), [RecordKind::Put]);
        let before = engine.last_seq();
        queues.delete(&store, b"d", A).unwrap();
        assert_eq!(
            engine.last_seq(),
            before + 1,
            "one entry: the declaration's tombstone"
        );
        push(&store, &queues, "p", "kept");
    }
    let (engine, store, queues) = open();
    assert_eq!(queues.list(None), [b"p".to_vec()]);
    assert_eq!(payloads(&pop(&store, &queues, "p", 10, A, T0)), ["kept"]);
    // The dead records were forgotten again at load: only live keys are indexed.
    assert_eq!(engine.len(super::NS), 2 + 1 + 1 + 1); // Q N, p's declaration, floor, message
}

/// A subscription without a prefetch limit on a long queue gets its messages in bounded
/// rounds (the model is not held for the whole queue): the rest come with the timer's ticks.
#[test]
fn unlimited_prefetch_is_served_in_bounded_rounds() {
    let (store, queues) = memory();
    queues.declare(&store, b"q", durable(), A).unwrap();
    let batch = (0..10_000).map(|i| msg(&i.to_string())).collect();
    queues.push(Own(&store), b"q", batch, A, T0).unwrap();
    let (mailbox, _) = counting_mailbox();
    queues.subscribe(&store, b"q", 0, A, &mailbox, T0).unwrap();
    let first = mailbox.take().len();
    assert!(first > 0 && first < 10_000, "{first} in the first round");
    let mut total = first;
    for _ in 0..10 {
        queues.tick(&store, T0).unwrap();
        total += mailbox.take().len();
    }
    assert_eq!(total, 10_000);
    assert_eq!(queues.len(Own(&store), b"q", A).unwrap(), 0);
}
