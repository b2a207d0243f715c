//! One `flin-server` node of the cluster under test, as a child process: started with its
//! cluster flags, killed with SIGKILL, paused with SIGSTOP and resumed with SIGCONT.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a node may take to recover and print its startup line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How a node is started, every time.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub binary: PathBuf,
    pub id: u64,
    pub port: u16,
    pub data: PathBuf,
    /// stderr of every run of the node, appended.
    pub log: PathBuf,
    /// `--cluster`: every member's client address.
    pub members: String,
    /// `--cluster-peers`: the fault proxies this node dials (empty: none).
    pub dial: String,
    pub tick_ms: u64,
    /// More flags, after the ones above.
    pub extra: Vec<String>,
}

/// A running node; dropping it kills it.
pub struct NodeProcess {
    child: Child,
    paused: bool,
}

impl NodeProcess {
    /// Starts the node and waits for its startup line.
    pub fn start(settings: &NodeSettings) -> Result<NodeProcess, String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&settings.log)
            .map_err(|e| format!("open {}: {e}", settings.log.display()))?;
        let mut command = Command::new(&settings.binary);
        command
            .args(["--bind", "127.0.0.1", "--port", &settings.port.to_string()])
            .arg("--data")
            .arg(&settings.data)
            .args(["--node-id", &settings.id.to_string()])
            .args(["--cluster", &settings.members])
            .args(["--raft-tick-ms", &settings.tick_ms.to_string()])
            .args(["--fsync", "always", "--admin-port", "0", "--threads", "1"]);
        if !settings.dial.is_empty() {
            command.args(["--cluster-peers", &settings.dial]);
        }
        command.args(&settings.extra);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start {}: {e}", settings.binary.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        // Read the startup line on a thread (a node hanging in recovery fails the run), then
        // keep draining so the node never writes to a broken pipe.
        let (sender, receiver) = mpsc::channel::<std::io::Result<String>>();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let read = reader.read_line(&mut line).map(|_| line);
            let _ = sender.send(read);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = match receiver.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(line)) if line.contains("listening=") => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&settings.log).unwrap_or_default();
                let last = log.lines().rev().find(|l| !l.trim().is_empty());
                return Err(format!(
                    "node {} did not start ({other:?}); the last line of its log ({}): {}",
                    settings.id,
                    settings.log.display(),
                    last.unwrap_or("(empty)")
                ));
            }
        };
        drop(line);
        Ok(NodeProcess {
            child,
            paused: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: the node freezes, its sockets stay open.
    pub fn pause(&mut self) {
        signal(self.child.id(), libc::SIGSTOP);
        self.paused = true;
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        signal(self.child.id(), libc::SIGCONT);
        self.paused = false;
    }

    /// True if the process exited on its own (a crash: the run fails).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if self.paused {
            self.resume();
        }
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
