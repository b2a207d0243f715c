//! The server under test as a child process (start, SIGKILL, SIGTERM), and what its data
//! directory shows about the work the engine was doing when it died.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use flin_engine::format::{self, SegmentOrigin, SEGMENT_HEADER_BYTES};

/// How long the server may take to recover and print its startup line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How the server is started on every cycle.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub binary: PathBuf,
    pub data: PathBuf,
    /// The server's stderr (the engine's log lines), appended across restarts.
    pub log: PathBuf,
    /// `always`, `everysec` or `no`.
    pub fsync: String,
    pub segment_bytes: usize,
    pub compaction_interval_ms: u64,
    pub threads: usize,
}

/// A running `flin-server`; dropping it kills it, so no run leaves a process behind.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    /// Kept open: the server's stdout must not become a broken pipe.
    _stdout: BufReader<ChildStdout>,
}

type StartupLine = (std::io::Result<String>, BufReader<ChildStdout>);

impl ServerProcess {
    /// Starts the server on an ephemeral 127.0.0.1 port and waits for its startup line.
    pub fn start(settings: &ServerSettings) -> Result<ServerProcess, String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&settings.log)
            .map_err(|e| format!("open {}: {e}", settings.log.display()))?;
        let mut child = Command::new(&settings.binary)
            .args(["--bind", "127.0.0.1", "--port", "0", "--data"])
            .arg(&settings.data)
            .args(["--fsync", &settings.fsync])
            .args(["--segment-bytes", &settings.segment_bytes.to_string()])
            .args([
                "--compaction-interval-ms",
                &settings.compaction_interval_ms.to_string(),
            ])
            .args(["--threads", &settings.threads.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start {}: {e}", settings.binary.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        // Read the line on a thread so a server that hangs in recovery fails the run instead of
        // hanging it.
        let (sender, receiver) = mpsc::channel::<StartupLine>();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let read = reader.read_line(&mut line).map(|_| line);
            let _ = sender.send((read, reader));
        });
        let failed = |child: &mut Child, why: String| {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("{why} (server log: {})", settings.log.display()))
        };
        let (line, stdout) = match receiver.recv_timeout(STARTUP_TIMEOUT) {
            Ok((Ok(line), stdout)) => (line, stdout),
            Ok((Err(e), _)) => return failed(&mut child, format!("reading the startup line: {e}")),
            Err(_) => {
                return failed(
                    &mut child,
                    format!("no startup line within {STARTUP_TIMEOUT:?}"),
                )
            }
        };
        let addr = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("listening="))
            .and_then(|addr| addr.parse().ok());
        let Some(addr) = addr else {
            let status = child.try_wait().ok().flatten();
            return failed(
                &mut child,
                format!("server did not start: startup line {line:?}, exit {status:?}"),
            );
        };
        Ok(ServerProcess {
            child,
            addr,
            _stdout: stdout,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap: a crash at whatever the server was doing.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit: an orderly shutdown.
    pub fn terminate(mut self) -> std::io::Result<ExitStatus> {
        signal(self.child.id(), libc::SIGTERM);
        self.child.wait()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[allow(unsafe_code)]
fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions. The pid is our own child, not yet
    // reaped (we hold its `Child`), so it cannot name another process.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// What the data directory shows the engine was in the middle of: read right after a kill,
/// it says what recovery will have to finish or undo.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskActivity {
    /// A compaction was writing its outputs (a `.seg.tmp` of compaction origin).
    pub compaction_writing: bool,
    /// A compaction had committed its manifest (`MERGE`) or was writing it (`MERGE.tmp`) and
    /// had not finished the swap.
    pub compaction_swapping: bool,
    /// A new log segment was being created (a `.seg.tmp` of log origin, or one whose header is
    /// not written yet).
    pub segment_creating: bool,
    /// The segment before the active one was still waiting for its seal (not yet cut to its
    /// last record).
    pub seal_pending: bool,
    /// A hint file was being written (a `.hint.tmp` with no compaction output beside it).
    pub hint_writing: bool,
}

impl DiskActivity {
    pub fn compaction(&self) -> bool {
        self.compaction_writing || self.compaction_swapping
    }

    pub fn rotation(&self) -> bool {
        self.segment_creating || self.seal_pending
    }

    /// Short names of what was in progress, for the cycle line.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.compaction_writing, "compaction-writing"),
            (self.compaction_swapping, "compaction-swap"),
            (self.segment_creating, "segment-create"),
            (self.seal_pending, "seal-pending"),
            (self.hint_writing, "hint-writing"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// Reads what the data directory shows (cheap enough to poll every few hundred microseconds
/// while aiming a kill: one directory listing and a few small reads).
pub fn inspect(data: &Path, segment_bytes: usize) -> DiskActivity {
    let mut activity = DiskActivity::default();
    let Ok(entries) = fs::read_dir(data) else {
        return activity;
    };
    let mut log_segments = Vec::new();
    let mut hint_tmp = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if name == "MERGE" || name == "MERGE.tmp" {
            activity.compaction_swapping = true;
        } else if name.ends_with(".seg.tmp") {
            match read_origin(&path) {
                Some(SegmentOrigin::Compaction) => activity.compaction_writing = true,
                // A log segment, or a file whose header is not there yet: both are a segment
                // being created by rotation (compaction writes its header first, in the
                // mapping the read sees).
                _ => activity.segment_creating = true,
            }
        } else if name.ends_with(".hint.tmp") {
            hint_tmp = true;
        } else if let Some(id) = name
            .strip_suffix(".seg")
            .and_then(|stem| stem.parse::<u64>().ok())
        {
            log_segments.push((id, path));
        }
    }
    activity.hint_writing = hint_tmp && !activity.compaction_writing;
    // The newest log segment is active (preallocated, zero-padded); the one before it is
    // sealed unless its seal is pending. Compaction outputs have higher ids, so walk down
    // from the top until two log segments are found.
    log_segments.sort_unstable_by_key(|(id, _)| std::cmp::Reverse(*id));
    let mut logs_seen = 0;
    for (_, path) in &log_segments {
        if read_origin(path) != Some(SegmentOrigin::Log) {
            continue;
        }
        logs_seen += 1;
        if logs_seen == 2 {
            activity.seal_pending = is_unsealed(path, segment_bytes);
            break;
        }
    }
    activity
}

fn read_origin(path: &Path) -> Option<SegmentOrigin> {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    File::open(path).ok()?.read_exact(&mut header).ok()?;
    format::decode_segment_header(&header)
        .ok()
        .map(|(_, origin)| origin)
}

/// A sealed segment ends exactly at its last record; an unsealed one keeps its preallocated
/// length (a multiple of 4096, at least `segment_bytes`) and ends in zeros. The harness never
/// writes a value ending in 32 zero bytes, so the zeros tell the two apart.
fn is_unsealed(path: &Path, segment_bytes: usize) -> bool {
    let Ok(mut file) = File::open(path) else {
        return false;
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return false;
    };
    if len < segment_bytes as u64 || len % 4096 != 0 {
        return false;
    }
    let mut last = [0u8; 32];
    file.seek(SeekFrom::End(-32)).is_ok()
        && file.read_exact(&mut last).is_ok()
        && last.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment_file(path: &Path, origin: SegmentOrigin, len: usize, sealed: bool) {
        let mut bytes = vec![0u8; len];
        format::encode_segment_header(&mut bytes, 1, origin);
        if sealed {
            bytes[len - 1] = 1;
        }
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn names_what_was_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(inspect(d, 4096), DiskActivity::default());
        segment_file(
            &d.join("00000000000000000001.seg"),
            SegmentOrigin::Log,
            8192,
            false,
        );
        segment_file(
            &d.join("00000000000000000002.seg"),
            SegmentOrigin::Log,
            8192,
            false,
        );
        segment_file(
            &d.join("00000000000000000003.seg"),
            SegmentOrigin::Compaction,
            100,
            true,
        );
        let activity = inspect(d, 4096);
        assert!(activity.seal_pending && !activity.compaction());
        segment_file(
            &d.join("00000000000000000001.seg"),
            SegmentOrigin::Log,
            5000,
            true,
        );
        assert!(!inspect(d, 4096).seal_pending);
        segment_file(
            &d.join("00000000000000000004.seg.tmp"),
            SegmentOrigin::Compaction,
            4096,
            false,
        );
        fs::write(d.join("00000000000000000004.hint.tmp"), b"x").unwrap();
        let activity = inspect(d, 4096);
        assert!(activity.compaction_writing && !activity.hint_writing);
        fs::write(d.join("00000000000000000005.seg.tmp"), b"").unwrap();
        fs::write(d.join("MERGE"), b"").unwrap();
        let activity = inspect(d, 4096);
        assert!(activity.segment_creating && activity.compaction_swapping);
        assert_eq!(
            activity.names(),
            ["compaction-writing", "compaction-swap", "segment-create"]
        );
    }
}
