//! Issue 14's catch-up by snapshot: a follower stopped while the leader writes far more than
//! it keeps for it (`--raft-retain-entries`) and compacts what it wrote (small segments,
//! frequent compaction) comes back to a leader whose engine log no longer holds its next
//! entry. The leader ships it a snapshot of its engine files; the follower stages and checks
//! them, re-executes itself, opens them through normal recovery, holds every acknowledged
//! write and follows new ones. Also: a node added after compaction took the early log joins
//! by snapshot, and a follower killed mid-transfer resumes from what it staged. And: a
//! follower missing more bytes than the leader keeps its log for (`--raft-retain-mb`, a
//! quarter of its log) is shipped a snapshot though the log still holds every entry.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{field, http_get, set_pipelined, TestCluster};

/// A READONLY connection to node `i + 1`.
fn read_only(cluster: &TestCluster, i: usize) -> redis::Connection {
    let mut con = cluster.connect(i);
    let () = redis::cmd("READONLY").query(&mut con).unwrap();
    con
}

#[test]
fn a_follower_behind_what_the_leader_s_log_holds_catches_up_by_snapshot() {
    let mut cluster = TestCluster::start(&[
        "--raft-tick-ms",
        "50",
        "--fsync",
        "always",
        "--raft-held-entries",
        "500",
        "--raft-retain-entries",
        "1000",
        "--segment-bytes",
        "65536",
        "--compaction-interval-ms",
        "20",
        "--snapshot-rate-mb",
        "20",
    ]);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    // State of its own first, which the snapshot replaces.
    let mut con = cluster.connect(leader);
    for i in 0..200u64 {
        let () = redis::cmd("SET")
            .arg(format!("before{i}"))
            .arg(i)
            .query(&mut con)
            .unwrap();
    }
    let commit = field(&cluster.info(leader), "commit_index");
    let deadline = Instant::now() + Duration::from_secs(10);
    while field(&cluster.info(follower), "commit_index") < commit {
        assert!(Instant::now() < deadline, "the follower did not follow");
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.kill(follower);
    let stopped_at = field(&cluster.info(leader), "commit_index");

    // 22,000 writes: 2,000 keys written once, and 20,000 overwrites of 50 keys, whose old
    // records compaction drops (so their entries leave the leader's log for good).
    const ONCE: u64 = 2_000;
    const HOT: u64 = 50;
    let padding = "p".repeat(100);
    let mut con = cluster.connect(leader);
    let mut hot_last = [0u64; HOT as usize];
    let mut n = 0u64;
    for batch in 0..ONCE / 100 {
        let mut pipe = redis::pipe();
        for once in batch * 100..(batch + 1) * 100 {
            pipe.cmd("SET")
                .arg(format!("once{once}"))
                .arg(once)
                .ignore();
            for _ in 0..10 {
                let key = n % HOT;
                pipe.cmd("SET")
                    .arg(format!("hot{key}"))
                    .arg(format!("{n} {padding}"))
                    .ignore();
                hot_last[key as usize] = n;
                n += 1;
            }
        }
        let () = pipe.query(&mut con).unwrap();
    }
    let info = cluster.info(leader);
    assert!(
        field(&info, "first_held_index") > stopped_at + 1,
        "the leader still holds in memory what the follower needs: {info}"
    );
    assert_eq!(field(&info, "snapshots_sent"), 0, "{info}");

    let info = cluster.rejoin(follower, leader, Duration::from_secs(30));
    // The leader ships a snapshot only when its engine's log cannot serve the follower's next
    // entry (`serve_wanted` found it gone): it did, and the follower opened it.
    let installed = field(&info, "snapshot_installed_index");
    assert!(
        installed > stopped_at + 1,
        "no snapshot installed past the follower's old log: {info}"
    );
    let leader_info = cluster.info(leader);
    assert!(field(&leader_info, "snapshots_sent") >= 1, "{leader_info}");
    assert!(
        field(&leader_info, "snapshot_bytes_sent") > 0,
        "{leader_info}"
    );
    // The admin page's /api/cluster counts the same.
    let api = |i: usize| -> serde_json::Value {
        let (status, body) = http_get(cluster.ports[i] + 1_000, "/api/cluster");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let leader_view = api(leader);
    assert!(
        leader_view["snapshots_sent"].as_u64() >= Some(1),
        "{leader_view}"
    );
    assert!(
        leader_view["snapshot_bytes_sent"].as_u64() > Some(0),
        "{leader_view}"
    );
    let follower_view = api(follower);
    assert_eq!(
        follower_view["snapshot_installed_index"].as_u64(),
        Some(installed),
        "{follower_view}"
    );

    let mut rejoined = read_only(&cluster, follower);
    for i in (0..200u64).step_by(11) {
        let value: Option<u64> = redis::cmd("GET")
            .arg(format!("before{i}"))
            .query(&mut rejoined)
            .unwrap();
        assert_eq!(value, Some(i), "before{i} on the follower");
    }
    for once in (0..ONCE).step_by(37).chain([ONCE - 1]) {
        let value: Option<u64> = redis::cmd("GET")
            .arg(format!("once{once}"))
            .query(&mut rejoined)
            .unwrap();
        assert_eq!(value, Some(once), "once{once} on the follower");
    }
    for key in 0..HOT {
        let value: Option<String> = redis::cmd("GET")
            .arg(format!("hot{key}"))
            .query(&mut rejoined)
            .unwrap();
        assert_eq!(
            value,
            Some(format!("{} {padding}", hot_last[key as usize])),
            "hot{key} on the follower"
        );
    }

    // It follows new writes from the snapshot's index on.
    let mut con = cluster.connect(leader);
    for i in 0..100u64 {
        let () = redis::cmd("SET")
            .arg(format!("after{i}"))
            .arg(i)
            .query(&mut con)
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value: Option<u64> = redis::cmd("GET")
            .arg("after99")
            .query(&mut rejoined)
            .unwrap();
        if value == Some(99) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the follower did not follow new writes: {:?}",
            cluster.try_info(follower)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let info = cluster.info(follower);
    assert_eq!(
        field(&info, "snapshot_installed_index"),
        installed,
        "{info}"
    );
}

/// A node added (`--join`, CLUSTER.ADD) after the leader's compaction removed the early
/// entries of its log cannot be fed from index 1: it is shipped a snapshot, finds the
/// membership (itself a learner) in the snapshot's files after its restart, catches up and is
/// promoted to voter.
#[test]
fn a_node_added_after_compaction_took_the_early_log_joins_by_snapshot() {
    let cluster = TestCluster::start(&[
        "--raft-tick-ms",
        "50",
        "--raft-held-entries",
        "500",
        "--raft-retain-entries",
        "1000",
        "--segment-bytes",
        "65536",
        "--compaction-interval-ms",
        "20",
    ]);
    let leader = cluster.leader();
    let mut con = cluster.connect(leader);
    let padding = "q".repeat(100);
    for batch in 0..20u64 {
        let mut pipe = redis::pipe();
        for n in batch * 500..(batch + 1) * 500 {
            pipe.cmd("SET")
                .arg(format!("hot{}", n % 20))
                .arg(format!("{n} {padding}"))
                .ignore();
        }
        pipe.cmd("SET")
            .arg(format!("once{batch}"))
            .arg(batch)
            .ignore();
        let () = pipe.query(&mut con).unwrap();
    }
    let port = common::cluster::free_ports()[0];
    let voters = (0..3)
        .map(|i| format!("{}=127.0.0.1:{}", i + 1, cluster.ports[i]))
        .collect::<Vec<_>>()
        .join(",");
    let node4 = cluster.start_joining(4, port, &voters);
    let () = redis::cmd("CLUSTER.ADD")
        .arg(4)
        .arg(format!("127.0.0.1:{port}"))
        .query(&mut con)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cluster.info(leader).contains("voters:1,2,3,4") {
        assert!(
            Instant::now() < deadline,
            "node 4 was not promoted within 30 s: {}",
            cluster.info(leader)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut joined = redis::Client::open(node4.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let info: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query(&mut joined)
        .unwrap();
    assert!(field(&info, "snapshot_installed_index") > 1, "{info}");
    let () = redis::cmd("READONLY").query(&mut joined).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last: Option<u64> = redis::cmd("GET").arg("once19").query(&mut joined).unwrap();
        if last == Some(19) {
            break;
        }
        assert!(Instant::now() < deadline, "node 4 lacks once19");
        std::thread::sleep(Duration::from_millis(20));
    }
    for key in 0..20u64 {
        let value: Option<String> = redis::cmd("GET")
            .arg(format!("hot{key}"))
            .query(&mut joined)
            .unwrap();
        assert_eq!(
            value,
            Some(format!("{} {padding}", 9_980 + key)),
            "hot{key} on node 4"
        );
    }
}

/// The offered files' total length, from the follower's staged `OFFER` (index, term, file
/// count, then per file: name length, name, length, CRC; docs/replication.md).
fn offered_bytes(offer: &[u8]) -> u64 {
    let u16_at = |at: usize| u16::from_le_bytes(offer[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(offer[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(offer[at..at + 8].try_into().unwrap());
    let mut at = 20;
    let mut total = 0;
    for _ in 0..u32_at(16) {
        at += 2 + u16_at(at);
        total += u64_at(at);
        at += 12;
    }
    total
}

/// A follower killed mid-transfer resumes, after its restart, from what it had staged: the
/// leader sends the rest, not the whole snapshot again.
#[test]
fn a_transfer_cut_short_by_the_follower_s_kill_resumes_from_its_staged_files() {
    let mut cluster = TestCluster::start(&[
        "--raft-tick-ms",
        "50",
        "--raft-held-entries",
        "500",
        "--raft-retain-entries",
        "1000",
        "--segment-bytes",
        "262144",
        "--compaction-interval-ms",
        "20",
        "--snapshot-rate-mb",
        "1",
    ]);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    // 8,000 overwrites of 10 keys (the follower's next entries, which compaction removes;
    // more entries than the leader keeps in memory), then about 4 MB of keys written once.
    let value = "v".repeat(2_000);
    let mut con = cluster.connect(leader);
    set_pipelined(
        &mut con,
        0..8_000,
        |n| format!("hot{}", n % 10),
        &value[..500],
    );
    set_pipelined(&mut con, 0..2_000, |n| format!("once{n}"), &value);
    cluster.start_node(follower);
    let staging = cluster.data_dir(follower).join("cluster/snapshot");
    let staged = |dir: &std::path::Path| -> u64 {
        std::fs::read_dir(dir.join("files")).map_or(0, |files| {
            files
                .map(|file| file.unwrap().metadata().unwrap().len())
                .sum()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while staged(&staging) < 1_000_000 {
        assert!(Instant::now() < deadline, "no 1 MB staged within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.kill(follower);
    let staged_at_kill = staged(&staging);
    let total = offered_bytes(&std::fs::read(staging.join("OFFER")).unwrap());
    assert!(
        staged_at_kill < total,
        "the transfer was not cut short: {staged_at_kill} of {total}"
    );

    let info = cluster.rejoin(follower, leader, Duration::from_secs(30));
    assert!(field(&info, "snapshot_installed_index") > 0, "{info}");
    // Without resumption the leader would have sent the staged bytes twice.
    let sent = field(&cluster.info(leader), "snapshot_bytes_sent");
    assert!(
        sent < total + staged_at_kill / 2,
        "{sent} bytes sent for a snapshot of {total}, {staged_at_kill} of them staged before the kill"
    );
    let mut rejoined = read_only(&cluster, follower);
    let last: Option<String> = redis::cmd("GET")
        .arg("once1999")
        .query(&mut rejoined)
        .unwrap();
    assert_eq!(last.as_deref(), Some(value.as_str()));
}

/// A leader that writes more than `--raft-retain-entries` while a snapshot is in transit keeps
/// what the follower needs after it (decision 101): the follower installs one snapshot and
/// goes on from the log, where it would be shipped one snapshot after another.
#[test]
fn writes_during_a_transfer_past_the_retention_bound_need_no_second_snapshot() {
    let mut cluster = TestCluster::start(&[
        "--raft-retain-entries",
        "500",
        "--raft-held-entries",
        "100",
        "--snapshot-rate-mb",
        "1",
    ]);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    cluster.nodes[follower].take().unwrap().crash();
    let mut con = cluster.connect(leader);
    let value = "v".repeat(350);
    // About 2 MB of keys, more than the leader keeps in memory (4,096 entries at most): a
    // transfer of 2 s or more at 1 MB/s.
    set_pipelined(&mut con, 0..6_000, |n| format!("k{n}"), &value);
    cluster.start_node(follower);
    // While the snapshot ships (2 s or more): 6,000 writes, past both the retention bound and
    // what the leader keeps in memory, so the follower's next entry after the snapshot can
    // only come from the engine's log that the hold kept.
    let deadline = Instant::now() + Duration::from_secs(60);
    while field(&cluster.info(leader), "snapshot_bytes_sent") == 0 {
        assert!(Instant::now() < deadline, "no snapshot shipped within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    const DURING: u64 = 6_000;
    for batch in 0..DURING / 500 {
        let mut pipe = redis::pipe();
        for n in batch * 500..(batch + 1) * 500 {
            pipe.cmd("SET").arg(format!("during{n}")).arg(n).ignore();
        }
        let () = pipe.query(&mut con).unwrap();
    }
    let commit = field(&cluster.info(leader), "commit_index");
    cluster.wait_commit(follower, commit, Duration::from_secs(60));
    let info = cluster.info(leader);
    assert_eq!(field(&info, "snapshots_sent"), 1, "one snapshot: {info}");
    let mut rejoined = read_only(&cluster, follower);
    for n in (0..DURING).step_by(97).chain([DURING - 1]) {
        let got: Option<u64> = redis::cmd("GET")
            .arg(format!("during{n}"))
            .query(&mut rejoined)
            .unwrap();
        assert_eq!(got, Some(n), "during{n} on the rejoined follower");
    }
}

/// Decision 105: a follower that misses more of the log's bytes than the leader keeps for it
/// (`--raft-retain-mb 2` here, more than a quarter of this log) is caught up by a snapshot
/// though the leader's log still holds every entry it missed (unique keys, a retention bound
/// of a million entries); one that misses less is fed from the log.
#[test]
fn a_follower_missing_more_bytes_than_the_leader_keeps_for_it_gets_a_snapshot() {
    let mut cluster = TestCluster::start(&[
        "--raft-retain-mb",
        "2",
        "--segment-bytes",
        "262144",
        "--raft-held-entries",
        "500",
    ]);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    let stopped_at = field(&cluster.info(leader), "commit_index");
    // About 6 MB of keys written once each (nothing for compaction to take), more entries
    // than the leader keeps in memory (4,096 at most), so the follower's next entry can only
    // come from the engine's log or a snapshot.
    let mut con = cluster.connect(leader);
    let value = "v".repeat(1_000);
    set_pipelined(&mut con, 0..6_000, |n| format!("far{n}"), &value);
    assert_eq!(field(&cluster.info(leader), "snapshots_sent"), 0);

    let info = cluster.rejoin(follower, leader, Duration::from_secs(30));
    let installed = field(&info, "snapshot_installed_index");
    assert!(
        installed > stopped_at + 1,
        "6 MB behind a 2 MB bound, fed from the log: {info}"
    );
    let leader_info = cluster.info(leader);
    assert_eq!(field(&leader_info, "snapshots_sent"), 1, "{leader_info}");
    let mut rejoined = read_only(&cluster, follower);
    for n in (0..6_000u64).step_by(29).chain([5_999]) {
        let got: Option<String> = redis::cmd("GET")
            .arg(format!("far{n}"))
            .query(&mut rejoined)
            .unwrap();
        assert_eq!(
            got.as_deref(),
            Some(value.as_str()),
            "far{n} on the follower"
        );
    }

    // 5,000 short writes, about 0.5 MB, well within the bound but more entries than the
    // leader keeps in memory: the engine's log feeds it, no second snapshot.
    cluster.kill(follower);
    set_pipelined(&mut con, 0..5_000, |n| format!("near{n}"), "n");
    let info = cluster.rejoin(follower, leader, Duration::from_secs(30));
    // (The field names a snapshot installed since the process started: none here.)
    assert_eq!(
        field(&info, "snapshot_installed_index"),
        0,
        "a second snapshot for 0.5 MB: {info}"
    );
    let leader_info = cluster.info(leader);
    assert_eq!(field(&leader_info, "snapshots_sent"), 1, "{leader_info}");
    let mut rejoined = read_only(&cluster, follower);
    let got: Option<String> = redis::cmd("GET")
        .arg("near4999")
        .query(&mut rejoined)
        .unwrap();
    assert_eq!(got.as_deref(), Some("n"));
}
