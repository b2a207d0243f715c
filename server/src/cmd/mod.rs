//! The command table and the command families, one file each (parse -> apply -> reply):
//! - `connection`: PING ECHO QUIT HELLO AUTH SELECT
//! - `strings`: GET SET SETNX SETEX PSETEX GETSET GETDEL GETEX MGET MSET MSETNX APPEND STRLEN
//!   GETRANGE SETRANGE INCR INCRBY DECR DECRBY INCRBYFLOAT
//! - `keys`: DEL UNLINK EXISTS EXPIRE PEXPIRE EXPIREAT PEXPIREAT TTL PTTL PERSIST TYPE KEYS SCAN
//!   RANDOMKEY RENAME RENAMENX
//! - `server`: DBSIZE FLUSHDB FLUSHALL TIME INFO CONFIG COMMAND CLIENT
//! - `transactions`: MULTI EXEC DISCARD WATCH UNWATCH
//!
//! Each command is `fn(&mut Call, args) -> Outcome`, with `args[0]` the name; the arity was
//! checked by the dispatcher from the table.

pub mod connection;
pub mod keys;
pub mod server;
pub mod strings;
pub mod transactions;

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::context::{Call, Outcome};
use crate::frame::Frame;

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
    pub run: fn(&mut Call<'_, '_>, &[&[u8]]) -> Outcome,
}

impl Command {
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        if self.arity >= 0 {
            argc == self.arity
        } else {
            argc >= -self.arity
        }
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }
}

const W: &[&str] = &["write"];
const WD: &[&str] = &["write", "denyoom"];
const WF: &[&str] = &["write", "denyoom", "fast"];
const WFAST: &[&str] = &["write", "fast"];
const R: &[&str] = &["readonly"];
const RF: &[&str] = &["readonly", "fast"];
const F: &[&str] = &["fast"];
/// Redis marks these commands as allowed while loading and on a stale replica too.
const FLS: &[&str] = &["loading", "stale", "fast"];
/// A container command (CONFIG, CLIENT): Redis gives the container no flags; its subcommands
/// have them.
const CONTAINER: &[&str] = &[];
const NOAUTH: &[&str] = &[
    "noscript",
    "loading",
    "stale",
    "fast",
    "no_auth",
    "allow_busy",
];
const TXN: &[&str] = &["noscript", "loading", "stale", "fast", "allow_busy"];

macro_rules! command {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $group:literal, $summary:literal, $run:path) => {
        Command {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: $group,
            summary: $summary,
            run: $run,
        }
    };
}

const NO_KEYS: (i64, i64, i64) = (0, 0, 0);
const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);

/// Every command the server knows.
pub static TABLE: &[Command] = &[
    command!("ping", -1, F, NO_KEYS, "connection", "Returns the server's liveliness response.", connection::ping),
    command!("echo", 2, FLS, NO_KEYS, "connection", "Returns the given string.", connection::echo),
    command!("quit", -1, NOAUTH, NO_KEYS, "connection", "Closes the connection.", connection::quit),
    command!("hello", -1, NOAUTH, NO_KEYS, "connection", "Handshakes with the server.", connection::hello),
    command!("auth", -2, NOAUTH, NO_KEYS, "connection", "Authenticates the connection.", connection::auth),
    command!("select", 2, FLS, NO_KEYS, "connection", "Changes the selected database.", connection::select),
    command!("get", 2, RF, ONE_KEY, "string", "Returns the string value of a key.", strings::get),
    command!("set", -3, WD, ONE_KEY, "string", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.", strings::set),
    command!("setnx", 3, WF, ONE_KEY, "string", "Set the string value of a key only when the key doesn't exist.", strings::setnx),
    command!("setex", 4, WD, ONE_KEY, "string", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.", strings::setex),
    command!("psetex", 4, WD, ONE_KEY, "string", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.", strings::psetex),
    command!("getset", 3, WF, ONE_KEY, "string", "Returns the previous string value of a key after setting it to a new value.", strings::getset),
    command!("getdel", 2, WFAST, ONE_KEY, "string", "Returns the string value of a key after deleting the key.", strings::getdel),
    command!("getex", -2, WFAST, ONE_KEY, "string", "Returns the string value of a key after setting its expiration time.", strings::getex),
    command!("mget", -2, RF, ALL_KEYS, "string", "Atomically returns the string values of one or more keys.", strings::mget),
    command!("mset", -3, WD, (1, -1, 2), "string", "Atomically creates or modifies the string values of one or more keys.", strings::mset),
    command!("msetnx", -3, WD, (1, -1, 2), "string", "Atomically modifies the string values of one or more keys only when all keys don't exist.", strings::msetnx),
    command!("append", 3, WF, ONE_KEY, "string", "Appends a string to the value of a key. Creates the key if it doesn't exist.", strings::append),
    command!("strlen", 2, RF, ONE_KEY, "string", "Returns the length of a string value.", strings::strlen),
    command!("getrange", 4, R, ONE_KEY, "string", "Returns a substring of the string stored at a key.", strings::getrange),
    command!("substr", 4, R, ONE_KEY, "string", "Returns a substring from a string value.", strings::getrange),
    command!("setrange", 4, WD, ONE_KEY, "string", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.", strings::setrange),
    command!("incr", 2, WF, ONE_KEY, "string", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", strings::incr),
    command!("incrby", 3, WF, ONE_KEY, "string", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.", strings::incrby),
    command!("decr", 2, WF, ONE_KEY, "string", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", strings::decr),
    command!("decrby", 3, WF, ONE_KEY, "string", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.", strings::decrby),
    command!("incrbyfloat", 3, WF, ONE_KEY, "string", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.", strings::incrbyfloat),
    command!("del", -2, W, ALL_KEYS, "generic", "Deletes one or more keys.", keys::del),
    command!("unlink", -2, WFAST, ALL_KEYS, "generic", "Asynchronously deletes one or more keys.", keys::del),
    command!("exists", -2, RF, ALL_KEYS, "generic", "Determines whether one or more keys exist.", keys::exists),
    command!("expire", -3, WFAST, ONE_KEY, "generic", "Sets the expiration time of a key in seconds.", keys::expire),
    command!("pexpire", -3, WFAST, ONE_KEY, "generic", "Sets the expiration time of a key in milliseconds.", keys::pexpire),
    command!("expireat", -3, WFAST, ONE_KEY, "generic", "Sets the expiration time of a key to a Unix timestamp.", keys::expireat),
    command!("pexpireat", -3, WFAST, ONE_KEY, "generic", "Sets the expiration time of a key to a Unix milliseconds timestamp.", keys::pexpireat),
    command!("expiretime", 2, RF, ONE_KEY, "generic", "Returns the expiration time of a key as a Unix timestamp.", keys::expiretime),
    command!("pexpiretime", 2, RF, ONE_KEY, "generic", "Returns the expiration time of a key as a Unix milliseconds timestamp.", keys::pexpiretime),
    command!("ttl", 2, RF, ONE_KEY, "generic", "Returns the expiration time in seconds of a key.", keys::ttl),
    command!("pttl", 2, RF, ONE_KEY, "generic", "Returns the expiration time in milliseconds of a key.", keys::pttl),
    command!("persist", 2, WFAST, ONE_KEY, "generic", "Removes the expiration time of a key.", keys::persist),
    command!("type", 2, RF, ONE_KEY, "generic", "Determines the type of value stored at a key.", keys::type_of),
    command!("keys", 2, R, NO_KEYS, "generic", "Returns all key names that match a pattern.", keys::keys),
    command!("scan", -2, R, NO_KEYS, "generic", "Iterates over the key names in the database.", keys::scan),
    command!("randomkey", 1, R, NO_KEYS, "generic", "Returns a random key name from the database.", keys::randomkey),
    command!("rename", 3, W, (1, 2, 1), "generic", "Renames a key and overwrites the destination.", keys::rename),
    command!("renamenx", 3, WFAST, (1, 2, 1), "generic", "Renames a key only when the target key name doesn't exist.", keys::renamenx),
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
];

/// Longest command name in the table, so lookups lower-case into a stack buffer.
const NAME_BYTES_MAX: usize = 16;

/// The command named `name`, case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static Command> {
    static BY_NAME: OnceLock<HashMap<&'static [u8], &'static Command>> = OnceLock::new();
    let by_name = BY_NAME.get_or_init(|| TABLE.iter().map(|c| (c.name.as_bytes(), c)).collect());
    if name.len() > NAME_BYTES_MAX {
        return None;
    }
    let mut lower = [0u8; NAME_BYTES_MAX];
    for (slot, byte) in lower.iter_mut().zip(name) {
        *slot = byte.to_ascii_lowercase();
    }
    by_name.get(&lower[..name.len()]).copied()
}

// ---- argument helpers shared by the families ----

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

/// An argument as Redis's error messages show it: they format arguments with C's `%s`, which
/// stops at the first NUL byte. (Invalid UTF-8 shows as U+FFFD: Flin's error texts are
/// strings, where Redis copies the raw bytes.)
pub fn shown(arg: &[u8]) -> String {
    let end = arg.iter().position(|byte| *byte == 0).unwrap_or(arg.len());
    text(&arg[..end])
}

#[cfg(test)]
pub mod test_support {
    //! A server state over an in-memory engine and a helper that runs commands through the real
    //! dispatcher, for the families' unit tests.
    use std::sync::Arc;

    use flin_engine::{Config, Engine, ManualClock};

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
            let clock = Arc::new(ManualClock::new(START_MS));
            let engine = Engine::open(
                Config::memory()
                    .background_compaction(false)
                    .clock(clock.clone()),
            )
            .expect("memory engine");
            let authenticated = options.requirepass.is_none();
            let shared = Shared::new(engine, options);
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
