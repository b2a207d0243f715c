//! The connection pool behind a [`super::Client`]: at most `pool_size`
//! connections, idle ones kept for reuse (last in, first out, so the warm
//! ones are used), each checked out by one call at a time.
//!
//! Reconnecting is this: a connection that failed is dropped instead of
//! returned, and an idle one the server closed (it restarted) is found by a
//! non-blocking peek before anything is sent on it and dropped too. Either
//! way the call that needs a connection opens a fresh one.
//!
//! In cluster mode (`Client::connect_cluster`) the addresses are seeds and the pool also
//! remembers the leader, as the last `MOVED` named it: new connections go there first (then
//! to the seeds, in order), and an idle connection to any other node is dropped at checkout.
//! A leader that cannot be reached is forgotten, so the next connection asks the seeds.

use std::io;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::connection::Connection;
use super::error::{Error, Result};
use super::ClientOptions;

pub(crate) struct Pool {
    /// Where the server is; tried in order for every new connection. In cluster mode, the
    /// seeds: tried after the leader.
    addrs: Vec<SocketAddr>,
    /// Cluster mode: connections follow `PoolState::leader`. False for a client of one node,
    /// whose checkout then does exactly what it did before clusters.
    cluster: bool,
    pub(crate) options: ClientOptions,
    state: Mutex<PoolState>,
    /// Signalled when a connection is returned or dropped, for callers
    /// waiting because all `pool_size` are in use.
    released: Condvar,
}

struct PoolState {
    idle: Vec<Connection>,
    /// Connections that exist: idle, checked out, or being opened.
    open: usize,
    /// Cluster mode: the leader's address, as the last redirect named it; `None` until one
    /// does, and after it could not be reached.
    leader: Option<SocketAddr>,
}

impl Pool {
    pub(crate) fn new(addrs: Vec<SocketAddr>, options: ClientOptions, cluster: bool) -> Pool {
        Pool {
            addrs,
            cluster,
            options,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
                leader: None,
            }),
            released: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().expect("client pool lock")
    }

    /// A connection for one call: an idle one that is still open, or a new
    /// one if fewer than `pool_size` exist; otherwise waits for one to be
    /// released, at most `pool_wait_timeout`.
    pub(crate) fn checkout(&self) -> Result<Pooled<'_>> {
        self.checkout_noting(None)
    }

    /// [`Pool::checkout`], adding every address a new connection is tried to to `tried`
    /// (cluster mode, for the error that ends a retry budget).
    pub(crate) fn checkout_noting(
        &self,
        mut tried: Option<&mut Vec<SocketAddr>>,
    ) -> Result<Pooled<'_>> {
        let started = Instant::now();
        let deadline = started + self.options.pool_wait_timeout;
        loop {
            let mut state = self.lock();
            while state.idle.is_empty() && state.open >= self.options.pool_size {
                let now = Instant::now();
                if now >= deadline {
                    return Err(Error::PoolExhausted {
                        size: self.options.pool_size,
                        waited: now - started,
                    });
                }
                state = self
                    .released
                    .wait_timeout(state, deadline - now)
                    .expect("client pool lock")
                    .0;
            }
            if let Some(connection) = state.idle.pop() {
                let leader = state.leader;
                drop(state);
                let routed = !self.cluster || leader.is_none_or(|addr| addr == connection.addr());
                if routed && connection.is_reusable() {
                    return Ok(self.pooled(connection));
                }
                // Closed by the server (restart), out of step, or (cluster mode) to a node
                // that is not the leader: replace it.
                drop(connection);
                self.forget_one();
                continue;
            }
            state.open += 1;
            drop(state);
            return match self.open_noting(tried.as_deref_mut()) {
                Ok(connection) => Ok(self.pooled(connection)),
                Err(error) => {
                    self.forget_one();
                    Err(error)
                }
            };
        }
    }

    /// Adds a connection opened elsewhere (by `Client::connect`) as idle.
    pub(crate) fn adopt(&self, connection: Connection) {
        let mut state = self.lock();
        state.open += 1;
        state.idle.push(connection);
    }

    /// Opens a connection to the first address that accepts one (cluster mode: the leader
    /// first).
    pub(crate) fn open_connection(&self) -> Result<Connection> {
        self.open_noting(None)
    }

    fn open_noting(&self, tried: Option<&mut Vec<SocketAddr>>) -> Result<Connection> {
        if self.cluster {
            return self.open_in_cluster(tried);
        }
        let mut last_error = None;
        for addr in &self.addrs {
            match Connection::open(*addr, &self.options) {
                Ok(connection) => return Ok(connection),
                // A refusal by the server itself (a wrong password) will not
                // change with another address.
                Err(error @ Error::Server(_)) => return Err(error),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.expect("a client has at least one address"))
    }

    /// Cluster mode: the leader if known, then every seed, in order. A leader that does not
    /// accept is forgotten. The error names every address tried and why it failed.
    fn open_in_cluster(&self, mut tried: Option<&mut Vec<SocketAddr>>) -> Result<Connection> {
        let leader = self.leader();
        let seeds = self
            .addrs
            .iter()
            .copied()
            .filter(|&addr| Some(addr) != leader);
        let mut failures = Vec::new();
        let mut kind = io::ErrorKind::Other;
        for addr in leader.into_iter().chain(seeds) {
            if let Some(tried) = tried.as_deref_mut() {
                if !tried.contains(&addr) {
                    tried.push(addr);
                }
            }
            match Connection::open(addr, &self.options) {
                Ok(connection) => return Ok(connection),
                Err(error @ Error::Server(_)) => return Err(error),
                Err(error) => {
                    if Some(addr) == leader {
                        self.forget_leader(addr);
                    }
                    if let Error::Network(error) = &error {
                        kind = error.kind();
                    }
                    failures.push(format!("{addr}: {error}"));
                }
            }
        }
        Err(Error::Network(io::Error::new(
            kind,
            format!(
                "no cluster node accepted a connection ({})",
                failures.join("; ")
            ),
        )))
    }

    /// True for a client of a cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Cluster mode: the leader, as last named by a redirect.
    pub(crate) fn leader(&self) -> Option<SocketAddr> {
        self.lock().leader
    }

    /// Cluster mode: routes new calls to `addr` (a `MOVED` named it).
    pub(crate) fn set_leader(&self, addr: SocketAddr) {
        self.lock().leader = Some(addr);
    }

    /// Cluster mode: `addr` served a data command, so it leads; recorded only if no leader is
    /// known (a `MOVED` is newer news than a seed that answered).
    pub(crate) fn learn_leader(&self, addr: SocketAddr) {
        let mut state = self.lock();
        if state.leader.is_none() {
            state.leader = Some(addr);
        }
    }

    /// Cluster mode: `addr` failed; if it is the leader we know, forget it, so the next
    /// connection asks the seeds. (Another thread may have learned a newer leader meanwhile:
    /// that one is kept.)
    pub(crate) fn forget_leader(&self, addr: SocketAddr) {
        let mut state = self.lock();
        if state.leader == Some(addr) {
            state.leader = None;
        }
    }

    fn pooled(&self, connection: Connection) -> Pooled<'_> {
        Pooled {
            pool: self,
            connection: Some(connection),
        }
    }

    fn forget_one(&self) {
        self.lock().open -= 1;
        self.released.notify_one();
    }

    fn release(&self, connection: Connection) {
        if connection.is_broken() || connection.awaiting_responses() > 0 {
            drop(connection);
            self.forget_one();
            return;
        }
        self.lock().idle.push(connection);
        self.released.notify_one();
    }

    /// Connections that exist now (idle or in use).
    pub(crate) fn open_count(&self) -> usize {
        self.lock().open
    }
}

/// A checked-out connection; dropping it returns it to the pool, or
/// discards it if it broke or still awaits responses.
pub(crate) struct Pooled<'p> {
    pool: &'p Pool,
    connection: Option<Connection>,
}

impl Deref for Pooled<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.connection.as_ref().expect("present until dropped")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.connection.as_mut().expect("present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.pool.release(connection);
        }
    }
}
