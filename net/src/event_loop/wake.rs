//! Waking a loop from other threads: each loop has a [`LoopSignal`] (its mio `Waker` and a
//! mailbox of connections to wake), a [`ConnectionHandle`] names one connection of one loop,
//! and a [`LoopsHandle`] reaches every loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use mio::Waker;

/// One loop's doorbell: its poll's waker (mio allows one per poll, so shutdown, wakes and
/// nudges share it) and the connections woken since the loop last looked.
pub(super) struct LoopSignal {
    waker: Waker,
    /// `(slot, connection id)` of each connection to call `Service::on_wake` for. At most one
    /// entry per connection is in it at a time (see `ConnectionHandle::wake`), so it is
    /// bounded by the loop's connections.
    mailbox: Mutex<Vec<(usize, u64)>>,
}

impl LoopSignal {
    pub(super) fn new(waker: Waker) -> LoopSignal {
        LoopSignal {
            waker,
            mailbox: Mutex::new(Vec::new()),
        }
    }

    /// Makes the loop's `poll` return. A failed wake is covered by the loop's periodic
    /// iteration (at most `SHUTDOWN_POLL_INTERVAL` later).
    pub(super) fn nudge(&self) {
        let _ = self.waker.wake();
    }

    /// Queues a connection and wakes the loop, unless mail was already waiting: then a wake
    /// is already on its way and the loop takes this entry with the others.
    fn post(&self, slot: usize, id: u64) {
        let mut mailbox = self.mailbox.lock().unwrap_or_else(PoisonError::into_inner);
        let was_empty = mailbox.is_empty();
        mailbox.push((slot, id));
        drop(mailbox);
        if was_empty {
            self.nudge();
        }
    }

    /// Moves every queued entry into `into` (which the loop keeps for its allocation).
    pub(super) fn take_mail(&self, into: &mut Vec<(usize, u64)>) {
        let mut mailbox = self.mailbox.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut *mailbox, into);
    }
}

/// Names one connection, for waking it from any thread: `Service::new_session` receives it.
/// Cloning is one reference-count increment. Cheap to keep in a waiter list.
///
/// A handle outlives its connection harmlessly: the loop checks the connection id (unique over
/// the process) before calling the service, so a handle of a closed connection never wakes
/// the connection that later takes its slot.
#[derive(Clone)]
pub struct ConnectionHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    signal: Arc<LoopSignal>,
    loop_index: usize,
    slot: usize,
    id: u64,
    /// An entry for this connection is in the mailbox and not yet taken. Set by `wake`,
    /// cleared by the loop just before it calls `on_wake`, so a wake during `on_wake` queues
    /// the connection again and is not lost, and many wakes before the loop runs cost one
    /// mailbox entry and one `on_wake`.
    queued: AtomicBool,
}

impl ConnectionHandle {
    pub(super) fn new(
        signal: Arc<LoopSignal>,
        loop_index: usize,
        slot: usize,
        id: u64,
    ) -> ConnectionHandle {
        ConnectionHandle {
            inner: Arc::new(HandleInner {
                signal,
                loop_index,
                slot,
                id,
                queued: AtomicBool::new(false),
            }),
        }
    }

    /// Asks the connection's loop to call `Service::on_wake` for it, from any thread. Wakes
    /// coalesce: several before the loop runs give one `on_wake`, after the last of them. The
    /// service keeps what `on_wake` should do (a value for a parked request, messages to
    /// push) in its own state, written before this call. Does nothing once the connection is
    /// closed.
    pub fn wake(&self) {
        // SeqCst pairs with the loop's clear: whichever of "service stores its state, then
        // wakes" and "loop clears, then calls on_wake" comes second sees the other's effect.
        if !self.inner.queued.swap(true, Ordering::SeqCst) {
            self.inner.signal.post(self.inner.slot, self.inner.id);
        }
    }

    /// The connection's id, unique over the process (what `CLIENT LIST` shows).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The index of the event loop (thread) that owns the connection.
    pub fn loop_index(&self) -> usize {
        self.inner.loop_index
    }

    /// Called by the loop right before `on_wake`.
    pub(super) fn clear_queued(&self) {
        self.inner.queued.store(false, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("id", &self.inner.id)
            .field("loop_index", &self.inner.loop_index)
            .field("slot", &self.inner.slot)
            .finish()
    }
}

/// Reaches every loop of a server, from any thread: [`LoopsHandle::wake_all`] makes each one
/// run an iteration now, which re-reads the clock (parked deadlines) and the reply gates'
/// state. The reply-gate authority calls it when gates open; tests call it after moving a
/// manual clock.
#[derive(Clone)]
pub struct LoopsHandle {
    signals: Arc<[Arc<LoopSignal>]>,
}

impl LoopsHandle {
    pub(super) fn new(signals: Vec<Arc<LoopSignal>>) -> LoopsHandle {
        LoopsHandle {
            signals: signals.into(),
        }
    }

    /// Wakes every loop.
    pub fn wake_all(&self) {
        for signal in self.signals.iter() {
            signal.nudge();
        }
    }

    /// Loops of the server.
    pub fn loop_count(&self) -> usize {
        self.signals.len()
    }
}

impl std::fmt::Debug for LoopsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopsHandle")
            .field("loops", &self.signals.len())
            .finish()
    }
}
