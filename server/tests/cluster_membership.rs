//! Replacing a dead node in a real 3-process cluster (issue 14): node 3 is killed and
//! removed (CLUSTER.REMOVE), a new node 4 starts from an empty data directory with `--join`,
//! is added (CLUSTER.ADD), catches up as a learner and is promoted to voter by the leader;
//! then another of the old nodes is killed, and the two voters left (one of them node 4)
//! elect a leader that takes writes. Node 4 ends with every acknowledged write, and the old
//! node restarted with its old `--cluster`, and node 4 restarted, find the new membership in
//! their logs. Node 3's id is refused by CLUSTER.ADD from its removal on, on every leader.
//! Last, node 4 is made the leader and removed: it stops by itself once it applies its
//! removal, and does not start again.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{free_ports, TestCluster};
use common::ServerGuard;
use redis::{Connection, Value};

fn connect(url: &str) -> Connection {
    let con = redis::Client::open(url).unwrap().get_connection().unwrap();
    con.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    con
}

fn info(con: &mut Connection) -> String {
    redis::cmd("CLUSTER").arg("INFO").query(con).unwrap()
}

/// The ids on a `CLUSTER INFO` line such as `voters:1,2,4`.
fn ids(info: &str, key: &str) -> Vec<u64> {
    let line = info
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("{key} in {info}"));
    line.trim()
        .split(',')
        .filter(|id| !id.is_empty())
        .map(|id| id.parse().unwrap())
        .collect()
}

/// CLUSTER.ADD of the removed node 3 is refused, naming its removal (a leader that has not
/// applied its first entry yet says so first: asked again).
fn adding_node_3_again_is_refused(con: &mut Connection) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let error = redis::cmd("CLUSTER.ADD")
            .arg(3)
            .arg("127.0.0.1:1")
            .query::<Value>(con)
            .unwrap_err()
            .to_string();
        if error.contains("not applied yet") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        assert!(
            error.contains("node 3 was removed from the cluster"),
            "{error}"
        );
        return;
    }
}

/// The removed node `node` stops by itself (a clean exit) within 15 s.
fn stops_by_itself(node: &mut ServerGuard, what: &str) {
    let status = node.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some_and(|status| status.success()),
        "{what} did not stop by itself: {status:?}"
    );
}

/// Started on `data` with `args`, removed node `id` refuses to run, naming its removal.
fn refuses_to_start(id: u64, port: u16, data: &std::path::Path, args: &[String]) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, stderr) = ServerGuard::run_to_exit(port, data, &args, Duration::from_secs(15));
    assert!(
        status.is_some_and(|status| !status.success()),
        "a removed node started again: {status:?} {stderr}"
    );
    assert!(
        stderr.contains(&format!("node {id} was removed from the cluster")),
        "{stderr}"
    );
}

fn set_all(con: &mut Connection, keys: std::ops::Range<u32>) {
    for n in keys {
        let _: () = redis::cmd("SET")
            .arg(format!("k{n}"))
            .arg(n)
            .query(con)
            .unwrap();
    }
}

#[test]
fn a_dead_node_is_replaced_by_removing_it_and_adding_a_new_one() {
    let mut cluster = TestCluster::start(&["--raft-tick-ms", "50", "--fsync", "always"]);
    let mut con = cluster.connect(cluster.leader());
    set_all(&mut con, 0..30);

    // Node 3 dies; the two others (a majority of three) remove it.
    cluster.kill(2);
    let leader = cluster.leader();
    let mut con = cluster.connect(leader);
    let follower = 1 - leader;
    let error = redis::cmd("CLUSTER.REMOVE")
        .arg(3)
        .query::<Value>(&mut cluster.connect(follower))
        .unwrap_err();
    assert_eq!(error.code(), Some("MOVED"), "{error:?}");
    let _: () = redis::cmd("CLUSTER.REMOVE").arg(3).query(&mut con).unwrap();
    assert_eq!(ids(&cluster.info(leader), "voters"), vec![1, 2]);
    for (command, why) in [
        (
            redis::cmd("CLUSTER.REMOVE").arg(3).clone(),
            "node 3 is not a member",
        ),
        (
            redis::cmd("CLUSTER.REMOVE").arg(0).clone(),
            "is not a node id",
        ),
        (
            redis::cmd("CLUSTER.ADD").arg(2).arg("127.0.0.1:1").clone(),
            "node 2 is a member already",
        ),
        (
            redis::cmd("CLUSTER.ADD")
                .arg(5)
                .arg(format!("127.0.0.1:{}", cluster.ports[leader]))
                .clone(),
            &format!("is node {}'s address", leader + 1),
        ),
    ] {
        let error = command.query::<Value>(&mut con).unwrap_err();
        assert!(error.to_string().contains(why), "{error} (wanted {why})");
    }
    adding_node_3_again_is_refused(&mut con);
    set_all(&mut con, 30..40);

    // Node 4 joins on an empty data directory and is added; it catches up as a learner and
    // the leader promotes it.
    let port = free_ports()[0];
    let voters = format!(
        "1=127.0.0.1:{},2=127.0.0.1:{}",
        cluster.ports[0], cluster.ports[1]
    );
    let node4: ServerGuard = cluster.start_joining(4, port, &voters);
    let _: () = redis::cmd("CLUSTER.ADD")
        .arg(4)
        .arg(format!("127.0.0.1:{port}"))
        .query(&mut con)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ids(&cluster.info(leader), "voters").contains(&4) {
        assert!(Instant::now() < deadline, "{}", cluster.info(leader));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ids(&cluster.info(leader), "voters"), vec![1, 2, 4]);
    assert!(ids(&cluster.info(leader), "learners").is_empty());
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut con).unwrap();
    assert!(
        nodes.contains(&format!("4 127.0.0.1:{port}@{}", port + 10_000)),
        "{nodes}"
    );
    assert!(!nodes.lines().any(|line| line.starts_with("3 ")), "{nodes}");
    // Two records later (node 4 added, then promoted), node 3 is still a removed id.
    adding_node_3_again_is_refused(&mut con);
    set_all(&mut con, 40..50);

    // The leader dies: node 4 and the other old node are the majority of {1, 2, 4}.
    cluster.kill(leader);
    let mut on_old = cluster.connect(follower);
    let mut on_new = connect(&node4.url());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut con = loop {
        if info(&mut on_old).contains("accepting_writes:1") {
            break on_old;
        }
        if info(&mut on_new).contains("accepting_writes:1") {
            break on_new;
        }
        assert!(
            Instant::now() < deadline,
            "no leader among node 4 and the other"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    set_all(&mut con, 50..60);
    // The new leader (node 4 got the records from the log or a snapshot) refuses it too.
    adding_node_3_again_is_refused(&mut con);

    // Node 4 holds every acknowledged write (READONLY reads its own state once it applied
    // the last one).
    let mut on_new = connect(&node4.url());
    let _: () = redis::cmd("READONLY").query(&mut on_new).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while redis::cmd("GET")
        .arg("k59")
        .query::<Option<String>>(&mut on_new)
        .unwrap()
        .is_none()
    {
        assert!(Instant::now() < deadline, "node 4 did not apply k59");
        std::thread::sleep(Duration::from_millis(50));
    }
    for n in 0..60 {
        let value: Option<String> = redis::cmd("GET")
            .arg(format!("k{n}"))
            .query(&mut on_new)
            .unwrap();
        assert_eq!(value, Some(n.to_string()), "k{n} on node 4");
    }

    // The killed old node restarts with its old command line (`--cluster` naming 1, 2, 3):
    // its membership comes from its log (the changes are committed: the engine's record),
    // so it knows node 3 gone and node 4 a voter.
    cluster.start_node(leader);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = cluster.info(leader);
        if info.contains("leader_id:") && !info.contains("leader_id:none") {
            assert_eq!(ids(&info, "voters"), vec![1, 2, 4], "{info}");
            break;
        }
        assert!(Instant::now() < deadline, "{info}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Node 4 stopped cleanly (its commit point saved past every change, so the membership
    // comes from the engine's record, not from an uncommitted suffix) and started again with
    // the same `--cluster 1,2 --join`: it is a voter, not a node waiting to join.
    assert!(node4.terminate().success());
    let mut node4 = cluster.start_joining(4, port, &voters);
    let mut on_new = connect(&node4.url());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = info(&mut on_new);
        if info.contains("leader_id:") && !info.contains("leader_id:none") {
            assert_eq!(ids(&info, "voters"), vec![1, 2, 4], "{info}");
            break;
        }
        assert!(Instant::now() < deadline, "{info}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Node 4 is made the leader and removed: a removed leader commits its removal and
    // applies it, and then stops by itself, cleanly, as etcd's removed member does. (A removed
    // follower applies its removal only if its commit reaches it: the leader stops sending to
    // it once the removal is appended.)
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut con = loop {
        let mut found = None;
        for url in [
            node4.url(),
            format!("redis://127.0.0.1:{}/", cluster.ports[0]),
            format!("redis://127.0.0.1:{}/", cluster.ports[1]),
        ] {
            let mut con = connect(&url);
            if info(&mut con).contains("accepting_writes:1") {
                found = Some(con);
                break;
            }
        }
        if let Some(con) = found {
            break con;
        }
        assert!(Instant::now() < deadline, "no leader among 1, 2 and 4");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut on_new = connect(&node4.url());
    if !info(&mut on_new).contains("accepting_writes:1") {
        let _: () = redis::cmd("CLUSTER.TRANSFER")
            .arg(4)
            .query(&mut con)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !info(&mut on_new).contains("accepting_writes:1") {
            assert!(Instant::now() < deadline, "node 4 did not take over");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _: () = redis::cmd("CLUSTER.REMOVE")
        .arg(4)
        .query(&mut on_new)
        .unwrap();
    stops_by_itself(&mut node4, "node 4, removed as the leader,");
    // Nodes 1 and 2 go on (writes need both now).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut con = loop {
        let leader = (0..2).find(|&i| {
            cluster
                .try_info(i)
                .is_some_and(|info| info.contains("accepting_writes:1"))
        });
        if let Some(leader) = leader {
            break cluster.connect(leader);
        }
        assert!(Instant::now() < deadline, "no leader among 1 and 2");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(ids(&info(&mut con), "voters"), vec![1, 2]);
    set_all(&mut con, 60..70);

    // Started again on its data, node 4 refuses to run.
    let (data, args) = cluster.joining(4, port, &voters);
    refuses_to_start(4, port, &data, &args);
}

/// A removed follower gets no more entries (the leader stops sending to it once the removal is
/// appended), so the leader tells it once the removal is applied (the removal notice), and it
/// stops by itself; started again, it refuses to run.
#[test]
fn a_removed_follower_is_told_and_stops_by_itself() {
    let mut cluster = TestCluster::start(&["--raft-tick-ms", "50"]);
    let leader = cluster.leader();
    let mut con = cluster.connect(leader);
    set_all(&mut con, 0..10);
    let follower = (leader + 1) % 3;
    let _: () = redis::cmd("CLUSTER.REMOVE")
        .arg(follower + 1)
        .query(&mut con)
        .unwrap();
    stops_by_itself(
        cluster.nodes[follower].as_mut().expect("running"),
        "the removed follower",
    );
    cluster.nodes[follower] = None;
    // The two others go on.
    set_all(&mut con, 10..20);
    let info = cluster.info(leader);
    assert!(
        !ids(&info, "voters").contains(&(follower as u64 + 1)),
        "{info}"
    );

    refuses_to_start(
        follower as u64 + 1,
        cluster.ports[follower],
        &cluster.data_dir(follower),
        &cluster.node_args(follower),
    );
}

/// A node removed while it was down missed the leader's notice, and comes back believing it is
/// a member (its log does not hold its removal): the first member it sends a message to tells
/// it that it was removed, and it stops by itself.
#[test]
fn a_node_removed_while_down_is_told_when_it_comes_back() {
    let mut cluster = TestCluster::start(&["--raft-tick-ms", "50"]);
    let leader = cluster.leader();
    let mut con = cluster.connect(leader);
    set_all(&mut con, 0..10);
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    let _: () = redis::cmd("CLUSTER.REMOVE")
        .arg(follower + 1)
        .query(&mut con)
        .unwrap();
    // The leader's notice is tried 5 times a second apart: all of them find the node down.
    std::thread::sleep(Duration::from_secs(6));
    set_all(&mut con, 10..20);

    cluster.start_node(follower);
    stops_by_itself(
        cluster.nodes[follower].as_mut().expect("running"),
        "the node removed while down, once back,",
    );
    cluster.nodes[follower] = None;
    refuses_to_start(
        follower as u64 + 1,
        cluster.ports[follower],
        &cluster.data_dir(follower),
        &cluster.node_args(follower),
    );
    set_all(&mut con, 20..30);
}
