//! flin-replication: placeholder until its issue lands.
