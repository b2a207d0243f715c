//! flin-server: Flin's daemon and its Redis-compatible key-value command set.
//!
//! # Layout
//! - `config`: command-line flags and [`config::Options`].
//! - `frame`: [`frame::Frame`], the value a command returns; encoded to RESP2/RESP3 by
//!   flin-net's encoder.
//! - `context`: [`context::Shared`] (engine, options, counters, client registry),
//!   [`context::Session`] (one per connection) and [`context::Call`], whose `write` is the one
//!   path by which every mutating command reaches the engine (one engine transaction each, or
//!   EXEC's shared transaction).
//! - `cluster`: raft in the server (issue 14): the raft thread, the peers' transport, the
//!   cluster's reply gates, redirects.
//! - `dispatch`: lookup, arity, authentication, MULTI queuing, then the command.
//! - `cmd`: the command table (its own rows and each data model's) and the families that
//!   belong to no model (`connection`, `server`, `transactions`), each parse -> apply -> reply.
//! - `kv`: the key-value data model, a folder of its own: a core (typed arguments in, typed
//!   results or `KvError` out; no sockets or frames, tested on an in-memory engine) and a thin
//!   command shell (`kv::commands`: parse -> core -> `Frame`). Queues, streams and documents
//!   and documents will each get a folder of this shape.
//! - `queue`: message queues (RabbitMQ's model), the same shape: a core ([`queue::Queues`],
//!   the model beside the log), routing, records, the per-connection session and the shell.
//! - `store`: [`store::Store`], the one door to the engine: a read-only [`store::Reader`] for
//!   every command, and `Store::write`, the one write path (a typed list of engine ops,
//!   committed as one log entry with its seq).
//! - `gates`: [`gates::DurableGates`]: under `--fsync always` a reply waits behind a gate that
//!   the `flin-durable` thread opens once its write is flushed, or withdraws when the flush
//!   fails.
//! - `service`: flin-net's `Service`: RESP and binary requests in, frames out, each reply
//!   behind the gate of the seq it acknowledges.
//! - `glob`, `number`: Redis's glob matching and number rules.
//! - `signal`: SIGINT/SIGTERM -> a flag (the only `unsafe`).
//! - `recorder`: [`recorder::Recorder`], the counters the request path adds to (commands by
//!   name and result, latency histograms per command family), sharded per event loop.
//! - `log`: the daemon's structured log lines (`--log-level`, `--log-format`).
//! - `admin`: the admin HTTP port (`--admin-port`): the dashboard page, health, readiness,
//!   stats as JSON, Prometheus metrics; threads of its own (at most one per connection, eight
//!   at once), a pure HTTP core (`admin::http`) and one snapshot of the figures rendered both
//!   ways (`admin::snapshot`, `admin::metrics`).
//! - `daemon`: startup (open the engine, bind, log line), run, and orderly shutdown.
//!
//! # Data flow
//! socket -> flin-net parses a request -> `KvService::handle_*` -> `dispatch::execute` ->
//! command (a model's shell parses its arguments and calls its core): reads through the `Call`
//! (no writer lock), writes via `Call::write` -> `Store::write` (one transaction, committed as
//! one log entry; seq recorded in the session) -> `Frame` -> encoded into the output
//! buffer, behind its reply gate (`gates`: under `--fsync always`, until what it acknowledges is
//! durable) -> socket.

#![deny(unsafe_code)]

pub mod admin;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod context;
pub mod daemon;
pub mod dispatch;
pub mod doc;
pub mod frame;
pub mod gates;
pub mod glob;
pub mod kv;
pub mod log;
pub mod number;
#[allow(unsafe_code)]
pub mod os;
pub mod queue;
pub mod recorder;
pub mod service;
#[allow(unsafe_code)]
pub mod signal;
pub mod store;
pub mod stream;
