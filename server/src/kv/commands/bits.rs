//! Bitmap commands: SETBIT GETBIT BITCOUNT BITPOS BITOP BITFIELD BITFIELD_RO.

use super::integer;
use crate::cmd::is;
use crate::context::{Call, Outcome};
use crate::frame::Frame;
use crate::kv::bits::{self, BitOp, BitRange, BitUnit, FieldAction, FieldOp, FieldType, Overflow};
use crate::kv::KvError;

pub fn setbit(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let offset = bits::parse_bit_offset(args[2], None)?;
    let on = bits::parse_bit_value(args[3])?;
    let key = args[1];
    let old = call.write(|txn| bits::set_bit_at(txn, key, offset, on))?;
    Ok(Frame::Integer(old as i64))
}

pub fn getbit(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let offset = bits::parse_bit_offset(args[2], None)?;
    Ok(Frame::Integer(
        bits::get_bit_at(call, args[1], offset)? as i64
    ))
}

/// BYTE or BIT, in any case.
fn parse_unit(arg: &[u8]) -> Result<BitUnit, KvError> {
    if is(arg, "BYTE") {
        Ok(BitUnit::Byte)
    } else if is(arg, "BIT") {
        Ok(BitUnit::Bit)
    } else {
        Err(KvError::Syntax)
    }
}

/// BITCOUNT's `[start end [BYTE|BIT]]`, checked in Redis's order: the two integers, then two
/// negative indexes with the start after the end count nothing whatever the unit word says,
/// then the unit.
fn parse_count_range(args: &[&[u8]]) -> Result<Option<BitRange>, KvError> {
    let (start, end, unit) = match args {
        [] => return Ok(None),
        [start, end] => (start, end, None),
        [start, end, unit] => (start, end, Some(unit)),
        _ => return Err(KvError::Syntax),
    };
    let (start, end) = (integer(start)?, integer(end)?);
    let unit = if start < 0 && end < 0 && start > end {
        BitUnit::Byte
    } else {
        unit.map_or(Ok(BitUnit::Byte), |unit| parse_unit(unit))?
    };
    Ok(Some(BitRange {
        start,
        end: Some(end),
        unit,
    }))
}

pub fn bitcount(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    // The range is checked only if the key exists (the core decides), as Redis does.
    let range = parse_count_range(&args[2..]);
    Ok(Frame::Integer(bits::count_at(call, args[1], range)? as i64))
}

/// BITPOS's `[start [end [BYTE|BIT]]]`, in Redis's order: start, the unit word, then end.
fn parse_position_range(args: &[&[u8]]) -> Result<Option<BitRange>, KvError> {
    if args.is_empty() {
        return Ok(None);
    }
    if args.len() > 3 {
        return Err(KvError::Syntax);
    }
    let start = integer(args[0])?;
    let unit = args
        .get(2)
        .map_or(Ok(BitUnit::Byte), |unit| parse_unit(unit))?;
    let end = args.get(1).map(|end| integer(end)).transpose()?;
    Ok(Some(BitRange { start, end, unit }))
}

pub fn bitpos(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let bit = match integer(args[2])? {
        0 => false,
        1 => true,
        _ => return Err(KvError::BitArgument.into()),
    };
    // As BITCOUNT: a missing key answers before the range is looked at.
    let range = parse_position_range(&args[3..]);
    Ok(Frame::Integer(bits::position_at(
        call, args[1], bit, range,
    )?))
}

pub fn bitop(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let op = match () {
        _ if is(args[1], "AND") => BitOp::And,
        _ if is(args[1], "OR") => BitOp::Or,
        _ if is(args[1], "XOR") => BitOp::Xor,
        _ if is(args[1], "NOT") => BitOp::Not,
        _ => return Err(KvError::Syntax.into()),
    };
    let (destination, sources) = (args[2], &args[3..]);
    let length = call.write(|txn| bits::operate(txn, op, destination, sources))?;
    Ok(Frame::Integer(length as i64))
}

/// BITFIELD's operations, parsed as Redis parses them before it looks at the key: each GET,
/// SET or INCRBY with its type, offset (`#N` counts fields) and value, under the OVERFLOW mode
/// last given before it (WRAP at first).
fn parse_field_ops(args: &[&[u8]]) -> Result<Vec<FieldOp>, KvError> {
    let mut ops = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut index = 0;
    while index < args.len() {
        let (name, rest) = (args[index], &args[index + 1..]);
        let action_arguments = if is(name, "GET") && rest.len() >= 2 {
            2
        } else if (is(name, "SET") || is(name, "INCRBY")) && rest.len() >= 3 {
            3
        } else if is(name, "OVERFLOW") && !rest.is_empty() {
            overflow = match () {
                _ if is(rest[0], "WRAP") => Overflow::Wrap,
                _ if is(rest[0], "SAT") => Overflow::Sat,
                _ if is(rest[0], "FAIL") => Overflow::Fail,
                _ => return Err(KvError::BitfieldOverflowType),
            };
            index += 2;
            continue;
        } else {
            return Err(KvError::Syntax);
        };
        let field = FieldType::parse(rest[0])?;
        let offset = bits::parse_bit_offset(rest[1], Some(field.bits))?;
        let action = match action_arguments {
            2 => FieldAction::Get,
            _ if is(name, "SET") => FieldAction::Set(integer(rest[2])?),
            _ => FieldAction::IncrBy(integer(rest[2])?),
        };
        ops.push(FieldOp {
            action,
            field,
            offset,
            overflow,
        });
        index += 1 + action_arguments;
    }
    Ok(ops)
}

/// BITFIELD (and BITFIELD_RO when `read_only`).
fn bitfield_generic(call: &mut Call<'_, '_>, args: &[&[u8]], read_only: bool) -> Outcome {
    let ops = parse_field_ops(&args[2..])?;
    let key = args[1];
    let writes = ops.iter().any(|op| op.action != FieldAction::Get);
    if !writes {
        let values = bits::read_fields(call, key, &ops)?;
        return Ok(Frame::Array(
            values.into_iter().map(Frame::Integer).collect(),
        ));
    }
    if read_only {
        return Err(KvError::BitfieldReadOnly.into());
    }
    let replies = call.write(|txn| bits::write_fields(txn, key, &ops))?;
    Ok(Frame::Array(
        replies
            .into_iter()
            .map(|reply| reply.map_or(Frame::Null, Frame::Integer))
            .collect(),
    ))
}

pub fn bitfield(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    bitfield_generic(call, args, false)
}

pub fn bitfield_ro(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    bitfield_generic(call, args, true)
}

#[cfg(test)]
mod tests {
    use crate::cmd::test_support::*;
    use crate::frame::Frame;

    fn ints(values: &[i64]) -> Frame {
        Frame::Array(values.iter().map(|value| int(*value)).collect())
    }

    #[test]
    fn setbit_getbit() {
        let mut h = Harness::new();
        assert_eq!(h.run("setbit k 7 1"), int(0));
        assert_eq!(h.run("get k"), Frame::Bulk(vec![1]));
        assert_eq!(h.run("setbit k 7 0"), int(1));
        assert_eq!(h.run("getbit k 7"), int(0));
        assert_eq!(h.run("setbit k 100 1"), int(0));
        assert_eq!(h.run("strlen k"), int(13));
        assert_eq!(h.run("getbit k 100"), int(1));
        assert_eq!(h.run("getbit k 4294967295"), int(0));
        assert_eq!(h.run("getbit missing 3"), int(0));
        let offset_error = err("ERR bit offset is not an integer or out of range");
        for bad in ["4294967296", "-1", "x", "1.5"] {
            assert_eq!(h.run(&format!("setbit k {bad} 1")), offset_error);
            assert_eq!(h.run(&format!("getbit k {bad}")), offset_error);
        }
        let bit_error = err("ERR bit is not an integer or out of range");
        for bad in ["2", "-1", "x", ""] {
            assert_eq!(
                h.run_args(&[b"setbit", b"k", b"0", bad.as_bytes()]),
                bit_error
            );
        }
        h.run("setex t 100 a");
        assert_eq!(h.run("setbit t 0 1"), int(0));
        assert_eq!(h.run("ttl t"), int(100), "SETBIT keeps the TTL");
    }

    #[test]
    fn bitcount_and_bitpos() {
        let mut h = Harness::new();
        h.run("set k foobar");
        assert_eq!(h.run("bitcount k"), int(26));
        assert_eq!(h.run("bitcount k 1 1"), int(6));
        assert_eq!(h.run("bitcount k 5 30 bit"), int(17));
        assert_eq!(h.run("bitcount k 5 30 BYTE"), int(4));
        assert_eq!(
            h.run("bitcount k -1 -2 foo"),
            int(0),
            "empty before the unit"
        );
        assert_eq!(h.run("bitcount k 0 -1 foo"), err("ERR syntax error"));
        assert_eq!(h.run("bitcount k 1"), err("ERR syntax error"));
        assert_eq!(
            h.run("bitcount k x 1"),
            err("ERR value is not an integer or out of range")
        );
        // A missing key is 0 before its arguments are looked at.
        assert_eq!(h.run("bitcount missing x y z w"), int(0));
        h.run_args(&[b"set", b"p", b"\xff\xf0\x00"]);
        assert_eq!(h.run("bitpos p 0"), int(12));
        assert_eq!(h.run("bitpos p 1 2"), int(-1));
        assert_eq!(h.run("bitpos p 0 0 0"), int(-1));
        assert_eq!(h.run("bitpos p 0 9 15 bit"), int(12));
        assert_eq!(
            h.run("bitpos p 2"),
            err("ERR The bit argument must be 1 or 0.")
        );
        assert_eq!(h.run("bitpos p 1 0 x foo"), err("ERR syntax error"));
        assert_eq!(h.run("bitpos p 1 0 1 bit x"), err("ERR syntax error"));
        assert_eq!(h.run("bitpos missing 0 x"), int(0));
        assert_eq!(h.run("bitpos missing 1 x"), int(-1));
        h.run_args(&[b"set", b"e", b""]);
        assert_eq!(h.run("bitpos e 0"), int(-1));
    }

    #[test]
    fn bitop() {
        let mut h = Harness::new();
        h.run("set a abc");
        h.run("set b \x01");
        assert_eq!(h.run("bitop or d a b missing"), int(3));
        assert_eq!(h.run("get d"), bulk("abc"));
        assert_eq!(h.run("bitop xor d a a"), int(3));
        assert_eq!(h.run("get d"), Frame::Bulk(vec![0, 0, 0]));
        assert_eq!(h.run("bitop not d b"), int(1));
        assert_eq!(h.run("get d"), Frame::Bulk(vec![0xfe]));
        assert_eq!(
            h.run("bitop not d a b"),
            err("ERR BITOP NOT must be called with a single source key.")
        );
        assert_eq!(h.run("bitop nand d a"), err("ERR syntax error"));
        h.run("setex d 100 x");
        assert_eq!(h.run("bitop and d a"), int(3));
        assert_eq!(h.run("ttl d"), int(-1), "the destination loses its TTL");
        assert_eq!(h.run("bitop and d missing"), int(0));
        assert_eq!(h.run("exists d"), int(0), "an empty result deletes it");
    }

    #[test]
    fn bitfield() {
        let mut h = Harness::new();
        assert_eq!(h.run("bitfield k"), Frame::Array(vec![]));
        assert_eq!(h.run("bitfield k get u8 0"), ints(&[0]));
        assert_eq!(h.run("exists k"), int(0));
        assert_eq!(
            h.run("bitfield k set i8 0 -1 get u8 0 incrby u4 #1 3"),
            ints(&[0, 255, 2])
        );
        assert_eq!(
            h.run("bitfield k overflow fail incrby u2 0 10 overflow sat incrby i8 8 1000"),
            Frame::Array(vec![Frame::Null, int(127)])
        );
        assert_eq!(h.run("bitfield_ro k get i8 8"), ints(&[127]));
        assert_eq!(
            h.run("bitfield_ro k set u8 0 1"),
            err("ERR BITFIELD_RO only supports the GET subcommand")
        );
        assert_eq!(
            h.run("bitfield_ro k get u8 x"),
            err("ERR bit offset is not an integer or out of range")
        );
        let type_error = err(
            "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.",
        );
        assert_eq!(h.run("bitfield k get u64 0"), type_error);
        assert_eq!(h.run("bitfield k get i65 0"), type_error);
        assert_eq!(
            h.run("bitfield k overflow foo"),
            err("ERR Invalid OVERFLOW type specified")
        );
        assert_eq!(h.run("bitfield k overflow"), err("ERR syntax error"));
        assert_eq!(h.run("bitfield k get u8"), err("ERR syntax error"));
        assert_eq!(
            h.run("bitfield k set u8 0 x"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(h.run("bitfield k foo"), err("ERR syntax error"));
        assert_eq!(
            h.run("bitfield new overflow fail incrby u2 0 10"),
            Frame::Array(vec![Frame::Null])
        );
        assert_eq!(
            h.run("get new"),
            Frame::Bulk(vec![0]),
            "created anyway, as in Redis"
        );
    }
}
