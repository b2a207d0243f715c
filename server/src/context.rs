//! What a command runs against: [`Shared`] (the engine, the options, counters and the client
//! registry, one per process), [`Session`] (one per connection), and [`Call`], which joins them
//! with the one write path every mutating command goes through.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use flin_engine::{Engine, Namespace, Txn, Value};

use crate::store::{Reader, Store};
use flin_net::resp::RespVersion;

use crate::config::Options;
use crate::frame::Frame;
use crate::kv::{self, KvRead, KvScan, KvWrite};

/// A command's result: `Ok` is the reply, `Err` an error reply. `?` turns engine errors and
/// argument errors into the latter.
pub type Outcome = Result<Frame, Frame>;

/// All key-value data lives in this namespace.
pub const KV: Namespace = Namespace::Kv;

impl From<flin_engine::Error> for Frame {
    fn from(error: flin_engine::Error) -> Frame {
        Frame::error(format!("ERR {error}"))
    }
}

/// Process-wide counters for INFO and the admin port (commands are counted by the
/// [`crate::recorder::Recorder`], sharded, since every command adds to them).
#[derive(Default)]
pub struct Counters {
    pub connections_received: AtomicU64,
    pub connected_clients: AtomicU64,
}

/// What CLIENT LIST shows of a connection. Updated only when it changes (name, library, RESP
/// version), so the registry's lock is not taken on every command.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub peer: SocketAddr,
    pub name: String,
    pub lib_name: String,
    pub lib_version: String,
    pub resp: u8,
    pub connected_at: Instant,
}

/// Buckets of [`TouchStamps`]: enough that two keys rarely share one.
const TOUCH_BUCKETS: usize = 1024;

/// What WATCH compares besides a key's engine version, for the one write that leaves no
/// record: a SET (or EXEC'd SET) with an expiry already past, on a missing key, writes nothing
/// (the key would be gone at once), yet Redis counts it as a modification and aborts an EXEC
/// watching the key. Such a write bumps its key's bucket here. Keys share buckets by hash, so
/// another key's such write can abort an EXEC too: rare, and an aborted EXEC is retried.
pub struct TouchStamps {
    buckets: Box<[AtomicU64]>,
}

impl TouchStamps {
    pub(crate) fn new() -> TouchStamps {
        TouchStamps {
            buckets: (0..TOUCH_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn bucket(&self, key: &[u8]) -> &AtomicU64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        &self.buckets[hasher.finish() as usize % TOUCH_BUCKETS]
    }

    /// The key's stamp, for WATCH to remember and EXEC to compare.
    pub fn get(&self, key: &[u8]) -> u64 {
        self.bucket(key).load(Ordering::Acquire)
    }

    /// Marks a write to `key` that left no record.
    pub fn touch(&self, key: &[u8]) {
        self.bucket(key).fetch_add(1, Ordering::AcqRel);
    }
}

/// State shared by every connection.
pub struct Shared {
    /// The engine, behind the one write path and a read-only view.
    pub store: Store,
    /// Under `--fsync always` with a data directory: what holds replies until their writes
    /// are durable.
    pub gates: Option<std::sync::Arc<crate::gates::DurableGates>>,
    pub options: Options,
    pub counters: Counters,
    /// Commands by name and result, latency per family (the admin port's figures).
    pub recorder: crate::recorder::Recorder,
    /// Bytes the event loops read and wrote (given to flin-net's loops by the daemon).
    pub io: Arc<flin_net::IoCounters>,
    /// Writes that left no record, for WATCH.
    pub touches: TouchStamps,
    /// Open connections by id (CLIENT LIST).
    pub clients: Mutex<BTreeMap<u64, ClientInfo>>,
    pub started: Instant,
    /// Mixed into RANDOMKEY's seed so consecutive calls pick different spots.
    random_counter: AtomicU64,
    /// The queue model, loaded from the engine's Queue namespace.
    pub queues: crate::queue::Queues,
    /// The stream model: the engine's observer of the Stream namespace ([`open_engine`]).
    pub streams: Arc<crate::stream::Streams>,
    /// The document model: its catalog is the engine's observer of the Document namespace.
    pub docs: crate::doc::collection::Collections,
}

/// The models that are the engine's observers of their namespaces ([`open_engine`]).
pub struct Observers {
    pub streams: Arc<crate::stream::Streams>,
    pub documents: Arc<crate::doc::index::Indexes>,
}

/// Opens the engine with the models' observers registered (streams, the documents'
/// catalog), as every engine a server runs on must be.
pub fn open_engine(config: flin_engine::Config) -> Result<(Engine, Observers), String> {
    let observers = Observers {
        streams: Arc::new(crate::stream::Streams::new()),
        documents: Arc::new(crate::doc::index::Indexes::default()),
    };
    let config = config
        .observe(crate::stream::NS, observers.streams.clone())
        .observe(crate::doc::collection::NS, observers.documents.clone());
    let engine = Engine::open(config).map_err(|e| format!("cannot open the engine: {e}"))?;
    Ok((engine, observers))
}

impl Shared {
    /// The shared state over `engine` (opened by [`open_engine`], which gives the
    /// observers), with the queue model loaded from it and the document model's interrupted
    /// work (index builds, drops) finished.
    pub fn open(engine: Engine, observers: Observers, options: Options) -> Result<Shared, String> {
        let store = Store::new(engine);
        let queues = crate::queue::Queues::load(&store)
            .map_err(|e| format!("cannot load the queues: {e}"))?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(40);
        let docs = crate::doc::collection::Collections::new(seed, observers.documents);
        if options.cluster.is_none() {
            // A cluster node writes only as the leader, through the log (not yet at open).
            docs.finish_pending(&store)
                .map_err(|e| format!("cannot finish the documents' index builds and drops: {e}"))?;
        }
        Ok(Shared {
            store,
            queues,
            streams: observers.streams,
            docs,
            gates: None,
            options,
            counters: Counters::default(),
            recorder: crate::recorder::Recorder::new(crate::cmd::count()),
            io: Arc::new(flin_net::IoCounters::new()),
            touches: TouchStamps::new(),
            clients: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
            random_counter: AtomicU64::new(0),
        })
    }

    /// [`Shared::open`] on a fresh engine of `config` (tests).
    pub fn new(config: flin_engine::Config, options: Options) -> Shared {
        let (engine, observers) = open_engine(config).expect("engine opens");
        Shared::open(engine, observers, options).expect("queues load")
    }

    /// The engine's clock (tests inject a manual one).
    pub fn now_ms(&self) -> u64 {
        self.store.reader().now_ms()
    }

    /// A fresh pseudo-random number (not for secrets).
    pub fn next_random(&self) -> u64 {
        let counter = self.random_counter.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
        // splitmix64 of the counter and the clock.
        let mut z = counter
            .wrapping_add(nanos)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Applies `change` to the registry entry of connection `id`.
    pub fn update_client(&self, id: u64, change: impl FnOnce(&mut ClientInfo)) {
        if let Some(info) = self
            .clients
            .lock()
            .expect("client registry lock")
            .get_mut(&id)
        {
            change(info);
        }
    }
}

/// A MULTI in progress.
#[derive(Default, Debug)]
pub struct MultiState {
    /// Commands queued for EXEC, each with its arguments.
    pub queued: Vec<Vec<Vec<u8>>>,
    /// A command was refused while queuing: EXEC must answer EXECABORT.
    pub aborted: bool,
    /// Memory the queue holds: every argument's bytes plus its `Vec` header, and each
    /// command's argument vector (checked against `MULTI_QUEUED_BYTES_MAX`).
    pub queued_bytes: usize,
}

/// Limit on commands queued in one MULTI, so a client cannot grow the server without bound.
pub const MULTI_QUEUED_MAX: usize = 1 << 20;

/// Limit on the memory one MULTI's queue holds (1 GiB, the size of the largest request): the
/// count limit alone let a client queue a million commands of 512 MiB each.
pub const MULTI_QUEUED_BYTES_MAX: usize = 1 << 30;

/// A WATCHed key: its engine version when watched (`None`: absent) and its touch stamp.
#[derive(Debug)]
pub struct Watched {
    pub key: Vec<u8>,
    pub version: Option<u64>,
    pub touches: u64,
    /// A document (DOC.WATCH): `key` is the `_id`'s key in this collection.
    pub document: Option<Vec<u8>>,
}

/// One connection's state.
pub struct Session {
    pub id: u64,
    pub peer: SocketAddr,
    pub resp: RespVersion,
    pub authenticated: bool,
    pub name: Option<String>,
    pub multi: Option<MultiState>,
    /// WATCHed keys, each with what EXEC compares.
    pub watched: Vec<Watched>,
    /// The seq the reply just written must wait for (the highest this connection's last
    /// command wrote): taken by the event loop as the reply's gate (`Service::take_reply_gate`).
    pub reply_gate: Option<u64>,
    /// Queue state: the mailbox deliveries arrive in, a parked QUEUE.BPOP.
    pub queue: crate::queue::session::QueueSession,
    /// A parked long poll (STREAM.FETCH or STREAM.CONSUME with BLOCK).
    pub stream: crate::stream::commands::StreamSession,
    /// A parked WAIT.
    pub waiting: Option<crate::cmd::wait::Waiting>,
    /// READONLY: on a cluster's follower, reads are served from its own (possibly stale)
    /// state instead of redirected.
    pub readonly: bool,
    /// The family of the command just dispatched, which the service records its latency
    /// under once the reply is encoded.
    pub family: crate::recorder::Family,
}

impl Session {
    pub fn new(id: u64, peer: SocketAddr, authenticated: bool) -> Session {
        Session {
            id,
            peer,
            resp: RespVersion::Resp2,
            authenticated,
            name: None,
            multi: None,
            watched: Vec::new(),
            reply_gate: None,
            queue: crate::queue::session::QueueSession::detached(),
            stream: crate::stream::commands::StreamSession::default(),
            waiting: None,
            readonly: false,
            family: crate::recorder::Family::Server,
        }
    }

    /// The reply being written acknowledges the write with this seq: it waits for it.
    pub fn note_write(&mut self, seq: Option<u64>) {
        if let Some(seq) = seq {
            self.reply_gate = Some(self.reply_gate.map_or(seq, |old| old.max(seq)));
        }
    }
}

/// One command's view: the shared state, its session, and, inside EXEC, the transaction that
/// every queued command shares.
pub struct Call<'a, 't> {
    pub shared: &'a Shared,
    pub session: &'a mut Session,
    txn: Option<&'a mut Txn<'t>>,
    /// Inside EXEC: every key this transaction has put, because FLUSHALL must delete them too
    /// and the engine's scan sees only committed keys.
    written_in_transaction: Option<&'a mut Vec<Vec<u8>>>,
    /// Inside EXEC: the queue model's part of the transaction (its lock, once a queue command
    /// took it, and what to undo or dispatch at the commit).
    queue: Option<&'a mut crate::queue::InTransaction<'t>>,
}

/// The transaction a command's `decide` step writes through: the engine's [`Txn`] restricted
/// to the key-value namespace, remembering put keys when it is EXEC's shared transaction.
pub struct KvTxn<'a, 't> {
    txn: &'a mut Txn<'t>,
    written: Option<&'a mut Vec<Vec<u8>>>,
    touches: &'a TouchStamps,
}

impl<'a, 't> KvTxn<'a, 't> {
    /// The key-value view of `txn`; `written` collects the keys it puts (EXEC's shared
    /// transaction, for FLUSHALL).
    pub(crate) fn new(
        txn: &'a mut Txn<'t>,
        written: Option<&'a mut Vec<Vec<u8>>>,
        touches: &'a TouchStamps,
    ) -> KvTxn<'a, 't> {
        KvTxn {
            txn,
            written,
            touches,
        }
    }
}

impl KvRead for KvTxn<'_, '_> {
    fn now_ms(&self) -> u64 {
        self.txn.now_ms()
    }

    fn get(&self, key: &[u8]) -> kv::Result<Option<Value>> {
        Ok(self.txn.get(KV, key)?)
    }

    fn contains(&self, key: &[u8]) -> kv::Result<bool> {
        Ok(self.txn.contains(KV, key)?)
    }
}

impl KvWrite for KvTxn<'_, '_> {
    fn put(&mut self, key: &[u8], value: &[u8], expiry_ms: u64) -> kv::Result<()> {
        self.txn.put(KV, key, value, expiry_ms)?;
        if let Some(written) = self.written.as_deref_mut() {
            written.push(key.to_vec());
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> kv::Result<bool> {
        Ok(self.txn.delete(KV, key)?)
    }

    /// Runs under the writer lock, like EXEC's comparison of the stamps.
    fn touch(&mut self, key: &[u8]) {
        self.touches.touch(key);
    }
}

/// Committed key-value state, read without a transaction, at the engine clock's time.
impl KvRead for Reader<'_> {
    fn now_ms(&self) -> u64 {
        Reader::now_ms(self)
    }

    fn get(&self, key: &[u8]) -> kv::Result<Option<Value>> {
        Ok(Reader::get(self, KV, key)?)
    }

    fn contains(&self, key: &[u8]) -> kv::Result<bool> {
        Ok(Reader::contains(self, KV, key)?)
    }

    fn read_with<R>(
        &self,
        key: &[u8],
        read: impl FnOnce(&[u8], u64) -> R,
    ) -> kv::Result<Option<R>> {
        Ok(self.get_with(KV, key, |found| read(found.value, found.expiry_ms))?)
    }

    /// One `Engine::get_many_with` call overlaps the lookups' memory accesses.
    fn get_many(&self, keys: &[&[u8]]) -> kv::Result<Vec<Option<Vec<u8>>>> {
        let mut values = Vec::with_capacity(keys.len());
        self.get_many_with(KV, keys, |_, found| {
            values.push(found.map(|found| found.value.to_vec()))
        })?;
        Ok(values)
    }

    fn expiry_of(&self, key: &[u8]) -> kv::Result<Option<u64>> {
        Ok(Reader::expiry_of(self, KV, key)?)
    }
}

impl KvScan for Reader<'_> {
    fn scan_page(&self, cursor: u64, count: usize) -> kv::Result<(u64, Vec<Vec<u8>>)> {
        Ok(self.scan(KV, cursor, count)?)
    }

    fn random_key(&self, seed: u64) -> kv::Result<Option<Vec<u8>>> {
        Ok(Reader::random_key(self, KV, seed)?)
    }
}

impl<'a, 't> Call<'a, 't> {
    /// A command run on its own: each `write` is its own engine transaction.
    pub fn standalone(shared: &'a Shared, session: &'a mut Session) -> Self {
        Call {
            shared,
            session,
            txn: None,
            written_in_transaction: None,
            queue: None,
        }
    }

    /// A command run inside EXEC: reads see, and writes join, `txn`.
    pub fn in_transaction(
        shared: &'a Shared,
        session: &'a mut Session,
        txn: &'a mut Txn<'t>,
        written: &'a mut Vec<Vec<u8>>,
        queue: &'a mut crate::queue::InTransaction<'t>,
    ) -> Self {
        Call {
            shared,
            session,
            txn: Some(txn),
            written_in_transaction: Some(written),
            queue: Some(queue),
        }
    }

    /// Where a queue command runs: inside EXEC, in EXEC's transaction with the queue model's
    /// part of it; otherwise on its own.
    pub fn queue_scope(&mut self) -> crate::queue::Scope<'_, 't> {
        match (self.txn.as_deref_mut(), self.queue.as_deref_mut()) {
            (Some(txn), Some(part)) => crate::queue::Scope::Exec(txn, part),
            _ => crate::queue::Scope::Own(&self.shared.store),
        }
    }

    /// Keys put earlier in this EXEC (empty outside EXEC).
    pub fn keys_written_in_transaction(&self) -> Vec<Vec<u8>> {
        self.written_in_transaction
            .as_deref()
            .cloned()
            .unwrap_or_default()
    }

    pub fn is_in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    /// Inside EXEC, the transaction (its reads see the writes queued before).
    pub fn transaction(&self) -> Option<&Txn<'t>> {
        self.txn.as_deref()
    }

    /// How a document command writes: `decide` queues its writes in a transaction, EXEC's
    /// (joining every other queued command's writes in one entry) or its own, committed
    /// through the one write path; the reply waits for that entry. A refusal writes nothing
    /// (`decide` must not queue anything before it refuses).
    pub fn model_write<R>(
        &mut self,
        decide: impl FnOnce(&mut Txn<'_>) -> Result<R, Frame>,
    ) -> Result<R, Frame> {
        if let Some(txn) = self.txn.as_deref_mut() {
            return decide(txn);
        }
        let written = self.shared.store.write(decide)?;
        self.session.note_write(written.seq);
        Ok(written.reply)
    }

    /// The engine's reads (commands write only through `write`).
    pub fn read(&self) -> Reader<'a> {
        self.shared.store.reader()
    }

    /// How every mutating key-value command writes: `decide` reads and queues its writes
    /// (through the key-value view of the transaction) and they commit through the one write
    /// path (`Store::write`) as one log entry, or, inside EXEC, join EXEC's transaction. If
    /// `decide` refuses, nothing is written and the refusal is the reply.
    pub fn write<R>(
        &mut self,
        decide: impl FnOnce(&mut KvTxn<'_, '_>) -> kv::Result<R>,
    ) -> Result<R, Frame> {
        let touches = &self.shared.touches;
        if let Some(txn) = self.txn.as_deref_mut() {
            let written = self.written_in_transaction.as_deref_mut();
            return Ok(decide(&mut KvTxn::new(txn, written, touches))?);
        }
        let written = self
            .shared
            .store
            .write(|txn| Ok(decide(&mut KvTxn::new(txn, None, touches))?))?;
        self.session.note_write(written.seq);
        Ok(written.reply)
    }
}

/// A command's reads: inside EXEC through EXEC's transaction (so they see the writes queued
/// before them), otherwise the committed state, without the writer lock.
impl KvRead for Call<'_, '_> {
    /// The time expiries are compared with (the transaction's, inside EXEC).
    fn now_ms(&self) -> u64 {
        match &self.txn {
            Some(txn) => txn.now_ms(),
            None => self.shared.now_ms(),
        }
    }

    fn get(&self, key: &[u8]) -> kv::Result<Option<Value>> {
        match &self.txn {
            Some(txn) => Ok(txn.get(KV, key)?),
            None => KvRead::get(&self.read(), key),
        }
    }

    fn contains(&self, key: &[u8]) -> kv::Result<bool> {
        match &self.txn {
            Some(txn) => Ok(txn.contains(KV, key)?),
            None => KvRead::contains(&self.read(), key),
        }
    }

    fn read_with<R>(
        &self,
        key: &[u8],
        read: impl FnOnce(&[u8], u64) -> R,
    ) -> kv::Result<Option<R>> {
        match &self.txn {
            Some(txn) => Ok(txn
                .get(KV, key)?
                .map(|found| read(&found.value, found.expiry_ms))),
            None => self.read().read_with(key, read),
        }
    }

    fn get_many(&self, keys: &[&[u8]]) -> kv::Result<Vec<Option<Vec<u8>>>> {
        match &self.txn {
            Some(txn) => keys
                .iter()
                .map(|key| Ok(txn.get(KV, key)?.map(|found| found.value)))
                .collect(),
            None => self.read().get_many(keys),
        }
    }

    fn expiry_of(&self, key: &[u8]) -> kv::Result<Option<u64>> {
        match &self.txn {
            Some(txn) => Ok(txn.get(KV, key)?.map(|found| found.expiry_ms)),
            None => KvRead::expiry_of(&self.read(), key),
        }
    }
}
