//! The fluent document queries of `client.db().collection(name)`: filters, updates and finds
//! built in Rust and sent as the JSON text the DOC.* commands take. This crate does not parse
//! JSON; it only writes it ([`Json`]: numbers, strings, booleans, null, arrays, objects, and
//! raw JSON text a caller already has).
//!
//! ```no_run
//! # fn main() -> flin_net::client::Result<()> {
//! use flin_net::client::{Client, Filter, Update};
//! let client = Client::connect("127.0.0.1:7380")?;
//! let orders = client.db().collection("orders");
//! let recent = orders
//!     .find(Filter::new().eq("state", "new").gte("total", 10))
//!     .sort("total", true)
//!     .limit(10)
//!     .run()?;
//! orders.update_one(Filter::new().eq("_id", 7), Update::new().inc("total", 5).set("state", "paid"))?;
//! # let _ = recent; Ok(()) }
//! ```

use super::db::{Db, FindOptions, UpdateResult};
use super::error::Result;

/// A JSON value to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
    /// JSON text written as is (the caller vouches for it).
    Raw(String),
}

impl Json {
    /// JSON text the caller already has, written as is.
    pub fn raw(text: impl Into<String>) -> Json {
        Json::Raw(text.into())
    }

    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(n) => out.push_str(&n.to_string()),
            Json::Float(f) if f.is_finite() => out.push_str(&format!("{f:?}")),
            Json::Float(_) => out.push_str("null"), // JSON has no NaN or infinities
            Json::String(s) => write_string(s, out),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(fields) => write_object(fields, out),
            Json::Raw(text) => out.push_str(text),
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_object(fields: &[(String, Json)], out: &mut String) {
    out.push('{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(key, out);
        out.push(':');
        value.write(out);
    }
    out.push('}');
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Json {
            fn from(n: $t) -> Json {
                Json::Int(n as i64)
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<f64> for Json {
    fn from(f: f64) -> Json {
        Json::Float(f)
    }
}
impl From<bool> for Json {
    fn from(b: bool) -> Json {
        Json::Bool(b)
    }
}
impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::String(s.to_string())
    }
}
impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::String(s)
    }
}
impl<T: Into<Json>> From<Vec<T>> for Json {
    fn from(items: Vec<T>) -> Json {
        Json::Array(items.into_iter().map(Into::into).collect())
    }
}
impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(value: Option<T>) -> Json {
        value.map_or(Json::Null, Into::into)
    }
}

/// A filter: conditions per path (one object per path, as MongoDB writes them) and `$or` /
/// `$nor` groups; every part must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    fields: Vec<(String, Json)>,
}

impl Filter {
    pub fn new() -> Filter {
        Filter::default()
    }

    /// A condition `{op: value}` on `path`, merged with the path's others.
    fn condition(mut self, path: &str, op: &str, value: Json) -> Filter {
        let operator = (op.to_string(), value);
        match self.fields.iter_mut().find(|(p, _)| p == path) {
            Some((_, Json::Object(ops))) => ops.push(operator),
            Some((_, other)) => {
                // An equality already there: keep it as `$eq` beside the new operator.
                let eq = std::mem::replace(other, Json::Null);
                *other = Json::Object(vec![("$eq".into(), eq), operator]);
            }
            None => self
                .fields
                .push((path.to_string(), Json::Object(vec![operator]))),
        }
        self
    }

    /// `{path: value}`.
    pub fn eq(mut self, path: &str, value: impl Into<Json>) -> Filter {
        self.fields.push((path.to_string(), value.into()));
        self
    }
    pub fn ne(self, path: &str, value: impl Into<Json>) -> Filter {
        self.condition(path, "$ne", value.into())
    }
    pub fn gt(self, path: &str, value: impl Into<Json>) -> Filter {
        self.condition(path, "$gt", value.into())
    }
    pub fn gte(self, path: &str, value: impl Into<Json>) -> Filter {
        self.condition(path, "$gte", value.into())
    }
    pub fn lt(self, path: &str, value: impl Into<Json>) -> Filter {
        self.condition(path, "$lt", value.into())
    }
    pub fn lte(self, path: &str, value: impl Into<Json>) -> Filter {
        self.condition(path, "$lte", value.into())
    }
    pub fn is_in<T: Into<Json>>(self, path: &str, values: Vec<T>) -> Filter {
        self.condition(path, "$in", values.into())
    }
    pub fn not_in<T: Into<Json>>(self, path: &str, values: Vec<T>) -> Filter {
        self.condition(path, "$nin", values.into())
    }
    pub fn exists(self, path: &str, exists: bool) -> Filter {
        self.condition(path, "$exists", exists.into())
    }
    pub fn size(self, path: &str, size: u32) -> Filter {
        self.condition(path, "$size", size.into())
    }
    pub fn regex(self, path: &str, pattern: &str) -> Filter {
        self.condition(path, "$regex", pattern.into())
    }
    /// Any operator (`"$all"`, `"$elemMatch"`, `"$type"` ...).
    pub fn op(self, path: &str, op: &str, value: impl Into<Json>) -> Filter {
        self.condition(path, op, value.into())
    }
    /// `$or` of these filters (beside this filter's other parts).
    pub fn or(mut self, any: Vec<Filter>) -> Filter {
        let parts = any.into_iter().map(Filter::into_json).collect();
        self.fields.push(("$or".into(), Json::Array(parts)));
        self
    }
    /// `$nor` of these filters.
    pub fn nor(mut self, none: Vec<Filter>) -> Filter {
        let parts = none.into_iter().map(Filter::into_json).collect();
        self.fields.push(("$nor".into(), Json::Array(parts)));
        self
    }

    pub fn into_json(self) -> Json {
        Json::Object(self.fields)
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        write_object(&self.fields, &mut out);
        out
    }
}

/// An update of operators (`$set` ... `$currentDate`), each operator's fields together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    operators: Vec<(String, Vec<(String, Json)>)>,
}

impl Update {
    pub fn new() -> Update {
        Update::default()
    }

    /// `{op: {path: value}}`, merged with the operator's other fields.
    pub fn op(mut self, op: &str, path: &str, value: impl Into<Json>) -> Update {
        let field = (path.to_string(), value.into());
        match self.operators.iter_mut().find(|(o, _)| o == op) {
            Some((_, fields)) => fields.push(field),
            None => self.operators.push((op.to_string(), vec![field])),
        }
        self
    }
    pub fn set(self, path: &str, value: impl Into<Json>) -> Update {
        self.op("$set", path, value)
    }
    pub fn unset(self, path: &str) -> Update {
        self.op("$unset", path, "")
    }
    pub fn inc(self, path: &str, by: impl Into<Json>) -> Update {
        self.op("$inc", path, by)
    }
    pub fn mul(self, path: &str, by: impl Into<Json>) -> Update {
        self.op("$mul", path, by)
    }
    pub fn min(self, path: &str, value: impl Into<Json>) -> Update {
        self.op("$min", path, value)
    }
    pub fn max(self, path: &str, value: impl Into<Json>) -> Update {
        self.op("$max", path, value)
    }
    pub fn rename(self, path: &str, to: &str) -> Update {
        self.op("$rename", path, to)
    }
    pub fn push(self, path: &str, value: impl Into<Json>) -> Update {
        self.op("$push", path, value)
    }
    pub fn add_to_set(self, path: &str, value: impl Into<Json>) -> Update {
        self.op("$addToSet", path, value)
    }
    pub fn pull(self, path: &str, value: impl Into<Json>) -> Update {
        self.op("$pull", path, value)
    }
    pub fn current_date(self, path: &str) -> Update {
        self.op("$currentDate", path, true)
    }

    pub fn to_text(&self) -> String {
        let operators: Vec<(String, Json)> = self
            .operators
            .iter()
            .map(|(op, fields)| (op.clone(), Json::Object(fields.clone())))
            .collect();
        Json::Object(operators).to_text()
    }
}

/// A collection's queries.
#[derive(Debug, Clone)]
pub struct Collection<'c> {
    db: Db<'c>,
    name: String,
}

impl<'c> Collection<'c> {
    pub(crate) fn new(db: Db<'c>, name: &str) -> Collection<'c> {
        Collection {
            db,
            name: name.to_string(),
        }
    }

    /// Inserts documents (JSON objects); their `_id`s as JSON text.
    pub fn insert(&self, documents: Vec<Json>) -> Result<Vec<Vec<u8>>> {
        let texts: Vec<String> = documents.iter().map(Json::to_text).collect();
        self.db.insert(&self.name, &texts)
    }

    /// A find to shape, then `run` (or `count`, `explain`).
    pub fn find(&self, filter: Filter) -> Find<'_, 'c> {
        Find {
            collection: self,
            filter,
            options: FindOptions::default(),
        }
    }

    pub fn update_one(&self, filter: Filter, update: Update) -> Result<UpdateResult> {
        self.db.update(
            &self.name,
            &filter.to_text(),
            &update.to_text(),
            false,
            false,
        )
    }

    pub fn update_many(&self, filter: Filter, update: Update) -> Result<UpdateResult> {
        self.db.update(
            &self.name,
            &filter.to_text(),
            &update.to_text(),
            false,
            true,
        )
    }

    pub fn upsert(&self, filter: Filter, update: Update) -> Result<UpdateResult> {
        self.db.update(
            &self.name,
            &filter.to_text(),
            &update.to_text(),
            true,
            false,
        )
    }

    pub fn delete_one(&self, filter: Filter) -> Result<u64> {
        self.db.delete(&self.name, &filter.to_text(), false)
    }

    pub fn delete_many(&self, filter: Filter) -> Result<u64> {
        self.db.delete(&self.name, &filter.to_text(), true)
    }

    /// Updates the first document `filter` selects (by `sort`, if any) and returns it as it
    /// is now (`new`) or was.
    pub fn find_one_and_update(
        &self,
        filter: Filter,
        update: Update,
        sort: &[(&str, bool)],
        new: bool,
    ) -> Result<Option<Vec<u8>>> {
        let mut options = vec!["UPDATE".to_string(), update.to_text()];
        for (path, descending) in sort {
            options.extend([
                "SORT".into(),
                path.to_string(),
                if *descending { "-1" } else { "1" }.into(),
            ]);
        }
        if new {
            options.push("NEW".into());
        }
        self.db
            .find_and_modify(&self.name, &filter.to_text(), &options)
    }

    pub fn create_index(&self, keys: &[&str], unique: bool) -> Result<Vec<u8>> {
        self.db.create_index(&self.name, keys, unique, false)
    }
}

/// A find being shaped.
#[derive(Debug, Clone)]
pub struct Find<'a, 'c> {
    collection: &'a Collection<'c>,
    filter: Filter,
    options: FindOptions,
}

impl Find<'_, '_> {
    pub fn sort(mut self, path: &str, descending: bool) -> Self {
        self.options.sort.push((path.to_string(), descending));
        self
    }
    pub fn skip(mut self, n: u64) -> Self {
        self.options.skip = n;
        self
    }
    pub fn limit(mut self, n: u64) -> Self {
        self.options.limit = Some(n);
        self
    }
    /// Keeps only these paths (and `_id`).
    pub fn project(mut self, paths: &[&str]) -> Self {
        let fields = paths
            .iter()
            .map(|p| (p.to_string(), Json::Int(1)))
            .collect();
        self.options.project = Some(Json::Object(fields).to_text());
        self
    }
    /// The documents (JSON text).
    pub fn run(&self) -> Result<Vec<Vec<u8>>> {
        let c = self.collection;
        c.db.find(&c.name, &self.filter.to_text(), &self.options)
    }
    pub fn count(&self) -> Result<u64> {
        let c = self.collection;
        c.db.count(&c.name, &self.filter.to_text())
    }
    /// DOC.EXPLAIN's report (JSON text).
    pub fn explain(&self) -> Result<Vec<u8>> {
        let c = self.collection;
        c.db.explain(&c.name, &self.filter.to_text(), &self.options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_updates_write_mongodb_json() {
        let filter = Filter::new()
            .eq("state", "new \"quoted\"\n")
            .gte("total", 10)
            .lt("total", 20.5)
            .is_in("tag", vec!["a", "b"])
            .or(vec![
                Filter::new().exists("x", true),
                Filter::new().eq("y", Json::Null),
            ]);
        assert_eq!(
            filter.to_text(),
            r#"{"state":"new \"quoted\"\n","total":{"$gte":10,"$lt":20.5},"tag":{"$in":["a","b"]},"$or":[{"x":{"$exists":true}},{"y":null}]}"#
        );
        let both = Filter::new().eq("k", 1).ne("k", 2);
        assert_eq!(both.to_text(), r#"{"k":{"$eq":1,"$ne":2}}"#);
        let update = Update::new()
            .set("a", 1)
            .inc("n", -2)
            .set("b.c", true)
            .unset("z");
        assert_eq!(
            update.to_text(),
            r#"{"$set":{"a":1,"b.c":true},"$inc":{"n":-2},"$unset":{"z":""}}"#
        );
        assert_eq!(Json::Float(f64::NAN).to_text(), "null");
        assert_eq!(Json::String("\u{1}".into()).to_text(), r#""\u0001""#);
    }
}
