//! Queue requests as argument lists: what follows the command's name, word for word as
//! docs/commands.md spells it, so the binary rows and RESP take the same arguments. Pure
//! functions (no socket), so each request's exact arguments are unit-tested. Payloads and
//! names are borrowed, not copied: a 512 MiB payload is written once, into the frame.

use std::borrow::Cow;

use super::{Binding, ExchangeKind, HeadersMatch, Overflow, PushOptions, QueueOptions};
use crate::client::kv::duration_ms;

/// The arguments after a command's name.
pub(crate) type Args<'a> = Vec<Cow<'a, [u8]>>;

fn word(word: &'static str) -> Cow<'static, [u8]> {
    Cow::Borrowed(word.as_bytes())
}

fn number(value: u64) -> Cow<'static, [u8]> {
    Cow::Owned(value.to_string().into_bytes())
}

fn bytes(value: &[u8]) -> Cow<'_, [u8]> {
    Cow::Borrowed(value)
}

/// A command whose only argument is a name (QUEUE.DELETE, QUEUE.INFO, EXCHANGE.BINDINGS ...).
pub(crate) fn name(name: &[u8]) -> Args<'_> {
    vec![bytes(name)]
}

/// QUEUE.LIST [pattern].
pub(crate) fn list(pattern: Option<&[u8]>) -> Args<'_> {
    pattern.into_iter().map(bytes).collect()
}

/// QUEUE.DECLARE name [DURABLE|TRANSIENT] [EXCLUSIVE] [MAXLEN n [OVERFLOW REJECT|DROPHEAD]]
/// [TTL ms] [DLQ queue] [MAXDELIVERIES n] [VISIBILITY ms]. Durability is always sent, so a
/// declaration says what it means whatever the server's default; every other option only
/// when it was set.
pub(crate) fn declare<'a>(queue: &'a [u8], options: &'a QueueOptions) -> Args<'a> {
    let mut args = vec![bytes(queue)];
    args.push(word(if options.durable {
        "DURABLE"
    } else {
        "TRANSIENT"
    }));
    if options.exclusive {
        args.push(word("EXCLUSIVE"));
    }
    if let Some((max_len, overflow)) = options.max_len {
        args.extend([word("MAXLEN"), number(max_len), word("OVERFLOW")]);
        args.push(word(match overflow {
            Overflow::Reject => "REJECT",
            Overflow::DropHead => "DROPHEAD",
        }));
    }
    if let Some(ttl) = options.ttl {
        args.extend([word("TTL"), number(duration_ms(ttl))]);
    }
    if let Some(dlq) = &options.dlq {
        args.extend([word("DLQ"), bytes(dlq)]);
    }
    if let Some(max_deliveries) = options.max_deliveries {
        args.extend([word("MAXDELIVERIES"), number(u64::from(max_deliveries))]);
    }
    if let Some(visibility) = options.visibility {
        args.extend([word("VISIBILITY"), number(duration_ms(visibility))]);
    }
    args
}

/// [PRIORITY p] [TTL ms] [HEADER k v]...: the options PUSH, MPUSH and PUBLISH share.
fn push_options<'a>(args: &mut Args<'a>, options: &'a PushOptions) {
    if let Some(priority) = options.priority {
        args.extend([word("PRIORITY"), number(u64::from(priority))]);
    }
    if let Some(ttl) = options.ttl {
        args.extend([word("TTL"), number(duration_ms(ttl))]);
    }
    for (key, value) in &options.headers {
        args.extend([word("HEADER"), bytes(key), bytes(value)]);
    }
}

/// QUEUE.PUSH name payload [options].
pub(crate) fn push<'a>(queue: &'a [u8], payload: &'a [u8], options: &'a PushOptions) -> Args<'a> {
    let mut args = vec![bytes(queue), bytes(payload)];
    push_options(&mut args, options);
    args
}

/// QUEUE.MPUSH name [options] PAYLOADS payload [payload ...].
pub(crate) fn mpush<'a, P: AsRef<[u8]>>(
    queue: &'a [u8],
    payloads: &'a [P],
    options: &'a PushOptions,
) -> Args<'a> {
    let mut args = vec![bytes(queue)];
    push_options(&mut args, options);
    args.push(word("PAYLOADS"));
    args.extend(payloads.iter().map(|payload| bytes(payload.as_ref())));
    args
}

/// QUEUE.POP name COUNT n [NOACK].
pub(crate) fn pop(queue: &[u8], count: u32, no_ack: bool) -> Args<'_> {
    let mut args = vec![bytes(queue), word("COUNT"), number(u64::from(count))];
    if no_ack {
        args.push(word("NOACK"));
    }
    args
}

/// QUEUE.BPOP name timeout-ms COUNT n [NOACK]; `timeout_ms` 0 waits forever.
pub(crate) fn bpop(queue: &[u8], timeout_ms: u64, count: u32, no_ack: bool) -> Args<'_> {
    let mut args = vec![
        bytes(queue),
        number(timeout_ms),
        word("COUNT"),
        number(u64::from(count)),
    ];
    if no_ack {
        args.push(word("NOACK"));
    }
    args
}

/// QUEUE.ACK name id [id ...].
pub(crate) fn ack<'a>(queue: &'a [u8], ids: &[u64]) -> Args<'a> {
    let mut args = vec![bytes(queue)];
    args.extend(ids.iter().map(|id| number(*id)));
    args
}

/// QUEUE.NACK name id [id ...] REQUEUE|DEAD (always said, not left to the default).
pub(crate) fn nack<'a>(queue: &'a [u8], ids: &[u64], requeue: bool) -> Args<'a> {
    let mut args = ack(queue, ids);
    args.push(word(if requeue { "REQUEUE" } else { "DEAD" }));
    args
}

/// QUEUE.SUBSCRIBE name PREFETCH n.
pub(crate) fn subscribe(queue: &[u8], prefetch: u32) -> Args<'_> {
    vec![bytes(queue), word("PREFETCH"), number(u64::from(prefetch))]
}

/// EXCHANGE.DECLARE name DIRECT|FANOUT|TOPIC|HEADERS DURABLE|TRANSIENT.
pub(crate) fn exchange_declare(exchange: &[u8], kind: ExchangeKind, durable: bool) -> Args<'_> {
    vec![
        bytes(exchange),
        word(kind.as_str()),
        word(if durable { "DURABLE" } else { "TRANSIENT" }),
    ]
}

/// EXCHANGE.BIND and EXCHANGE.UNBIND: exchange queue key, or
/// exchange queue HEADERS ALL|ANY k v [k v ...].
pub(crate) fn binding<'a>(exchange: &'a [u8], queue: &'a [u8], binding: &'a Binding) -> Args<'a> {
    let mut args = vec![bytes(exchange), bytes(queue)];
    match binding {
        Binding::Key(key) => args.push(bytes(key)),
        Binding::Headers { matching, headers } => {
            args.push(word("HEADERS"));
            args.push(word(match matching {
                HeadersMatch::All => "ALL",
                HeadersMatch::Any => "ANY",
            }));
            for (key, value) in headers {
                args.extend([bytes(key), bytes(value)]);
            }
        }
    }
    args
}

/// EXCHANGE.PUBLISH exchange routing-key payload [options] [MANDATORY].
pub(crate) fn publish<'a>(
    exchange: &'a [u8],
    routing_key: &'a [u8],
    payload: &'a [u8],
    options: &'a PushOptions,
    mandatory: bool,
) -> Args<'a> {
    let mut args = vec![bytes(exchange), bytes(routing_key), bytes(payload)];
    push_options(&mut args, options);
    if mandatory {
        args.push(word("MANDATORY"));
    }
    args
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn text(args: Args<'_>) -> Vec<String> {
        args.iter()
            .map(|arg| String::from_utf8(arg.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn declare_sends_durability_always_and_other_options_when_set() {
        assert_eq!(
            text(declare(b"jobs", &QueueOptions::new())),
            ["jobs", "DURABLE"]
        );
        let every = QueueOptions::new()
            .transient()
            .exclusive()
            .max_len(1000, Overflow::Reject)
            .ttl(Duration::from_secs(60))
            .dlq("jobs.dead")
            .max_deliveries(5)
            .visibility(Duration::ZERO);
        assert_eq!(
            text(declare(b"jobs", &every)),
            [
                "jobs",
                "TRANSIENT",
                "EXCLUSIVE",
                "MAXLEN",
                "1000",
                "OVERFLOW",
                "REJECT",
                "TTL",
                "60000",
                "DLQ",
                "jobs.dead",
                "MAXDELIVERIES",
                "5",
                "VISIBILITY",
                "0"
            ]
        );
        let drop_head = QueueOptions::new().max_len(1, Overflow::DropHead);
        assert_eq!(
            text(declare(b"q", &drop_head))[2..],
            ["MAXLEN", "1", "OVERFLOW", "DROPHEAD"]
        );
    }

    #[test]
    fn push_mpush_and_publish_share_their_options() {
        let none = PushOptions::new();
        assert_eq!(text(push(b"q", b"hello", &none)), ["q", "hello"]);
        let options = PushOptions::new()
            .priority(7)
            .ttl(Duration::from_millis(1500))
            .header("k1", "v1")
            .header("k2", "");
        let tail = [
            "PRIORITY", "7", "TTL", "1500", "HEADER", "k1", "v1", "HEADER", "k2", "",
        ];
        let pushed = text(push(b"q", b"hello", &options));
        assert_eq!(pushed[..2], ["q", "hello"]);
        assert_eq!(pushed[2..], tail);
        let payloads: [&[u8]; 2] = [b"a", b"b"];
        let batch = text(mpush(b"q", &payloads, &options));
        assert_eq!(batch[0], "q");
        assert_eq!(batch[1..11], tail);
        assert_eq!(batch[11..], ["PAYLOADS", "a", "b"]);
        assert_eq!(
            text(mpush(b"q", &payloads, &none)),
            ["q", "PAYLOADS", "a", "b"]
        );
        let published = text(publish(b"ex", b"a.b", b"hi", &options, true));
        assert_eq!(published[..3], ["ex", "a.b", "hi"]);
        assert_eq!(published[3..13], tail);
        assert_eq!(published[13..], ["MANDATORY"]);
        assert_eq!(
            text(publish(b"ex", b"", b"hi", &none, false)),
            ["ex", "", "hi"]
        );
    }

    #[test]
    fn payloads_are_borrowed_not_copied() {
        let payload = vec![7u8; 4096];
        let options = PushOptions::new();
        let args = push(b"q", &payload, &options);
        assert!(matches!(&args[1], Cow::Borrowed(bytes) if bytes.as_ptr() == payload.as_ptr()));
    }

    #[test]
    fn consuming_requests() {
        assert_eq!(text(pop(b"q", 1, false)), ["q", "COUNT", "1"]);
        assert_eq!(text(pop(b"q", 10, true)), ["q", "COUNT", "10", "NOACK"]);
        assert_eq!(text(bpop(b"q", 0, 3, false)), ["q", "0", "COUNT", "3"]);
        assert_eq!(
            text(bpop(b"q", 250, 1, true)),
            ["q", "250", "COUNT", "1", "NOACK"]
        );
        assert_eq!(
            text(ack(b"q", &[1, u64::MAX])),
            ["q", "1", "18446744073709551615"]
        );
        assert_eq!(text(nack(b"q", &[4], true)), ["q", "4", "REQUEUE"]);
        assert_eq!(text(nack(b"q", &[4, 5], false)), ["q", "4", "5", "DEAD"]);
        assert_eq!(text(subscribe(b"q", 100)), ["q", "PREFETCH", "100"]);
        assert_eq!(text(list(None)), Vec::<String>::new());
        assert_eq!(text(list(Some(b"jobs.*"))), ["jobs.*"]);
        assert_eq!(text(name(b"q")), ["q"]);
    }

    #[test]
    fn exchange_requests() {
        for (kind, word) in [
            (ExchangeKind::Direct, "DIRECT"),
            (ExchangeKind::Fanout, "FANOUT"),
            (ExchangeKind::Topic, "TOPIC"),
            (ExchangeKind::Headers, "HEADERS"),
        ] {
            assert_eq!(
                text(exchange_declare(b"ex", kind, true)),
                ["ex", word, "DURABLE"]
            );
        }
        assert_eq!(
            text(exchange_declare(b"ex", ExchangeKind::Topic, false)),
            ["ex", "TOPIC", "TRANSIENT"]
        );
        let key = Binding::key("orders.*");
        assert_eq!(text(binding(b"ex", b"q", &key)), ["ex", "q", "orders.*"]);
        let all = Binding::headers(HeadersMatch::All, [("format", "pdf"), ("type", "report")]);
        assert_eq!(
            text(binding(b"ex", b"q", &all)),
            ["ex", "q", "HEADERS", "ALL", "format", "pdf", "type", "report"]
        );
        let any = Binding::headers(HeadersMatch::Any, [("x", "1")]);
        assert_eq!(
            text(binding(b"ex", b"q", &any)),
            ["ex", "q", "HEADERS", "ANY", "x", "1"]
        );
    }
}
