//! What a load run sends: [`Workload`], one family per data model, and the
//! protocol-independent [`Op`] each request is encoded from.
//!
//! Key-value, queues ([`QueueWorkload`]: QUEUE.PUSH and QUEUE.POP NOACK on the queue
//! [`BENCH_QUEUE`]; consumers that subscribe and ack, and end-to-end latency, are
//! `queue-bench`'s), streams ([`StreamWorkload`] on [`BENCH_TOPIC`]) and documents
//! ([`DocumentWorkload`] on [`BENCH_COLLECTION`]; the documents and commands are
//! `document.rs`'s, which doc-bench shares to run the same against PostgreSQL). Each family
//! has its [`Op`] variants and their encodings in `wire.rs`.

use std::fmt;

use super::document;

/// Bytes of every generated key: `key:` and 12 decimal digits, the shape
/// of redis-benchmark's `key:__rand_int__`, so both tools write the same
/// bytes.
pub const KEY_BYTES: usize = 16;
/// Most keys in one generated MSET or MGET.
pub const BATCH_KEYS_MAX: usize = 100_000;
/// Keys per MSET/MGET when the workload does not say (redis-benchmark's
/// MSET test uses 10).
pub const DEFAULT_BATCH_KEYS: usize = 10;
/// Most documents in one generated DOC.INSERT (about 1 KB each).
pub const DOCUMENT_BATCH_MAX: usize = 10_000;
/// GETs per 100 requests of `mixed` when it does not say.
pub const DEFAULT_GET_PERCENT: u8 = 50;

/// The queue the queue workloads push to and pop from (flin-bench declares it).
pub const BENCH_QUEUE: &[u8] = b"flin-bench";

/// The topic the stream workloads publish to (flin-bench creates it, one partition).
pub const BENCH_TOPIC: &[u8] = b"flin-bench";

/// The collection the document workloads read and update (flin-bench indexes `k` on it and
/// loads documents `0..keyspace` first).
pub const BENCH_COLLECTION: &[u8] = b"flin-bench";

/// The collection `dinsert` writes to (indexed on `k` too): its own, so inserts do not grow
/// the collection the other workloads read (and `dagg` passes over).
pub const BENCH_INSERT_COLLECTION: &[u8] = b"flin-bench-inserts";

/// One generated key.
pub type Key = [u8; KEY_BYTES];

/// A load to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Key-value commands.
    Kv(KvWorkload),
    /// Queue commands.
    Queue(QueueWorkload),
    /// Stream commands.
    Stream(StreamWorkload),
    /// Document commands.
    Document(DocumentWorkload),
}

/// Document loads, on [`BENCH_COLLECTION`]; `super::document` makes the documents (about
/// 1 KB each) and the commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentWorkload {
    /// DOC.INSERT of `count` documents in one command (`dinsert`: one, `dinsert:N`: N).
    Insert { count: usize },
    /// DOC.GET of an `_id` in the loaded range.
    Get,
    /// DOC.FIND of an equality on the indexed field `k`.
    Find,
    /// DOC.FIND of a range of `k`, SORT k 1 LIMIT 10.
    Range,
    /// DOC.UPDATE of one `_id` with `$inc` of the indexed field `k`.
    Inc,
    /// DOC.AGGREGATE: `$group` by city with `$sum`s (a pass over the whole collection).
    Aggregate,
}

impl DocumentWorkload {
    /// Whether the workload's point is the index on `k` (reading by it, or updating it), so
    /// a run without the index measures something else.
    pub fn needs_index(&self) -> bool {
        matches!(
            self,
            DocumentWorkload::Find | DocumentWorkload::Range | DocumentWorkload::Inc
        )
    }

    /// Whether the workload reads (or updates) the loaded documents `0..keyspace`.
    pub fn needs_documents(&self) -> bool {
        !matches!(self, DocumentWorkload::Insert { .. })
    }
}

/// Stream loads, on [`BENCH_TOPIC`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamWorkload {
    /// STREAM.PUBLISH of one record.
    Publish,
    /// STREAM.MPUBLISH ... VALUES of `count` records (one write).
    MPublish { count: usize },
}

/// Queue loads, on [`BENCH_QUEUE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueWorkload {
    /// QUEUE.PUSH of one message.
    Push,
    /// QUEUE.POP COUNT `count` NOACK (taken and acknowledged in one command).
    Pop { count: usize },
}

/// Key-value loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvWorkload {
    /// SET of a random key.
    Set,
    /// GET of a random key.
    Get,
    /// INCR of a random key.
    Incr,
    /// GET with probability `get_percent`/100, SET otherwise.
    Mixed { get_percent: u8 },
    /// MSET of `keys` random keys, one value each.
    MSet { keys: usize },
    /// MGET of `keys` random keys.
    MGet { keys: usize },
}

/// One request, before a protocol encodes it. Slices borrow the
/// generator's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    Set {
        key: &'a [u8],
        value: &'a [u8],
    },
    Get {
        key: &'a [u8],
    },
    Incr {
        key: &'a [u8],
    },
    MSet {
        keys: &'a [Key],
        value: &'a [u8],
    },
    MGet {
        keys: &'a [Key],
    },
    QueuePush {
        queue: &'a [u8],
        value: &'a [u8],
    },
    /// `count` as decimal digits, for the COUNT argument.
    QueuePop {
        queue: &'a [u8],
        count: &'a [u8],
    },
    StreamPublish {
        topic: &'a [u8],
        value: &'a [u8],
    },
    /// STREAM.MPUBLISH topic VALUES, then `count` copies of `value`.
    StreamMPublish {
        topic: &'a [u8],
        value: &'a [u8],
        count: usize,
    },
    /// A document command: its name (`DOC.FIND`) and its arguments, the collection first.
    Document {
        command: &'static [u8],
        args: &'a [Vec<u8>],
    },
}

impl Workload {
    /// Parses `set`, `get`, `incr`, `mixed[:GET_PERCENT]`, `mset[:KEYS]`, `mget[:KEYS]`,
    /// `qpush`, `qpop[:N]`, `spub`, `smpub[:N]`, `dinsert[:N]`, `dget`, `dfind`, `drange`,
    /// `dinc`, `dagg`.
    pub fn parse(text: &str) -> Result<Workload, String> {
        let (name, parameter) = match text.split_once(':') {
            Some((name, parameter)) => (name, Some(parameter)),
            None => (text, None),
        };
        let number = |default: usize, max: usize| -> Result<usize, String> {
            let Some(parameter) = parameter else {
                return Ok(default);
            };
            match parameter.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(format!(
                    "workload {text}: '{parameter}' is not a number in 1..={max}"
                )),
            }
        };
        let workload = match name.to_ascii_lowercase().as_str() {
            "set" | "get" | "incr" if parameter.is_some() => {
                return Err(format!("workload {name} takes no parameter"))
            }
            "set" => KvWorkload::Set,
            "get" => KvWorkload::Get,
            "incr" => KvWorkload::Incr,
            "mixed" => KvWorkload::Mixed {
                get_percent: number(usize::from(DEFAULT_GET_PERCENT), 100)? as u8,
            },
            "mset" => KvWorkload::MSet {
                keys: number(DEFAULT_BATCH_KEYS, BATCH_KEYS_MAX)?,
            },
            "mget" => KvWorkload::MGet {
                keys: number(DEFAULT_BATCH_KEYS, BATCH_KEYS_MAX)?,
            },
            "qpush" if parameter.is_some() => {
                return Err(format!("workload {name} takes no parameter"))
            }
            "qpush" => return Ok(Workload::Queue(QueueWorkload::Push)),
            "qpop" => {
                return Ok(Workload::Queue(QueueWorkload::Pop {
                    count: number(1, 1 << 20)?,
                }))
            }
            "spub" if parameter.is_some() => {
                return Err(format!("workload {name} takes no parameter"))
            }
            "spub" => return Ok(Workload::Stream(StreamWorkload::Publish)),
            "smpub" => {
                return Ok(Workload::Stream(StreamWorkload::MPublish {
                    count: number(1000, BATCH_KEYS_MAX)?,
                }))
            }
            "dinsert" => {
                return Ok(Workload::Document(DocumentWorkload::Insert {
                    count: number(1, DOCUMENT_BATCH_MAX)?,
                }))
            }
            "dget" | "dfind" | "drange" | "dinc" | "dagg" if parameter.is_some() => {
                return Err(format!("workload {name} takes no parameter"))
            }
            "dget" => return Ok(Workload::Document(DocumentWorkload::Get)),
            "dfind" => return Ok(Workload::Document(DocumentWorkload::Find)),
            "drange" => return Ok(Workload::Document(DocumentWorkload::Range)),
            "dinc" => return Ok(Workload::Document(DocumentWorkload::Inc)),
            "dagg" => return Ok(Workload::Document(DocumentWorkload::Aggregate)),
            _ => {
                return Err(format!(
                    "unknown workload '{text}' (set, get, incr, mixed[:GET%], mset[:N], mget[:N], qpush, qpop[:N], spub, smpub[:N], dinsert[:N], dget, dfind, drange, dinc, dagg)"
                ))
            }
        };
        Ok(Workload::Kv(workload))
    }

    /// Keys a request reads or writes (MSET of 100: 100), for keys/s.
    pub fn keys_per_request(&self) -> usize {
        match self {
            Workload::Kv(KvWorkload::MSet { keys } | KvWorkload::MGet { keys }) => *keys,
            Workload::Kv(_) => 1,
            Workload::Queue(QueueWorkload::Pop { count }) => *count,
            Workload::Queue(QueueWorkload::Push) => 1,
            Workload::Stream(StreamWorkload::Publish) => 1,
            Workload::Stream(StreamWorkload::MPublish { count }) => *count,
            Workload::Document(DocumentWorkload::Insert { count }) => *count,
            Workload::Document(_) => 1,
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workload::Kv(KvWorkload::Set) => write!(f, "set"),
            Workload::Kv(KvWorkload::Get) => write!(f, "get"),
            Workload::Kv(KvWorkload::Incr) => write!(f, "incr"),
            Workload::Kv(KvWorkload::Mixed { get_percent }) => write!(f, "mixed:{get_percent}"),
            Workload::Kv(KvWorkload::MSet { keys }) => write!(f, "mset:{keys}"),
            Workload::Kv(KvWorkload::MGet { keys }) => write!(f, "mget:{keys}"),
            Workload::Queue(QueueWorkload::Push) => write!(f, "qpush"),
            Workload::Queue(QueueWorkload::Pop { count }) => write!(f, "qpop:{count}"),
            Workload::Stream(StreamWorkload::Publish) => write!(f, "spub"),
            Workload::Stream(StreamWorkload::MPublish { count }) => write!(f, "smpub:{count}"),
            Workload::Document(DocumentWorkload::Insert { count: 1 }) => write!(f, "dinsert"),
            Workload::Document(DocumentWorkload::Insert { count }) => {
                write!(f, "dinsert:{count}")
            }
            Workload::Document(DocumentWorkload::Get) => write!(f, "dget"),
            Workload::Document(DocumentWorkload::Find) => write!(f, "dfind"),
            Workload::Document(DocumentWorkload::Range) => write!(f, "drange"),
            Workload::Document(DocumentWorkload::Inc) => write!(f, "dinc"),
            Workload::Document(DocumentWorkload::Aggregate) => write!(f, "dagg"),
        }
    }
}

/// Makes requests for one connection thread: random keys in
/// `0..keyspace`, a fixed value (redis-benchmark's too is all `x`).
pub struct Generator {
    workload: Workload,
    keyspace: u64,
    rng: u64,
    value: Vec<u8>,
    keys: Vec<Key>,
    /// A queue pop's COUNT, as digits.
    count: Vec<u8>,
    /// A document command's arguments (buffers reused from request to request).
    document_args: Vec<Vec<u8>>,
}

impl Generator {
    pub fn new(workload: Workload, keyspace: u64, value_bytes: usize, seed: u64) -> Generator {
        let batch = workload.keys_per_request();
        Generator {
            workload,
            keyspace: keyspace.max(1),
            // xorshift must not start at 0.
            rng: crate::mix(seed) | 1,
            value: vec![b'x'; value_bytes],
            keys: vec![[0; KEY_BYTES]; batch],
            count: batch.to_string().into_bytes(),
            document_args: Vec::new(),
        }
    }

    /// The next request.
    pub fn next_op(&mut self) -> Op<'_> {
        let kv = match self.workload {
            Workload::Kv(kv) => kv,
            Workload::Queue(QueueWorkload::Push) => {
                return Op::QueuePush {
                    queue: BENCH_QUEUE,
                    value: &self.value,
                }
            }
            Workload::Queue(QueueWorkload::Pop { .. }) => {
                return Op::QueuePop {
                    queue: BENCH_QUEUE,
                    count: &self.count,
                }
            }
            Workload::Stream(StreamWorkload::Publish) => {
                return Op::StreamPublish {
                    topic: BENCH_TOPIC,
                    value: &self.value,
                }
            }
            Workload::Stream(StreamWorkload::MPublish { count }) => {
                return Op::StreamMPublish {
                    topic: BENCH_TOPIC,
                    value: &self.value,
                    count,
                }
            }
            Workload::Document(document) => return self.document_op(document),
        };
        match kv {
            KvWorkload::Set => {
                self.fill_keys(1);
                Op::Set {
                    key: &self.keys[0],
                    value: &self.value,
                }
            }
            KvWorkload::Get => {
                self.fill_keys(1);
                Op::Get { key: &self.keys[0] }
            }
            KvWorkload::Incr => {
                self.fill_keys(1);
                Op::Incr { key: &self.keys[0] }
            }
            KvWorkload::Mixed { get_percent } => {
                let get = self.next_random() % 100 < u64::from(get_percent);
                self.fill_keys(1);
                if get {
                    Op::Get { key: &self.keys[0] }
                } else {
                    Op::Set {
                        key: &self.keys[0],
                        value: &self.value,
                    }
                }
            }
            KvWorkload::MSet { keys } => {
                self.fill_keys(keys);
                Op::MSet {
                    keys: &self.keys,
                    value: &self.value,
                }
            }
            KvWorkload::MGet { keys } => {
                self.fill_keys(keys);
                Op::MGet { keys: &self.keys }
            }
        }
    }

    /// A document request on [`BENCH_COLLECTION`], holding documents `0..keyspace`, or an
    /// insert into [`BENCH_INSERT_COLLECTION`]. An insert's documents have no `_id` (the
    /// server assigns one, so runs never collide) and the contents of random document numbers.
    fn document_op(&mut self, workload: DocumentWorkload) -> Op<'_> {
        let collection = document::Collection::new(self.keyspace);
        let number = self.next_random();
        let command = match workload {
            DocumentWorkload::Insert { count } => document::insert_command(
                &collection,
                BENCH_INSERT_COLLECTION,
                number,
                count as u64,
                false,
                &mut self.document_args,
            ),
            _ => document::command(
                workload,
                &collection,
                BENCH_COLLECTION,
                number,
                &mut self.document_args,
            ),
        };
        Op::Document {
            command,
            args: &self.document_args,
        }
    }

    fn fill_keys(&mut self, count: usize) {
        for index in 0..count {
            let number = self.next_random() % self.keyspace;
            let key = &mut self.keys[index];
            write_key(key, number);
        }
    }

    /// xorshift64: fast, and good enough to spread keys.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

/// `key:` and `number` as 12 zero-padded digits (numbers past 10^12 wrap).
pub fn write_key(key: &mut Key, mut number: u64) {
    key[..4].copy_from_slice(b"key:");
    for digit in key[4..].iter_mut().rev() {
        *digit = b'0' + (number % 10) as u8;
        number /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_parse_and_print_back() {
        for text in [
            "set",
            "get",
            "incr",
            "mixed:80",
            "mset:100",
            "mget:5",
            "qpush",
            "qpop:16",
            "spub",
            "smpub:500",
            "dinsert",
            "dinsert:100",
            "dget",
            "dfind",
            "drange",
            "dinc",
            "dagg",
        ] {
            assert_eq!(Workload::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            Workload::parse("mset").unwrap(),
            Workload::Kv(KvWorkload::MSet { keys: 10 })
        );
        assert_eq!(Workload::parse("mixed").unwrap().to_string(), "mixed:50");
        assert!(Workload::parse("mixed:101").is_err());
        assert!(Workload::parse("mset:0").is_err());
        assert!(Workload::parse("set:3").is_err());
        assert!(Workload::parse("lpush").is_err());
        assert_eq!(Workload::parse("qpop").unwrap().to_string(), "qpop:1");
        assert!(Workload::parse("qpush:2").is_err());
        assert_eq!(Workload::parse("dinsert:1").unwrap().to_string(), "dinsert");
        assert_eq!(
            Workload::parse("dinsert:100").unwrap().keys_per_request(),
            100
        );
        assert!(Workload::parse("dinsert:0").is_err());
        assert!(Workload::parse("dget:2").is_err());
    }

    #[test]
    fn document_requests_stay_in_the_keyspace() {
        let mut generator = Generator::new(Workload::parse("dget").unwrap(), 50, 3, 7);
        for _ in 0..100 {
            let Op::Document { command, args } = generator.next_op() else {
                panic!("a document workload");
            };
            assert_eq!(command, b"DOC.GET");
            assert_eq!(args[0], BENCH_COLLECTION);
            let id: u64 = std::str::from_utf8(&args[1]).unwrap().parse().unwrap();
            assert!(id < 50);
        }
        let mut generator = Generator::new(Workload::parse("dinsert:3").unwrap(), 50, 3, 7);
        let Op::Document { command, args } = generator.next_op() else {
            panic!("a document workload");
        };
        assert_eq!((command, args.len()), (&b"DOC.INSERT"[..], 4));
        assert!(!args[1].starts_with(b"{\"_id\""), "the server assigns _ids");
    }

    #[test]
    fn keys_have_redis_benchmark_shape_and_stay_in_the_keyspace() {
        let mut key = [0; KEY_BYTES];
        write_key(&mut key, 42);
        assert_eq!(&key, b"key:000000000042");
        let mut generator = Generator::new(Workload::parse("mset:50").unwrap(), 1000, 3, 7);
        for _ in 0..100 {
            let Op::MSet { keys, value } = generator.next_op() else {
                panic!("mset workload");
            };
            assert_eq!((keys.len(), value), (50, &b"xxx"[..]));
            for key in keys {
                let number: u64 = std::str::from_utf8(&key[4..]).unwrap().parse().unwrap();
                assert!(number < 1000);
            }
        }
    }

    #[test]
    fn mixed_sends_about_its_share_of_gets() {
        let mut generator = Generator::new(Workload::parse("mixed:80").unwrap(), 100, 3, 1);
        let gets = (0..10_000)
            .filter(|_| matches!(generator.next_op(), Op::Get { .. }))
            .count();
        assert!((7_500..8_500).contains(&gets), "{gets} GETs of 10000");
    }
}
