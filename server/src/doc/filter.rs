//! Query filters, MongoDB's: `{ path: value }` equality, `{ path: { $op: operand } }`
//! conditions, and `$and`, `$or`, `$nor` of filters. Parsed once into a [`Filter`] (every
//! refusal names the operator and the path), then matched against documents.
//!
//! Matching follows MongoDB:
//! - A dotted path reaches into nested objects; on an array it reaches into each element
//!   (`tags.name` over `tags: [{name: "a"}, {name: "b"}]` yields both), and a numeric part
//!   indexes an array (`tags.0`).
//! - A condition holds if it holds for the value at the path, or, when that value is an array,
//!   for any of its elements (`{tags: "a"}` matches `tags: ["a", "b"]`); `$size`, `$all`,
//!   `$elemMatch` and `$type: "array"` look at the array itself.
//! - Comparisons bracket by type: `{$gt: 5}` matches numbers above 5, never strings (the order
//!   across types is `order`'s, used by equality and sorting).
//! - A missing field equals `null`; `$ne`, `$nin` and `$not` match a missing field, `$exists:
//!   false` matches only a missing one.
//!
//! Not yet: `$regex` (it needs a regular-expression engine; the regex crate is the candidate,
//! with a line in docs/dependencies.md), `$where`, geospatial and text operators.

use std::fmt;

use serde_json::{Map, Value};

use super::order::{compare, equal, type_rank};

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// The path (or `$and` ...) the problem is at, empty at the top.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path.is_empty() {
            true => f.write_str(&self.message),
            false => write!(f, "{} (at '{}')", self.message, self.path),
        }
    }
}

fn error(path: &str, message: impl Into<String>) -> FilterError {
    FilterError {
        path: path.to_string(),
        message: message.into(),
    }
}

/// A type `$type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    Double,
    String,
    Object,
    Array,
    Bool,
    Null,
    /// A 32-bit integer.
    Int,
    /// A 64-bit integer outside 32 bits.
    Long,
    /// Any number.
    Number,
}

impl JsonType {
    fn parse(operand: &Value, path: &str) -> Result<JsonType, FilterError> {
        let name = match operand {
            Value::String(name) => name.as_str(),
            // BSON's type numbers for the types JSON has.
            Value::Number(n) => match n.as_i64() {
                Some(1) => "double",
                Some(2) => "string",
                Some(3) => "object",
                Some(4) => "array",
                Some(8) => "bool",
                Some(10) => "null",
                Some(16) => "int",
                Some(18) => "long",
                _ => return Err(error(path, format!("$type: unknown type number {n}"))),
            },
            _ => return Err(error(path, "$type needs a type name or number")),
        };
        Ok(match name {
            "double" => JsonType::Double,
            "string" => JsonType::String,
            "object" => JsonType::Object,
            "array" => JsonType::Array,
            "bool" => JsonType::Bool,
            "null" => JsonType::Null,
            "int" => JsonType::Int,
            "long" => JsonType::Long,
            "number" => JsonType::Number,
            other => return Err(error(path, format!("$type: unknown type '{other}'"))),
        })
    }

    fn holds(self, value: &Value) -> bool {
        match (self, value) {
            (JsonType::Null, Value::Null)
            | (JsonType::Bool, Value::Bool(_))
            | (JsonType::String, Value::String(_))
            | (JsonType::Object, Value::Object(_))
            | (JsonType::Array, Value::Array(_))
            | (JsonType::Number, Value::Number(_)) => true,
            (JsonType::Double, Value::Number(n)) => n.is_f64(),
            (JsonType::Int, Value::Number(n)) => {
                n.as_i64().is_some_and(|i| i32::try_from(i).is_ok())
            }
            (JsonType::Long, Value::Number(n)) => {
                !n.is_f64() && n.as_i64().is_none_or(|i| i32::try_from(i).is_err())
            }
            _ => false,
        }
    }
}

/// A condition on the value at one path.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Type(Vec<JsonType>),
    Size(usize),
    All(Vec<Value>),
    /// Elements matching a filter (objects) or these conditions (values).
    ElemMatch(Box<ElemMatch>),
    Not(Vec<Condition>),
}

/// What `$elemMatch` applies to each element.
#[derive(Debug, Clone, PartialEq)]
pub enum ElemMatch {
    /// `{$elemMatch: {$gte: 80, $lt: 85}}`: conditions on the element itself.
    Value(Vec<Condition>),
    /// `{$elemMatch: {product: "xyz", score: {$gte: 8}}}`: a filter on an element object.
    Document(Filter),
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every part holds (a filter document's fields, `$and`).
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Nor(Vec<Filter>),
    /// Conditions on a dotted path, all of which must hold.
    Path {
        path: Vec<String>,
        conditions: Vec<Condition>,
    },
}

impl Filter {
    /// Parses a filter document.
    pub fn parse(filter: &Value) -> Result<Filter, FilterError> {
        let Value::Object(fields) = filter else {
            return Err(error("", "a filter must be a JSON object"));
        };
        parse_document(fields)
    }

    /// Whether `document` matches.
    pub fn matches(&self, document: &Value) -> bool {
        match self {
            Filter::And(parts) => parts.iter().all(|p| p.matches(document)),
            Filter::Or(parts) => parts.iter().any(|p| p.matches(document)),
            Filter::Nor(parts) => !parts.iter().any(|p| p.matches(document)),
            Filter::Path { path, conditions } => {
                let parts: Vec<&str> = path.iter().map(String::as_str).collect();
                let mut found = Vec::new();
                collect(document, &parts, &mut found);
                conditions.iter().all(|c| c.holds(&found))
            }
        }
    }
}

fn parse_document(fields: &Map<String, Value>) -> Result<Filter, FilterError> {
    let mut parts = Vec::with_capacity(fields.len());
    for (key, value) in fields {
        parts.push(match key.as_str() {
            "$and" | "$or" | "$nor" => {
                let Value::Array(items) = value else {
                    return Err(error(
                        key,
                        format!("{key} needs a non-empty array of filters"),
                    ));
                };
                if items.is_empty() {
                    return Err(error(
                        key,
                        format!("{key} needs a non-empty array of filters"),
                    ));
                }
                let filters = items
                    .iter()
                    .map(|item| {
                        Filter::parse(item).map_err(|e| FilterError {
                            path: if e.path.is_empty() {
                                key.clone()
                            } else {
                                e.path
                            },
                            message: e.message,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                match key.as_str() {
                    "$and" => Filter::And(filters),
                    "$or" => Filter::Or(filters),
                    _ => Filter::Nor(filters),
                }
            }
            op if op.starts_with('$') => {
                return Err(error("", format!("unknown top-level operator {op}")))
            }
            path => Filter::Path {
                path: path.split('.').map(str::to_string).collect(),
                conditions: parse_conditions(value, path)?,
            },
        });
    }
    Ok(match parts.len() {
        1 => parts.pop().expect("one"),
        _ => Filter::And(parts),
    })
}

/// Whether `value` is an operator document (`{$gt: 1, ...}`): an object whose first key
/// starts with `$`.
fn is_operator_document(value: &Value) -> bool {
    matches!(value, Value::Object(map) if map.keys().next().is_some_and(|k| k.starts_with('$')))
}

fn parse_conditions(value: &Value, path: &str) -> Result<Vec<Condition>, FilterError> {
    if !is_operator_document(value) {
        return Ok(vec![Condition::Eq(value.clone())]);
    }
    let Value::Object(ops) = value else {
        unreachable!("an operator document is an object")
    };
    ops.iter()
        .map(|(op, operand)| parse_operator(op, operand, path))
        .collect()
}

fn array_operand<'a>(
    op: &str,
    operand: &'a Value,
    path: &str,
) -> Result<&'a Vec<Value>, FilterError> {
    match operand {
        Value::Array(items) => Ok(items),
        _ => Err(error(path, format!("{op} needs an array"))),
    }
}

fn parse_operator(op: &str, operand: &Value, path: &str) -> Result<Condition, FilterError> {
    Ok(match op {
        "$eq" => Condition::Eq(operand.clone()),
        "$ne" => Condition::Ne(operand.clone()),
        "$gt" => Condition::Gt(operand.clone()),
        "$gte" => Condition::Gte(operand.clone()),
        "$lt" => Condition::Lt(operand.clone()),
        "$lte" => Condition::Lte(operand.clone()),
        "$in" => Condition::In(array_operand(op, operand, path)?.clone()),
        "$nin" => Condition::Nin(array_operand(op, operand, path)?.clone()),
        "$all" => Condition::All(array_operand(op, operand, path)?.clone()),
        "$exists" => Condition::Exists(match operand {
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::Null => false,
            _ => true,
        }),
        "$type" => Condition::Type(match operand {
            Value::Array(names) => names
                .iter()
                .map(|n| JsonType::parse(n, path))
                .collect::<Result<_, _>>()?,
            one => vec![JsonType::parse(one, path)?],
        }),
        "$size" => match operand.as_u64() {
            Some(n) => Condition::Size(n as usize),
            None => return Err(error(path, "$size needs a non-negative integer")),
        },
        "$elemMatch" => {
            let Value::Object(fields) = operand else {
                return Err(error(path, "$elemMatch needs an object"));
            };
            Condition::ElemMatch(Box::new(if is_operator_document(operand) {
                ElemMatch::Value(parse_conditions(operand, path)?)
            } else {
                ElemMatch::Document(parse_document(fields)?)
            }))
        }
        "$not" => {
            if !is_operator_document(operand) {
                return Err(error(path, "$not needs an operator expression"));
            }
            Condition::Not(parse_conditions(operand, path)?)
        }
        "$regex" | "$options" => {
            return Err(error(path, format!("{op} is not supported yet")));
        }
        other => return Err(error(path, format!("unknown operator {other}"))),
    })
}

/// Every value a dotted path reaches in `value` (see the module doc).
fn collect<'a>(value: &'a Value, path: &[&str], out: &mut Vec<&'a Value>) {
    let Some((first, rest)) = path.split_first() else {
        out.push(value);
        return;
    };
    match value {
        Value::Object(map) => {
            if let Some(next) = map.get(*first) {
                collect(next, rest, out);
            }
        }
        Value::Array(items) => {
            if let Ok(index) = first.parse::<usize>() {
                if let Some(item) = items.get(index) {
                    collect(item, rest, out);
                }
            }
            for item in items {
                if item.is_object() {
                    collect(item, path, out);
                }
            }
        }
        _ => {}
    }
}

/// Whether `value`, or any element when it is an array, satisfies `test`.
fn any_value(found: &[&Value], test: impl Fn(&Value) -> bool) -> bool {
    found
        .iter()
        .any(|v| test(v) || matches!(v, Value::Array(items) if items.iter().any(&test)))
}

/// Type bracketing: a range condition only compares values of the operand's type.
fn bracketed(value: &Value, operand: &Value, want: impl Fn(std::cmp::Ordering) -> bool) -> bool {
    type_rank(value) == type_rank(operand) && want(compare(value, operand))
}

impl Condition {
    /// Whether the condition holds for the values the path reached (`found` empty: missing).
    fn holds(&self, found: &[&Value]) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Condition::Eq(operand) => eq(found, operand),
            Condition::Ne(operand) => !eq(found, operand),
            Condition::Gt(o) => any_value(found, |v| bracketed(v, o, |c| c == Greater)),
            Condition::Gte(o) => any_value(found, |v| bracketed(v, o, |c| c != Less)),
            Condition::Lt(o) => any_value(found, |v| bracketed(v, o, |c| c == Less)),
            Condition::Lte(o) => any_value(found, |v| bracketed(v, o, |c| c != Greater)),
            Condition::In(operands) => operands.iter().any(|o| eq(found, o)),
            Condition::Nin(operands) => !operands.iter().any(|o| eq(found, o)),
            Condition::Exists(wanted) => found.is_empty() != *wanted,
            Condition::Type(types) => found.iter().any(|v| {
                types.iter().any(|t| t.holds(v))
                    || matches!(v, Value::Array(items) if items.iter().any(|e| types.iter().any(|t| t.holds(e))))
            }),
            Condition::Size(n) => found
                .iter()
                .any(|v| matches!(v, Value::Array(items) if items.len() == *n)),
            Condition::All(operands) => {
                !operands.is_empty() && operands.iter().all(|o| eq(found, o))
            }
            Condition::ElemMatch(inner) => found.iter().any(|v| {
                let Value::Array(items) = v else { return false };
                items.iter().any(|item| match inner.as_ref() {
                    ElemMatch::Value(conditions) => conditions.iter().all(|c| c.holds(&[item])),
                    ElemMatch::Document(filter) => item.is_object() && filter.matches(item),
                })
            }),
            Condition::Not(conditions) => !conditions.iter().all(|c| c.holds(found)),
        }
    }
}

/// Equality: the value or any element equals the operand; `null` also matches a missing path.
fn eq(found: &[&Value], operand: &Value) -> bool {
    if operand.is_null() && found.is_empty() {
        return true;
    }
    any_value(found, |v| equal(v, operand))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn matches(filter: Value, document: Value) -> bool {
        Filter::parse(&filter).unwrap().matches(&document)
    }

    /// Examples after MongoDB's manual, operator by operator (written from its semantics).
    #[test]
    fn operators_match_as_the_mongodb_manual_describes() {
        let inventory = json!({"item": "journal", "qty": 25, "tags": ["blank", "red"],
            "size": {"h": 14, "w": 21, "uom": "cm"}, "dim": [14, 21],
            "instock": [{"warehouse": "A", "qty": 5}, {"warehouse": "C", "qty": 15}]});
        let cases = [
            (json!({"item": "journal"}), true),
            (json!({"qty": {"$eq": 25}}), true),
            (json!({"qty": 25.0}), true),
            (json!({"tags": "red"}), true),
            (json!({"tags": ["blank", "red"]}), true),
            (json!({"tags": ["red", "blank"]}), false),
            (json!({"size": {"h": 14, "w": 21, "uom": "cm"}}), true),
            (json!({"size": {"w": 21, "h": 14, "uom": "cm"}}), false),
            (json!({"size.uom": "cm"}), true),
            (json!({"qty": {"$gt": 20, "$lte": 25}}), true),
            (json!({"qty": {"$gt": "20"}}), false),
            (json!({"dim": {"$gt": 15, "$lt": 20}}), true),
            (
                json!({"dim": {"$elemMatch": {"$gt": 15, "$lt": 20}}}),
                false,
            ),
            (json!({"dim.1": {"$gt": 20}}), true),
            (json!({"dim": {"$size": 2}}), true),
            (json!({"tags": {"$all": ["red", "blank"]}}), true),
            (json!({"tags": {"$all": ["red", "plain"]}}), false),
            (json!({"tags": {"$in": ["plain", "red"]}}), true),
            (json!({"tags": {"$nin": ["plain", "red"]}}), false),
            (json!({"qty": {"$ne": 25}}), false),
            (json!({"missing": null}), true),
            (json!({"missing": {"$exists": false}}), true),
            (json!({"qty": {"$exists": true}}), true),
            (json!({"missing": {"$ne": 1}}), true),
            (json!({"instock.qty": 5}), true),
            (json!({"instock": {"warehouse": "A", "qty": 5}}), true),
            (json!({"instock": {"qty": 5, "warehouse": "A"}}), false),
            (
                json!({"instock": {"$elemMatch": {"qty": 5, "warehouse": "A"}}}),
                true,
            ),
            (
                json!({"instock": {"$elemMatch": {"qty": {"$gt": 10}, "warehouse": "A"}}}),
                false,
            ),
            (json!({"instock.qty": {"$gt": 10, "$lte": 20}}), true),
            (json!({"instock.0.warehouse": "A"}), true),
            (
                json!({"$or": [{"qty": {"$lt": 10}}, {"item": "journal"}]}),
                true,
            ),
            (
                json!({"$nor": [{"qty": {"$lt": 10}}, {"item": "journal"}]}),
                false,
            ),
            (
                json!({"$and": [{"qty": {"$gte": 25}}, {"tags": "blank"}]}),
                true,
            ),
            (json!({"qty": {"$not": {"$gt": 30}}}), true),
            (json!({"missing": {"$not": {"$gt": 30}}}), true),
            (json!({"qty": {"$type": "int"}}), true),
            (json!({"qty": {"$type": "double"}}), false),
            (json!({"qty": {"$type": "number"}}), true),
            (json!({"tags": {"$type": "array"}}), true),
            (json!({"tags": {"$type": "string"}}), true),
            (json!({"size": {"$type": 3}}), true),
        ];
        for (filter, expected) in cases {
            assert_eq!(
                matches(filter.clone(), inventory.clone()),
                expected,
                "{filter}"
            );
        }
    }

    #[test]
    fn refusals_name_the_operator_and_the_path() {
        let refused = |filter: Value| Filter::parse(&filter).unwrap_err().to_string();
        assert_eq!(
            refused(json!({"a": {"$foo": 1}})),
            "unknown operator $foo (at 'a')"
        );
        assert_eq!(
            refused(json!({"a": {"$in": 1}})),
            "$in needs an array (at 'a')"
        );
        assert_eq!(
            refused(json!({"$or": []})),
            "$or needs a non-empty array of filters (at '$or')"
        );
        assert_eq!(
            refused(json!({"$where": "x"})),
            "unknown top-level operator $where"
        );
        assert_eq!(
            refused(json!({"a": {"$size": -1}})),
            "$size needs a non-negative integer (at 'a')"
        );
        assert_eq!(
            refused(json!({"a": {"$not": 5}})),
            "$not needs an operator expression (at 'a')"
        );
        assert_eq!(
            refused(json!({"a": {"$type": "decimal"}})),
            "$type: unknown type 'decimal' (at 'a')"
        );
        assert_eq!(refused(json!([1])), "a filter must be a JSON object");
        assert_eq!(
            refused(json!({"$and": [{"b": {"$gt": {"$x": 1}}}, 5]})),
            "a filter must be a JSON object (at '$and')"
        );
    }

    /// Against a naive evaluator on random small documents: `$gt`/`$lt` on a scalar field are
    /// the order's comparisons within the type, and `$in` is any equality.
    #[test]
    fn ranges_and_in_agree_with_the_order_on_random_values() {
        let pool = [
            json!(null),
            json!(1),
            json!(2.5),
            json!(-3),
            json!("a"),
            json!("b"),
            json!(true),
            json!([1, 2]),
            json!({"x": 1}),
        ];
        for v in &pool {
            for o in &pool {
                let doc = json!({"f": v});
                let gt = matches(json!({"f": {"$gt": o}}), doc.clone());
                let naive = |w: &Value| type_rank(w) == type_rank(o) && compare(w, o).is_gt();
                let expected =
                    naive(v) || matches!(v, Value::Array(items) if items.iter().any(naive));
                assert_eq!(gt, expected, "{v} $gt {o}");
                let inn = matches(json!({"f": {"$in": [o, "zzz"]}}), doc.clone());
                let naive_eq = |w: &Value| equal(w, o);
                let expected =
                    naive_eq(v) || matches!(v, Value::Array(items) if items.iter().any(naive_eq));
                assert_eq!(inn, expected, "{v} $in [{o}]");
            }
        }
    }
}
