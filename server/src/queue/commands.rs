//! The queue model's command shell: its rows of the command table ([`TABLE`]), each command
//! parse -> core -> reply. Every refusal reads `ERR <COMMAND>: <why>`, naming the argument.
//!
//! - queues: QUEUE.DECLARE DELETE PURGE LEN LIST INFO PUSH MPUSH POP BPOP ACK NACK SUBSCRIBE
//!   UNSUBSCRIBE
//! - exchanges: EXCHANGE.DECLARE DELETE BIND UNBIND LIST BINDINGS INFO PUBLISH
//!
//! Inside MULTI, the commands of [`IN_MULTI`] queue and run in EXEC's transaction
//! ([`Call::queue_scope`]); the others are refused.

use super::codec::{BindingRule, ExchangeKind, Overflow, QueueOptions};
use super::core::{NewMessage, QueueError, PAYLOAD_BYTES_MAX, PRIORITIES};
use super::session::{headers_frame, messages_frame};
use crate::cmd::{command, number, option_is, refusal, Command, NO_KEYS, R, RF, W, WF};
use crate::context::{Call, Outcome};
use crate::frame::Frame;
use crate::number::parse_i64;

/// The queue commands (joined with the other models' rows in `cmd::commands`).
#[rustfmt::skip]
pub static TABLE: &[Command] = &[
    command!("queue.declare", -2, W, NO_KEYS, "queue", "Creates a queue, or checks the options of an existing one.", declare),
    command!("queue.delete", 2, W, NO_KEYS, "queue", "Deletes a queue with its messages and bindings.", delete),
    command!("queue.purge", 2, W, NO_KEYS, "queue", "Drops a queue's ready messages.", purge),
    command!("queue.len", 2, RF, NO_KEYS, "queue", "Returns the number of ready messages.", len),
    command!("queue.list", -1, R, NO_KEYS, "queue", "Lists queue names matching a pattern.", list),
    command!("queue.info", 2, R, NO_KEYS, "queue", "Returns a queue's options and counters.", info),
    command!("queue.push", -3, WF, NO_KEYS, "queue", "Pushes a message; returns its id.", push),
    command!("queue.mpush", -4, W, NO_KEYS, "queue", "Pushes several messages in one write; returns their ids.", mpush),
    command!("queue.pop", -2, WF, NO_KEYS, "queue", "Takes ready messages.", pop),
    command!("queue.bpop", -3, WF, NO_KEYS, "queue", "Takes ready messages, waiting for them.", bpop),
    command!("queue.ack", -3, WF, NO_KEYS, "queue", "Acknowledges in-flight messages.", ack),
    command!("queue.nack", -3, WF, NO_KEYS, "queue", "Returns or dead-letters in-flight messages.", nack),
    command!("queue.subscribe", -2, W, NO_KEYS, "queue", "Consumes a queue by server push.", subscribe),
    command!("queue.unsubscribe", -1, W, NO_KEYS, "queue", "Stops consuming.", unsubscribe),
    command!("exchange.declare", -3, W, NO_KEYS, "queue", "Creates an exchange.", exchange_declare),
    command!("exchange.delete", 2, W, NO_KEYS, "queue", "Deletes an exchange and its bindings.", exchange_delete),
    command!("exchange.bind", -4, W, NO_KEYS, "queue", "Binds a queue to an exchange.", bind),
    command!("exchange.unbind", -4, W, NO_KEYS, "queue", "Removes a binding.", unbind),
    command!("exchange.list", 1, R, NO_KEYS, "queue", "Lists exchange names.", exchange_list),
    command!("exchange.bindings", 2, R, NO_KEYS, "queue", "Lists an exchange's bindings.", bindings),
    command!("exchange.info", 2, R, NO_KEYS, "queue", "Returns an exchange's kind and counters.", exchange_info),
    command!("exchange.publish", -4, WF, NO_KEYS, "queue", "Routes a message to the matching queues.", publish),
];

/// The queue commands EXEC runs in its one transaction (decision 70): writes that are log
/// records and model changes the EXEC's commit decides (RabbitMQ's transactions cover
/// publishes and acks too), and the reads that see them. The others are refused inside MULTI:
/// a pop hands out a delivery no transaction can take back once the connection wrote it;
/// BPOP and SUBSCRIBE wait or push, which an EXEC cannot; DECLARE, DELETE and the exchange
/// declarations and bindings change the model's catalog, which the EXEC's undo does not
/// cover; LIST and the exchange reads would take the model's lock the EXEC may hold.
pub const IN_MULTI: &[&str] = &[
    "queue.push",
    "queue.mpush",
    "queue.ack",
    "queue.nack",
    "queue.purge",
    "queue.len",
    "queue.info",
    "exchange.publish",
];

/// Names are 1 to 255 bytes (an AMQP short string).
const NAME_BYTES_MAX: usize = 255;

fn refused<'a>(args: &'a [&'a [u8]]) -> impl Fn(QueueError) -> Frame + 'a {
    move |error| refusal(args, error)
}

fn name<'a>(args: &[&'a [u8]], at: usize, what: &str) -> Result<&'a [u8], Frame> {
    let name = args[at];
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(refusal(
            args,
            format!("{what} name must be 1 to {NAME_BYTES_MAX} bytes"),
        ));
    }
    Ok(name)
}

fn id_list(args: &[&[u8]], ids: &[&[u8]]) -> Result<Vec<u64>, Frame> {
    ids.iter()
        .map(|arg| match parse_i64(arg) {
            Some(n) if n > 0 => Ok(n as u64),
            _ => Err(refusal(
                args,
                format!(
                    "message id must be a positive integer, got '{}'",
                    String::from_utf8_lossy(arg)
                ),
            )),
        })
        .collect()
}

/// PRIORITY, TTL and HEADER options from `args[at..end]` into `message`; returns the index
/// of the first argument that is none of them.
fn message_options(
    args: &[&[u8]],
    mut at: usize,
    message: &mut NewMessage,
    stop: &[&str],
) -> Result<usize, Frame> {
    while at < args.len() {
        let arg = args[at];
        if option_is(arg, "PRIORITY") {
            message.priority = number(args, at + 1, "PRIORITY", PRIORITIES as u64 - 1)? as u8;
            at += 2;
        } else if option_is(arg, "TTL") {
            message.ttl_ms = number(args, at + 1, "TTL", i64::MAX as u64)?;
            at += 2;
        } else if option_is(arg, "HEADER") {
            if at + 2 >= args.len() {
                return Err(refusal(args, "HEADER needs a name and a value"));
            }
            message
                .headers
                .push((args[at + 1].to_vec(), args[at + 2].to_vec()));
            at += 3;
        } else if stop.iter().any(|word| option_is(arg, word)) {
            return Ok(at);
        } else {
            return Err(refusal(
                args,
                format!("unknown option '{}'", String::from_utf8_lossy(arg)),
            ));
        }
    }
    Ok(at)
}

fn payload_checked(args: &[&[u8]], payload: &[u8]) -> Result<Vec<u8>, Frame> {
    if payload.len() > PAYLOAD_BYTES_MAX {
        return Err(refusal(
            args,
            format!(
                "payload of {} bytes is over the limit of {PAYLOAD_BYTES_MAX}",
                payload.len()
            ),
        ));
    }
    Ok(payload.to_vec())
}

fn declare(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let queue = name(args, 1, "queue")?;
    let mut options = QueueOptions::default();
    let mut at = 2;
    while at < args.len() {
        let arg = args[at];
        at += 1;
        if option_is(arg, "DURABLE") {
            options.durable = true;
        } else if option_is(arg, "TRANSIENT") {
            options.durable = false;
        } else if option_is(arg, "EXCLUSIVE") {
            options.exclusive = true;
        } else if option_is(arg, "MAXLEN") {
            options.max_len = number(args, at, "MAXLEN", i64::MAX as u64)?;
            at += 1;
            if args.get(at).is_some_and(|a| option_is(a, "OVERFLOW")) {
                options.overflow = match args.get(at + 1) {
                    Some(a) if option_is(a, "REJECT") => Overflow::Reject,
                    Some(a) if option_is(a, "DROPHEAD") => Overflow::DropHead,
                    _ => return Err(refusal(args, "OVERFLOW must be REJECT or DROPHEAD")),
                };
                at += 2;
            }
        } else if option_is(arg, "TTL") {
            options.ttl_ms = number(args, at, "TTL", i64::MAX as u64)?;
            at += 1;
        } else if option_is(arg, "DLQ") {
            options.dlq = Some(name(args, at.min(args.len() - 1), "DLQ")?.to_vec());
            if at >= args.len() {
                return Err(refusal(args, "DLQ needs a queue name"));
            }
            at += 1;
        } else if option_is(arg, "MAXDELIVERIES") {
            options.max_deliveries = number(args, at, "MAXDELIVERIES", u32::MAX as u64)? as u32;
            at += 1;
        } else if option_is(arg, "VISIBILITY") {
            options.visibility_ms = number(args, at, "VISIBILITY", i64::MAX as u64)?;
            at += 1;
        } else {
            return Err(refusal(
                args,
                format!("unknown option '{}'", String::from_utf8_lossy(arg)),
            ));
        }
    }
    let (_, seq) = call
        .shared
        .queues
        .declare(&call.shared.store, queue, options, call.session.id)
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::ok())
}

fn delete(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (count, seq) = call
        .shared
        .queues
        .delete(&call.shared.store, args[1], call.session.id)
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::Integer(count as i64))
}

fn purge(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (shared, conn) = (call.shared, call.session.id);
    let (count, seq) = shared
        .queues
        .purge(call.queue_scope(), args[1], conn)
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::Integer(count as i64))
}

fn len(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (shared, conn) = (call.shared, call.session.id);
    let len = shared
        .queues
        .len(call.queue_scope(), args[1], conn)
        .map_err(refused(args))?;
    Ok(Frame::Integer(len as i64))
}

fn list(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    if args.len() > 2 {
        return Err(refusal(args, "takes at most one pattern"));
    }
    let names = call.shared.queues.list(args.get(1).copied());
    Ok(Frame::Array(names.into_iter().map(Frame::Bulk).collect()))
}

fn info(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (shared, conn) = (call.shared, call.session.id);
    let info = shared
        .queues
        .info(call.queue_scope(), args[1], conn)
        .map_err(refused(args))?;
    let o = &info.options;
    let int = |n: u64| Frame::Integer(n as i64);
    let pairs = vec![
        ("name", Frame::Bulk(info.name.clone())),
        ("durable", Frame::Bool(o.durable)),
        ("exclusive", Frame::Bool(o.exclusive)),
        ("maxlen", int(o.max_len)),
        (
            "overflow",
            Frame::bulk(match o.overflow {
                Overflow::Reject => "reject",
                Overflow::DropHead => "drophead",
            }),
        ),
        ("ttl", int(o.ttl_ms)),
        ("dlq", o.dlq.clone().map_or(Frame::Null, Frame::Bulk)),
        ("maxdeliveries", int(o.max_deliveries as u64)),
        ("visibility", int(o.visibility_ms)),
        ("ready", int(info.ready)),
        ("inflight", int(info.in_flight)),
        ("consumers", int(info.consumers)),
        ("waiters", int(info.waiters)),
        ("pushed", int(info.pushed)),
        ("delivered", int(info.delivered)),
        ("acked", int(info.acked)),
        ("deadlettered", int(info.dead_lettered)),
    ];
    Ok(Frame::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Frame::bulk(k), v))
            .collect(),
    ))
}

fn push(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let mut message = NewMessage {
        payload: payload_checked(args, args[2])?,
        ..NewMessage::default()
    };
    message_options(args, 3, &mut message, &[])?;
    let (shared, conn) = (call.shared, call.session.id);
    let (ids, seq) = shared
        .queues
        .push(
            call.queue_scope(),
            args[1],
            vec![message],
            conn,
            shared.now_ms(),
        )
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::Integer(ids[0] as i64))
}

fn mpush(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let mut template = NewMessage::default();
    let at = message_options(args, 2, &mut template, &["PAYLOADS"])?;
    if at >= args.len() || at + 1 >= args.len() {
        return Err(refusal(
            args,
            "PAYLOADS and at least one payload are required",
        ));
    }
    let mut messages = Vec::with_capacity(args.len() - at - 1);
    for payload in &args[at + 1..] {
        messages.push(NewMessage {
            payload: payload_checked(args, payload)?,
            ..template.clone()
        });
    }
    let (shared, conn) = (call.shared, call.session.id);
    let (ids, seq) = shared
        .queues
        .push(call.queue_scope(), args[1], messages, conn, shared.now_ms())
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::Array(
        ids.into_iter()
            .map(|id| Frame::Integer(id as i64))
            .collect(),
    ))
}

/// COUNT n and NOACK from `args[at..]`.
fn pop_options(args: &[&[u8]], mut at: usize) -> Result<(usize, bool), Frame> {
    let (mut count, mut noack) = (1, false);
    while at < args.len() {
        if option_is(args[at], "COUNT") {
            count = number(args, at + 1, "COUNT", 1 << 20)? as usize;
            if count == 0 {
                return Err(refusal(args, "COUNT must be positive"));
            }
            at += 2;
        } else if option_is(args[at], "NOACK") {
            noack = true;
            at += 1;
        } else {
            return Err(refusal(
                args,
                format!("unknown option '{}'", String::from_utf8_lossy(args[at])),
            ));
        }
    }
    Ok((count, noack))
}

fn pop(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (count, noack) = pop_options(args, 2)?;
    let (messages, seq) = call
        .shared
        .queues
        .pop(
            &call.shared.store,
            args[1],
            count,
            noack,
            call.session.id,
            call.shared.now_ms(),
        )
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(messages_frame(messages))
}

/// Waits (parks the connection) when nothing is ready; the reply comes from the session's
/// mailbox (`service`), or a null when `timeout-ms` passes (0: no timeout).
fn bpop(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let timeout_ms = number(args, 2, "timeout", i64::MAX as u64)?;
    let (count, noack) = pop_options(args, 3)?;
    let now = call.shared.now_ms();
    let mailbox = call.session.queue.mailbox.clone();
    let popped = call
        .shared
        .queues
        .pop_or_wait(
            &call.shared.store,
            args[1],
            count,
            noack,
            call.session.id,
            &mailbox,
            now,
        )
        .map_err(refused(args))?;
    match popped {
        Some((messages, seq)) => {
            call.session.note_write(seq);
            Ok(messages_frame(messages))
        }
        None => {
            let deadline = (timeout_ms > 0).then(|| wall_clock_ms().saturating_add(timeout_ms));
            call.session.queue.park = Some((args[1].to_vec(), deadline));
            Ok(Frame::NullArray)
        }
    }
}

/// The event loop's parked deadlines run on the system clock.
fn wall_clock_ms() -> u64 {
    use flin_net::Clock;
    flin_net::SystemClock.now_ms()
}

fn ack(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let ids = id_list(args, &args[2..])?;
    let (shared, conn) = (call.shared, call.session.id);
    let (count, seq) = shared
        .queues
        .ack(call.queue_scope(), args[1], &ids, conn, shared.now_ms())
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::Integer(count as i64))
}

fn nack(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let mut ids = &args[2..];
    let mut requeue = true;
    if let Some(last) = ids.last() {
        if option_is(last, "REQUEUE") {
            ids = &ids[..ids.len() - 1];
        } else if option_is(last, "DEAD") {
            requeue = false;
            ids = &ids[..ids.len() - 1];
        }
    }
    if ids.is_empty() {
        return Err(refusal(args, "needs at least one message id"));
    }
    let ids = id_list(args, ids)?;
    let (shared, conn) = (call.shared, call.session.id);
    let (count, seq) = shared
        .queues
        .nack(
            call.queue_scope(),
            args[1],
            &ids,
            requeue,
            conn,
            shared.now_ms(),
        )
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::Integer(count as i64))
}

/// RabbitMQ's default prefetch is unlimited; ours is 100, so a subscription to a long queue
/// does not fill the connection's output buffer.
const DEFAULT_PREFETCH: u64 = 100;

fn subscribe(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let mut prefetch = DEFAULT_PREFETCH;
    match args.len() {
        2 => {}
        4 if option_is(args[2], "PREFETCH") => {
            prefetch = number(args, 3, "PREFETCH", u32::MAX as u64)?;
        }
        _ => return Err(refusal(args, "the only option is PREFETCH n")),
    }
    let mailbox = call.session.queue.mailbox.clone();
    call.shared
        .queues
        .subscribe(
            &call.shared.store,
            args[1],
            prefetch as u32,
            call.session.id,
            &mailbox,
            call.shared.now_ms(),
        )
        .map_err(refused(args))?;
    Ok(Frame::ok())
}

fn unsubscribe(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    if args.len() > 2 {
        return Err(refusal(args, "takes at most one queue name"));
    }
    let left = call
        .shared
        .queues
        .unsubscribe(args.get(1).copied(), call.session.id)
        .map_err(refused(args))?;
    Ok(Frame::Integer(left as i64))
}

fn exchange_kind(args: &[&[u8]], arg: &[u8]) -> Result<ExchangeKind, Frame> {
    [
        ExchangeKind::Direct,
        ExchangeKind::Fanout,
        ExchangeKind::Topic,
        ExchangeKind::Headers,
    ]
    .into_iter()
    .find(|kind| option_is(arg, kind.name()))
    .ok_or_else(|| {
        refusal(
            args,
            format!(
                "exchange type must be DIRECT, FANOUT, TOPIC or HEADERS, got '{}'",
                String::from_utf8_lossy(arg)
            ),
        )
    })
}

fn exchange_declare(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let exchange = name(args, 1, "exchange")?;
    let kind = exchange_kind(args, args[2])?;
    let durable = match args.get(3) {
        None => true,
        Some(a) if option_is(a, "DURABLE") && args.len() == 4 => true,
        Some(a) if option_is(a, "TRANSIENT") && args.len() == 4 => false,
        Some(_) => return Err(refusal(args, "the only option is DURABLE or TRANSIENT")),
    };
    let (_, seq) = call
        .shared
        .queues
        .exchange_declare(&call.shared.store, exchange, kind, durable)
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::ok())
}

fn exchange_delete(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (_, seq) = call
        .shared
        .queues
        .exchange_delete(&call.shared.store, args[1])
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::ok())
}

/// `key` or `HEADERS ALL|ANY k v ...` from `args[3..]`.
fn binding_rule(args: &[&[u8]]) -> Result<BindingRule, Frame> {
    let rest = &args[3..];
    if rest.len() == 1 {
        return Ok(BindingRule::Key(rest[0].to_vec()));
    }
    if !option_is(rest[0], "HEADERS") {
        return Err(refusal(
            args,
            "a binding is a key, or HEADERS ALL|ANY name value ...",
        ));
    }
    let all = match rest.get(1) {
        Some(a) if option_is(a, "ALL") => true,
        Some(a) if option_is(a, "ANY") => false,
        _ => return Err(refusal(args, "HEADERS must be followed by ALL or ANY")),
    };
    let pairs = &rest[2..];
    if !pairs.len().is_multiple_of(2) {
        return Err(refusal(args, "HEADERS pairs need a name and a value each"));
    }
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = pairs
        .chunks(2)
        .map(|p| (p[0].to_vec(), p[1].to_vec()))
        .collect();
    pairs.sort();
    Ok(BindingRule::Headers { all, pairs })
}

fn bind(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let rule = binding_rule(args)?;
    let (_, seq) = call
        .shared
        .queues
        .bind(&call.shared.store, args[1], args[2], rule, call.session.id)
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::ok())
}

fn unbind(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let rule = binding_rule(args)?;
    let (found, seq) = call
        .shared
        .queues
        .unbind(&call.shared.store, args[1], args[2], rule)
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::Integer(found as i64))
}

fn exchange_list(call: &mut Call<'_, '_>, _args: &[&[u8]]) -> Outcome {
    Ok(Frame::Array(
        call.shared
            .queues
            .exchanges()
            .into_iter()
            .map(Frame::Bulk)
            .collect(),
    ))
}

fn bindings(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let bindings = call
        .shared
        .queues
        .bindings(args[1])
        .map_err(refused(args))?;
    Ok(Frame::Array(
        bindings
            .into_iter()
            .map(|(queue, rule)| {
                let mut items = vec![Frame::Bulk(queue)];
                match rule {
                    BindingRule::Key(key) => items.push(Frame::Bulk(key)),
                    BindingRule::Headers { all, pairs } => {
                        items.push(Frame::bulk("HEADERS"));
                        items.push(Frame::bulk(if all { "ALL" } else { "ANY" }));
                        for (k, v) in pairs {
                            items.push(Frame::Bulk(k));
                            items.push(Frame::Bulk(v));
                        }
                    }
                }
                Frame::Array(items)
            })
            .collect(),
    ))
}

fn exchange_info(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let info = call
        .shared
        .queues
        .exchange_info(args[1])
        .map_err(refused(args))?;
    let int = |n: u64| Frame::Integer(n as i64);
    Ok(Frame::Map(vec![
        (Frame::bulk("name"), Frame::Bulk(info.name)),
        (Frame::bulk("type"), Frame::bulk(info.kind.name())),
        (Frame::bulk("durable"), Frame::Bool(info.durable)),
        (Frame::bulk("bindings"), int(info.bindings)),
        (Frame::bulk("published"), int(info.published)),
        (Frame::bulk("unroutable"), int(info.unroutable)),
    ]))
}

fn publish(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let mut message = NewMessage {
        payload: payload_checked(args, args[3])?,
        ..NewMessage::default()
    };
    let mut at = message_options(args, 4, &mut message, &["MANDATORY"])?;
    let mut mandatory = false;
    while at < args.len() && option_is(args[at], "MANDATORY") {
        mandatory = true;
        at = message_options(args, at + 1, &mut message, &["MANDATORY"])?;
    }
    let shared = call.shared;
    let (count, seq) = shared
        .queues
        .publish(
            call.queue_scope(),
            args[1],
            args[2],
            message,
            mandatory,
            shared.now_ms(),
        )
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::Integer(count as i64))
}

/// The headers of a message as a reply (re-exported for the service's pushes).
pub fn headers(headers: &[(Vec<u8>, Vec<u8>)]) -> Frame {
    headers_frame(headers)
}

#[cfg(test)]
mod tests {
    use crate::cmd::test_support::*;
    use crate::frame::Frame;

    fn int(n: i64) -> Frame {
        Frame::Integer(n)
    }

    /// Every refusal names the command and what was wrong, and changes nothing.
    #[test]
    fn bad_input_is_refused_with_the_argument_named_and_nothing_changed() {
        let mut h = Harness::new();
        assert_eq!(
            h.run("QUEUE.PUSH nosuch x"),
            err("ERR QUEUE.PUSH: no queue 'nosuch'")
        );
        assert_eq!(h.run("QUEUE.DECLARE q"), ok());
        assert_eq!(
            h.run("QUEUE.PUSH q x PRIORITY 12"),
            err("ERR QUEUE.PUSH: PRIORITY must be an integer from 0 to 9, got '12'")
        );
        assert_eq!(
            h.run("QUEUE.PUSH q x TTL -5"),
            err("ERR QUEUE.PUSH: TTL must be an integer from 0 to 9223372036854775807, got '-5'")
        );
        assert_eq!(
            h.run("QUEUE.PUSH q x COLOR red"),
            err("ERR QUEUE.PUSH: unknown option 'COLOR'")
        );
        assert_eq!(
            h.run("QUEUE.PUSH q x HEADER onlyname"),
            err("ERR QUEUE.PUSH: HEADER needs a name and a value")
        );
        let big = vec![b'x'; super::PAYLOAD_BYTES_MAX + 1];
        assert_eq!(
            h.run_args(&[b"QUEUE.PUSH", b"q", &big]),
            err(&format!(
                "ERR QUEUE.PUSH: payload of {} bytes is over the limit of {}",
                big.len(),
                super::PAYLOAD_BYTES_MAX
            ))
        );
        assert_eq!(h.run("QUEUE.LEN q"), int(0), "nothing was pushed");
        assert_eq!(
            h.run("QUEUE.ACK q 7"),
            err("ERR QUEUE.ACK: message id 7 is not in flight")
        );
        assert_eq!(
            h.run("QUEUE.ACK q seven"),
            err("ERR QUEUE.ACK: message id must be a positive integer, got 'seven'")
        );
        assert_eq!(
            h.run("QUEUE.DECLARE q TTL 5"),
            err("ERR QUEUE.DECLARE: 'q' already exists with a different TTL")
        );
        assert_eq!(
            h.run("QUEUE.DECLARE r MAXLEN 3 OVERFLOW SOMETIMES"),
            err("ERR QUEUE.DECLARE: OVERFLOW must be REJECT or DROPHEAD")
        );
        assert_eq!(
            h.run("EXCHANGE.DECLARE e SIDEWAYS"),
            err("ERR EXCHANGE.DECLARE: exchange type must be DIRECT, FANOUT, TOPIC or HEADERS, got 'SIDEWAYS'")
        );
        assert_eq!(
            h.run("EXCHANGE.PUBLISH nosuch k x"),
            err("ERR EXCHANGE.PUBLISH: no exchange 'nosuch'")
        );
        assert_eq!(h.run("QUEUE.LIST"), Frame::Array(vec![Frame::bulk("q")]));
    }

    #[test]
    fn push_pop_ack_through_the_dispatcher() {
        let mut h = Harness::new();
        assert_eq!(h.run("QUEUE.DECLARE q"), ok());
        let Frame::Integer(id) = h.run("QUEUE.PUSH q hello PRIORITY 3 HEADER k v") else {
            panic!("id")
        };
        assert_eq!(
            h.run("QUEUE.POP q COUNT 5"),
            Frame::Array(vec![Frame::Array(vec![
                int(id),
                Frame::bulk("hello"),
                int(3),
                int(1),
                Frame::Map(vec![(Frame::bulk("k"), Frame::bulk("v"))]),
            ])])
        );
        assert_eq!(h.run(&format!("QUEUE.ACK q {id}")), int(1));
        assert_eq!(h.run("QUEUE.POP q"), Frame::Array(vec![]));
        let Frame::Array(ids) = h.run("QUEUE.MPUSH q PRIORITY 1 PAYLOADS a b c") else {
            panic!("ids")
        };
        assert_eq!(ids.len(), 3);
        assert_eq!(h.run("QUEUE.LEN q"), int(3));
        assert_eq!(h.run("QUEUE.PURGE q"), int(3));
    }
}
