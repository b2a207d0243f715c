//! [`KvService`]: flin-net's `Service` for the key-value command set. RESP commands go to the
//! dispatcher and their frames are encoded in the session's RESP version; binary requests are
//! turned into the same commands, and their frames into binary responses: typed bodies for
//! the typed key-value opcodes, a typed value for CALL and the opcode table's rows. Two
//! exceptions, for speed: GET and a plain SET (no TTL, no condition) of an authenticated
//! connection skip the argument list and the command table (GET copies the value from the log
//! straight into the response); they do what the commands do in those cases, SET through the
//! same `Call::write`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use flin_net::binary::{Op, Request, SetCondition, Status};
use flin_net::{Action, ConnectionHandle, Service};

use crate::context::{ClientInfo, Session, Shared};
use crate::dispatch;
use crate::frame::Frame;
use crate::queue::session::{self as queue_session, QueueSession, ReplyTarget};
use crate::queue::{DeliveryKind, Mailbox};
use crate::recorder::{Family, Outcome};

/// The daemon's service: shared state behind an `Arc`, one [`Session`] per connection.
pub struct KvService {
    pub shared: Arc<Shared>,
}

impl KvService {
    pub fn new(shared: Arc<Shared>) -> KvService {
        KvService { shared }
    }
}

impl Service for KvService {
    type Session = Session;

    fn new_session(&self, handle: ConnectionHandle, peer: SocketAddr) -> Session {
        let conn_id = handle.id();
        let counters = &self.shared.counters;
        counters
            .connections_received
            .fetch_add(1, Ordering::Relaxed);
        counters.connected_clients.fetch_add(1, Ordering::Relaxed);
        self.shared
            .clients
            .lock()
            .expect("client registry lock")
            .insert(
                conn_id,
                ClientInfo {
                    peer,
                    name: String::new(),
                    lib_name: String::new(),
                    lib_version: String::new(),
                    resp: 2,
                    connected_at: Instant::now(),
                },
            );
        let mut session = Session::new(conn_id, peer, self.shared.options.requirepass.is_none());
        session.queue = QueueSession::new(Mailbox::new(move || handle.wake()));
        session
    }

    /// The command's latency is recorded from here (its arguments parsed) to its reply
    /// encoded into `out` (`recorder`'s module doc says what that leaves out).
    fn handle_resp(&self, session: &mut Session, args: &[&[u8]], out: &mut Vec<u8>) -> Action {
        let started = Instant::now();
        let (frame, action) = dispatch::execute(&self.shared, session, args);
        if !matches!(action, Action::Park { .. }) {
            frame.encode(session.resp, out);
        }
        self.shared
            .recorder
            .latency(session.family, started.elapsed());
        action
    }

    fn handle_binary(
        &self,
        session: &mut Session,
        request: &Request<'_>,
        out: &mut Vec<u8>,
    ) -> Action {
        let started = Instant::now();
        session.queue.binary = true;
        let action = respond_binary(&self.shared, session, request, out);
        self.shared
            .recorder
            .latency(session.family, started.elapsed());
        action
    }

    /// Deliveries from the session's mailbox: pushes to a subscription are written; a
    /// delivery for the parked QUEUE.BPOP answers it (acking first with NOACK, so the reply
    /// waits behind that write's gate).
    fn on_wake(&self, session: &mut Session, out: &mut Vec<u8>) -> Action {
        let shared = &self.shared;
        for delivery in session.queue.mailbox.take() {
            if !queue_session::is_for_parked(&session.queue.parked, &delivery) {
                match delivery.kind {
                    DeliveryKind::Push => {
                        for message in &delivery.messages {
                            queue_session::write_push(
                                out,
                                session.resp,
                                session.queue.binary,
                                &delivery.queue,
                                message,
                            );
                        }
                    }
                    DeliveryKind::Cancelled => queue_session::write_cancel(
                        out,
                        session.resp,
                        session.queue.binary,
                        &delivery.queue,
                    ),
                    // A pop's messages that arrived after its wait ended go back.
                    DeliveryKind::Pop { .. } if !delivery.messages.is_empty() => {
                        let ids: Vec<u64> = delivery.messages.iter().map(|m| m.id).collect();
                        let _ = shared.queues.nack(
                            crate::queue::Scope::Own(&shared.store),
                            &delivery.queue,
                            &ids,
                            true,
                            session.id,
                            shared.now_ms(),
                        );
                    }
                    _ => {}
                }
                continue;
            }
            let parked = session.queue.parked.take().expect("parked");
            let frame = match delivery.kind {
                DeliveryKind::Deleted => Frame::error(format!(
                    "ERR QUEUE.BPOP: queue '{}' was deleted while waiting",
                    String::from_utf8_lossy(&delivery.queue)
                )),
                DeliveryKind::Pop { noack: true } => {
                    let ids: Vec<u64> = delivery.messages.iter().map(|m| m.id).collect();
                    match shared.queues.ack(
                        crate::queue::Scope::Own(&shared.store),
                        &delivery.queue,
                        &ids,
                        session.id,
                        shared.now_ms(),
                    ) {
                        Ok((_, seq)) => {
                            session.note_write(seq);
                            queue_session::messages_frame(delivery.messages)
                        }
                        Err(error) => Frame::error(format!("ERR QUEUE.BPOP: {error}")),
                    }
                }
                _ => queue_session::messages_frame(delivery.messages),
            };
            queue_session::write_reply(out, session.resp, parked.target, &frame);
        }
        if let Some(frame) = crate::stream::commands::look_again(shared, session) {
            let frame = under_lease(shared, session, frame);
            let parked = session.stream.parked.take().expect("parked");
            queue_session::write_reply(out, session.resp, parked.target, &frame);
        }
        if let Some(parked) = &session.stream.parked {
            return Action::Park {
                deadline_ms: parked.deadline_ms,
            };
        }
        if session.waiting.is_some() {
            return answer_wait(&self.shared, session, out);
        }
        queue_session::deliveries_action(&session.queue.parked)
    }

    /// A QUEUE.BPOP's timeout: it stops waiting (unless its messages arrived meanwhile) and
    /// answers a null array.
    fn on_park_timeout(&self, session: &mut Session, out: &mut Vec<u8>) -> Action {
        if session.waiting.is_some() {
            return answer_wait(&self.shared, session, out);
        }
        if let Some(parked) = &session.queue.parked {
            self.shared.queues.stop_waiting(&parked.queue, session.id);
        }
        let action = self.on_wake(session, out);
        if let Some(parked) = session.queue.parked.take() {
            queue_session::write_reply(out, session.resp, parked.target, &Frame::NullArray);
        }
        // A long poll that found nothing by its deadline answers an empty array.
        if session.stream.parked.is_some() {
            let frame = under_lease(&self.shared, session, Frame::Array(Vec::new()));
            let parked = session.stream.parked.take().expect("parked");
            queue_session::write_reply(out, session.resp, parked.target, &frame);
        }
        let _ = action;
        Action::Continue
    }

    /// Under `--fsync always` (the only time the loop asks), the gate of the reply just
    /// written: the seq its command wrote, or the log's last seq for a reply that wrote
    /// nothing, so no reply leaves before what it acknowledges or shows is durable.
    fn take_reply_gate(&self, session: &mut Session) -> Option<u64> {
        let written = session.reply_gate.take();
        written.or_else(|| match self.shared.store.cluster() {
            Some(cluster) => cluster.gates.gate_for_read(),
            None => self.shared.gates.as_ref()?.gate_for_read(),
        })
    }

    fn requires_auth(&self, session: &Session) -> bool {
        !session.authenticated
    }

    fn on_close(&self, session: &mut Session) {
        self.shared
            .counters
            .connected_clients
            .fetch_sub(1, Ordering::Relaxed);
        self.shared
            .clients
            .lock()
            .expect("client registry lock")
            .remove(&session.id);
        // What it held goes back to its queues; its exclusive queues go.
        if let Err(error) = self.shared.queues.connection_closed(
            &self.shared.store,
            session.id,
            self.shared.now_ms(),
        ) {
            // Logged once per distinct error (the log's repeat filter), not per connection.
            crate::log::error(
                "queue",
                &format!("returning a closed connection's messages failed: {error}"),
            );
        }
    }
}

/// A parked WAIT: its answer if it has one now, else the next time to look.
fn answer_wait(shared: &Shared, session: &mut Session, out: &mut Vec<u8>) -> Action {
    let Some(frame) = crate::cmd::wait::look_again(shared, session) else {
        let waiting = session.waiting.as_ref().expect("a parked WAIT");
        return Action::Park {
            deadline_ms: crate::cmd::wait::next_look_ms(shared, waiting),
        };
    };
    let waiting = session.waiting.take().expect("a parked WAIT");
    queue_session::write_reply(out, session.resp, waiting.target, &frame);
    Action::Continue
}

/// The reply of a parked read (STREAM.FETCH's records, or the empty array of its deadline),
/// answered a while after the command ran: on a cluster node, only if this node still leads
/// under its lease now, as `dispatch` checks a read that answers at once (a connection that
/// asked for stale reads takes the node's state as it is). A parked STREAM.CONSUME is a
/// write, answered as it is: its records are the member's, its position moved past them.
fn under_lease(shared: &Shared, session: &Session, frame: Frame) -> Frame {
    let reads = session
        .stream
        .parked
        .as_ref()
        .and_then(|parked| crate::cmd::lookup(parked.args.first()?))
        .is_some_and(|command| !command.has_flag("write"));
    match shared.store.cluster() {
        Some(cluster) if reads && !session.readonly && !cluster.readable() => {
            cluster.lease_refusal()
        }
        _ => frame,
    }
}

/// Runs a binary request as the equivalent command and writes its response. Returns what
/// the command asks of the connection (QUIT called by name closes it).
pub fn respond_binary(
    shared: &Shared,
    session: &mut Session,
    request: &Request<'_>,
    out: &mut Vec<u8>,
) -> Action {
    // The fast paths first: they are most of the traffic. Inside MULTI they would answer
    // at once what must be queued, so they are not taken there.
    // A cluster node takes the general path, which redirects when it is not the leader.
    if session.authenticated && session.multi.is_none() && shared.store.cluster().is_none() {
        session.family = Family::Kv;
        match &request.op {
            Op::Get { key } => {
                get_zero_copy(shared, request, key, out);
                return Action::Continue;
            }
            Op::Set {
                key,
                value,
                ttl_ms: None,
                condition: SetCondition::Always,
            } => {
                plain_set(shared, session, request, key, value, out);
                return Action::Continue;
            }
            _ => {}
        }
    }
    match &request.op {
        Op::Call { args } => {
            let args: Vec<&[u8]> = args.clone().collect();
            return respond_with_value(shared, session, request, &args, out);
        }
        Op::Command { name, args, .. } => {
            let mut all: Vec<&[u8]> = Vec::with_capacity(args.len() + 1);
            all.push(name.as_bytes());
            all.extend(args.clone());
            return respond_with_value(shared, session, request, &all, out);
        }
        _ => {}
    }
    if let Some(multi) = session.multi.as_mut() {
        // A typed opcode's response has no shape for "QUEUED"; inside MULTI (opened by a
        // CALL), commands go by name. The refusal dooms the EXEC, as a refused command does.
        multi.aborted = true;
        flin_net::binary::encode_error(
            out,
            request.op.opcode(),
            request.request_id,
            Status::Error,
            "ERR inside MULTI, send commands by name (CALL, opcode 0xF0)",
        );
        return Action::Continue;
    }
    // Number arguments are formatted into these so `args` can borrow them.
    let first_number;
    let second_number;
    let mut args: Vec<&[u8]> = Vec::new();
    match &request.op {
        Op::Ping { payload } => {
            args.push(b"PING");
            if !payload.is_empty() {
                args.push(payload);
            }
        }
        Op::Auth { username, password } => {
            args.push(b"AUTH");
            if !username.is_empty() {
                args.push(username);
            }
            args.push(password);
        }
        Op::Get { key } => args.extend([&b"GET"[..], key]),
        Op::Set {
            key,
            value,
            ttl_ms,
            condition,
        } => {
            args.extend([&b"SET"[..], key, value]);
            if let Some(ttl_ms) = ttl_ms {
                first_number = ttl_ms.to_string();
                args.extend([&b"PX"[..], first_number.as_bytes()]);
            }
            match condition {
                SetCondition::Always => {}
                SetCondition::IfAbsent => args.push(b"NX"),
                SetCondition::IfPresent => args.push(b"XX"),
            }
        }
        Op::Del { key } => args.extend([&b"DEL"[..], key]),
        Op::Exists { key } => args.extend([&b"EXISTS"[..], key]),
        Op::Incr { key } => args.extend([&b"INCR"[..], key]),
        Op::IncrBy { key, delta } => {
            first_number = delta.to_string();
            args.extend([&b"INCRBY"[..], key, first_number.as_bytes()]);
        }
        Op::Expire { key, ttl_ms } => {
            first_number = ttl_ms.to_string();
            args.extend([&b"PEXPIRE"[..], key, first_number.as_bytes()]);
        }
        Op::Ttl { key } => args.extend([&b"PTTL"[..], key]),
        Op::MGet { keys } => {
            args.push(b"MGET");
            args.extend(keys.clone());
        }
        Op::MSet { pairs } => {
            args.push(b"MSET");
            for (key, value) in pairs.clone() {
                args.extend([key, value]);
            }
        }
        Op::MDel { keys } => {
            args.push(b"DEL");
            args.extend(keys.clone());
        }
        Op::Scan {
            cursor,
            count,
            pattern,
        } => {
            first_number = cursor.to_string();
            second_number = count.max(&1).to_string();
            args.extend([
                &b"SCAN"[..],
                first_number.as_bytes(),
                b"COUNT",
                second_number.as_bytes(),
            ]);
            if let Some(pattern) = pattern {
                args.extend([&b"MATCH"[..], pattern]);
            }
        }
        Op::Call { .. } | Op::Command { .. } => unreachable!("answered above"),
    }
    let (frame, _) = dispatch::execute(shared, session, &args);
    write_binary_response(request, frame, out);
    Action::Continue
}

/// A command called by name or through a table row: its frame becomes a typed value; an
/// error frame at the top becomes an error status, as for the typed opcodes.
fn respond_with_value(
    shared: &Shared,
    session: &mut Session,
    request: &Request<'_>,
    args: &[&[u8]],
    out: &mut Vec<u8>,
) -> Action {
    let (frame, action) = dispatch::execute(shared, session, args);
    if let Action::Park { .. } = action {
        if let Some(parked) = session.queue.parked.as_mut() {
            parked.target = ReplyTarget::Binary(request.reply_to());
        }
        if let Some(parked) = session.stream.parked.as_mut() {
            parked.target = ReplyTarget::Binary(request.reply_to());
        }
        if let Some(waiting) = session.waiting.as_mut() {
            waiting.target = ReplyTarget::Binary(request.reply_to());
        }
        return action;
    }
    write_binary_reply(out, request.reply_to(), &frame);
    action
}

/// Writes `frame` as the binary response to the request `reply_to` names: a typed value, or
/// an error with the status its code maps to.
pub fn write_binary_reply(out: &mut Vec<u8>, reply_to: flin_net::binary::ReplyTo, frame: &Frame) {
    let written = match frame {
        Frame::Error(message) => reply_to
            .respond(out, error_status(message))
            .raw(message.as_bytes())
            .finish(),
        _ => reply_to
            .respond(out, Status::Ok)
            .value(|value| frame.write_value(value))
            .finish(),
    };
    if let Err(error) = written {
        flin_net::binary::encode_error(
            out,
            reply_to.opcode,
            reply_to.request_id,
            Status::Error,
            &format!("ERR {error}"),
        );
    }
}

/// The status of an error reply, by its code.
fn error_status(message: &str) -> Status {
    if message.starts_with("NOAUTH") || message.starts_with("WRONGPASS") {
        Status::NoAuth
    } else if message.starts_with("WRONGTYPE") {
        Status::WrongType
    } else {
        Status::Error
    }
}

/// A binary GET of an authenticated connection, answered straight from the engine: the value is
/// copied once, from the log into the response, under the shard's read lock. The general path
/// (arguments, command lookup, a `Frame::Bulk` holding a copy of the value, then the response)
/// cost the binary protocol what it should save over RESP. What `dispatch::execute` does for a
/// GET is all here: count the command and refuse an unauthenticated connection (the caller
/// sends those down the general path, which answers NOAUTH); a binary connection has no MULTI.
fn get_zero_copy(shared: &Shared, request: &Request<'_>, key: &[u8], out: &mut Vec<u8>) {
    shared.recorder.processed();
    let get = crate::cmd::get_and_set().0.number();
    let found = shared
        .store
        .reader()
        .get_with(crate::context::KV, key, |found| {
            request.respond(out, Status::Ok).raw(found.value).finish()
        });
    let error = match found {
        Ok(Some(Ok(()))) => return shared.recorder.result(get, Outcome::Ok),
        Ok(None) => {
            request
                .respond(out, Status::NotFound)
                .finish()
                .expect("an empty body is within the limit");
            return shared.recorder.result(get, Outcome::Ok);
        }
        Ok(Some(Err(error))) => format!("ERR {error}"),
        Err(error) => format!("ERR {error}"),
    };
    shared.recorder.result(get, Outcome::Error);
    flin_net::binary::encode_error(
        out,
        request.op.opcode(),
        request.request_id,
        Status::Error,
        &error,
    );
}

/// A binary SET without TTL or condition of an authenticated connection: what the SET command
/// does in that case (write the value with no expiry, which clears an old TTL), through the one
/// write path (`Call::write`), without building arguments for the command table to parse back.
fn plain_set(
    shared: &Shared,
    session: &mut Session,
    request: &Request<'_>,
    key: &[u8],
    value: &[u8],
    out: &mut Vec<u8>,
) {
    shared.recorder.processed();
    let set = crate::cmd::get_and_set().1.number();
    let written = crate::context::Call::standalone(shared, session).write(|txn| {
        crate::kv::strings::set(txn, key, value, &crate::kv::strings::SetOptions::PLAIN)
    });
    match written {
        Ok(_) => {
            shared.recorder.result(set, Outcome::Ok);
            request
                .respond(out, Status::Ok)
                .finish()
                .expect("an empty body is within the limit")
        }
        Err(frame) => {
            shared.recorder.result(set, Outcome::Error);
            write_binary_response(request, frame, out)
        }
    }
}

fn write_binary_response(request: &Request<'_>, frame: Frame, out: &mut Vec<u8>) {
    let written = match (&request.op, frame) {
        (_, Frame::Error(message)) => request
            .respond(out, error_status(&message))
            .raw(message.as_bytes())
            .finish(),
        (Op::Ping { payload }, _) => request.respond(out, Status::Ok).raw(payload).finish(),
        (Op::Get { .. }, Frame::Bulk(value)) => {
            request.respond(out, Status::Ok).raw(&value).finish()
        }
        (Op::Get { .. }, _) => request.respond(out, Status::NotFound).finish(),
        (Op::Set { .. }, Frame::Null) => request.respond(out, Status::NotStored).finish(),
        (Op::Set { .. } | Op::Auth { .. } | Op::MSet { .. }, _) => {
            request.respond(out, Status::Ok).finish()
        }
        (
            Op::Del { .. } | Op::Exists { .. } | Op::Expire { .. } | Op::MDel { .. },
            Frame::Integer(n),
        ) => request
            .respond(out, Status::Ok)
            .u64(n.max(0) as u64)
            .finish(),
        (Op::Incr { .. } | Op::IncrBy { .. } | Op::Ttl { .. }, Frame::Integer(n)) => {
            request.respond(out, Status::Ok).i64(n).finish()
        }
        (Op::MGet { .. }, Frame::Array(values)) => {
            let mut writer = request.respond(out, Status::Ok).u32(values.len() as u32);
            for value in &values {
                writer = writer.optional_bytes(match value {
                    Frame::Bulk(bytes) => Some(bytes),
                    _ => None,
                });
            }
            writer.finish()
        }
        (Op::Scan { .. }, Frame::Array(mut parts)) if parts.len() == 2 => {
            let keys = parts.pop();
            let cursor = parts.pop();
            let (Some(Frame::Bulk(cursor)), Some(Frame::Array(keys))) = (cursor, keys) else {
                unreachable!("SCAN replies [cursor, keys]");
            };
            let cursor = std::str::from_utf8(&cursor)
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let mut writer = request
                .respond(out, Status::Ok)
                .u64(cursor)
                .u32(keys.len() as u32);
            for key in &keys {
                if let Frame::Bulk(key) = key {
                    writer = writer.bytes(key);
                }
            }
            writer.finish()
        }
        (op, frame) => unreachable!("command for {op:?} replied {frame:?}"),
    };
    if let Err(error) = written {
        flin_net::binary::encode_error(
            out,
            request.op.opcode(),
            request.request_id,
            Status::Error,
            &format!("ERR {error}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use flin_net::binary::{self, parse_request, parse_response, Status};

    use crate::cmd::test_support::Harness;

    /// A parked STREAM.FETCH answers under the lease when it answers: TRYAGAIN once the
    /// lease has run out, its frame while it holds or on a READONLY connection. A parked
    /// STREAM.CONSUME (a write: the member's position moved) answers as it is.
    #[test]
    fn a_parked_read_answers_only_under_the_lease() {
        use crate::cluster::{Cluster, ClusterOptions};
        use crate::frame::Frame;
        let mut h = Harness::new();
        h.run("STREAM.CREATE t PARTITIONS 1");
        h.run("STREAM.JOIN t g c");
        let members = "1=127.0.0.1:7900,2=127.0.0.1:7901,3=127.0.0.1:7902";
        let cluster = std::sync::Arc::new(Cluster::new(
            ClusterOptions::parse("1", members, 50).unwrap(),
        ));
        h.shared.store.attach_cluster(cluster.clone());
        cluster.set_writable_term(1);
        cluster.set_lease_until(crate::os::lease_clock_ns() + 60_000_000_000);
        let records = Frame::Array(vec![Frame::bulk("r")]);
        let answer = |h: &Harness| super::under_lease(&h.shared, &h.session, records.clone());

        h.run("STREAM.FETCH t 0 0 BLOCK 1000");
        assert!(h.session.stream.parked.is_some(), "parked");
        assert_eq!(answer(&h), records, "inside the lease");
        cluster.set_lease_until(0);
        assert_eq!(answer(&h), cluster.lease_refusal());
        h.session.readonly = true;
        assert_eq!(answer(&h), records, "READONLY takes the state as it is");
        h.session.readonly = false;
        h.session.stream.parked = None;

        cluster.set_lease_until(crate::os::lease_clock_ns() + 60_000_000_000);
        h.run("STREAM.CONSUME t g c BLOCK 1000");
        assert!(h.session.stream.parked.is_some(), "parked");
        cluster.set_lease_until(0);
        assert_eq!(answer(&h), records, "a consume is a write");
        h.session.stream.parked = None;
    }

    fn round_trip(h: &mut Harness, request: &[u8]) -> (Status, Vec<u8>) {
        let len = binary::check(request, binary::MAX_REQUEST_BODY_BYTES).unwrap();
        let request = parse_request(&request[..len]).unwrap();
        let mut out = Vec::new();
        let _ = super::respond_binary(&h.shared, &mut h.session, &request, &mut out);
        let response = parse_response(&out).unwrap();
        assert_eq!(response.request_id, request.request_id);
        (response.status, response.body.to_vec())
    }

    #[test]
    fn binary_ops_map_onto_commands() {
        let mut h = Harness::new();
        let mut buf = Vec::new();
        binary::encode_set(&mut buf, 7, b"k", b"v", None, binary::SetCondition::Always).unwrap();
        assert_eq!(round_trip(&mut h, &buf), (Status::Ok, vec![]));
        buf.clear();
        binary::encode_set(
            &mut buf,
            8,
            b"k",
            b"v",
            None,
            binary::SetCondition::IfAbsent,
        )
        .unwrap();
        assert_eq!(round_trip(&mut h, &buf).0, Status::NotStored);
        buf.clear();
        binary::encode_get(&mut buf, 9, b"k").unwrap();
        assert_eq!(round_trip(&mut h, &buf), (Status::Ok, b"v".to_vec()));
        buf.clear();
        binary::encode_get(&mut buf, 9, b"nope").unwrap();
        assert_eq!(round_trip(&mut h, &buf).0, Status::NotFound);
        buf.clear();
        binary::encode_incr(&mut buf, 10, b"n").unwrap();
        assert_eq!(
            round_trip(&mut h, &buf),
            (Status::Ok, 1i64.to_le_bytes().to_vec())
        );
        buf.clear();
        binary::encode_incr(&mut buf, 10, b"k").unwrap();
        let (status, body) = round_trip(&mut h, &buf);
        assert_eq!(
            (status, body.as_slice()),
            (
                Status::Error,
                &b"ERR value is not an integer or out of range"[..]
            )
        );
        buf.clear();
        binary::encode_mset(&mut buf, 11, &[(&b"a"[..], &b"1"[..]), (b"b", b"2")]).unwrap();
        assert_eq!(round_trip(&mut h, &buf).0, Status::Ok);
        buf.clear();
        binary::encode_mdel(&mut buf, 12, &[&b"a"[..], b"b", b"c"]).unwrap();
        assert_eq!(
            round_trip(&mut h, &buf),
            (Status::Ok, 2u64.to_le_bytes().to_vec())
        );
        buf.clear();
        binary::encode_ttl(&mut buf, 13, b"k").unwrap();
        assert_eq!(
            round_trip(&mut h, &buf),
            (Status::Ok, (-1i64).to_le_bytes().to_vec())
        );
    }

    #[test]
    fn binary_get_and_plain_set_keep_the_commands_semantics() {
        let mut h = Harness::new();
        let mut buf = Vec::new();
        assert_eq!(h.run("set t old px 100000"), crate::frame::Frame::ok());
        let before = h.shared.recorder.totals();
        binary::encode_set(
            &mut buf,
            1,
            b"t",
            b"new",
            None,
            binary::SetCondition::Always,
        )
        .unwrap();
        assert_eq!(round_trip(&mut h, &buf), (Status::Ok, vec![]));
        buf.clear();
        binary::encode_get(&mut buf, 2, b"t").unwrap();
        assert_eq!(round_trip(&mut h, &buf), (Status::Ok, b"new".to_vec()));
        let after = h.shared.recorder.totals();
        assert_eq!(
            after.processed,
            before.processed + 2,
            "both count as commands"
        );
        let (get, set) = crate::cmd::get_and_set();
        assert_eq!(
            after.results[get.number()][0],
            before.results[get.number()][0] + 1
        );
        assert_eq!(
            after.results[set.number()][0],
            before.results[set.number()][0] + 1
        );
        // A plain SET clears the TTL, as SET does.
        assert_eq!(h.run("pttl t"), crate::frame::Frame::Integer(-1));
        // An expired key is absent.
        assert_eq!(h.run("set e v px 10"), crate::frame::Frame::ok());
        h.clock.advance(11);
        buf.clear();
        binary::encode_get(&mut buf, 3, b"e").unwrap();
        assert_eq!(round_trip(&mut h, &buf), (Status::NotFound, vec![]));
        // A key over the limit is refused by the write, as for SET.
        buf.clear();
        let long_key = vec![b'k'; flin_engine::KEY_BYTES_MAX + 1];
        binary::encode_set(
            &mut buf,
            4,
            &long_key,
            b"v",
            None,
            binary::SetCondition::Always,
        )
        .unwrap();
        assert_eq!(round_trip(&mut h, &buf).0, Status::Error);
    }

    #[test]
    fn call_runs_any_command_and_answers_a_typed_value() {
        use flin_net::binary::{decode_value, Value};
        let mut h = Harness::new();
        let call = |h: &mut Harness, args: &[&str]| {
            let mut buf = Vec::new();
            binary::encode_call(&mut buf, 5, args).unwrap();
            let (status, body) = round_trip(h, &buf);
            match status {
                Status::Ok => Ok(decode_value(&body).unwrap()),
                _ => Err((status, String::from_utf8(body).unwrap())),
            }
        };
        assert_eq!(call(&mut h, &["APPEND", "k", "ab"]), Ok(Value::Integer(2)));
        assert_eq!(
            call(&mut h, &["getrange", "k", "1", "-1"]),
            Ok(Value::Bulk(b"b".to_vec()))
        );
        assert_eq!(call(&mut h, &["GET", "nope"]), Ok(Value::Null));
        assert_eq!(
            call(&mut h, &["INCR", "k"]),
            Err((
                Status::Error,
                "ERR value is not an integer or out of range".into()
            ))
        );
        assert_eq!(
            call(&mut h, &["NOSUCH"]),
            Err((
                Status::Error,
                "ERR unknown command 'NOSUCH', with args beginning with: ".into()
            ))
        );
        // MULTI by name queues what comes by name; EXEC answers an array with an error in it.
        assert_eq!(call(&mut h, &["MULTI"]), Ok(Value::Simple("OK".into())));
        assert_eq!(
            call(&mut h, &["SET", "n", "1"]),
            Ok(Value::Simple("QUEUED".into()))
        );
        assert_eq!(
            call(&mut h, &["INCR", "k"]),
            Ok(Value::Simple("QUEUED".into()))
        );
        assert_eq!(
            call(&mut h, &["EXEC"]),
            Ok(Value::Array(vec![
                Value::Simple("OK".into()),
                Value::Error("ERR value is not an integer or out of range".into()),
            ]))
        );
    }

    #[test]
    fn typed_opcodes_inside_multi_are_refused_and_doom_the_exec() {
        let mut h = Harness::new();
        let mut buf = Vec::new();
        binary::encode_call(&mut buf, 1, &["MULTI"]).unwrap();
        assert_eq!(round_trip(&mut h, &buf).0, Status::Ok);
        for encode in [
            |buf: &mut Vec<u8>| binary::encode_get(buf, 2, b"k"),
            |buf: &mut Vec<u8>| {
                binary::encode_set(buf, 2, b"k", b"v", None, binary::SetCondition::Always)
            },
            |buf: &mut Vec<u8>| binary::encode_del(buf, 2, b"k"),
        ] {
            buf.clear();
            encode(&mut buf).unwrap();
            let (status, message) = round_trip(&mut h, &buf);
            assert_eq!(status, Status::Error);
            assert!(message.starts_with(b"ERR inside MULTI"));
        }
        buf.clear();
        binary::encode_call(&mut buf, 3, &["EXEC"]).unwrap();
        let (status, message) = round_trip(&mut h, &buf);
        assert_eq!(status, Status::Error);
        assert!(message.starts_with(b"EXECABORT"), "{message:?}");
        assert_eq!(h.run("get k"), crate::frame::Frame::Null, "nothing ran");
    }

    #[test]
    fn quit_by_name_closes() {
        let mut h = Harness::new();
        let mut buf = Vec::new();
        binary::encode_call(&mut buf, 1, &["QUIT"]).unwrap();
        let request = parse_request(&buf).unwrap();
        let mut out = Vec::new();
        let action = super::respond_binary(&h.shared, &mut h.session, &request, &mut out);
        assert_eq!(action, flin_net::Action::Close);
        assert_eq!(parse_response(&out).unwrap().status, Status::Ok);
    }

    #[test]
    fn binary_get_and_set_need_auth_when_a_password_is_set() {
        let mut h = Harness::with_options(crate::config::Options {
            requirepass: Some(b"secret".to_vec()),
            ..crate::config::Options::default()
        });
        let mut buf = Vec::new();
        binary::encode_set(&mut buf, 1, b"k", b"v", None, binary::SetCondition::Always).unwrap();
        let (status, message) = round_trip(&mut h, &buf);
        assert_eq!(status, Status::NoAuth);
        assert!(message.starts_with(b"NOAUTH"));
        buf.clear();
        binary::encode_get(&mut buf, 2, b"k").unwrap();
        assert_eq!(round_trip(&mut h, &buf).0, Status::NoAuth);
        h.session.authenticated = true;
        assert_eq!(
            h.run("get k"),
            crate::frame::Frame::Null,
            "nothing was written"
        );
    }
}
