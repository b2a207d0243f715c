//! Message queues: RabbitMQ's model (durable queues, priorities, acks, dead letters, push
//! consumers, exchanges) in the engine's Queue namespace.
//!
//! # Layout
//! - `core`: [`Queues`], the model (queues, ready order, in-flight set, consumers, waiters,
//!   exchanges); typed arguments in, typed results or a [`QueueError`] out; no sockets.
//!   Its module doc says how the model and the log stay in step and what is on disk.
//! - `codec`: the records' keys and values in the Queue namespace.
//! - `routing`: RabbitMQ's topic and headers matching, pure.
//! - `session`: what a connection holds for queues (its mailbox, a parked QUEUE.BPOP) and
//!   how deliveries are written to it (replies and server pushes).
//! - `commands`: the shell: the model's rows of the command table, each command parse ->
//!   core -> `Frame`; the one place a `QueueError` becomes an error reply.
//!
//! # Data flow
//! A command's arguments -> `commands` -> a `Queues` method, under the engine's writer lock
//! and then the model's lock (always in that order): decide, commit the plan's writes as one
//! log entry (its seq gates the reply), apply them to memory, then hand ready messages to
//! waiters and subscribers through their [`Mailbox`] (which wakes their loop) -> `session`
//! writes them on the connection's thread. Inside EXEC ([`Scope::Exec`]) the writes join
//! EXEC's entry and the hand-out waits for its commit.

pub mod codec;
pub mod commands;
mod core;
pub mod routing;
pub mod session;

pub use self::core::{
    ConnId, Delivery, DeliveryKind, ExchangeInfo, InTransaction, Mailbox, Message, NewMessage,
    QueueError, QueueInfo, Queues, Result, Scope, DEATH_QUEUE_HEADER, DEATH_REASON_HEADER, NS,
    PAYLOAD_BYTES_MAX, PRIORITIES,
};
#[cfg(test)]
mod exec_tests;
#[cfg(test)]
mod tests;
