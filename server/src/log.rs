//! The daemon's log: one line per event on stderr, with its time (RFC 3339, UTC, milliseconds),
//! level, subsystem and message. `--log-format text` (the default) writes
//! `2026-12-05T19:24:39.123Z info server: listening on 127.0.0.1:7380`; `--log-format json`
//! writes one object per line, `{"time":…,"level":…,"subsystem":…,"message":…}`.
//! `--log-level` drops the events below it (`error` < `warn` < `info` < `debug`; default info).
//!
//! Errors and warnings nobody asked for (a background compaction failing every second, a
//! timer's write refused by a poisoned engine) would otherwise fill the disk with one line per
//! attempt: an event identical to one logged less than [`REPEAT_WINDOW`] ago is counted, not
//! written, and the next one written after the window says how many were left out.
//!
//! A small module of our own, not the `log` crate: the daemon needs four levels, two formats
//! and the repeat filter, and nothing else from a facade (docs/dependencies.md).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

/// An identical error or warning is written at most once per this window.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(60);

/// Distinct recent errors and warnings remembered for the repeat filter; past this, the
/// memory is cleared (the worst case is one more line per distinct event).
const REPEATS_REMEMBERED_MAX: usize = 256;

/// How much an event matters, most first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

impl std::str::FromStr for Level {
    type Err = String;

    fn from_str(text: &str) -> Result<Level, String> {
        match text.to_ascii_lowercase().as_str() {
            "error" => Ok(Level::Error),
            "warn" => Ok(Level::Warn),
            "info" => Ok(Level::Info),
            "debug" => Ok(Level::Debug),
            _ => Err(format!(
                "'{text}' is not a level (error, warn, info, debug)"
            )),
        }
    }
}

impl From<flin_engine::LogLevel> for Level {
    fn from(level: flin_engine::LogLevel) -> Level {
        match level {
            flin_engine::LogLevel::Error => Level::Error,
            flin_engine::LogLevel::Warn => Level::Warn,
            flin_engine::LogLevel::Info => Level::Info,
        }
    }
}

/// How a line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Format, String> {
        match text.to_ascii_lowercase().as_str() {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            _ => Err(format!("'{text}' is not a log format (text, json)")),
        }
    }
}

/// One event's line, ending in a newline. `unix_ms` is the event's time.
pub fn render(
    format: Format,
    unix_ms: u64,
    level: Level,
    subsystem: &str,
    message: &str,
) -> String {
    let time = rfc3339_utc(unix_ms);
    match format {
        Format::Text => {
            // One event, one line: a message's own line breaks are escaped.
            let message = message.replace('\\', "\\\\").replace('\n', "\\n");
            format!("{time} {} {subsystem}: {message}\n", level.name())
        }
        Format::Json => {
            let object = json!({
                "time": time,
                "level": level.name(),
                "subsystem": subsystem,
                "message": message,
            });
            format!("{object}\n")
        }
    }
}

/// `unix_ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_utc(unix_ms: u64) -> String {
    let seconds = unix_ms / 1000;
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        unix_ms % 1000
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// When an error or warning was last written, and how many identical ones were left out since.
struct Repeat {
    written_at: Instant,
    suppressed: u64,
}

/// A log: its level, format and sink, and the repeat filter's memory.
pub struct Logger {
    level: Level,
    format: Format,
    sink: Mutex<Box<dyn Write + Send>>,
    repeats: Mutex<HashMap<(Level, String, String), Repeat>>,
}

impl Logger {
    pub fn new(level: Level, format: Format, sink: Box<dyn Write + Send>) -> Logger {
        Logger {
            level,
            format,
            sink: Mutex::new(sink),
            repeats: Mutex::new(HashMap::new()),
        }
    }

    /// Whether events of `level` are written.
    pub fn enabled(&self, level: Level) -> bool {
        level <= self.level
    }

    /// Writes the event, unless its level is filtered out or it repeats an error or warning
    /// written less than [`REPEAT_WINDOW`] ago.
    pub fn log(&self, level: Level, subsystem: &str, message: &str) {
        if !self.enabled(level) {
            return;
        }
        let mut message = std::borrow::Cow::Borrowed(message);
        if level <= Level::Warn {
            match self.repeat_filter(level, subsystem, &message) {
                None => return,
                Some(0) => {}
                Some(left_out) => {
                    message = format!(
                        "{message} (and {left_out} more times in the last {} s)",
                        REPEAT_WINDOW.as_secs()
                    )
                    .into()
                }
            }
        }
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let line = render(self.format, unix_ms, level, subsystem, &message);
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        // A log that cannot be written has nowhere to report it.
        let _ = sink.write_all(line.as_bytes());
        let _ = sink.flush();
    }

    /// `None`: leave the event out (written recently); `Some(n)`: write it, noting the `n`
    /// identical ones left out since it was last written.
    fn repeat_filter(&self, level: Level, subsystem: &str, message: &str) -> Option<u64> {
        let mut repeats = self.repeats.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let key = (level, subsystem.to_string(), message.to_string());
        if let Some(repeat) = repeats.get_mut(&key) {
            if now.duration_since(repeat.written_at) < REPEAT_WINDOW {
                repeat.suppressed += 1;
                return None;
            }
            let left_out = repeat.suppressed;
            *repeat = Repeat {
                written_at: now,
                suppressed: 0,
            };
            return Some(left_out);
        }
        if repeats.len() >= REPEATS_REMEMBERED_MAX {
            repeats.clear();
        }
        repeats.insert(
            key,
            Repeat {
                written_at: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets the process's log (once, at startup; later calls are ignored). Before it, events go to
/// stderr at `info` as text.
pub fn init(level: Level, format: Format) {
    let _ = LOGGER.set(Logger::new(level, format, Box::new(std::io::stderr())));
}

fn logger() -> &'static Logger {
    LOGGER.get_or_init(|| Logger::new(Level::Info, Format::Text, Box::new(std::io::stderr())))
}

pub fn error(subsystem: &str, message: &str) {
    logger().log(Level::Error, subsystem, message);
}

/// An event at a level chosen at run time.
pub fn log(level: Level, subsystem: &str, message: &str) {
    logger().log(level, subsystem, message);
}

pub fn warn(subsystem: &str, message: &str) {
    logger().log(Level::Warn, subsystem, message);
}

pub fn info(subsystem: &str, message: &str) {
    logger().log(Level::Info, subsystem, message);
}

pub fn debug(subsystem: &str, message: &str) {
    logger().log(Level::Debug, subsystem, message);
}

/// The engine's logger: its events under the `engine` subsystem.
pub fn engine_logger() -> flin_engine::Logger {
    std::sync::Arc::new(|level, line: &str| logger().log(level.into(), "engine", line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A sink tests read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().unwrap().clone();
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(String::from)
                .collect()
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_utc(1_798_761_599_999), "2026-12-31T23:59:59.999Z");
    }

    #[test]
    fn json_lines_parse_and_carry_every_field() {
        let line = render(
            Format::Json,
            1_700_000_000_123,
            Level::Warn,
            "engine",
            "torn \"tail\"\nat 4",
        );
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let object: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(object["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(object["level"], "warn");
        assert_eq!(object["subsystem"], "engine");
        assert_eq!(object["message"], "torn \"tail\"\nat 4");
        let text = render(Format::Text, 0, Level::Info, "server", "a\nb");
        assert_eq!(text, "1970-01-01T00:00:00.000Z info server: a\\nb\n");
    }

    #[test]
    fn levels_below_the_threshold_are_dropped() {
        let sink = Captured::default();
        let log = Logger::new(Level::Warn, Format::Json, Box::new(sink.clone()));
        log.log(Level::Info, "server", "routine");
        log.log(Level::Debug, "server", "detail");
        log.log(Level::Warn, "server", "odd");
        log.log(Level::Error, "server", "bad");
        let levels: Vec<String> = sink
            .lines()
            .iter()
            .map(|line| {
                let object: serde_json::Value = serde_json::from_str(line).unwrap();
                object["level"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(levels, ["warn", "error"]);
        assert!("WARN".parse::<Level>() == Ok(Level::Warn));
        assert!("loud".parse::<Level>().is_err() && "xml".parse::<Format>().is_err());
    }

    #[test]
    fn a_repeated_error_is_written_once_per_window() {
        let sink = Captured::default();
        let log = Logger::new(Level::Debug, Format::Text, Box::new(sink.clone()));
        for _ in 0..5 {
            log.log(Level::Error, "engine", "compaction failed: disk full");
        }
        log.log(Level::Error, "engine", "sealing segment 3 failed");
        // Info events are never filtered.
        log.log(Level::Info, "server", "same");
        log.log(Level::Info, "server", "same");
        let lines = sink.lines();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0].ends_with("error engine: compaction failed: disk full"));
        assert!(lines[1].ends_with("error engine: sealing segment 3 failed"));
        // Past the window, the next one is written with the count of those left out.
        let key = (
            Level::Error,
            "engine".to_string(),
            "compaction failed: disk full".to_string(),
        );
        log.repeats
            .lock()
            .unwrap()
            .get_mut(&key)
            .unwrap()
            .written_at -= REPEAT_WINDOW;
        log.log(Level::Error, "engine", "compaction failed: disk full");
        let last = sink.lines().pop().unwrap();
        assert!(
            last.ends_with("disk full (and 4 more times in the last 60 s)"),
            "{last}"
        );
    }
}
