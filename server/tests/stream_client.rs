//! flin-net's stream client (`client.stream()`) against the real binary, over the binary
//! protocol's stream rows: every method, the batching producer (batches, in-flight limit,
//! keyed and keyless), a blocking fetch, and a group consumer that polls, commits, rejoins
//! after a rebalance and leaves. (server/tests/streams.rs covers the model through RESP.)

mod common;

use std::time::{Duration, Instant};

use common::ServerGuard;
use flin_net::client::{Client, FetchOptions, ProducerOptions, Reset, SeekTo};

fn start() -> (tempfile::TempDir, ServerGuard, Client) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &[]);
    let client = Client::connect(server.addr).expect("connect");
    (dir, server, client)
}

#[test]
fn every_stream_method_round_trips() {
    let (_dir, _server, client) = start();
    let stream = client.stream();
    stream
        .create("t", 3, Some(Duration::from_secs(3600)), None)
        .unwrap();
    let refused = stream.create("t", 3, None, None).unwrap_err();
    assert!(
        format!("{refused:?}").contains("already exists"),
        "{refused:?}"
    );
    assert_eq!(stream.list(None).unwrap(), [b"t".to_vec()]);
    let one = stream
        .publish("t", Some(1), Some(b"k"), &[(b"h", b"v")], "first")
        .unwrap();
    assert_eq!((one.partition, one.offset), (1, 0));
    let keyed = stream
        .publish("t", None, Some(b"21"), &[], "by key")
        .unwrap();
    // Kafka's partitioner: (murmur2("21") & 0x7fffffff) % 3 = 1173551340 % 3.
    assert_eq!(keyed.partition, 1_173_551_340 % 3);
    let batch = stream
        .publish_values("t", Some(2), &["a", "b", "c"])
        .unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(
        (batch[0].partition, batch[0].base, batch[0].count),
        (2, 0, 3)
    );
    let keyed_batch = stream
        .publish_keyed("t", &[("x", "1"), ("y", "2"), ("x", "3")])
        .unwrap();
    assert_eq!(keyed_batch.iter().map(|r| r.count).sum::<u64>(), 3);
    let records = stream.fetch("t", 1, 0, &FetchOptions::default()).unwrap();
    assert_eq!(records[0].value, b"first");
    assert_eq!(records[0].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(records[0].headers, vec![(b"h".to_vec(), b"v".to_vec())]);
    let info = stream.describe("t").unwrap();
    assert_eq!(info.partitions.len(), 3);
    assert_eq!(info.retention, Some(Duration::from_secs(3600)));
    assert_eq!(
        info.partitions[2].next,
        3 + keyed_batch
            .iter()
            .filter(|r| r.partition == 2)
            .map(|r| r.count)
            .sum::<u64>()
    );
    let out_of_range = stream
        .fetch("t", 2, 99, &FetchOptions::default())
        .unwrap_err();
    assert!(format!("{out_of_range:?}").contains("out of range"));
    stream.alter("t", Some(4), None, None).unwrap();
    assert_eq!(stream.describe("t").unwrap().partitions.len(), 4);

    let mut member = stream
        .group_consumer("t", "g", "a", Duration::from_secs(10), Reset::Earliest)
        .unwrap();
    assert_eq!(member.assignment().1, &[0, 1, 2, 3]);
    let mut seen = 0;
    while seen < 8 {
        let got = member.poll(100, Some(Duration::from_millis(200))).unwrap();
        assert!(!got.is_empty(), "records left to poll");
        seen += got.len();
    }
    member.commit().unwrap();
    let lag = stream.lag("t", "g").unwrap();
    assert!(lag.iter().all(|l| l.lag == 0), "{lag:?}");
    let committed = stream.offsets("t", "g").unwrap();
    assert_eq!(committed[2].1, Some(info.partitions[2].next));
    stream.seek("t", "g", 2, SeekTo::Earliest).unwrap();
    let again = member.poll(100, None).unwrap();
    assert!(again.iter().all(|r| r.partition == 2) && !again.is_empty());
    // A second member joins: the first is told at its next heartbeat and rejoins.
    let other = stream
        .group_consumer("t", "g", "b", Duration::from_secs(10), Reset::Earliest)
        .unwrap();
    member.heartbeat().unwrap();
    let (generation, partitions) = member.assignment();
    assert_eq!(generation, other.assignment().0);
    assert_eq!(partitions.len() + other.assignment().1.len(), 4);
    let groups = stream.groups("t").unwrap();
    assert_eq!(groups[0].members.len(), 2);
    other.close().unwrap();
    member.close().unwrap();
    assert!(stream.groups("t").unwrap()[0].members.is_empty());
    stream.delete("t").unwrap();
    assert!(stream.list(None).unwrap().is_empty());
}

#[test]
fn the_producer_batches_and_every_record_lands_at_its_offset() {
    let (_dir, _server, client) = start();
    let stream = client.stream();
    stream.create("p", 2, None, None).unwrap();
    let options = ProducerOptions {
        batch_records: 100,
        in_flight: 3,
        partition: Some(1),
        ..ProducerOptions::default()
    };
    let mut producer = stream.producer("p", options).unwrap();
    for i in 0..1050u32 {
        producer.send(None, format!("v{i}").as_bytes()).unwrap();
    }
    assert_eq!(producer.buffered(), 50);
    let ranges = producer.flush().unwrap();
    assert_eq!(producer.buffered(), 0);
    assert_eq!(ranges.len(), 11, "10 full batches and the rest");
    let mut expected_base = 0;
    for range in &ranges {
        assert_eq!((range.partition, range.base), (1, expected_base));
        expected_base += range.count;
    }
    assert_eq!(expected_base, 1050);
    let got = stream
        .fetch(
            "p",
            1,
            1000,
            &FetchOptions {
                count: 100,
                ..FetchOptions::default()
            },
        )
        .unwrap();
    assert_eq!(got.len(), 50);
    assert_eq!(got[49].value, b"v1049");
    // Keyed records: each by its key's hash, a keyless one in between sends the batch.
    let mut keyed = stream.producer("p", ProducerOptions::default()).unwrap();
    keyed.send(Some(b"a"), b"1").unwrap();
    keyed.send(Some(b"b"), b"2").unwrap();
    keyed.send(None, b"3").unwrap();
    let ranges = keyed.flush().unwrap();
    assert_eq!(ranges.iter().map(|r| r.count).sum::<u64>(), 3);
    // A refused batch is reported (an unknown topic).
    let mut lost = stream.producer("nope", ProducerOptions::default()).unwrap();
    lost.send(None, b"x").unwrap();
    assert!(lost.flush().is_err());
}

#[test]
fn a_blocking_fetch_over_binary_returns_when_a_record_arrives() {
    let (_dir, server, client) = start();
    client.stream().create("w", 1, None, None).unwrap();
    let addr = server.addr;
    let waiter = std::thread::spawn(move || {
        let client = Client::connect(addr).unwrap();
        let started = Instant::now();
        let got = client
            .stream()
            .fetch(
                "w",
                0,
                0,
                &FetchOptions {
                    block: Some(Duration::from_secs(20)),
                    ..FetchOptions::default()
                },
            )
            .unwrap();
        (got, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(200));
    client
        .stream()
        .publish("w", None, None, &[], "late")
        .unwrap();
    let (got, waited) = waiter.join().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value, b"late");
    assert!(
        waited < Duration::from_secs(20),
        "answered by the publish, not the deadline"
    );
    let empty = client
        .stream()
        .fetch(
            "w",
            0,
            1,
            &FetchOptions {
                block: Some(Duration::from_millis(100)),
                ..FetchOptions::default()
            },
        )
        .unwrap();
    assert!(empty.is_empty(), "the deadline answers an empty array");
}

/// The document rows through `client.db()` (first cut of issue 13).
#[test]
fn the_document_client_round_trips_over_the_binary_rows() {
    let (_dir, _server, client) = start();
    let db = client.db();
    let ids = db
        .insert(
            "users",
            &[
                r#"{"_id":1,"name":"ann","age":31}"#,
                r#"{"_id":2,"name":"bob","age":25}"#,
            ],
        )
        .unwrap();
    assert_eq!(ids, [b"1".to_vec(), b"2".to_vec()]);
    assert_eq!(
        db.get("users", "2").unwrap().unwrap(),
        br#"{"_id":2,"name":"bob","age":25}"#
    );
    let found = db
        .find(
            "users",
            r#"{"age":{"$gt":20}}"#,
            &flin_net::client::DocFindOptions {
                sort: vec![("age".into(), true)],
                limit: Some(1),
                project: Some(r#"{"name":1,"_id":0}"#.into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(found, [br#"{"name":"ann"}"#.to_vec()]);
    assert_eq!(db.count("users", "{}").unwrap(), 2);
    let updated = db
        .update(
            "users",
            r#"{"name":"bob"}"#,
            r#"{"$inc":{"age":1}}"#,
            false,
            false,
        )
        .unwrap();
    assert_eq!(
        (updated.matched, updated.modified, updated.upserted),
        (1, 1, None)
    );
    let refused = db.insert("users", &["{oops"]).unwrap_err();
    assert!(
        format!("{refused:?}").contains("line 1 column 2"),
        "{refused:?}"
    );
    assert_eq!(db.delete("users", "{}", true).unwrap(), 2);
    assert_eq!(db.collections().unwrap(), [b"users".to_vec()]);
    assert!(db.drop_collection("users").unwrap());
}

/// The fluent queries of `client.db().collection(..)`, with an index, EXPLAIN over the
/// binary row and find-and-modify.
#[test]
fn the_fluent_document_queries_use_indexes_over_the_binary_rows() {
    use flin_net::client::{Filter, Json, Update};
    let (_dir, _server, client) = start();
    let db = client.db();
    let orders = db.collection("orders");
    let documents: Vec<Json> = (0..50)
        .map(|i| {
            Json::Object(vec![
                ("_id".into(), Json::Int(i)),
                ("total".into(), Json::Int(i * 10)),
                (
                    "state".into(),
                    Json::from(if i % 2 == 0 { "new" } else { "paid" }),
                ),
            ])
        })
        .collect();
    assert_eq!(orders.insert(documents).unwrap().len(), 50);
    assert_eq!(
        orders.create_index(&["total:-1"], false).unwrap(),
        b"total_-1"
    );
    let find = orders
        .find(
            Filter::new()
                .eq("state", "new")
                .gte("total", 100)
                .lt("total", 300),
        )
        .sort("total", true)
        .limit(3)
        .project(&["total"]);
    assert_eq!(
        find.run().unwrap(),
        [
            br#"{"_id":28,"total":280}"#.to_vec(),
            br#"{"_id":26,"total":260}"#.to_vec(),
            br#"{"_id":24,"total":240}"#.to_vec()
        ]
    );
    let report = String::from_utf8(find.explain().unwrap()).unwrap();
    assert!(report.contains(r#""index":"total_-1""#), "{report}");
    assert_eq!(
        orders
            .find(Filter::new().is_in("_id", vec![1, 2, 99]))
            .count()
            .unwrap(),
        2
    );
    let paid = orders
        .update_many(
            Filter::new().eq("state", "new"),
            Update::new().set("state", "paid").inc("total", 1),
        )
        .unwrap();
    assert_eq!((paid.matched, paid.modified), (25, 25));
    let taken = orders
        .find_one_and_update(
            Filter::new().eq("state", "paid"),
            Update::new().set("state", "shipped"),
            &[("total", true)],
            true,
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        taken,
        br#"{"_id":49,"total":490,"state":"shipped"}"#.to_vec()
    );
    assert_eq!(
        orders.delete_many(Filter::new().lt("total", 100)).unwrap(),
        10
    );
    let listed = db.indexes("orders").unwrap();
    assert_eq!(listed.len(), 2, "_id_ and total_-1");
    assert!(db.drop_index("orders", "total_-1").unwrap());
}
