//! The process's own figures for `/api/stats` and `/metrics`: resident memory (from
//! `/proc/self/status`), the bytes of the data directory, and a millisecond clock the
//! dashboard turns counters into rates with (its own clock may run on virtual time, as in
//! headless Chromium, and a second is too coarse).
//!
//! The engine counts its log bytes, but the directory also holds hint files and whatever
//! an operator put there; the disk figure is what `du` would say of the files, so the two
//! can be compared. Reading it lists the directory (metadata only, no file contents), at
//! most [`DATA_DIR_ENTRIES_MAX`] entries and [`DATA_DIR_DEPTH_MAX`] levels deep, so a
//! scrape stays bounded whatever lies there.

use std::path::Path;

use serde_json::{json, Value};

/// Most directory entries looked at when summing the data directory; past it the sum is
/// marked partial.
pub const DATA_DIR_ENTRIES_MAX: usize = 100_000;

/// Deepest subdirectory summed (the engine writes one level; the rest is an operator's).
pub const DATA_DIR_DEPTH_MAX: usize = 4;

/// The process's figures at one moment.
#[derive(Debug, Default)]
pub struct ProcessFigures {
    /// Milliseconds since the daemon started.
    pub uptime_ms: u64,
    /// `VmRSS`; `None` where `/proc` is not there (not Linux).
    pub rss_bytes: Option<u64>,
    /// Bytes of the regular files under the data directory; `None` in memory (no `--data`)
    /// or when it cannot be listed.
    pub data_dir_bytes: Option<u64>,
    /// True when the listing stopped at [`DATA_DIR_ENTRIES_MAX`] (the sum is a lower bound).
    pub data_dir_partial: bool,
}

impl ProcessFigures {
    pub fn gather(started: std::time::Instant, data: Option<&Path>) -> ProcessFigures {
        let mut figures = ProcessFigures {
            uptime_ms: started.elapsed().as_millis() as u64,
            rss_bytes: resident_bytes(),
            ..ProcessFigures::default()
        };
        if let Some(dir) = data {
            let mut walk = Walk::default();
            if walk.sum(dir, 0).is_ok() {
                figures.data_dir_bytes = Some(walk.bytes);
                figures.data_dir_partial = walk.partial;
            }
        }
        figures
    }

    /// `/api/stats`'s `process` object.
    pub fn process_json(&self) -> Value {
        json!({
            "uptime_ms": self.uptime_ms,
            "rss_bytes": self.rss_bytes,
        })
    }

    /// `/api/stats`'s `disk` object.
    pub fn disk_json(&self) -> Value {
        json!({
            "data_dir_bytes": self.data_dir_bytes,
            "partial": self.data_dir_partial,
        })
    }
}

/// The process's resident set, from `/proc/self/status` (`VmRSS: 1234 kB`).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_bytes(&status, "VmRSS")
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
fn parse_status_bytes(status: &str, field: &str) -> Option<u64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// A bounded walk of the data directory.
#[derive(Default)]
struct Walk {
    bytes: u64,
    entries: usize,
    partial: bool,
}

impl Walk {
    /// Adds the regular files under `dir`; symbolic links are not followed. Errors below the
    /// top level (a file deleted by compaction mid-walk) skip that entry.
    fn sum(&mut self, dir: &Path, depth: usize) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            if self.entries >= DATA_DIR_ENTRIES_MAX {
                self.partial = true;
                return Ok(());
            }
            self.entries += 1;
            let Ok(entry) = entry else { continue };
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_file() {
                self.bytes += entry.metadata().map_or(0, |m| m.len());
            } else if kind.is_dir() && depth + 1 < DATA_DIR_DEPTH_MAX {
                let _ = self.sum(&entry.path(), depth + 1);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_bytes() {
        let status = "Name:\tflin\nVmHWM:\t  2048 kB\nVmRSS:\t  1500 kB\nThreads:\t5\n";
        assert_eq!(parse_status_bytes(status, "VmRSS"), Some(1500 * 1024));
        assert_eq!(parse_status_bytes(status, "VmHWM"), Some(2048 * 1024));
        assert_eq!(parse_status_bytes(status, "Threads"), None);
        assert_eq!(parse_status_bytes(status, "VmSwap"), None);
    }

    #[test]
    fn the_data_directory_is_summed_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub").join("b"), [0u8; 23]).unwrap();
        let figures = ProcessFigures::gather(std::time::Instant::now(), Some(dir.path()));
        assert_eq!(figures.data_dir_bytes, Some(123));
        assert!(!figures.data_dir_partial);
        let missing = dir.path().join("missing");
        let figures = ProcessFigures::gather(std::time::Instant::now(), Some(&missing));
        assert_eq!(figures.data_dir_bytes, None);
        if cfg!(target_os = "linux") {
            assert!(resident_bytes().unwrap() > 0);
        }
    }
}
