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
//! - `{path: {$regex: "pattern", $options: "imsx"}}` matches a string, or an array holding a
//!   string, that the pattern finds a match in (anywhere, unless anchored); never a number,
//!   object or other non-string. Options: `i` case-insensitive, `m` `^`/`$` at line ends, `s` `.`
//!   matches a newline, `x` whitespace and `#` comments in the pattern ignored, `u` accepted and
//!   redundant (patterns are Unicode), as MongoDB's. `$not: {$regex: ...}` matches the rest,
//!   missing fields included. A bad pattern or option is refused with the path and the pattern.
//!
//! Patterns are the regex crate's syntax, which is PCRE's (MongoDB's engine) less lookaround and
//! backreferences, refused as bad patterns. Two differences remain: without `m`, PCRE's `$` also
//! matches before a final newline and ours does not; `\w`, `\d`, `\s` and `\b` are Unicode-aware
//! here and ASCII in PCRE (unless its UCP flag is set).
//!
//! Limits, so a client cannot make the server compile unbounded automata: a pattern is at most
//! [`REGEX_PATTERN_BYTES_MAX`] bytes and compiles to at most [`REGEX_COMPILED_BYTES_MAX`] (a
//! Unicode `\w` is about 50 KB, so `\w{20}` fits and `\w{50}` does not), its lazy automaton's
//! cache is at most [`REGEX_CACHE_BYTES_MAX`], and one filter holds at most [`REGEXES_MAX`]
//! patterns: about 64 MiB at worst per filter.
//!
//! Not yet: `$where`, geospatial and text operators.

use std::fmt;

use serde_json::{Map, Value};

use super::order::{compare, equal, type_rank};

/// The longest `$regex` pattern accepted, in bytes.
pub const REGEX_PATTERN_BYTES_MAX: usize = 32 << 10;
/// The most one compiled pattern may take (the regex crate's `size_limit`; its default is 10 MiB).
pub const REGEX_COMPILED_BYTES_MAX: usize = 1 << 20;
/// The most one pattern's lazy DFA cache may grow to (the regex crate's `dfa_size_limit`).
pub const REGEX_CACHE_BYTES_MAX: usize = 1 << 20;
/// The most `$regex` conditions one filter may hold.
pub const REGEXES_MAX: usize = 32;

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
    Regex(Pattern),
}

/// A `$regex` condition's pattern: as written (for messages and equality) and compiled.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    options: String,
    compiled: regex::Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.source == other.source && self.options == other.options
    }
}

impl Pattern {
    /// Compiles `source` with MongoDB's `$options` letters; refusals name `path` and the pattern.
    pub fn parse(source: &str, options: &str, path: &str) -> Result<Pattern, FilterError> {
        let shown = shown_pattern(source);
        if source.len() > REGEX_PATTERN_BYTES_MAX {
            return Err(error(
                path,
                format!(
                    "$regex {shown} is {} bytes, over the limit of {REGEX_PATTERN_BYTES_MAX}",
                    source.len()
                ),
            ));
        }
        let mut builder = regex::RegexBuilder::new(source);
        builder
            .size_limit(REGEX_COMPILED_BYTES_MAX)
            .dfa_size_limit(REGEX_CACHE_BYTES_MAX);
        for option in options.chars() {
            match option {
                'i' => builder.case_insensitive(true),
                'm' => builder.multi_line(true),
                's' => builder.dot_matches_new_line(true),
                'x' => builder.ignore_whitespace(true),
                // MongoDB accepts `u` and ignores it: its patterns are always UTF-8.
                'u' => &mut builder,
                other => {
                    return Err(error(
                        path,
                        format!("$options: unknown option '{other}' for $regex {shown}"),
                    ))
                }
            };
        }
        let compiled = builder.build().map_err(|e| {
            let why = match e {
                regex::Error::CompiledTooBig(_) => format!(
                    "it compiles to more than the limit of {REGEX_COMPILED_BYTES_MAX} bytes"
                ),
                // The syntax error's last line says what is wrong; the lines above draw it.
                regex::Error::Syntax(text) => text
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim_start_matches("error: ")
                    .to_string(),
                other => other.to_string(),
            };
            error(
                path,
                format!("$regex {shown} is not a valid pattern: {why}"),
            )
        })?;
        Ok(Pattern {
            source: source.to_string(),
            options: options.to_string(),
            compiled,
        })
    }

    /// Whether the pattern finds a match in `value`: a string; anything else never matches.
    fn finds(&self, value: &Value) -> bool {
        matches!(value, Value::String(text) if self.compiled.is_match(text))
    }
}

/// A pattern quoted for a message, cut to its first 64 characters.
fn shown_pattern(source: &str) -> String {
    const SHOWN_CHARS_MAX: usize = 64;
    match source.char_indices().nth(SHOWN_CHARS_MAX) {
        Some((end, _)) => format!("{:?}...", &source[..end]),
        None => format!("{source:?}"),
    }
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
        let parsed = parse_document(fields)?;
        let patterns = parsed.regex_count();
        if patterns > REGEXES_MAX {
            return Err(error(
                "",
                format!(
                    "the filter holds {patterns} $regex patterns, over the limit of {REGEXES_MAX}"
                ),
            ));
        }
        Ok(parsed)
    }

    /// How many `$regex` conditions the filter holds (what [`REGEXES_MAX`] bounds).
    pub fn regex_count(&self) -> usize {
        match self {
            Filter::And(parts) | Filter::Or(parts) | Filter::Nor(parts) => {
                parts.iter().map(Filter::regex_count).sum()
            }
            Filter::Path { conditions, .. } => conditions.iter().map(Condition::regex_count).sum(),
        }
    }

    /// Adds the first names of the paths the filter reads to `fields` (once each): a document
    /// holding only those top-level fields matches exactly as the whole document does.
    pub fn top_level_fields(&self, fields: &mut Vec<String>) {
        match self {
            Filter::And(parts) | Filter::Or(parts) | Filter::Nor(parts) => {
                parts.iter().for_each(|p| p.top_level_fields(fields))
            }
            Filter::Path { path, .. } => add_field(fields, &path[0]),
        }
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

/// Adds `name` to `fields` unless it is there.
pub(super) fn add_field(fields: &mut Vec<String>, name: &str) {
    if !fields.iter().any(|f| f == name) {
        fields.push(name.to_owned());
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
    let mut conditions = Vec::with_capacity(ops.len());
    for (op, operand) in ops {
        match op.as_str() {
            // `$options` belongs to the `$regex` beside it, whichever comes first.
            "$options" if ops.contains_key("$regex") => {}
            "$options" => return Err(error(path, "$options needs a $regex beside it")),
            "$regex" => conditions.push(parse_regex(operand, ops.get("$options"), path)?),
            _ => conditions.push(parse_operator(op, operand, path)?),
        }
    }
    Ok(conditions)
}

fn parse_regex(
    pattern: &Value,
    options: Option<&Value>,
    path: &str,
) -> Result<Condition, FilterError> {
    let Value::String(pattern) = pattern else {
        return Err(error(path, "$regex needs a string"));
    };
    let options = match options {
        None => "",
        Some(Value::String(options)) => options.as_str(),
        Some(_) => return Err(error(path, "$options needs a string")),
    };
    Ok(Condition::Regex(Pattern::parse(pattern, options, path)?))
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
        other => return Err(error(path, format!("unknown operator {other}"))),
    })
}

/// Every value a dotted path reaches in `value` (see the module doc).
pub(super) fn collect<'a>(value: &'a Value, path: &[&str], out: &mut Vec<&'a Value>) {
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
            Condition::Regex(pattern) => any_value(found, |v| pattern.finds(v)),
        }
    }

    fn regex_count(&self) -> usize {
        match self {
            Condition::Regex(_) => 1,
            Condition::Not(conditions) => conditions.iter().map(Condition::regex_count).sum(),
            Condition::ElemMatch(inner) => match inner.as_ref() {
                ElemMatch::Value(conditions) => conditions.iter().map(Condition::regex_count).sum(),
                ElemMatch::Document(filter) => filter.regex_count(),
            },
            _ => 0,
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

    /// The `$regex` examples of MongoDB's manual, over its `products` collection (written from
    /// its semantics): each filter and the `_id`s it finds.
    #[test]
    fn regex_matches_as_the_mongodb_manual_describes() {
        let products = [
            json!({"_id": 100, "sku": "abc123", "description": "Single line description."}),
            json!({"_id": 101, "sku": "abc789", "description": "First line\nSecond line"}),
            json!({"_id": 102, "sku": "xyz456", "description": "Many spaces before     line"}),
            json!({"_id": 103, "sku": "xyz789", "description": "Multiple\nline description"}),
            json!({"_id": 104, "sku": "Abc789", "description": "SKU should be case-insensitive"}),
        ];
        let cases = [
            (json!({"sku": {"$regex": "789$"}}), vec![101, 103, 104]),
            (
                json!({"sku": {"$regex": "^ABC", "$options": "i"}}),
                vec![100, 101, 104],
            ),
            (
                json!({"sku": {"$options": "i", "$regex": "^ABC"}}),
                vec![100, 101, 104],
            ),
            (json!({"sku": {"$regex": "^ABC"}}), vec![]),
            (
                json!({"description": {"$regex": "^S", "$options": "m"}}),
                vec![100, 101, 104],
            ),
            (json!({"description": {"$regex": "^S"}}), vec![100, 104]),
            (json!({"description": {"$regex": "line$"}}), vec![101, 102]),
            (
                json!({"description": {"$regex": "^line", "$options": "m"}}),
                vec![103],
            ),
            (json!({"description": {"$regex": "^line"}}), vec![]),
            (
                json!({"description": {"$regex": "m.*line", "$options": "si"}}),
                vec![102, 103],
            ),
            (
                json!({"description": {"$regex": "m.*line", "$options": "i"}}),
                vec![102],
            ),
            (
                json!({"sku": {"$regex": "abc #category code\n123 #item number", "$options": "x"}}),
                vec![100],
            ),
            (json!({"sku": {"$regex": "(?i)^abc"}}), vec![100, 101, 104]),
            (
                json!({"sku": {"$regex": "", "$options": "u"}}),
                vec![100, 101, 102, 103, 104],
            ),
            (
                json!({"sku": {"$not": {"$regex": "^abc"}}}),
                vec![102, 103, 104],
            ),
            (
                json!({"sku": {"$regex": "789$", "$ne": "xyz789"}}),
                vec![101, 104],
            ),
            (
                json!({"$or": [{"sku": {"$regex": "^x"}}, {"description": {"$regex": "SKU"}}]}),
                vec![102, 103, 104],
            ),
        ];
        for (filter, expected) in cases {
            let parsed = Filter::parse(&filter).unwrap();
            let found: Vec<i64> = products
                .iter()
                .filter(|p| parsed.matches(p))
                .map(|p| p["_id"].as_i64().unwrap())
                .collect();
            assert_eq!(found, expected, "{filter}");
        }
    }

    #[test]
    fn regex_matches_strings_and_string_elements_never_other_values() {
        let cases = [
            (json!({"tags": ["blue", "red"]}), true),
            (json!({"tags": [5, {"r": "red"}, "rose"]}), true),
            (json!({"tags": [5, {"r": "red"}, ["red"]]}), false),
            (json!({"tags": "red"}), true),
            (json!({"tags": "Red"}), false),
            (json!({"tags": 12}), false),
            (json!({"tags": true}), false),
            (json!({"tags": null}), false),
            (json!({"tags": {"name": "red"}}), false),
            (json!({"other": "red"}), false),
        ];
        for (document, expected) in cases {
            assert_eq!(
                matches(json!({"tags": {"$regex": "^r"}}), document.clone()),
                expected,
                "{document}"
            );
            assert_eq!(
                matches(
                    json!({"tags": {"$not": {"$regex": "^r"}}}),
                    document.clone()
                ),
                !expected,
                "$not over {document}"
            );
        }
        let nested = json!({"items": [{"name": "apple"}, {"name": "banana"}]});
        assert!(matches(
            json!({"items.name": {"$regex": "^ban"}}),
            nested.clone()
        ));
        assert!(matches(
            json!({"items": {"$elemMatch": {"name": {"$regex": "^app"}}}}),
            nested
        ));
        assert!(matches(
            json!({"name": {"$regex": "^émile$", "$options": "i"}}),
            json!({"name": "ÉMILE"})
        ));
    }

    #[test]
    fn bad_patterns_and_options_are_refused_with_the_path_and_the_pattern() {
        let refused = |filter: Value| Filter::parse(&filter).unwrap_err().to_string();
        assert_eq!(
            refused(json!({"name": {"$regex": "a("}})),
            r#"$regex "a(" is not a valid pattern: unclosed group (at 'name')"#
        );
        assert_eq!(
            refused(json!({"name": {"$regex": "a", "$options": "iz"}})),
            r#"$options: unknown option 'z' for $regex "a" (at 'name')"#
        );
        assert_eq!(
            refused(json!({"name": {"$options": "i"}})),
            "$options needs a $regex beside it (at 'name')"
        );
        assert_eq!(
            refused(json!({"name": {"$regex": 5}})),
            "$regex needs a string (at 'name')"
        );
        assert_eq!(
            refused(json!({"name": {"$regex": "a", "$options": 1}})),
            "$options needs a string (at 'name')"
        );
        assert!(
            refused(json!({"a.b": {"$not": {"$regex": "x(?=y)"}}}))
                .starts_with(r#"$regex "x(?=y)" is not a valid pattern: look-around"#),
            "lookaround is PCRE's, not ours"
        );
        assert!(refused(json!({"a": {"$regex": r"(a)\1"}})).ends_with("(at 'a')"));
    }

    #[test]
    fn regex_limits_are_refused_by_name() {
        let refused = |filter: Value| Filter::parse(&filter).unwrap_err().to_string();
        let long = "a".repeat(REGEX_PATTERN_BYTES_MAX + 1);
        assert_eq!(
            refused(json!({"s": {"$regex": long}})),
            format!(
                "$regex \"{}\"... is {} bytes, over the limit of {REGEX_PATTERN_BYTES_MAX} (at 's')",
                "a".repeat(64),
                REGEX_PATTERN_BYTES_MAX + 1
            )
        );
        // At the limit (spaces, which `x` ignores, so it compiles small).
        let spaced = format!("a{}", " ".repeat(REGEX_PATTERN_BYTES_MAX - 1));
        let at_limit = json!({"s": {"$regex": spaced, "$options": "x"}});
        assert!(Filter::parse(&at_limit)
            .unwrap()
            .matches(&json!({"s": "a"})));
        assert!(Filter::parse(&json!({"s": {"$regex": r"\w{20}"}})).is_ok());
        assert_eq!(
            refused(json!({"s": {"$regex": r"\w{50}"}})),
            format!(
                r#"$regex "\\w{{50}}" is not a valid pattern: it compiles to more than the limit of {REGEX_COMPILED_BYTES_MAX} bytes (at 's')"#
            )
        );
        let many = |n: usize| {
            let parts: Vec<Value> = (0..n)
                .map(|i| json!({"s": {"$regex": format!("^{i}")}}))
                .collect();
            json!({"$or": parts})
        };
        assert_eq!(
            Filter::parse(&many(REGEXES_MAX)).unwrap().regex_count(),
            REGEXES_MAX
        );
        assert_eq!(
            refused(many(REGEXES_MAX + 1)),
            format!(
                "the filter holds {} $regex patterns, over the limit of {REGEXES_MAX}",
                REGEXES_MAX + 1
            )
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
