//! The documents and queries of the document workloads (issue 13), shared by flin-bench's `d*`
//! workloads and doc-bench, which sends the same commands to Flin and their SQL twins to
//! PostgreSQL. Everything here is a pure function of a number, so every tool, every connection
//! and both peers store and ask for the same bytes.
//!
//! A [`Collection`] of `documents` documents has `_id`s `0..documents`. Document `n` is about
//! [`DOCUMENT_BYTES`] of JSON text: `_id`, an indexed integer `k` (about [`DOCUMENTS_PER_K`]
//! documents share a value), a `city` out of [`CITIES`], an integer `amount` (what the
//! aggregation sums), a boolean, a name, a time, a nested `address` object with a nested
//! `geo`, a `tags` array, and a `pad` string of pseudo-random letters (so neither side gains
//! from compressing it) that brings the text to [`DOCUMENT_BYTES`].

use super::workload::DocumentWorkload;

/// Bytes of every document's JSON text (with its `_id`).
pub const DOCUMENT_BYTES: usize = 1024;
/// Documents per value of `k`, on average: an equality on `k` matches about this many.
pub const DOCUMENTS_PER_K: u64 = 4;
/// Width of a range workload's interval of `k` (`$gte from`, `$lt from + width`): about
/// `RANGE_K_WIDTH * DOCUMENTS_PER_K` documents match, sorted by `k`, of which the first
/// [`RANGE_LIMIT`] come back.
pub const RANGE_K_WIDTH: u64 = 100;
/// The range workload's LIMIT.
pub const RANGE_LIMIT: u64 = 10;
/// The indexed field.
pub const INDEXED_FIELD: &str = "k";
/// Documents per DOC.INSERT when a tool loads a collection before a read workload (untimed).
pub const LOAD_BATCH_DOCUMENTS: u64 = 1000;
/// The aggregation groups by these (16 groups come back).
pub const CITIES: [&str; 16] = [
    "Amsterdam",
    "Berlin",
    "Cairo",
    "Dublin",
    "Edinburgh",
    "Florence",
    "Geneva",
    "Helsinki",
    "Istanbul",
    "Jakarta",
    "Kyoto",
    "Lisbon",
    "Madrid",
    "Nairobi",
    "Oslo",
    "Prague",
];

/// `$inc` of the indexed field by one (the update workload's update document).
pub const INC_UPDATE: &str = r#"{"$inc":{"k":1}}"#;
/// The aggregation: documents and the sum of `amount` per city.
pub const GROUP_PIPELINE: &str =
    r#"[{"$group":{"_id":"$city","total":{"$sum":"$amount"},"count":{"$sum":1}}}]"#;

/// The collection a workload reads: its size fixes the `_id`s and the spread of `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Collection {
    pub documents: u64,
}

impl Collection {
    pub fn new(documents: u64) -> Collection {
        Collection {
            documents: documents.max(1),
        }
    }

    /// Distinct values `k` takes: `0..k_values()`.
    pub fn k_values(&self) -> u64 {
        (self.documents / DOCUMENTS_PER_K).max(1)
    }

    /// The `_id` a get or an update of draw `number` asks for.
    pub fn drawn_id(&self, number: u64) -> u64 {
        number % self.documents
    }

    /// The `k` an equality of draw `number` asks for, and where its range starts.
    pub fn drawn_k(&self, number: u64) -> u64 {
        number % self.k_values()
    }

    /// Document `number`'s `k`. Mixed from `number` with the top bit set, a stream apart from
    /// the draws (doc-bench mixes operation indexes from 0): otherwise operation `i` would ask
    /// for the `k` of document `i` and always match it.
    pub fn k_of(&self, number: u64) -> u64 {
        crate::mix(number ^ (1 << 63)) % self.k_values()
    }

    /// Appends document `number`'s JSON text to `out`, with `"_id": number` when `with_id`
    /// (without, the server assigns one, as a MongoDB driver would). With its `_id` the text
    /// is [`DOCUMENT_BYTES`] long.
    pub fn document(&self, number: u64, with_id: bool, out: &mut Vec<u8>) {
        use std::io::Write;
        let start = out.len();
        let bits = crate::mix(number ^ 0x00d0_c0de);
        let id_field_bytes = format!("\"_id\":{number},").len();
        out.push(b'{');
        if with_id {
            write!(out, "\"_id\":{number},").expect("a Vec takes writes");
        }
        write!(
            out,
            concat!(
                r#""k":{},"city":"{}","amount":{},"active":{},"name":"user-{}","created_ms":{},"#,
                r#""address":{{"street":"{} Harbour Street","zip":"{:05}","geo":{{"lat":{}.{:04},"lon":{}.{:04}}}}},"#,
                r#""tags":["t{}","t{}","t{}"],"pad":""#
            ),
            self.k_of(number),
            CITIES[(bits % CITIES.len() as u64) as usize],
            (bits >> 8) % 1000,
            (bits >> 20) & 1 == 1,
            number,
            1_700_000_000_000 + (bits >> 24) % 100_000_000_000,
            (bits >> 4) % 500 + 1,
            (bits >> 12) % 100_000,
            (bits >> 16) % 90,
            (bits >> 28) % 10_000,
            (bits >> 32) % 180,
            (bits >> 40) % 10_000,
            bits % 7,
            (bits >> 3) % 7 + 7,
            (bits >> 6) % 7 + 14,
        )
        .expect("a Vec takes writes");
        // The text as if it had its _id, the pad's closing quote and the closing brace.
        let written = out.len() - start + if with_id { 0 } else { id_field_bytes } + 2;
        let pad = DOCUMENT_BYTES.saturating_sub(written);
        let mut letters = bits | 1;
        for _ in 0..pad {
            // xorshift64: letters that do not compress.
            letters ^= letters << 13;
            letters ^= letters >> 7;
            letters ^= letters << 17;
            out.push(b'a' + (letters % 26) as u8);
        }
        out.extend_from_slice(b"\"}");
    }
}

/// The name and the arguments after it of the command that `workload` sends on `collection`
/// for draw `number` (a random number, or an operation's index mixed): a get or an `$inc`
/// of `_id` [`Collection::drawn_id`], an equality on `k` = [`Collection::drawn_k`], a range
/// of `k` from there, the aggregation. Inserts are made by [`insert_command`]. `args` is cleared
/// and refilled (its buffers are reused).
pub fn command(
    workload: DocumentWorkload,
    collection: &Collection,
    name: &[u8],
    number: u64,
    args: &mut Vec<Vec<u8>>,
) -> &'static [u8] {
    use std::io::Write;
    let id = collection.drawn_id(number);
    let k = collection.drawn_k(number);
    let written = match workload {
        DocumentWorkload::Insert { .. } => {
            panic!("inserts are made by insert_command, which needs the document numbers")
        }
        DocumentWorkload::Get => {
            reset(args, name, 2);
            (b"DOC.GET".as_slice(), write!(args[1], "{id}"))
        }
        DocumentWorkload::Find => {
            reset(args, name, 2);
            (b"DOC.FIND".as_slice(), write!(args[1], r#"{{"k":{k}}}"#))
        }
        DocumentWorkload::Range => {
            reset(args, name, 7);
            for (slot, word) in args[2..6]
                .iter_mut()
                .zip(["SORT", INDEXED_FIELD, "1", "LIMIT"])
            {
                slot.extend_from_slice(word.as_bytes());
            }
            write!(args[6], "{RANGE_LIMIT}").expect("a Vec takes writes");
            let end = k + RANGE_K_WIDTH;
            (
                b"DOC.FIND".as_slice(),
                write!(args[1], r#"{{"k":{{"$gte":{k},"$lt":{end}}}}}"#),
            )
        }
        DocumentWorkload::Inc => {
            reset(args, name, 3);
            args[2].extend_from_slice(INC_UPDATE.as_bytes());
            (
                b"DOC.UPDATE".as_slice(),
                write!(args[1], r#"{{"_id":{id}}}"#),
            )
        }
        DocumentWorkload::Aggregate => {
            reset(args, name, 2);
            args[1].extend_from_slice(GROUP_PIPELINE.as_bytes());
            (b"DOC.AGGREGATE".as_slice(), Ok(()))
        }
    };
    written.1.expect("a Vec takes writes");
    written.0
}

/// DOC.INSERT of documents `first..first + count` of `collection` (see
/// [`Collection::document`] for `with_id`): its name, and its arguments in `args`.
pub fn insert_command(
    collection: &Collection,
    name: &[u8],
    first: u64,
    count: u64,
    with_id: bool,
    args: &mut Vec<Vec<u8>>,
) -> &'static [u8] {
    reset(args, name, 1 + count as usize);
    for (slot, number) in args[1..].iter_mut().zip(first..) {
        collection.document(number, with_id, slot);
    }
    b"DOC.INSERT"
}

/// Makes `args` `len` empty buffers (keeping their memory), the first holding `name`.
fn reset(args: &mut Vec<Vec<u8>>, name: &[u8], len: usize) {
    args.truncate(len);
    args.resize_with(len, Vec::new);
    for arg in args.iter_mut() {
        arg.clear();
    }
    args[0].extend_from_slice(name);
}

/// The commands that set a collection up for the workloads: the index on `k`.
pub fn index_command(name: &[u8]) -> [Vec<u8>; 3] {
    [
        b"DOC.INDEX".to_vec(),
        name.to_vec(),
        INDEXED_FIELD.as_bytes().to_vec(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn documents_are_json_of_the_stated_size_and_shape() {
        let collection = Collection::new(100_000);
        for number in [0, 1, 99_999, 12_345_678_901] {
            let mut with_id = Vec::new();
            collection.document(number, true, &mut with_id);
            assert_eq!(with_id.len(), DOCUMENT_BYTES, "document {number}");
            let document = parse(&with_id);
            assert_eq!(document["_id"], number);
            assert_eq!(document["k"], collection.k_of(number));
            assert!(CITIES.contains(&document["city"].as_str().unwrap()));
            assert!(document["amount"].as_u64().unwrap() < 1000);
            assert!(document["address"]["geo"]["lat"].is_f64());
            assert_eq!(document["tags"].as_array().unwrap().len(), 3);

            let mut without_id = Vec::new();
            collection.document(number, false, &mut without_id);
            let mut document_without = parse(&without_id);
            assert!(document_without.get("_id").is_none());
            document_without["_id"] = number.into();
            let mut document = document;
            document.as_object_mut().unwrap().remove("_id");
            document_without.as_object_mut().unwrap().remove("_id");
            assert_eq!(document, document_without, "the same fields");
        }
    }

    #[test]
    fn k_spreads_over_its_values() {
        let collection = Collection::new(4000);
        assert_eq!(collection.k_values(), 1000);
        let mut per_k = vec![0u32; 1000];
        for number in 0..4000 {
            per_k[collection.k_of(number) as usize] += 1;
        }
        let unused = per_k.iter().filter(|n| **n == 0).count();
        // Poisson with mean 4: about 2% of values unused.
        assert!(unused < 60, "{unused} values of k unused");
        assert_eq!(Collection::new(1).k_values(), 1);
    }

    #[test]
    fn commands_carry_valid_json() {
        let collection = Collection::new(1000);
        let mut args = Vec::new();
        for workload in [
            DocumentWorkload::Get,
            DocumentWorkload::Find,
            DocumentWorkload::Range,
            DocumentWorkload::Inc,
            DocumentWorkload::Aggregate,
        ] {
            let name = command(workload, &collection, b"c", 123_456, &mut args);
            assert!(name.starts_with(b"DOC."));
            assert_eq!(args[0], b"c");
            parse(&args[1]);
        }
        let name = command(DocumentWorkload::Range, &collection, b"c", 7, &mut args);
        assert_eq!(name, b"DOC.FIND");
        assert_eq!(
            args,
            [
                &b"c"[..],
                br#"{"k":{"$gte":7,"$lt":107}}"#,
                b"SORT",
                b"k",
                b"1",
                b"LIMIT",
                b"10"
            ]
        );
        assert_eq!(
            insert_command(&collection, b"c", 10, 3, true, &mut args),
            b"DOC.INSERT"
        );
        assert_eq!(args.len(), 4);
        assert_eq!(parse(&args[3])["_id"], 12);
        insert_command(&collection, b"c", 10, 1, true, &mut args);
        assert_eq!(args.len(), 2);
    }
}
