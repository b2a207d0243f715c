//! [`GroupConsumer`]: a consumer-group member on a connection of its own.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{block_ms, bytes, number, reply, request, request_waiting, word, Record, Reset};
use crate::client::connection::Connection;
use crate::client::error::Result;
use crate::client::Client;

/// A member of a consumer group: it joins when opened, [`GroupConsumer::poll`]s records of
/// its partitions (STREAM.CONSUME), heartbeats when a third of its session has passed,
/// [`GroupConsumer::commit`]s what it has polled, and joins again by itself when the server
/// answers `REBALANCE` (a new generation, or an eviction). Dropping it without
/// [`GroupConsumer::close`] leaves the group to evict it after its session.
///
/// At least once: records polled and not committed are delivered again, to whichever member
/// holds their partition, after a rebalance, an eviction or a server restart. Commit after
/// processing, not before.
#[derive(Debug)]
pub struct GroupConsumer {
    connection: Connection,
    read_timeout: Option<Duration>,
    topic: Vec<u8>,
    group: Vec<u8>,
    consumer: Vec<u8>,
    session: Duration,
    reset: Reset,
    generation: u64,
    partitions: Vec<u32>,
    /// Next offset to commit per partition (last polled + 1).
    polled: BTreeMap<u32, u64>,
    last_heard: Instant,
}

impl GroupConsumer {
    pub(crate) fn open(
        client: &Client,
        topic: Vec<u8>,
        group: Vec<u8>,
        consumer: Vec<u8>,
        session: Duration,
        reset: Reset,
    ) -> Result<GroupConsumer> {
        let mut member = GroupConsumer {
            connection: client.open_dedicated()?,
            read_timeout: client.options().read_timeout,
            topic,
            group,
            consumer,
            session,
            reset,
            generation: 0,
            partitions: Vec::new(),
            polled: BTreeMap::new(),
            last_heard: Instant::now(),
        };
        member.join()?;
        Ok(member)
    }

    /// The generation this member joined and the partitions it holds.
    pub fn assignment(&self) -> (u64, &[u32]) {
        (self.generation, &self.partitions)
    }

    /// STREAM.JOIN (again): the current generation and partitions. Offsets polled in
    /// partitions no longer held are forgotten (their new owner starts at the committed
    /// offset).
    pub fn join(&mut self) -> Result<()> {
        let args = [
            bytes(&self.topic),
            bytes(&self.group),
            bytes(&self.consumer),
            word("SESSION"),
            number(block_ms(self.session).max(1)),
            word("RESET"),
            word(match self.reset {
                Reset::Earliest => "EARLIEST",
                Reset::Latest => "LATEST",
            }),
        ];
        let assignment = request(
            &mut self.connection,
            "stream.join",
            &args,
            reply::assignment,
        )?;
        self.generation = assignment.generation;
        self.partitions = assignment.partitions;
        let held = &self.partitions;
        self.polled.retain(|p, _| held.contains(p));
        self.last_heard = Instant::now();
        Ok(())
    }

    /// STREAM.HEARTBEAT; a REBALANCE answer is handled by joining again.
    pub fn heartbeat(&mut self) -> Result<()> {
        let args = [
            bytes(&self.topic),
            bytes(&self.group),
            bytes(&self.consumer),
            number(self.generation),
        ];
        match request(&mut self.connection, "stream.heartbeat", &args, reply::ok) {
            Ok(()) => {
                self.last_heard = Instant::now();
                Ok(())
            }
            Err(error) if error.is_rebalance() => self.join(),
            Err(error) => Err(error),
        }
    }

    /// Up to `count` records of this member's partitions, waiting up to `block` for the
    /// first (`None`: no wait; `Some(ZERO)`: forever). Heartbeats first when due.
    pub fn poll(&mut self, count: u32, block: Option<Duration>) -> Result<Vec<Record>> {
        if self.last_heard.elapsed() >= self.session / 3 {
            self.heartbeat()?;
        }
        let records = match self.consume(count, block) {
            Err(error) if error.is_rebalance() => {
                self.join()?;
                self.consume(count, block)?
            }
            other => other?,
        };
        self.last_heard = Instant::now();
        for record in &records {
            let next = self.polled.entry(record.partition).or_insert(0);
            *next = (*next).max(record.offset + 1);
        }
        Ok(records)
    }

    fn consume(&mut self, count: u32, block: Option<Duration>) -> Result<Vec<Record>> {
        let mut args: Vec<Cow<'_, [u8]>> = vec![
            bytes(&self.topic),
            bytes(&self.group),
            bytes(&self.consumer),
            word("COUNT"),
            number(count as u64),
        ];
        if let Some(block) = block {
            args.extend([word("BLOCK"), number(block_ms(block))]);
        }
        request_waiting(
            &mut self.connection,
            self.read_timeout,
            block,
            "stream.consume",
            &args,
            reply::records,
        )
    }

    /// STREAM.COMMIT of everything polled (next offset per partition), with this member's
    /// generation. After a rebalance the member joins again and commits what it polled in
    /// the partitions it still holds; the rest is delivered again to their new owners.
    pub fn commit(&mut self) -> Result<()> {
        if self.polled.is_empty() {
            return Ok(());
        }
        match self.send_commit() {
            Err(error) if error.is_rebalance() => {
                self.join()?;
                if self.polled.is_empty() {
                    return Ok(());
                }
                self.send_commit()
            }
            other => other,
        }?;
        self.polled.clear();
        self.last_heard = Instant::now();
        Ok(())
    }

    fn send_commit(&mut self) -> Result<()> {
        let mut args: Vec<Cow<'_, [u8]>> = vec![
            bytes(&self.topic),
            bytes(&self.group),
            bytes(&self.consumer),
            number(self.generation),
        ];
        for (&p, &offset) in &self.polled {
            args.extend([number(p as u64), number(offset)]);
        }
        request(&mut self.connection, "stream.commit", &args, reply::ok)
    }

    /// Commits what was polled, then STREAM.LEAVE: the partitions move to the others now.
    pub fn close(mut self) -> Result<()> {
        let committed = self.commit();
        let args = [
            bytes(&self.topic),
            bytes(&self.group),
            bytes(&self.consumer),
        ];
        request(&mut self.connection, "stream.leave", &args, reply::ok)?;
        committed
    }
}
