//! [`DurableGates`]: under `--fsync always`, a reply leaves only once what it acknowledges is
//! on disk, and the event loops keep serving other connections meanwhile.
//!
//! Every reply carries a gate, a seq (`Service::take_reply_gate`): the seq its command wrote,
//! or, for a reply that wrote nothing, the log's last seq when it was answered (it may show a
//! write that is not durable yet). The loops ask for the gates they wait on; one thread,
//! `flin-durable`, flushes for all of them at once (group commit: every write made while a
//! flush runs is covered by the next) and wakes the loops when gates open.
//!
//! A failed flush poisons the engine (decision 10) and fails the gates for good: the loops
//! withdraw every reply waiting behind a gate, answer the first withdrawn request with
//! `-ERR <reason>`, and close those connections (flin-net, decision 30). The client cannot
//! know which of its pipelined writes reached the disk; one truthful error, then a closed
//! connection, is what a crashed server would have given it, and it already handles that.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use flin_engine::Engine;
use flin_net::{GateStatus, LoopsHandle, ReplyGates};

/// The gates of a server writing with `--fsync always`.
pub struct DurableGates {
    state: Arc<State>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

struct State {
    engine: Engine,
    /// Every gate up to this seq is open.
    opened_through: AtomicU64,
    failed: Mutex<Option<String>>,
    /// `failed` is set (read on every reply's gate without the lock).
    has_failed: AtomicBool,
    /// The highest seq a loop asked to open, and the loops to wake (known once one asks).
    wanted: Mutex<Wanted>,
    wanted_changed: Condvar,
    stop: AtomicBool,
}

#[derive(Default)]
struct Wanted {
    seq: u64,
    loops: Option<LoopsHandle>,
}

impl DurableGates {
    /// Starts the flusher thread for `engine`.
    pub fn start(engine: Engine) -> std::io::Result<Arc<DurableGates>> {
        let state = Arc::new(State {
            opened_through: AtomicU64::new(engine.durable_seq()),
            engine,
            failed: Mutex::new(None),
            has_failed: AtomicBool::new(false),
            wanted: Mutex::new(Wanted::default()),
            wanted_changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let worker = state.clone();
        let flusher = std::thread::Builder::new()
            .name("flin-durable".into())
            .spawn(move || worker.flush_when_asked())?;
        Ok(Arc::new(DurableGates {
            state,
            flusher: Mutex::new(Some(flusher)),
        }))
    }

    /// Stops the flusher thread (the daemon's shutdown; the engine's own close flushes last).
    pub fn stop(&self) {
        self.state.stop.store(true, Ordering::Release);
        self.state.wanted_changed.notify_all();
        if let Some(thread) = self.flusher.lock().expect("flusher lock").take() {
            let _ = thread.join();
        }
    }

    /// The gate of a reply that wrote nothing: the log's last seq, if it is not durable yet
    /// (what the reply shows may include it); `None` when everything is durable. After a
    /// failed flush, `None` too: reads keep working on a poisoned engine (decision 10), and
    /// holding them on a gate that can never open would close every connection. What they
    /// show may then include the writes whose flush failed, none of which was acknowledged.
    pub fn gate_for_read(&self) -> Option<u64> {
        let last = self.state.engine.last_seq();
        let open = self.state.opened_through.load(Ordering::Acquire);
        (last > open && !self.state.has_failed.load(Ordering::Acquire)).then_some(last)
    }
}

impl Drop for DurableGates {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ReplyGates for DurableGates {
    fn status(&self) -> GateStatus {
        GateStatus {
            opened_through: self.state.opened_through.load(Ordering::Acquire),
            failed: self.state.failed.lock().expect("gates lock").clone(),

            withdrawn: None,
        }
    }

    fn request(&self, seq: u64, loops: &LoopsHandle) {
        let mut wanted = self.state.wanted.lock().expect("gates lock");
        if wanted.loops.is_none() {
            wanted.loops = Some(loops.clone());
        }
        if seq > wanted.seq {
            wanted.seq = seq;
            self.state.wanted_changed.notify_one();
        }
    }
}

impl State {
    /// The flusher thread: waits until a loop wants a seq that is not durable yet, flushes
    /// (covering every write made so far), opens the gates and wakes the loops.
    fn flush_when_asked(&self) {
        loop {
            let (target, loops) = {
                let mut wanted = self.wanted.lock().expect("gates lock");
                loop {
                    if self.stop.load(Ordering::Acquire) {
                        return;
                    }
                    if wanted.seq > self.opened_through.load(Ordering::Acquire) {
                        break;
                    }
                    wanted = self.wanted_changed.wait(wanted).expect("gates lock");
                }
                (wanted.seq, wanted.loops.clone())
            };
            let result = self.engine.wait_durable(Some(target));
            match result {
                Ok(()) => {
                    let durable = self.engine.durable_seq().max(target);
                    self.opened_through.fetch_max(durable, Ordering::AcqRel);
                }
                Err(error) => {
                    let reason = format!("flush failed, this write may not be durable: {error}");
                    crate::log::error(
                        "durability",
                        &format!("{reason}; writes are refused from now on"),
                    );
                    *self.failed.lock().expect("gates lock") = Some(reason);
                    self.has_failed.store(true, Ordering::Release);
                }
            }
            if let Some(loops) = loops {
                loops.wake_all();
            }
            if self.has_failed.load(Ordering::Acquire) {
                return;
            }
        }
    }
}
