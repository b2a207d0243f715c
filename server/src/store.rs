//! [`Store`]: the server's one door to the engine. Commands of every data model get a
//! [`Reader`] (reads only) and write through [`Store::write`], the one write path: a command
//! decides under the engine's writer lock, queuing its writes as a typed list of engine
//! operations (`flin_engine::WriteBatch`, inside the `Txn`), and the path commits that list as
//! one log entry and returns its seq, which the connection's reply then waits on (reply
//! gates). The list, not code, is what crosses to the engine: the cluster's replication sits
//! in `commit`, between "decided" and "applied".

use std::sync::{Arc, OnceLock};

use flin_engine::{Engine, LiveRecord, Namespace, Stats, Txn, Value, ValueRef};

use crate::cluster::Cluster;
use crate::frame::Frame;

/// The engine, behind the one write path and a read-only view.
pub struct Store {
    engine: Engine,
    /// Set on a node of a cluster: writes are taken only on the leader, and a write's gate
    /// is its cluster token (`cluster::gates`), not its seq.
    cluster: OnceLock<Arc<Cluster>>,
}

/// A command's decision, committed: its reply and the seq of the entry it wrote (`None`:
/// it wrote nothing); in a cluster, the write's gate token instead of the seq (what the
/// reply waits on either way).
#[derive(Debug)]
pub struct Written<R> {
    pub reply: R,
    pub seq: Option<u64>,
}

impl Store {
    pub fn new(engine: Engine) -> Store {
        Store {
            engine,
            cluster: OnceLock::new(),
        }
    }

    /// Makes this a cluster node's store (once, before it serves).
    pub fn attach_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// Whether writes are taken here now: always on a lone node; on the leader in a cluster.
    pub fn accepts_writes(&self) -> bool {
        self.cluster.get().is_none_or(|cluster| cluster.writable())
    }

    /// Reads, for any command.
    pub fn reader(&self) -> Reader<'_> {
        Reader {
            engine: &self.engine,
        }
    }

    /// THE write path: `decide` reads the current state and queues writes in the transaction
    /// (its reads see its own writes; the writer lock is held, so read-modify-write is atomic
    /// across connections and loops); if it answers `Ok`, the queued writes commit as one log
    /// entry. An error reply writes nothing.
    pub fn write<R>(
        &self,
        decide: impl FnOnce(&mut Txn<'_>) -> Result<R, Frame>,
    ) -> Result<Written<R>, Frame> {
        if let Some(cluster) = self.cluster.get().filter(|cluster| !cluster.writable()) {
            return Err(cluster.redirect());
        }
        let mut txn = self.engine.begin();
        let reply = decide(&mut txn)?;
        let seq = self.commit(txn)?;
        Ok(Written { reply, seq })
    }

    /// A transaction several commands decide in (EXEC), committed with [`Store::commit`].
    pub fn begin(&self) -> Txn<'_> {
        self.engine.begin()
    }

    /// Takes keys out of the index without writing a record (`Engine::forget`): for a model
    /// whose own record already says they are dead (a queue's floor), so compaction can drop
    /// them. The model forgets them again after every restart. A replicated engine forgets
    /// nothing (its undo log could not bring a key back): this answers 0, and the dead
    /// records stay indexed, skipped by the model, and kept by compaction (a cluster node's
    /// known cost, until the queue model writes deletes instead).
    pub fn forget<K: AsRef<[u8]>>(
        &self,
        namespace: Namespace,
        keys: &[K],
    ) -> flin_engine::Result<usize> {
        if self.engine.is_replicated() {
            return Ok(0);
        }
        self.engine.forget(namespace, keys)
    }

    /// Commits what a transaction queued, as one entry (every model's writes of an EXEC
    /// together).
    /// In a cluster the returned value is the write's gate token (see `Written`), and only
    /// the leader commits: the check is made under the writer lock the transaction holds,
    /// and the token registered before another write can commit, so tokens follow seqs.
    pub fn commit(&self, txn: Txn<'_>) -> Result<Option<u64>, Frame> {
        let Some(cluster) = self.cluster.get() else {
            return Ok(txn.commit()?);
        };
        if txn.pending() == 0 {
            return Ok(None);
        }
        if !cluster.writable() {
            return Err(cluster.redirect());
        }
        Ok(gated(cluster, || txn.commit())?)
    }

    /// Commits what `txn` queued so far as one entry, then takes `forget` out of the index,
    /// and keeps the writer lock (`Txn::commit_part`): the queue model applies its changes
    /// and hands out deliveries before another writer decides (decision 70).
    /// In a cluster, as [`Store::commit`]: only the leader commits, and the returned value is
    /// the entry's gate token (registered while the writer lock is still held, so tokens
    /// follow seqs).
    pub fn commit_part<K: AsRef<[u8]>>(
        &self,
        txn: &mut Txn<'_>,
        namespace: Namespace,
        forget: &[K],
    ) -> flin_engine::Result<Option<u64>> {
        let Some(cluster) = self.cluster.get() else {
            return txn.commit_part(namespace, forget);
        };
        if txn.pending() == 0 {
            return txn.commit_part(namespace, forget);
        }
        if !cluster.writable() {
            let Frame::Error(redirect) = cluster.redirect() else {
                unreachable!("a redirect is an error frame");
            };
            return Err(flin_engine::Error::Invalid(format!(
                "this node stopped leading before the write committed ({redirect})"
            )));
        }
        gated(cluster, || txn.commit_part(namespace, forget))
    }
}

/// A leader's commit in a cluster: runs `commit` (the engine's, under the writer lock) with
/// the gate registry held, so that tokens follow seqs even when `commit` releases the writer
/// lock, registers the committed seq's gate token, and wakes the raft thread to propose it.
fn gated(
    cluster: &Cluster,
    commit: impl FnOnce() -> flin_engine::Result<Option<u64>>,
) -> flin_engine::Result<Option<u64>> {
    let mut registry = cluster.gates.registry();
    let token = commit()?.map(|seq| registry.register(&cluster.gates, seq));
    drop(registry);
    if token.is_some() {
        cluster.notify_appended();
    }
    Ok(token)
}

/// The engine's reads, and nothing that writes.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    engine: &'a Engine,
}

impl<'a> Reader<'a> {
    pub fn get(&self, namespace: Namespace, key: &[u8]) -> flin_engine::Result<Option<Value>> {
        self.engine.get(namespace, key)
    }

    pub fn get_with<R>(
        &self,
        namespace: Namespace,
        key: &[u8],
        read: impl FnOnce(ValueRef<'_>) -> R,
    ) -> flin_engine::Result<Option<R>> {
        self.engine.get_with(namespace, key, read)
    }

    pub fn get_many_with<K: AsRef<[u8]>>(
        &self,
        namespace: Namespace,
        keys: &[K],
        read: impl FnMut(usize, Option<ValueRef<'_>>),
    ) -> flin_engine::Result<()> {
        self.engine.get_many_with(namespace, keys, read)
    }

    /// Starts bringing `key`'s index slot into cache for a read soon after (`Engine::prefetch`).
    pub fn prefetch(&self, namespace: Namespace, key: &[u8]) {
        self.engine.prefetch(namespace, key)
    }

    pub fn contains(&self, namespace: Namespace, key: &[u8]) -> flin_engine::Result<bool> {
        self.engine.contains(namespace, key)
    }

    pub fn expiry_of(&self, namespace: Namespace, key: &[u8]) -> flin_engine::Result<Option<u64>> {
        self.engine.expiry_of(namespace, key)
    }

    pub fn version(&self, namespace: Namespace, key: &[u8]) -> flin_engine::Result<Option<u64>> {
        self.engine.version(namespace, key)
    }

    pub fn scan(
        &self,
        namespace: Namespace,
        cursor: u64,
        count: usize,
    ) -> flin_engine::Result<(u64, Vec<Vec<u8>>)> {
        self.engine.scan(namespace, cursor, count)
    }

    pub fn for_each(
        &self,
        namespace: Namespace,
        prefix: &[u8],
        visit: impl FnMut(LiveRecord<'_>),
    ) -> flin_engine::Result<u64> {
        self.engine.for_each(namespace, prefix, visit)
    }

    /// A namespace's log-only records under a prefix from a seq (`Engine::read_appends`).
    pub fn read_appends(
        &self,
        namespace: Namespace,
        prefix: &[u8],
        from_seq: u64,
        visit: impl FnMut(u64, &[u8], &[u8]) -> bool,
    ) -> flin_engine::Result<()> {
        self.engine.read_appends(namespace, prefix, from_seq, visit)
    }

    /// Calls `wake` after every committed write under `prefix` (`Engine::wake_on`).
    pub fn wake_on(
        &self,
        namespace: Namespace,
        prefix: &[u8],
        wake: flin_engine::Wake,
    ) -> flin_engine::WaitHandle {
        self.engine.wake_on(namespace, prefix, wake)
    }

    pub fn random_key(
        &self,
        namespace: Namespace,
        seed: u64,
    ) -> flin_engine::Result<Option<Vec<u8>>> {
        self.engine.random_key(namespace, seed)
    }

    pub fn len(&self, namespace: Namespace) -> u64 {
        self.engine.len(namespace)
    }

    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }

    pub fn poisoned(&self) -> Option<String> {
        self.engine.poisoned()
    }

    /// The highest seq written: a reply that showed what it wrote waits until it is durable.
    pub fn last_seq(&self) -> u64 {
        self.engine.last_seq()
    }

    /// Drops expired keys from the index now. Writes nothing (expiry costs no record), so a
    /// reader may ask: FLUSHALL does, so that DBSIZE reads 0 after it.
    pub fn reclaim_expired(&self) -> usize {
        self.engine.reclaim_expired()
    }

    /// The engine's clock (tests inject a manual one).
    pub fn now_ms(&self) -> u64 {
        self.engine.config().clock.now_ms()
    }

    /// The engine's clock itself, for what reads it later.
    pub fn clock(&self) -> std::sync::Arc<dyn flin_engine::Clock> {
        self.engine.config().clock.clone()
    }
}
