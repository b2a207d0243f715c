//! The stream model's command shell: its rows of the command table ([`TABLE`]), each command
//! parse -> core -> reply. Refusals read `ERR STREAM.<CMD>: <why>`, naming the argument; a
//! member that must join again gets `REBALANCE <why>`.
//!
//! Long polls: STREAM.FETCH and STREAM.CONSUME with BLOCK look once; when nothing is there
//! they register a wake-up on the topic's records, look again (so a publish in between is not
//! missed) and park the connection. Each wake-up looks again; the deadline answers an empty
//! array.

use std::sync::Arc;

use flin_engine::WaitHandle;

use super::codec::{NewRecord, Record, Reset};
use super::core::{FetchLimits, SeekTo, StreamError, Target, NS, SESSION_MS_DEFAULT};
use super::Streams;
use crate::cmd::{command, number, option_is, refusal, Command, NO_KEYS, R, W, WF};
use crate::context::{Call, Outcome, Session, Shared};
use crate::frame::Frame;
use crate::queue::session::ReplyTarget;

/// The stream commands (joined with the other models' rows in `cmd::commands`).
#[rustfmt::skip]
pub static TABLE: &[Command] = &[
    command!("stream.create", -4, W, NO_KEYS, "stream", "Creates a topic of partitions.", create),
    command!("stream.alter", -2, W, NO_KEYS, "stream", "Changes a topic's retention or grows its partitions.", alter),
    command!("stream.delete", 2, W, NO_KEYS, "stream", "Deletes a topic, its records and its groups' offsets.", delete),
    command!("stream.list", -1, R, NO_KEYS, "stream", "Lists topic names matching a pattern.", list),
    command!("stream.describe", 2, R, NO_KEYS, "stream", "Returns a topic's settings and its partitions' offsets.", describe),
    command!("stream.publish", -3, WF, NO_KEYS, "stream", "Appends a record; returns its partition and offset.", publish),
    command!("stream.mpublish", -4, W, NO_KEYS, "stream", "Appends many records in one write.", mpublish),
    command!("stream.fetch", -4, R, NO_KEYS, "stream", "Reads a partition from an offset, waiting with BLOCK.", fetch),
    command!("stream.join", -4, W, NO_KEYS, "stream", "Joins a consumer group; returns the generation and partitions.", join),
    command!("stream.heartbeat", 5, R, NO_KEYS, "stream", "Keeps a group member alive; tells it to rejoin after a rebalance.", heartbeat),
    command!("stream.leave", 4, W, NO_KEYS, "stream", "Leaves a consumer group.", leave),
    command!("stream.consume", -4, W, NO_KEYS, "stream", "Reads the next records of a member's partitions.", consume),
    command!("stream.commit", -7, WF, NO_KEYS, "stream", "Commits a group's offsets (fenced by generation).", commit),
    command!("stream.offsets", 3, R, NO_KEYS, "stream", "Returns a group's committed offsets.", offsets),
    command!("stream.seek", 5, W, NO_KEYS, "stream", "Moves a group's committed offset in a partition.", seek),
    command!("stream.lag", 3, R, NO_KEYS, "stream", "Returns a group's lag per partition.", lag),
    command!("stream.groups", 2, R, NO_KEYS, "stream", "Lists a topic's consumer groups and members.", groups),
];

/// Topic, group and consumer names: 1 to 249 bytes (Kafka's topic name limit).
const NAME_BYTES_MAX: usize = 249;
/// FETCH's COUNT when none is given.
const FETCH_COUNT_DEFAULT: u64 = 100;
/// FETCH's MAXBYTES when none is given (Kafka's `max.partition.fetch.bytes`).
const FETCH_BYTES_DEFAULT: u64 = 1 << 20;
/// COUNT's ceiling.
const COUNT_MAX: u64 = 100_000;

/// A connection's long poll, if any.
#[derive(Default)]
pub struct StreamSession {
    /// Set by a command that must wait; the dispatcher turns it into `Action::Park`.
    pub park: Option<Parked>,
    pub parked: Option<Parked>,
}

/// A parked STREAM.FETCH or STREAM.CONSUME: its arguments (run again on each wake-up), its
/// deadline on the event loop's clock, how to answer, and the wake-up registration.
pub struct Parked {
    pub args: Vec<Vec<u8>>,
    pub deadline_ms: Option<u64>,
    pub target: ReplyTarget,
    _wait: WaitHandle,
    _member: Option<WaitingMember>,
}

/// A group member parked in CONSUME ... BLOCK: counted as alive until this is dropped (the
/// poll answered, timed out, or its connection closed).
struct WaitingMember {
    streams: Arc<Streams>,
    topic: Vec<u8>,
    group: Vec<u8>,
    consumer: Vec<u8>,
    clock: Arc<dyn flin_engine::Clock>,
}

impl Drop for WaitingMember {
    fn drop(&mut self) {
        self.streams.member_waiting(
            &self.topic,
            &self.group,
            &self.consumer,
            false,
            self.clock.now_ms(),
        );
    }
}

fn refused<'a>(args: &'a [&'a [u8]]) -> impl Fn(StreamError) -> Frame + 'a {
    move |error| match error {
        StreamError::Rebalance(why) => Frame::error(format!("REBALANCE {why}")),
        other => refusal(args, other),
    }
}

fn name<'a>(args: &[&'a [u8]], at: usize, what: &str) -> Result<&'a [u8], Frame> {
    let name = args[at];
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(refusal(
            args,
            format!("{what} name must be 1 to {NAME_BYTES_MAX} bytes"),
        ));
    }
    Ok(name)
}

fn unknown_option(args: &[&[u8]], at: usize) -> Frame {
    refusal(
        args,
        format!("unknown option '{}'", String::from_utf8_lossy(args[at])),
    )
}

/// PARTITIONS, RETENTION and RETENTIONBYTES, as given.
type TopicOptions = (Option<u32>, Option<u64>, Option<u64>);

/// `PARTITIONS n`, `RETENTION ms`, `RETENTIONBYTES b` from `at` on.
fn topic_options(args: &[&[u8]], at: usize) -> Result<TopicOptions, Frame> {
    let (mut partitions, mut retention, mut bytes) = (None, None, None);
    let mut i = at;
    while i < args.len() {
        if option_is(args[i], "PARTITIONS") {
            partitions = Some(number(args, i + 1, "PARTITIONS", u32::MAX as u64)? as u32);
        } else if option_is(args[i], "RETENTION") {
            retention = Some(number(args, i + 1, "RETENTION", i64::MAX as u64)?);
        } else if option_is(args[i], "RETENTIONBYTES") {
            bytes = Some(number(args, i + 1, "RETENTIONBYTES", i64::MAX as u64)?);
        } else {
            return Err(unknown_option(args, i));
        }
        i += 2;
    }
    Ok((partitions, retention, bytes))
}

fn create(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let topic = name(args, 1, "topic")?;
    let (partitions, retention, bytes) = topic_options(args, 2)?;
    let Some(partitions) = partitions else {
        return Err(refusal(args, "PARTITIONS is required"));
    };
    let shared = call.shared;
    let seq = shared
        .streams
        .create(
            &shared.store,
            topic,
            partitions,
            retention.unwrap_or(0),
            bytes.unwrap_or(0),
        )
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::ok())
}

fn alter(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let topic = name(args, 1, "topic")?;
    let (partitions, retention, bytes) = topic_options(args, 2)?;
    let shared = call.shared;
    let seq = shared
        .streams
        .alter(&shared.store, topic, partitions, retention, bytes)
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::ok())
}

fn delete(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let shared = call.shared;
    let seq = shared
        .streams
        .delete(&shared.store, args[1])
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::ok())
}

fn list(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    if args.len() > 2 {
        return Err(refusal(args, "takes at most one pattern"));
    }
    let names = call.shared.streams.list(args.get(1).copied());
    Ok(Frame::Array(names.into_iter().map(Frame::Bulk).collect()))
}

fn describe(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let info = call
        .shared
        .streams
        .describe(args[1])
        .map_err(refused(args))?;
    let partitions = info
        .partitions
        .iter()
        .map(|p| {
            Frame::Map(vec![
                (Frame::bulk("partition"), Frame::Integer(p.partition as i64)),
                (Frame::bulk("first"), Frame::Integer(p.first as i64)),
                (Frame::bulk("next"), Frame::Integer(p.next as i64)),
                (Frame::bulk("bytes"), Frame::Integer(p.bytes as i64)),
                (
                    Frame::bulk("oldest_timestamp"),
                    Frame::Integer(p.oldest_timestamp_ms),
                ),
                (
                    Frame::bulk("index_blocks"),
                    Frame::Integer(p.index_blocks as i64),
                ),
            ])
        })
        .collect();
    Ok(Frame::Map(vec![
        (Frame::bulk("name"), Frame::Bulk(info.name)),
        (
            Frame::bulk("partitions"),
            Frame::Integer(info.meta.partitions as i64),
        ),
        (
            Frame::bulk("retention"),
            Frame::Integer(info.meta.retention_ms as i64),
        ),
        (
            Frame::bulk("retentionbytes"),
            Frame::Integer(info.meta.retention_bytes as i64),
        ),
        (Frame::bulk("partition_info"), Frame::Array(partitions)),
    ]))
}

/// `STREAM.PUBLISH topic [PARTITION p | KEY k] value [HEADER k v]...`
fn publish(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let topic = name(args, 1, "topic")?;
    let mut i = 2;
    let mut target = Target::Sticky;
    let mut key = None;
    // An option is one only while a value still follows it.
    while i + 2 < args.len() {
        if option_is(args[i], "PARTITION") {
            target = Target::Partition(number(args, i + 1, "PARTITION", u32::MAX as u64)? as u32);
        } else if option_is(args[i], "KEY") {
            key = Some(args[i + 1]);
            if !matches!(target, Target::Partition(_)) {
                target = Target::ByKey;
            }
        } else {
            break;
        }
        i += 2;
    }
    let Some(&value) = args.get(i) else {
        return Err(refusal(args, "a value is required"));
    };
    let mut headers = Vec::new();
    let mut h = i + 1;
    while h < args.len() {
        if !option_is(args[h], "HEADER") {
            return Err(unknown_option(args, h));
        }
        if h + 2 >= args.len() {
            return Err(refusal(args, "HEADER needs a name and a value"));
        }
        headers.push((args[h + 1], args[h + 2]));
        h += 3;
    }
    let record = NewRecord {
        key,
        headers: &headers,
        value,
    };
    let shared = call.shared;
    let now_ms = shared.now_ms();
    let placed = call.model_write(|txn| {
        shared
            .streams
            .publish_in(txn, topic, target, &[record], now_ms)
            .map_err(refused(args))
    })?;
    let (partition, offset, _) = placed[0];
    Ok(Frame::Array(vec![
        Frame::Integer(partition as i64),
        Frame::Integer(offset as i64),
    ]))
}

/// `STREAM.MPUBLISH topic [PARTITION p] VALUES v...` or `STREAM.MPUBLISH topic KEYED k v ...`
fn mpublish(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let topic = name(args, 1, "topic")?;
    let mut i = 2;
    let mut target = Target::Sticky;
    if option_is(args[i], "PARTITION") {
        target = Target::Partition(number(args, i + 1, "PARTITION", u32::MAX as u64)? as u32);
        i += 2;
    }
    let mut records = Vec::new();
    match args.get(i) {
        Some(word) if option_is(word, "VALUES") => {
            if i + 1 >= args.len() {
                return Err(refusal(args, "VALUES needs at least one value"));
            }
            records.extend(args[i + 1..].iter().map(|&value| NewRecord {
                key: None,
                headers: &[],
                value,
            }));
        }
        Some(word) if option_is(word, "KEYED") => {
            let pairs = &args[i + 1..];
            if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
                return Err(refusal(args, "KEYED needs key value pairs"));
            }
            if matches!(target, Target::Sticky) {
                target = Target::ByKey;
            }
            records.extend(pairs.chunks_exact(2).map(|kv| NewRecord {
                key: Some(kv[0]),
                headers: &[],
                value: kv[1],
            }));
        }
        _ => return Err(refusal(args, "expected VALUES or KEYED")),
    }
    let shared = call.shared;
    let now_ms = shared.now_ms();
    let placed = call.model_write(|txn| {
        shared
            .streams
            .publish_in(txn, topic, target, &records, now_ms)
            .map_err(refused(args))
    })?;
    Ok(Frame::Array(
        placed
            .into_iter()
            .map(|(p, base, count)| {
                Frame::Array(vec![
                    Frame::Integer(p as i64),
                    Frame::Integer(base as i64),
                    Frame::Integer(count as i64),
                ])
            })
            .collect(),
    ))
}

/// A record as a reply element: `[partition, offset, timestamp, key, headers, value]`.
pub fn record_frame(record: Record) -> Frame {
    Frame::Array(vec![
        Frame::Integer(record.partition as i64),
        Frame::Integer(record.offset as i64),
        Frame::Integer(record.timestamp_ms as i64),
        record.key.map_or(Frame::Null, Frame::Bulk),
        Frame::Map(
            record
                .headers
                .into_iter()
                .map(|(k, v)| (Frame::Bulk(k), Frame::Bulk(v)))
                .collect(),
        ),
        Frame::Bulk(record.value),
    ])
}

fn records_frame(records: Vec<Record>) -> Frame {
    Frame::Array(records.into_iter().map(record_frame).collect())
}

/// What a FETCH or CONSUME asks for, parsed.
enum Poll<'a> {
    Fetch {
        topic: &'a [u8],
        partition: u64,
        offset: u64,
        limits: FetchLimits,
    },
    Consume {
        topic: &'a [u8],
        group: &'a [u8],
        consumer: &'a [u8],
        count: usize,
    },
}

/// Parses a FETCH or CONSUME: the poll and its BLOCK (ms; 0 = forever), if any.
fn parse_poll<'a>(args: &[&'a [u8]]) -> Result<(Poll<'a>, Option<u64>), Frame> {
    let fetch = option_is(args[0], "stream.fetch");
    let mut count = FETCH_COUNT_DEFAULT;
    let mut max_bytes = FETCH_BYTES_DEFAULT;
    let mut block = None;
    let mut i = 4;
    while i < args.len() {
        if option_is(args[i], "COUNT") {
            count = number(args, i + 1, "COUNT", COUNT_MAX)?;
        } else if option_is(args[i], "MAXBYTES") && fetch {
            max_bytes = number(args, i + 1, "MAXBYTES", i64::MAX as u64)?;
        } else if option_is(args[i], "BLOCK") {
            block = Some(number(args, i + 1, "BLOCK", i64::MAX as u64)?);
        } else {
            return Err(unknown_option(args, i));
        }
        i += 2;
    }
    let poll = if fetch {
        Poll::Fetch {
            topic: args[1],
            partition: number(args, 2, "partition", u32::MAX as u64)?,
            offset: number(args, 3, "offset", i64::MAX as u64)?,
            limits: FetchLimits {
                count: count as usize,
                max_bytes: max_bytes as usize,
            },
        }
    } else {
        Poll::Consume {
            topic: args[1],
            group: name(args, 2, "group")?,
            consumer: name(args, 3, "consumer")?,
            count: count as usize,
        }
    };
    Ok((poll, block))
}

/// Looks once: the records there are now (maybe none), or a refusal.
fn look(shared: &Shared, args: &[&[u8]], poll: &Poll<'_>) -> Result<Vec<Record>, Frame> {
    let reader = shared.store.reader();
    let streams: &Streams = &shared.streams;
    match *poll {
        Poll::Fetch {
            topic,
            partition,
            offset,
            limits,
        } => streams.fetch(&reader, topic, partition, offset, limits),
        Poll::Consume {
            topic,
            group,
            consumer,
            count,
        } => streams.consume(&reader, topic, group, consumer, count, shared.now_ms()),
    }
    .map_err(refused(args))
}

fn fetch(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    poll(call, args)
}

fn consume(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    poll(call, args)
}

/// FETCH and CONSUME: look; with BLOCK and nothing there, register, look again, park.
fn poll(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (poll, block) = parse_poll(args)?;
    let shared = call.shared;
    let records = look(shared, args, &poll)?;
    let count = match poll {
        Poll::Fetch { limits, .. } => limits.count,
        Poll::Consume { count, .. } => count,
    };
    // COUNT 0 asks for nothing: answered at once, BLOCK or not.
    let Some(block_ms) = block.filter(|_| count > 0) else {
        return Ok(records_frame(records));
    };
    if !records.is_empty() {
        return Ok(records_frame(records));
    }
    let topic = match poll {
        Poll::Fetch { topic, .. } | Poll::Consume { topic, .. } => topic,
    };
    let prefix = shared.streams.chunks_prefix(topic).map_err(refused(args))?;
    let mailbox = call.session.queue.mailbox.clone();
    let wait = shared
        .store
        .reader()
        .wake_on(NS, &prefix, Arc::new(move || mailbox.ring()));
    let records = look(shared, args, &poll)?;
    if !records.is_empty() {
        return Ok(records_frame(records));
    }
    let member = match poll {
        Poll::Consume {
            topic,
            group,
            consumer,
            ..
        } => {
            shared
                .streams
                .member_waiting(topic, group, consumer, true, shared.now_ms());
            Some(WaitingMember {
                streams: shared.streams.clone(),
                topic: topic.to_vec(),
                group: group.to_vec(),
                consumer: consumer.to_vec(),
                clock: shared.store.reader().clock(),
            })
        }
        Poll::Fetch { .. } => None,
    };
    let deadline_ms = (block_ms > 0).then(|| wall_clock_ms().saturating_add(block_ms));
    call.session.stream.park = Some(Parked {
        args: args.iter().map(|a| a.to_vec()).collect(),
        deadline_ms,
        target: ReplyTarget::Resp,
        _wait: wait,
        _member: member,
    });
    Ok(Frame::Array(Vec::new()))
}

/// On a wake-up of a parked poll: its reply if there is one now (records, or a refusal such
/// as a rebalance or a deleted topic); `None` keeps it waiting.
pub fn look_again(shared: &Shared, session: &Session) -> Option<Frame> {
    let parked = session.stream.parked.as_ref()?;
    let args: Vec<&[u8]> = parked.args.iter().map(Vec::as_slice).collect();
    let (poll, _) = match parse_poll(&args) {
        Ok(parsed) => parsed,
        Err(refusal) => return Some(refusal),
    };
    match look(shared, &args, &poll) {
        Ok(records) if records.is_empty() => None,
        Ok(records) => Some(records_frame(records)),
        Err(refusal) => Some(refusal),
    }
}

/// The event loop's parked deadlines run on the system clock.
fn wall_clock_ms() -> u64 {
    use flin_net::Clock;
    flin_net::SystemClock.now_ms()
}

fn join(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let topic = args[1];
    let group = name(args, 2, "group")?;
    let consumer = name(args, 3, "consumer")?;
    let mut session_ms = SESSION_MS_DEFAULT;
    let mut reset = None;
    let mut i = 4;
    while i < args.len() {
        if option_is(args[i], "SESSION") {
            session_ms = number(args, i + 1, "SESSION", i64::MAX as u64)?;
        } else if option_is(args[i], "RESET") {
            reset = Some(match args.get(i + 1) {
                Some(w) if option_is(w, "EARLIEST") => Reset::Earliest,
                Some(w) if option_is(w, "LATEST") => Reset::Latest,
                _ => return Err(refusal(args, "RESET must be EARLIEST or LATEST")),
            });
        } else {
            return Err(unknown_option(args, i));
        }
        i += 2;
    }
    let shared = call.shared;
    let (generation, partitions, seq) = shared
        .streams
        .join(
            &shared.store,
            topic,
            group,
            consumer,
            session_ms,
            reset,
            shared.now_ms(),
        )
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::Array(vec![
        Frame::Integer(generation as i64),
        Frame::Array(
            partitions
                .into_iter()
                .map(|p| Frame::Integer(p as i64))
                .collect(),
        ),
    ]))
}

fn heartbeat(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let generation = number(args, 4, "generation", i64::MAX as u64)?;
    call.shared
        .streams
        .heartbeat(args[1], args[2], args[3], generation, call.shared.now_ms())
        .map_err(refused(args))?;
    Ok(Frame::ok())
}

fn leave(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    call.shared
        .streams
        .leave(args[1], args[2], args[3])
        .map_err(refused(args))?;
    Ok(Frame::ok())
}

fn commit(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let generation = number(args, 4, "generation", i64::MAX as u64)?;
    let pairs = &args[5..];
    if !pairs.len().is_multiple_of(2) {
        return Err(refusal(args, "expected partition offset pairs"));
    }
    let mut offsets = Vec::with_capacity(pairs.len() / 2);
    for i in (5..args.len()).step_by(2) {
        offsets.push((
            number(args, i, "partition", u32::MAX as u64)?,
            number(args, i + 1, "offset", i64::MAX as u64)?,
        ));
    }
    let shared = call.shared;
    let seq = shared
        .streams
        .commit(
            &shared.store,
            args[1],
            args[2],
            args[3],
            generation,
            &offsets,
            shared.now_ms(),
        )
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::ok())
}

fn offsets(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let offsets = call
        .shared
        .streams
        .offsets(args[1], args[2])
        .map_err(refused(args))?;
    Ok(Frame::Array(
        offsets
            .into_iter()
            .map(|(p, c)| Frame::Array(vec![Frame::Integer(p as i64), Frame::Integer(c)]))
            .collect(),
    ))
}

fn seek(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let group = name(args, 2, "group")?;
    let partition = number(args, 3, "partition", u32::MAX as u64)?;
    let to = if option_is(args[4], "EARLIEST") {
        SeekTo::Earliest
    } else if option_is(args[4], "LATEST") {
        SeekTo::Latest
    } else {
        SeekTo::Offset(number(args, 4, "offset", i64::MAX as u64)?)
    };
    let shared = call.shared;
    let (_, seq) = shared
        .streams
        .seek(&shared.store, args[1], group, partition, to)
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::ok())
}

fn lag(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let lag = call
        .shared
        .streams
        .lag(args[1], args[2])
        .map_err(refused(args))?;
    Ok(Frame::Array(
        lag.into_iter()
            .map(|(p, end, committed, lag)| {
                Frame::Array(vec![
                    Frame::Integer(p as i64),
                    Frame::Integer(end as i64),
                    Frame::Integer(committed),
                    Frame::Integer(lag as i64),
                ])
            })
            .collect(),
    ))
}

fn groups(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let groups = call.shared.streams.groups(args[1]).map_err(refused(args))?;
    Ok(Frame::Array(
        groups
            .into_iter()
            .map(|g| {
                let members = g
                    .members
                    .into_iter()
                    .map(|(c, parts)| {
                        Frame::Array(vec![
                            Frame::Bulk(c),
                            Frame::Array(
                                parts
                                    .into_iter()
                                    .map(|p| Frame::Integer(p as i64))
                                    .collect(),
                            ),
                        ])
                    })
                    .collect();
                Frame::Map(vec![
                    (Frame::bulk("name"), Frame::Bulk(g.name)),
                    (
                        Frame::bulk("generation"),
                        Frame::Integer(g.generation as i64),
                    ),
                    (Frame::bulk("reset"), Frame::bulk(g.reset.to_string())),
                    (Frame::bulk("members"), Frame::Array(members)),
                ])
            })
            .collect(),
    ))
}
