//! [`Collections`]: the document model's core over the engine's Document namespace:
//! collections of JSON objects with a unique `_id`, insert, get, find (filter, sort, skip,
//! limit, projection) through the planner (`super::planner`) over secondary indexes
//! (`super::index`), count, update, replace, delete, find-and-modify, drop, index builds.
//!
//! Records: `super::keys` (storage-format 2.7, "Document namespace"). An `_id`'s key is its
//! canonical JSON text (an integral float written as an integer, so `1` and `1.0` are one
//! `_id`, as MongoDB compares them).
//!
//! Every write decides under the engine's writer lock, in a transaction (its own, or EXEC's
//! shared with other commands of any model): the reads a write depends on (does the `_id`
//! exist, which documents match, does a unique index hold the key) see the transaction's
//! queued writes and happen in the same hold, so two writers never both insert one `_id` or
//! both update a document from the same old state. A command's writes are kept aside until it
//! has decided (`Writes`): a refusal queues nothing, inside EXEC too.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use flin_engine::{Namespace, Txn};
use serde_json::{json, Map, Number, Value};

use super::filter::{Condition, Filter};
use super::index::{CollectionState, IndexSpec, IndexState, Indexes};
use super::keys;
use super::order::{compare, sort_key};
use super::partial;
use super::planner::{self, Access, IndexPlan};
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
    /// Any order will do (counts, aggregation): no `_id` sort when SORT is absent.
    pub any_order: bool,
    /// The caller reads only these top-level fields (the filter's among them): a scan parses
    /// only them (`doc::partial`). `None`: whole documents.
    pub fields: Option<Vec<String>>,
}

/// Documents parsed and given their `_id`s for an insert (`Collections::prepare_insert`).
#[derive(Debug, Default)]
pub struct PreparedInsert {
    /// (document, stored text, parsed only for `fields`).
    documents: Vec<(Value, Vec<u8>, bool)>,
    /// The top-level fields a partial parse kept: `_id` and what the indexes read.
    fields: Vec<String>,
}

/// What a scan hands each document it selects to (`Collections::select`): whether it wants
/// more.
type Sink<'a> = dyn FnMut(Value) -> Result<bool> + 'a;

/// `select` may answer with the stored text (`Selected::raw`).
const RAW: bool = true;
/// `select` answers with parsed documents.
const PARSED: bool = false;

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

/// Documents changed per engine write while an index is built or dropped.
const CHUNK: usize = 1_000;

/// The document model: the catalog (the engine's observer of the Document namespace) and the
/// `_id` generator.
pub struct Collections {
    ids: IdGenerator,
    indexes: Arc<Indexes>,
    /// Selections run, by the plan that found their documents (the admin port's
    /// `flin_doc_queries_total{plan}`).
    pub plans: PlanCounts,
}

/// Selections (finds, counts, updates and deletes by filter) by plan. Relaxed adds: one per
/// selection, which costs far more than the add.
#[derive(Default, Debug)]
pub struct PlanCounts {
    /// By `_id` (equality or `$in`): the documents' own keys, no plan needed.
    pub id_lookup: AtomicU64,
    /// A walk of a secondary index.
    pub index: AtomicU64,
    /// A scan of the whole collection.
    pub scan: AtomicU64,
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

/// What a query examined, and how (DOC.EXPLAIN).
#[derive(Debug, Clone, Default)]
pub struct Examined {
    pub keys: u64,
    pub documents: u64,
    /// The chosen plan first, then the rejected ones (described only for EXPLAIN).
    pub plans: Vec<planner::Candidate>,
    /// The `_id` lookup's keys, when the filter named `_id`s (no plan then).
    pub id_lookup: Option<usize>,
}

/// DOC.FINDANDMODIFY's change.
#[derive(Debug, Clone)]
pub enum Modify {
    Update { update: Update, upsert: bool },
    Remove,
}

/// A command's own writes, kept aside until it has decided: a refusal leaves the transaction
/// (EXEC's, shared with other commands) untouched. Reads see them (`View`).
#[derive(Default)]
struct Writes {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    latest: HashMap<Vec<u8>, usize>,
}

impl Writes {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.latest.insert(key.clone(), self.ops.len());
        self.ops.push((key, Some(value)));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.latest.insert(key.clone(), self.ops.len());
        self.ops.push((key, None));
    }

    fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.latest.get(key).map(|&at| self.ops[at].1.as_deref())
    }

    fn apply(self, txn: &mut Txn<'_>) -> Result<()> {
        for (key, value) in &self.ops {
            match value {
                Some(value) => txn.put(NS, key, value, 0)?,
                None => {
                    txn.delete(NS, key)?;
                }
            }
        }
        Ok(())
    }
}

/// A document command's reads: the committed state, or, deciding a write, the transaction's
/// (which sees its queued writes, EXEC's earlier commands included) and the command's own.
#[derive(Clone, Copy)]
pub struct View<'a, 't> {
    reader: Reader<'a>,
    txn: Option<&'a Txn<'t>>,
    local: Option<&'a Writes>,
}

impl<'a, 't> View<'a, 't> {
    pub fn committed(reader: Reader<'a>) -> View<'a, 't> {
        View {
            reader,
            txn: None,
            local: None,
        }
    }

    /// Inside EXEC: reads see the transaction's queued writes.
    pub fn in_transaction(reader: Reader<'a>, txn: Option<&'a Txn<'t>>) -> View<'a, 't> {
        View {
            reader,
            txn,
            local: None,
        }
    }

    /// This view, seeing a command's own writes too.
    fn with<'w>(&self, writes: &'w Writes) -> View<'w, 't>
    where
        'a: 'w,
    {
        View {
            reader: self.reader,
            txn: self.txn,
            local: Some(writes),
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(found) = self.local.and_then(|local| local.get(key)) {
            return Ok(found.map(<[u8]>::to_vec));
        }
        Ok(match self.txn {
            Some(txn) => txn.get(NS, key)?.map(|v| v.value),
            None => self.reader.get(NS, key)?.map(|v| v.value),
        })
    }

    fn version(&self, key: &[u8]) -> Result<Option<u64>> {
        Ok(match self.txn {
            Some(txn) => txn.version(NS, key),
            None => self.reader.version(NS, key)?,
        })
    }

    fn u32_at(&self, key: &[u8]) -> Result<Option<u32>> {
        Ok(self.get(key)?.and_then(|v| {
            v.get(..4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
        }))
    }

    fn collection_id(&self, name: &[u8]) -> Result<Option<u32>> {
        self.u32_at(&keys::collection_key(name))
    }

    fn count(&self, coll: u32) -> Result<u64> {
        Ok(self
            .get(&keys::count_key(coll))?
            .and_then(|v| {
                v.get(..8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8")))
            })
            .unwrap_or(0))
    }

    /// Whether writes not yet committed (the transaction's, the command's) may touch the
    /// collection's documents: then the `_id`s they write are candidates of every query.
    fn pending_ids(&self, coll: u32) -> Option<Vec<Vec<u8>>> {
        let prefix = keys::prefix(keys::DOCUMENT, coll);
        let mut ids = Vec::new();
        if let Some(txn) = self.txn {
            for op in txn.batch().iter() {
                if op.namespace == NS && op.kind.is_indexed() && op.key.starts_with(&prefix) {
                    ids.push(op.key[5..].to_vec());
                }
            }
        }
        if let Some(local) = self.local {
            for (key, _) in &local.ops {
                if key.starts_with(&prefix) {
                    ids.push(key[5..].to_vec());
                }
            }
        }
        (self.txn.is_some() || self.local.is_some_and(|l| !l.ops.is_empty())).then_some(ids)
    }

    fn document(&self, coll: u32, id_key: &[u8]) -> Result<Option<Value>> {
        match self.get(&keys::document_key(coll, id_key))? {
            Some(bytes) => Ok(Some(parse_stored(&bytes)?)),
            None => Ok(None),
        }
    }
}

fn parse_stored(bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes)
        .map_err(|e| refuse(format!("a stored document does not parse: {e}")))
}

/// A document found, with its `_id` key.
type Found = (Vec<u8>, Value);

/// The documents a query selects, in order, with their `_id` keys; or, when asked for and the
/// index answered the filter exactly, their stored text (`raw`, `documents` then empty).
struct Selected {
    documents: Vec<(Vec<u8>, Value)>,
    raw: Option<Vec<Vec<u8>>>,
    examined: Examined,
}

impl Collections {
    /// The model, with its catalog: register `indexes()` as the engine's observer of the
    /// Document namespace before the engine opens (`context::open_engine`).
    pub fn new(seed: u64, indexes: Arc<Indexes>) -> Collections {
        Collections {
            ids: IdGenerator::new(seed),
            indexes,
            plans: PlanCounts::default(),
        }
    }

    pub fn indexes(&self) -> &Arc<Indexes> {
        &self.indexes
    }

    /// The collection's id, creating the collection (MongoDB creates on first write).
    fn ensure_collection(view: &View<'_, '_>, writes: &mut Writes, name: &[u8]) -> Result<u32> {
        if let Some(id) = view.with(writes).collection_id(name)? {
            return Ok(id);
        }
        let next = view.u32_at(keys::NEXT_COLLECTION)?.unwrap_or(0);
        writes.put(
            keys::NEXT_COLLECTION.to_vec(),
            (next + 1).to_le_bytes().to_vec(),
        );
        writes.put(keys::collection_key(name), next.to_le_bytes().to_vec());
        Ok(next)
    }

    /// Runs `decide` with a view that sees its own writes, then queues those writes in `txn`
    /// if it succeeded (a refusal queues nothing).
    fn decide<R>(
        reader: Reader<'_>,
        txn: &mut Txn<'_>,
        decide: impl FnOnce(&View<'_, '_>, &mut Writes) -> Result<R>,
    ) -> Result<R> {
        let mut writes = Writes::default();
        let reply = {
            let view = View {
                reader,
                txn: Some(&*txn),
                local: None,
            };
            decide(&view, &mut writes)?
        };
        writes.apply(txn)?;
        Ok(reply)
    }

    /// Writes one document change (`old` to `new`, either absent) with its index entries and
    /// the count; refuses a unique-index violation or parallel arrays, naming the index.
    fn change(
        &self,
        view: &View<'_, '_>,
        writes: &mut Writes,
        coll: u32,
        id_key: &[u8],
        old: Option<&Value>,
        new: Option<(&Value, Vec<u8>)>,
    ) -> Result<()> {
        let specs = match self.indexes.read().collections.get(&coll) {
            Some(state) => state.specs(),
            None => Vec::new(),
        };
        for (no, spec) in specs.iter().filter(|(_, s)| !s.dropping) {
            let before = match old {
                Some(doc) => spec.entries(doc, id_key).unwrap_or_default(),
                None => Vec::new(),
            };
            let after = match &new {
                Some((doc, _)) => spec.entries(doc, id_key).map_err(refuse)?,
                None => Vec::new(),
            };
            for (entry, _) in &before {
                if !after.iter().any(|(e, _)| e == entry) {
                    writes.delete(keys::entry_key(coll, *no, entry));
                }
            }
            for (entry, from_array) in &after {
                if before.iter().any(|(e, _)| e == entry) {
                    continue;
                }
                let key = keys::entry_key(coll, *no, entry);
                if spec.unique {
                    let seen = view.with(writes).get(&key)?;
                    if let Some(holder) = seen.filter(|h| h.get(1..) != Some(id_key)) {
                        let doc = new.as_ref().map(|(d, _)| *d).unwrap_or(&Value::Null);
                        return Err(refuse(format!(
                            "duplicate key: index '{}' already holds {} (document _id {})",
                            spec.name,
                            key_values(spec, doc),
                            String::from_utf8_lossy(holder.get(1..).unwrap_or_default()),
                        )));
                    }
                }
                let mut value = Vec::with_capacity(1 + id_key.len());
                value.push(*from_array as u8);
                value.extend_from_slice(id_key);
                writes.put(key, value);
            }
        }
        let key = keys::document_key(coll, id_key);
        match new {
            Some((_, bytes)) => writes.put(key, bytes),
            None => writes.delete(key),
        }
        Ok(())
    }

    /// Moves the collection's count by `delta`.
    fn recount(view: &View<'_, '_>, writes: &mut Writes, coll: u32, delta: i64) -> Result<()> {
        if delta == 0 {
            return Ok(());
        }
        let now = view.with(writes).count(coll)?;
        let count = (now as i64 + delta).max(0) as u64;
        writes.put(keys::count_key(coll).to_vec(), count.to_le_bytes().to_vec());
        Ok(())
    }

    /// The document with its `_id` (generated, time-ordered, first, when it has none) and its
    /// stored text: `sent`, the text the client sent, when it already had its `_id` (no
    /// second serialization), else the document serialized.
    fn with_id(
        &self,
        document: Value,
        sent: Option<&[u8]>,
        now_ms: u64,
        what: impl Fn() -> String,
    ) -> Result<(Value, Vec<u8>)> {
        let Value::Object(mut fields) = document else {
            return Err(refuse(format!("{} is not a JSON object", what())));
        };
        let mut sent = sent;
        match fields.get("_id") {
            Some(Value::Array(_)) => {
                return Err(refuse(format!("{}: _id cannot be an array", what())))
            }
            Some(_) => {}
            None => {
                let mut with_id = Map::new();
                with_id.insert("_id".into(), Value::String(self.ids.next(now_ms)));
                with_id.extend(fields);
                fields = with_id;
                sent = None;
            }
        }
        let document = Value::Object(fields);
        let bytes = match sent {
            Some(text) => text.to_vec(),
            None => serde_json::to_vec(&document).expect("JSON"),
        };
        if bytes.len() > DOCUMENT_BYTES_MAX {
            return Err(refuse(format!(
                "{} is over the limit of {DOCUMENT_BYTES_MAX} bytes",
                what()
            )));
        }
        Ok((document, bytes))
    }

    /// DOC.INSERT: the `_id`s (given or generated), all or nothing.
    pub fn insert(
        &self,
        reader: Reader<'_>,
        txn: &mut Txn<'_>,
        name: &[u8],
        documents: Vec<Value>,
        now_ms: u64,
    ) -> Result<Vec<Value>> {
        let mut prepared = PreparedInsert::default();
        for (i, document) in documents.into_iter().enumerate() {
            let what = || format!("document {}", i + 1);
            let (document, bytes) = self.with_id(document, None, now_ms, what)?;
            prepared.documents.push((document, bytes, false));
        }
        self.insert_prepared(reader, txn, name, prepared)
    }

    /// The first half of DOC.INSERT, before the writer lock: the JSON texts a client sent,
    /// parsed and given their `_id`s; each text is kept as the stored form of its document when
    /// it has its `_id`. Such a text is parsed for only `_id` and the fields the collection's
    /// indexes read (`doc::partial`, the rest checked as a whole parse checks it), since
    /// nothing else of it is needed: building and freeing the whole `Value` was the largest
    /// part of a batched insert's own time. A text without `_id`, or one the partial parse
    /// refuses, is parsed whole (and refused with the whole parse's line and column).
    pub fn prepare_insert(
        &self,
        name: &[u8],
        texts: &[&[u8]],
        now_ms: u64,
    ) -> Result<PreparedInsert> {
        let mut fields = vec!["_id".to_string()];
        let known = self.indexes.read().by_name.get(name).copied();
        if let Some(coll) = known {
            self.add_indexed_fields(coll, &mut fields);
        }
        let mut documents = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let partial = match text.len() <= DOCUMENT_BYTES_MAX {
                true => partial::parse_fields_checked(text, &fields)
                    .ok()
                    .filter(|document| document.get("_id").is_some()),
                false => None,
            };
            documents.push(match partial {
                Some(document) => (document, true),
                None => (parse_json(text, &format!("document {}", i + 1))?, false),
            });
        }
        let mut prepared = PreparedInsert {
            documents: Vec::with_capacity(documents.len()),
            fields,
        };
        for (i, ((document, partial), text)) in documents.into_iter().zip(texts).enumerate() {
            let what = || format!("document {}", i + 1);
            let (document, bytes) = self.with_id(document, Some(text), now_ms, what)?;
            prepared.documents.push((document, bytes, partial));
        }
        Ok(prepared)
    }

    /// The second half of DOC.INSERT, under the writer lock (or in EXEC's transaction): the
    /// `_id`s, all or nothing.
    pub fn insert_prepared(
        &self,
        reader: Reader<'_>,
        txn: &mut Txn<'_>,
        name: &[u8],
        prepared: PreparedInsert,
    ) -> Result<Vec<Value>> {
        let PreparedInsert { documents, fields } = prepared;
        Self::decide(reader, txn, |view, writes| {
            let coll = Self::ensure_collection(view, writes, name)?;
            // An index created since the texts were parsed may read fields they left out.
            let mut now_indexed = vec!["_id".to_string()];
            self.add_indexed_fields(coll, &mut now_indexed);
            let stale = now_indexed.iter().any(|f| !fields.contains(f));
            let mut ids = Vec::with_capacity(documents.len());
            for (document, bytes, partial) in documents {
                let document = match partial && stale {
                    true => serde_json::from_slice(&bytes)
                        .map_err(|e| refuse(format!("a parsed document does not parse: {e}")))?,
                    false => document,
                };
                let id = document["_id"].clone();
                let id_key = id_key(&id);
                let key = keys::document_key(coll, &id_key);
                if view.with(writes).get(&key)?.is_some() {
                    return Err(refuse(format!(
                        "duplicate key: _id {id} is already in the collection"
                    )));
                }
                self.change(view, writes, coll, &id_key, None, Some((&document, bytes)))?;
                ids.push(id);
            }
            Self::recount(view, writes, coll, ids.len() as i64)?;
            Ok(ids)
        })
    }

    /// Adds the top-level fields that `coll`'s indexes read (every index, built or not) to
    /// `fields`.
    fn add_indexed_fields(&self, coll: u32, fields: &mut Vec<String>) {
        let catalog = self.indexes.read();
        let Some(state) = catalog.collections.get(&coll) else {
            return;
        };
        for (_, spec) in state.specs() {
            for (path, _) in &spec.fields {
                let top = path.split('.').next().unwrap_or(path);
                if !fields.iter().any(|f| f == top) {
                    fields.push(top.to_string());
                }
            }
        }
    }

    /// DOC.GET: the stored JSON text.
    pub fn get(&self, view: &View<'_, '_>, name: &[u8], id: &Value) -> Result<Option<Vec<u8>>> {
        let coll = match view.txn {
            None => self.indexes.read().by_name.get(name).copied(),
            Some(_) => view.collection_id(name)?,
        };
        match coll {
            Some(coll) => view.get(&keys::document_key(coll, &id_key(id))),
            None => Ok(None),
        }
    }

    /// The documents `filter` selects, sorted, skipped and limited, through the cheapest plan.
    /// With a `sink` (only for `any_order` options without skip or limit), a scan outside a
    /// transaction hands each matching document to it as it reads it instead of collecting
    /// them (an aggregation's `$group` then holds its groups, not the collection); the sink
    /// answers whether it wants more. Documents other plans find come back as usual.
    fn select(
        &self,
        view: &View<'_, '_>,
        coll: u32,
        filter: &Filter,
        options: &FindOptions,
        raw: bool,
        mut sink: Option<&mut Sink<'_>>,
    ) -> Result<Selected> {
        debug_assert!(
            sink.is_none() || (options.any_order && options.skip == 0 && options.limit.is_none())
        );
        let wanted = options.limit.filter(|l| *l > 0).map(|l| l + options.skip);
        let mut examined = Examined::default();
        let pending = view.pending_ids(coll);
        // `_id` equality or `$in`: the documents themselves, by key.
        if let Some(ids) = id_lookup(filter) {
            self.plans.id_lookup.fetch_add(1, AtomicOrdering::Relaxed);
            examined.id_lookup = Some(ids.len());
            let mut documents = Vec::new();
            let mut keys_seen = HashSet::new();
            for id in ids {
                let id_key = id_key(&id);
                if !keys_seen.insert(id_key.clone()) {
                    continue;
                }
                examined.keys += 1;
                if let Some(doc) = view.document(coll, &id_key)? {
                    examined.documents += 1;
                    if filter.matches(&doc) {
                        documents.push((id_key, doc));
                    }
                }
            }
            let documents = finish(documents, options, false);
            return Ok(Selected {
                documents,
                raw: None,
                examined,
            });
        }
        let (chosen, rejected) = {
            let catalog = self.indexes.read();
            let empty = CollectionState {
                count: view.count(coll)?,
                ..CollectionState::default()
            };
            let state = catalog.collections.get(&coll).unwrap_or(&empty);
            let mut plans = planner::plan(state, filter, &options.sort, wanted);
            let chosen = plans.remove(0);
            (chosen, plans)
        };
        examined.plans.push(chosen.clone());
        examined.plans.extend(rejected);
        let counter = match &chosen.access {
            Access::Scan => &self.plans.scan,
            Access::Index(_) => &self.plans.index,
        };
        counter.fetch_add(1, AtomicOrdering::Relaxed);
        let mut documents = Vec::new();
        let mut sorted = false;
        match &chosen.access {
            Access::Scan => {
                let prefix = keys::prefix(keys::DOCUMENT, coll);
                match &pending {
                    None => {
                        // The first failure (a document that does not parse, or the sink's
                        // refusal) ends the work; the walk itself cannot stop early.
                        let mut failed = None;
                        let mut wanted = true;
                        view.reader.for_each(NS, &prefix, |record| {
                            if failed.is_some() || !wanted {
                                return;
                            }
                            examined.documents += 1;
                            let parsed = match &options.fields {
                                Some(fields) => partial::parse_fields(record.value, fields),
                                None => serde_json::from_slice::<Value>(record.value),
                            };
                            match parsed {
                                Ok(doc) if filter.matches(&doc) => match sink.as_mut() {
                                    Some(sink) => match sink(doc) {
                                        Ok(more) => wanted = more,
                                        Err(e) => failed = Some(e),
                                    },
                                    None => documents.push((record.key[5..].to_vec(), doc)),
                                },
                                Ok(_) => {}
                                Err(e) => {
                                    failed = Some(refuse(format!(
                                        "a stored document does not parse: {e}"
                                    )))
                                }
                            }
                        })?;
                        if let Some(e) = failed {
                            return Err(e);
                        }
                    }
                    Some(pending) => {
                        let mut ids: Vec<Vec<u8>> = Vec::new();
                        view.reader
                            .for_each(NS, &prefix, |record| ids.push(record.key[5..].to_vec()))?;
                        ids.extend(pending.iter().cloned());
                        ids.sort();
                        ids.dedup();
                        for id_key in ids {
                            if let Some(doc) = view.document(coll, &id_key)? {
                                examined.documents += 1;
                                if filter.matches(&doc) {
                                    documents.push((id_key, doc));
                                }
                            }
                        }
                    }
                }
            }
            Access::Index(plan) => {
                sorted = plan.sorted && pending.is_none();
                // With the order from the index, stop once enough documents matched.
                let stop_at = wanted.filter(|_| sorted);
                // The index answers the filter exactly (every condition a bound, no arrays):
                // the stored text goes out as it is, unparsed, unless it must be reshaped.
                let raw_out = raw
                    && plan.exact
                    && pending.is_none()
                    && options.projection.is_none()
                    && (sorted || options.sort.is_empty());
                let mut raw_documents = Vec::new();
                let mut seen = HashSet::new();
                let mut cursor = IndexCursor::new(plan);
                'walk: loop {
                    let found = documents.len() + raw_documents.len();
                    let most = stop_at.map_or(usize::MAX, |n| n.saturating_sub(found).max(1));
                    let batch = {
                        let catalog = self.indexes.read();
                        let Some(index) = catalog
                            .collections
                            .get(&coll)
                            .and_then(|c| c.indexes.get(&plan.index))
                        else {
                            break;
                        };
                        cursor.next_batch(index, most)
                    };
                    if batch.is_empty() {
                        break;
                    }
                    if raw_out {
                        let mut document_keys = Vec::with_capacity(batch.len());
                        for id_key in batch {
                            examined.keys += 1;
                            if !plan.dedupe || seen.insert(id_key.clone()) {
                                document_keys.push(keys::document_key(coll, &id_key));
                            }
                        }
                        // The batch's documents in one call, which overlaps their records'
                        // cache misses (one at a time, they were a fifth of a range's time).
                        // `raw_out` implies no transaction, so the committed state is the view.
                        view.reader.get_many_with(NS, &document_keys, |_, found| {
                            if let Some(found) = found {
                                examined.documents += 1;
                                raw_documents.push(found.value.to_vec());
                            }
                        })?;
                        if stop_at.is_some_and(|n| raw_documents.len() >= n) {
                            break 'walk;
                        }
                        continue;
                    }
                    for id_key in batch {
                        examined.keys += 1;
                        if plan.dedupe && !seen.insert(id_key.clone()) {
                            continue;
                        }
                        if let Some(doc) = view.document(coll, &id_key)? {
                            examined.documents += 1;
                            if filter.matches(&doc) {
                                documents.push((id_key.to_vec(), doc));
                            }
                        }
                        let found = documents.len() + raw_documents.len();
                        if stop_at.is_some_and(|n| found >= n) {
                            break 'walk;
                        }
                    }
                }
                if raw_out {
                    let raw_documents = raw_documents.into_iter().skip(options.skip);
                    let raw_documents = match options.limit {
                        Some(limit) if limit > 0 => raw_documents.take(limit).collect(),
                        _ => raw_documents.collect(),
                    };
                    return Ok(Selected {
                        documents: Vec::new(),
                        raw: Some(raw_documents),
                        examined,
                    });
                }
                if let Some(pending) = &pending {
                    let found: HashSet<Vec<u8>> =
                        documents.iter().map(|(k, _)| k.clone()).collect();
                    // A document the transaction changed: its committed entries may be stale.
                    documents.retain(|(k, _)| !pending.contains(k));
                    for id_key in pending.iter().collect::<HashSet<_>>() {
                        let _ = &found;
                        if let Some(doc) = view.document(coll, id_key)? {
                            examined.documents += 1;
                            if filter.matches(&doc) {
                                documents.push((id_key.clone(), doc));
                            }
                        }
                    }
                }
            }
        }
        let documents = finish(documents, options, sorted);
        Ok(Selected {
            documents,
            raw: None,
            examined,
        })
    }

    fn resolve(&self, view: &View<'_, '_>, name: &[u8]) -> Result<Option<u32>> {
        match view.txn {
            None => Ok(self.indexes.read().by_name.get(name).copied()),
            Some(_) => view.collection_id(name),
        }
    }

    /// DOC.FIND: matching documents, sorted, skipped, limited, projected.
    pub fn find(
        &self,
        view: &View<'_, '_>,
        name: &[u8],
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<(Vec<Vec<u8>>, Examined)> {
        let Some(coll) = self.resolve(view, name)? else {
            return Ok((Vec::new(), Examined::default()));
        };
        let selected = self.select(view, coll, filter, options, RAW, None)?;
        if let Some(raw) = selected.raw {
            return Ok((raw, selected.examined));
        }
        let documents = selected.documents.into_iter().map(|(_, doc)| {
            let doc = match &options.projection {
                Some(projection) => projection.apply(&doc),
                None => doc,
            };
            serde_json::to_vec(&doc).expect("JSON")
        });
        Ok((documents.collect(), selected.examined))
    }

    /// DOC.AGGREGATE: the pipeline over the collection's documents; a leading `$match` finds
    /// them through the planner (an index, if one serves).
    pub fn aggregate(
        &self,
        view: &View<'_, '_>,
        name: &[u8],
        pipeline: &super::aggregate::Pipeline,
    ) -> Result<Vec<Value>> {
        let failed = |e: super::aggregate::PipelineError| refuse(e.to_string());
        let mut running = pipeline.start();
        if let Some(coll) = self.resolve(view, name)? {
            let everything = Filter::And(Vec::new());
            let filter = pipeline.leading_match().unwrap_or(&everything);
            let unordered = FindOptions {
                any_order: true,
                fields: pipeline.input_fields(),
                ..FindOptions::default()
            };
            // A scan pushes each document through the pipeline as it reads it.
            let mut push = |doc: Value| running.push(doc).map_err(failed);
            let selected = self.select(view, coll, filter, &unordered, PARSED, Some(&mut push))?;
            for (_, doc) in selected.documents {
                if !running.push(doc).map_err(failed)? {
                    break;
                }
            }
        }
        running.finish().map_err(failed)
    }

    /// DOC.COUNT (the kept count for an empty filter).
    pub fn count(&self, view: &View<'_, '_>, name: &[u8], filter: &Filter) -> Result<u64> {
        let Some(coll) = self.resolve(view, name)? else {
            return Ok(0);
        };
        if matches!(filter, Filter::And(parts) if parts.is_empty()) {
            return view.count(coll);
        }
        let unordered = FindOptions {
            any_order: true,
            ..FindOptions::default()
        };
        let selected = self.select(view, coll, filter, &unordered, RAW, None)?;
        Ok(selected
            .raw
            .map_or(selected.documents.len(), |raw| raw.len()) as u64)
    }

    /// DOC.UPDATE / DOC.REPLACE: the first match (or every one with `multi`), all or nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &self,
        reader: Reader<'_>,
        txn: &mut Txn<'_>,
        name: &[u8],
        filter: &Filter,
        update: &Update,
        options: UpdateOptions,
        now_ms: u64,
    ) -> Result<UpdateOutcome> {
        Self::decide(reader, txn, |view, writes| {
            let coll = Self::ensure_collection(view, writes, name)?;
            let find = FindOptions {
                limit: (!options.multi).then_some(1),
                ..FindOptions::default()
            };
            let matched = self
                .select(view, coll, filter, &find, PARSED, None)?
                .documents;
            let mut outcome = UpdateOutcome {
                matched: matched.len() as u64,
                modified: 0,
                upserted: None,
            };
            for (id_key, old) in matched {
                let mut doc = old.clone();
                if update.apply(&mut doc, now_ms).map_err(|e| refuse(e.0))? {
                    let bytes = serde_json::to_vec(&doc).expect("JSON");
                    if bytes.len() > DOCUMENT_BYTES_MAX {
                        return Err(refuse("the updated document is over the 16 MiB limit"));
                    }
                    self.change(view, writes, coll, &id_key, Some(&old), Some((&doc, bytes)))?;
                    outcome.modified += 1;
                }
            }
            if outcome.matched == 0 && options.upsert {
                let (doc, bytes) = self.upserted(filter, update, now_ms)?;
                let id = doc["_id"].clone();
                let id_key = id_key(&id);
                if view
                    .with(writes)
                    .get(&keys::document_key(coll, &id_key))?
                    .is_some()
                {
                    return Err(refuse(format!(
                        "duplicate key: _id {id} is already in the collection"
                    )));
                }
                self.change(view, writes, coll, &id_key, None, Some((&doc, bytes)))?;
                Self::recount(view, writes, coll, 1)?;
                outcome.upserted = Some(id);
            }
            Ok(outcome)
        })
    }

    /// The document an upsert inserts: the filter's equality fields, then the update.
    fn upserted(&self, filter: &Filter, update: &Update, now_ms: u64) -> Result<(Value, Vec<u8>)> {
        let mut seed = Map::new();
        let parts: &[Filter] = match filter {
            Filter::And(parts) => parts,
            other => std::slice::from_ref(other),
        };
        for part in parts {
            if let Filter::Path { path, conditions } = part {
                seed_equalities(&mut seed, path, conditions);
            }
        }
        let mut doc = Value::Object(seed);
        update.apply(&mut doc, now_ms).map_err(|e| refuse(e.0))?;
        self.with_id(doc, None, now_ms, || "the upserted document".into())
    }

    /// DOC.DELETE: the first match (or every one with `multi`); how many.
    pub fn delete(
        &self,
        reader: Reader<'_>,
        txn: &mut Txn<'_>,
        name: &[u8],
        filter: &Filter,
        multi: bool,
    ) -> Result<u64> {
        Self::decide(reader, txn, |view, writes| {
            let Some(coll) = view.collection_id(name)? else {
                return Ok(0);
            };
            let find = FindOptions {
                limit: (!multi).then_some(1),
                ..FindOptions::default()
            };
            let matched = self
                .select(view, coll, filter, &find, PARSED, None)?
                .documents;
            for (id_key, old) in &matched {
                self.change(view, writes, coll, id_key, Some(old), None)?;
            }
            Self::recount(view, writes, coll, -(matched.len() as i64))?;
            Ok(matched.len() as u64)
        })
    }

    /// DOC.FINDANDMODIFY: updates (or removes) the first document the filter and sort select
    /// and returns it as it was (or, with `new`, as it is now); an upsert with `new` returns
    /// the inserted document.
    #[allow(clippy::too_many_arguments)]
    pub fn find_and_modify(
        &self,
        reader: Reader<'_>,
        txn: &mut Txn<'_>,
        name: &[u8],
        filter: &Filter,
        sort: Vec<(String, bool)>,
        modify: &Modify,
        return_new: bool,
        projection: Option<&Projection>,
        now_ms: u64,
    ) -> Result<Option<Value>> {
        Self::decide(reader, txn, |view, writes| {
            let coll = Self::ensure_collection(view, writes, name)?;
            let find = FindOptions {
                sort,
                limit: Some(1),
                ..FindOptions::default()
            };
            let first = self
                .select(view, coll, filter, &find, PARSED, None)?
                .documents
                .into_iter()
                .next();
            let shown = |doc: Value| match projection {
                Some(p) => p.apply(&doc),
                None => doc,
            };
            match (first, modify) {
                (Some((id_key, old)), Modify::Remove) => {
                    self.change(view, writes, coll, &id_key, Some(&old), None)?;
                    Self::recount(view, writes, coll, -1)?;
                    Ok(Some(shown(old)))
                }
                (Some((id_key, old)), Modify::Update { update, .. }) => {
                    let mut doc = old.clone();
                    if update.apply(&mut doc, now_ms).map_err(|e| refuse(e.0))? {
                        let bytes = serde_json::to_vec(&doc).expect("JSON");
                        if bytes.len() > DOCUMENT_BYTES_MAX {
                            return Err(refuse("the updated document is over the 16 MiB limit"));
                        }
                        self.change(view, writes, coll, &id_key, Some(&old), Some((&doc, bytes)))?;
                    }
                    Ok(Some(shown(if return_new { doc } else { old })))
                }
                (
                    None,
                    Modify::Update {
                        update,
                        upsert: true,
                    },
                ) => {
                    let (doc, bytes) = self.upserted(filter, update, now_ms)?;
                    let id_key = id_key(&doc["_id"]);
                    self.change(view, writes, coll, &id_key, None, Some((&doc, bytes)))?;
                    Self::recount(view, writes, coll, 1)?;
                    Ok(return_new.then(|| shown(doc)))
                }
                (None, _) => Ok(None),
            }
        })
    }

    /// DOC.COLLECTIONS: the names, sorted (from the catalog: no walk of the namespace).
    pub fn collections(&self) -> Vec<Vec<u8>> {
        let mut names: Vec<Vec<u8>> = self.indexes.read().by_name.keys().cloned().collect();
        names.sort();
        names
    }

    /// A watched document's version (WATCH): its record's, `None` while it does not exist.
    pub fn version(&self, view: &View<'_, '_>, name: &[u8], id_key: &[u8]) -> Result<Option<u64>> {
        match view.collection_id(name)? {
            Some(coll) => view.version(&keys::document_key(coll, id_key)),
            None => Ok(None),
        }
    }

    /// The collection's index specs (DOC.INDEXES), `_id_` first as MongoDB lists it.
    pub fn index_specs(&self, name: &[u8]) -> Vec<Value> {
        let catalog = self.indexes.read();
        let Some((_, state)) = catalog.collection(name) else {
            return Vec::new();
        };
        let mut out = vec![
            json!({"name": "_id_", "key": [["_id", 1]], "unique": true, "sparse": false, "ready": true}),
        ];
        for (_, spec) in state.specs() {
            if !spec.dropping {
                let mut shown = spec.to_json();
                shown.as_object_mut().expect("object").remove("dropping");
                out.push(shown);
            }
        }
        out
    }

    /// DOC.INDEX: creates an index and builds it over the collection's documents in batches
    /// of `CHUNK` (other commands run between them; writes keep the index from its spec on).
    /// Refuses, dropping what it built, on a unique violation or parallel arrays. Returns the
    /// index's name, and whether it was created (an identical index already there: false).
    pub fn create_index(
        &self,
        store: &Store,
        name: &[u8],
        mut spec: IndexSpec,
    ) -> Result<(String, bool, Option<u64>)> {
        spec.ready = false;
        spec.dropping = false;
        let (created, mut seq) = write(store, |txn| {
            Self::decide(store.reader(), txn, |view, writes| {
                let coll = Self::ensure_collection(view, writes, name)?;
                let catalog = self.indexes.read();
                let existing = catalog
                    .collections
                    .get(&coll)
                    .map(|c| {
                        c.indexes
                            .iter()
                            .map(|(no, i)| (*no, i.spec.clone()))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                for (_, other) in existing
                    .iter()
                    .filter_map(|(no, s)| Some((no, s.as_ref()?)))
                {
                    if other.dropping {
                        continue;
                    }
                    let same_key = other.fields == spec.fields;
                    if same_key
                        && other.name == spec.name
                        && other.unique == spec.unique
                        && other.sparse == spec.sparse
                    {
                        return Ok(None);
                    }
                    if other.name == spec.name {
                        return Err(refuse(format!(
                            "an index named '{}' exists with another definition",
                            spec.name
                        )));
                    }
                    if same_key {
                        return Err(refuse(format!(
                            "index '{}' already has the key {}",
                            other.name,
                            spec.to_json()["key"]
                        )));
                    }
                }
                let no = existing.iter().map(|(no, _)| no + 1).max().unwrap_or(1);
                writes.put(
                    keys::spec_key(coll, no).to_vec(),
                    serde_json::to_vec(&spec.to_json()).expect("JSON"),
                );
                Ok(Some((coll, no)))
            })
        })?;
        let Some((coll, no)) = created else {
            return Ok((spec.name, false, seq));
        };
        match self.build(store, coll, no, &spec) {
            Ok(built) => seq = built.max(seq),
            Err(e) => {
                self.drop_index_entries(store, coll, no, &spec)?;
                return Err(e);
            }
        }
        spec.ready = true;
        let ready = put_spec(store, coll, no, &spec)?;
        Ok((spec.name, true, ready.max(seq)))
    }

    /// Puts every document's entries of a building index, `CHUNK` documents per write.
    fn build(&self, store: &Store, coll: u32, no: u32, spec: &IndexSpec) -> Result<Option<u64>> {
        let mut ids = Vec::new();
        store
            .reader()
            .for_each(NS, &keys::prefix(keys::DOCUMENT, coll), |record| {
                ids.push(record.key[5..].to_vec())
            })?;
        let mut seq = None;
        for chunk in ids.chunks(CHUNK) {
            let ((), written) = write(store, |txn| {
                Self::decide(store.reader(), txn, |view, writes| {
                    for id_key in chunk {
                        let Some(doc) = view.document(coll, id_key)? else {
                            continue;
                        };
                        for (entry, from_array) in spec.entries(&doc, id_key).map_err(refuse)? {
                            let key = keys::entry_key(coll, no, &entry);
                            if spec.unique {
                                let seen = view.with(writes).get(&key)?;
                                if let Some(holder) =
                                    seen.filter(|h| h.get(1..) != Some(&id_key[..]))
                                {
                                    return Err(refuse(format!(
                                        "duplicate key: index '{}' would hold {} twice (documents _id {} and {})",
                                        spec.name,
                                        key_values(spec, &doc),
                                        String::from_utf8_lossy(holder.get(1..).unwrap_or_default()),
                                        String::from_utf8_lossy(id_key),
                                    )));
                                }
                            }
                            let mut value = vec![from_array as u8];
                            value.extend_from_slice(id_key);
                            writes.put(key, value);
                        }
                    }
                    Ok(())
                })
            })?;
            seq = written.or(seq);
        }
        Ok(seq)
    }

    /// DOC.DROPINDEX: whether it existed.
    pub fn drop_index(
        &self,
        store: &Store,
        name: &[u8],
        index: &str,
    ) -> Result<(bool, Option<u64>)> {
        let found = {
            let catalog = self.indexes.read();
            catalog.collection(name).and_then(|(coll, state)| {
                let (no, ix) = state.index_named(index)?;
                Some((coll, no, ix.spec.clone()?))
            })
        };
        match found {
            Some((coll, no, spec)) if !spec.dropping => {
                Ok((true, self.drop_index_entries(store, coll, no, &spec)?))
            }
            _ if index == "_id_" => Err(refuse("cannot drop the _id index")),
            _ => Ok((false, None)),
        }
    }

    /// Marks an index dropping, deletes its entries `CHUNK` at a time, then its spec: a crash
    /// in between leaves a dropping spec, which the next open finishes (`finish_pending`).
    fn drop_index_entries(
        &self,
        store: &Store,
        coll: u32,
        no: u32,
        spec: &IndexSpec,
    ) -> Result<Option<u64>> {
        let mut dropping = spec.clone();
        dropping.dropping = true;
        put_spec(store, coll, no, &dropping)?;
        let prefix = keys::entries_prefix(coll, no);
        let mut entries = Vec::new();
        store
            .reader()
            .for_each(NS, &prefix, |record| entries.push(record.key.to_vec()))?;
        delete_in_batches(store, &entries)?;
        delete_in_batches(store, &[keys::spec_key(coll, no)])
    }

    /// DOC.DROP: the collection, its documents and indexes; whether it existed. The name goes
    /// in the first write (with a `z` record naming the collection's id); the records follow
    /// `CHUNK` x 10 per write, and the `z` record last, so a crash in between is finished at
    /// the next open (`finish_pending`).
    pub fn drop_collection(&self, store: &Store, name: &[u8]) -> Result<(bool, Option<u64>)> {
        let (coll, _) = write(store, |txn| {
            let view = View::in_transaction(store.reader(), Some(&*txn));
            let Some(coll) = view.collection_id(name)? else {
                return Ok(None);
            };
            txn.delete(NS, &keys::collection_key(name))?;
            txn.put(NS, &keys::prefix(keys::DROPPING, coll), b"", 0)?;
            Ok(Some(coll))
        })?;
        let Some(coll) = coll else {
            return Ok((false, None));
        };
        Ok((true, Self::purge(store, coll)?))
    }

    /// Deletes every record of a dropped collection, then its `z` record.
    fn purge(store: &Store, coll: u32) -> Result<Option<u64>> {
        let mut doomed = Vec::new();
        for tag in [keys::DOCUMENT, keys::ENTRY, keys::INDEX_SPEC, keys::COUNT] {
            store
                .reader()
                .for_each(NS, &keys::prefix(tag, coll), |record| {
                    doomed.push(record.key.to_vec())
                })?;
        }
        delete_in_batches(store, &doomed)?;
        delete_in_batches(store, &[keys::prefix(keys::DROPPING, coll)])
    }

    /// At open: finishes what a crash interrupted: drops of collections and indexes, index
    /// builds (a building index is built again from its documents).
    pub fn finish_pending(&self, store: &Store) -> Result<()> {
        // The catalog knows the drops a crash interrupted (their `z` records).
        let dropped: Vec<u32> = self.indexes.read().dropping.iter().copied().collect();
        for coll in dropped {
            Self::purge(store, coll)?;
        }
        let unfinished: Vec<(u32, u32, IndexSpec)> = {
            let catalog = self.indexes.read();
            catalog
                .collections
                .iter()
                .flat_map(|(coll, state)| {
                    state
                        .specs()
                        .into_iter()
                        .map(move |(no, spec)| (*coll, no, IndexSpec::clone(&spec)))
                })
                .filter(|(_, _, spec)| !spec.ready || spec.dropping)
                .collect()
        };
        for (coll, no, mut spec) in unfinished {
            if spec.dropping || self.build(store, coll, no, &spec).is_err() {
                self.drop_index_entries(store, coll, no, &spec)?;
                continue;
            }
            spec.ready = true;
            put_spec(store, coll, no, &spec)?;
        }
        Ok(())
    }
}

/// Writes an index's spec record, alone.
fn put_spec(store: &Store, coll: u32, no: u32, spec: &IndexSpec) -> Result<Option<u64>> {
    let spec = serde_json::to_vec(&spec.to_json()).expect("JSON");
    let ((), seq) = write(store, |txn| {
        Ok(txn.put(NS, &keys::spec_key(coll, no), &spec, 0)?)
    })?;
    Ok(seq)
}

/// Deletes `keys`, `CHUNK` x 10 per write (other commands run between them); the last
/// write's seq.
fn delete_in_batches<K: AsRef<[u8]>>(store: &Store, keys: &[K]) -> Result<Option<u64>> {
    let mut seq = None;
    for chunk in keys.chunks(CHUNK * 10) {
        let ((), written) = write(store, |txn| {
            for key in chunk {
                txn.delete(NS, key.as_ref())?;
            }
            Ok(())
        })?;
        seq = written.or(seq);
    }
    Ok(seq)
}

/// Walks an index plan's intervals in batches (the catalog's lock is held per batch only).
struct IndexCursor<'p> {
    plan: &'p IndexPlan,
    interval: usize,
    after: Option<Box<[u8]>>,
}

impl<'p> IndexCursor<'p> {
    fn new(plan: &'p IndexPlan) -> IndexCursor<'p> {
        IndexCursor {
            plan,
            interval: 0,
            after: None,
        }
    }

    fn next_batch(&mut self, index: &IndexState, most: usize) -> Vec<Box<[u8]>> {
        let mut out = Vec::new();
        let count = self.plan.intervals.len();
        while self.interval < count && out.len() < most {
            let at = if self.plan.reverse {
                count - 1 - self.interval
            } else {
                self.interval
            };
            let interval = &self.plan.intervals[at];
            let mut last = None;
            for element in planner::range(index, interval, self.after.as_deref(), self.plan.reverse)
            {
                out.push(super::index::id_of(element).into());
                last = Some(element.clone());
                if out.len() >= most {
                    break;
                }
            }
            if out.len() >= most && last.is_some() {
                self.after = last;
                break;
            }
            self.interval += 1;
            self.after = None;
        }
        out
    }
}

/// Sorts (unless already in order), skips and limits; without a sort, `_id` order.
fn finish(
    mut documents: Vec<(Vec<u8>, Value)>,
    options: &FindOptions,
    sorted: bool,
) -> Vec<(Vec<u8>, Value)> {
    if !sorted && !options.any_order {
        if options.sort.is_empty() {
            documents.sort_by(|a, b| compare(&a.1["_id"], &b.1["_id"]));
        } else {
            let mut keyed: Vec<(Vec<Value>, Found)> = documents
                .into_iter()
                .map(|doc| {
                    let keys = options
                        .sort
                        .iter()
                        .map(|(path, descending)| sort_key(lookup(&doc.1, path), *descending))
                        .collect();
                    (keys, doc)
                })
                .collect();
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
            documents = keyed.into_iter().map(|(_, doc)| doc).collect();
        }
    }
    let documents = documents.into_iter().skip(options.skip);
    match options.limit {
        Some(limit) if limit > 0 => documents.take(limit).collect(),
        _ => documents.collect(),
    }
}

/// `{_id: v}` or `{_id: {$in: [...]}}` at the top of the filter: the `_id`s to read.
fn id_lookup(filter: &Filter) -> Option<Vec<Value>> {
    let parts: &[Filter] = match filter {
        Filter::And(parts) => parts,
        other => std::slice::from_ref(other),
    };
    for part in parts {
        if let Filter::Path { path, conditions } = part {
            if path.len() == 1 && path[0] == "_id" {
                for condition in conditions {
                    match condition {
                        Condition::Eq(v) if !v.is_object() && !v.is_array() => {
                            return Some(vec![v.clone()])
                        }
                        Condition::In(vs) if vs.iter().all(|v| !v.is_object() && !v.is_array()) => {
                            return Some(vs.clone())
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    None
}

/// The indexed fields' values of a document, for an error: `{"k": 5}`.
fn key_values(spec: &IndexSpec, doc: &Value) -> Value {
    let mut out = Map::new();
    for (path, _) in &spec.fields {
        out.insert(
            path.clone(),
            lookup(doc, path).cloned().unwrap_or(Value::Null),
        );
    }
    Value::Object(out)
}

fn seed_equalities(seed: &mut Map<String, Value>, path: &[String], conditions: &[Condition]) {
    if path.len() != 1 {
        return;
    }
    for condition in conditions {
        if let Condition::Eq(value) = condition {
            seed.insert(path[0].clone(), value.clone());
        }
    }
}

/// The value at a dotted path, as sorts see it (tests use it too).
pub fn lookup_path<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    lookup(doc, path)
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
pub fn write<R>(
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
