//! `$group`: the key, the accumulators, and the groups a run holds.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Number, Value};

use super::expr::{json_bytes, shown, Budget, Expr};
use super::{plain_name, Limits};
use crate::doc::collection::id_key;
use crate::doc::order::compare;

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Group {
    id: Expr,
    /// Output fields and their accumulators, in the specification's order.
    fields: Vec<(String, Accumulator)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Accumulator {
    Sum(Expr),
    Avg(Expr),
    Min(Expr),
    Max(Expr),
    Count,
    Push(Expr),
    AddToSet(Expr),
    First(Expr),
    Last(Expr),
}

impl Group {
    pub(super) fn parse(spec: &Value) -> Result<Group, String> {
        let Value::Object(spec) = spec else {
            return Err("needs an object".into());
        };
        let id = match spec.get("_id") {
            Some(id) => Expr::parse(id)?,
            None => return Err("needs an _id (null for one group of everything)".into()),
        };
        let mut fields = Vec::with_capacity(spec.len() - 1);
        for (name, accumulator) in spec.iter().filter(|(name, _)| *name != "_id") {
            plain_name(name, "a $group field name")?;
            fields.push((name.clone(), Accumulator::parse(name, accumulator)?));
        }
        Ok(Group { id, fields })
    }
}

impl Group {
    /// Adds the first names of the paths the group's key and accumulators read to `fields`;
    /// false when one reads the whole document.
    pub(super) fn top_level_fields(&self, fields: &mut Vec<String>) -> bool {
        self.id.top_level_fields(fields)
            && self
                .fields
                .iter()
                .all(|(_, accumulator)| match accumulator {
                    Accumulator::Count => true,
                    Accumulator::Sum(e)
                    | Accumulator::Avg(e)
                    | Accumulator::Min(e)
                    | Accumulator::Max(e)
                    | Accumulator::Push(e)
                    | Accumulator::AddToSet(e)
                    | Accumulator::First(e)
                    | Accumulator::Last(e) => e.top_level_fields(fields),
                })
    }
}

impl Accumulator {
    fn parse(name: &str, spec: &Value) -> Result<Accumulator, String> {
        let (operator, argument) = match spec {
            Value::Object(fields) if fields.len() == 1 => fields.iter().next().expect("one"),
            _ => {
                return Err(format!(
                "'{name}' must be an accumulator object with one operator, such as {{\"$sum\": 1}}"
            ))
            }
        };
        if operator == "$count" {
            return match argument {
                Value::Object(empty) if empty.is_empty() => Ok(Accumulator::Count),
                _ => Err(format!(
                    "$count for '{name}' takes no argument: {{\"$count\": {{}}}}"
                )),
            };
        }
        if argument.is_array() {
            return Err(format!(
                "{operator} for '{name}' takes one argument, not an array"
            ));
        }
        let expr = Expr::parse(argument).map_err(|e| format!("{operator} for '{name}': {e}"))?;
        Ok(match operator.as_str() {
            "$sum" => Accumulator::Sum(expr),
            "$avg" => Accumulator::Avg(expr),
            "$min" => Accumulator::Min(expr),
            "$max" => Accumulator::Max(expr),
            "$push" => Accumulator::Push(expr),
            "$addToSet" => Accumulator::AddToSet(expr),
            "$first" => Accumulator::First(expr),
            "$last" => Accumulator::Last(expr),
            other => {
                return Err(format!(
                    "unknown accumulator {other} for '{name}' (supported: $sum $avg $min $max \
                     $count $push $addToSet $first $last)"
                ))
            }
        })
    }

    fn argument(&self) -> Option<&Expr> {
        match self {
            Accumulator::Count => None,
            Accumulator::Sum(e)
            | Accumulator::Avg(e)
            | Accumulator::Min(e)
            | Accumulator::Max(e)
            | Accumulator::Push(e)
            | Accumulator::AddToSet(e)
            | Accumulator::First(e)
            | Accumulator::Last(e) => Some(e),
        }
    }

    fn operator(&self) -> &'static str {
        match self {
            Accumulator::Sum(_) => "$sum",
            Accumulator::Avg(_) => "$avg",
            Accumulator::Min(_) => "$min",
            Accumulator::Max(_) => "$max",
            Accumulator::Count => "$count",
            Accumulator::Push(_) => "$push",
            Accumulator::AddToSet(_) => "$addToSet",
            Accumulator::First(_) => "$first",
            Accumulator::Last(_) => "$last",
        }
    }

    fn start(&self) -> Accumulated {
        match self {
            Accumulator::Sum(_) | Accumulator::Avg(_) => Accumulated::Sum(Sum::default()),
            Accumulator::Count => Accumulated::Count(0),
            Accumulator::Push(_) => Accumulated::List {
                items: Vec::new(),
                bytes: 0,
                seen: None,
            },
            Accumulator::AddToSet(_) => Accumulated::List {
                items: Vec::new(),
                bytes: 0,
                seen: Some(HashSet::new()),
            },
            Accumulator::Min(_)
            | Accumulator::Max(_)
            | Accumulator::First(_)
            | Accumulator::Last(_) => Accumulated::Held {
                value: None,
                bytes: 0,
            },
        }
    }
}

/// A running sum: integers exactly (i128 cannot overflow on i64 and u64 addends), floats apart.
#[derive(Debug, Clone, Default)]
struct Sum {
    integer: i128,
    float: f64,
    floats: bool,
    count: u64,
}

impl Sum {
    fn add(&mut self, value: &Value) {
        let Value::Number(n) = value else { return };
        match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => self.integer += i128::from(i),
            (None, Some(u), _) => self.integer += i128::from(u),
            (None, None, Some(f)) => {
                self.float += f;
                self.floats = true;
            }
            (None, None, None) => return,
        }
        self.count += 1;
    }

    /// An integer while it fits in i64 and no float was added, else a float (null if infinite).
    fn total(&self) -> Value {
        if !self.floats {
            if let Ok(i) = i64::try_from(self.integer) {
                return Value::Number(Number::from(i));
            }
        }
        float(self.integer as f64 + self.float)
    }

    fn average(&self) -> Value {
        match self.count {
            0 => Value::Null,
            n => float((self.integer as f64 + self.float) / n as f64),
        }
    }
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// One accumulator's state in one group.
#[derive(Debug, Clone)]
enum Accumulated {
    Sum(Sum),
    Count(u64),
    /// `$push`, and `$addToSet` (with the keys of the values it holds).
    List {
        items: Vec<Value>,
        bytes: usize,
        seen: Option<HashSet<Vec<u8>>>,
    },
    /// `$min`, `$max`, `$first`, `$last`: the value so far.
    Held {
        value: Option<Value>,
        bytes: usize,
    },
}

impl Accumulated {
    fn bytes(&self) -> usize {
        match self {
            Accumulated::Sum(_) | Accumulated::Count(_) => 0,
            Accumulated::List { bytes, .. } | Accumulated::Held { bytes, .. } => *bytes,
        }
    }

    fn add(
        &mut self,
        accumulator: &Accumulator,
        value: Option<Value>,
        array_bytes_max: usize,
    ) -> Result<(), String> {
        match (self, accumulator) {
            (Accumulated::Sum(sum), _) => {
                if let Some(value) = &value {
                    sum.add(value);
                }
            }
            (Accumulated::Count(n), _) => *n += 1,
            (Accumulated::List { items, bytes, seen }, _) => {
                let Some(value) = value else { return Ok(()) };
                let mut added = json_bytes(&value) + 1;
                if let Some(seen) = seen {
                    let key = id_key(&value);
                    added += key.len();
                    if !seen.insert(key) {
                        return Ok(());
                    }
                }
                *bytes += added;
                if *bytes > array_bytes_max {
                    return Err(format!(
                        "{} array is over the limit of {array_bytes_max} bytes",
                        accumulator.operator()
                    ));
                }
                items.push(value);
            }
            (Accumulated::Held { value: held, bytes }, accumulator) => {
                let replace = match accumulator {
                    Accumulator::First(_) => held.is_none(),
                    Accumulator::Last(_) => true,
                    Accumulator::Min(_) | Accumulator::Max(_) => {
                        let Some(new) = value.as_ref().filter(|v| !v.is_null()) else {
                            return Ok(());
                        };
                        let wanted = if matches!(accumulator, Accumulator::Min(_)) {
                            std::cmp::Ordering::Less
                        } else {
                            std::cmp::Ordering::Greater
                        };
                        held.as_ref().is_none_or(|old| compare(new, old) == wanted)
                    }
                    _ => unreachable!("a held value is $min, $max, $first or $last's"),
                };
                if replace {
                    let new = value.unwrap_or(Value::Null);
                    *bytes = json_bytes(&new);
                    *held = Some(new);
                }
            }
        }
        Ok(())
    }

    fn result(self, accumulator: &Accumulator) -> Value {
        match (self, accumulator) {
            (Accumulated::Sum(sum), Accumulator::Avg(_)) => sum.average(),
            (Accumulated::Sum(sum), _) => sum.total(),
            (Accumulated::Count(n), _) => Value::Number(Number::from(n)),
            (Accumulated::List { items, .. }, _) => Value::Array(items),
            (Accumulated::Held { value, .. }, _) => value.unwrap_or(Value::Null),
        }
    }
}

/// A `$group`'s groups, in the order of their first document.
#[derive(Debug, Default)]
pub(super) struct Groups {
    /// A key's canonical bytes (`id_key`, so `1` and `1.0` are one group) -> its group.
    index: HashMap<Vec<u8>, usize>,
    groups: Vec<(Value, Vec<Accumulated>)>,
    bytes: usize,
}

impl Groups {
    pub(super) fn add(
        &mut self,
        group: &Group,
        document: &Value,
        limits: &Limits,
    ) -> Result<(), String> {
        let mut budget = Budget::new(limits.computed_bytes_max);
        let key = group.id.eval(document, &mut budget)?.unwrap_or(Value::Null);
        let canonical = id_key(&key);
        let at = match self.index.get(&canonical) {
            Some(&at) => at,
            None => {
                if self.groups.len() == limits.groups_max {
                    return Err(format!(
                        "more than {} groups (the limit of one $group)",
                        limits.groups_max
                    ));
                }
                self.bytes += json_bytes(&key) + canonical.len();
                self.index.insert(canonical, self.groups.len());
                let states = group.fields.iter().map(|(_, a)| a.start()).collect();
                self.groups.push((key, states));
                self.groups.len() - 1
            }
        };
        let states = &mut self.groups[at].1;
        for ((name, accumulator), state) in group.fields.iter().zip(states.iter_mut()) {
            let value = match accumulator.argument() {
                Some(expr) => expr.eval(document, &mut budget)?,
                None => None,
            };
            let before = state.bytes();
            state
                .add(accumulator, value, limits.computed_bytes_max)
                .map_err(|e| format!("'{name}': {e}"))?;
            self.bytes = self.bytes - before + state.bytes();
        }
        if self.bytes > limits.blocking_stage_bytes_max {
            return Err(format!(
                "the groups hold more than the limit of {} bytes",
                limits.blocking_stage_bytes_max
            ));
        }
        Ok(())
    }

    pub(super) fn finish(self, group: &Group, limits: &Limits) -> Result<Vec<Value>, String> {
        let mut out = Vec::with_capacity(self.groups.len());
        for (key, states) in self.groups {
            let mut document = Map::new();
            document.insert("_id".into(), key);
            for ((name, accumulator), state) in group.fields.iter().zip(states) {
                document.insert(name.clone(), state.result(accumulator));
            }
            let document = Value::Object(document);
            let bytes = json_bytes(&document);
            if bytes > limits.computed_bytes_max {
                return Err(format!(
                    "the group {} makes a document of {bytes} bytes, over the limit of {}",
                    shown(&document["_id"]),
                    limits.computed_bytes_max
                ));
            }
            out.push(document);
        }
        Ok(out)
    }
}
