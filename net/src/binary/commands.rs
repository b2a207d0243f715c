//! The opcode table: binary opcodes for commands that need no hand-written codec.
//!
//! The key-value opcodes (0x01..=0x28, [`super::Opcode`]) have typed bodies written for them,
//! because GET and SET are the hot path. Every other command reaches the server in one of two
//! generic ways, both with the same body, an *argument list* (u32 count, then count × bytes):
//!
//! - a row of [`TABLE`]: the opcode names the command, the body holds its arguments (without
//!   the name). Parsed into [`super::Op::Command`]. A data model adds its commands here, one
//!   row each, in its reserved range; nothing else in flin-net changes.
//! - [`super::Opcode::Call`] (0xF0): the body's first argument is the command's name, so a
//!   binary client can run any command the server knows, table row or not. Parsed into
//!   [`super::Op::Call`].
//!
//! Both are answered with a typed value (`super::value`) or an error status; the server runs
//! them through the same dispatcher as RESP. Arity is checked twice: by the encoder here, so
//! a client cannot send a malformed call, and by the server's command table, which writes
//! Redis's error text.

use std::ops::RangeInclusive;

/// Opcodes reserved for message queues.
pub const QUEUE_OPCODES: RangeInclusive<u8> = 0x40..=0x5F;
/// Opcodes reserved for streams.
pub const STREAM_OPCODES: RangeInclusive<u8> = 0x60..=0x7F;
/// Opcodes reserved for documents.
pub const DOCUMENT_OPCODES: RangeInclusive<u8> = 0x80..=0x9F;
/// Opcodes reserved for protocol extensions ([`super::Opcode::Call`] is the first).
pub const EXTENSION_OPCODES: RangeInclusive<u8> = 0xF0..=0xFF;

/// How a row's request body is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// u32 count, then count × bytes: the command's arguments, without its name.
    Arguments,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// The command's name as the server's command table spells it (lower case,
    /// `queue.push`); the server runs it as if this name came first in the arguments.
    pub name: &'static str,
    /// Its opcode, in its model's reserved range.
    pub opcode: u8,
    /// Redis's arity, counting the name: `n` exactly n, `-n` at least n.
    pub arity: i64,
    /// Request body layout.
    pub body: Body,
}

impl CommandSpec {
    /// True if `args` arguments (after the name) fit the arity.
    pub fn arity_ok(&self, args: usize) -> bool {
        let with_name = args as i64 + 1;
        if self.arity >= 0 {
            with_name == self.arity
        } else {
            with_name >= -self.arity
        }
    }
}

/// A row with an argument-list body (every row today).
const fn arguments(name: &'static str, opcode: u8, arity: i64) -> CommandSpec {
    CommandSpec {
        name,
        opcode,
        arity,
        body: Body::Arguments,
    }
}

/// Every command with an opcode of its own beyond the typed key-value opcodes: the message
/// queues' rows (0x40..=0x5F, issue 11), the streams' (0x60..=0x7F, issue 12) and the first
/// document rows (0x80..=0x9F, issue 13); arguments, replies and errors in docs/commands.md.
/// [`super::Opcode::Call`] carries every other command.
pub static TABLE: &[CommandSpec] = &[
    // Queues, 0x40..=0x4F.
    arguments("queue.declare", 0x40, -2),
    arguments("queue.delete", 0x41, 2),
    arguments("queue.purge", 0x42, 2),
    arguments("queue.len", 0x43, 2),
    arguments("queue.list", 0x44, -1),
    arguments("queue.info", 0x45, 2),
    arguments("queue.push", 0x46, -3),
    arguments("queue.mpush", 0x47, -4),
    arguments("queue.pop", 0x48, -2),
    arguments("queue.bpop", 0x49, -3),
    arguments("queue.ack", 0x4A, -3),
    arguments("queue.nack", 0x4B, -3),
    arguments("queue.subscribe", 0x4C, -2),
    arguments("queue.unsubscribe", 0x4D, -1),
    // Exchanges, 0x50..=0x5F.
    arguments("exchange.declare", 0x50, -3),
    arguments("exchange.delete", 0x51, 2),
    arguments("exchange.bind", 0x52, -4),
    arguments("exchange.unbind", 0x53, -4),
    arguments("exchange.list", 0x54, 1),
    arguments("exchange.bindings", 0x55, 2),
    arguments("exchange.publish", 0x56, -4),
    // Streams, 0x60..=0x7F (issue 12).
    arguments("stream.create", 0x60, -4),
    arguments("stream.alter", 0x61, -2),
    arguments("stream.delete", 0x62, 2),
    arguments("stream.list", 0x63, -1),
    arguments("stream.describe", 0x64, 2),
    arguments("stream.publish", 0x65, -3),
    arguments("stream.mpublish", 0x66, -4),
    arguments("stream.fetch", 0x67, -4),
    arguments("stream.join", 0x68, -4),
    arguments("stream.heartbeat", 0x69, 5),
    arguments("stream.leave", 0x6A, 4),
    arguments("stream.consume", 0x6B, -4),
    arguments("stream.commit", 0x6C, -7),
    arguments("stream.offsets", 0x6D, 3),
    arguments("stream.seek", 0x6E, 5),
    arguments("stream.lag", 0x6F, 3),
    arguments("stream.groups", 0x70, 2),
    // Documents, 0x80..=0x9F (issue 13).
    arguments("doc.insert", 0x80, -3),
    arguments("doc.get", 0x81, 3),
    arguments("doc.find", 0x82, -3),
    arguments("doc.count", 0x83, 3),
    arguments("doc.update", 0x84, -4),
    arguments("doc.replace", 0x85, -4),
    arguments("doc.delete", 0x86, -3),
    arguments("doc.collections", 0x87, 1),
    arguments("doc.drop", 0x88, 2),
    arguments("doc.findandmodify", 0x89, -4),
    arguments("doc.index", 0x8A, -3),
    arguments("doc.dropindex", 0x8B, 3),
    arguments("doc.indexes", 0x8C, 2),
    arguments("doc.explain", 0x8D, -3),
    arguments("doc.watch", 0x8E, -3),
    arguments("doc.aggregate", 0x8F, 3),
];

/// The row for `opcode` in `table`.
pub(crate) fn by_opcode(table: &'static [CommandSpec], opcode: u8) -> Option<&'static CommandSpec> {
    table.iter().find(|spec| spec.opcode == opcode)
}

/// The row of [`TABLE`] for a command name (ASCII case-insensitive).
pub fn by_name(name: &[u8]) -> Option<&'static CommandSpec> {
    TABLE
        .iter()
        .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
}

/// What a table must hold to be served: unique names and opcodes, each opcode in a reserved
/// model range (not a typed opcode's, not an extension's). Returns the first problem.
pub fn check_table(table: &[CommandSpec]) -> Result<(), String> {
    for (i, spec) in table.iter().enumerate() {
        let in_a_model_range = [QUEUE_OPCODES, STREAM_OPCODES, DOCUMENT_OPCODES]
            .iter()
            .any(|range| range.contains(&spec.opcode));
        if !in_a_model_range {
            return Err(format!(
                "'{}' has opcode 0x{:02x}, outside the model ranges",
                spec.name, spec.opcode
            ));
        }
        if spec.name.is_empty() || spec.name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "'{}' must be a non-empty lower-case name",
                spec.name
            ));
        }
        if spec.arity == 0 {
            return Err(format!("'{}' has arity 0 (the name counts)", spec.name));
        }
        if let Some(other) = table[..i]
            .iter()
            .find(|other| other.opcode == spec.opcode || other.name == spec.name)
        {
            return Err(format!("'{}' and '{}' collide", other.name, spec.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_well_formed() {
        check_table(TABLE).unwrap();
        for spec in TABLE {
            assert_eq!(by_opcode(TABLE, spec.opcode), Some(spec));
            assert_eq!(
                by_name(spec.name.to_ascii_uppercase().as_bytes()),
                Some(spec)
            );
        }
    }

    /// Issues 11 and 12's rows, as docs/commands.md and the server's command table have them:
    /// every row is a queue or exchange command in the queue range or a stream command in the
    /// stream range, and each is here.
    #[test]
    fn every_row_is_a_queue_or_stream_command_in_its_range() {
        for spec in TABLE {
            let queue = spec.name.starts_with("queue.") || spec.name.starts_with("exchange.");
            let stream = spec.name.starts_with("stream.");
            let document = spec.name.starts_with("doc.");
            assert!(
                (queue && QUEUE_OPCODES.contains(&spec.opcode))
                    || (stream && STREAM_OPCODES.contains(&spec.opcode))
                    || (document && DOCUMENT_OPCODES.contains(&spec.opcode)),
                "'{}' (opcode 0x{:02x}) is not in its model's range",
                spec.name,
                spec.opcode
            );
        }
        let expected: [(&str, u8, i64); 54] = [
            ("queue.declare", 0x40, -2),
            ("queue.delete", 0x41, 2),
            ("queue.purge", 0x42, 2),
            ("queue.len", 0x43, 2),
            ("queue.list", 0x44, -1),
            ("queue.info", 0x45, 2),
            ("queue.push", 0x46, -3),
            ("queue.mpush", 0x47, -4),
            ("queue.pop", 0x48, -2),
            ("queue.bpop", 0x49, -3),
            ("queue.ack", 0x4A, -3),
            ("queue.nack", 0x4B, -3),
            ("queue.subscribe", 0x4C, -2),
            ("queue.unsubscribe", 0x4D, -1),
            ("exchange.declare", 0x50, -3),
            ("exchange.delete", 0x51, 2),
            ("exchange.bind", 0x52, -4),
            ("exchange.unbind", 0x53, -4),
            ("exchange.list", 0x54, 1),
            ("exchange.bindings", 0x55, 2),
            ("exchange.publish", 0x56, -4),
            ("stream.create", 0x60, -4),
            ("stream.alter", 0x61, -2),
            ("stream.delete", 0x62, 2),
            ("stream.list", 0x63, -1),
            ("stream.describe", 0x64, 2),
            ("stream.publish", 0x65, -3),
            ("stream.mpublish", 0x66, -4),
            ("stream.fetch", 0x67, -4),
            ("stream.join", 0x68, -4),
            ("stream.heartbeat", 0x69, 5),
            ("stream.leave", 0x6A, 4),
            ("stream.consume", 0x6B, -4),
            ("stream.commit", 0x6C, -7),
            ("stream.offsets", 0x6D, 3),
            ("stream.seek", 0x6E, 5),
            ("stream.lag", 0x6F, 3),
            ("stream.groups", 0x70, 2),
            ("doc.insert", 0x80, -3),
            ("doc.get", 0x81, 3),
            ("doc.find", 0x82, -3),
            ("doc.count", 0x83, 3),
            ("doc.update", 0x84, -4),
            ("doc.replace", 0x85, -4),
            ("doc.delete", 0x86, -3),
            ("doc.collections", 0x87, 1),
            ("doc.drop", 0x88, 2),
            ("doc.findandmodify", 0x89, -4),
            ("doc.index", 0x8A, -3),
            ("doc.dropindex", 0x8B, 3),
            ("doc.indexes", 0x8C, 2),
            ("doc.explain", 0x8D, -3),
            ("doc.watch", 0x8E, -3),
            ("doc.aggregate", 0x8F, 3),
        ];
        assert_eq!(TABLE.len(), expected.len());
        for (name, opcode, arity) in expected {
            let spec = by_name(name.as_bytes()).unwrap_or_else(|| panic!("no row '{name}'"));
            assert_eq!((spec.opcode, spec.arity), (opcode, arity), "{name}");
        }
    }

    #[test]
    fn check_table_finds_each_problem() {
        let row = |name, opcode, arity| CommandSpec {
            name,
            opcode,
            arity,
            body: Body::Arguments,
        };
        assert!(
            check_table(&[row("queue.push", 0x40, -3), row("stream.publish", 0x60, -3)]).is_ok()
        );
        assert!(check_table(&[row("get", 0x10, 2)])
            .unwrap_err()
            .contains("outside"));
        assert!(check_table(&[row("x", 0xF0, 2)])
            .unwrap_err()
            .contains("outside"));
        assert!(check_table(&[row("Queue.Push", 0x40, 2)])
            .unwrap_err()
            .contains("lower-case"));
        assert!(check_table(&[row("queue.push", 0x40, 0)])
            .unwrap_err()
            .contains("arity"));
        assert!(check_table(&[row("a", 0x40, 2), row("b", 0x40, 2)])
            .unwrap_err()
            .contains("collide"));
        assert!(check_table(&[row("a", 0x40, 2), row("a", 0x41, 2)])
            .unwrap_err()
            .contains("collide"));
    }

    #[test]
    fn arity_counts_the_name() {
        let exact = CommandSpec {
            name: "queue.ack",
            opcode: 0x42,
            arity: 3,
            body: Body::Arguments,
        };
        assert!(!exact.arity_ok(1) && exact.arity_ok(2) && !exact.arity_ok(3));
        let at_least = CommandSpec { arity: -2, ..exact };
        assert!(!at_least.arity_ok(0) && at_least.arity_ok(1) && at_least.arity_ok(9));
    }
}
