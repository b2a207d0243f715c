//! etcd-put-bench: puts per second into an etcd cluster through its v3 HTTP/JSON gateway
//! (`POST /v3/kv/put`), one request in flight per connection, for issue 14's comparison of a
//! Flin cluster with etcd (benches/cluster-compare.sh; docs/benchmarks.md, "Cluster (issue 14)").
//!
//! Debian's etcd 3.4 ships no `benchmark` tool, and `etcdctl check perf` runs a fixed rate for
//! 60 s rather than as fast as it can; this client is the closest match to flin-bench's plain
//! SET: N keep-alive connections, each sending the next put when the last one was answered.
//! Keys are `k<n>` with `n` uniform in the keyspace, values `-d` bytes.
//!
//! `etcd-put-bench --endpoints 127.0.0.1:7840,127.0.0.1:7842 -c 50 -n 20000 -d 3`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flin_benches::crashtest::rng::Rng;

const HELP: &str = "\
etcd-put-bench: etcd puts/s through the v3 HTTP/JSON gateway, one put in flight per connection

USAGE:
    etcd-put-bench [FLAGS]

FLAGS:
        --endpoints <LIST>     comma-separated ip:port of etcd client URLs; connections are
                               spread over them in turn (default 127.0.0.1:2379)
    -c, --connections <N>      connections, one thread each (default 50)
    -n, --requests <N>         puts in all (default 20000)
    -r, --keyspace <N>         keys k0 .. k<N-1>, uniformly random (default 1000000)
    -d, --value-size <BYTES>   value size (default 3)
        --duration <SECS>      stop after this long even if puts remain (default 300)
        --help                 print this help
";

/// Longest HTTP response head or body this client accepts: a put's answer is a few hundred
/// bytes, so more is a broken server.
const RESPONSE_BYTES_MAX: usize = 1 << 20;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

struct Options {
    endpoints: Vec<SocketAddr>,
    connections: usize,
    requests: u64,
    keyspace: u64,
    value_bytes: usize,
    duration: Duration,
}

fn parse_options(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        endpoints: vec![SocketAddr::from(([127, 0, 0, 1], 2379))],
        connections: 50,
        requests: 20_000,
        keyspace: 1_000_000,
        value_bytes: 3,
        duration: Duration::from_secs(300),
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |name: &str, text: String| -> Result<u64, String> {
            text.replace('_', "")
                .parse()
                .map_err(|_| format!("{name}: '{text}' is not a number"))
        };
        match flag.as_str() {
            "--endpoints" => {
                options.endpoints = value("--endpoints")?
                    .split(',')
                    .map(|addr| {
                        addr.parse()
                            .map_err(|_| format!("--endpoints: '{addr}' is not ip:port"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "-c" | "--connections" => {
                options.connections =
                    number("--connections", value("--connections")?)?.max(1) as usize
            }
            "-n" | "--requests" => options.requests = number("--requests", value("--requests")?)?,
            "-r" | "--keyspace" => {
                options.keyspace = number("--keyspace", value("--keyspace")?)?.max(1)
            }
            "-d" | "--value-size" => {
                options.value_bytes = number("--value-size", value("--value-size")?)? as usize
            }
            "--duration" => {
                options.duration = Duration::from_secs(number("--duration", value("--duration")?)?)
            }
            "--help" => return Ok(None),
            other => return Err(format!("unknown flag {other} (see --help)")),
        }
    }
    Ok(Some(options))
}

/// Standard base64 with padding, as protobuf's JSON mapping wants `bytes` fields.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One keep-alive connection to an etcd member's gateway.
struct Connection {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    host: String,
}

impl Connection {
    fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            host: addr.to_string(),
        })
    }

    /// POSTs `body` to `path`; the status code and the response body.
    fn post(&mut self, path: &str, body: &str) -> Result<(u16, Vec<u8>), String> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.writer
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or(format!("bad status line {line:?}"))?;
        let mut length = None;
        let mut chunked = false;
        let mut head_bytes = 0;
        loop {
            line.clear();
            head_bytes += self
                .reader
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            if head_bytes > RESPONSE_BYTES_MAX {
                return Err("response head too long".into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader
                    .read_line(&mut line)
                    .map_err(|e| e.to_string())?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| format!("bad chunk size {line:?}"))?;
                if body.len() + size > RESPONSE_BYTES_MAX {
                    return Err("response body too long".into());
                }
                let mut chunk = vec![0; size + 2];
                self.reader
                    .read_exact(&mut chunk)
                    .map_err(|e| e.to_string())?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            let length = length.ok_or("response without a length")?;
            if length > RESPONSE_BYTES_MAX {
                return Err("response body too long".into());
            }
            body.resize(length, 0);
            self.reader
                .read_exact(&mut body)
                .map_err(|e| e.to_string())?;
        }
        Ok((status, body))
    }
}

fn main() {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{HELP}");
            return;
        }
        Err(message) => {
            eprintln!("etcd-put-bench: {message}");
            std::process::exit(2);
        }
    };
    let remaining = Arc::new(AtomicU64::new(options.requests));
    let failed = Arc::new(AtomicU64::new(0));
    let value = base64(&flin_benches::value(options.value_bytes));
    let deadline = Instant::now() + options.duration;
    let started = Instant::now();
    let threads: Vec<_> = (0..options.connections)
        .map(|index| {
            let addr = options.endpoints[index % options.endpoints.len()];
            let (remaining, failed, value) = (remaining.clone(), failed.clone(), value.clone());
            let keyspace = options.keyspace;
            std::thread::spawn(move || {
                let mut rng = Rng::derive(1, 0xe7cd, index as u64);
                let mut connection = match Connection::open(addr) {
                    Ok(connection) => connection,
                    Err(e) => {
                        eprintln!("etcd-put-bench: connect {addr}: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                        return 0u64;
                    }
                };
                let mut done = 0;
                while remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                    && Instant::now() < deadline
                {
                    let key = base64(format!("k{}", rng.below(keyspace)).as_bytes());
                    let body = format!(r#"{{"key":"{key}","value":"{value}"}}"#);
                    match connection.post("/v3/kv/put", &body) {
                        Ok((200, _)) => done += 1,
                        Ok((status, body)) => {
                            if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!(
                                    "etcd-put-bench: status {status}: {}",
                                    String::from_utf8_lossy(&body)
                                );
                            }
                        }
                        Err(e) => {
                            eprintln!("etcd-put-bench: {addr}: {e}");
                            failed.fetch_add(1, Ordering::Relaxed);
                            return done;
                        }
                    }
                }
                done
            })
        })
        .collect();
    let done: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "puts={done} seconds={seconds:.2} puts_per_sec={:.0} failed={}",
        done as f64 / seconds,
        failed.load(Ordering::Relaxed)
    );
    if failed.load(Ordering::Relaxed) > 0 {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
    }
}
