//! Streams: Kafka's model (partitioned topics, dense offsets, consumer groups with sticky
//! assignment and generation fencing, retention by age and bytes, long polls) in the engine's
//! Stream namespace.
//!
//! # Layout
//! - `core`: [`Streams`], the model and the engine's observer of the namespace; typed
//!   arguments in, typed results or a [`StreamError`] out; no sockets. Its module doc says
//!   how the model and the log stay in step and what is kept in memory.
//! - `group`: consumer-group membership and the sticky assignment, pure.
//! - `codec`: the records' keys and values (storage-format.md 2.8).
//! - `partitioner`: Kafka's key partitioner (murmur2).
//! - `commands`: the shell: the model's rows of the command table, each command parse ->
//!   core -> `Frame`; long polls (BLOCK) park the connection and look again on wake-ups.
//!
//! # Data flow
//! PUBLISH -> `commands` -> `Streams::publish` decides under the engine's writer lock (the
//! partition's next offset), queues one chunk per partition, the write commits, and the
//! observer's `apply` moves the partition on -> the engine wakes every long poll registered on
//! the topic's prefix -> their connections fetch again.

pub mod codec;
pub mod commands;
mod core;
pub mod group;
pub mod partitioner;

pub use self::core::{
    FetchLimits, GroupInfo, PartitionInfo, Result, SeekTo, StreamError, Streams, Target, TopicInfo,
    BLOCK_BYTES, CHUNK_BYTES_MAX, NS, PARTITIONS_MAX, SESSION_MS_DEFAULT,
};

#[cfg(test)]
mod tests;
