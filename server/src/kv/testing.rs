//! The key-value core on an in-memory engine, for its unit tests: no dispatcher, no session,
//! no frames.

use std::sync::Arc;

use flin_engine::{Config, Engine, ManualClock};

use super::core::Result;
use crate::context::{KvTxn, TouchStamps};
use crate::store::{Reader, Store};

pub use crate::cmd::test_support::START_MS;

/// An in-memory engine, its manual clock and the WATCH stamps writes bump.
pub struct Kv {
    pub store: Store,
    pub clock: Arc<ManualClock>,
    touches: TouchStamps,
}

impl Kv {
    pub fn new() -> Kv {
        let clock = Arc::new(ManualClock::new(START_MS));
        let engine = Engine::open(
            Config::memory()
                .background_compaction(false)
                .clock(clock.clone()),
        )
        .expect("memory engine");
        Kv {
            store: Store::new(engine),
            clock,
            touches: TouchStamps::new(),
        }
    }

    /// Runs `decide` in a transaction and drops it uncommitted: what the test asserts is what
    /// the transaction reads back, its own writes included.
    pub fn write<R>(&self, decide: impl FnOnce(&mut KvTxn<'_, '_>) -> Result<R>) -> R {
        let mut txn = self.store.begin();
        let mut kv = KvTxn::new(&mut txn, None, &self.touches);
        decide(&mut kv).expect("the test's transaction")
    }

    /// Runs `decide` in a transaction and commits what it queued.
    pub fn commit<R>(&self, decide: impl FnOnce(&mut KvTxn<'_, '_>) -> Result<R>) -> R {
        let mut txn = self.store.begin();
        let result =
            decide(&mut KvTxn::new(&mut txn, None, &self.touches)).expect("the test's transaction");
        txn.commit().expect("commit");
        result
    }

    /// The committed state, read without a transaction.
    pub fn reader(&self) -> Reader<'_> {
        self.store.reader()
    }
}
