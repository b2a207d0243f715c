//! [`Collections`]: the document model's core over the engine's Document namespace, first
//! cut: collections of JSON objects with a unique `_id`, insert, get, find (filter, sort,
//! skip, limit, projection), count, update, replace, delete, drop. No indexes yet: a find
//! walks the collection's records (`Reader::for_each` on its prefix).
//!
//! Records (storage-format 2.7, "Document namespace"): `c` + name -> the collection's id
//! (u32 LE); `n` -> the next collection id; `d` + id (u32 BE) + the `_id`'s key -> the
//! document as JSON text. An `_id`'s key is its canonical JSON text (an integral float
//! written as an integer, so `1` and `1.0` are one `_id`, as MongoDB compares them).
//!
//! Every write decides under the engine's writer lock (`Store::write`): the reads a write
//! depends on (does the `_id` exist, which documents match) happen in the same hold, so two
//! writers never both insert one `_id` or both update a document from the same old state.

use std::cmp::Ordering;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use flin_engine::{Namespace, Txn};
use serde_json::{Map, Number, Value};

use super::filter::Filter;
use super::order::{compare, sort_key};
use super::update::Update;
use crate::frame::Frame;
use crate::store::{Reader, Store};

/// The namespace documents live in.
pub const NS: Namespace = Namespace::Document;
/// MongoDB's document size limit.
pub const DOCUMENT_BYTES_MAX: usize = 16 << 20;

/// Why a document command was refused (nothing written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocError(pub String);

impl std::fmt::Display for DocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Result<T> = std::result::Result<T, DocError>;

fn refuse(message: impl Into<String>) -> DocError {
    DocError(message.into())
}

impl From<flin_engine::Error> for DocError {
    fn from(e: flin_engine::Error) -> DocError {
        DocError(format!("engine: {e}"))
    }
}

/// A find's shape beyond its filter.
#[derive(Debug, Clone, Default)]
pub struct FindOptions {
    /// (dotted path, descending).
    pub sort: Vec<(String, bool)>,
    pub skip: usize,
    pub limit: Option<usize>,
    pub projection: Option<Projection>,
}

/// MongoDB's projection: inclusion (`{a: 1, "b.c": 1}`, `_id` kept unless `_id: 0`) or
/// exclusion (`{a: 0}`), never both (except `_id: 0`).
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    include: bool,
    paths: Vec<Vec<String>>,
    keep_id: bool,
}

impl Projection {
    pub fn parse(projection: &Value) -> Result<Projection> {
        let Value::Object(fields) = projection else {
            return Err(refuse("a projection must be a JSON object"));
        };
        let mut include = None;
        let mut keep_id = true;
        let mut paths = Vec::new();
        for (path, flag) in fields {
            let on = match flag {
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => {
                    return Err(refuse(format!(
                        "projection of '{path}' must be 0/1 or true/false"
                    )))
                }
            };
            if path == "_id" {
                keep_id = on;
                continue;
            }
            match include {
                Some(mode) if mode != on => {
                    return Err(refuse(format!(
                        "cannot mix inclusion and exclusion in a projection (at '{path}')"
                    )))
                }
                _ => include = Some(on),
            }
            paths.push(path.split('.').map(str::to_string).collect());
        }
        Ok(Projection {
            include: include.unwrap_or(false),
            paths,
            keep_id,
        })
    }

    pub fn apply(&self, document: &Value) -> Value {
        let Value::Object(fields) = document else {
            return document.clone();
        };
        let mut out = if self.include {
            let mut out = Map::new();
            for path in &self.paths {
                copy_path(document, &path[..], &mut out);
            }
            out
        } else {
            let mut out = fields.clone();
            for path in &self.paths {
                remove_path(&mut out, path);
            }
            out
        };
        match (self.keep_id, fields.get("_id")) {
            (true, Some(id)) if self.include => {
                let mut with_id = Map::new();
                with_id.insert("_id".into(), id.clone());
                with_id.extend(out);
                out = with_id;
            }
            (false, _) => {
                out.shift_remove("_id");
            }
            _ => {}
        }
        Value::Object(out)
    }
}

fn copy_path(from: &Value, path: &[String], into: &mut Map<String, Value>) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Value::Object(map) = from else { return };
    let Some(value) = map.get(first) else { return };
    if rest.is_empty() {
        into.insert(first.clone(), value.clone());
        return;
    }
    match value {
        Value::Object(_) => {
            let slot = into
                .entry(first.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = slot {
                copy_path(value, rest, inner);
            }
        }
        Value::Array(items) => {
            let projected: Vec<Value> = items
                .iter()
                .filter(|item| item.is_object())
                .map(|item| {
                    let mut inner = Map::new();
                    copy_path(item, rest, &mut inner);
                    Value::Object(inner)
                })
                .collect();
            into.insert(first.clone(), Value::Array(projected));
        }
        _ => {}
    }
}

fn remove_path(map: &mut Map<String, Value>, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        map.shift_remove(first);
        return;
    }
    match map.get_mut(first) {
        Some(Value::Object(inner)) => remove_path(inner, rest),
        Some(Value::Array(items)) => {
            for item in items {
                if let Value::Object(inner) = item {
                    remove_path(inner, rest);
                }
            }
        }
        _ => {}
    }
}

/// An `_id`'s key: canonical JSON, integral floats as integers.
pub fn id_key(id: &Value) -> Vec<u8> {
    fn canonical(value: &Value) -> Value {
        match value {
            Value::Number(n) if n.is_f64() => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    Value::Number(Number::from(f as i64))
                }
                _ => value.clone(),
            },
            Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
            }
            other => other.clone(),
        }
    }
    serde_json::to_vec(&canonical(id)).expect("JSON")
}

/// Parses a JSON document from a command argument; the error names the line and column.
pub fn parse_json(bytes: &[u8], what: &str) -> Result<Value> {
    if bytes.len() > DOCUMENT_BYTES_MAX {
        return Err(refuse(format!(
            "{what} of {} bytes is over the limit of {DOCUMENT_BYTES_MAX}",
            bytes.len()
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        refuse(format!(
            "{what} is not valid JSON: {} at line {} column {}",
            e.to_string().split(" at line").next().unwrap_or(""),
            e.line(),
            e.column()
        ))
    })
}

/// Time-ordered generated `_id`s: 24 hex digits, ObjectId's layout (4 bytes of seconds, 5
/// bytes fixed per process, 3 bytes of a counter), so ids sort by creation time.
pub struct IdGenerator {
    process: u64,
    counter: AtomicU64,
}

impl IdGenerator {
    pub fn new(seed: u64) -> IdGenerator {
        IdGenerator {
            process: seed & 0xFF_FFFF_FFFF,
            counter: AtomicU64::new(seed >> 40),
        }
    }

    pub fn next(&self, now_ms: u64) -> String {
        let count = self.counter.fetch_add(1, AtomicOrdering::Relaxed) & 0xFF_FFFF;
        format!(
            "{:08x}{:010x}{:06x}",
            (now_ms / 1000) as u32,
            self.process,
            count
        )
    }
}

fn collection_key(name: &[u8]) -> Vec<u8> {
    let mut key = vec![b'c'];
    key.extend_from_slice(name);
    key
}

fn documents_prefix(id: u32) -> [u8; 5] {
    let mut key = [b'd', 0, 0, 0, 0];
    key[1..].copy_from_slice(&id.to_be_bytes());
    key
}

fn document_key(id: u32, doc_id: &Value) -> Vec<u8> {
    let mut key = documents_prefix(id).to_vec();
    key.extend_from_slice(&id_key(doc_id));
    key
}

/// The document model.
pub struct Collections {
    ids: IdGenerator,
}

/// How `update` treats the documents it matches.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpdateOptions {
    pub upsert: bool,
    pub multi: bool,
}

/// What an update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateOutcome {
    pub matched: u64,
    pub modified: u64,
    /// The `_id` of an upserted document.
    pub upserted: Option<Value>,
}

impl Collections {
    pub fn new(seed: u64) -> Collections {
        Collections {
            ids: IdGenerator::new(seed),
        }
    }

    fn collection_id(reader: &Reader<'_>, name: &[u8]) -> Result<Option<u32>> {
        Ok(reader.get(NS, &collection_key(name))?.and_then(|v| {
            v.value
                .get(..4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
        }))
    }

    fn txn_collection_id(txn: &Txn<'_>, name: &[u8]) -> Result<Option<u32>> {
        Ok(txn.get(NS, &collection_key(name))?.and_then(|v| {
            v.value
                .get(..4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
        }))
    }

    /// The collection's id, creating the collection (MongoDB creates on first insert).
    fn ensure_collection(txn: &mut Txn<'_>, name: &[u8]) -> Result<u32> {
        if let Some(id) = Self::txn_collection_id(txn, name)? {
            return Ok(id);
        }
        let next = txn
            .get(NS, b"n")?
            .and_then(|v| {
                v.value
                    .get(..4)
                    .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
            })
            .unwrap_or(0);
        txn.put(NS, b"n", &(next + 1).to_le_bytes(), 0)?;
        txn.put(NS, &collection_key(name), &next.to_le_bytes(), 0)?;
        Ok(next)
    }

    /// Every document of a collection (walks its records).
    fn scan(reader: &Reader<'_>, id: u32, mut visit: impl FnMut(Value)) -> Result<()> {
        let mut bad = None;
        reader.for_each(
            NS,
            &documents_prefix(id),
            |record| match serde_json::from_slice(record.value) {
                Ok(doc) => visit(doc),
                Err(e) => bad = Some(e.to_string()),
            },
        )?;
        match bad {
            Some(e) => Err(refuse(format!("a stored document does not parse: {e}"))),
            None => Ok(()),
        }
    }

    /// DOC.INSERT: the `_id`s (given or generated), all or nothing.
    pub fn insert(
        &self,
        store: &Store,
        name: &[u8],
        documents: Vec<Value>,
        now_ms: u64,
    ) -> Result<(Vec<Value>, Option<u64>)> {
        let mut prepared = Vec::with_capacity(documents.len());
        for (i, document) in documents.into_iter().enumerate() {
            let Value::Object(mut fields) = document else {
                return Err(refuse(format!("document {} is not a JSON object", i + 1)));
            };
            let id = match fields.get("_id") {
                Some(Value::Array(_)) => {
                    return Err(refuse(format!(
                        "document {}: _id cannot be an array",
                        i + 1
                    )))
                }
                Some(id) => id.clone(),
                None => {
                    let id = Value::String(self.ids.next(now_ms));
                    let mut with_id = Map::new();
                    with_id.insert("_id".into(), id.clone());
                    with_id.extend(fields);
                    fields = with_id;
                    id
                }
            };
            let bytes = serde_json::to_vec(&Value::Object(fields)).expect("JSON");
            if bytes.len() > DOCUMENT_BYTES_MAX {
                return Err(refuse(format!(
                    "document {} is over the limit of {DOCUMENT_BYTES_MAX} bytes",
                    i + 1
                )));
            }
            prepared.push((id, bytes));
        }
        write(store, |txn| {
            let coll = Self::ensure_collection(txn, name)?;
            let mut keys = std::collections::HashSet::new();
            for (id, bytes) in &prepared {
                let key = document_key(coll, id);
                if !keys.insert(key.clone()) || txn.contains(NS, &key)? {
                    return Err(refuse(format!(
                        "duplicate key: _id {id} is already in the collection"
                    )));
                }
                txn.put(NS, &key, bytes, 0)?;
            }
            Ok(prepared.iter().map(|(id, _)| id.clone()).collect())
        })
    }

    pub fn get(&self, reader: &Reader<'_>, name: &[u8], id: &Value) -> Result<Option<Value>> {
        let Some(coll) = Self::collection_id(reader, name)? else {
            return Ok(None);
        };
        match reader.get(NS, &document_key(coll, id))? {
            Some(v) => Ok(Some(
                serde_json::from_slice(&v.value).map_err(|e| refuse(e.to_string()))?,
            )),
            None => Ok(None),
        }
    }

    /// DOC.FIND: matching documents, sorted, skipped, limited, projected.
    pub fn find(
        &self,
        reader: &Reader<'_>,
        name: &[u8],
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Value>> {
        let Some(coll) = Self::collection_id(reader, name)? else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        Self::scan(reader, coll, |doc| {
            if filter.matches(&doc) {
                found.push(doc);
            }
        })?;
        if !options.sort.is_empty() {
            let keyed: Vec<(Vec<Value>, Value)> = found
                .into_iter()
                .map(|doc| {
                    let keys = options
                        .sort
                        .iter()
                        .map(|(path, descending)| sort_key(lookup(&doc, path), *descending))
                        .collect();
                    (keys, doc)
                })
                .collect();
            let mut keyed = keyed;
            keyed.sort_by(|(a, _), (b, _)| {
                for (i, (_, descending)) in options.sort.iter().enumerate() {
                    let order = compare(&a[i], &b[i]);
                    let order = if *descending { order.reverse() } else { order };
                    if order != Ordering::Equal {
                        return order;
                    }
                }
                Ordering::Equal
            });
            found = keyed.into_iter().map(|(_, doc)| doc).collect();
        } else {
            // Without a sort, `_id` order (MongoDB's natural order is unspecified).
            found.sort_by(|a, b| compare(&a["_id"], &b["_id"]));
        }
        let found = found.into_iter().skip(options.skip);
        let found: Vec<Value> = match options.limit {
            Some(limit) if limit > 0 => found.take(limit).collect(),
            _ => found.collect(),
        };
        Ok(match &options.projection {
            Some(projection) => found.iter().map(|d| projection.apply(d)).collect(),
            None => found,
        })
    }

    pub fn count(&self, reader: &Reader<'_>, name: &[u8], filter: &Filter) -> Result<u64> {
        let Some(coll) = Self::collection_id(reader, name)? else {
            return Ok(0);
        };
        let mut n = 0;
        Self::scan(reader, coll, |doc| n += filter.matches(&doc) as u64)?;
        Ok(n)
    }

    /// DOC.UPDATE / DOC.REPLACE: the first match (or every one with `multi`), all or nothing.
    pub fn update(
        &self,
        store: &Store,
        name: &[u8],
        filter: &Filter,
        update: &Update,
        options: UpdateOptions,
        now_ms: u64,
    ) -> Result<(UpdateOutcome, Option<u64>)> {
        let reader = store.reader();
        write(store, |txn| {
            let coll = Self::ensure_collection(txn, name)?;
            let mut matched = Vec::new();
            Self::scan(&reader, coll, |doc| {
                if filter.matches(&doc) {
                    matched.push(doc);
                }
            })?;
            matched.sort_by(|a, b| compare(&a["_id"], &b["_id"]));
            if !options.multi {
                matched.truncate(1);
            }
            let mut outcome = UpdateOutcome {
                matched: matched.len() as u64,
                modified: 0,
                upserted: None,
            };
            for mut doc in matched {
                if update.apply(&mut doc, now_ms).map_err(|e| refuse(e.0))? {
                    let bytes = serde_json::to_vec(&doc).expect("JSON");
                    if bytes.len() > DOCUMENT_BYTES_MAX {
                        return Err(refuse("the updated document is over the 16 MiB limit"));
                    }
                    txn.put(NS, &document_key(coll, &doc["_id"]), &bytes, 0)?;
                    outcome.modified += 1;
                }
            }
            if outcome.matched == 0 && options.upsert {
                // The filter's equality fields seed the new document, as MongoDB does.
                let mut seed = Map::new();
                if let Filter::Path { path, conditions } = filter {
                    seed_equalities(&mut seed, path, conditions);
                }
                if let Filter::And(parts) = filter {
                    for part in parts {
                        if let Filter::Path { path, conditions } = part {
                            seed_equalities(&mut seed, path, conditions);
                        }
                    }
                }
                let mut doc = Value::Object(seed);
                update.apply(&mut doc, now_ms).map_err(|e| refuse(e.0))?;
                let id = match doc.get("_id") {
                    Some(id) => id.clone(),
                    None => {
                        let id = Value::String(self.ids.next(now_ms));
                        let Value::Object(fields) = &mut doc else {
                            unreachable!()
                        };
                        let mut with_id = Map::new();
                        with_id.insert("_id".into(), id.clone());
                        with_id.extend(std::mem::take(fields));
                        *fields = with_id;
                        id
                    }
                };
                txn.put(
                    NS,
                    &document_key(coll, &id),
                    &serde_json::to_vec(&doc).expect("JSON"),
                    0,
                )?;
                outcome.upserted = Some(id);
            }
            Ok(outcome)
        })
    }

    /// DOC.DELETE: the first match (or every one with `multi`); how many.
    pub fn delete(
        &self,
        store: &Store,
        name: &[u8],
        filter: &Filter,
        multi: bool,
    ) -> Result<(u64, Option<u64>)> {
        let reader = store.reader();
        write(store, |txn| {
            let Some(coll) = Self::txn_collection_id(txn, name)? else {
                return Ok(0);
            };
            let mut ids = Vec::new();
            Self::scan(&reader, coll, |doc| {
                if filter.matches(&doc) {
                    ids.push(doc["_id"].clone());
                }
            })?;
            ids.sort_by(compare);
            if !multi {
                ids.truncate(1);
            }
            for id in &ids {
                txn.delete(NS, &document_key(coll, id))?;
            }
            Ok(ids.len() as u64)
        })
    }

    pub fn collections(&self, reader: &Reader<'_>) -> Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        reader.for_each(NS, b"c", |record| names.push(record.key[1..].to_vec()))?;
        names.sort();
        Ok(names)
    }

    /// DOC.DROP: the collection and its documents; whether it existed.
    pub fn drop_collection(&self, store: &Store, name: &[u8]) -> Result<(bool, Option<u64>)> {
        let reader = store.reader();
        write(store, |txn| {
            let Some(coll) = Self::txn_collection_id(txn, name)? else {
                return Ok(false);
            };
            let mut keys = Vec::new();
            reader.for_each(NS, &documents_prefix(coll), |record| {
                keys.push(record.key.to_vec())
            })?;
            for key in &keys {
                txn.delete(NS, key)?;
            }
            txn.delete(NS, &collection_key(name))?;
            Ok(true)
        })
    }
}

fn seed_equalities(
    seed: &mut Map<String, Value>,
    path: &[String],
    conditions: &[super::filter::Condition],
) {
    if path.len() != 1 {
        return;
    }
    for condition in conditions {
        if let super::filter::Condition::Eq(value) = condition {
            seed.insert(path[0].clone(), value.clone());
        }
    }
}

/// The value at a dotted path (no array traversal: sorts use the field itself).
fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let mut at = doc;
    for part in path.split('.') {
        at = match at {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

/// [`Store::write`] with the model's refusals: `decide` refuses before it queues anything, so
/// a refusal writes nothing.
fn write<R>(
    store: &Store,
    decide: impl FnOnce(&mut Txn<'_>) -> Result<R>,
) -> Result<(R, Option<u64>)> {
    let mut refusal = None;
    let written = store.write(|txn| {
        decide(txn).map_err(|e| {
            refusal = Some(e);
            Frame::error("ERR refused")
        })
    });
    match written {
        Ok(w) => Ok((w.reply, w.seq)),
        Err(frame) => Err(refusal.unwrap_or_else(|| refuse(format!("{frame:?}")))),
    }
}
