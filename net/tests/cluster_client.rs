//! A client of a cluster against scripted fake nodes (issue 14, decision 78): it follows
//! `MOVED` and routes later calls to the named leader, backs off and resends on `CLUSTERDOWN`
//! and `TRYAGAIN`, resends a read but not a write whose connection was lost after sending,
//! and ends a spent retry budget with an error naming the addresses tried. A client of one
//! node does none of it. Real processes and a SIGKILLed leader: server/tests/cluster_client.rs.

mod fake;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake::{fake_server, frame, Answer};
use flin_net::binary::{self, Header, Opcode, Status};
use flin_net::client::{Client, ClientOptions, Error, Reply, RetryPolicy};

const OK: u8 = Status::Ok as u8;
const NOT_FOUND: u8 = Status::NotFound as u8;
const ERROR: u8 = Status::Error as u8;

/// The key of a GET or SET body (u32 length, then the bytes), and a SET's value after it.
fn key_and_rest(body: &[u8]) -> (Vec<u8>, &[u8]) {
    let len = u32::from_le_bytes(body[..4].try_into().unwrap()) as usize;
    (body[4..4 + len].to_vec(), &body[4 + len..])
}

/// A leader that keeps SETs in a map and answers GETs from it (and a typed 7 to anything
/// else), counting requests.
fn leader() -> (SocketAddr, Arc<AtomicUsize>) {
    let store = Arc::new(Mutex::new(HashMap::<Vec<u8>, Vec<u8>>::new()));
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    let addr = fake_server(Arc::new(move |header: &Header, body: &[u8]| {
        counted.fetch_add(1, Ordering::SeqCst);
        let (opcode, id) = (header.opcode, header.request_id);
        Some(Answer::Send(if opcode == Opcode::Set as u8 {
            let (key, rest) = key_and_rest(body);
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            store.lock().unwrap().insert(key, rest[4..4 + len].to_vec());
            frame(opcode, OK, id, b"")
        } else if opcode == Opcode::Get as u8 {
            match store.lock().unwrap().get(&key_and_rest(body).0) {
                Some(value) => frame(opcode, OK, id, value),
                None => frame(opcode, NOT_FOUND, id, b""),
            }
        } else {
            let mut value = Vec::new();
            binary::ValueWriter::new(&mut value).integer(7);
            frame(opcode, OK, id, &value)
        }))
    }));
    (addr, requests)
}

/// A node answering every request with the error `message`, counting requests.
fn refusing(message: String) -> (SocketAddr, Arc<AtomicUsize>) {
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    let addr = fake_server(Arc::new(move |header: &Header, _body: &[u8]| {
        counted.fetch_add(1, Ordering::SeqCst);
        let reply = frame(header.opcode, ERROR, header.request_id, message.as_bytes());
        Some(Answer::Send(reply))
    }));
    (addr, requests)
}

/// An address nothing listens on.
fn dead_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn quick_policy() -> RetryPolicy {
    RetryPolicy::new().backoff(Duration::from_millis(1), Duration::from_millis(5))
}

fn cluster_client(seeds: &[SocketAddr], policy: RetryPolicy) -> Client {
    Client::connect_cluster_with(seeds, ClientOptions::new().pool_size(2).retry(policy)).unwrap()
}

#[test]
fn a_moved_is_followed_and_later_calls_go_straight_to_the_leader() {
    let (leader, leader_requests) = leader();
    let (follower, follower_requests) = refusing(format!("MOVED 0 {leader}"));
    let client = cluster_client(&[follower], quick_policy());

    client.kv().set("k", "v").unwrap();
    assert_eq!(client.cluster_leader(), Some(leader));
    assert_eq!(client.kv().get("k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(
        client.db().count("users", "{}").unwrap(),
        7,
        "a table row follows too"
    );
    assert_eq!(
        follower_requests.load(Ordering::SeqCst),
        1,
        "asked once, then routed"
    );
    assert_eq!(leader_requests.load(Ordering::SeqCst), 3);

    // A pipeline the follower refused as a whole is sent again to the leader.
    let (follower, follower_requests) = refusing(format!("MOVED 0 {leader}"));
    let client = cluster_client(&[follower], quick_policy());
    let mut pipeline = client.pipeline();
    pipeline.kv().set("p", "1").get("p");
    let replies = pipeline.execute().unwrap();
    assert_eq!(replies[1], Ok(Reply::Value(Some(b"1".to_vec()))));
    assert_eq!(follower_requests.load(Ordering::SeqCst), 2);
    assert_eq!(leader_requests.load(Ordering::SeqCst), 5);
}

#[test]
fn clusterdown_and_tryagain_are_resent_after_a_wait() {
    let (leader, _) = leader();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    // The first three requests find an election, then a new leader committing its term.
    let node = fake_server(Arc::new(move |header: &Header, _body: &[u8]| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        let message = match n {
            0 | 1 => "CLUSTERDOWN no leader is known (an election is under way); retry".into(),
            2 => "TRYAGAIN this node was just elected and is committing its term; retry".into(),
            _ => format!("MOVED 0 {leader}"),
        };
        let reply = frame(header.opcode, ERROR, header.request_id, message.as_bytes());
        Some(Answer::Send(reply))
    }));
    let client = cluster_client(&[node], quick_policy());
    client.kv().set("k", "v").unwrap();
    assert_eq!(requests.load(Ordering::SeqCst), 4);
    assert_eq!(client.kv().get("k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(
        requests.load(Ordering::SeqCst),
        4,
        "routed to the leader since"
    );
}

/// A node that drops the connection without answering the first `lost` requests, and
/// otherwise is [`leader`]'s store (SET and GET only).
fn losing(lost: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let store = Arc::new(Mutex::new(HashMap::<Vec<u8>, Vec<u8>>::new()));
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    let addr = fake_server(Arc::new(move |header: &Header, body: &[u8]| {
        if counted.fetch_add(1, Ordering::SeqCst) < lost {
            return None; // closes: the request may or may not have run
        }
        let (opcode, id) = (header.opcode, header.request_id);
        let (key, rest) = key_and_rest(body);
        Some(Answer::Send(if opcode == Opcode::Set as u8 {
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            store.lock().unwrap().insert(key, rest[4..4 + len].to_vec());
            frame(opcode, OK, id, b"")
        } else {
            match store.lock().unwrap().get(&key) {
                Some(value) => frame(opcode, OK, id, value),
                None => frame(opcode, NOT_FOUND, id, b""),
            }
        }))
    }));
    (addr, requests)
}

#[test]
fn a_write_lost_after_sending_is_indeterminate_and_a_read_is_resent() {
    let (node, requests) = losing(2);
    let client = cluster_client(&[node], quick_policy());
    match client.kv().set("k", "v") {
        Err(Error::Indeterminate { addr, cause }) => {
            assert_eq!(addr, node);
            assert!(cause.is_network(), "{cause}");
        }
        other => panic!("expected Indeterminate, got {other:?}"),
    }
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "the write was not resent"
    );
    assert_eq!(
        client.kv().get("k").unwrap(),
        None,
        "the lost read was resent"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 3);

    // Opted in: the write is resent.
    let (node, requests) = losing(1);
    let client = cluster_client(&[node], quick_policy().retry_writes(true));
    client.kv().set("k", "v").unwrap();
    assert_eq!(requests.load(Ordering::SeqCst), 2);
    assert_eq!(client.kv().get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn a_withdrawn_reply_is_indeterminate() {
    let node = fake_server(Arc::new(|header: &Header, _body: &[u8]| {
        let message = b"ERR the write was not committed: a new leader replaced it";
        let reply = frame(header.opcode, ERROR, header.request_id, message);
        Some(Answer::SendAndClose(reply))
    }));
    let client = cluster_client(&[node], quick_policy());
    let error = client.kv().set("k", "v").unwrap_err();
    assert!(error.is_indeterminate(), "{error}");
    assert!(error.to_string().contains("not committed"), "{error}");
}

#[test]
fn a_spent_budget_names_the_addresses_tried() {
    let (down, requests) =
        refusing("CLUSTERDOWN no leader is known (an election is under way); retry".into());
    let dead = dead_addr();
    let policy = quick_policy().attempts(4);
    let client = cluster_client(&[down, dead], policy);
    let error = client.kv().get("k").unwrap_err();
    let Error::RetriesExhausted {
        attempts,
        ref tried,
        ref last,
        ..
    } = error
    else {
        panic!("expected RetriesExhausted, got {error:?}");
    };
    assert_eq!(attempts, 4);
    assert_eq!(requests.load(Ordering::SeqCst), 4);
    assert_eq!(*tried, [down]);
    assert!(last.to_string().contains("CLUSTERDOWN"), "{last}");
    assert!(error.to_string().contains(&down.to_string()), "{error}");

    // A MOVED to a node that is gone: the seeds are asked again, and the leader forgotten.
    let (follower, _) = refusing(format!("MOVED 0 {dead}"));
    let policy = quick_policy().time(Duration::from_millis(200));
    let client = cluster_client(&[follower], policy);
    let error = client.kv().set("k", "v").unwrap_err();
    let message = error.to_string();
    assert!(error.is_retries_exhausted(), "{message}");
    assert!(
        message.contains(&format!("tried {follower}, {dead}")),
        "{message}"
    );
}

#[test]
fn a_client_of_one_node_does_not_follow_redirects() {
    let (leader, leader_requests) = leader();
    let (follower, follower_requests) = refusing(format!("MOVED 0 {leader}"));
    let client = Client::connect(follower).unwrap();
    let error = client.kv().set("k", "v").unwrap_err();
    assert!(
        error.is_server() && error.to_string().contains("MOVED"),
        "{error}"
    );
    assert_eq!(follower_requests.load(Ordering::SeqCst), 1);
    assert_eq!(leader_requests.load(Ordering::SeqCst), 0);
    assert_eq!(client.cluster_leader(), None);
}
