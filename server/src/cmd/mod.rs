//! The command table, and the command families that belong to no data model, one file each
//! (parse -> apply -> reply):
//! - `connection`: PING ECHO QUIT HELLO AUTH SELECT
//! - `server`: DBSIZE FLUSHDB FLUSHALL TIME INFO CONFIG COMMAND CLIENT
//! - `transactions`: MULTI EXEC DISCARD WATCH UNWATCH
//!
//! Each data model keeps its commands in its own folder with its own rows of the table
//! (`kv::commands::TABLE`); [`commands`] joins them with this module's [`TABLE`]. Each command
//! is `fn(&mut Call, args) -> Outcome`, with `args[0]` the name; the arity was checked by the
//! dispatcher from the table.

pub mod cluster;
pub mod connection;
pub mod server;
pub mod transactions;
pub mod wait;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::context::{Call, Outcome};
use crate::frame::Frame;
use crate::recorder::Family;

/// A command's entry in the table (also what COMMAND reports).
pub struct Command {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis's arity: `n` exactly n arguments with the name, `-n` at least n.
    pub arity: i64,
    pub flags: &'static [&'static str],
    /// Key positions for COMMAND: first, last (-1: to the end), step.
    pub keys: (i64, i64, i64),
    /// Command group for COMMAND DOCS.
    pub group: &'static str,
    pub summary: &'static str,
    /// A container's subcommands (lower-case name, Redis's arity counting the container's
    /// name), which the dispatcher checks before running or queuing the command, as Redis
    /// checks its subcommand table; empty for other commands. (CONFIG and CLIENT still check
    /// theirs when they run.)
    pub subcommands: &'static [(&'static str, i64)],
    pub run: fn(&mut Call<'_, '_>, &[&[u8]]) -> Outcome,
    /// The command's place in [`commands`], which indexes its counters in the
    /// [`crate::recorder::Recorder`]; set when the lookup map is built (before any command can
    /// be found, so before any runs). A static of its own per row: a table of rows holding the
    /// atomic itself would be an interior-mutable temporary, which a static's initializer may
    /// not borrow.
    pub number: &'static AtomicUsize,
}

/// Whether `argc` arguments (the name included) satisfy Redis's `arity`: `n` exactly, `-n` at
/// least n.
fn arity_allows(arity: i64, argc: usize) -> bool {
    let argc = argc as i64;
    if arity >= 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

impl Command {
    pub fn arity_ok(&self, argc: usize) -> bool {
        arity_allows(self.arity, argc)
    }

    /// For a container given a subcommand, Redis's refusal of `args` before anything runs:
    /// an unknown subcommand, or a wrong number of arguments for it.
    pub fn check_subcommand(&self, args: &[&[u8]]) -> Result<(), Frame> {
        let Some(sub) = args.get(1).filter(|_| !self.subcommands.is_empty()) else {
            return Ok(());
        };
        let Some((name, arity)) = self.subcommands.iter().find(|(name, _)| is(sub, name)) else {
            let container = text(args[0]).to_ascii_uppercase();
            return Err(unknown_subcommand(sub, &container));
        };
        if !arity_allows(*arity, args.len()) {
            return Err(wrong_arity(&format!("{}|{name}", self.name)));
        }
        Ok(())
    }

    /// The command's place in [`commands`] (its counters' index).
    pub fn number(&self) -> usize {
        let number = self.number.load(Ordering::Relaxed);
        debug_assert_ne!(number, usize::MAX, "'{}' was never numbered", self.name);
        number
    }

    /// The family its latency is recorded under.
    pub fn family(&self) -> Family {
        families()[self.number()]
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }
}

// Flag sets of the table's rows (`pub(crate)`: the models' tables use them too).
pub(crate) const W: &[&str] = &["write"];
pub(crate) const WD: &[&str] = &["write", "denyoom"];
pub(crate) const WF: &[&str] = &["write", "denyoom", "fast"];
pub(crate) const WFAST: &[&str] = &["write", "fast"];
pub(crate) const R: &[&str] = &["readonly"];
pub(crate) const RF: &[&str] = &["readonly", "fast"];
const F: &[&str] = &["fast"];
/// Redis marks these commands as allowed while loading and on a stale replica too.
const FLS: &[&str] = &["loading", "stale", "fast"];
/// A container command (CONFIG, CLIENT): Redis gives the container no flags; its subcommands
/// have them.
pub(crate) const CONTAINER: &[&str] = &[];
const NOAUTH: &[&str] = &[
    "noscript",
    "loading",
    "stale",
    "fast",
    "no_auth",
    "allow_busy",
];
const TXN: &[&str] = &["noscript", "loading", "stale", "fast", "allow_busy"];

/// A row of a command table (a container's ends with its subcommands).
macro_rules! command {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $group:literal, $summary:literal, $run:path) => {
        $crate::cmd::command!($name, $arity, $flags, $keys, $group, $summary, $run, &[])
    };
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $group:literal, $summary:literal, $run:path, $subcommands:expr) => {
        $crate::cmd::Command {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: $group,
            summary: $summary,
            subcommands: $subcommands,
            run: $run,
            number: {
                static NUMBER: ::std::sync::atomic::AtomicUsize =
                    ::std::sync::atomic::AtomicUsize::new(usize::MAX);
                &NUMBER
            },
        }
    };
}
pub(crate) use command;

pub(crate) const NO_KEYS: (i64, i64, i64) = (0, 0, 0);
pub(crate) const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
pub(crate) const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);

/// The commands of no data model: connection, server and transactions.
#[rustfmt::skip]
pub static TABLE: &[Command] = &[
    command!("ping", -1, F, NO_KEYS, "connection", "Returns the server's liveliness response.", connection::ping),
    command!("echo", 2, FLS, NO_KEYS, "connection", "Returns the given string.", connection::echo),
    command!("quit", -1, NOAUTH, NO_KEYS, "connection", "Closes the connection.", connection::quit),
    command!("hello", -1, NOAUTH, NO_KEYS, "connection", "Handshakes with the server.", connection::hello),
    command!("auth", -2, NOAUTH, NO_KEYS, "connection", "Authenticates the connection.", connection::auth),
    command!("select", 2, FLS, NO_KEYS, "connection", "Changes the selected database.", connection::select),
    command!("dbsize", 1, RF, NO_KEYS, "server", "Returns the number of keys in the database.", server::dbsize),
    command!("flushdb", -1, W, NO_KEYS, "server", "Remove all keys from the current database.", server::flushall),
    command!("flushall", -1, W, NO_KEYS, "server", "Removes all keys from all databases.", server::flushall),
    command!("time", 1, FLS, NO_KEYS, "server", "Returns the server time.", server::time),
    command!("info", -1, &["loading", "stale"], NO_KEYS, "server", "Returns information and statistics about the server.", server::info),
    command!("config", -2, CONTAINER, NO_KEYS, "server", "A container for server configuration commands.", server::config),
    command!("command", -1, &["loading", "stale"], NO_KEYS, "server", "Returns detailed information about all commands.", server::command),
    command!("client", -2, CONTAINER, NO_KEYS, "connection", "A container for client connection commands.", server::client),
    command!("multi", 1, TXN, NO_KEYS, "transactions", "Starts a transaction.", transactions::multi),
    command!("exec", 1, &["noscript", "loading", "stale", "skip_slowlog"], NO_KEYS, "transactions", "Executes all commands in a transaction.", transactions::exec),
    command!("discard", 1, TXN, NO_KEYS, "transactions", "Discards a transaction.", transactions::discard),
    command!("watch", -2, TXN, ALL_KEYS, "transactions", "Monitors changes to keys to determine the execution of a transaction.", transactions::watch),
    command!("unwatch", 1, TXN, NO_KEYS, "transactions", "Forgets about watched keys of a transaction.", transactions::unwatch),
    command!("cluster", -2, CONTAINER, NO_KEYS, "cluster", "A container for cluster commands.", cluster::cluster, &[("info", 2), ("nodes", 2), ("myid", 2), ("slots", 2), ("shards", 2), ("keyslot", 3)]),
    command!("cluster.transfer", 2, &["admin", "stale"], NO_KEYS, "cluster", "Hands the cluster's leadership to another node.", cluster::transfer),
    command!("cluster.add", 3, &["admin", "stale"], NO_KEYS, "cluster", "Adds a node to the cluster (as a learner, promoted once caught up).", cluster::add),
    command!("cluster.remove", 2, &["admin", "stale"], NO_KEYS, "cluster", "Removes a node from the cluster.", cluster::remove),
    command!("readonly", 1, FLS, NO_KEYS, "cluster", "Enables stale reads on a cluster follower for this connection.", cluster::readonly),
    command!("readwrite", 1, FLS, NO_KEYS, "cluster", "Disables READONLY for this connection.", cluster::readwrite),
    command!("role", 1, FLS, NO_KEYS, "cluster", "Returns the replication role.", cluster::role),
    command!("wait", 3, &["noscript"], NO_KEYS, "generic", "Blocks until the writes sent before it are on this many replicas, or the timeout.", wait::wait),
];

/// The tables with the family of each: this module's, then each data model's.
fn tables() -> [(Family, &'static [Command]); 5] {
    [
        (Family::Server, TABLE),
        (Family::Kv, crate::kv::commands::TABLE),
        (Family::Queue, crate::queue::commands::TABLE),
        (Family::Stream, crate::stream::commands::TABLE),
        (Family::Doc, crate::doc::commands::TABLE),
    ]
}

/// Every command the server knows: this module's table, then each data model's (COMMAND lists
/// them in this order).
pub fn commands() -> impl Iterator<Item = &'static Command> + Clone {
    tables().into_iter().flat_map(|(_, table)| table)
}

/// How many commands there are (the recorder's table size).
pub fn count() -> usize {
    tables().iter().map(|(_, table)| table.len()).sum()
}

/// The family of each command, by number.
fn families() -> &'static [Family] {
    static FAMILIES: OnceLock<Vec<Family>> = OnceLock::new();
    FAMILIES.get_or_init(|| {
        tables()
            .into_iter()
            .flat_map(|(family, table)| table.iter().map(move |_| family))
            .collect()
    })
}

/// Bytes of the stack buffer a name is lower-cased into for the lookup: at least the longest
/// name in the tables (checked when the lookup map is built, so a longer name added to a table
/// fails every test instead of being "unknown"). A longer request name matches no command.
const NAME_BUFFER_BYTES: usize = 32;

/// The lookup map, and the longest name in it.
struct ByName {
    commands: HashMap<&'static [u8], &'static Command, NameHash>,
    longest: usize,
}

/// FNV-1a over a command name: the names are the server's own (no hash flooding to defend
/// against), and SipHash, the default, was 1-2% of a pipelined publish's server CPU.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &byte in bytes {
            hash = (hash ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = hash;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type NameHash = std::hash::BuildHasherDefault<Fnv>;

/// The command named `name`, case-insensitively.
/// The GET and SET rows, for the binary protocol's fast paths to count their calls without a
/// lookup per request.
pub fn get_and_set() -> (&'static Command, &'static Command) {
    static ROWS: OnceLock<(&'static Command, &'static Command)> = OnceLock::new();
    *ROWS.get_or_init(|| {
        (
            lookup(b"get").expect("GET is in the table"),
            lookup(b"set").expect("SET is in the table"),
        )
    })
}

pub fn lookup(name: &[u8]) -> Option<&'static Command> {
    static BY_NAME: OnceLock<ByName> = OnceLock::new();
    let by_name = BY_NAME.get_or_init(|| {
        let mut map = HashMap::with_hasher(NameHash::default());
        for (number, command) in commands().enumerate() {
            command.number.store(number, Ordering::Relaxed);
            assert!(
                command.name.len() <= NAME_BUFFER_BYTES,
                "command name '{}' is longer than the lookup's {NAME_BUFFER_BYTES}-byte buffer",
                command.name
            );
            let previous = map.insert(command.name.as_bytes(), command);
            assert!(previous.is_none(), "'{}' is in two tables", command.name);
        }
        let longest = map.keys().map(|name| name.len()).max().unwrap_or(0);
        ByName {
            commands: map,
            longest,
        }
    });
    if name.len() > by_name.longest {
        return None;
    }
    let mut lower = [0u8; NAME_BUFFER_BYTES];
    for (slot, byte) in lower.iter_mut().zip(name) {
        *slot = byte.to_ascii_lowercase();
    }
    by_name.commands.get(&lower[..name.len()]).copied()
}

// ---- argument helpers shared by the families ----

// The data models' command shells (queues, streams, documents) refuse with these.

/// `ERR QUEUE.PUSH: <why>`: the command's name, then why.
pub fn refusal(args: &[&[u8]], why: impl std::fmt::Display) -> Frame {
    let name = String::from_utf8_lossy(args[0]).to_ascii_uppercase();
    Frame::error(format!("ERR {name}: {why}"))
}

/// Whether an argument is the option `word` (ASCII case-insensitive).
pub fn option_is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// A non-negative integer argument named `what`, at most `max`.
pub fn number(args: &[&[u8]], at: usize, what: &str, max: u64) -> Result<u64, Frame> {
    let Some(arg) = args.get(at) else {
        return Err(refusal(args, format!("{what} needs a value")));
    };
    match crate::number::parse_i64(arg) {
        Some(n) if n >= 0 && n as u64 <= max => Ok(n as u64),
        _ => Err(refusal(
            args,
            format!(
                "{what} must be an integer from 0 to {max}, got '{}'",
                String::from_utf8_lossy(arg)
            ),
        )),
    }
}

pub fn syntax_error() -> Frame {
    Frame::error("ERR syntax error")
}

pub fn not_an_integer() -> Frame {
    Frame::error("ERR value is not an integer or out of range")
}

/// `ERR wrong number of arguments for 'name' command`.
pub fn wrong_arity(name: &str) -> Frame {
    Frame::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// An integer argument (Redis's `getLongLongFromObjectOrReply`).
pub fn int_arg(arg: &[u8]) -> Result<i64, Frame> {
    crate::number::parse_i64(arg).ok_or_else(not_an_integer)
}

/// Whether `arg` equals `word`, ignoring ASCII case.
pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Text of an argument (lossy).
pub fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

/// Redis's `addReplySubcommandSyntaxError`: the subcommand as given, cut at 128 bytes.
pub fn unknown_subcommand(sub: &[u8], command: &str) -> Frame {
    Frame::error(format!(
        "ERR unknown subcommand '{}'. Try {command} HELP.",
        shown(&sub[..sub.len().min(SUBCOMMAND_SHOWN_BYTES)])
    ))
}

/// Bytes of an unknown subcommand shown in the error (Redis's `%.128s`).
const SUBCOMMAND_SHOWN_BYTES: usize = 128;

/// An argument as Redis's error messages show it: they format arguments with C's `%s`, which
/// stops at the first NUL byte. (Invalid UTF-8 shows as U+FFFD: Flin's error texts are
/// strings, where Redis copies the raw bytes.)
pub fn shown(arg: &[u8]) -> String {
    let end = arg.iter().position(|byte| *byte == 0).unwrap_or(arg.len());
    text(&arg[..end])
}

#[cfg(test)]
mod tests {
    use super::{commands, lookup, NAME_BUFFER_BYTES};

    #[test]
    fn every_command_is_found_by_its_name_in_any_case() {
        for command in commands() {
            let upper = command.name.to_ascii_uppercase();
            for name in [command.name, &upper] {
                let found = lookup(name.as_bytes()).map(|found| found.name);
                assert_eq!(found, Some(command.name));
            }
        }
        assert!(commands().count() > 50);
        // Longer than any name: unknown, whatever its bytes.
        assert!(lookup(&[b'a'; NAME_BUFFER_BYTES + 1]).is_none());
        assert!(lookup(b"getx").is_none());
    }
}

#[cfg(test)]
mod binary_rows {
    /// Every binary opcode-table row names a command of the server's table, with its arity:
    /// a row the server does not know, or knows with another arity, would fail every call.
    #[test]
    fn every_binary_row_is_a_server_command_with_the_same_arity() {
        for spec in flin_net::binary::commands::TABLE {
            let command = super::lookup(spec.name.as_bytes())
                .unwrap_or_else(|| panic!("binary row '{}' is no server command", spec.name));
            assert_eq!(command.arity, spec.arity, "{}", spec.name);
        }
    }
}

#[cfg(test)]
pub mod test_support {
    //! A server state over an in-memory engine and a helper that runs commands through the real
    //! dispatcher, for the families' unit tests.
    use std::sync::Arc;

    use flin_engine::{Config, ManualClock};

    use crate::config::Options;
    use crate::context::{Session, Shared};
    use crate::frame::Frame;

    pub struct Harness {
        pub shared: Shared,
        pub session: Session,
        pub clock: Arc<ManualClock>,
    }

    /// Start of the manual clock: 2023-11-14T22:13:20Z.
    pub const START_MS: u64 = 1_700_000_000_000;

    impl Default for Harness {
        fn default() -> Harness {
            Harness::with_options(Options::default())
        }
    }

    impl Harness {
        pub fn new() -> Harness {
            Harness::default()
        }

        pub fn with_options(options: Options) -> Harness {
            Harness::with_config(Config::memory(), options)
        }

        /// A harness over an engine of `config` (a directory, to reopen), clock injected.
        pub fn with_config(config: Config, options: Options) -> Harness {
            let clock = Arc::new(ManualClock::new(START_MS));
            let config = config.background_compaction(false).clock(clock.clone());
            let authenticated = options.requirepass.is_none();
            let shared = Shared::new(config, options);
            let session = Session::new(1, "127.0.0.1:1".parse().unwrap(), authenticated);
            Harness {
                shared,
                session,
                clock,
            }
        }

        /// Runs one command given as space-separated words.
        pub fn run(&mut self, line: &str) -> Frame {
            let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
            self.run_args(&args)
        }

        pub fn run_args(&mut self, args: &[&[u8]]) -> Frame {
            crate::dispatch::execute(&self.shared, &mut self.session, args).0
        }
    }

    pub fn ok() -> Frame {
        Frame::ok()
    }
    pub fn int(value: i64) -> Frame {
        Frame::Integer(value)
    }
    pub fn bulk(text: &str) -> Frame {
        Frame::bulk(text)
    }
    pub fn err(text: &str) -> Frame {
        Frame::error(text)
    }
}
