//! The two servers under comparison as child processes on 127.0.0.1, and a raw connection to
//! either. Dropping a [`Server`] kills its process, so no run leaves one behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::resp::{self, Value};

/// How long a server may take to start listening.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the tool waits for one reply before calling it missing.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A running server.
pub struct Server {
    pub name: &'static str,
    child: Child,
    pub addr: SocketAddr,
    /// Kept open so the server never writes to a closed pipe.
    _stdout: Option<BufReader<ChildStdout>>,
}

impl Server {
    /// `redis-server` on a free port, with no persistence, its files in `dir` and `extra`
    /// arguments (`--requirepass x`).
    pub fn start_redis(binary: &Path, dir: &Path, extra: &[&str]) -> Result<Server, String> {
        // Redis cannot pick its own port and say which: take a free one from the kernel, then
        // hand it over (a race with another process is possible, hence the retries).
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let child = Command::new(binary)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--protected-mode", "yes", "--logfile", ""])
                .arg("--dir")
                .arg(dir)
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("start {}: {e}", binary.display()))?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut server = Server {
                name: "redis",
                child,
                addr,
                _stdout: None,
            };
            match server.wait_until_serving() {
                Ok(()) => return Ok(server),
                Err(error) => last_error = error,
            }
        }
        Err(format!("redis-server did not start: {last_error}"))
    }

    /// `flin-server --memory` (or `--data`) on a port it picks (its startup line says which),
    /// with `extra` flags.
    pub fn start_flin(
        binary: &Path,
        data: Option<&Path>,
        extra: &[&str],
    ) -> Result<Server, String> {
        let mut command = Command::new(binary);
        command.args(["--bind", "127.0.0.1", "--port", "0", "--threads", "1"]);
        match data {
            Some(dir) => command.arg("--data").arg(dir),
            None => command.arg("--memory"),
        };
        command.args(extra);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {}: {e}", binary.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let addr = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("listening="))
            .and_then(|addr| addr.parse().ok());
        let Some(addr) = addr.filter(|_| read.is_ok()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("flin-server did not start: startup line {line:?}"));
        };
        let mut server = Server {
            name: "flin",
            child,
            addr,
            _stdout: Some(stdout),
        };
        server.wait_until_serving()?;
        Ok(server)
    }

    fn wait_until_serving(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{} exited at startup: {status}", self.name));
            }
            if let Ok(mut connection) = Connection::open(self.addr) {
                connection.send(b"*1\r\n$4\r\nPING\r\n");
                // PONG, or NOAUTH when started with a password: either way it is serving.
                if matches!(connection.read(), Value::Simple(_) | Value::Error(_)) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!(
                    "{} not serving within {STARTUP_TIMEOUT:?}",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running (a panic or crash ends it).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// A binary found beside this one (cargo's target dir), else on PATH.
pub fn sibling_or_path(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// One client connection; replies are read with [`REPLY_TIMEOUT`].
pub struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
    closed: bool,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_millis(100)))?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        Ok(Connection {
            stream,
            buffer: Vec::new(),
            closed: false,
        })
    }

    /// Sends raw bytes; a failed write shows up as a closed connection on the next read.
    pub fn send(&mut self, bytes: &[u8]) {
        if self.stream.write_all(bytes).is_err() {
            self.closed = true;
        }
    }

    /// The next reply, [`Value::Closed`] if the server hung up first, [`Value::Timeout`] if
    /// none came in time. A reply that does not parse ends the connection (shown as an error
    /// value naming the problem, so it is reported as a difference).
    pub fn read(&mut self) -> Value {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match resp::parse(&self.buffer) {
                Ok(Some((value, used))) => {
                    self.buffer.drain(..used);
                    return value;
                }
                Ok(None) => {}
                Err(problem) => {
                    self.closed = true;
                    self.buffer.clear();
                    return Value::Error(format!("<unparsable reply: {problem}>").into_bytes());
                }
            }
            if self.closed {
                return Value::Closed;
            }
            if Instant::now() > deadline {
                return Value::Timeout;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => self.closed = true,
            }
        }
    }
}
