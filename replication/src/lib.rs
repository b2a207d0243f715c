//! flin-replication: placeholder until its issue lands.
pub mod linearizability;
