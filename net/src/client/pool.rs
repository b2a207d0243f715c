//! The connection pool behind a [`super::Client`]: at most `pool_size`
//! connections, idle ones kept for reuse (last in, first out, so the warm
//! ones are used), each checked out by one call at a time.
//!
//! Reconnecting is this: a connection that failed is dropped instead of
//! returned, and an idle one the server closed (it restarted) is found by a
//! non-blocking peek before anything is sent on it and dropped too. Either
//! way the call that needs a connection opens a fresh one.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::connection::Connection;
use super::error::{Error, Result};
use super::ClientOptions;

pub(crate) struct Pool {
    /// Where the server is; tried in order for every new connection.
    addrs: Vec<SocketAddr>,
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
}

impl Pool {
    pub(crate) fn new(addrs: Vec<SocketAddr>, options: ClientOptions) -> Pool {
        Pool {
            addrs,
            options,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
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
                drop(state);
                if connection.is_reusable() {
                    return Ok(self.pooled(connection));
                }
                // Closed by the server (restart) or out of step: replace it.
                drop(connection);
                self.forget_one();
                continue;
            }
            state.open += 1;
            drop(state);
            return match self.open_connection() {
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

    /// Opens a connection to the first address that accepts one.
    pub(crate) fn open_connection(&self) -> Result<Connection> {
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
