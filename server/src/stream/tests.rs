//! The stream model's core on an engine of its own (memory with a manual clock, or a
//! directory for restarts): every rule of issue 12 that needs no socket.

use std::sync::Arc;

use flin_engine::{Clock, Config, Engine, ManualClock};

use super::codec::{NewRecord, Record, Reset};
use super::core::{FetchLimits, SeekTo, StreamError, Streams, Target, BLOCK_BYTES};
use super::partitioner::partition_for_key;
use crate::context::open_engine;
use crate::store::Store;

const T0: u64 = 1_700_000_000_000;
const ALL: FetchLimits = FetchLimits {
    count: usize::MAX,
    max_bytes: usize::MAX,
};

struct Model {
    engine: Engine,
    store: Store,
    streams: Arc<Streams>,
    clock: Arc<ManualClock>,
}

fn open(config: Config) -> Model {
    let clock = Arc::new(ManualClock::new(T0));
    let (engine, observers) =
        open_engine(config.background_compaction(false).clock(clock.clone())).unwrap();
    let streams = observers.streams;
    Model {
        store: Store::new(engine.clone()),
        engine,
        streams,
        clock,
    }
}

fn memory() -> Model {
    open(Config::memory())
}

fn value(n: u64) -> Vec<u8> {
    format!("record-{n:08}").into_bytes()
}

impl Model {
    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    fn publish_to(&self, topic: &str, partition: u32, values: &[Vec<u8>]) -> (u64, u64) {
        let records: Vec<NewRecord<'_>> = values
            .iter()
            .map(|v| NewRecord {
                key: None,
                headers: &[],
                value: v,
            })
            .collect();
        let (placed, _) = self
            .streams
            .publish(
                &self.store,
                topic.as_bytes(),
                Target::Partition(partition),
                &records,
                self.now(),
            )
            .unwrap();
        assert_eq!(placed.len(), 1);
        (placed[0].1, placed[0].2)
    }

    fn fetch(&self, topic: &str, partition: u64, offset: u64) -> Result<Vec<Record>, StreamError> {
        self.streams.fetch(
            &self.store.reader(),
            topic.as_bytes(),
            partition,
            offset,
            ALL,
        )
    }

    fn consume(&self, topic: &str, group: &str, consumer: &str, count: usize) -> Vec<Record> {
        self.streams
            .consume(
                &self.store.reader(),
                topic.as_bytes(),
                group.as_bytes(),
                consumer.as_bytes(),
                count,
                self.now(),
            )
            .unwrap()
    }

    fn join(&self, topic: &str, group: &str, consumer: &str, reset: Reset) -> (u64, Vec<u32>) {
        let (generation, partitions, _) = self
            .streams
            .join(
                &self.store,
                topic.as_bytes(),
                group.as_bytes(),
                consumer.as_bytes(),
                10_000,
                Some(reset),
                self.now(),
            )
            .unwrap();
        (generation, partitions)
    }

    fn commit(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        generation: u64,
        offsets: &[(u64, u64)],
    ) -> Result<Option<u64>, StreamError> {
        self.streams.commit(
            &self.store,
            topic.as_bytes(),
            group.as_bytes(),
            consumer.as_bytes(),
            generation,
            offsets,
            self.now(),
        )
    }
}

#[test]
fn records_come_back_at_dense_offsets_with_key_headers_and_timestamp() {
    let m = memory();
    m.streams.create(&m.store, b"t", 2, 0, 0).unwrap();
    let headers: [(&[u8], &[u8]); 1] = [(b"trace", b"abc")];
    let record = NewRecord {
        key: Some(b"user-1"),
        headers: &headers,
        value: b"hello",
    };
    let (placed, seq) = m
        .streams
        .publish(&m.store, b"t", Target::Partition(1), &[record], m.now())
        .unwrap();
    assert_eq!(placed, vec![(1, 0, 1)]);
    assert!(seq.is_some());
    let values: Vec<Vec<u8>> = (0..250).map(value).collect();
    assert_eq!(m.publish_to("t", 1, &values), (1, 250));
    assert_eq!(m.publish_to("t", 1, &values[..3]), (251, 3));
    let got = m.fetch("t", 1, 0).unwrap();
    assert_eq!(got.len(), 254);
    assert_eq!(
        got[0],
        Record {
            partition: 1,
            offset: 0,
            timestamp_ms: T0,
            key: Some(b"user-1".to_vec()),
            headers: vec![(b"trace".to_vec(), b"abc".to_vec())],
            value: b"hello".to_vec(),
        }
    );
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
    }
    assert_eq!(got[1 + 17].value, value(17));
    assert_eq!(got[251].value, value(0));
    // From the middle, with COUNT and MAXBYTES (one record even when it alone is too big).
    let some = m
        .streams
        .fetch(
            &m.store.reader(),
            b"t",
            1,
            100,
            FetchLimits {
                count: 5,
                max_bytes: usize::MAX,
            },
        )
        .unwrap();
    assert_eq!(
        some.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![100, 101, 102, 103, 104]
    );
    let one = m
        .streams
        .fetch(
            &m.store.reader(),
            b"t",
            1,
            100,
            FetchLimits {
                count: 50,
                max_bytes: 1,
            },
        )
        .unwrap();
    assert_eq!(one.len(), 1);
    // Sequential fetches (the hint path) see the same records as one fetch.
    let mut offset = 0;
    let mut seen = Vec::new();
    while offset < 254 {
        let batch = m
            .streams
            .fetch(
                &m.store.reader(),
                b"t",
                1,
                offset,
                FetchLimits {
                    count: 7,
                    max_bytes: usize::MAX,
                },
            )
            .unwrap();
        offset = batch.last().unwrap().offset + 1;
        seen.extend(batch);
    }
    assert_eq!(seen, got);
    assert_eq!(
        m.fetch("t", 1, 254).unwrap(),
        vec![],
        "the next offset: nothing yet"
    );
    assert_eq!(m.fetch("t", 0, 0).unwrap(), vec![]);
}

#[test]
fn bad_arguments_are_refused_and_change_nothing() {
    let m = memory();
    m.streams.create(&m.store, b"t", 2, 0, 0).unwrap();
    assert_eq!(
        m.streams.create(&m.store, b"t", 3, 0, 0),
        Err(StreamError::TopicExists(b"t".to_vec()))
    );
    assert!(matches!(
        m.streams.create(&m.store, b"z", 0, 0, 0),
        Err(StreamError::Invalid(_))
    ));
    let err = m.fetch("nope", 0, 0).unwrap_err();
    assert_eq!(err.to_string(), "unknown topic 'nope'");
    let err = m.fetch("t", 2, 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "partition 2 does not exist: topic 't' has partitions 0 to 1"
    );
    m.publish_to("t", 0, &[value(1)]);
    let err = m.fetch("t", 0, 5).unwrap_err();
    assert_eq!(
        err.to_string(),
        "offset 5 out of range for topic 't' partition 0 (first 0, next 1)"
    );
    let record = NewRecord {
        key: None,
        headers: &[],
        value: b"x",
    };
    let before = m.engine.last_seq();
    assert!(m
        .streams
        .publish(&m.store, b"t", Target::Partition(9), &[record], m.now())
        .is_err());
    assert_eq!(
        m.engine.last_seq(),
        before,
        "a refused publish writes nothing"
    );
    assert!(
        m.streams
            .alter(&m.store, b"t", Some(1), None, None)
            .is_err(),
        "partitions never shrink"
    );
    m.streams
        .alter(&m.store, b"t", Some(4), Some(1000), None)
        .unwrap();
    assert_eq!(m.streams.describe(b"t").unwrap().partitions.len(), 4);
}

#[test]
fn keys_go_where_kafka_puts_them_and_keyless_batches_stick_to_one_partition() {
    let m = memory();
    m.streams.create(&m.store, b"t", 6, 0, 0).unwrap();
    for key in ["21", "foobar", "abc", "user-1", "user-2"] {
        let record = NewRecord {
            key: Some(key.as_bytes()),
            headers: &[],
            value: b"v",
        };
        let (placed, _) = m
            .streams
            .publish(&m.store, b"t", Target::ByKey, &[record], m.now())
            .unwrap();
        assert_eq!(placed[0].0, partition_for_key(key.as_bytes(), 6), "{key}");
    }
    let batch: Vec<NewRecord<'_>> = (0..10)
        .map(|_| NewRecord {
            key: None,
            headers: &[],
            value: b"v",
        })
        .collect();
    let mut partitions = Vec::new();
    for _ in 0..6 {
        let (placed, _) = m
            .streams
            .publish(&m.store, b"t", Target::Sticky, &batch, m.now())
            .unwrap();
        assert_eq!(placed.len(), 1, "a keyless batch goes to one partition");
        partitions.push(placed[0].0);
    }
    partitions.sort();
    assert_eq!(
        partitions,
        vec![0, 1, 2, 3, 4, 5],
        "successive batches go round"
    );
}

#[test]
fn a_group_rebalances_when_members_join_leave_and_die_and_fences_old_generations() {
    let m = memory();
    m.streams.create(&m.store, b"t", 4, 0, 0).unwrap();
    for p in 0..4 {
        m.publish_to("t", p, &(0..10).map(value).collect::<Vec<_>>());
    }
    let (g1, parts) = m.join("t", "g", "a", Reset::Earliest);
    assert_eq!(parts, vec![0, 1, 2, 3]);
    // a reads a few records of each partition and commits partition 0 only.
    let first = m.consume("t", "g", "a", 40);
    assert_eq!(first.len(), 40);
    assert!(
        m.consume("t", "g", "a", 40).is_empty(),
        "two calls never return the same records"
    );
    m.commit("t", "g", "a", g1, &[(0, 10)]).unwrap();
    // b joins: a new generation; a keeps half, b takes the rest.
    let (g2, b_parts) = m.join("t", "g", "b", Reset::Earliest);
    assert_eq!(g2, g1 + 1);
    assert_eq!(b_parts.len(), 2);
    // a learns it at its next heartbeat; its old generation's commit is refused.
    let hb = m.streams.heartbeat(b"t", b"g", b"a", g1, m.now());
    assert!(matches!(hb, Err(StreamError::Rebalance(_))), "{hb:?}");
    assert!(matches!(
        m.commit("t", "g", "a", g1, &[(0, 10)]),
        Err(StreamError::Rebalance(_))
    ));
    let committed_before = m.streams.offsets(b"t", b"g").unwrap();
    assert!(matches!(
        m.commit("t", "g", "a", g1, &[(1, 10)]),
        Err(StreamError::Rebalance(_))
    ));
    assert_eq!(
        m.streams.offsets(b"t", b"g").unwrap(),
        committed_before,
        "nothing committed"
    );
    let (again, a_parts) = m.join("t", "g", "a", Reset::Earliest);
    assert_eq!(again, g2, "rejoining changes nothing");
    assert_eq!(a_parts.len(), 2);
    // b's partitions come from their committed offsets: uncommitted records come again.
    let b_got = m.consume("t", "g", "b", 100);
    let expected: usize = b_parts.iter().map(|&p| if p == 0 { 0 } else { 10 }).sum();
    assert_eq!(
        b_got.len(),
        expected,
        "at least once: b re-reads what a never committed"
    );
    // b dies: after its session timeout the tick evicts it and a gets everything back.
    m.clock.advance(5_000);
    m.streams.heartbeat(b"t", b"g", b"a", g2, m.now()).unwrap();
    m.clock.advance(6_000);
    let (evicted, _) = m.streams.tick(&m.store, m.now()).unwrap();
    assert_eq!(evicted, 1);
    let groups = m.streams.groups(b"t").unwrap();
    assert_eq!(groups[0].members, vec![(b"a".to_vec(), vec![0, 1, 2, 3])]);
    assert!(groups[0].generation > g2);
    assert!(matches!(
        m.streams.heartbeat(b"t", b"g", b"b", g2, m.now()),
        Err(StreamError::Rebalance(_))
    ));
    // a leaves: nobody holds anything.
    assert!(m.streams.leave(b"t", b"g", b"a").unwrap());
    assert!(m.streams.groups(b"t").unwrap()[0].members.is_empty());
}

#[test]
fn lag_offsets_and_seek() {
    let m = memory();
    m.streams.create(&m.store, b"t", 2, 0, 0).unwrap();
    m.publish_to("t", 0, &(0..5).map(value).collect::<Vec<_>>());
    let (g, _) = m.join("t", "g", "a", Reset::Latest);
    assert!(
        m.consume("t", "g", "a", 10).is_empty(),
        "LATEST starts at the end"
    );
    m.publish_to("t", 0, &[value(5)]);
    let got = m.consume("t", "g", "a", 10);
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![5]);
    m.commit("t", "g", "a", g, &[(0, 6)]).unwrap();
    assert_eq!(
        m.streams.offsets(b"t", b"g").unwrap(),
        vec![(0, 6), (1, -1)]
    );
    assert_eq!(
        m.streams.lag(b"t", b"g").unwrap(),
        vec![(0, 6, 6, 0), (1, 0, -1, 0)]
    );
    m.streams
        .seek(&m.store, b"t", b"g", 0, SeekTo::Offset(2))
        .unwrap();
    let again = m.consume("t", "g", "a", 10);
    assert_eq!(
        again.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![2, 3, 4, 5]
    );
    assert!(m
        .streams
        .seek(&m.store, b"t", b"g", 0, SeekTo::Offset(99))
        .is_err());
    m.streams
        .seek(&m.store, b"t", b"g", 0, SeekTo::Earliest)
        .unwrap();
    assert_eq!(m.streams.offsets(b"t", b"g").unwrap()[0], (0, 0));
}

#[test]
fn retention_by_bytes_and_age_drops_whole_blocks_and_compaction_reclaims_them() {
    // Small segments, so most records sit in sealed segments compaction may rewrite.
    let m = open(Config::memory().segment_bytes(256 << 10));
    m.streams
        .create(&m.store, b"bytes", 1, 0, 3 * BLOCK_BYTES)
        .unwrap();
    m.streams.create(&m.store, b"age", 1, 60_000, 0).unwrap();
    let big: Vec<Vec<u8>> = (0..20).map(|n| vec![n as u8; 1000]).collect();
    for _ in 0..50 {
        m.publish_to("bytes", 0, &big);
        m.publish_to("age", 0, &big[..2]);
    }
    let before = m.streams.describe(b"bytes").unwrap().partitions[0].clone();
    assert_eq!(before.next, 1000);
    assert!(before.index_blocks >= 10, "{before:?}");
    m.streams.tick(&m.store, m.now()).unwrap();
    let after = m.streams.describe(b"bytes").unwrap().partitions[0].clone();
    assert!(after.first > 0, "{after:?}");
    assert!(
        after.bytes >= 3 * BLOCK_BYTES && after.bytes < 5 * BLOCK_BYTES,
        "{after:?}"
    );
    assert_eq!(after.next, 1000);
    assert!(
        matches!(m.fetch("bytes", 0, 0), Err(StreamError::OutOfRange { first, .. }) if first == after.first)
    );
    assert_eq!(
        m.fetch("bytes", 0, after.first).unwrap().len() as u64,
        1000 - after.first
    );
    assert_eq!(
        m.streams.describe(b"age").unwrap().partitions[0].first,
        0,
        "not old yet"
    );
    m.clock.advance(61_000);
    m.streams.tick(&m.store, m.now()).unwrap();
    let aged = m.streams.describe(b"age").unwrap().partitions[0].clone();
    assert_eq!(
        (aged.first, aged.next),
        (100, 100),
        "every record was older than RETENTION"
    );
    assert_eq!(aged.oldest_timestamp_ms, -1);
    m.publish_to("age", 0, &[value(1)]);
    assert_eq!(
        m.fetch("age", 0, 100).unwrap()[0].offset,
        100,
        "offsets go on"
    );
    let log_before = m.engine.stats().log_bytes;
    m.engine.compact(0.0).unwrap();
    assert!(
        m.engine.stats().log_bytes < log_before,
        "compaction reclaimed the dropped ranges"
    );
    assert_eq!(
        m.fetch("bytes", 0, after.first).unwrap().len() as u64,
        1000 - after.first
    );
}

#[test]
fn topics_records_offsets_and_floors_survive_a_restart_and_members_rejoin() {
    let dir = tempfile::tempdir().unwrap();
    let config = || Config::directory(dir.path()).segment_bytes(256 << 10);
    let values: Vec<Vec<u8>> = (0..300).map(value).collect();
    let (first_after_retention, generation) = {
        let m = open(config());
        m.streams.create(&m.store, b"t", 3, 0, 0).unwrap();
        m.streams
            .create(&m.store, b"small", 1, 0, BLOCK_BYTES)
            .unwrap();
        for p in 0..3 {
            for chunk in values.chunks(7) {
                m.publish_to("t", p, chunk);
            }
        }
        let big: Vec<Vec<u8>> = (0..10).map(|n| vec![n as u8; 10_000]).collect();
        for _ in 0..10 {
            m.publish_to("small", 0, &big);
        }
        m.streams.tick(&m.store, m.now()).unwrap();
        let first = m.streams.describe(b"small").unwrap().partitions[0].first;
        assert!(first > 0);
        let (g, _) = m.join("t", "g", "a", Reset::Earliest);
        m.commit("t", "g", "a", g, &[(0, 100), (2, 300)]).unwrap();
        m.streams.create(&m.store, b"gone", 1, 0, 0).unwrap();
        m.publish_to("gone", 0, &values[..5]);
        m.streams.delete(&m.store, b"gone").unwrap();
        m.engine.compact(0.0).unwrap();
        (first, g)
    };
    let m = open(config());
    assert_eq!(m.streams.list(None), vec![b"small".to_vec(), b"t".to_vec()]);
    for p in 0..3 {
        let got = m.fetch("t", p, 0).unwrap();
        assert_eq!(
            got.iter().map(|r| r.value.clone()).collect::<Vec<_>>(),
            values
        );
    }
    assert_eq!(
        m.publish_to("t", 1, &values[..1]),
        (300, 1),
        "offsets are never reused"
    );
    let small = m.streams.describe(b"small").unwrap().partitions[0].clone();
    assert_eq!(small.first, first_after_retention);
    assert_eq!(small.next, 100);
    assert_eq!(
        m.streams.offsets(b"t", b"g").unwrap(),
        vec![(0, 100), (1, -1), (2, 300)]
    );
    assert!(
        matches!(
            m.streams.heartbeat(b"t", b"g", b"a", generation, m.now()),
            Err(StreamError::Rebalance(_))
        ),
        "membership is not durable: members join again"
    );
    m.join("t", "g", "a", Reset::Earliest);
    let got = m.consume("t", "g", "a", 1000);
    // From the committed offsets: 200 of partition 0, all 301 of partition 1, none of 2.
    assert_eq!(got.len(), 200 + 301);
    m.streams.create(&m.store, b"gone", 1, 0, 0).unwrap();
    assert_eq!(
        m.fetch("gone", 0, 0).unwrap(),
        vec![],
        "a new topic of the name starts empty"
    );
}

#[test]
fn a_member_waiting_in_a_long_poll_is_not_evicted_and_its_session_restarts_after() {
    let m = memory();
    m.streams.create(&m.store, b"t", 1, 0, 0).unwrap();
    m.join("t", "g", "a", Reset::Earliest); // session 10 s
    m.streams.member_waiting(b"t", b"g", b"a", true, m.now());
    m.clock.advance(60_000);
    assert_eq!(
        m.streams.tick(&m.store, m.now()).unwrap().0,
        0,
        "waiting: alive"
    );
    m.streams.member_waiting(b"t", b"g", b"a", false, m.now());
    m.clock.advance(9_000);
    assert_eq!(
        m.streams.tick(&m.store, m.now()).unwrap().0,
        0,
        "session restarted at the end of the wait"
    );
    m.clock.advance(2_000);
    assert_eq!(m.streams.tick(&m.store, m.now()).unwrap().0, 1);
}

#[test]
fn sequential_fetches_cross_the_chunks_of_one_write() {
    let m = memory();
    m.streams.create(&m.store, b"t", 1, 0, 0).unwrap();
    // Four 400 KB records in one publish: two chunks of one seq (chunks stop at 1 MiB).
    let big: Vec<Vec<u8>> = (0..4u8).map(|n| vec![n; 400_000]).collect();
    m.publish_to("t", 0, &big);
    m.publish_to("t", 0, &[value(4)]);
    let mut offset = 0;
    let mut seen = Vec::new();
    while offset < 5 {
        let got = m
            .streams
            .fetch(
                &m.store.reader(),
                b"t",
                0,
                offset,
                FetchLimits {
                    count: 2,
                    max_bytes: usize::MAX,
                },
            )
            .unwrap();
        assert!(!got.is_empty(), "stuck at offset {offset}");
        offset = got.last().unwrap().offset + 1;
        seen.extend(got.into_iter().map(|r| r.offset));
    }
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
}

/// Every stream command with arguments drawn from a pool of names, numbers and keywords,
/// through the real dispatcher on a topic and group that exist: refusals, never a panic, and
/// the topic still reads back whole afterwards.
#[test]
fn no_stream_command_panics_on_odd_arguments() {
    use crate::cmd::test_support::Harness;
    use crate::frame::Frame;
    let mut h = Harness::new();
    h.run("STREAM.CREATE t PARTITIONS 3");
    h.run("STREAM.MPUBLISH t VALUES a b c d e f");
    h.run("STREAM.JOIN t g c RESET EARLIEST");
    let pool: &[&[u8]] = &[
        b"t",
        b"g",
        b"c",
        b"nope",
        b"",
        b"0",
        b"1",
        b"2",
        b"3",
        b"-1",
        b"99999999999999999999",
        b"18446744073709551615",
        b"PARTITION",
        b"KEY",
        b"HEADER",
        b"VALUES",
        b"KEYED",
        b"COUNT",
        b"MAXBYTES",
        b"BLOCK",
        b"SESSION",
        b"RESET",
        b"EARLIEST",
        b"LATEST",
        b"PARTITIONS",
        b"RETENTION",
        b"RETENTIONBYTES",
        b"\x00\xff",
    ];
    let names = [
        "stream.create",
        "stream.alter",
        "stream.delete",
        "stream.list",
        "stream.describe",
        "stream.publish",
        "stream.mpublish",
        "stream.fetch",
        "stream.join",
        "stream.heartbeat",
        "stream.leave",
        "stream.consume",
        "stream.commit",
        "stream.offsets",
        "stream.seek",
        "stream.lag",
        "stream.groups",
    ];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let mut refusals = 0;
    for _ in 0..20_000 {
        let name = names[next(names.len())];
        if name == "stream.delete" || name == "stream.alter" {
            continue; // would remove or reshape the topic the rest pokes at
        }
        let mut args: Vec<&[u8]> = vec![name.as_bytes()];
        for _ in 0..next(9) {
            args.push(pool[next(pool.len())]);
        }
        // A BLOCK without a deadline parks forever in a real loop; here it just returns.
        if let Frame::Error(_) = h.run_args(&args) {
            refusals += 1;
        }
        h.session.stream.park = None;
        h.session.stream.parked = None;
    }
    assert!(refusals > 1000, "the pool reaches the refusals: {refusals}");
    let Frame::Array(records) = h.run("STREAM.FETCH t 0 0 COUNT 100000") else {
        panic!("fetch")
    };
    assert!(!records.is_empty());
}
