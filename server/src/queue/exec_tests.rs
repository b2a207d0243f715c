//! Queue commands inside MULTI/EXEC (decision 70), through the real dispatcher: pushes,
//! publishes, acks and purges commit in EXEC's one entry with documents and keys, a refused
//! command leaves nothing, a failed commit leaves the model as it was, waiters are woken
//! after the commit, and concurrent EXECs and direct pushes and pops neither deadlock nor lose
//! a message.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flin_engine::sim::SimDisk;
use flin_engine::Config;

use super::session::QueueSession;
use super::Mailbox;
use crate::cmd::test_support::Harness;
use crate::config::Options;
use crate::context::{Session, Shared};
use crate::frame::Frame;

fn run(shared: &Shared, session: &mut Session, args: &[&str]) -> Frame {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    crate::dispatch::execute(shared, session, &args).0
}

fn queued() -> Frame {
    Frame::Simple("QUEUED".into())
}

fn int(frame: &Frame) -> i64 {
    match frame {
        Frame::Integer(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// A popped message's id and payload, from QUEUE.POP's reply.
fn popped(frame: Frame) -> Vec<(i64, String)> {
    let Frame::Array(messages) = frame else {
        panic!("expected messages, got {frame:?}")
    };
    messages
        .into_iter()
        .map(|message| match message {
            Frame::Array(fields) => match (&fields[0], &fields[1]) {
                (Frame::Integer(id), Frame::Bulk(payload)) => {
                    (*id, String::from_utf8(payload.clone()).unwrap())
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        })
        .collect()
}

/// QUEUE.INFO's field `name`.
fn info_field(shared: &Shared, session: &mut Session, queue: &str, name: &str) -> Frame {
    let Frame::Map(pairs) = run(shared, session, &["QUEUE.INFO", queue]) else {
        panic!("QUEUE.INFO")
    };
    pairs
        .into_iter()
        .find(|(k, _)| *k == Frame::bulk(name))
        .map(|(_, v)| v)
        .expect("field")
}

fn exec(h: &mut Harness, commands: &[&[&str]]) -> Frame {
    assert_eq!(run(&h.shared, &mut h.session, &["MULTI"]), Frame::ok());
    for command in commands {
        assert_eq!(
            run(&h.shared, &mut h.session, command),
            queued(),
            "{command:?}"
        );
    }
    run(&h.shared, &mut h.session, &["EXEC"])
}

#[test]
fn push_and_ack_commit_with_a_document_and_a_key_and_reads_see_them() {
    let mut h = Harness::new();
    let (shared, s) = (&h.shared, &mut h.session);
    assert_eq!(run(shared, s, &["QUEUE.DECLARE", "q"]), Frame::ok());
    run(shared, s, &["QUEUE.PUSH", "q", "first"]);
    let held = popped(run(shared, s, &["QUEUE.POP", "q"]));
    let held_id = held[0].0.to_string();
    let Frame::Array(replies) = exec(
        &mut h,
        &[
            &["DOC.INSERT", "orders", r#"{"_id":1,"state":"paid"}"#],
            &["SET", "outbox:1", "sent"],
            &["QUEUE.PUSH", "q", "order 1 paid"],
            &["QUEUE.MPUSH", "q", "PAYLOADS", "a", "b"],
            &["QUEUE.LEN", "q"],
            &["QUEUE.ACK", "q", &held_id],
            &["QUEUE.INFO", "q"],
            &["EXCHANGE.PUBLISH", "", "q", "by default exchange"],
        ],
    ) else {
        panic!("EXEC")
    };
    assert!(matches!(replies[2], Frame::Integer(_)), "{:?}", replies[2]);
    assert_eq!(replies[4], Frame::Integer(3), "LEN sees the EXEC's pushes");
    assert_eq!(replies[5], Frame::Integer(1));
    assert_eq!(replies[7], Frame::Integer(1));
    let (shared, s) = (&h.shared, &mut h.session);
    assert_eq!(run(shared, s, &["GET", "outbox:1"]), Frame::bulk("sent"));
    assert_eq!(run(shared, s, &["QUEUE.LEN", "q"]), Frame::Integer(4));
    assert_eq!(info_field(shared, s, "q", "inflight"), Frame::Integer(0));
    assert_eq!(info_field(shared, s, "q", "acked"), Frame::Integer(1));
    let payloads: Vec<String> = popped(run(shared, s, &["QUEUE.POP", "q", "COUNT", "10"]))
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(payloads, ["order 1 paid", "a", "b", "by default exchange"]);
}

#[test]
fn a_refused_queue_command_inside_exec_leaves_nothing_and_the_others_commit() {
    let mut h = Harness::new();
    let (shared, s) = (&h.shared, &mut h.session);
    run(shared, s, &["QUEUE.DECLARE", "q"]);
    run(
        shared,
        s,
        &[
            "QUEUE.DECLARE",
            "small",
            "MAXLEN",
            "1",
            "OVERFLOW",
            "REJECT",
        ],
    );
    run(shared, s, &["QUEUE.PUSH", "small", "there"]);
    let Frame::Array(replies) = exec(
        &mut h,
        &[
            &["QUEUE.PUSH", "q", "kept"],
            &["QUEUE.ACK", "q", "999"],
            &["QUEUE.PUSH", "nosuch", "x"],
            &["QUEUE.MPUSH", "small", "PAYLOADS", "y", "z"],
            &["QUEUE.NACK", "q", "999"],
            &["SET", "k", "v"],
        ],
    ) else {
        panic!("EXEC")
    };
    for (at, why) in [
        (1, "not in flight"),
        (2, "no queue"),
        (3, "is full"),
        (4, "not in flight"),
    ] {
        assert!(
            matches!(&replies[at], Frame::Error(e) if e.contains(why)),
            "{at}: {:?}",
            replies[at]
        );
    }
    let (shared, s) = (&h.shared, &mut h.session);
    assert_eq!(run(shared, s, &["QUEUE.LEN", "q"]), Frame::Integer(1));
    assert_eq!(run(shared, s, &["QUEUE.LEN", "small"]), Frame::Integer(1));
    assert_eq!(info_field(shared, s, "small", "pushed"), Frame::Integer(1));
    assert_eq!(run(shared, s, &["GET", "k"]), Frame::bulk("v"));
}

#[test]
fn pops_waits_and_declarations_are_refused_inside_multi_by_name() {
    let mut h = Harness::new();
    let (shared, s) = (&h.shared, &mut h.session);
    run(shared, s, &["QUEUE.DECLARE", "q"]);
    for command in [
        &["QUEUE.POP", "q"][..],
        &["QUEUE.BPOP", "q", "0"],
        &["QUEUE.SUBSCRIBE", "q"],
        &["QUEUE.DECLARE", "r"],
        &["QUEUE.DELETE", "q"],
        &["EXCHANGE.BIND", "x", "q", "k"],
    ] {
        assert_eq!(run(shared, s, &["MULTI"]), Frame::ok());
        let name = command[0];
        assert_eq!(
            run(shared, s, command),
            Frame::error(format!("ERR {name} is not allowed inside MULTI"))
        );
        assert!(matches!(run(shared, s, &["EXEC"]), Frame::Error(e) if e.starts_with("EXECABORT")));
    }
}

#[test]
fn purge_inside_exec_drops_what_the_exec_pushed_before_it() {
    let mut h = Harness::new();
    run(&h.shared, &mut h.session, &["QUEUE.DECLARE", "q"]);
    run(&h.shared, &mut h.session, &["QUEUE.PUSH", "q", "old"]);
    let Frame::Array(replies) = exec(
        &mut h,
        &[
            &["QUEUE.PUSH", "q", "new"],
            &["QUEUE.PURGE", "q"],
            &["QUEUE.PUSH", "q", "after"],
        ],
    ) else {
        panic!("EXEC")
    };
    assert_eq!(replies[1], Frame::Integer(2));
    let left = popped(run(
        &h.shared,
        &mut h.session,
        &["QUEUE.POP", "q", "COUNT", "10"],
    ));
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1, "after");
}

/// A counting mailbox installed in a new session.
fn waiting_session(id: u64) -> (Session, Arc<AtomicUsize>) {
    let wakes = Arc::new(AtomicUsize::new(0));
    let counter = wakes.clone();
    let mut session = Session::new(id, "127.0.0.1:9".parse().unwrap(), true);
    session.queue = QueueSession::new(Mailbox::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    (session, wakes)
}

#[test]
fn waiters_and_subscribers_get_an_exec_push_once_it_committed() {
    let mut h = Harness::new();
    run(&h.shared, &mut h.session, &["QUEUE.DECLARE", "q"]);
    run(&h.shared, &mut h.session, &["QUEUE.DECLARE", "s"]);
    let (mut waiter, waiter_wakes) = waiting_session(7);
    assert_eq!(
        run(&h.shared, &mut waiter, &["QUEUE.BPOP", "q", "0"]),
        Frame::NullArray
    );
    let (mut subscriber, subscriber_wakes) = waiting_session(8);
    assert_eq!(
        run(&h.shared, &mut subscriber, &["QUEUE.SUBSCRIBE", "s"]),
        Frame::ok()
    );
    // Queued, not run: nobody is woken before EXEC.
    assert_eq!(run(&h.shared, &mut h.session, &["MULTI"]), Frame::ok());
    run(
        &h.shared,
        &mut h.session,
        &["QUEUE.PUSH", "q", "for the waiter"],
    );
    run(
        &h.shared,
        &mut h.session,
        &["QUEUE.PUSH", "s", "for the subscriber"],
    );
    assert_eq!(waiter_wakes.load(Ordering::SeqCst), 0);
    assert!(matches!(
        run(&h.shared, &mut h.session, &["EXEC"]),
        Frame::Array(_)
    ));
    assert_eq!(waiter_wakes.load(Ordering::SeqCst), 1);
    assert_eq!(subscriber_wakes.load(Ordering::SeqCst), 1);
    let delivered = waiter.queue.mailbox.take();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].messages[0].payload, b"for the waiter");
    let pushed = subscriber.queue.mailbox.take();
    assert_eq!(pushed[0].messages[0].payload, b"for the subscriber");
    assert_eq!(
        run(&h.shared, &mut h.session, &["QUEUE.LEN", "q"]),
        Frame::Integer(0)
    );
}

fn simulated(disk: &SimDisk) -> Harness {
    let mut config = Config::simulated(disk, "/data").segment_bytes(4096);
    config.background_sealing = false;
    Harness::with_config(config, Options::default())
}

/// The commit of an EXEC fails (a full disk): nothing of it is visible, neither records nor
/// the queue model's changes; a restart keeps exactly the committed EXEC's message.
#[test]
fn a_failed_exec_commit_leaves_the_queue_as_it_was_and_a_restart_keeps_only_committed_execs() {
    let disk = SimDisk::new();
    let mut h = simulated(&disk);
    let (shared, s) = (&h.shared, &mut h.session);
    run(shared, s, &["QUEUE.DECLARE", "q", "DURABLE"]);
    run(shared, s, &["QUEUE.PUSH", "q", "held"]);
    let held_id = popped(run(shared, s, &["QUEUE.POP", "q"]))[0].0.to_string();
    let Frame::Array(_) = exec(
        &mut h,
        &[
            &["DOC.INSERT", "o", r#"{"_id":1}"#],
            &["QUEUE.PUSH", "q", "committed"],
        ],
    ) else {
        panic!("EXEC")
    };
    let big = "x".repeat(8000);
    disk.set_full(true);
    let failed = exec(
        &mut h,
        &[
            &["QUEUE.PUSH", "q", "lost"],
            &["QUEUE.ACK", "q", &held_id],
            &["DOC.INSERT", "o", r#"{"_id":2}"#],
            &["SET", "big", &big],
            &["QUEUE.LEN", "q"],
        ],
    );
    disk.set_full(false);
    assert!(matches!(&failed, Frame::Error(_)), "{failed:?}");
    let (shared, s) = (&h.shared, &mut h.session);
    assert_eq!(run(shared, s, &["QUEUE.LEN", "q"]), Frame::Integer(1));
    assert_eq!(info_field(shared, s, "q", "inflight"), Frame::Integer(1));
    assert_eq!(info_field(shared, s, "q", "acked"), Frame::Integer(0));
    assert_eq!(info_field(shared, s, "q", "pushed"), Frame::Integer(2));
    assert_eq!(run(shared, s, &["GET", "big"]), Frame::Null);
    assert_eq!(run(shared, s, &["DOC.GET", "o", "2"]), Frame::Null);
    // The message is still in flight to this connection, and the next push takes the id the
    // failed one would have had, without colliding.
    assert_eq!(
        run(shared, s, &["QUEUE.ACK", "q", &held_id]),
        Frame::Integer(1)
    );
    let next = int(&run(shared, s, &["QUEUE.PUSH", "q", "after"]));
    assert!(next > held_id.parse::<i64>().unwrap());
    drop(h);
    let mut h = simulated(&disk);
    let (shared, s) = (&h.shared, &mut h.session);
    let payloads: Vec<String> = popped(run(shared, s, &["QUEUE.POP", "q", "COUNT", "10"]))
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(payloads, ["committed", "after"]);
    assert!(matches!(
        run(shared, s, &["DOC.GET", "o", "1"]),
        Frame::Bulk(_)
    ));
    assert_eq!(run(shared, s, &["DOC.GET", "o", "2"]), Frame::Null);
}

/// EXECs that push (with a key each) on some threads, direct pushes, pops and acks on
/// others, a bounded number of rounds each: every thread finishes (one lock order, no
/// deadlock) and every message is delivered exactly once.
#[test]
fn concurrent_execs_and_direct_pushes_and_pops_finish_and_lose_nothing() {
    const ROUNDS: usize = 200;
    let h = Harness::new();
    let shared = &h.shared;
    run(
        shared,
        &mut Session::new(99, "127.0.0.1:9".parse().unwrap(), true),
        &["QUEUE.DECLARE", "q"],
    );
    let consumed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for thread in 0..2u64 {
            scope.spawn(move || {
                let mut s = Session::new(10 + thread, "127.0.0.1:9".parse().unwrap(), true);
                for round in 0..ROUNDS {
                    let payload = format!("exec-{thread}-{round}");
                    assert_eq!(run(shared, &mut s, &["MULTI"]), Frame::ok());
                    run(shared, &mut s, &["QUEUE.PUSH", "q", &payload]);
                    run(shared, &mut s, &["SET", &payload, "1"]);
                    run(shared, &mut s, &["QUEUE.LEN", "q"]);
                    let reply = run(shared, &mut s, &["EXEC"]);
                    assert!(matches!(reply, Frame::Array(_)), "{reply:?}");
                }
            });
        }
        for thread in 0..2u64 {
            let consumed = &consumed;
            scope.spawn(move || {
                let mut s = Session::new(20 + thread, "127.0.0.1:9".parse().unwrap(), true);
                for round in 0..ROUNDS {
                    let payload = format!("direct-{thread}-{round}");
                    run(shared, &mut s, &["QUEUE.PUSH", "q", &payload]);
                    let taken = popped(run(shared, &mut s, &["QUEUE.POP", "q", "COUNT", "2"]));
                    for (id, payload) in taken {
                        let acked = run(shared, &mut s, &["QUEUE.ACK", "q", &id.to_string()]);
                        assert_eq!(acked, Frame::Integer(1));
                        consumed.lock().unwrap().push(payload);
                    }
                }
            });
        }
    });
    let mut s = Session::new(30, "127.0.0.1:9".parse().unwrap(), true);
    let mut consumed = consumed.into_inner().unwrap();
    consumed.extend(
        popped(run(shared, &mut s, &["QUEUE.POP", "q", "COUNT", "100000"]))
            .into_iter()
            .map(|(_, p)| p),
    );
    let unique: BTreeSet<&String> = consumed.iter().collect();
    assert_eq!(
        unique.len(),
        consumed.len(),
        "a message was delivered twice"
    );
    let expected: BTreeSet<String> = (0..2)
        .flat_map(|t| {
            (0..ROUNDS).flat_map(move |r| [format!("exec-{t}-{r}"), format!("direct-{t}-{r}")])
        })
        .collect();
    assert_eq!(
        unique.into_iter().cloned().collect::<BTreeSet<_>>(),
        expected
    );
    assert_eq!(
        run(shared, &mut s, &["DBSIZE"]),
        Frame::Integer(2 * ROUNDS as i64)
    );
}
