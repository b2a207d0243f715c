//! Bitmaps over string values: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP and BITFIELD.
//!
//! Bit 0 is the most significant bit of the first byte, as in Redis; a string reads as
//! followed by zero bits for ever. The pure functions (offsets, counting, searching, bit
//! operations, fields and their overflow rules) come first, each with a test against a naive
//! bit-by-bit reference; then the functions that run them on a key.

use super::core::{KvError, KvRead, KvWrite, Result, STRING_BYTES_MAX};
use crate::number::parse_i64;

/// The highest bit offset: bit 2^32 - 1, the last of a 512 MiB string (Redis refuses an offset
/// whose byte is at or past `proto-max-bulk-len`).
pub const BIT_OFFSET_MAX: u64 = STRING_BYTES_MAX as u64 * 8 - 1;

/// A bit offset argument (Redis's `getBitOffsetFromArgument`): a strict integer in
/// `0..=BIT_OFFSET_MAX`. With `field_bits` (BITFIELD), `#N` means the N-th field of that width,
/// `N * field_bits`; the product wraps as Redis's 64-bit multiplication does, so a huge `#N`
/// is refused as negative or past the limit, or (like Redis) lands on a small offset.
pub fn parse_bit_offset(arg: &[u8], field_bits: Option<u32>) -> Result<u64> {
    let (digits, multiplier) = match (arg.first(), field_bits) {
        (Some(b'#'), Some(bits)) => (&arg[1..], bits as i64),
        _ => (arg, 1),
    };
    let offset = parse_i64(digits)
        .ok_or(KvError::BitOffset)?
        .wrapping_mul(multiplier);
    if offset < 0 || offset as u64 > BIT_OFFSET_MAX {
        return Err(KvError::BitOffset);
    }
    Ok(offset as u64)
}

/// SETBIT's value: 0 or 1.
pub fn parse_bit_value(arg: &[u8]) -> Result<bool> {
    match parse_i64(arg) {
        Some(0) => Ok(false),
        Some(1) => Ok(true),
        _ => Err(KvError::BitValue),
    }
}

/// The bit at `offset` (0 past the end).
pub fn get_bit(value: &[u8], offset: u64) -> bool {
    let byte = (offset >> 3) as usize;
    value
        .get(byte)
        .is_some_and(|byte| byte & (0x80 >> (offset & 7)) != 0)
}

/// Sets the bit at `offset` to `on`, growing the string with zero bytes to reach it; the old
/// bit.
pub fn set_bit(value: &mut Vec<u8>, offset: u64, on: bool) -> bool {
    let byte = (offset >> 3) as usize;
    if value.len() <= byte {
        value.resize(byte + 1, 0);
    }
    let mask = 0x80 >> (offset & 7);
    let old = value[byte] & mask != 0;
    if on {
        value[byte] |= mask;
    } else {
        value[byte] &= !mask;
    }
    old
}

/// Whether BITCOUNT's and BITPOS's indexes count bytes or bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BitUnit {
    #[default]
    Byte,
    Bit,
}

/// A BITCOUNT / BITPOS range as given: indexes in `unit`, negative ones from the end, both
/// inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BitRange {
    pub start: i64,
    /// `None`: to the end of the string (BITPOS with a start only).
    pub end: Option<i64>,
    pub unit: BitUnit,
}

/// A range resolved against a string: the first and last bit it covers (`None`: empty).
fn resolve(range: &BitRange, length: usize) -> Option<(u64, u64)> {
    let total = match range.unit {
        BitUnit::Byte => length as i64,
        BitUnit::Bit => length as i64 * 8,
    };
    let mut start = range.start;
    let mut end = range.end.unwrap_or(total - 1);
    if start < 0 {
        start += total;
    }
    if end < 0 {
        end += total;
    }
    start = start.max(0);
    end = end.max(0).min(total - 1);
    if start > end {
        return None;
    }
    let (start, end) = (start as u64, end as u64);
    Some(match range.unit {
        BitUnit::Byte => (start * 8, end * 8 + 7),
        BitUnit::Bit => (start, end),
    })
}

/// Bits set in `bytes`, eight bytes at a time.
fn popcount(bytes: &[u8]) -> u64 {
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    let in_words: u64 = words
        .map(|word| u64::from_ne_bytes(word.try_into().expect("8 bytes")).count_ones() as u64)
        .sum();
    in_words
        + tail
            .iter()
            .map(|byte| byte.count_ones() as u64)
            .sum::<u64>()
}

/// BITCOUNT: the set bits of `value` in `range` (all of them without one). As in Redis, two
/// negative indexes with the start after the end count nothing, before clamping could turn
/// them into a range.
pub fn count_bits(value: &[u8], range: Option<&BitRange>) -> u64 {
    let Some(range) = range else {
        return popcount(value);
    };
    if let Some(end) = range.end {
        if range.start < 0 && end < 0 && range.start > end {
            return 0;
        }
    }
    let Some((first, last)) = resolve(range, value.len()) else {
        return 0;
    };
    let (first_byte, last_byte) = ((first / 8) as usize, (last / 8) as usize);
    // Whole bytes, less the bits of the first byte before `first` and of the last after
    // `last` (disjoint even when both are the same byte).
    let before = value[first_byte] & !(0xFF >> (first % 8));
    let after = value[last_byte] & ((1u16 << (7 - last % 8)) - 1) as u8;
    popcount(&value[first_byte..=last_byte]) - (before.count_ones() + after.count_ones()) as u64
}

/// The first bit equal to `bit` between bits `first` and `last` (inclusive, inside `value`).
fn find_bit(value: &[u8], bit: bool, first: u64, last: u64) -> Option<u64> {
    let (first_byte, last_byte) = ((first / 8) as usize, (last / 8) as usize);
    // Looks for a set bit in each byte, flipped when searching for a clear one.
    let candidate = |index: usize| {
        let mut byte = if bit { value[index] } else { !value[index] };
        if index == first_byte {
            byte &= 0xFF >> (first % 8);
        }
        if index == last_byte {
            byte &= 0xFF << (7 - last % 8);
        }
        byte
    };
    let found = |index: usize, byte: u8| Some(index as u64 * 8 + byte.leading_zeros() as u64);
    let byte = candidate(first_byte);
    if byte != 0 {
        return found(first_byte, byte);
    }
    if first_byte == last_byte {
        return None;
    }
    // The bytes in between, skipped eight at a time while they hold nothing to find.
    let skip = if bit { 0u64 } else { u64::MAX };
    let mut index = first_byte + 1;
    while index + 8 <= last_byte {
        let word = u64::from_ne_bytes(value[index..index + 8].try_into().expect("8 bytes"));
        if word != skip {
            break;
        }
        index += 8;
    }
    while index <= last_byte {
        let byte = candidate(index);
        if byte != 0 {
            return found(index, byte);
        }
        index += 1;
    }
    None
}

/// BITPOS: the position of the first bit equal to `bit` in `range` (the whole string without
/// one), or -1. Looking for a 0 without an end given, the string reads as padded with zeros,
/// so a run of ones answers the bit just past it; with an end given, -1. An empty range is
/// -1 either way.
pub fn bit_position(value: &[u8], bit: bool, range: Option<&BitRange>) -> i64 {
    let whole = BitRange {
        start: 0,
        end: None,
        unit: BitUnit::Byte,
    };
    let range = range.unwrap_or(&whole);
    let Some((first, last)) = resolve(range, value.len()) else {
        return -1;
    };
    match find_bit(value, bit, first, last) {
        Some(position) => position as i64,
        None if !bit && range.end.is_none() => last as i64 + 1,
        None => -1,
    }
}

/// BITOP's operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

/// BITOP: `op` over `sources` byte by byte, each read as padded with zeros to the longest
/// (a missing key is an empty string); NOT takes one source.
pub fn bit_operation(op: BitOp, sources: &[&[u8]]) -> Vec<u8> {
    let length = sources.iter().map(|source| source.len()).max().unwrap_or(0);
    let byte = |source: &[u8], index: usize| source.get(index).copied().unwrap_or(0);
    let mut result = Vec::with_capacity(length);
    for index in 0..length {
        let first = byte(sources[0], index);
        let rest = sources[1..].iter().map(|source| byte(source, index));
        result.push(match op {
            BitOp::And => rest.fold(first, |acc, byte| acc & byte),
            BitOp::Or => rest.fold(first, |acc, byte| acc | byte),
            BitOp::Xor => rest.fold(first, |acc, byte| acc ^ byte),
            BitOp::Not => !first,
        });
    }
    result
}

/// A BITFIELD type: `i1`..`i64` or `u1`..`u63` (unsigned 64-bit values would not fit the
/// protocol's signed integers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldType {
    pub signed: bool,
    pub bits: u32,
}

impl FieldType {
    /// Parses the type as Redis does: `i` or `u` (lower case), then a strict integer read up
    /// to the first NUL byte (Redis reads it with `strlen`).
    pub fn parse(arg: &[u8]) -> Result<FieldType> {
        let signed = match arg.first() {
            Some(b'i') => true,
            Some(b'u') => false,
            _ => return Err(KvError::BitfieldType),
        };
        let rest = &arg[1..];
        let digits = &rest[..rest
            .iter()
            .position(|byte| *byte == 0)
            .unwrap_or(rest.len())];
        let bits = parse_i64(digits).ok_or(KvError::BitfieldType)?;
        let most = if signed { 64 } else { 63 };
        if !(1..=most).contains(&bits) {
            return Err(KvError::BitfieldType);
        }
        Ok(FieldType {
            signed,
            bits: bits as u32,
        })
    }

    fn max(self) -> i64 {
        match (self.signed, self.bits) {
            (true, 64) => i64::MAX,
            (true, bits) => (1i64 << (bits - 1)) - 1,
            (false, bits) => ((1u64 << bits) - 1) as i64,
        }
    }

    fn min(self) -> i64 {
        if self.signed {
            -self.max() - 1
        } else {
            0
        }
    }

    /// `raw` cut to the field's width: sign-extended if signed, masked if not (the two's
    /// complement wrap).
    fn wrap(self, raw: u64) -> i64 {
        if self.bits == 64 {
            return raw as i64;
        }
        let high = u64::MAX << self.bits;
        if self.signed && raw & (1 << (self.bits - 1)) != 0 {
            (raw | high) as i64
        } else {
            (raw & !high) as i64
        }
    }
}

/// BITFIELD's OVERFLOW mode, for the SET and INCRBY after it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Two's complement wrap-around.
    #[default]
    Wrap,
    /// Saturate at the type's minimum or maximum.
    Sat,
    /// Refuse the operation: its reply is null and nothing is written.
    Fail,
}

/// A value that does not fit its field: too big or too small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutOfRange {
    Above,
    Below,
}

/// Redis's `checkSignedBitfieldOverflow` / `checkUnsignedBitfieldOverflow`, computed as Redis
/// computes them (64-bit arithmetic that wraps). It differs from the exact answer in one
/// place, kept for compatibility: a SET of a negative value on an unsigned field is seen as
/// the huge unsigned number it is in two's complement (SAT stores the maximum), and a SET of a
/// value within a few hundred of -2^63 on a signed field narrower than 64 bits as too big.
fn out_of_range(field: FieldType, value: i64, increment: i64) -> Option<OutOfRange> {
    if field.signed {
        let max = field.max();
        let min = field.min();
        let max_increment = (max as u64).wrapping_sub(value as u64) as i64;
        let min_increment = min.wrapping_sub(value);
        let narrow = field.bits != 64;
        if value > max
            || (narrow && increment > max_increment)
            || (value >= 0 && increment > 0 && increment > max_increment)
        {
            Some(OutOfRange::Above)
        } else if value < min
            || (narrow && increment < min_increment)
            || (value < 0 && increment < 0 && increment < min_increment)
        {
            Some(OutOfRange::Below)
        } else {
            None
        }
    } else {
        let value = value as u64;
        let max = field.max() as u64;
        let max_increment = max.wrapping_sub(value) as i64;
        let min_increment = value.wrapping_neg() as i64;
        if value > max || (increment > 0 && increment > max_increment) {
            Some(OutOfRange::Above)
        } else if increment < 0 && increment < min_increment {
            Some(OutOfRange::Below)
        } else {
            None
        }
    }
}

/// `value + increment` stored in `field` under `overflow` (`None`: FAIL refuses it).
fn fit(field: FieldType, value: i64, increment: i64, overflow: Overflow) -> Option<i64> {
    let sum = (value as u64).wrapping_add(increment as u64);
    match (out_of_range(field, value, increment), overflow) {
        (None, _) | (Some(_), Overflow::Wrap) => Some(field.wrap(sum)),
        (Some(OutOfRange::Above), Overflow::Sat) => Some(field.max()),
        (Some(OutOfRange::Below), Overflow::Sat) => Some(field.min()),
        (Some(_), Overflow::Fail) => None,
    }
}

/// The field of type `field` at bit `offset` (zero bits past the end).
pub fn read_field(value: &[u8], offset: u64, field: FieldType) -> i64 {
    let raw = (0..field.bits as u64).fold(0u64, |raw, index| {
        (raw << 1) | get_bit(value, offset + index) as u64
    });
    field.wrap(raw)
}

/// Writes the low `field.bits` bits of `field_value` at bit `offset`; `value` must hold them.
fn write_field(value: &mut [u8], offset: u64, field: FieldType, field_value: i64) {
    let raw = field_value as u64;
    for index in 0..field.bits as u64 {
        let bit = raw >> (field.bits as u64 - 1 - index) & 1 == 1;
        let at = offset + index;
        let mask = 0x80 >> (at & 7);
        let byte = &mut value[(at >> 3) as usize];
        *byte = if bit { *byte | mask } else { *byte & !mask };
    }
}

/// One BITFIELD operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldAction {
    Get,
    /// SET: answers the old value.
    Set(i64),
    /// INCRBY: answers the new value.
    IncrBy(i64),
}

/// One BITFIELD operation with its field and the OVERFLOW mode in force for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldOp {
    pub action: FieldAction,
    pub field: FieldType,
    pub offset: u64,
    pub overflow: Overflow,
}

impl FieldOp {
    fn writes(&self) -> bool {
        self.action != FieldAction::Get
    }
}

/// Runs `ops` in order on `value`, which already holds every bit they write. Each answers
/// its value, or `None` when FAIL refused it; also returns whether any write changed a field.
pub fn apply_fields(value: &mut [u8], ops: &[FieldOp]) -> (Vec<Option<i64>>, bool) {
    let mut changed = false;
    let replies = ops
        .iter()
        .map(|op| {
            let old = read_field(value, op.offset, op.field);
            let (new, reply) = match op.action {
                FieldAction::Get => return Some(old),
                FieldAction::Set(to) => {
                    let new = fit(op.field, to, 0, op.overflow)?;
                    (new, old)
                }
                FieldAction::IncrBy(by) => {
                    let new = fit(op.field, old, by, op.overflow)?;
                    (new, new)
                }
            };
            write_field(value, op.offset, op.field, new);
            changed |= new != old;
            Some(reply)
        })
        .collect();
    (replies, changed)
}

// ---- on a key ----

/// SETBIT: the old bit. A missing key is created (padded with zeros); a bit already equal
/// writes nothing (WATCH does not see it, as in Redis).
pub fn set_bit_at(txn: &mut impl KvWrite, key: &[u8], offset: u64, on: bool) -> Result<bool> {
    let (mut value, expiry_ms, existed) = match txn.get(key)? {
        Some(found) => (found.value, found.expiry_ms, true),
        None => (Vec::new(), 0, false),
    };
    let length = value.len();
    let old = set_bit(&mut value, offset, on);
    if !existed || value.len() != length || old != on {
        txn.put(key, &value, expiry_ms)?;
    }
    Ok(old)
}

/// GETBIT.
pub fn get_bit_at(read: &impl KvRead, key: &[u8], offset: u64) -> Result<bool> {
    Ok(read
        .read_with(key, |value, _| get_bit(value, offset))?
        .unwrap_or(false))
}

/// BITCOUNT: 0 for a missing key, whose range is not even looked at (so a range that does
/// not parse is an error only for a key that exists, as in Redis).
pub fn count_at(read: &impl KvRead, key: &[u8], range: Result<Option<BitRange>>) -> Result<u64> {
    read.read_with(key, |value, _| {
        range.map(|range| count_bits(value, range.as_ref()))
    })?
    .unwrap_or(Ok(0))
}

/// BITPOS: a missing key is all zeros (0 looking for a 0, -1 for a 1), whatever the range.
pub fn position_at(
    read: &impl KvRead,
    key: &[u8],
    bit: bool,
    range: Result<Option<BitRange>>,
) -> Result<i64> {
    read.read_with(key, |value, _| {
        range.map(|range| bit_position(value, bit, range.as_ref()))
    })?
    .unwrap_or(Ok(if bit { -1 } else { 0 }))
}

/// BITOP: stores the result in `destination` (without TTL) and answers its length; an empty
/// result deletes `destination`.
pub fn operate(
    txn: &mut impl KvWrite,
    op: BitOp,
    destination: &[u8],
    sources: &[&[u8]],
) -> Result<usize> {
    if op == BitOp::Not && sources.len() != 1 {
        return Err(KvError::BitopNotSources);
    }
    let mut values = Vec::with_capacity(sources.len());
    for source in sources {
        values.push(
            txn.get(source)?
                .map(|found| found.value)
                .unwrap_or_default(),
        );
    }
    let borrowed: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let result = bit_operation(op, &borrowed);
    if result.is_empty() {
        txn.delete(destination)?;
    } else {
        txn.put(destination, &result, 0)?;
    }
    Ok(result.len())
}

/// BITFIELD with only GETs (and BITFIELD_RO): reads, never creates the key.
pub fn read_fields(read: &impl KvRead, key: &[u8], ops: &[FieldOp]) -> Result<Vec<i64>> {
    let read_all = |value: &[u8]| -> Vec<i64> {
        ops.iter()
            .map(|op| read_field(value, op.offset, op.field))
            .collect()
    };
    Ok(read
        .read_with(key, |value, _| read_all(value))?
        .unwrap_or_else(|| read_all(&[])))
}

/// BITFIELD with a SET or INCRBY: the key is created or grown (zeros) to hold the farthest
/// bit written, then `ops` run in order. Written if it was created or grown or a field
/// changed; the TTL is kept.
pub fn write_fields(
    txn: &mut impl KvWrite,
    key: &[u8],
    ops: &[FieldOp],
) -> Result<Vec<Option<i64>>> {
    let (mut value, expiry_ms, existed) = match txn.get(key)? {
        Some(found) => (found.value, found.expiry_ms, true),
        None => (Vec::new(), 0, false),
    };
    let length = value.len();
    let farthest = ops
        .iter()
        .filter(|op| op.writes())
        .map(|op| op.offset + op.field.bits as u64 - 1)
        .max();
    if let Some(farthest) = farthest {
        let needed = (farthest >> 3) as usize + 1;
        if value.len() < needed {
            value.resize(needed, 0);
        }
    }
    let (replies, changed) = apply_fields(&mut value, ops);
    if !existed || value.len() != length || changed {
        txn.put(key, &value, expiry_ms)?;
    }
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::testing::Kv;
    use proptest::prelude::*;

    // ---- naive references, one bit at a time ----

    fn bits_of(value: &[u8]) -> Vec<bool> {
        (0..value.len() as u64 * 8)
            .map(|offset| get_bit(value, offset))
            .collect()
    }

    /// The range's bits as BITCOUNT and BITPOS define them, by brute force.
    fn naive_span(value: &[u8], range: &BitRange) -> Option<(usize, usize)> {
        let bits = value.len() as i64 * 8;
        let scale = if range.unit == BitUnit::Byte { 8 } else { 1 };
        let total = bits / scale;
        let index = |i: i64| if i < 0 { (i + total).max(0) } else { i };
        let start = index(range.start);
        let end = index(range.end.unwrap_or(total - 1)).min(total - 1);
        if start > end {
            return None;
        }
        Some(((start * scale) as usize, (end * scale + scale - 1) as usize))
    }

    fn naive_count(value: &[u8], range: Option<&BitRange>) -> u64 {
        let bits = bits_of(value);
        let Some(range) = range else {
            return bits.iter().filter(|bit| **bit).count() as u64;
        };
        if let Some(end) = range.end {
            if range.start < 0 && end < 0 && range.start > end {
                return 0;
            }
        }
        match naive_span(value, range) {
            None => 0,
            Some((first, last)) => bits[first..=last].iter().filter(|bit| **bit).count() as u64,
        }
    }

    fn naive_position(value: &[u8], bit: bool, range: Option<&BitRange>) -> i64 {
        let bits = bits_of(value);
        let whole = BitRange {
            start: 0,
            end: None,
            unit: BitUnit::Byte,
        };
        let range = range.unwrap_or(&whole);
        let Some((first, last)) = naive_span(value, range) else {
            return -1;
        };
        match (first..=last).find(|at| bits[*at] == bit) {
            Some(at) => at as i64,
            None if !bit && range.end.is_none() => last as i64 + 1,
            None => -1,
        }
    }

    /// A field's value after SET or INCRBY, in exact (128-bit) arithmetic, with the two
    /// places Redis's 64-bit arithmetic answers otherwise spelled out.
    fn naive_fit(
        field: FieldType,
        old: i64,
        action: FieldAction,
        overflow: Overflow,
    ) -> Option<i64> {
        let (min, max) = if field.signed {
            (
                -(1i128 << (field.bits - 1)),
                (1i128 << (field.bits - 1)) - 1,
            )
        } else {
            (0, (1i128 << field.bits) - 1)
        };
        let exact: i128 = match action {
            FieldAction::Get => return Some(old),
            // An unsigned field takes a negative SET as its two's complement u64.
            FieldAction::Set(to) if !field.signed => to as u64 as i128,
            FieldAction::Set(to) => to as i128,
            FieldAction::IncrBy(by) => old as i128 + by as i128,
        };
        // Redis computes `max - value` in 64 bits: for a signed field narrower than 64 bits
        // and a SET value below `max - i64::MAX`, that wraps negative and the value counts as
        // too big.
        let quirk = field.signed
            && field.bits < 64
            && matches!(action, FieldAction::Set(_))
            && exact < max - i64::MAX as i128;
        if exact >= min && exact <= max {
            return Some(exact as i64);
        }
        match overflow {
            Overflow::Fail => None,
            Overflow::Sat if exact > max || quirk => Some(max as i64),
            Overflow::Sat => Some(min as i64),
            Overflow::Wrap => {
                let modulus = 1i128 << field.bits;
                let mut wrapped = exact.rem_euclid(modulus);
                if field.signed && wrapped > max {
                    wrapped -= modulus;
                }
                Some(wrapped as i64)
            }
        }
    }

    fn naive_field(value: &[u8], offset: u64, field: FieldType) -> i64 {
        let bits = (0..field.bits as u64).map(|index| get_bit(value, offset + index));
        let magnitude = bits.fold(0i128, |acc, bit| acc * 2 + bit as i128);
        let negative = field.signed && magnitude >= 1i128 << (field.bits - 1);
        (if negative {
            magnitude - (1i128 << field.bits)
        } else {
            magnitude
        }) as i64
    }

    // ---- strategies ----

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop_oneof![Just(0u8), Just(0xFF), any::<u8>()], 0..40)
    }

    fn index() -> impl Strategy<Value = i64> {
        prop_oneof![
            -400i64..400,
            Just(i64::MIN),
            Just(i64::MAX),
            Just(-1),
            Just(0)
        ]
    }

    fn range() -> impl Strategy<Value = BitRange> {
        (
            index(),
            prop::option::of(index()),
            prop_oneof![Just(BitUnit::Byte), Just(BitUnit::Bit)],
        )
            .prop_map(|(start, end, unit)| BitRange { start, end, unit })
    }

    fn field_type() -> impl Strategy<Value = FieldType> {
        prop_oneof![
            (1u32..=64).prop_map(|bits| FieldType { signed: true, bits }),
            (1u32..=63).prop_map(|bits| FieldType {
                signed: false,
                bits
            }),
        ]
    }

    fn field_value() -> impl Strategy<Value = i64> {
        prop_oneof![
            any::<i64>(),
            -300i64..300,
            Just(i64::MIN),
            Just(i64::MAX),
            (1u32..63).prop_map(|shift| 1i64 << shift),
            (1u32..63).prop_map(|shift| -(1i64 << shift)),
            (1u32..63).prop_map(|shift| (1i64 << shift) - 1),
            (0i64..300).prop_map(|near| i64::MIN + near),
        ]
    }

    fn overflow() -> impl Strategy<Value = Overflow> {
        prop_oneof![
            Just(Overflow::Wrap),
            Just(Overflow::Sat),
            Just(Overflow::Fail)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn counting_matches_a_bit_by_bit_count(value in bytes(), range in prop::option::of(range())) {
            prop_assert_eq!(count_bits(&value, range.as_ref()), naive_count(&value, range.as_ref()));
        }

        #[test]
        fn searching_matches_a_bit_by_bit_search(
            value in bytes(),
            bit in any::<bool>(),
            range in prop::option::of(range()),
        ) {
            prop_assert_eq!(
                bit_position(&value, bit, range.as_ref()),
                naive_position(&value, bit, range.as_ref())
            );
        }

        #[test]
        fn setting_a_bit_changes_that_bit_only(value in bytes(), offset in 0u64..400, on in any::<bool>()) {
            let mut changed = value.clone();
            let old = set_bit(&mut changed, offset, on);
            prop_assert_eq!(old, get_bit(&value, offset));
            let length = value.len().max(offset as usize / 8 + 1);
            prop_assert_eq!(changed.len(), length);
            for at in 0..length as u64 * 8 {
                let expected = if at == offset { on } else { get_bit(&value, at) };
                prop_assert_eq!(get_bit(&changed, at), expected);
            }
        }

        #[test]
        fn bit_operations_match_bit_by_bit(
            sources in prop::collection::vec(bytes(), 1..4),
            op in prop_oneof![Just(BitOp::And), Just(BitOp::Or), Just(BitOp::Xor), Just(BitOp::Not)],
        ) {
            let sources = if op == BitOp::Not { sources[..1].to_vec() } else { sources };
            let borrowed: Vec<&[u8]> = sources.iter().map(Vec::as_slice).collect();
            let result = bit_operation(op, &borrowed);
            let length = sources.iter().map(Vec::len).max().unwrap_or(0);
            prop_assert_eq!(result.len(), length);
            for at in 0..length as u64 * 8 {
                let inputs: Vec<bool> = sources.iter().map(|source| get_bit(source, at)).collect();
                let expected = match op {
                    BitOp::And => inputs.iter().all(|bit| *bit),
                    BitOp::Or => inputs.iter().any(|bit| *bit),
                    BitOp::Xor => inputs.iter().filter(|bit| **bit).count() % 2 == 1,
                    BitOp::Not => !inputs[0],
                };
                prop_assert_eq!(get_bit(&result, at), expected);
            }
        }

        #[test]
        fn fields_read_and_write_like_bit_by_bit(
            value in bytes(),
            offset in 0u64..200,
            field in field_type(),
            stored in field_value(),
        ) {
            prop_assert_eq!(read_field(&value, offset, field), naive_field(&value, offset, field));
            let mut written = value.clone();
            written.resize(written.len().max(((offset + field.bits as u64 - 1) / 8 + 1) as usize), 0);
            let before = written.clone();
            write_field(&mut written, offset, field, stored);
            prop_assert_eq!(read_field(&written, offset, field), field.wrap(stored as u64));
            for at in 0..written.len() as u64 * 8 {
                if at < offset || at >= offset + field.bits as u64 {
                    prop_assert_eq!(get_bit(&written, at), get_bit(&before, at));
                }
            }
        }

        #[test]
        fn overflow_modes_match_exact_arithmetic(
            field in field_type(),
            old_raw in field_value(),
            argument in field_value(),
            increment in any::<bool>(),
            overflow in overflow(),
        ) {
            let old = field.wrap(old_raw as u64);
            let action = if increment { FieldAction::IncrBy(argument) } else { FieldAction::Set(argument) };
            let got = match action {
                FieldAction::IncrBy(by) => fit(field, old, by, overflow),
                _ => fit(field, argument, 0, overflow),
            };
            prop_assert_eq!(got, naive_fit(field, old, action, overflow));
        }
    }

    #[test]
    fn offsets_parse_as_redis_reads_them() {
        assert_eq!(parse_bit_offset(b"0", None).unwrap(), 0);
        assert_eq!(
            parse_bit_offset(b"4294967295", None).unwrap(),
            BIT_OFFSET_MAX
        );
        for bad in [
            &b"4294967296"[..],
            b"-1",
            b"x",
            b"",
            b"01",
            b"+1",
            b"#3",
            b"1.0",
        ] {
            assert!(parse_bit_offset(bad, None).is_err(), "{bad:?}");
        }
        assert_eq!(parse_bit_offset(b"#3", Some(8)).unwrap(), 24);
        assert_eq!(
            parse_bit_offset(b"#536870911", Some(8)).unwrap(),
            4_294_967_288
        );
        assert!(parse_bit_offset(b"#536870912", Some(8)).is_err());
        assert!(parse_bit_offset(b"#", Some(8)).is_err());
        assert!(parse_bit_offset(b"#-1", Some(8)).is_err());
        // Redis's multiplication wraps: 2^61 + 1 fields of 8 bits land on bit 8.
        assert_eq!(
            parse_bit_offset(b"#2305843009213693953", Some(8)).unwrap(),
            8
        );
        assert!(parse_bit_offset(b"#144115188075855873", Some(64)).is_err());
        assert!(parse_bit_value(b"2").is_err() && parse_bit_value(b"-1").is_err());
        assert!(parse_bit_value(b"1").unwrap() && !parse_bit_value(b"0").unwrap());
    }

    #[test]
    fn field_types_parse_as_redis_reads_them() {
        assert_eq!(
            FieldType::parse(b"i64").unwrap(),
            FieldType {
                signed: true,
                bits: 64
            }
        );
        assert_eq!(
            FieldType::parse(b"u63").unwrap(),
            FieldType {
                signed: false,
                bits: 63
            }
        );
        // Redis reads the width with strlen: it stops at a NUL.
        assert_eq!(FieldType::parse(b"u8\0junk").unwrap().bits, 8);
        for bad in [
            &b"u64"[..],
            b"i65",
            b"i0",
            b"u0",
            b"I8",
            b"x8",
            b"",
            b"u",
            b"u08",
            b"u+8",
        ] {
            assert!(FieldType::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn redis_examples() {
        // From Redis's documentation and test suite.
        let mut value = b"foobar".to_vec();
        assert_eq!(count_bits(&value, None), 26);
        let range = |start, end, unit| BitRange {
            start,
            end: Some(end),
            unit,
        };
        assert_eq!(count_bits(&value, Some(&range(1, 1, BitUnit::Byte))), 6);
        assert_eq!(count_bits(&value, Some(&range(5, 30, BitUnit::Bit))), 17);
        assert_eq!(bit_position(b"\xff\xf0\x00", false, None), 12);
        let from = |start| BitRange {
            start,
            end: None,
            unit: BitUnit::Byte,
        };
        assert_eq!(bit_position(b"\x00\xff\xf0", true, Some(&from(0))), 8);
        assert_eq!(bit_position(b"\x00\xff\xf0", true, Some(&from(2))), 16);
        assert_eq!(bit_position(b"\xff\xff\xff", false, None), 24);
        assert_eq!(
            bit_position(b"\xff\xff\xff", false, Some(&range(0, -1, BitUnit::Byte))),
            -1
        );
        assert_eq!(bit_position(b"", false, None), -1);
        assert_eq!(bit_position(b"\x00\x00\x00", true, None), -1);
        assert_eq!(
            bit_position(b"\x00\xff\xf0", true, Some(&range(7, 15, BitUnit::Bit))),
            8
        );
        // BITFIELD: `INCRBY u2 100 1 OVERFLOW SAT INCRBY u2 102 1`, from Redis's
        // documentation.
        let u2 = FieldType {
            signed: false,
            bits: 2,
        };
        let op = |offset, overflow| FieldOp {
            action: FieldAction::IncrBy(1),
            field: u2,
            offset,
            overflow,
        };
        value = vec![0; 13];
        let mut replies = Vec::new();
        for _ in 0..4 {
            let ops = [op(100, Overflow::Wrap), op(102, Overflow::Sat)];
            replies.push(apply_fields(&mut value, &ops).0);
        }
        assert_eq!(
            replies,
            vec![
                vec![Some(1), Some(1)],
                vec![Some(2), Some(2)],
                vec![Some(3), Some(3)],
                vec![Some(0), Some(3)],
            ]
        );
        let (failed, changed) = apply_fields(&mut value, &[op(102, Overflow::Fail)]);
        assert_eq!((failed, changed), (vec![None], false));
    }

    #[test]
    fn writes_on_keys() {
        let kv = Kv::new();
        kv.write(|txn| {
            let expiry = txn.now_ms() + 1_000;
            assert!(!set_bit_at(txn, b"b", 7, true)?);
            assert_eq!(txn.get(b"b")?.unwrap().value, vec![1]);
            txn.put(b"b", b"\x01", expiry)?;
            assert!(set_bit_at(txn, b"b", 7, true)?);
            assert!(!set_bit_at(txn, b"b", 9, false)?);
            assert_eq!(txn.get(b"b")?.unwrap().value, vec![1, 0]);
            assert_eq!(txn.expiry_of(b"b")?, Some(expiry), "SETBIT keeps the TTL");
            assert!(get_bit_at(txn, b"b", 7)? && !get_bit_at(txn, b"missing", 7)?);
            assert_eq!(count_at(txn, b"missing", Err(KvError::Syntax))?, 0);
            assert!(count_at(txn, b"b", Err(KvError::Syntax)).is_err());
            assert_eq!(
                position_at(txn, b"missing", true, Err(KvError::Syntax))?,
                -1
            );
            assert_eq!(position_at(txn, b"missing", false, Ok(None))?, 0);
            txn.put(b"x", b"\x0f", 0)?;
            assert_eq!(operate(txn, BitOp::Or, b"d", &[b"b", b"x", b"none"])?, 2);
            assert_eq!(txn.get(b"d")?.unwrap().value, vec![0x0f, 0]);
            assert!(matches!(
                operate(txn, BitOp::Not, b"d", &[b"b", b"x"]),
                Err(KvError::BitopNotSources)
            ));
            assert_eq!(operate(txn, BitOp::And, b"d", &[b"none"])?, 0);
            assert!(
                !txn.contains(b"d")?,
                "an empty result deletes the destination"
            );
            let u8_at = |offset, action| FieldOp {
                action,
                field: FieldType {
                    signed: false,
                    bits: 8,
                },
                offset,
                overflow: Overflow::Fail,
            };
            assert_eq!(
                read_fields(txn, b"new", &[u8_at(0, FieldAction::Get)])?,
                vec![0]
            );
            assert!(!txn.contains(b"new")?, "GETs never create the key");
            assert_eq!(
                write_fields(txn, b"new", &[u8_at(8, FieldAction::IncrBy(300))])?,
                vec![None]
            );
            assert_eq!(
                txn.get(b"new")?.unwrap().value,
                vec![0, 0],
                "created and grown even when FAIL refuses, as Redis does"
            );
            assert_eq!(
                write_fields(
                    txn,
                    b"new",
                    &[u8_at(0, FieldAction::Set(7)), u8_at(0, FieldAction::Get)]
                )?,
                vec![Some(0), Some(7)]
            );
            Ok(())
        });
    }
}
