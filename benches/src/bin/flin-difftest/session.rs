//! Running steps against both servers: every step goes to Redis and to Flin on parallel
//! connections, and each pair of replies is compared ([`crate::compare`]). The session keeps
//! what the comparison needs to know: which commands a MULTI queued (so EXEC's elements are
//! compared against them), and it follows SCAN cursors to the end on each server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::compare::{self, Carry, Context, Verdict};
use crate::resp::{encode, Escaped, Value};
use crate::servers::{Connection, Server};

/// Most SCAN calls followed for one SCAN step (the key space is tiny; this only bounds a
/// server that never returns cursor 0).
const SCAN_CALLS_MAX: usize = 10_000;
/// DBSIZE may count keys that expired but were not reclaimed yet, on either server: when the
/// counts differ, ask again this many times, this far apart, before calling it a divergence.
const DBSIZE_RETRIES: usize = 4;
const DBSIZE_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// One thing to do to both servers.
#[derive(Clone, Debug)]
pub enum Step {
    /// A command on connection `client`, compared.
    Command { client: usize, args: Vec<Vec<u8>> },
    /// Several commands written at once, then every reply read and compared in order.
    Pipeline {
        client: usize,
        commands: Vec<Vec<Vec<u8>>>,
    },
    /// Raw bytes (inline commands, broken frames); `replies` replies are read and compared
    /// without knowing their commands.
    Raw {
        client: usize,
        bytes: Vec<u8>,
        replies: usize,
    },
    /// A command whose replies are read but not compared (setup).
    Quiet { client: usize, args: Vec<Vec<u8>> },
    /// Wait (lets a short TTL run out on both servers).
    Sleep(Duration),
    /// Close connection `client` on both servers and open fresh ones.
    Reconnect(usize),
}

/// A reply pair that did not agree.
#[derive(Clone, Debug)]
pub struct Divergence {
    /// Where it happened: curated group and step, or seed and step.
    pub label: String,
    pub request: String,
    pub redis: Value,
    pub flin: Value,
}

/// Counts over a run.
#[derive(Debug, Default)]
pub struct Report {
    pub compared: u64,
    pub same: u64,
    pub tolerated: BTreeMap<&'static str, u64>,
    /// Documented divergences: how many, and the first one seen.
    pub known: BTreeMap<&'static str, (u64, Divergence)>,
    pub divergences: Vec<Divergence>,
}

impl Report {
    /// Adds another run's counts to this one.
    pub fn absorb(&mut self, other: Report) {
        self.compared += other.compared;
        self.same += other.same;
        for (rule, count) in other.tolerated {
            *self.tolerated.entry(rule).or_default() += count;
        }
        for (rule, (count, first)) in other.known {
            self.known.entry(rule).or_insert((0, first)).0 += count;
        }
        self.divergences.extend(other.divergences);
    }

    /// Counts a verdict; returns whether the two servers' states may now differ (a known or
    /// unknown divergence), so random mode starts them afresh.
    fn record(&mut self, verdict: &Verdict, divergence: impl FnOnce() -> Divergence) -> bool {
        self.compared += 1;
        match verdict {
            Verdict::Same => self.same += 1,
            Verdict::Tolerated(rule) => *self.tolerated.entry(rule).or_default() += 1,
            Verdict::Known(rule) => {
                self.known
                    .entry(rule)
                    .or_insert_with(|| (0, divergence()))
                    .0 += 1;
                return !compare::reply_only(rule);
            }
            Verdict::Differ => {
                self.divergences.push(divergence());
                return true;
            }
        }
        false
    }
}

struct Client {
    redis: Connection,
    flin: Connection,
    /// Inside MULTI: the commands both servers queued.
    queued: Option<Vec<Vec<Vec<u8>>>>,
    /// Since this client's WATCH, some client sent a SET with an absolute expiry (EXAT or
    /// PXAT): one in the past on a missing key writes nothing but bumps Flin's WATCH stamp of
    /// a bucket of keys, which may abort an EXEC watching another key of the bucket
    /// (docs/commands.md, Transactions).
    stamp_bumped_since_watch: bool,
}

pub struct Session {
    pub redis: Server,
    pub flin: Server,
    clients: Vec<Client>,
    pub report: Report,
    /// Print every compared reply pair (`--trace`), to read the history before a divergence.
    pub trace: bool,
}

/// A command shown as redis-cli would take it.
pub fn show_command(args: &[Vec<u8>]) -> String {
    args.iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .iter()
                    .all(|byte| byte.is_ascii_graphic() && !matches!(byte, b'"' | b'\'' | b'\\'));
            if plain {
                String::from_utf8_lossy(arg).into_owned()
            } else {
                Escaped(arg).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn connect(addr: SocketAddr, name: &str) -> Result<Connection, String> {
    Connection::open(addr).map_err(|e| format!("connect to {name} at {addr}: {e}"))
}

impl Session {
    pub fn new(redis: Server, flin: Server, clients: usize) -> Result<Session, String> {
        let mut session = Session {
            redis,
            flin,
            clients: Vec::new(),
            report: Report::default(),
            trace: false,
        };
        for _ in 0..clients {
            let client = session.open_client()?;
            session.clients.push(client);
        }
        Ok(session)
    }

    fn open_client(&self) -> Result<Client, String> {
        Ok(Client {
            redis: connect(self.redis.addr, "redis")?,
            flin: connect(self.flin.addr, "flin")?,
            queued: None,
            stamp_bumped_since_watch: false,
        })
    }

    /// Fresh connections for every client and an empty database: after a divergence the two
    /// servers' states may differ, and later steps would only repeat it.
    pub fn resync(&mut self) -> Result<(), String> {
        for index in 0..self.clients.len() {
            self.clients[index] = self.open_client()?;
        }
        self.quiet(0, &[b"FLUSHALL".to_vec()]);
        Ok(())
    }

    /// Runs one step; returns whether any reply diverged (documented or not), so the servers'
    /// states may differ. An `Err` is a broken run (a server died, a connection could not be
    /// opened), not a divergence.
    pub fn run(&mut self, label: &str, step: &Step) -> Result<bool, String> {
        let diverged = match step {
            Step::Command { client, args } => self.command(label, *client, args),
            Step::Pipeline { client, commands } => self.pipeline(label, *client, commands),
            Step::Raw {
                client,
                bytes,
                replies,
            } => self.raw(label, *client, bytes, *replies),
            Step::Quiet { client, args } => {
                self.quiet(*client, args);
                false
            }
            Step::Sleep(pause) => {
                std::thread::sleep(*pause);
                false
            }
            Step::Reconnect(client) => {
                self.clients[*client] = self.open_client()?;
                false
            }
        };
        if !self.flin.alive() {
            return Err(format!("flin-server died at {label} ({step:?})"));
        }
        if !self.redis.alive() {
            return Err(format!("redis-server died at {label} ({step:?})"));
        }
        Ok(diverged)
    }

    fn both(&mut self, client: usize, bytes: &[u8]) -> (Value, Value) {
        let client = &mut self.clients[client];
        client.redis.send(bytes);
        client.flin.send(bytes);
        (client.redis.read(), client.flin.read())
    }

    fn quiet(&mut self, client: usize, args: &[Vec<u8>]) {
        let _ = self.both(client, &encode(args));
    }

    fn command(&mut self, label: &str, client: usize, args: &[Vec<u8>]) -> bool {
        let (mut redis, mut flin) = self.both(client, &encode(args));
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        let queuing = self.clients[client].queued.is_some();
        if name == "SCAN" && !queuing {
            redis = self.follow_scan(client, true, args, redis);
            flin = self.follow_scan(client, false, args, flin);
        }
        if name == "DBSIZE" && !queuing {
            for _ in 0..DBSIZE_RETRIES {
                if redis == flin || redis.integer().is_none() || flin.integer().is_none() {
                    break;
                }
                std::thread::sleep(DBSIZE_RETRY_PAUSE);
                (redis, flin) = self.both(client, &encode(args));
            }
            if redis != flin && self.flin_counts_expired_keys(client, &redis, &flin) {
                let known = Verdict::Known("dbsize-counts-expired-keys");
                return self.report.record(&known, || Divergence {
                    label: label.to_string(),
                    request: show_command(args),
                    redis,
                    flin,
                });
            }
        }
        self.judge(label, client, args, redis, flin, &mut Carry::default())
    }

    /// Whether a DBSIZE difference is the documented one: both servers hold the same live
    /// keys (KEYS *), Redis counts exactly those, Flin counts more (expired keys its
    /// background sweep has not reached yet).
    fn flin_counts_expired_keys(&mut self, client: usize, redis: &Value, flin: &Value) -> bool {
        let (redis_live, flin_live) =
            self.both(client, &encode(&[b"KEYS".to_vec(), b"*".to_vec()]));
        let live = |keys: &Value| keys.elements().map(|keys| keys.len() as i64);
        let (Some(redis_size), Some(flin_size)) = (redis.integer(), flin.integer()) else {
            return false;
        };
        live(&redis_live) == Some(redis_size)
            && compare::same_members(&redis_live, &flin_live)
            && flin_size > redis_size
    }

    fn pipeline(&mut self, label: &str, client: usize, commands: &[Vec<Vec<u8>>]) -> bool {
        let bytes: Vec<u8> = commands.iter().flat_map(|args| encode(args)).collect();
        let connection = &mut self.clients[client];
        connection.redis.send(&bytes);
        connection.flin.send(&bytes);
        let redis: Vec<Value> = commands.iter().map(|_| connection.redis.read()).collect();
        let flin: Vec<Value> = commands.iter().map(|_| connection.flin.read()).collect();
        let mut diverged = false;
        let mut carry = Carry::default();
        for (index, (args, (redis, flin))) in
            commands.iter().zip(redis.into_iter().zip(flin)).enumerate()
        {
            let label = format!("{label}.{index}");
            diverged |= self.judge(&label, client, args, redis, flin, &mut carry);
        }
        diverged
    }

    fn raw(&mut self, label: &str, client: usize, bytes: &[u8], replies: usize) -> bool {
        let connection = &mut self.clients[client];
        connection.redis.send(bytes);
        connection.flin.send(bytes);
        let mut diverged = false;
        for index in 0..replies {
            let redis = self.clients[client].redis.read();
            let flin = self.clients[client].flin.read();
            let verdict = compare::compare(Context::default(), &redis, &flin);
            diverged |= self.report.record(&verdict, || Divergence {
                label: format!("{label}.{index}"),
                request: format!("raw {}", Escaped(bytes)),
                redis,
                flin,
            });
        }
        diverged
    }

    /// Compares one command's replies, and keeps the MULTI bookkeeping.
    fn judge(
        &mut self,
        label: &str,
        client: usize,
        args: &[Vec<u8>],
        redis: Value,
        flin: Value,
        carry: &mut Carry,
    ) -> bool {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        let queued = self.clients[client].queued.take();
        let queued_now = Value::Simple(b"QUEUED".to_vec());
        let context = Context {
            args: Some(args),
            queued: queued.as_deref(),
            in_exec: false,
        };
        let verdict = compare::compare(context, &redis, &flin);
        let verdict = carry.follow(args, &redis, &flin, verdict);
        let verdict = self.watch_bucket(client, &name, &redis, &flin, verdict);
        if self.trace {
            println!(
                "{label} [{client}] {}\n    redis: {redis}\n    flin:  {flin}",
                show_command(args)
            );
        }
        // After an INCRBYFLOAT whose digits differ (f64 against long double, tolerated), the
        // servers hold different values under its key: forget the key, or every later read
        // of it would be reported.
        let mut forget: Vec<Vec<u8>> = carry.rounded_keys().to_vec();
        // (A reply-only documented divergence in the same EXEC may speak for it: any verdict
        // but "same" may hide a rounding.)
        if verdict != Verdict::Same && name == "EXEC" {
            forget.extend(compare::rounded_in_exec(
                queued.as_deref().unwrap_or_default(),
            ));
        }
        self.note_stamp_bumps(client, &name, args, queued.as_deref());
        self.clients[client].queued = match (name.as_str(), queued) {
            ("EXEC" | "DISCARD", _) => None,
            ("MULTI", None) if redis == Value::Simple(b"OK".to_vec()) && redis == flin => {
                Some(Vec::new())
            }
            (_, Some(mut queued)) => {
                if redis == queued_now && flin == queued_now {
                    queued.push(args.to_vec());
                }
                Some(queued)
            }
            (_, None) => None,
        };
        for key in forget {
            self.quiet(client, &[b"DEL".to_vec(), key]);
        }
        self.report.record(&verdict, || Divergence {
            label: label.to_string(),
            request: show_command(args),
            redis,
            flin,
        })
    }

    /// The documented divergence of WATCH's stamp buckets: Flin aborted an EXEC (a null
    /// array) that Redis ran, after a SET with an absolute expiry since the WATCH.
    fn watch_bucket(
        &self,
        client: usize,
        name: &str,
        redis: &Value,
        flin: &Value,
        verdict: Verdict,
    ) -> Verdict {
        let aborted = matches!(flin, Value::NullArray | Value::Null);
        let ran = matches!(redis, Value::Array(_));
        if verdict == Verdict::Differ
            && name == "EXEC"
            && aborted
            && ran
            && self.clients[client].stamp_bumped_since_watch
        {
            return Verdict::Known("watch-stamp-bucket");
        }
        verdict
    }

    /// Keeps [`Client::stamp_bumped_since_watch`]: a WATCH starts afresh, a SET with EXAT or
    /// PXAT (run now, or by this EXEC) counts for every client.
    fn note_stamp_bumps(
        &mut self,
        client: usize,
        name: &str,
        args: &[Vec<u8>],
        queued: Option<&[Vec<Vec<u8>>]>,
    ) {
        let absolute_set = |args: &[Vec<u8>]| {
            args[0].eq_ignore_ascii_case(b"SET")
                && args.iter().skip(3).any(|arg| {
                    arg.eq_ignore_ascii_case(b"EXAT") || arg.eq_ignore_ascii_case(b"PXAT")
                })
        };
        // `queued`: the commands this client had queued before this one (`None`: not in
        // MULTI, so this one runs now).
        let bumps = match (name, queued) {
            ("EXEC", Some(queued)) => queued.iter().any(|args| absolute_set(args)),
            (_, None) => absolute_set(args),
            (_, Some(_)) => false,
        };
        if bumps {
            for other in &mut self.clients {
                other.stamp_bumped_since_watch = true;
            }
        }
        if name == "WATCH" && queued.is_none() {
            self.clients[client].stamp_bumped_since_watch = false;
        }
    }

    /// Follows a SCAN reply's cursor to the end on one server, and returns `["0", every key
    /// returned]`; anything but a SCAN page is returned as it is.
    fn follow_scan(
        &mut self,
        client: usize,
        redis_side: bool,
        args: &[Vec<u8>],
        first: Value,
    ) -> Value {
        let mut keys = Vec::new();
        let mut page = first;
        for _ in 0..SCAN_CALLS_MAX {
            let Some([Value::Bulk(cursor), Value::Array(found)]) = page.elements() else {
                return page;
            };
            keys.extend(found.iter().cloned());
            if cursor == b"0" {
                return Value::Array(vec![Value::Bulk(b"0".to_vec()), Value::Array(keys)]);
            }
            let mut next = args.to_vec();
            next[1] = cursor.clone();
            let connection = &mut self.clients[client];
            let connection = if redis_side {
                &mut connection.redis
            } else {
                &mut connection.flin
            };
            connection.send(&encode(&next));
            page = connection.read();
        }
        Value::Error(b"<SCAN did not finish>".to_vec())
    }
}
