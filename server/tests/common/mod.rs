//! Starting the real `flin-server` binary for integration tests, and a raw RESP client.
#![allow(dead_code)] // each test file uses a different part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// A running server; Drop kills it, so no test leaves a process behind.
pub struct ServerGuard {
    child: Option<Child>,
    pub addr: SocketAddr,
}

impl ServerGuard {
    /// Starts the binary on an ephemeral port with `--data <dir>` and `extra` flags, and waits
    /// for its startup line.
    pub fn start(data: &Path, extra: &[&str]) -> ServerGuard {
        ServerGuard::spawn(0, data, extra, Stdio::null())
    }

    /// [`ServerGuard::start`] on a given port (0: an ephemeral one).
    pub fn start_on(port: u16, data: &Path, extra: &[&str]) -> ServerGuard {
        ServerGuard::spawn(port, data, extra, Stdio::null())
    }

    /// [`ServerGuard::start`] with the server's stderr (its log) piped to the returned reader.
    pub fn start_logging(data: &Path, extra: &[&str]) -> (ServerGuard, std::process::ChildStderr) {
        let mut guard = ServerGuard::spawn(0, data, extra, Stdio::piped());
        let stderr = guard.child.as_mut().and_then(|c| c.stderr.take());
        (guard, stderr.expect("stderr piped"))
    }

    fn spawn(port: u16, data: &Path, extra: &[&str], stderr: Stdio) -> ServerGuard {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flin-server"))
            .args(["--port", &port.to_string(), "--threads", "2", "--data"])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start flin-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("startup line");
        let addr = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("listening="))
            .unwrap_or_else(|| panic!("no address in startup line {line:?}"))
            .parse()
            .expect("address");
        ServerGuard {
            child: Some(child),
            addr,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe_kill(child.id() as i32, libc::SIGTERM);
        child.wait().expect("wait for flin-server")
    }

    /// Waits up to `within` for the server to exit by itself: its status, or None (still
    /// running; Drop kills it).
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the binary on `port` with `--data <dir>` and `extra`, expecting it to exit within
    /// `within` without serving (a refused start): its status (None: it did not exit, and was
    /// killed) and its stderr.
    pub fn run_to_exit(
        port: u16,
        data: &Path,
        extra: &[&str],
        within: Duration,
    ) -> (Option<ExitStatus>, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flin-server"))
            .args(["--port", &port.to_string(), "--threads", "2", "--data"])
            .arg(data)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flin-server");
        let deadline = std::time::Instant::now() + within;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break Some(status);
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        let _ = child
            .stderr
            .take()
            .expect("stderr piped")
            .read_to_string(&mut stderr);
        (status, stderr)
    }

    /// SIGKILL: a crash.
    pub fn crash(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill -9");
        child.wait().expect("reap");
    }

    pub fn connect(&self) -> RawClient {
        RawClient::connect(self.addr)
    }
}

#[allow(unsafe_code)]
fn unsafe_kill(pid: i32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child, not yet
    // reaped, so it cannot name another process.
    unsafe {
        libc::kill(pid, signal);
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A client that sends raw bytes and reads raw replies.
pub struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        RawClient { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads exactly `len` bytes.
    pub fn read_exact(&mut self, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        self.stream.read_exact(&mut buf).expect("read reply");
        buf
    }

    /// Reads one binary response frame: its header, then the body its length field announces.
    pub fn read_binary_frame(&mut self) -> Vec<u8> {
        let mut frame = self.read_exact(flin_net::binary::HEADER_LEN);
        let body_len = u32::from_le_bytes(frame[8..12].try_into().unwrap()) as usize;
        frame.extend(self.read_exact(body_len));
        frame
    }

    /// Sends `request` and asserts that the reply is exactly `expected`.
    pub fn roundtrip(&mut self, request: &[u8], expected: &[u8]) {
        self.send(request);
        let got = self.read_exact(expected.len());
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected),
            "reply to {:?}",
            String::from_utf8_lossy(request)
        );
    }

    /// True if the server closed the connection (read returns 0).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0))
    }
}

/// Encodes a command as a RESP multibulk.
pub fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    flin_net::resp::encode_command(&mut out, args);
    out
}
pub mod cluster;
