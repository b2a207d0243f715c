//! `$project`: inclusion, exclusion and computed fields, by MongoDB's rules.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::expr::{Budget, Expr};
use super::{path_parts, Limits};

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Project {
    /// Inclusion (with computed fields), or exclusion.
    inclusion: bool,
    fields: Fields,
    id: IdRule,
}

/// What `$project` does with `_id`.
#[derive(Debug, Clone, PartialEq)]
enum IdRule {
    Keep,
    Drop,
    Computed(Expr),
}

/// One level of a projection: its fields in the specification's order, with a map to find them.
#[derive(Debug, Clone, PartialEq, Default)]
struct Fields {
    order: Vec<(String, Node)>,
    index: HashMap<String, usize>,
    /// Whether a computed field is at this level or below it.
    computes: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Include,
    Exclude,
    Computed(Expr),
    Below(Fields),
}

impl Fields {
    fn get(&self, name: &str) -> Option<&Node> {
        self.index.get(name).map(|&i| &self.order[i].1)
    }

    /// Puts `leaf` at `path`; a path that is set already, or that runs through a leaf, is a
    /// collision (MongoDB refuses `{a: 1, "a.b": 1}` too).
    fn insert(&mut self, path: &[String], leaf: Node, whole: &str) -> Result<(), String> {
        let collision = || format!("path collision at '{whole}'");
        let (first, rest) = path.split_first().expect("a path has a part");
        self.computes |= matches!(leaf, Node::Computed(_));
        let existing = self.index.get(first).copied();
        if rest.is_empty() {
            if existing.is_some() {
                return Err(collision());
            }
            self.index.insert(first.clone(), self.order.len());
            self.order.push((first.clone(), leaf));
            return Ok(());
        }
        let at = match existing {
            Some(at) => at,
            None => {
                self.index.insert(first.clone(), self.order.len());
                self.order
                    .push((first.clone(), Node::Below(Fields::default())));
                self.order.len() - 1
            }
        };
        match &mut self.order[at].1 {
            Node::Below(below) => below.insert(rest, leaf, whole),
            _ => Err(collision()),
        }
    }
}

impl Project {
    pub(super) fn parse(spec: &Value) -> Result<Project, String> {
        let Value::Object(spec) = spec else {
            return Err("needs an object".into());
        };
        if spec.is_empty() {
            return Err("needs at least one field".into());
        }
        let mut draft = ProjectDraft {
            fields: Fields::default(),
            id: IdRule::Keep,
            included: false,
            excluded: None,
        };
        for (name, value) in spec {
            draft.add(name, value)?;
        }
        let ProjectDraft {
            fields,
            id,
            included,
            excluded,
        } = draft;
        let inclusion = included || fields.computes || matches!(id, IdRule::Computed(_));
        if let (true, Some(path)) = (inclusion, &excluded) {
            return Err(format!(
                "cannot exclude '{path}' in a projection that includes or computes fields"
            ));
        }
        // `{_id: 1}` alone is an inclusion of `_id`; `{_id: 0}` alone an exclusion of it.
        let inclusion = inclusion || (excluded.is_none() && id == IdRule::Keep);
        Ok(Project {
            inclusion,
            fields,
            id,
        })
    }

    /// The projected document, or a refusal when its computed values are over the budget.
    pub(super) fn apply(&self, document: &Value, limits: &Limits) -> Result<Value, String> {
        let empty = Map::new();
        let input = document.as_object().unwrap_or(&empty);
        let mut budget = Budget::new(limits.computed_bytes_max);
        if !self.inclusion {
            let mut out = input.clone();
            if self.id == IdRule::Drop {
                out.shift_remove("_id");
            }
            let mut out = Value::Object(out);
            exclude(&self.fields, &mut out);
            return Ok(out);
        }
        let mut out = Map::new();
        match &self.id {
            IdRule::Keep => {
                if let Some(id) = input.get("_id") {
                    out.insert("_id".into(), id.clone());
                }
            }
            IdRule::Computed(expr) => {
                if let Some(id) = expr.eval(document, &mut budget)? {
                    out.insert("_id".into(), id);
                }
            }
            IdRule::Drop => {}
        }
        out.extend(include(&self.fields, input, document, &mut budget)?);
        Ok(Value::Object(out))
    }
}

/// A `$project` being parsed.
struct ProjectDraft {
    fields: Fields,
    id: IdRule,
    /// Whether a path is included (`1`/`true`).
    included: bool,
    /// The first excluded path (`0`/`false`), `_id` aside.
    excluded: Option<String>,
}

impl ProjectDraft {
    fn add(&mut self, name: &str, value: &Value) -> Result<(), String> {
        let flag = match value {
            Value::Bool(on) => Some(*on),
            Value::Number(n) => Some(n.as_f64() != Some(0.0)),
            _ => None,
        };
        if name == "_id" {
            self.id = match flag {
                Some(true) => IdRule::Keep,
                Some(false) => IdRule::Drop,
                None => IdRule::Computed(Expr::parse(value)?),
            };
            return Ok(());
        }
        let path = path_parts(name)?;
        if path[0].starts_with('$') {
            return Err(format!("field name '{name}' cannot start with '$'"));
        }
        let leaf = match (flag, value) {
            (Some(true), _) => {
                self.included = true;
                Node::Include
            }
            (Some(false), _) => {
                self.excluded.get_or_insert_with(|| name.to_string());
                Node::Exclude
            }
            // `{a: {b: 1}}` is `{"a.b": 1}`: a nested specification, not an object expression.
            (None, Value::Object(nested)) if !nested.keys().any(|k| k.starts_with('$')) => {
                if nested.is_empty() {
                    return Err(format!("an empty object is not a valid value for '{name}'"));
                }
                for (inner, value) in nested {
                    self.add(&format!("{name}.{inner}"), value)?;
                }
                return Ok(());
            }
            (None, _) => Node::Computed(Expr::parse(value)?),
        };
        self.fields.insert(&path, leaf, name)
    }
}

/// An inclusion projection of one object: included fields in the object's order, then the
/// computed ones in the specification's order.
fn include(
    fields: &Fields,
    input: &Map<String, Value>,
    root: &Value,
    budget: &mut Budget,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (name, value) in input {
        match fields.get(name) {
            Some(Node::Include) => {
                out.insert(name.clone(), value.clone());
            }
            Some(Node::Below(below)) => {
                if let Some(projected) = include_value(below, value, root, budget)? {
                    out.insert(name.clone(), projected);
                }
            }
            _ => {}
        }
    }
    for (name, node) in &fields.order {
        match node {
            Node::Computed(expr) => {
                if let Some(value) = expr.eval(root, budget)? {
                    out.insert(name.clone(), value);
                }
            }
            // Computed fields under a path the document lacks (or holds a scalar at) make it.
            Node::Below(below) if below.computes && !out.contains_key(name) => {
                let made = include(below, &Map::new(), root, budget)?;
                if !made.is_empty() {
                    out.insert(name.clone(), Value::Object(made));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// An inclusion projection below a path: of an object, or of each element of an array.
fn include_value(
    below: &Fields,
    value: &Value,
    root: &Value,
    budget: &mut Budget,
) -> Result<Option<Value>, String> {
    Ok(match value {
        Value::Object(map) => Some(Value::Object(include(below, map, root, budget)?)),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match include_value(below, item, root, budget)? {
                    Some(projected) => out.push(projected),
                    None if below.computes => {
                        out.push(Value::Object(include(below, &Map::new(), root, budget)?))
                    }
                    None => {}
                }
            }
            Some(Value::Array(out))
        }
        _ => None,
    })
}

/// An exclusion projection, in place: through objects, and into each element of an array.
fn exclude(fields: &Fields, value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (name, node) in &fields.order {
                match node {
                    Node::Exclude => {
                        map.shift_remove(name);
                    }
                    Node::Below(below) => {
                        if let Some(inner) = map.get_mut(name) {
                            exclude(below, inner);
                        }
                    }
                    Node::Include | Node::Computed(_) => {
                        unreachable!("an exclusion projection only excludes")
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| exclude(fields, item)),
        _ => {}
    }
}
