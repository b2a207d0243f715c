//! Stream commands (issue 12): [`Stream`], the group [`super::Client::stream`] returns, and
//! the two handles that own a connection, [`Producer`] (batches records into STREAM.MPUBLISH,
//! several batches in flight) and [`GroupConsumer`] (joins a group, polls, heartbeats,
//! commits, rejoins after a rebalance).
//!
//! Layout:
//! - this file: the types callers build and get back ([`Record`], [`Published`],
//!   [`TopicInfo`] ...) and [`Stream`], whose calls each use one pooled connection for one
//!   request, sent as a row of `binary::commands::TABLE` (opcodes 0x60..=0x70).
//! - `reply`: each reply's typed value to what a method returns (pure, unit-tested).
//! - `producer`, `consumer`: the handles on connections of their own.
//!
//! Topic, group and consumer names, keys, header names and values and record values are
//! byte strings; limits are checked by the server, which names the argument it refuses
//! ([`super::Error::Server`]). A member that must join its group again gets an error for
//! which [`super::Error::is_rebalance`] is true.

mod consumer;
mod producer;
mod reply;

use std::borrow::Cow;
use std::time::Duration;

use super::connection::Connection;
use super::error::Result;
use super::kv::duration_ms;
use super::Client;
use crate::binary::Value;

pub use consumer::GroupConsumer;
pub use producer::{Producer, ProducerOptions};

/// A record read from a partition (STREAM.FETCH, STREAM.CONSUME).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: u32,
    pub offset: u64,
    /// When the server appended it, ms since the epoch (Kafka's LogAppendTime).
    pub timestamp_ms: u64,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub value: Vec<u8>,
}

/// Where STREAM.PUBLISH put a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub partition: u32,
    pub offset: u64,
}

/// Where STREAM.MPUBLISH put a partition's share of a batch: offsets `base .. base + count`,
/// in the order the records were given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedRange {
    pub partition: u32,
    pub base: u64,
    pub count: u64,
}

/// A partition as STREAM.DESCRIBE shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    /// The first offset still kept (retention moves it).
    pub first: u64,
    /// The offset the next record gets.
    pub next: u64,
    pub bytes: u64,
    /// The oldest record's timestamp; `None` when the partition is empty.
    pub oldest_timestamp_ms: Option<u64>,
}

/// STREAM.DESCRIBE's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: Vec<u8>,
    pub partitions: Vec<PartitionInfo>,
    /// Retention by age, `None` when unlimited.
    pub retention: Option<Duration>,
    /// Retention by bytes per partition, `None` when unlimited.
    pub retention_bytes: Option<u64>,
}

/// A group member's generation and partitions (STREAM.JOIN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub generation: u64,
    pub partitions: Vec<u32>,
}

/// A partition's end, committed offset and lag (STREAM.LAG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    pub partition: u32,
    pub end: u64,
    pub committed: Option<u64>,
    pub lag: u64,
}

/// A consumer group as STREAM.GROUPS shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: Vec<u8>,
    pub generation: u64,
    /// Each member and its partitions.
    pub members: Vec<(Vec<u8>, Vec<u32>)>,
}

/// Where a group starts in a partition it has no committed offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    Earliest,
    Latest,
}

/// Where STREAM.SEEK moves a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    Earliest,
    Latest,
    Offset(u64),
}

/// STREAM.FETCH's limits and wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOptions {
    pub count: u32,
    pub max_bytes: u64,
    /// Wait this long for a record when there is none (`Some(ZERO)`: forever).
    pub block: Option<Duration>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            count: 100,
            max_bytes: 1 << 20,
            block: None,
        }
    }
}

pub(crate) type Args<'a> = Vec<Cow<'a, [u8]>>;

fn word(word: &'static str) -> Cow<'static, [u8]> {
    Cow::Borrowed(word.as_bytes())
}

fn number(value: u64) -> Cow<'static, [u8]> {
    Cow::Owned(value.to_string().into_bytes())
}

fn bytes(value: &[u8]) -> Cow<'_, [u8]> {
    Cow::Borrowed(value)
}

use super::{table_request as request, table_row as row};

/// A BLOCK wait in ms: zero waits forever; a non-zero wait under a millisecond is one.
fn block_ms(block: Duration) -> u64 {
    if block.is_zero() {
        0
    } else {
        duration_ms(block).max(1)
    }
}

/// A request that may wait `block` on the server: the read timeout grows by the wait for
/// this one request (forever for a wait of zero), then is restored.
fn request_waiting<T>(
    connection: &mut Connection,
    read_timeout: Option<Duration>,
    block: Option<Duration>,
    command: &'static str,
    args: &[Cow<'_, [u8]>],
    decode: impl FnOnce(&Value, u8) -> Result<T>,
) -> Result<T> {
    let Some(block) = block else {
        return request(connection, command, args, decode);
    };
    let wait = match (block.is_zero(), read_timeout) {
        (false, Some(read_timeout)) => Some(read_timeout.saturating_add(block)),
        _ => None,
    };
    connection.set_read_timeout(wait)?;
    let answer = request(connection, command, args, decode);
    connection.set_read_timeout(read_timeout)?;
    answer
}

fn fetch_args<'a>(
    topic: &'a [u8],
    partition: u32,
    offset: u64,
    options: &FetchOptions,
) -> Args<'a> {
    let mut args = vec![
        bytes(topic),
        number(partition as u64),
        number(offset),
        word("COUNT"),
        number(options.count as u64),
        word("MAXBYTES"),
        number(options.max_bytes),
    ];
    if let Some(block) = options.block {
        args.extend([word("BLOCK"), number(block_ms(block))]);
    }
    args
}

/// Stream commands on a [`Client`]'s pool; each call uses one pooled connection for one
/// request and reply. Publishing in batches and consuming in a group are done by handles
/// with a connection of their own: [`Stream::producer`], [`Stream::group_consumer`].
#[derive(Debug, Clone, Copy)]
pub struct Stream<'c> {
    client: &'c Client,
}

impl<'c> Stream<'c> {
    pub(crate) fn new(client: &'c Client) -> Stream<'c> {
        Stream { client }
    }

    fn run<T>(
        &self,
        command: &'static str,
        args: &[Cow<'_, [u8]>],
        decode: impl FnOnce(&Value, u8) -> Result<T>,
    ) -> Result<T> {
        self.client.table_call(command, args, decode)
    }

    /// STREAM.CREATE topic PARTITIONS n [RETENTION ms] [RETENTIONBYTES b].
    pub fn create(
        &self,
        topic: impl AsRef<[u8]>,
        partitions: u32,
        retention: Option<Duration>,
        retention_bytes: Option<u64>,
    ) -> Result<()> {
        let mut args = vec![
            bytes(topic.as_ref()),
            word("PARTITIONS"),
            number(partitions as u64),
        ];
        if let Some(retention) = retention {
            args.extend([word("RETENTION"), number(duration_ms(retention))]);
        }
        if let Some(b) = retention_bytes {
            args.extend([word("RETENTIONBYTES"), number(b)]);
        }
        self.run("stream.create", &args, reply::ok)
    }

    /// STREAM.ALTER: grow the partitions, change retention (0 = unlimited).
    pub fn alter(
        &self,
        topic: impl AsRef<[u8]>,
        partitions: Option<u32>,
        retention: Option<Duration>,
        retention_bytes: Option<u64>,
    ) -> Result<()> {
        let mut args = vec![bytes(topic.as_ref())];
        if let Some(p) = partitions {
            args.extend([word("PARTITIONS"), number(p as u64)]);
        }
        if let Some(retention) = retention {
            args.extend([word("RETENTION"), number(duration_ms(retention))]);
        }
        if let Some(b) = retention_bytes {
            args.extend([word("RETENTIONBYTES"), number(b)]);
        }
        self.run("stream.alter", &args, reply::ok)
    }

    pub fn delete(&self, topic: impl AsRef<[u8]>) -> Result<()> {
        self.run("stream.delete", &[bytes(topic.as_ref())], reply::ok)
    }

    pub fn list(&self, pattern: Option<&[u8]>) -> Result<Vec<Vec<u8>>> {
        let args: Args<'_> = pattern.into_iter().map(bytes).collect();
        self.run("stream.list", &args, reply::names)
    }

    pub fn describe(&self, topic: impl AsRef<[u8]>) -> Result<TopicInfo> {
        self.run("stream.describe", &[bytes(topic.as_ref())], reply::describe)
    }

    /// STREAM.PUBLISH of one record: to `partition`, or by `key`'s hash (Kafka's
    /// partitioner), or round robin when neither is given.
    pub fn publish(
        &self,
        topic: impl AsRef<[u8]>,
        partition: Option<u32>,
        key: Option<&[u8]>,
        headers: &[(&[u8], &[u8])],
        value: impl AsRef<[u8]>,
    ) -> Result<Published> {
        let mut args = vec![bytes(topic.as_ref())];
        if let Some(p) = partition {
            args.extend([word("PARTITION"), number(p as u64)]);
        }
        if let Some(key) = key {
            args.extend([word("KEY"), bytes(key)]);
        }
        args.push(bytes(value.as_ref()));
        for (name, value) in headers {
            args.extend([word("HEADER"), bytes(name), bytes(value)]);
        }
        self.run("stream.publish", &args, reply::published)
    }

    /// STREAM.MPUBLISH ... VALUES: one write; to `partition`, or all to one partition
    /// (sticky round robin) when `None`.
    pub fn publish_values<V: AsRef<[u8]>>(
        &self,
        topic: impl AsRef<[u8]>,
        partition: Option<u32>,
        values: &[V],
    ) -> Result<Vec<PublishedRange>> {
        let mut args = vec![bytes(topic.as_ref())];
        if let Some(p) = partition {
            args.extend([word("PARTITION"), number(p as u64)]);
        }
        args.push(word("VALUES"));
        args.extend(values.iter().map(|v| bytes(v.as_ref())));
        self.run("stream.mpublish", &args, reply::ranges)
    }

    /// STREAM.MPUBLISH ... KEYED: one write, each record by its key's hash.
    pub fn publish_keyed<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        topic: impl AsRef<[u8]>,
        records: &[(K, V)],
    ) -> Result<Vec<PublishedRange>> {
        let mut args = vec![bytes(topic.as_ref()), word("KEYED")];
        for (k, v) in records {
            args.extend([bytes(k.as_ref()), bytes(v.as_ref())]);
        }
        self.run("stream.mpublish", &args, reply::ranges)
    }

    /// STREAM.FETCH: records of `partition` from `offset` (with `block`, waiting for one).
    pub fn fetch(
        &self,
        topic: impl AsRef<[u8]>,
        partition: u32,
        offset: u64,
        options: &FetchOptions,
    ) -> Result<Vec<Record>> {
        let args = fetch_args(topic.as_ref(), partition, offset, options);
        let mut connection = self.client.checkout()?;
        let read_timeout = self.client.options().read_timeout;
        request_waiting(
            &mut connection,
            read_timeout,
            options.block,
            "stream.fetch",
            &args,
            reply::records,
        )
    }

    /// STREAM.OFFSETS: each partition's committed offset (`None`: none).
    pub fn offsets(
        &self,
        topic: impl AsRef<[u8]>,
        group: impl AsRef<[u8]>,
    ) -> Result<Vec<(u32, Option<u64>)>> {
        let args = [bytes(topic.as_ref()), bytes(group.as_ref())];
        self.run("stream.offsets", &args, reply::offsets)
    }

    /// STREAM.SEEK: the group's committed offset in `partition`, and its owner's position.
    pub fn seek(
        &self,
        topic: impl AsRef<[u8]>,
        group: impl AsRef<[u8]>,
        partition: u32,
        to: SeekTo,
    ) -> Result<()> {
        let target = match to {
            SeekTo::Earliest => word("EARLIEST"),
            SeekTo::Latest => word("LATEST"),
            SeekTo::Offset(offset) => number(offset),
        };
        let args = [
            bytes(topic.as_ref()),
            bytes(group.as_ref()),
            number(partition as u64),
            target,
        ];
        self.run("stream.seek", &args, reply::ok)
    }

    pub fn lag(&self, topic: impl AsRef<[u8]>, group: impl AsRef<[u8]>) -> Result<Vec<Lag>> {
        let args = [bytes(topic.as_ref()), bytes(group.as_ref())];
        self.run("stream.lag", &args, reply::lag)
    }

    pub fn groups(&self, topic: impl AsRef<[u8]>) -> Result<Vec<GroupInfo>> {
        self.run("stream.groups", &[bytes(topic.as_ref())], reply::groups)
    }

    /// A batching producer on a connection of its own.
    pub fn producer(
        &self,
        topic: impl Into<Vec<u8>>,
        options: ProducerOptions,
    ) -> Result<Producer> {
        Producer::open(self.client, topic.into(), options)
    }

    /// A group member on a connection of its own: joins at once.
    pub fn group_consumer(
        &self,
        topic: impl Into<Vec<u8>>,
        group: impl Into<Vec<u8>>,
        consumer: impl Into<Vec<u8>>,
        session: Duration,
        reset: Reset,
    ) -> Result<GroupConsumer> {
        GroupConsumer::open(
            self.client,
            topic.into(),
            group.into(),
            consumer.into(),
            session,
            reset,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_fits_its_row() {
        let fetch = fetch_args(b"t", 3, 7, &FetchOptions::default());
        assert_eq!(
            fetch,
            [
                &b"t"[..],
                b"3",
                b"7",
                b"COUNT",
                b"100",
                b"MAXBYTES",
                b"1048576"
            ]
            .map(Cow::Borrowed)
            .to_vec()
        );
        assert!(row("stream.fetch").arity_ok(fetch.len()));
        let blocking = fetch_args(
            b"t",
            0,
            0,
            &FetchOptions {
                block: Some(Duration::from_micros(10)),
                ..FetchOptions::default()
            },
        );
        assert_eq!(blocking[blocking.len() - 2..], [word("BLOCK"), number(1)]);
        assert_eq!(block_ms(Duration::ZERO), 0, "zero waits forever");
    }
}
