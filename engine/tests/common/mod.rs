//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use flin_engine::format::{self, DecodeError};
use flin_engine::{Config, Durability, Engine, ManualClock};

/// A directory config with small segments (many rotations), no background threads, a manual
/// clock, and a logger that keeps lines for assertions.
pub fn small_config(dir: &Path, clock: &Arc<ManualClock>, log: &Arc<Mutex<Vec<String>>>) -> Config {
    let log = log.clone();
    Config::directory(dir)
        .durability(Durability::No)
        .segment_bytes(4096)
        .background_compaction(false)
        .clock(clock.clone())
        .logger(Arc::new(move |_, line: &str| {
            log.lock().unwrap().push(line.to_string())
        }))
}

pub fn quiet_config(dir: &Path) -> Config {
    Config::directory(dir)
        .durability(Durability::No)
        .segment_bytes(4096)
        .background_compaction(false)
        .logger(Arc::new(|_, _: &str| {}))
}

pub fn open(config: Config) -> Engine {
    Engine::open(config).expect("engine opens")
}

/// Segment files of a directory, sorted by id.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// Byte ranges of the top-level records of a segment file.
pub fn record_ranges(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut at = format::SEGMENT_HEADER_BYTES;
    loop {
        match format::decode_record(&bytes[at..], at as u64, true) {
            Ok(record) => {
                ranges.push((at, at + record.len));
                at += record.len;
            }
            Err(DecodeError::End) => return ranges,
            Err(other) => panic!("unexpected {other:?} at {at}"),
        }
    }
}

/// Copies every file of `from` into `to` (a crash image to play with).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A small deterministic generator (xorshift), so failures reproduce from their seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
