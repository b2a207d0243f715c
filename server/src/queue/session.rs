//! What a connection holds for queues, and how deliveries reach its socket: the reply to a
//! parked QUEUE.BPOP and the messages pushed to a subscription, written on the connection's
//! own loop thread (`Service::on_wake`), in the protocol it speaks.

use std::sync::Arc;

use flin_net::binary::{ReplyTo, ValueWriter};
use flin_net::resp::{Reply, RespVersion};
use flin_net::Action;

use super::core::{Delivery, DeliveryKind, Mailbox, Message};
use crate::frame::Frame;

/// How a parked request is answered.
#[derive(Clone, Copy, Debug)]
pub enum ReplyTarget {
    Resp,
    Binary(ReplyTo),
}

/// A QUEUE.BPOP waiting for messages.
#[derive(Debug)]
pub struct Parked {
    pub queue: Vec<u8>,
    pub deadline_ms: Option<u64>,
    pub target: ReplyTarget,
}

/// A connection's queue state.
pub struct QueueSession {
    /// Where other threads hand this connection messages (waking its loop).
    pub mailbox: Arc<Mailbox>,
    /// Set by QUEUE.BPOP when it must wait: the dispatcher turns it into `Action::Park`.
    pub park: Option<(Vec<u8>, Option<u64>)>,
    pub parked: Option<Parked>,
    /// The connection speaks the binary protocol (pushes are binary frames).
    pub binary: bool,
}

impl QueueSession {
    /// A session whose mailbox wakes nobody (tests; the service installs a real one).
    pub fn detached() -> QueueSession {
        QueueSession::new(Mailbox::new(|| {}))
    }

    pub fn new(mailbox: Arc<Mailbox>) -> QueueSession {
        QueueSession {
            mailbox,
            park: None,
            parked: None,
            binary: false,
        }
    }
}

/// The opcode binary pushes of queue messages carry (QUEUE.SUBSCRIBE's).
pub const PUSH_OPCODE: u8 = 0x4C;

/// A message as a reply element: `[id, payload, priority, deliveries, headers]`.
pub fn message_frame(message: Message) -> Frame {
    Frame::Array(vec![
        Frame::Integer(message.id as i64),
        Frame::Bulk(message.payload),
        Frame::Integer(message.priority as i64),
        Frame::Integer(message.deliveries as i64),
        headers_frame(&message.headers),
    ])
}

pub fn headers_frame(headers: &[(Vec<u8>, Vec<u8>)]) -> Frame {
    Frame::Map(
        headers
            .iter()
            .map(|(k, v)| (Frame::Bulk(k.clone()), Frame::Bulk(v.clone())))
            .collect(),
    )
}

pub fn messages_frame(messages: Vec<Message>) -> Frame {
    Frame::Array(messages.into_iter().map(message_frame).collect())
}

/// A subscription's message as a push: `["message", queue, id, payload, priority,
/// deliveries, headers]` (RESP3 `>`, RESP2 array, binary push frame).
pub fn write_push(
    out: &mut Vec<u8>,
    resp: RespVersion,
    binary: bool,
    queue: &[u8],
    message: &Message,
) {
    let items = [
        Frame::bulk("message"),
        Frame::Bulk(queue.to_vec()),
        Frame::Integer(message.id as i64),
        Frame::Bulk(message.payload.clone()),
        Frame::Integer(message.priority as i64),
        Frame::Integer(message.deliveries as i64),
        headers_frame(&message.headers),
    ];
    if binary {
        let _ = flin_net::binary::encode_push(out, PUSH_OPCODE, |value: &mut ValueWriter<'_>| {
            value.array(items.len());
            items.iter().for_each(|item| item.write_value(value));
        });
        return;
    }
    Reply::new(out, resp).push(items.len());
    for item in &items {
        item.encode(resp, out);
    }
}

/// A subscription ended by the server (its queue was deleted), as a push: `["cancelled",
/// queue]`.
pub fn write_cancel(out: &mut Vec<u8>, resp: RespVersion, binary: bool, queue: &[u8]) {
    let items = [Frame::bulk("cancelled"), Frame::Bulk(queue.to_vec())];
    if binary {
        let _ = flin_net::binary::encode_push(out, PUSH_OPCODE, |value: &mut ValueWriter<'_>| {
            value.array(items.len());
            items.iter().for_each(|item| item.write_value(value));
        });
        return;
    }
    Reply::new(out, resp).push(items.len());
    for item in &items {
        item.encode(resp, out);
    }
}

/// Writes `frame` as the answer to a parked request.
pub fn write_reply(out: &mut Vec<u8>, resp: RespVersion, target: ReplyTarget, frame: &Frame) {
    match target {
        ReplyTarget::Resp => frame.encode(resp, out),
        ReplyTarget::Binary(reply_to) => crate::service::write_binary_reply(out, reply_to, frame),
    }
}

/// What `on_wake` does with what the mailbox held: pushes are written, a delivery for the
/// parked BPOP completes it. Returns the action and the deliveries this connection cannot
/// use (a BPOP delivery that arrived after the wait ended: the caller returns those
/// messages to their queue).
pub fn deliveries_action(parked: &Option<Parked>) -> Action {
    match parked {
        Some(parked) => Action::Park {
            deadline_ms: parked.deadline_ms,
        },
        None => Action::Continue,
    }
}

/// Splits deliveries into the ones that answer the parked pop (at most one) and the rest.
pub fn is_for_parked(parked: &Option<Parked>, delivery: &Delivery) -> bool {
    matches!(
        delivery.kind,
        DeliveryKind::Pop { .. } | DeliveryKind::Deleted
    ) && parked.as_ref().is_some_and(|p| p.queue == delivery.queue)
}
