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

/// A Redis Cluster client works against a Flin cluster unchanged: redis-rs's `ClusterClient`,
/// given the three nodes, reads `CLUSTER SLOTS` (one range, the leader first, the other voters
/// as its replicas) and sends every key to the leader; after a leadership transfer the old
/// leader answers `-MOVED <the key's slot> <new leader>`, and the client refreshes its slots
/// and resends without the caller doing anything; after the new leader is killed, a fresh
/// connection finds the next one. Every acknowledged value is read back at each step.
#[test]
fn a_redis_cluster_client_follows_the_slots_through_a_transfer_and_a_kill() {
    use redis::Commands;
    let mut cluster = start_cluster();
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;

    // CLUSTER SLOTS, asked of a follower: the leader first. The leader takes writes once its
    // term's first entry is in its own log, which may be before the follower has heard from
    // it (an empty array then: no leader known): asked until the follower knows it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let slots: redis::Value = loop {
        let slots: redis::Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut cluster.connect(follower))
            .unwrap();
        if slots != redis::Value::Array(vec![]) || Instant::now() >= deadline {
            break slots;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let redis::Value::Array(ranges) = &slots else {
        panic!("CLUSTER SLOTS: {slots:?}");
    };
    let redis::Value::Array(range) = &ranges[0] else {
        panic!("CLUSTER SLOTS: {slots:?}");
    };
    assert_eq!(ranges.len(), 1, "{slots:?}");
    assert_eq!(range[0], redis::Value::Int(0));
    assert_eq!(range[1], redis::Value::Int(16383));
    assert_eq!(range.len(), 5, "the leader and two replicas: {slots:?}");
    let redis::Value::Array(first) = &range[2] else {
        panic!("CLUSTER SLOTS: {slots:?}");
    };
    assert_eq!(
        first[1],
        redis::Value::Int(i64::from(cluster.ports[leader])),
        "{slots:?}"
    );

    // CLUSTER SHARDS (RESP2: maps as flat arrays): the one shard, the leader as its master.
    let shards: redis::Value = redis::cmd("CLUSTER")
        .arg("SHARDS")
        .query(&mut cluster.connect(follower))
        .unwrap();
    let text = format!("{shards:?}");
    let leader_entry = format!(
        "bulk-string('\"id\"'), bulk-string('\"{}\"'), bulk-string('\"port\"'), int({})",
        leader + 1,
        cluster.ports[leader]
    );
    assert!(text.contains(&leader_entry), "{text}");
    assert_eq!(text.matches("\"master\"").count(), 1, "{text}");
    assert_eq!(text.matches("\"replica\"").count(), 2, "{text}");

    let nodes: Vec<String> = cluster
        .addrs
        .iter()
        .map(|addr| format!("redis://{addr}"))
        .collect();
    let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
        .retries(30)
        .build()
        .unwrap();
    let mut con = client.get_connection().unwrap();
    for i in 0..50 {
        let _: () = con.set(format!("key:{i}"), i).unwrap();
    }
    let read_back = |con: &mut redis::cluster::ClusterConnection| {
        for i in 0..50 {
            let value: i64 = con.get(format!("key:{i}")).unwrap();
            assert_eq!(value, i);
        }
    };
    read_back(&mut con);

    // The old leader redirects to the new one, naming each key's slot.
    let _: () = redis::cmd("CLUSTER.TRANSFER")
        .arg(follower + 1)
        .query(&mut cluster.connect(leader))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.info(follower).contains("accepting_writes:1") {
        assert!(Instant::now() < deadline, "the transfer never happened");
        thread::sleep(Duration::from_millis(10));
    }
    let refusal = redis::cmd("SET")
        .arg("key:7")
        .arg("x")
        .query::<()>(&mut cluster.connect(leader))
        .unwrap_err();
    let new_leader = cluster.addrs[follower].to_string();
    assert_eq!(
        refusal.redirect_node(),
        Some((
            new_leader.as_str(),
            flin_server::cluster::slot::key_slot(b"key:7")
        )),
        "{refusal}"
    );
    let _: () = con.set("after", "transfer").unwrap();
    let _: () = con.incr("key:49", 1).unwrap();
    let value: i64 = con.get("key:49").unwrap();
    assert_eq!(value, 50);
    let _: () = con.set("key:49", 49).unwrap();
    read_back(&mut con);

    // The new leader killed: a fresh connection (redis-rs's synchronous client refreshes its
    // slots on MOVED, not on a refused connection) finds the next leader.
    cluster.kill(follower);
    let next = cluster.leader_other_than(Some(follower));
    let client = redis::cluster::ClusterClientBuilder::new(
        [leader, (leader + 2) % 3].map(|i| format!("redis://{}", cluster.addrs[i])),
    )
    .retries(30)
    .build()
    .unwrap();
    let mut con = client.get_connection().unwrap();
    read_back(&mut con);
    let after: String = con.get("after").unwrap();
    assert_eq!(after, "transfer");
    let _: () = con.set("after", "kill").unwrap();
    let value: String = redis::cmd("GET")
        .arg("after")
        .query(&mut cluster.connect(next))
        .unwrap();
    assert_eq!(value, "kill");
}
