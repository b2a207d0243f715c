//! Update documents, MongoDB's: `$set $unset $inc $mul $min $max $rename $push` (with `$each`,
//! `$slice`) `$pull $addToSet` (with `$each`) `$currentDate`, or a whole replacement document
//! (no operator at the top). Parsed into an [`Update`] (refusals name the operator and the
//! path), then applied to a document; an update that would change `_id` is refused.

use std::fmt;

use serde_json::{Map, Number, Value};

use super::filter::Filter;
use super::order::{compare, equal};

/// Why an update was refused (the document is unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateError(pub String);

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn refuse(message: impl Into<String>) -> UpdateError {
    UpdateError(message.into())
}

/// One operation on one path.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Set(Value),
    Unset,
    Inc(Number),
    Mul(Number),
    Min(Value),
    Max(Value),
    Rename(String),
    Push {
        each: Vec<Value>,
        slice: Option<i64>,
    },
    Pull(PullWhat),
    AddToSet(Vec<Value>),
    CurrentDate,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PullWhat {
    Equal(Value),
    Conditions(Filter),
}

/// A parsed update.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Operators, each on a dotted path, applied in order.
    Operators(Vec<(String, Op)>),
    /// A whole new document (its `_id`, if any, must be the old one's).
    Replace(Map<String, Value>),
}

impl Update {
    pub fn parse(update: &Value) -> Result<Update, UpdateError> {
        let Value::Object(fields) = update else {
            return Err(refuse("an update must be a JSON object"));
        };
        if !fields.keys().any(|k| k.starts_with('$')) {
            return Ok(Update::Replace(fields.clone()));
        }
        let mut ops = Vec::new();
        for (operator, operand) in fields {
            let Value::Object(paths) = operand else {
                return Err(refuse(format!("{operator} needs an object of paths")));
            };
            for (path, argument) in paths {
                if path.is_empty() || path.split('.').any(str::is_empty) {
                    return Err(refuse(format!("{operator}: '{path}' is not a path")));
                }
                let number = || match argument {
                    Value::Number(n) => Ok(n.clone()),
                    _ => Err(refuse(format!("{operator} of '{path}' needs a number"))),
                };
                let op = match operator.as_str() {
                    "$set" => Op::Set(argument.clone()),
                    "$unset" => Op::Unset,
                    "$inc" => Op::Inc(number()?),
                    "$mul" => Op::Mul(number()?),
                    "$min" => Op::Min(argument.clone()),
                    "$max" => Op::Max(argument.clone()),
                    "$rename" => match argument {
                        Value::String(to) if !to.is_empty() && to != path => Op::Rename(to.clone()),
                        _ => return Err(refuse(format!("$rename of '{path}' needs another path"))),
                    },
                    "$push" => parse_push(path, argument)?,
                    "$addToSet" => Op::AddToSet(match each(argument) {
                        Some(items) => items?,
                        None => vec![argument.clone()],
                    }),
                    "$pull" => Op::Pull(match argument {
                        Value::Object(map)
                            if map.keys().next().is_some_and(|k| k.starts_with('$')) =>
                        {
                            // `{$pull: {scores: {$gte: 6}}}`: conditions on each element.
                            let wrapped = serde_json::json!({ "v": argument });
                            PullWhat::Conditions(
                                Filter::parse(&wrapped).map_err(|e| {
                                    refuse(format!("$pull of '{path}': {}", e.message))
                                })?,
                            )
                        }
                        Value::Object(_) => PullWhat::Conditions(
                            Filter::parse(argument)
                                .map_err(|e| refuse(format!("$pull of '{path}': {}", e.message)))?,
                        ),
                        other => PullWhat::Equal(other.clone()),
                    }),
                    "$currentDate" => Op::CurrentDate,
                    other => return Err(refuse(format!("unknown update operator {other}"))),
                };
                if path == "_id" || path.starts_with("_id.") {
                    return Err(refuse(format!("{operator} would change _id")));
                }
                ops.push((path.clone(), op));
            }
        }
        // MongoDB refuses two operators on one path (or a path inside another's).
        for (i, (a, _)) in ops.iter().enumerate() {
            for (b, _) in &ops[..i] {
                if a == b || a.starts_with(&format!("{b}.")) || b.starts_with(&format!("{a}.")) {
                    return Err(refuse(format!(
                        "updating the path '{a}' would create a conflict at '{b}'"
                    )));
                }
            }
        }
        Ok(Update::Operators(ops))
    }

    /// Applies the update to `document` (an object), with `now_ms` for `$currentDate`.
    /// Returns whether anything changed; on a refusal the document is unchanged.
    pub fn apply(&self, document: &mut Value, now_ms: u64) -> Result<bool, UpdateError> {
        let mut next = document.clone();
        match self {
            Update::Replace(fields) => {
                let Value::Object(old) = &next else {
                    return Err(refuse("a document must be an object"));
                };
                let id = old.get("_id").cloned();
                if let (Some(new_id), Some(old_id)) = (fields.get("_id"), &id) {
                    if !equal(new_id, old_id) {
                        return Err(refuse("a replacement would change _id"));
                    }
                }
                let mut replaced = Map::new();
                if let Some(id) = id {
                    replaced.insert("_id".into(), id);
                }
                for (k, v) in fields {
                    if k != "_id" {
                        replaced.insert(k.clone(), v.clone());
                    }
                }
                next = Value::Object(replaced);
            }
            Update::Operators(ops) => {
                for (path, op) in ops {
                    apply_op(&mut next, path, op, now_ms)?;
                }
            }
        }
        let changed = next != *document;
        *document = next;
        Ok(changed)
    }
}

fn each(argument: &Value) -> Option<Result<Vec<Value>, UpdateError>> {
    let Value::Object(map) = argument else {
        return None;
    };
    let items = map.get("$each")?;
    Some(match items {
        Value::Array(items) => Ok(items.clone()),
        _ => Err(refuse("$each needs an array")),
    })
}

fn parse_push(path: &str, argument: &Value) -> Result<Op, UpdateError> {
    let Some(items) = each(argument) else {
        return Ok(Op::Push {
            each: vec![argument.clone()],
            slice: None,
        });
    };
    let slice = match argument.get("$slice") {
        None => None,
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
        Some(_) => {
            return Err(refuse(format!(
                "$push of '{path}': $slice needs an integer"
            )))
        }
    };
    if let Value::Object(map) = argument {
        if let Some(other) = map.keys().find(|k| *k != "$each" && *k != "$slice") {
            return Err(refuse(format!(
                "$push of '{path}': {other} is not supported"
            )));
        }
    }
    Ok(Op::Push {
        each: items?,
        slice,
    })
}

/// The parent object of `path`'s last part, creating objects on the way when `create`.
fn parent<'a>(
    document: &'a mut Value,
    parts: &[&str],
    create: bool,
    path: &str,
) -> Result<Option<&'a mut Value>, UpdateError> {
    let mut at = document;
    for part in parts {
        let next = match at {
            Value::Object(map) => {
                if !map.contains_key(*part) {
                    if !create {
                        return Ok(None);
                    }
                    map.insert(part.to_string(), Value::Object(Map::new()));
                }
                map.get_mut(*part).expect("present")
            }
            Value::Array(items) => match part.parse::<usize>() {
                Ok(i) if i < items.len() => &mut items[i],
                _ if !create => return Ok(None),
                _ => {
                    return Err(refuse(format!(
                        "cannot create field '{part}' in the array at '{path}'"
                    )))
                }
            },
            _ if !create => return Ok(None),
            _ => {
                return Err(refuse(format!(
                    "cannot create field '{part}' in a non-object at '{path}'"
                )))
            }
        };
        at = next;
    }
    Ok(Some(at))
}

fn get_mut<'a>(parent: &'a mut Value, last: &str) -> Option<&'a mut Value> {
    match parent {
        Value::Object(map) => map.get_mut(last),
        Value::Array(items) => last.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    }
}

fn set(parent: &mut Value, last: &str, value: Value, path: &str) -> Result<(), UpdateError> {
    match parent {
        Value::Object(map) => {
            map.insert(last.to_string(), value);
            Ok(())
        }
        Value::Array(items) => match last.parse::<usize>() {
            Ok(i) => {
                while items.len() <= i {
                    items.push(Value::Null);
                }
                items[i] = value;
                Ok(())
            }
            Err(_) => Err(refuse(format!(
                "cannot set field '{last}' in the array at '{path}'"
            ))),
        },
        _ => Err(refuse(format!(
            "cannot set '{path}': its parent is not an object"
        ))),
    }
}

fn arith(a: &Number, b: &Number, multiply: bool) -> Number {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        let r = if multiply {
            x.checked_mul(y)
        } else {
            x.checked_add(y)
        };
        if let Some(r) = r {
            return r.into();
        }
    }
    let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
    Number::from_f64(if multiply { x * y } else { x + y }).unwrap_or_else(|| 0.into())
}

fn apply_op(document: &mut Value, path: &str, op: &Op, now_ms: u64) -> Result<(), UpdateError> {
    let parts: Vec<&str> = path.split('.').collect();
    let (last, init) = parts.split_last().expect("a path has a part");
    if let Op::Unset = op {
        if let Some(parent) = parent(document, init, false, path)? {
            match parent {
                Value::Object(map) => {
                    map.shift_remove(*last);
                }
                Value::Array(items) => {
                    if let Ok(i) = last.parse::<usize>() {
                        if i < items.len() {
                            items[i] = Value::Null; // MongoDB leaves a null in the array
                        }
                    }
                }
                _ => {}
            }
        }
        return Ok(());
    }
    if let Op::Rename(to) = op {
        let taken = match parent(document, init, false, path)? {
            Some(Value::Object(map)) => map.shift_remove(*last),
            _ => None,
        };
        if let Some(value) = taken {
            return apply_op(document, to, &Op::Set(value), now_ms);
        }
        return Ok(());
    }
    let parent = parent(document, init, true, path)?.expect("created");
    let current = get_mut(parent, last).map(|v| v.clone());
    let new = match op {
        Op::Set(value) => value.clone(),
        Op::CurrentDate => Value::Number(now_ms.into()),
        Op::Inc(n) | Op::Mul(n) => {
            let multiply = matches!(op, Op::Mul(_));
            match &current {
                None => Value::Number(if multiply { 0.into() } else { n.clone() }),
                Some(Value::Number(old)) => Value::Number(arith(old, n, multiply)),
                Some(_) => return Err(refuse(format!("cannot apply {} to the non-number at '{path}'", if multiply { "$mul" } else { "$inc" }))),
            }
        }
        Op::Min(value) | Op::Max(value) => match &current {
            None => value.clone(),
            Some(old) => {
                let order = compare(value, old);
                let replace = if matches!(op, Op::Min(_)) { order.is_lt() } else { order.is_gt() };
                if replace { value.clone() } else { old.clone() }
            }
        },
        Op::Push { each, slice } => {
            let mut items = match current {
                None => Vec::new(),
                Some(Value::Array(items)) => items,
                Some(_) => return Err(refuse(format!("$push to the non-array at '{path}'"))),
            };
            items.extend(each.iter().cloned());
            if let Some(slice) = *slice {
                if slice >= 0 {
                    items.truncate(slice as usize);
                } else {
                    let keep = slice.unsigned_abs() as usize;
                    let drop = items.len().saturating_sub(keep);
                    items.drain(..drop);
                }
            }
            Value::Array(items)
        }
        Op::AddToSet(values) => {
            let mut items = match current {
                None => Vec::new(),
                Some(Value::Array(items)) => items,
                Some(_) => return Err(refuse(format!("$addToSet to the non-array at '{path}'"))),
            };
            for value in values {
                if !items.iter().any(|item| equal(item, value)) {
                    items.push(value.clone());
                }
            }
            Value::Array(items)
        }
        Op::Pull(what) => match current {
            None => return Ok(()),
            Some(Value::Array(items)) => Value::Array(
                items
                    .into_iter()
                    .filter(|item| match what {
                        PullWhat::Equal(value) => !equal(item, value),
                        PullWhat::Conditions(filter) => {
                            let probe = serde_json::json!({ "v": item });
                            let as_value = matches!(filter, Filter::Path { path, .. } if path.len() == 1 && path[0] == "v");
                            !(if as_value { filter.matches(&probe) } else { item.is_object() && filter.matches(item) })
                        }
                    })
                    .collect(),
            ),
            Some(_) => return Err(refuse(format!("$pull from the non-array at '{path}'"))),
        },
        Op::Unset | Op::Rename(_) => unreachable!("handled above"),
    };
    set(parent, last, new, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn updated(document: Value, update: Value) -> Value {
        let mut document = document;
        Update::parse(&update)
            .unwrap()
            .apply(&mut document, 1_700_000_000_000)
            .unwrap();
        document
    }

    #[test]
    fn operators_update_as_the_mongodb_manual_describes() {
        let doc = json!({"_id": 1, "qty": 5, "size": {"h": 10}, "tags": ["a", "b"], "scores": [1, 5, 8, 9]});
        assert_eq!(
            updated(doc.clone(), json!({"$set": {"size.w": 3, "item": "x"}}))["size"],
            json!({"h": 10, "w": 3})
        );
        assert_eq!(
            updated(doc.clone(), json!({"$unset": {"size.h": ""}}))["size"],
            json!({})
        );
        assert_eq!(
            updated(doc.clone(), json!({"$inc": {"qty": -2, "new": 3}})),
            json!({"_id": 1, "qty": 3, "size": {"h": 10}, "tags": ["a", "b"], "scores": [1, 5, 8, 9], "new": 3})
        );
        assert_eq!(
            updated(doc.clone(), json!({"$inc": {"qty": 0.5}}))["qty"],
            json!(5.5)
        );
        assert_eq!(
            updated(doc.clone(), json!({"$mul": {"qty": 3, "missing": 4}}))["missing"],
            json!(0)
        );
        assert_eq!(
            updated(doc.clone(), json!({"$min": {"qty": 2}}))["qty"],
            json!(2)
        );
        assert_eq!(
            updated(doc.clone(), json!({"$max": {"qty": 2}}))["qty"],
            json!(5)
        );
        assert_eq!(
            updated(doc.clone(), json!({"$rename": {"qty": "quantity"}}))["quantity"],
            json!(5)
        );
        assert_eq!(
            updated(doc.clone(), json!({"$push": {"tags": "c"}}))["tags"],
            json!(["a", "b", "c"])
        );
        assert_eq!(
            updated(
                doc.clone(),
                json!({"$push": {"tags": {"$each": ["c", "d"], "$slice": -3}}})
            )["tags"],
            json!(["b", "c", "d"])
        );
        assert_eq!(
            updated(
                doc.clone(),
                json!({"$addToSet": {"tags": {"$each": ["a", "z"]}}})
            )["tags"],
            json!(["a", "b", "z"])
        );
        assert_eq!(
            updated(doc.clone(), json!({"$pull": {"scores": {"$gte": 6}}}))["scores"],
            json!([1, 5])
        );
        assert_eq!(
            updated(doc.clone(), json!({"$pull": {"tags": "a"}}))["tags"],
            json!(["b"])
        );
        assert_eq!(
            updated(doc.clone(), json!({"$currentDate": {"at": true}}))["at"],
            json!(1_700_000_000_000u64)
        );
        assert_eq!(
            updated(doc.clone(), json!({"x": 1})),
            json!({"_id": 1, "x": 1}),
            "replacement keeps _id"
        );
        let items = json!({"_id": 2, "items": [{"p": "a", "n": 1}, {"p": "b", "n": 2}]});
        assert_eq!(
            updated(items, json!({"$pull": {"items": {"p": "a"}}}))["items"],
            json!([{"p": "b", "n": 2}])
        );
    }

    #[test]
    fn refusals_change_nothing_and_name_what() {
        let refused = |update: Value| Update::parse(&update).unwrap_err().to_string();
        assert_eq!(
            refused(json!({"$set": {"_id": 2}})),
            "$set would change _id"
        );
        assert_eq!(
            refused(json!({"$inc": {"a": "x"}})),
            "$inc of 'a' needs a number"
        );
        assert_eq!(
            refused(json!({"$foo": {"a": 1}})),
            "unknown update operator $foo"
        );
        assert_eq!(
            refused(json!({"$set": {"a": 1}, "$inc": {"a.b": 1}})),
            "updating the path 'a.b' would create a conflict at 'a'"
        );
        let mut doc = json!({"_id": 1, "a": "text"});
        let before = doc.clone();
        let update = Update::parse(&json!({"$set": {"b": 1}, "$inc": {"a": 1}})).unwrap();
        assert!(update.apply(&mut doc, 0).is_err());
        assert_eq!(
            doc, before,
            "a refused update leaves the document as it was"
        );
        let replace = Update::parse(&json!({"_id": 9, "x": 1})).unwrap();
        assert!(replace.apply(&mut doc, 0).is_err());
    }
}
