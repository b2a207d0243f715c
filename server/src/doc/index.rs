//! Secondary indexes: their specs, the entries a document yields, and the [`Catalog`], the
//! model's in-memory view of the Document namespace (collection names, document counts, every
//! index's entries in key order) kept as the engine's observer of the namespace.
//!
//! Entries are records (`super::keys`), written in the engine batch of the document they come
//! from, so the catalog is rebuilt at open from the namespace's live records alone
//! (`Replay::Rebuild`) and follows every committed write, replicated ones and truncations
//! included: an index is exactly its records, through restart, kill -9 and compaction.
//!
//! MongoDB's rules for what an index holds: a field's value at a dotted path (reaching into
//! arrays of objects); an array yields an entry per element (the index becomes multikey, and
//! stays so until the next open) and one for the whole array (so equality to an array finds
//! it); a missing field is null, unless the index is sparse and every indexed field is
//! missing (then the document has no entry); a compound index over two array fields of one
//! document is refused ("cannot index parallel arrays", as MongoDB).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use flin_engine::{Change, Engine, Observer, Op, RecordKind, Replay};
use serde_json::{json, Value};

use super::keys;

/// An index's definition (stored as JSON in its `i` record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: String,
    /// (dotted path, descending).
    pub fields: Vec<(String, bool)>,
    pub unique: bool,
    pub sparse: bool,
    /// False while the index is being built: writes keep it, queries do not use it yet.
    pub ready: bool,
    /// True while the index is being dropped (its entries go in batches, its spec last):
    /// writes and queries ignore it.
    pub dropping: bool,
}

impl IndexSpec {
    /// MongoDB's default name: `a_1_b_-1`.
    pub fn default_name(fields: &[(String, bool)]) -> String {
        fields
            .iter()
            .map(|(path, descending)| format!("{path}_{}", if *descending { -1 } else { 1 }))
            .collect::<Vec<_>>()
            .join("_")
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "key": self.fields.iter().map(|(p, d)| json!([p, if *d { -1 } else { 1 }])).collect::<Vec<_>>(),
            "unique": self.unique,
            "sparse": self.sparse,
            "ready": self.ready,
            "dropping": self.dropping,
        })
    }

    pub fn from_json(value: &Value) -> Option<IndexSpec> {
        let fields = value["key"]
            .as_array()?
            .iter()
            .map(|pair| Some((pair[0].as_str()?.to_string(), pair[1].as_i64()? < 0)))
            .collect::<Option<Vec<_>>>()?;
        Some(IndexSpec {
            name: value["name"].as_str()?.to_string(),
            fields,
            unique: value["unique"].as_bool()?,
            sparse: value["sparse"].as_bool()?,
            ready: value["ready"].as_bool()?,
            dropping: value["dropping"].as_bool().unwrap_or(false),
        })
    }

    /// The entries `document` yields (each the encoded key, and whether it came from an array
    /// element), sorted and without repeats; `id_key` is appended in a non-unique index.
    pub fn entries(&self, document: &Value, id_key: &[u8]) -> Result<Vec<(Vec<u8>, bool)>, String> {
        let mut per_field = Vec::with_capacity(self.fields.len());
        let mut array_fields = Vec::new();
        let mut all_missing = true;
        for (path, _) in &self.fields {
            let mut values = Vec::new();
            let parts: Vec<&str> = path.split('.').collect();
            let from_array = values_at(document, &parts, &mut values);
            if values.is_empty() {
                values.push(Value::Null);
            } else {
                all_missing = false;
            }
            if from_array {
                array_fields.push(path.as_str());
            }
            per_field.push((values, from_array));
        }
        if self.sparse && all_missing {
            return Ok(Vec::new());
        }
        if array_fields.len() > 1 {
            return Err(format!(
                "cannot index parallel arrays [{}] in index '{}'",
                array_fields.join("] ["),
                self.name
            ));
        }
        let mut out: Vec<(Vec<u8>, bool)> = vec![(Vec::new(), false)];
        for ((values, from_array), (_, descending)) in per_field.iter().zip(&self.fields) {
            let mut next = Vec::with_capacity(out.len() * values.len());
            for (prefix, flag) in &out {
                for value in values {
                    let mut key = prefix.clone();
                    let at = key.len();
                    keys::encode(value, &mut key);
                    if *descending {
                        keys::invert(&mut key[at..]);
                    }
                    next.push((key, *flag || *from_array));
                }
            }
            out = next;
        }
        if !self.unique {
            for (key, _) in &mut out {
                key.extend_from_slice(id_key);
            }
        }
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        Ok(out)
    }
}

/// The values at a dotted path, MongoDB's way; whether any came from an array.
fn values_at(at: &Value, path: &[&str], out: &mut Vec<Value>) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return match at {
            Value::Array(items) => {
                out.push(at.clone());
                out.extend(items.iter().cloned());
                true
            }
            other => {
                out.push(other.clone());
                false
            }
        };
    };
    match at {
        Value::Object(map) => match map.get(*first) {
            Some(value) => values_at(value, rest, out),
            None => false,
        },
        Value::Array(items) => {
            if let Some(item) = first.parse::<usize>().ok().and_then(|i| items.get(i)) {
                return values_at(item, rest, out);
            }
            let mut from_array = true;
            for item in items {
                if item.is_object() {
                    from_array |= values_at(item, path, out);
                }
            }
            from_array
        }
        _ => false,
    }
}

/// One index in memory: its spec and its entries in key order. An element is the entry
/// (the record key after the index's prefix), then the document's `_id` key, then that key's
/// length (u16 LE): one allocation per entry, the `_id` found from the end ([`id_of`]).
#[derive(Debug, Default)]
pub struct IndexState {
    /// `None` until the spec record is seen (a replay may bring entries first). Shared, so
    /// every write reads the specs without copying them.
    pub spec: Option<Arc<IndexSpec>>,
    pub entries: BTreeSet<Box<[u8]>>,
    /// Whether an entry came from an array element (sticky until the next open).
    pub multikey: bool,
}

/// The `_id` key an element of [`IndexState::entries`] ends with.
pub fn id_of(element: &[u8]) -> &[u8] {
    let n = element.len();
    let id_len = u16::from_le_bytes([element[n - 2], element[n - 1]]) as usize;
    &element[n - 2 - id_len..n - 2]
}

fn element(entry: &[u8], id_key: &[u8]) -> Box<[u8]> {
    let mut out = Vec::with_capacity(entry.len() + id_key.len() + 2);
    out.extend_from_slice(entry);
    out.extend_from_slice(id_key);
    out.extend_from_slice(&(id_key.len() as u16).to_le_bytes());
    out.into_boxed_slice()
}

/// The element whose entry is exactly `entry` (a delete names the entry, not the `_id`).
fn element_of<'a>(entries: &'a BTreeSet<Box<[u8]>>, entry: &[u8]) -> Option<&'a [u8]> {
    entries
        .range::<[u8], _>((std::ops::Bound::Included(entry), std::ops::Bound::Unbounded))
        .take_while(|e| e.starts_with(entry))
        .find(|e| e.len() - 2 - id_of(e).len() == entry.len())
        .map(|e| &e[..])
}

/// One collection in memory.
#[derive(Debug, Default)]
pub struct CollectionState {
    pub name: Vec<u8>,
    pub count: u64,
    pub indexes: BTreeMap<u32, IndexState>,
}

impl CollectionState {
    pub fn index_named(&self, name: &str) -> Option<(u32, &IndexState)> {
        self.indexes
            .iter()
            .find(|(_, index)| index.spec.as_ref().is_some_and(|s| s.name == name))
            .map(|(no, index)| (*no, index))
    }

    /// The specs of every index (ready or building), by number.
    pub fn specs(&self) -> Vec<(u32, Arc<IndexSpec>)> {
        self.indexes
            .iter()
            .filter_map(|(no, index)| Some((*no, index.spec.clone()?)))
            .collect()
    }
}

/// The model's view of the namespace.
#[derive(Debug, Default)]
pub struct Catalog {
    pub by_name: HashMap<Vec<u8>, u32>,
    pub collections: HashMap<u32, CollectionState>,
    /// Dropped collections whose records are still being deleted (their `z` records).
    pub dropping: BTreeSet<u32>,
}

impl Catalog {
    pub fn collection(&self, name: &[u8]) -> Option<(u32, &CollectionState)> {
        let id = *self.by_name.get(name)?;
        Some((id, self.collections.get(&id)?))
    }

    fn apply_op(&mut self, op: &Op<'_>) {
        let Some(&tag) = op.key.first() else { return };
        let put = op.kind == RecordKind::Put;
        match tag {
            keys::COLLECTION => {
                let name = op.key[1..].to_vec();
                if put {
                    let Some(id) = op
                        .value
                        .get(..4)
                        .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
                    else {
                        return;
                    };
                    self.collections.entry(id).or_default().name = name.clone();
                    self.by_name.insert(name, id);
                } else if let Some(id) = self.by_name.remove(&name) {
                    self.collections.remove(&id);
                }
            }
            keys::COUNT => {
                if let (Some((coll, _)), true) = (keys::split_coll_key(op.key), put) {
                    if let Some(count) = op.value.get(..8) {
                        self.collections.entry(coll).or_default().count =
                            u64::from_le_bytes(count.try_into().expect("8"));
                    }
                }
            }
            keys::INDEX_SPEC => {
                let Some((coll, no, _)) = keys::split_index_key(op.key) else {
                    return;
                };
                if put {
                    let spec = serde_json::from_slice(op.value)
                        .ok()
                        .and_then(|v| IndexSpec::from_json(&v))
                        .map(Arc::new);
                    let state = self.collections.entry(coll).or_default();
                    state.indexes.entry(no).or_default().spec = spec;
                } else if let Some(state) = self.collections.get_mut(&coll) {
                    state.indexes.remove(&no);
                }
            }
            keys::DROPPING => {
                if let Some((coll, _)) = keys::split_coll_key(op.key) {
                    match put {
                        true => self.dropping.insert(coll),
                        false => self.dropping.remove(&coll),
                    };
                }
            }
            keys::ENTRY => {
                let Some((coll, no, entry)) = keys::split_index_key(op.key) else {
                    return;
                };
                if put {
                    let index = self
                        .collections
                        .entry(coll)
                        .or_default()
                        .indexes
                        .entry(no)
                        .or_default();
                    index.multikey |= op.value.first() == Some(&1);
                    let id_key = op.value.get(1..).unwrap_or_default();
                    if id_key.len() <= u16::MAX as usize {
                        if let Some(old) = element_of(&index.entries, entry).map(<[u8]>::to_vec) {
                            index.entries.remove(old.as_slice());
                        }
                        index.entries.insert(element(entry, id_key));
                    }
                } else if let Some(index) = self
                    .collections
                    .get_mut(&coll)
                    .and_then(|c| c.indexes.get_mut(&no))
                {
                    if let Some(old) = element_of(&index.entries, entry).map(<[u8]>::to_vec) {
                        index.entries.remove(old.as_slice());
                    }
                }
            }
            _ => {}
        }
    }
}

/// The catalog, as the engine's observer of the Document namespace.
#[derive(Default)]
pub struct Indexes {
    catalog: RwLock<Catalog>,
}

impl Indexes {
    pub fn read(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl Observer for Indexes {
    fn start(&self, _engine: &Engine) -> Replay {
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = Catalog::default();
        Replay::Rebuild
    }

    fn apply(&self, change: &Change<'_>) {
        let mut catalog = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        for op in change.ops {
            if op.namespace == super::collection::NS {
                catalog.apply_op(op);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(fields: &[(&str, bool)], unique: bool, sparse: bool) -> IndexSpec {
        let fields: Vec<(String, bool)> = fields.iter().map(|(p, d)| (p.to_string(), *d)).collect();
        IndexSpec {
            name: IndexSpec::default_name(&fields),
            fields,
            unique,
            sparse,
            ready: true,
            dropping: false,
        }
    }

    #[test]
    fn arrays_yield_an_entry_per_element_and_one_for_the_whole() {
        let s = spec(&[("tags", false)], true, false);
        let entries = s.entries(&json!({"tags": ["a", "b", "a"]}), b"1").unwrap();
        assert_eq!(entries.len(), 3, "a, b and the whole array, once each");
        assert!(entries.iter().all(|(_, multikey)| *multikey));
        let nested = spec(&[("items.sku", false)], false, false);
        let entries = nested
            .entries(
                &json!({"items": [{"sku": 1}, {"sku": 2}, {"other": 3}]}),
                b"1",
            )
            .unwrap();
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn missing_fields_are_null_unless_sparse_and_parallel_arrays_are_refused() {
        let s = spec(&[("a", false)], false, false);
        assert_eq!(s.entries(&json!({}), b"1").unwrap().len(), 1);
        let sparse = spec(&[("a", false), ("b", false)], false, true);
        assert!(sparse.entries(&json!({}), b"1").unwrap().is_empty());
        assert_eq!(sparse.entries(&json!({"b": 1}), b"1").unwrap().len(), 1);
        let compound = spec(&[("a", false), ("b", false)], false, false);
        let e = compound
            .entries(&json!({"a": [1], "b": [2]}), b"1")
            .unwrap_err();
        assert!(e.contains("parallel arrays"), "{e}");
    }

    #[test]
    fn descending_fields_invert_the_order() {
        let s = spec(&[("a", true)], true, false);
        let one = s.entries(&json!({"a": 1}), b"").unwrap();
        let two = s.entries(&json!({"a": 2}), b"").unwrap();
        assert!(two[0].0 < one[0].0);
        assert_eq!(IndexSpec::from_json(&s.to_json()), Some(s));
    }
}
