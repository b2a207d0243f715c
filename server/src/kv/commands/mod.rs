//! The key-value model's command shell: its rows of the command table ([`TABLE`]) and one
//! file per family, each command parse -> core -> reply:
//! - `strings`: GET SET SETNX SETEX PSETEX GETSET GETDEL GETEX MGET MSET MSETNX APPEND STRLEN
//!   GETRANGE SUBSTR SETRANGE INCR INCRBY DECR DECRBY INCRBYFLOAT
//!   LCS
//! - `keys`: DEL UNLINK EXISTS TOUCH EXPIRE PEXPIRE EXPIREAT PEXPIREAT EXPIRETIME PEXPIRETIME
//!   TTL PTTL PERSIST TYPE KEYS SCAN RANDOMKEY RENAME RENAMENX COPY OBJECT
//! - `bits`: SETBIT GETBIT BITCOUNT BITPOS BITOP BITFIELD BITFIELD_RO
//!
//! A command parses its arguments into the core's typed arguments, calls the core (reads
//! through `Call` as a [`KvRead`](super::KvRead), writes through `Call::write`), and builds a
//! [`Frame`] from the typed result. Every refusal is a [`KvError`], turned into Redis's exact
//! text here, in one place (`impl From<KvError> for Frame`).

pub mod bits;
pub mod keys;
pub mod strings;

use crate::cmd::{
    command, Command, ALL_KEYS, CONTAINER, NO_KEYS, ONE_KEY, R, RF, W, WD, WF, WFAST,
};
use crate::frame::Frame;
use crate::kv::KvError;
use crate::number::parse_i64;

/// The key-value commands (the dispatcher's table is this and the other models' tables, see
/// `cmd::commands`).
#[rustfmt::skip]
pub static TABLE: &[Command] = &[
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
    command!("lcs", -3, R, (1, 2, 1), "string", "Finds the longest common substring.", strings::lcs),
    command!("setbit", 4, WD, ONE_KEY, "bitmap", "Sets or clears the bit at offset of the string value. Creates the key if it doesn't exist.", bits::setbit),
    command!("getbit", 3, RF, ONE_KEY, "bitmap", "Returns a bit value by offset.", bits::getbit),
    command!("bitcount", -2, R, ONE_KEY, "bitmap", "Counts the number of set bits (population counting) in a string.", bits::bitcount),
    command!("bitpos", -3, R, ONE_KEY, "bitmap", "Finds the first set (1) or clear (0) bit in a string.", bits::bitpos),
    command!("bitop", -4, WD, (2, -1, 1), "bitmap", "Performs bitwise operations on multiple strings, and stores the result.", bits::bitop),
    command!("bitfield", -2, WD, ONE_KEY, "bitmap", "Performs arbitrary bitfield integer operations on strings.", bits::bitfield),
    command!("bitfield_ro", -2, RF, ONE_KEY, "bitmap", "Performs arbitrary read-only bitfield integer operations on strings.", bits::bitfield_ro),
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
    command!("copy", -3, WD, (1, 2, 1), "generic", "Copies the value of a key to a new key.", keys::copy),
    command!("touch", -2, RF, ALL_KEYS, "generic", "Returns the number of existing keys out of those specified after updating the time they were last accessed.", keys::touch),
    command!("object", -2, CONTAINER, NO_KEYS, "generic", "A container for object introspection commands.", keys::object, keys::OBJECT_SUBCOMMANDS),
];

impl From<KvError> for Frame {
    /// Redis's reply for each refusal, code first.
    fn from(error: KvError) -> Frame {
        let text = |text: &str| text.to_string();
        Frame::Error(match &error {
            KvError::Syntax => text("ERR syntax error"),
            KvError::NotInteger => text("ERR value is not an integer or out of range"),
            KvError::NotFloat => text("ERR value is not a valid float"),
            KvError::IncrementOverflow => text("ERR increment or decrement would overflow"),
            KvError::DecrementOverflow => text("ERR decrement would overflow"),
            KvError::NanOrInfinity => text("ERR increment would produce NaN or Infinity"),
            KvError::StringTooLong => {
                text("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
            }
            KvError::OffsetOutOfRange => text("ERR offset is out of range"),
            KvError::InvalidExpire { command } => {
                format!("ERR invalid expire time in '{command}' command")
            }
            // Echoed as Redis's `%s` shows it: cut at the first NUL.
            KvError::UnsupportedOption(option) => {
                format!("ERR Unsupported option {}", crate::cmd::shown(option))
            }
            KvError::NxWithOtherCondition => {
                text("ERR NX and XX, GT or LT options at the same time are not compatible")
            }
            KvError::GtWithLt => text("ERR GT and LT options at the same time are not compatible"),
            KvError::NoSuchKey => text("ERR no such key"),
            KvError::InvalidCursor => text("ERR invalid cursor"),
            KvError::SameObject => text("ERR source and destination objects are the same"),
            KvError::BitOffset => text("ERR bit offset is not an integer or out of range"),
            KvError::BitValue => text("ERR bit is not an integer or out of range"),
            KvError::BitArgument => text("ERR The bit argument must be 1 or 0."),
            KvError::BitfieldType => text(
                "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not \
                 supported but i64 is.",
            ),
            KvError::BitfieldOverflowType => text("ERR Invalid OVERFLOW type specified"),
            KvError::BitfieldReadOnly => text("ERR BITFIELD_RO only supports the GET subcommand"),
            KvError::BitopNotSources => {
                text("ERR BITOP NOT must be called with a single source key.")
            }
            KvError::LcsLenAndIdx => {
                text("ERR If you want both the length and indexes, please just use IDX.")
            }
            KvError::LcsTableTooLarge => {
                text("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")
            }
            KvError::FrequencyNotTracked => text(
                "ERR An LFU maxmemory policy is not selected, access frequency not tracked. \
                 Please note that when switching between policies at runtime LRU and LFU data \
                 will take some time to adjust.",
            ),
            KvError::IdleTimeNotTracked => text(
                "ERR Flin does not record when a key was last accessed, idle time not tracked.",
            ),
            KvError::Engine(error) => format!("ERR {error}"),
        })
    }
}

/// An integer argument (Redis's `getLongLongFromObjectOrReply`).
pub(crate) fn integer(arg: &[u8]) -> Result<i64, KvError> {
    parse_i64(arg).ok_or(KvError::NotInteger)
}

/// A bulk reply, or null for a missing value.
pub(crate) fn bulk_or_null(value: Option<Vec<u8>>) -> Frame {
    value.map_or(Frame::Null, Frame::Bulk)
}
