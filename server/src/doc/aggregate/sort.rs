//! `$sort`: keys read as a find's sort reads them, and the documents a run holds.

use serde_json::Value;

use super::expr::json_bytes;
use super::{path_parts, Limits};
use crate::doc::filter::collect;
use crate::doc::order::{compare, sort_key};

#[derive(Debug, Clone, PartialEq)]
pub(super) struct SortKey {
    path: Vec<String>,
    descending: bool,
}

impl SortKey {
    /// Adds the first name of the key's path to `fields`.
    pub(super) fn top_level_field(&self, fields: &mut Vec<String>) {
        crate::doc::filter::add_field(fields, &self.path[0]);
    }
}

pub(super) fn parse_sort(spec: &Value) -> Result<Vec<SortKey>, String> {
    let Value::Object(spec) = spec else {
        return Err("needs an object of paths and 1 or -1".into());
    };
    if spec.is_empty() {
        return Err("needs at least one path".into());
    }
    spec.iter()
        .map(|(path, order)| {
            let descending = match order.as_f64() {
                Some(1.0) => false,
                Some(-1.0) => true,
                _ => return Err(format!("the order of '{path}' must be 1 or -1")),
            };
            Ok(SortKey {
                path: path_parts(path)?,
                descending,
            })
        })
        .collect()
}

/// A document's sort keys: what each path reaches (as a find's filter reaches it, through
/// arrays), an array's elements counting one by one, as [`sort_key`] picks from them.
fn sort_keys(keys: &[SortKey], document: &Value) -> Vec<Value> {
    keys.iter()
        .map(|key| {
            let parts: Vec<&str> = key.path.iter().map(String::as_str).collect();
            let mut found = Vec::new();
            collect(document, &parts, &mut found);
            match found.as_slice() {
                [] => sort_key(None, key.descending),
                [one] => sort_key(Some(*one), key.descending),
                many => {
                    let flat: Vec<Value> = many
                        .iter()
                        .flat_map(|v| match v {
                            Value::Array(items) => items.clone(),
                            other => vec![(*other).clone()],
                        })
                        .collect();
                    sort_key(Some(&Value::Array(flat)), key.descending)
                }
            }
        })
        .collect()
}

/// Documents a `$sort` holds, with their keys and sizes.
#[derive(Debug, Default)]
pub(super) struct Sorting {
    entries: Vec<(Vec<Value>, Value, usize)>,
    bytes: usize,
    /// The `$limit` right after: only that many need be kept.
    keep: Option<usize>,
}

impl Sorting {
    /// Holding every document, or with `keep`, only the best that many.
    pub(super) fn new(keep: Option<usize>) -> Sorting {
        Sorting {
            keep,
            ..Sorting::default()
        }
    }

    pub(super) fn add(
        &mut self,
        keys: &[SortKey],
        document: Value,
        limits: &Limits,
    ) -> Result<(), String> {
        let bytes = json_bytes(&document);
        self.entries
            .push((sort_keys(keys, &document), document, bytes));
        self.bytes += bytes;
        if let Some(keep) = self.keep {
            // Sorting at twice the kept count (or at the byte limit) and truncating keeps the
            // cost n log k and the bytes those of the best k; the sort is stable and new
            // documents come after old ones, so ties keep their input order.
            let full = self.entries.len() >= keep.saturating_mul(2).max(64);
            if full || self.bytes > limits.blocking_stage_bytes_max {
                self.sort(keys);
                self.bytes -= self.entries.drain(keep..).map(|(_, _, b)| b).sum::<usize>();
            }
        }
        if self.bytes > limits.blocking_stage_bytes_max {
            return Err(format!(
                "the documents to sort are over the limit of {} bytes",
                limits.blocking_stage_bytes_max
            ));
        }
        Ok(())
    }

    fn sort(&mut self, keys: &[SortKey]) {
        self.entries.sort_by(|(a, _, _), (b, _, _)| {
            keys.iter()
                .zip(a.iter().zip(b))
                .map(|(key, (a, b))| {
                    let order = compare(a, b);
                    if key.descending {
                        order.reverse()
                    } else {
                        order
                    }
                })
                .find(|order| order.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    }

    pub(super) fn finish(mut self, keys: &[SortKey]) -> Vec<Value> {
        self.sort(keys);
        if let Some(keep) = self.keep {
            self.entries.truncate(keep);
        }
        self.entries.into_iter().map(|(_, doc, _)| doc).collect()
    }
}
