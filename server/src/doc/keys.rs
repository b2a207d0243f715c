//! The Document namespace's record keys (storage-format 2.7) and the order-preserving byte
//! encoding of index keys.
//!
//! Records:
//! - `c` + name -> the collection's id (u32 LE); `n` -> the next collection id (ids are never
//!   reused, so a dropped collection's leftovers never mix with a new one's records).
//! - `k` + coll (u32 BE) -> the collection's document count (u64 LE), written by every
//!   write that changes it (DOC.COUNT of everything and the planner's full-scan cost).
//! - `d` + coll + the `_id`'s key -> the document as JSON text.
//! - `i` + coll + index number (u32 BE) -> the index's spec (JSON, [`super::index::IndexSpec`]).
//! - `x` + coll + index number + entry -> a flag byte (1: the entry came from an array
//!   element, the index is multikey) + the document's `_id` key. An entry is the encoded key
//!   (`encode` of each indexed field, descending fields' bytes inverted), followed, in a
//!   non-unique index, by the `_id` key (so equal keys of different documents are distinct
//!   records); in a unique index the encoded key alone is the record's key, so a second
//!   document with the same key finds the first one's record.
//! - `z` + coll -> empty: the collection was dropped and its records are being deleted (in
//!   batches; the `z` record goes last, and an open finishes a drop a crash interrupted).
//!
//! Index entries are records written in the same engine batch as the document they belong
//! to: a document and its entries commit together or not at all, through kill -9, and
//! compaction keeps both while they are live. The ordered in-memory view the planner walks
//! (`super::index`) is the engine's observer of those records.
//!
//! `encode` is prefix-free and orders bytewise as `super::order::compare` orders values: a
//! type tag (the type's rank, 1..6; 0 ends a string, an object or an array), then numbers as
//! an order-preserving f64 plus an exact tie-break for integers f64 rounds, strings with 0x00
//! escaped as 0x00 0xFF and ended by 0x00 0x00, objects as (value tag, key, value) per pair
//! then 0x00, arrays as their elements then 0x00, booleans as one byte.

use serde_json::{Number, Value};

use super::order::type_rank;

pub const COLLECTION: u8 = b'c';
pub const NEXT_COLLECTION: &[u8] = b"n";
pub const COUNT: u8 = b'k';
pub const DOCUMENT: u8 = b'd';
pub const INDEX_SPEC: u8 = b'i';
pub const ENTRY: u8 = b'x';
pub const DROPPING: u8 = b'z';

pub fn collection_key(name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + name.len());
    key.push(COLLECTION);
    key.extend_from_slice(name);
    key
}

/// A one-byte tag and the collection's id: the prefix of its records of that kind.
pub fn prefix(tag: u8, coll: u32) -> [u8; 5] {
    let mut key = [tag, 0, 0, 0, 0];
    key[1..].copy_from_slice(&coll.to_be_bytes());
    key
}

pub fn count_key(coll: u32) -> [u8; 5] {
    prefix(COUNT, coll)
}

pub fn document_key(coll: u32, id_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(5 + id_key.len());
    key.extend_from_slice(&prefix(DOCUMENT, coll));
    key.extend_from_slice(id_key);
    key
}

pub fn spec_key(coll: u32, index: u32) -> [u8; 9] {
    let mut key = [0; 9];
    key[..5].copy_from_slice(&prefix(INDEX_SPEC, coll));
    key[5..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The prefix of one index's entry records.
pub fn entries_prefix(coll: u32, index: u32) -> [u8; 9] {
    let mut key = [0; 9];
    key[..5].copy_from_slice(&prefix(ENTRY, coll));
    key[5..].copy_from_slice(&index.to_be_bytes());
    key
}

pub fn entry_key(coll: u32, index: u32, entry: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + entry.len());
    key.extend_from_slice(&entries_prefix(coll, index));
    key.extend_from_slice(entry);
    key
}

/// (coll, index) of an `i` or `x` key, and the rest.
pub fn split_index_key(key: &[u8]) -> Option<(u32, u32, &[u8])> {
    let coll = u32::from_be_bytes(key.get(1..5)?.try_into().ok()?);
    let index = u32::from_be_bytes(key.get(5..9)?.try_into().ok()?);
    Some((coll, index, &key[9..]))
}

/// The coll of a `k`, `d` key, and the rest.
pub fn split_coll_key(key: &[u8]) -> Option<(u32, &[u8])> {
    let coll = u32::from_be_bytes(key.get(1..5)?.try_into().ok()?);
    Some((coll, &key[5..]))
}

/// Appends `value`'s order-preserving encoding.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    out.push(type_rank(value));
    match value {
        Value::Null => {}
        Value::Number(n) => encode_number(n, out),
        Value::String(s) => encode_bytes(s.as_bytes(), out),
        Value::Object(map) => {
            for (k, v) in map {
                out.push(type_rank(v));
                encode_bytes(k.as_bytes(), out);
                encode(v, out);
            }
            out.push(0);
        }
        Value::Array(items) => {
            for item in items {
                encode(item, out);
            }
            out.push(0);
        }
        Value::Bool(b) => out.push(*b as u8),
    }
}

/// The encoding of the first value of a type rank: every value of that type encodes above
/// it, and every value of the next type at or above `type_floor(rank + 1)`.
pub fn type_floor(rank: u8) -> Vec<u8> {
    vec![rank]
}

fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// An f64 whose bytes order as the numbers do, then the integer's distance from it (so
/// integers f64 rounds stay distinct and ordered; `5` and `5.0` encode alike).
fn encode_number(n: &Number, out: &mut Vec<u8>) {
    let (float, delta) = match (n.as_i64(), n.as_u64()) {
        (Some(i), _) => {
            let f = i as f64;
            // `f as i128` is exact: f is an integer-valued float of i64's range.
            (f, (i as i128 - f as i128) as i64)
        }
        (None, Some(u)) => {
            let f = u as f64;
            (f, (u as i128 - f as i128) as i64)
        }
        _ => (n.as_f64().unwrap_or(0.0), 0),
    };
    let float = if float == 0.0 { 0.0 } else { float }; // -0.0 equals 0.0
    let bits = float.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    out.extend_from_slice(&ordered.to_be_bytes());
    out.extend_from_slice(&((delta as u64) ^ (1 << 63)).to_be_bytes());
}

/// The smallest byte string above every string that starts with `bytes` (`None`: none is,
/// every byte is 0xFF).
pub fn successor(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = bytes.to_vec();
    while let Some(last) = out.pop() {
        if last < 0xFF {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

/// Inverts a descending field's encoding (in place, from `from`).
pub fn invert(bytes: &mut [u8]) {
    for b in bytes {
        *b = !*b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::order::compare;
    use serde_json::json;
    use std::cmp::Ordering;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode(v, &mut out);
        out
    }

    #[test]
    fn encoding_orders_as_compare_does() {
        let values = [
            json!(null),
            json!(-1e300),
            json!(-5),
            json!(-0.5),
            json!(0),
            json!(-0.0),
            json!(0.5),
            json!(1),
            json!(1.0),
            json!(9_007_199_254_740_992i64),
            json!(9_007_199_254_740_993i64),
            json!(9_007_199_254_740_994.0),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(1e300),
            json!(""),
            json!("\u{0}"),
            json!("\u{0}a"),
            json!("a"),
            json!("a\u{0}"),
            json!("ab"),
            json!("b"),
            json!({}),
            json!({"a": 1}),
            json!({"a": 1, "b": 2}),
            json!({"a": 2}),
            json!({"a": "x"}),
            json!({"b": 0}),
            json!([]),
            json!([1]),
            json!([1, 2]),
            json!([2]),
            json!([[1]]),
            json!(false),
            json!(true),
        ];
        for a in &values {
            for b in &values {
                assert_eq!(
                    enc(a).cmp(&enc(b)),
                    compare(a, b),
                    "{a} vs {b}: {:?} {:?}",
                    enc(a),
                    enc(b)
                );
            }
        }
    }

    #[test]
    fn encodings_are_prefix_free_and_successor_bounds_them() {
        let a = enc(&json!("a"));
        let ab = enc(&json!("ab"));
        assert!(!ab.starts_with(&a));
        let next = successor(&a).unwrap();
        // Above every entry of "a" (its encoding then an _id), below "ab".
        assert!(next > a && next < ab);
        assert_eq!(next.cmp(&enc(&json!("b"))), Ordering::Less);
        assert_eq!(successor(&[0xFF, 0xFF]), None);
        assert_eq!(successor(&[1, 0xFF]), Some(vec![2]));
    }
}
