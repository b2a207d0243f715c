//! [`Producer`]: records batched into STREAM.MPUBLISH, several batches in flight on a
//! connection of its own.

use std::borrow::Cow;

use super::{reply, row, PublishedRange};
use crate::binary;
use crate::client::connection::Connection;
use crate::client::decode;
use crate::client::error::Result;
use crate::client::Client;

/// How a [`Producer`] batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerOptions {
    /// A batch is sent once it holds this many records...
    pub batch_records: usize,
    /// ... or this many bytes of keys and values.
    pub batch_bytes: usize,
    /// Batches sent and not yet answered, at most (more waits for the oldest answer).
    pub in_flight: usize,
    /// Every batch to this partition; `None`: keyless batches go to one partition each
    /// (round robin), keyed records by their key's hash.
    pub partition: Option<u32>,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        ProducerOptions {
            batch_records: 1000,
            batch_bytes: 1 << 20,
            in_flight: 4,
            partition: None,
        }
    }
}

/// A record's place in the producer's buffer.
#[derive(Clone, Copy)]
struct Span {
    key: Option<(usize, usize)>,
    value: (usize, usize),
}

/// Buffers records and publishes them in batches (STREAM.MPUBLISH: one write per batch on the
/// server), keeping up to `in_flight` batches on the wire. Records are copied once into the
/// producer's buffer, and from there into the request: nothing is allocated per record.
///
/// A batch is keyless (`VALUES`) or keyed (`KEYED`): a record of the other kind sends the
/// batch so far first. A record is acknowledged (durable under `--fsync always`) once
/// [`Producer::flush`] returns its batch's range; a batch that fails (a network error, a
/// server refusal) is reported by the `send` or `flush` that reads its answer, and its
/// records may or may not have been written.
#[derive(Debug)]
pub struct Producer {
    connection: Connection,
    topic: Vec<u8>,
    options: ProducerOptions,
    data: Vec<u8>,
    spans: Vec<Span>,
    keyed: bool,
    /// Answers read since the last flush.
    published: Vec<PublishedRange>,
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Span({:?}, {:?})", self.key, self.value)
    }
}

impl Producer {
    pub(crate) fn open(
        client: &Client,
        topic: Vec<u8>,
        options: ProducerOptions,
    ) -> Result<Producer> {
        Ok(Producer {
            connection: client.open_dedicated()?,
            topic,
            options: ProducerOptions {
                batch_records: options.batch_records.max(1),
                in_flight: options.in_flight.max(1),
                ..options
            },
            data: Vec::new(),
            spans: Vec::new(),
            keyed: false,
            published: Vec::new(),
        })
    }

    /// Buffers one record; sends the batch when it is full.
    pub fn send(&mut self, key: Option<&[u8]>, value: &[u8]) -> Result<()> {
        if !self.spans.is_empty() && self.keyed != key.is_some() {
            self.send_batch()?;
        }
        self.keyed = key.is_some();
        let key = key.map(|key| {
            let at = self.data.len();
            self.data.extend_from_slice(key);
            (at, key.len())
        });
        let at = self.data.len();
        self.data.extend_from_slice(value);
        self.spans.push(Span {
            key,
            value: (at, value.len()),
        });
        if self.spans.len() >= self.options.batch_records
            || self.data.len() >= self.options.batch_bytes
        {
            self.send_batch()?;
        }
        Ok(())
    }

    /// Records buffered and not yet sent.
    pub fn buffered(&self) -> usize {
        self.spans.len()
    }

    /// Sends what is buffered and waits for every batch in flight; returns where each batch
    /// since the last flush went, in order.
    pub fn flush(&mut self) -> Result<Vec<PublishedRange>> {
        self.send_batch()?;
        while self.connection.awaiting_responses() > 0 {
            self.read_answer()?;
        }
        Ok(std::mem::take(&mut self.published))
    }

    fn send_batch(&mut self) -> Result<()> {
        if self.spans.is_empty() {
            return Ok(());
        }
        while self.connection.awaiting_responses() >= self.options.in_flight {
            self.read_answer()?;
        }
        let data = &self.data;
        let slice = |(at, len): (usize, usize)| &data[at..at + len];
        let partition = self.options.partition.map(|p| p.to_string().into_bytes());
        let mut args: Vec<Cow<'_, [u8]>> = Vec::with_capacity(self.spans.len() * 2 + 4);
        args.push(Cow::Borrowed(&self.topic));
        if let Some(p) = &partition {
            args.push(Cow::Borrowed(b"PARTITION"));
            args.push(Cow::Borrowed(p));
        }
        if self.keyed {
            args.push(Cow::Borrowed(b"KEYED"));
            for span in &self.spans {
                args.push(Cow::Borrowed(slice(span.key.expect("a keyed batch"))));
                args.push(Cow::Borrowed(slice(span.value)));
            }
        } else {
            args.push(Cow::Borrowed(b"VALUES"));
            args.extend(
                self.spans
                    .iter()
                    .map(|span| Cow::Borrowed(slice(span.value))),
            );
        }
        let spec = row("stream.mpublish");
        let queued = self
            .connection
            .queue(|out, id| binary::encode_command(out, id, spec, &args));
        drop(args);
        self.data.clear();
        self.spans.clear();
        queued?;
        self.connection.flush()
    }

    fn read_answer(&mut self) -> Result<()> {
        let opcode = row("stream.mpublish").opcode;
        let response = self.connection.receive()?;
        let ranges = decode::typed(&response).and_then(|value| reply::ranges(&value, opcode));
        match ranges {
            Ok(ranges) => {
                self.published.extend(ranges);
                Ok(())
            }
            Err(error) => {
                if error.breaks_connection() {
                    self.connection.mark_broken();
                }
                Err(error)
            }
        }
    }
}
