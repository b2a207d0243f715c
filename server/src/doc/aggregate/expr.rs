//! Expressions: field paths (`"$a.b"`), `"$$ROOT"`, literals, `{$literal: v}`, and objects and
//! arrays of expressions; the paths stages read and write; and the size estimate the limits count
//! in.

use serde_json::{Map, Value};

use super::{path_parts, plain_name};
use crate::doc::filter::add_field;

/// An expression: what a `$project` field, a `$group` key or an accumulator computes.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expr {
    /// `"$a.b"`: the value at the path (see [`field`]).
    Field(Vec<String>),
    /// `"$$ROOT"`, `"$$CURRENT"`: the whole document.
    Root,
    Literal(Value),
    /// Fields whose value is missing are left out.
    Object(Vec<(String, Expr)>),
    /// Missing elements are null.
    Array(Vec<Expr>),
}

impl Expr {
    pub(super) fn parse(value: &Value) -> Result<Expr, String> {
        Ok(match value {
            Value::String(text) if text.starts_with("$$") => {
                let (variable, rest) = match text.split_once('.') {
                    Some((variable, rest)) => (variable, Some(rest)),
                    None => (text.as_str(), None),
                };
                if variable != "$$ROOT" && variable != "$$CURRENT" {
                    return Err(format!(
                        "unknown variable {variable} (only $$ROOT and $$CURRENT)"
                    ));
                }
                match rest {
                    Some(path) => Expr::Field(path_parts(path)?),
                    None => Expr::Root,
                }
            }
            Value::String(text) if text.starts_with('$') => Expr::Field(
                path_parts(&text[1..])
                    .map_err(|_| format!("'{text}' is not a valid field path"))?,
            ),
            Value::Object(fields) if fields.keys().any(|k| k.starts_with('$')) => {
                match fields.iter().next() {
                    Some((operator, literal)) if operator == "$literal" && fields.len() == 1 => {
                        Expr::Literal(literal.clone())
                    }
                    Some((operator, _)) if operator.starts_with('$') && fields.len() == 1 => {
                        return Err(format!(
                            "unknown expression operator {operator} (only field paths, literals \
                             and $literal so far)"
                        ))
                    }
                    _ => {
                        return Err(
                            "an expression object must be one operator, or plain fields".into()
                        )
                    }
                }
            }
            Value::Object(fields) => Expr::Object(
                fields
                    .iter()
                    .map(|(name, value)| {
                        plain_name(name, "a field name in an expression")?;
                        Ok((name.clone(), Expr::parse(value)?))
                    })
                    .collect::<Result<_, String>>()?,
            ),
            Value::Array(items) => {
                Expr::Array(items.iter().map(Expr::parse).collect::<Result<_, _>>()?)
            }
            literal => Expr::Literal(literal.clone()),
        })
    }

    /// Adds the first names of the paths the expression reads to `fields`; false when it
    /// reads the whole document (`$$ROOT`).
    pub(super) fn top_level_fields(&self, fields: &mut Vec<String>) -> bool {
        match self {
            Expr::Field(path) => {
                add_field(fields, &path[0]);
                true
            }
            Expr::Root => false,
            Expr::Literal(_) => true,
            Expr::Object(parts) => parts.iter().all(|(_, e)| e.top_level_fields(fields)),
            Expr::Array(items) => items.iter().all(|e| e.top_level_fields(fields)),
        }
    }

    /// The value for `document`, or `None` when missing. Each value taken from the document or
    /// the expression is charged to `budget` (bytes) as it is copied: the first over it stops
    /// the evaluation, so at most one value past the budget is ever copied.
    pub(super) fn eval(
        &self,
        document: &Value,
        budget: &mut Budget,
    ) -> Result<Option<Value>, String> {
        Ok(match self {
            Expr::Field(path) => match field(document, path) {
                Some(value) => Some(budget.charge(value)?),
                None => None,
            },
            Expr::Root => Some(budget.charge(document.clone())?),
            Expr::Literal(value) => {
                budget.spend(json_bytes(value))?;
                Some(value.clone())
            }
            Expr::Object(fields) => {
                let mut out = Map::new();
                for (name, expr) in fields {
                    if let Some(value) = expr.eval(document, budget)? {
                        out.insert(name.clone(), value);
                    }
                }
                Some(Value::Object(out))
            }
            Expr::Array(items) => Some(Value::Array(
                items
                    .iter()
                    .map(|item| Ok(item.eval(document, budget)?.unwrap_or(Value::Null)))
                    .collect::<Result<_, String>>()?,
            )),
        })
    }
}

/// Bytes left for what one stage computes from one document.
pub(super) struct Budget {
    left: usize,
    max: usize,
}

impl Budget {
    pub(super) fn new(max: usize) -> Budget {
        Budget { left: max, max }
    }

    pub(super) fn spend(&mut self, bytes: usize) -> Result<(), String> {
        self.left = self.left.checked_sub(bytes).ok_or_else(|| {
            format!(
                "the values computed from one document are over the limit of {} bytes",
                self.max
            )
        })?;
        Ok(())
    }

    pub(super) fn charge(&mut self, value: Value) -> Result<Value, String> {
        self.spend(json_bytes(&value))?;
        Ok(value)
    }
}

/// The value an expression's field path reaches, MongoDB's way: through objects by name, and
/// over an array, the array of what the rest of the path reaches in each element (elements
/// that reach nothing left out; a numeric part is a field name here, not an index). A copy;
/// `None` when missing.
fn field(value: &Value, path: &[String]) -> Option<Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(value.clone());
    };
    match value {
        Value::Object(map) => field(map.get(first)?, rest),
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .filter(|item| item.is_object() || item.is_array())
                .filter_map(|item| field(item, path))
                .collect(),
        )),
        _ => None,
    }
}

/// The value at a dotted path through objects only (what `$unwind` reads).
pub(super) fn nested<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |at, part| at.as_object()?.get(part))
}

/// Sets the value at a dotted path, making objects on the way (replacing non-objects).
pub(super) fn set_nested(value: &mut Value, path: &[String], new: Value) {
    let Some((last, parents)) = path.split_last() else {
        *value = new;
        return;
    };
    let mut at = value;
    for part in parents {
        let Value::Object(map) = at else {
            unreachable!("made an object below")
        };
        let slot = map
            .entry(part.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        at = slot;
    }
    if let Value::Object(map) = at {
        map.insert(last.clone(), new);
    }
}

/// Removes the value at a dotted path through objects.
pub(super) fn remove_nested(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = value;
    for part in parents {
        match at.as_object_mut().and_then(|map| map.get_mut(part)) {
            Some(next) => at = next,
            None => return,
        }
    }
    if let Value::Object(map) = at {
        map.shift_remove(last);
    }
}

/// The size of `value` as JSON text, estimated without printing it (a number counts 8 bytes).
pub(super) fn json_bytes(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 8,
        Value::String(text) => text.len() + 2,
        Value::Array(items) => 2 + items.iter().map(|v| json_bytes(v) + 1).sum::<usize>(),
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| k.len() + 4 + json_bytes(v))
                .sum::<usize>()
        }
    }
}

/// Takes the value at a dotted path through objects out, leaving null in its place.
pub(super) fn take_nested(value: &mut Value, path: &[String]) -> Option<Value> {
    path.iter()
        .try_fold(value, |at, part| at.as_object_mut()?.get_mut(part))
        .map(Value::take)
}

/// A value for a message, cut to its first 64 characters.
pub(super) fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text,
    }
}
