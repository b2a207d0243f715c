//! `flin-bench`, the load generator (`src/bin/flin-bench.rs` is its
//! command line).
//!
//! Layout:
//! - [`workload`]: what to send ([`Workload`], one family per data model)
//!   and the protocol-independent [`Op`] of each request.
//! - [`document`]: the document workloads' documents (about 1 KB of JSON, a pure function of
//!   a number) and commands, shared with doc-bench (Flin against PostgreSQL).
//! - [`wire`]: the binary protocol (flin-net's client `Connection`) and
//!   RESP2 behind one [`Wire`], so the two differ only in bytes.
//! - [`driver`]: connections over threads, a closed loop of pipelined
//!   batches, latencies into an HDR histogram, the progress line.
//! - [`report`]: the summary as text or JSON.

pub mod document;
pub mod driver;
pub mod report;
pub mod wire;
pub mod workload;

pub use driver::{probe, run, RunConfig, RunResult};
pub use wire::{Protocol, Wire};
pub use workload::{KvWorkload, Op, Workload};
