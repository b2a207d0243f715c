//! The Rust client against three real `flin-server` processes (issue 14, decision 78): a
//! client given a follower reaches the leader through `MOVED`, finds the new leader after the
//! old one is killed with SIGKILL without the caller reconnecting, never reports a write in
//! flight at the kill as done unless it was, and ends a spent retry budget with an error
//! naming the nodes it tried. The fake-node tests of the same rules are
//! net/tests/cluster_client.rs.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use flin_net::client::{Client, ClientOptions, Error, RetryPolicy};

fn start_cluster() -> TestCluster {
    TestCluster::start(&["--raft-tick-ms", "20"])
}

#[test]
fn the_client_reaches_the_leader_from_a_follower_and_finds_the_next_one_after_a_kill() {
    let mut cluster = start_cluster();
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    // The follower first: the first call is redirected.
    let seeds = [follower, (leader + 2) % 3, leader].map(|i| cluster.addrs[i]);
    let client = Client::connect_cluster(&seeds).unwrap();

    client.kv().set("k", "before").unwrap();
    assert_eq!(client.cluster_leader(), Some(cluster.addrs[leader]));
    assert_eq!(
        client.kv().get("k").unwrap().as_deref(),
        Some(&b"before"[..])
    );
    let ids = client
        .db()
        .insert("users", &[r#"{"_id":1,"name":"ada"}"#])
        .unwrap();
    assert_eq!(ids, [b"1".to_vec()]);

    cluster.kill(leader);
    // No reconnect, no retry by the caller: the next calls wait out the election.
    client.kv().set("k", "after").unwrap();
    let new_leader = cluster.leader();
    assert_ne!(new_leader, leader);
    assert_eq!(client.cluster_leader(), Some(cluster.addrs[new_leader]));
    assert_eq!(
        client.kv().get("k").unwrap().as_deref(),
        Some(&b"after"[..])
    );
    let user = client.db().get("users", "1").unwrap().expect("replicated");
    assert!(String::from_utf8(user).unwrap().contains("ada"));
}

#[test]
fn a_write_in_flight_at_the_kill_is_acknowledged_only_if_it_was_applied() {
    let mut cluster = start_cluster();
    let leader = cluster.leader();
    let client = Client::connect_cluster(&cluster.addrs).unwrap();
    client.kv().set("counter", "0").unwrap();

    // Writers INCR one counter as fast as they can while the leader is killed: each INCR is
    // acknowledged (it ran, once), indeterminate (it may have run), or an error.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (client, stop) = (client.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let (mut acked, mut unknown) = (0u64, 0u64);
                while !stop.load(Ordering::SeqCst) {
                    match client.kv().incr("counter") {
                        Ok(_) => acked += 1,
                        Err(Error::Indeterminate { .. }) => unknown += 1,
                        Err(error) => panic!("an INCR failed otherwise: {error}"),
                    }
                }
                (acked, unknown)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    cluster.kill(leader);
    let new_leader = cluster.leader();
    let acked_at_election = client.kv().get("counter").unwrap();
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let (mut acked, mut unknown) = (0, 0);
    for writer in writers {
        let (a, u) = writer.join().unwrap();
        acked += a;
        unknown += u;
    }

    let value: u64 = String::from_utf8(client.kv().get("counter").unwrap().unwrap())
        .unwrap()
        .parse()
        .unwrap();
    assert!(acked_at_election.is_some());
    assert_eq!(client.cluster_leader(), Some(cluster.addrs[new_leader]));
    // Every acknowledged INCR is there; only the indeterminate ones may be missing.
    assert!(
        value >= acked && value <= acked + unknown,
        "counter {value}, {acked} acknowledged, {unknown} indeterminate"
    );
    println!("counter {value}: {acked} acknowledged, {unknown} indeterminate");
}

#[test]
fn with_no_majority_the_budget_ends_in_an_error_naming_the_nodes_tried() {
    let mut cluster = start_cluster();
    let leader = cluster.leader();
    let survivor = (leader + 1) % 3;
    let policy = RetryPolicy::new().time(Duration::from_millis(1500));
    let client =
        Client::connect_cluster_with(&cluster.addrs, ClientOptions::new().retry(policy)).unwrap();
    client.kv().set("k", "v").unwrap();

    cluster.kill(leader);
    cluster.kill((leader + 2) % 3);
    let started = Instant::now();
    let error = client.kv().get("k").unwrap_err();
    let message = error.to_string();
    assert!(error.is_retries_exhausted(), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10), "{message}");
    // The survivor was asked (it answered CLUSTERDOWN, or MOVED to the dead leader), and so
    // was the dead leader the client knew.
    assert!(
        message.contains(&cluster.addrs[survivor].to_string()),
        "{message}"
    );
    assert!(
        message.contains(&cluster.addrs[leader].to_string()),
        "{message}"
    );
}
