//! The admin HTTP port (`--admin-port`, `--admin-bind`): health, readiness, stats as JSON,
//! Prometheus metrics, the cluster's state. docs/operations.md is the operator's guide.
//!
//! # Layout
//! - `http`: the pure HTTP/1.1 core (a head parsed by `httparse` into a request or a refusal,
//!   responses to bytes, the password check).
//! - `snapshot`: the daemon's figures gathered from [`Shared`], rendered as JSON.
//! - `process`: resident memory and the data directory's bytes, for the snapshot.
//! - `metrics`: the same snapshot in Prometheus's text format.
//! - `dashboard`: `GET /`, the page (`dashboard.html`, compiled in).
//! - this file: the shell: an accepting thread, a blocking `std::net` listener, a thread per
//!   connection up to [`CONNECTIONS_MAX`], and [`route`], from a request to a response.
//!
//! # Why a thread per connection, at most eight
//! The admin port is for an operator's probes, a scraper every few seconds and a dashboard
//! polling once a second, not for load: it must never take time from the event loops, and a
//! hostile client must not be able to grow it. Plain threads with no async runtime are the
//! least machinery that does that. Each connection gets [`REQUEST_TIMEOUT`] to send its head
//! and [`WRITE_TIMEOUT`] to take the response, then it is closed. One thread serving one
//! connection at a time (the first cut) let a client that sends half a request hold every
//! other request for [`REQUEST_TIMEOUT`], and seven of them for 14 s; so each connection has
//! a thread of its own, at most [`CONNECTIONS_MAX`] at once, and one more is answered 503 by
//! the accepting thread if no place frees within [`BUSY_WAIT`]. A request therefore waits for
//! no other client beyond that: it is served or refused, and the data port, served by other
//! threads, never notices. docs/operations.md has what this was measured to cost.

pub mod dashboard;
pub mod http;
pub mod metrics;
pub mod process;
pub mod snapshot;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::context::Shared;
use http::{Method, Parsed, Request, Response, Status};

/// Most connections served at once, each on its own thread; past it (after [`BUSY_WAIT`]) a
/// connection is answered 503 (`Retry-After: 1`) and closed. Room for a few dashboards, a
/// scraper and probes.
pub const CONNECTIONS_MAX: usize = 8;
/// How long a connection has to send its whole request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connection has to take its response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the accepting thread waits for a place before answering 503. A connection keeps
/// its place until its client has read the response and closed (see [`drain`]), a moment
/// after the client saw the response end: a client's next request must not be refused for
/// that moment.
const BUSY_WAIT: Duration = Duration::from_millis(100);
/// How long the accepting thread gives a 503 to be written when every place is taken.
const BUSY_WRITE_TIMEOUT: Duration = Duration::from_millis(100);
/// After a refusal, how long unread request bytes are drained, so that closing does not send
/// a reset that could destroy the response before the client reads it.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(100);
/// Most bytes drained after a response.
const DRAIN_BYTES_MAX: usize = 64 * 1024;

/// What the admin port answers from: known from startup on, before the engine is open.
pub struct AdminState {
    /// `--requirepass`: every endpoint but `/health` needs it.
    password: Option<Vec<u8>>,
    /// Set once the engine is open (recovery done) and the data port is bound.
    shared: OnceLock<Arc<Shared>>,
    /// How long recovery took.
    recovery_seconds: OnceLock<f64>,
    /// True while the data port serves: after startup, before shutdown.
    serving: AtomicBool,
}

impl AdminState {
    pub fn new(password: Option<Vec<u8>>) -> AdminState {
        AdminState {
            password,
            shared: OnceLock::new(),
            recovery_seconds: OnceLock::new(),
            serving: AtomicBool::new(false),
        }
    }

    /// Recovery has finished and the data port is about to serve: `/ready` says 200 from now.
    pub fn serving(&self, shared: Arc<Shared>, recovery: Duration) {
        let _ = self.shared.set(shared);
        let _ = self.recovery_seconds.set(recovery.as_secs_f64());
        self.serving.store(true, Ordering::Release);
    }

    /// Shutdown has begun: `/ready` says 503 again.
    pub fn stopping(&self) {
        self.serving.store(false, Ordering::Release);
    }

    fn ready(&self) -> Option<&Arc<Shared>> {
        self.serving
            .load(Ordering::Acquire)
            .then(|| self.shared.get())
            .flatten()
    }
}

/// The answer to `request`.
pub fn route(state: &AdminState, request: &Request) -> Response {
    let known = matches!(
        request.path.as_str(),
        "/" | "/health" | "/ready" | "/api/stats" | "/metrics" | "/api/cluster"
    );
    if !known {
        return Response::status(Status::NotFound);
    }
    if request.path == "/health" {
        return Response::new(Status::Ok, http::TEXT, "ok\n");
    }
    if let Some(password) = &state.password {
        if !http::authorized(request.authorization.as_deref(), password) {
            return Response::status(Status::Unauthorized).with_header(
                "WWW-Authenticate",
                "Basic realm=\"flin\", charset=\"UTF-8\"",
            );
        }
    }
    if request.path == "/" {
        // Served before readiness: the page itself shows "not ready" from /api/stats's 503.
        return dashboard::page();
    }
    let Some(shared) = state.ready() else {
        let mut response = Response::new(Status::ServiceUnavailable, http::TEXT, "not ready\n");
        response.headers.push(("Retry-After", "1"));
        return response;
    };
    let recovery_seconds = state.recovery_seconds.get().copied().unwrap_or(0.0);
    match request.path.as_str() {
        "/ready" => match cluster_not_ready(shared) {
            None => Response::new(Status::Ok, http::TEXT, "ready\n"),
            Some(why) => {
                let mut response = Response::new(Status::ServiceUnavailable, http::TEXT, why);
                response.headers.push(("Retry-After", "1"));
                response
            }
        },
        "/api/stats" => {
            let snapshot = snapshot::Snapshot::gather(shared, recovery_seconds);
            let mut body = snapshot.to_json().to_string();
            body.push('\n');
            Response::new(Status::Ok, http::JSON, body)
        }
        "/metrics" => {
            let snapshot = snapshot::Snapshot::gather(shared, recovery_seconds);
            Response::new(Status::Ok, http::PROMETHEUS, metrics::render(&snapshot))
        }
        "/api/cluster" => {
            let mut body = cluster_json(shared).to_string();
            body.push('\n');
            Response::new(Status::Ok, http::JSON, body)
        }
        other => unreachable!("route {other} is known but not answered"),
    }
}

/// The admin port's thread, listening.
pub struct AdminServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Binds `addr` and starts the thread.
    pub fn start(addr: SocketAddr, state: Arc<AdminState>) -> Result<AdminServer, String> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| format!("cannot listen for admin HTTP on {addr}: {e}"))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| format!("admin listener: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("flin-admin".into())
            .spawn(move || {
                let places = Arc::new(Places::default());
                for stream in listener.incoming() {
                    if stopped.load(Ordering::Acquire) {
                        break;
                    }
                    // An accept error (a connection reset before it was accepted, too many
                    // open files) concerns that connection only.
                    if let Ok(stream) = stream {
                        dispatch(stream, &state, &places);
                    }
                }
            })
            .map_err(|e| format!("cannot start the admin thread: {e}"))?;
        Ok(AdminServer {
            local_addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the accepting thread: sets the flag, then wakes its blocking accept with a
    /// connection of our own. Requests being served finish on their own threads (within the
    /// timeouts); the process may exit before they do.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        let mut wake = self.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        if TcpStream::connect_timeout(&wake, WRITE_TIMEOUT).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
        // If the wake-up connection failed, the thread is left blocked in accept; the
        // process is exiting and ends it.
    }
}

/// The places for connections being served: a count, and a signal when one is given back.
#[derive(Default)]
struct Places {
    taken: Mutex<usize>,
    freed: Condvar,
}

impl Places {
    /// A place, waiting up to [`BUSY_WAIT`] for one; `None` if all stay taken.
    fn take(places: &Arc<Places>) -> Option<Slot> {
        let taken = places.taken.lock().unwrap_or_else(|e| e.into_inner());
        let (mut taken, _) = places
            .freed
            .wait_timeout_while(taken, BUSY_WAIT, |taken| *taken >= CONNECTIONS_MAX)
            .unwrap_or_else(|e| e.into_inner());
        if *taken >= CONNECTIONS_MAX {
            return None;
        }
        *taken += 1;
        Some(Slot(places.clone()))
    }
}

/// One of the [`CONNECTIONS_MAX`] places, given back when dropped (a panic included).
struct Slot(Arc<Places>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut taken = self.0.taken.lock().unwrap_or_else(|e| e.into_inner());
        *taken -= 1;
        self.0.freed.notify_one();
    }
}

/// Serves `stream` on a thread of its own, or answers 503 when [`CONNECTIONS_MAX`] are still
/// being served after [`BUSY_WAIT`].
fn dispatch(stream: TcpStream, state: &Arc<AdminState>, places: &Arc<Places>) {
    let Some(slot) = Places::take(places) else {
        refuse_busy(stream);
        return;
    };
    let state = state.clone();
    // If the thread cannot start, the closure is dropped: the slot is given back and the
    // connection closed.
    let _ = std::thread::Builder::new()
        .name("flin-admin-conn".into())
        .spawn(move || {
            let _slot = slot;
            serve_connection(stream, &state);
        });
}

/// The answer when every place is taken, written without reading the request: a few hundred
/// bytes into a fresh socket's buffer do not block, and the accepting thread must not wait
/// for a client.
fn refuse_busy(mut stream: TcpStream) {
    let response = Response::new(Status::ServiceUnavailable, http::TEXT, "busy\n")
        .with_header("Retry-After", "1");
    let _ = stream.set_write_timeout(Some(BUSY_WRITE_TIMEOUT));
    let _ = stream.write_all(&response.encode(false));
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Reads one request head (within [`REQUEST_TIMEOUT`] and [`http::HEAD_BYTES_MAX`]), answers
/// it, and closes.
fn serve_connection(mut stream: TcpStream, state: &AdminState) {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (response, head_only) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break (Response::status(Status::RequestTimeout), false);
        }
        let read = match stream.read(&mut chunk) {
            Ok(0) => return, // closed before a whole head: nothing to answer
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break (Response::status(Status::RequestTimeout), false),
        };
        // Keep at most one byte past the limit: enough for the parser to see it passed.
        let room = (http::HEAD_BYTES_MAX + 1).saturating_sub(buffer.len());
        buffer.extend_from_slice(&chunk[..read.min(room)]);
        match http::parse(&buffer) {
            Parsed::Incomplete => continue,
            Parsed::Refused(status) => {
                let mut response = Response::status(status);
                if status == Status::MethodNotAllowed {
                    response.headers.push(("Allow", "GET, HEAD"));
                }
                break (response, false);
            }
            Parsed::Request(request) => {
                break (route(state, &request), request.method == Method::Head)
            }
        }
    };
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    if stream.write_all(&response.encode(head_only)).is_err() {
        return;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    drain(&mut stream);
}

/// Reads and drops what the client still sends, briefly, before the socket closes: closing
/// with unread bytes makes the kernel send a reset, which may discard the response in flight.
fn drain(stream: &mut TcpStream) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut chunk = [0u8; 4096];
    let mut drained = 0;
    while drained < DRAIN_BYTES_MAX {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// Why a cluster node is not ready (`None`: ready): it must know a leader and have applied
/// what it knows committed. A lone node is ready once it serves.
fn cluster_not_ready(shared: &Shared) -> Option<&'static str> {
    let view = shared.store.cluster()?.view();
    if view.leader.is_none() {
        return Some("not ready: no leader known\n");
    }
    (view.applied < view.commit).then_some("not ready: catching up\n")
}

/// `/api/cluster`: this node's view of its cluster (`{"mode":"standalone"}` on a lone node).
fn cluster_json(shared: &Shared) -> serde_json::Value {
    let Some(cluster) = shared.store.cluster() else {
        return serde_json::json!({ "mode": "standalone" });
    };
    let view = cluster.view();
    let counter = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let members = view.voters.iter().chain(&view.learners).copied();
    let nodes: Vec<serde_json::Value> = members
        .filter_map(|id| Some((id, cluster.address(id)?)))
        .map(|(id, addr)| {
            let matched = view.matches.get(&id).copied();
            let me = id == cluster.id();
            let role = match (me, view.leader == Some(id)) {
                (true, _) => crate::cmd::cluster::role_name(view.role),
                (false, true) => "leader",
                (false, false) => "follower",
            };
            serde_json::json!({
                "id": id,
                "addr": addr.to_string(),
                "self": me,
                "role": role,
                "learner": view.learners.contains(&id),
                "leader": view.leader == Some(id),
                "term": view.term,
                // Known for this node; for the others only their match index, on the leader.
                "commit_index": me.then_some(view.commit),
                "applied_index": me.then_some(view.applied),
                "match_index": matched,
                "lag": matched.map(|m| view.last_index.saturating_sub(m)),
                // When this node last heard from it (null: never, or itself), and the health
                // CLUSTER SHARDS reports.
                "heard_ms_ago": view.heard.get(&id).map(|at| at.elapsed().as_millis() as u64),
                "health": crate::cmd::cluster::health(cluster, &view, id),
            })
        })
        .collect();
    serde_json::json!({
        "mode": "cluster",
        "id": cluster.id(),
        "role": crate::cmd::cluster::role_name(view.role),
        "term": view.term,
        "leader": view.leader,
        "accepting_writes": cluster.writable(),
        "serving_reads": cluster.readable(),
        "commit_index": view.commit,
        "applied_index": view.applied,
        "last_index": view.last_index,
        "elections_won": view.elections_won,
        "snapshots_sent": counter(&cluster.snapshots_sent),
        "snapshot_bytes_sent": counter(&cluster.snapshot_bytes_sent),
        "snapshot_installed_index": counter(&cluster.snapshot_installed_index),
        "nodes": nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::snapshot::{Snapshot, OBJECTS_PER_MODEL_MAX};
    use super::*;

    fn get(state: &AdminState, path: &str) -> Status {
        let request = Request {
            method: Method::Get,
            path: path.into(),
            authorization: None,
        };
        route(state, &request).status
    }

    fn shared() -> Arc<Shared> {
        let options = crate::config::Options::default();
        Arc::new(Shared::new(flin_engine::Config::memory(), options))
    }

    #[test]
    fn ready_only_between_recovery_and_shutdown() {
        let state = AdminState::new(None);
        assert_eq!(get(&state, "/health"), Status::Ok);
        // The page is served during recovery too: it shows /api/stats's 503 itself.
        assert_eq!(get(&state, "/"), Status::Ok);
        for path in ["/ready", "/api/stats", "/metrics"] {
            assert_eq!(get(&state, path), Status::ServiceUnavailable, "{path}");
        }
        state.serving(shared(), Duration::from_millis(3));
        for path in ["/ready", "/api/stats", "/metrics", "/api/cluster"] {
            assert_eq!(get(&state, path), Status::Ok, "{path}");
        }
        state.stopping();
        assert_eq!(get(&state, "/ready"), Status::ServiceUnavailable);
        assert_eq!(get(&state, "/health"), Status::Ok);
    }

    #[test]
    fn the_password_is_checked_before_readiness() {
        let state = AdminState::new(Some(b"pw".to_vec()));
        assert_eq!(get(&state, "/ready"), Status::Unauthorized);
        assert_eq!(get(&state, "/"), Status::Unauthorized);
        assert_eq!(get(&state, "/health"), Status::Ok);
        assert_eq!(get(&state, "/elsewhere"), Status::NotFound);
    }

    #[test]
    fn objects_past_the_cap_are_counted_not_shown() {
        let shared = shared();
        for i in 0..OBJECTS_PER_MODEL_MAX + 3 {
            let name = format!("q{i:04}");
            shared
                .queues
                .declare(&shared.store, name.as_bytes(), Default::default(), 1)
                .expect("declare");
        }
        let snapshot = Snapshot::gather(&shared, 0.0);
        assert_eq!(snapshot.queues.len(), OBJECTS_PER_MODEL_MAX);
        assert_eq!(snapshot.queues_total, OBJECTS_PER_MODEL_MAX + 3);
        assert_eq!(snapshot.dropped.queues, 3);
        assert_eq!(snapshot.queues[0].name, b"q0000");
        let text = metrics::render(&snapshot);
        assert!(text.contains("\nflin_metrics_series_dropped{model=\"queue\"} 3\n"));
        assert!(text.contains("\nflin_queues 103\n"));
        assert_eq!(
            text.matches("flin_queue_ready{").count(),
            OBJECTS_PER_MODEL_MAX
        );
        assert_eq!(snapshot.to_json()["dropped"]["queues"], 3);
    }
}
