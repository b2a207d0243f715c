//! flin-net: placeholder until its issue lands.
