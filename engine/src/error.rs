//! The engine's one error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result of an engine operation.
pub type Result<T> = std::result::Result<T, Error>;

/// Where and why bytes on disk are wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// Byte offset in the file.
    pub offset: u64,
    pub reason: String,
}

/// Everything an engine call can fail with.
#[derive(Debug)]
pub enum Error {
    /// An operating-system call on `path` failed.
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// Bytes on disk fail their checks: never served as data.
    Corrupt {
        path: PathBuf,
        corruption: Corruption,
    },
    /// Another process holds the data directory's lock file.
    Locked { path: PathBuf },
    /// An earlier flush failed: the engine refuses writes for good (reads still work), because
    /// after a failed fsync the kernel may have dropped the dirty pages and retrying would lie.
    Poisoned { reason: String },
    /// A key or value is larger than the engine accepts.
    TooLarge {
        field: &'static str,
        bytes: usize,
        limit: usize,
    },
    /// An argument is out of range (an expiry past the representable range, say).
    Invalid(String),
    /// The engine is shutting down.
    Closed,
    /// A log reader needs the entry with this seq and the log no longer has it (compaction
    /// dropped it before the reader was made, or a truncation cut it): a follower this far
    /// behind needs a snapshot.
    NotInLog { seq: u64 },
    /// A truncation removed entries after `seq` that a log reader had already returned (it was
    /// at `reader_at`): the history it read is not the log's any more.
    Truncated { seq: u64, reader_at: u64 },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            action,
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Error {
        Error::Corrupt {
            path: path.into(),
            corruption: Corruption {
                offset,
                reason: reason.into(),
            },
        }
    }

    /// Whether the error is the disk being full (ENOSPC), which callers may report specially.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => source.raw_os_error() == Some(libc::ENOSPC),
            Error::Poisoned { reason } => reason.contains("No space left"),
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io {
                path,
                action,
                source,
            } => write!(f, "{action} {}: {source}", path.display()),
            Error::Corrupt { path, corruption } => write!(
                f,
                "corrupt data in {} at byte {}: {}",
                path.display(),
                corruption.offset,
                corruption.reason
            ),
            Error::Locked { path } => write!(
                f,
                "data directory lock {} is held by another process",
                path.display()
            ),
            Error::Poisoned { reason } => write!(
                f,
                "engine refuses writes after a failed flush ({reason}); restart to recover"
            ),
            Error::TooLarge {
                field,
                bytes,
                limit,
            } => write!(
                f,
                "{field} of {bytes} bytes exceeds the limit of {limit} bytes"
            ),
            Error::Invalid(message) => f.write_str(message),
            Error::Closed => f.write_str("engine is closed"),
            Error::NotInLog { seq } => write!(
                f,
                "log entry {seq} is not in the log any more (compacted or truncated)"
            ),
            Error::Truncated { seq, reader_at } => write!(
                f,
                "the log was truncated after entry {seq}, behind a reader already at {reader_at}"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
