//! The query planner: for a filter, a sort and a limit, the ways to find the documents (a full
//! scan of the collection, or a walk of key ranges of one ready index), each with an
//! estimated cost, and the cheapest chosen. DOC.EXPLAIN shows the choice and the rejected.
//!
//! What an index serves, as MongoDB: the top-level conditions of the filter (its fields and
//! `$and`) on the index's fields, from the first field on: equality and `$in` on a prefix of
//! the fields, then a range (`$gt $gte $lt $lte`, within the operand's type, as comparisons
//! bracket by type) or equality on the next one. Equality to null and `$in` lists holding
//! null are left to the scan (a null key also stands for a missing field), as are `$or`,
//! `$nor`, `$not`, `$exists`, `$type`, `$size`, `$all`, `$elemMatch` and `$regex` (they still
//! filter the documents an index finds). Over a multikey index only the first range condition
//! of a field bounds it (two conditions may hold for different elements). Every document an
//! index finds is checked against the whole filter, so an index only ever narrows the search.
//!
//! An index also gives the sort when the sort's fields follow its fields (after fields the
//! filter pins to one value), all in its direction or all against it, and it is not multikey
//! (an array sorts by its smallest or largest element, which the index does not know). With a
//! limit and a filter the index answers entirely, such a plan stops after skip + limit keys.
//!
//! Costs are documents or keys examined: a scan's is the collection's count, an index's the
//! keys in its ranges (counted up to `COUNT_CAP`), plus the same again when the plan must sort
//! in memory. Ties go to the index with more fields bounded.

use std::cmp::Ordering;

use serde_json::{json, Value};

use super::filter::{Condition, Filter};
use super::index::{CollectionState, IndexState};
use super::keys::{self, encode, successor};
use super::order::type_rank;

/// Ranges are counted up to this many keys for an estimate.
const COUNT_CAP: u64 = 10_000;
/// At most this many key ranges from `$in` lists multiplied over a compound index.
const INTERVALS_MAX: usize = 256;

/// A range of entry keys: `start` included (`None`: from the first), `end` excluded (`None`:
/// to the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub start: Option<Vec<u8>>,
    pub end: Option<Vec<u8>>,
}

impl Interval {
    pub fn contains_start(&self, key: &[u8]) -> bool {
        self.start.as_deref().is_none_or(|s| key >= s)
    }
}

/// A walk of one index.
#[derive(Debug, Clone)]
pub struct IndexPlan {
    pub index: u32,
    pub name: String,
    /// In key order (walked backwards when `reverse`).
    pub intervals: Vec<Interval>,
    pub reverse: bool,
    /// Whether walking gives the documents in the sort's order.
    pub sorted: bool,
    /// Whether the index answers the whole filter (every condition is a bound).
    pub covers_filter: bool,
    /// Whether a document may be found twice (multikey, or overlapping ranges).
    pub dedupe: bool,
    /// Whether the index answers the filter exactly (it covers the filter and is not
    /// multikey: each document's key is its value itself), so a document it finds needs no
    /// check against the filter.
    pub exact: bool,
    /// Bounds per field, for EXPLAIN.
    pub bounds: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Access {
    Scan,
    Index(IndexPlan),
}

/// A candidate plan and its estimated cost.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub access: Access,
    pub cost: u64,
}

impl Candidate {
    pub fn describe(&self) -> Value {
        match &self.access {
            Access::Scan => json!({"stage": "COLLSCAN", "cost": self.cost}),
            Access::Index(plan) => json!({
                "stage": "IXSCAN",
                "index": plan.name,
                "bounds": plan.bounds,
                "direction": if plan.reverse { "backward" } else { "forward" },
                "sortedByIndex": plan.sorted,
                "cost": self.cost,
            }),
        }
    }
}

/// The chosen plan first, then the rejected ones.
pub fn plan(
    collection: &CollectionState,
    filter: &Filter,
    sort: &[(String, bool)],
    wanted: Option<usize>,
) -> Vec<Candidate> {
    let conditions = top_conditions(filter);
    let sort_cost = |examined: u64| if sort.is_empty() { 0 } else { examined };
    let mut candidates = vec![Candidate {
        access: Access::Scan,
        cost: collection.count + sort_cost(collection.count),
    }];
    let mut bounded_fields = vec![0usize];
    for (&no, index) in &collection.indexes {
        let Some(spec) = &index.spec else { continue };
        if !spec.ready || spec.dropping {
            continue;
        }
        let Some((plan, fields_bounded)) = index_plan(no, index, &conditions, sort) else {
            continue;
        };
        if fields_bounded == 0 && !plan.sorted {
            continue; // neither narrows nor sorts
        }
        if spec.sparse && fields_bounded == 0 {
            continue; // a sparse index lacks documents: it cannot answer a sort alone
        }
        let keys = match (plan.sorted && plan.covers_filter, wanted) {
            (true, Some(wanted)) => wanted as u64,
            _ => estimate(index, &plan.intervals, collection.count),
        };
        let cost = keys + if plan.sorted { 0 } else { sort_cost(keys) };
        candidates.push(Candidate {
            access: Access::Index(plan),
            cost,
        });
        bounded_fields.push(fields_bounded);
    }
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| {
        candidates[a]
            .cost
            .cmp(&candidates[b].cost)
            .then(bounded_fields[b].cmp(&bounded_fields[a]))
    });
    order.into_iter().map(|i| candidates[i].clone()).collect()
}

/// The filter's top-level conditions: (dotted path, condition).
fn top_conditions(filter: &Filter) -> Vec<(String, &Condition)> {
    let mut out = Vec::new();
    fn walk<'f>(filter: &'f Filter, out: &mut Vec<(String, &'f Condition)>) {
        match filter {
            Filter::And(parts) => parts.iter().for_each(|p| walk(p, out)),
            Filter::Path { path, conditions } => {
                let path = path.join(".");
                out.extend(conditions.iter().map(|c| (path.clone(), c)));
            }
            _ => out.push((String::new(), &UNINDEXABLE)),
        }
    }
    walk(filter, &mut out);
    out
}

/// Stands for a part of the filter no index serves (`$or`, `$nor`).
static UNINDEXABLE: Condition = Condition::Exists(true);

/// A range of one field's encoded values: (bytes, inclusive) ends, `None` unbounded.
#[derive(Debug, Clone)]
struct FieldRange {
    lo: Option<(Vec<u8>, bool)>,
    hi: Option<(Vec<u8>, bool)>,
    text: String,
}

impl FieldRange {
    fn point(value: &Value) -> FieldRange {
        let mut bytes = Vec::new();
        encode(value, &mut bytes);
        FieldRange {
            lo: Some((bytes.clone(), true)),
            hi: Some((bytes, true)),
            text: format!("[{value}, {value}]"),
        }
    }

    fn is_point(&self) -> bool {
        matches!((&self.lo, &self.hi), (Some((a, true)), Some((b, true))) if a == b)
    }

    /// `$gt` ... within the operand's type; `None` for operands no index range serves.
    fn from_condition(condition: &Condition) -> Option<FieldRange> {
        let (value, lower, inclusive) = match condition {
            Condition::Gt(v) => (v, true, false),
            Condition::Gte(v) => (v, true, true),
            Condition::Lt(v) => (v, false, false),
            Condition::Lte(v) => (v, false, true),
            _ => return None,
        };
        if !matches!(value, Value::Number(_) | Value::String(_) | Value::Bool(_)) {
            return None;
        }
        let rank = type_rank(value);
        let mut bytes = Vec::new();
        encode(value, &mut bytes);
        let (open, close) = (
            if inclusive { "[" } else { "(" },
            if inclusive { "]" } else { ")" },
        );
        Some(if lower {
            FieldRange {
                lo: Some((bytes, inclusive)),
                hi: Some((keys::type_floor(rank + 1), false)),
                text: format!("{open}{value}, +inf)"),
            }
        } else {
            FieldRange {
                lo: Some((keys::type_floor(rank), true)),
                hi: Some((bytes, inclusive)),
                text: format!("(-inf, {value}{close}"),
            }
        })
    }

    /// Both ranges at once (`None`: nothing is in both).
    fn intersect(self, other: FieldRange) -> Option<FieldRange> {
        let lo = match (self.lo, other.lo) {
            (Some(a), Some(b)) => Some(match a.0.cmp(&b.0) {
                Ordering::Greater => a,
                Ordering::Less => b,
                Ordering::Equal => (a.0, a.1 && b.1),
            }),
            (a, b) => a.or(b),
        };
        let hi = match (self.hi, other.hi) {
            (Some(a), Some(b)) => Some(match a.0.cmp(&b.0) {
                Ordering::Less => a,
                Ordering::Greater => b,
                Ordering::Equal => (a.0, a.1 && b.1),
            }),
            (a, b) => a.or(b),
        };
        if let (Some(l), Some(h)) = (&lo, &hi) {
            if l.0 > h.0 || (l.0 == h.0 && !(l.1 && h.1)) {
                return None;
            }
        }
        Some(FieldRange {
            lo,
            hi,
            text: format!("{} and {}", self.text, other.text),
        })
    }

    /// The range over a descending field's inverted bytes.
    fn inverted(self) -> FieldRange {
        let flip = |end: Option<(Vec<u8>, bool)>| {
            end.map(|(mut bytes, inclusive)| {
                keys::invert(&mut bytes);
                (bytes, inclusive)
            })
        };
        FieldRange {
            lo: flip(self.hi),
            hi: flip(self.lo),
            text: self.text,
        }
    }
}

/// What the conditions on one path allow: ranges (several for `$in`), and whether every
/// condition on the path is one of them.
fn field_ranges(
    path: &str,
    conditions: &[(String, &Condition)],
    multikey: bool,
) -> (Option<Vec<FieldRange>>, bool) {
    let mut ranges: Option<Vec<FieldRange>> = None;
    let mut all_used = true;
    let mut have_range = false;
    for (_, condition) in conditions.iter().filter(|(p, _)| p == path) {
        let these = match condition {
            Condition::Eq(v) if !v.is_null() => Some(vec![FieldRange::point(v)]),
            Condition::In(vs) if !vs.is_empty() && !vs.iter().any(Value::is_null) => {
                let mut points: Vec<FieldRange> = vs.iter().map(FieldRange::point).collect();
                points.sort_by(|a, b| a.lo.cmp(&b.lo));
                points.dedup_by(|a, b| a.lo == b.lo);
                Some(points)
            }
            other => match FieldRange::from_condition(other) {
                Some(range) if !(multikey && have_range) => {
                    have_range = true;
                    Some(vec![range])
                }
                _ => None,
            },
        };
        let Some(these) = these else {
            all_used = false;
            continue;
        };
        ranges = Some(match ranges {
            None => these,
            // Points are already as narrow as a field gets: keep the first set of them.
            Some(existing) if existing.iter().all(FieldRange::is_point) => {
                all_used = false;
                existing
            }
            Some(_) if these.iter().all(FieldRange::is_point) => {
                all_used = false;
                these
            }
            Some(existing) if !multikey => {
                let mut out = Vec::new();
                for a in &existing {
                    for b in &these {
                        if let Some(both) = a.clone().intersect(b.clone()) {
                            out.push(both);
                        }
                    }
                }
                out
            }
            Some(existing) => {
                all_used = false;
                existing
            }
        });
    }
    (ranges, all_used)
}

/// The walk of one index for these conditions and sort, and how many fields it bounds.
fn index_plan(
    no: u32,
    index: &IndexState,
    conditions: &[(String, &Condition)],
    sort: &[(String, bool)],
) -> Option<(IndexPlan, usize)> {
    let spec = index.spec.as_ref()?;
    // Prefixes (bytes of the fields bound so far) and their texts.
    let mut prefixes: Vec<Vec<u8>> = vec![Vec::new()];
    let mut last: Option<Vec<FieldRange>> = None;
    let mut bounds = Vec::new();
    let mut fields_bounded = 0;
    let mut used_paths = Vec::new();
    let mut pinned = Vec::new(); // fields pinned to one value
    let mut all_used = true;
    for (path, descending) in &spec.fields {
        let (ranges, used) = field_ranges(path, conditions, index.multikey);
        let Some(mut ranges) = ranges else { break };
        if *descending {
            ranges = ranges.into_iter().map(FieldRange::inverted).collect();
            ranges.sort_by(|a, b| a.lo.cmp(&b.lo));
        }
        all_used &= used;
        used_paths.push(path.clone());
        fields_bounded += 1;
        bounds.push(format!(
            "{path}: {}",
            ranges
                .iter()
                .map(|r| r.text.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if ranges.iter().all(FieldRange::is_point) && prefixes.len() * ranges.len() <= INTERVALS_MAX
        {
            if ranges.len() == 1 {
                pinned.push(path.clone());
            }
            prefixes = prefixes
                .iter()
                .flat_map(|p| {
                    ranges.iter().map(move |r| {
                        let mut bytes = p.clone();
                        bytes.extend_from_slice(&r.lo.as_ref().expect("point").0);
                        bytes
                    })
                })
                .collect();
            continue;
        }
        if prefixes.len() * ranges.len() <= INTERVALS_MAX {
            last = Some(ranges);
        } else {
            fields_bounded -= 1;
            bounds.pop();
            used_paths.pop();
            all_used = false;
        }
        break;
    }
    let mut intervals = Vec::new();
    for prefix in &prefixes {
        match &last {
            None => intervals.push(Interval {
                start: (!prefix.is_empty()).then(|| prefix.clone()),
                end: if prefix.is_empty() {
                    None
                } else {
                    successor(prefix)
                },
            }),
            Some(ranges) => {
                for range in ranges {
                    let join = |bytes: &[u8]| {
                        let mut key = prefix.clone();
                        key.extend_from_slice(bytes);
                        key
                    };
                    let start = match &range.lo {
                        None => (!prefix.is_empty()).then(|| prefix.clone()),
                        Some((bytes, true)) => Some(join(bytes)),
                        Some((bytes, false)) => successor(&join(bytes)).or(Some(vec![0xFF; 1])),
                    };
                    let end = match &range.hi {
                        None => successor(prefix),
                        Some((bytes, true)) => successor(&join(bytes)),
                        Some((bytes, false)) => Some(join(bytes)),
                    };
                    intervals.push(Interval { start, end });
                }
            }
        }
    }
    intervals.sort_by(|a, b| a.start.cmp(&b.start));
    let covers_filter = all_used
        && conditions
            .iter()
            .all(|(path, _)| used_paths.iter().any(|p| p == path));
    // The sort, after the fields pinned to one value, against the index's next fields.
    let rest: Vec<&(String, bool)> = sort.iter().filter(|(p, _)| !pinned.contains(p)).collect();
    let (mut sorted, mut reverse) = (false, false);
    if !sort.is_empty() && !index.multikey && prefixes.len() == 1 {
        let next = &spec.fields[pinned.len().min(spec.fields.len())..];
        if rest.len() <= next.len() {
            let forward = rest.iter().zip(next).all(|(s, f)| s.0 == f.0 && s.1 == f.1);
            let backward = rest.iter().zip(next).all(|(s, f)| s.0 == f.0 && s.1 != f.1);
            sorted = forward || backward;
            reverse = !forward && backward;
        }
    }
    let dedupe = index.multikey || intervals.len() > 1;
    Some((
        IndexPlan {
            index: no,
            name: spec.name.clone(),
            intervals,
            reverse,
            sorted,
            covers_filter,
            dedupe,
            exact: covers_filter && !index.multikey,
            bounds,
        },
        fields_bounded,
    ))
}

/// Keys in the ranges, counted up to `COUNT_CAP` (past it, a third of the collection).
fn estimate(index: &IndexState, intervals: &[Interval], count: u64) -> u64 {
    let mut keys = 0u64;
    for interval in intervals {
        for _ in range(index, interval, None, false) {
            keys += 1;
            if keys >= COUNT_CAP {
                return COUNT_CAP.max(count / 3);
            }
        }
    }
    keys
}

/// An interval's elements (after `after`, an element, exclusive, in the walk's direction).
pub fn range<'a>(
    index: &'a IndexState,
    interval: &Interval,
    after: Option<&[u8]>,
    reverse: bool,
) -> Box<dyn Iterator<Item = &'a Box<[u8]>> + 'a> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let mut start = match &interval.start {
        Some(s) => Included(s.clone().into_boxed_slice()),
        None => Unbounded,
    };
    let mut end = match &interval.end {
        Some(e) => Excluded(e.clone().into_boxed_slice()),
        None => Unbounded,
    };
    if let Some(after) = after {
        if reverse {
            end = Excluded(after.into());
        } else {
            start = Excluded(after.into());
        }
    }
    // An empty or inverted range (a bound past the other) yields nothing.
    let empty = match (&start, &end) {
        (Included(s) | Excluded(s), Included(e) | Excluded(e)) => s >= e,
        _ => false,
    };
    if empty {
        return Box::new(std::iter::empty());
    }
    let walk = index.entries.range::<Box<[u8]>, _>((start, end));
    if reverse {
        Box::new(walk.rev())
    } else {
        Box::new(walk)
    }
}
