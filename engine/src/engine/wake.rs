//! Wake-ups: a committed write wakes whoever waits for data under a key prefix of its
//! namespace (a blocking pop, a long-poll fetch, a push consumer), on whatever thread they
//! wait. The engine only calls the registered function; what it does (write to an event loop's
//! waker, signal a condvar) is the waiter's business.
//!
//! To not miss a write, register first, then look for data, then wait: a write committed after
//! the registration wakes it, one before is found by the look.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::Op;
use crate::format::Namespace;

/// What a wake-up calls: on the writing thread, with the engine's writer lock held, so it must
/// be quick and must not block or write to the engine.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// The registered waiters.
#[derive(Default)]
pub(crate) struct Waiters {
    /// Registrations held: a write checks nothing else when there are none.
    count: AtomicUsize,
    table: Mutex<WaitTable>,
}

/// The waiters of one (namespace tag, prefix), each with its registration id.
type PrefixWaiters = Vec<(u64, Wake)>;

#[derive(Default)]
struct WaitTable {
    next_id: u64,
    /// Waiters by (namespace tag, prefix).
    by_prefix: HashMap<(u8, Vec<u8>), PrefixWaiters>,
    /// Per namespace tag, the prefix lengths registered and how many waiters use each: a key
    /// is looked up once per length.
    lengths: [BTreeMap<usize, usize>; 8],
}

/// A registration: dropping it unregisters.
pub struct WaitHandle {
    waiters: Arc<Waiters>,
    id: u64,
    tag: u8,
    prefix: Vec<u8>,
}

impl Waiters {
    pub fn register(
        waiters: &Arc<Waiters>,
        namespace: Namespace,
        prefix: &[u8],
        wake: Wake,
    ) -> WaitHandle {
        let tag = namespace.tag();
        let mut table = waiters.table.lock().expect("waiters lock");
        let id = table.next_id;
        table.next_id += 1;
        table
            .by_prefix
            .entry((tag, prefix.to_vec()))
            .or_default()
            .push((id, wake));
        *table.lengths[tag as usize].entry(prefix.len()).or_default() += 1;
        waiters.count.fetch_add(1, Ordering::Release);
        WaitHandle {
            waiters: waiters.clone(),
            id,
            tag,
            prefix: prefix.to_vec(),
        }
    }

    /// Whether anyone waits at all.
    #[inline]
    pub fn any(&self) -> bool {
        self.count.load(Ordering::Acquire) != 0
    }

    /// Wakes every waiter whose prefix some op's key starts with (each once).
    #[inline]
    pub fn wake_for(&self, ops: &[Op<'_>]) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        self.wake_matching(ops);
    }

    fn wake_matching(&self, ops: &[Op<'_>]) {
        let mut woken: Vec<(u64, Wake)> = Vec::new();
        {
            let table = self.table.lock().expect("waiters lock");
            for op in ops {
                let tag = op.namespace.tag();
                for &length in table.lengths[tag as usize].keys() {
                    if length > op.key.len() {
                        break;
                    }
                    let Some(list) = table.by_prefix.get(&(tag, op.key[..length].to_vec())) else {
                        continue;
                    };
                    for (id, wake) in list {
                        if !woken.iter().any(|(seen, _)| seen == id) {
                            woken.push((*id, wake.clone()));
                        }
                    }
                }
            }
        }
        for (_, wake) in woken {
            wake();
        }
    }
}

impl Drop for WaitHandle {
    fn drop(&mut self) {
        let mut table = self.waiters.table.lock().expect("waiters lock");
        let key = (self.tag, std::mem::take(&mut self.prefix));
        if let Some(list) = table.by_prefix.get_mut(&key) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                table.by_prefix.remove(&key);
            }
        }
        let lengths = &mut table.lengths[self.tag as usize];
        if let Some(count) = lengths.get_mut(&key.1.len()) {
            *count -= 1;
            if *count == 0 {
                lengths.remove(&key.1.len());
            }
        }
        self.waiters.count.fetch_sub(1, Ordering::Release);
    }
}

impl std::fmt::Debug for WaitHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitHandle")
            .field("namespace_tag", &self.tag)
            .field("prefix", &self.prefix)
            .finish()
    }
}
