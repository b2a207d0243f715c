//! Document commands (issue 13): [`Db`], the group [`super::Client::db`] returns.
//! Documents, filters, updates and projections are JSON text (`&str` or bytes) and documents
//! come back as JSON text: this crate does not parse JSON (callers use the JSON crate they
//! like); `super::query` builds filters, updates and finds fluently ([`Db::collection`]).
//! Each call uses one pooled connection for one request (a cluster client resends it to the
//! leader: `super::cluster`), sent as a row of
//! `binary::commands::TABLE` (opcodes 0x80..=0x8F).

use std::borrow::Cow;

use super::error::{Error, ProtocolError, Result};
use super::Client;
use crate::binary::Value;

/// DOC.FIND's shape beyond the filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindOptions {
    /// (dotted path, descending).
    pub sort: Vec<(String, bool)>,
    pub skip: u64,
    /// `None` (or 0): no limit.
    pub limit: Option<u64>,
    /// A projection document (JSON).
    pub project: Option<String>,
}

/// What DOC.UPDATE and DOC.REPLACE did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateResult {
    pub matched: u64,
    pub modified: u64,
    /// The upserted document's `_id` (JSON text).
    pub upserted: Option<Vec<u8>>,
}

/// Document commands on a [`Client`]'s pool.
#[derive(Debug, Clone, Copy)]
pub struct Db<'c> {
    client: &'c Client,
}

fn unexpected(opcode: u8, what: &'static str) -> Error {
    Error::Protocol(ProtocolError::UnexpectedValue { opcode, what })
}

fn bytes_of(value: &Value, opcode: u8) -> Result<Vec<u8>> {
    value
        .as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| unexpected(opcode, "a non-string where a document was due"))
}

fn list(value: &Value, opcode: u8) -> Result<Vec<Vec<u8>>> {
    match value {
        Value::Array(items) => items.iter().map(|v| bytes_of(v, opcode)).collect(),
        _ => Err(unexpected(opcode, "a non-array where documents were due")),
    }
}

fn count(value: &Value, opcode: u8) -> Result<u64> {
    match value {
        Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        _ => Err(unexpected(opcode, "a non-count where a count was due")),
    }
}

fn update_result(value: &Value, opcode: u8) -> Result<UpdateResult> {
    match value {
        Value::Array(items) if items.len() == 3 => Ok(UpdateResult {
            matched: count(&items[0], opcode)?,
            modified: count(&items[1], opcode)?,
            upserted: match &items[2] {
                Value::Null => None,
                other => Some(bytes_of(other, opcode)?),
            },
        }),
        _ => Err(unexpected(
            opcode,
            "an update reply that is not [matched, modified, upserted]",
        )),
    }
}

impl<'c> Db<'c> {
    pub(crate) fn new(client: &'c Client) -> Db<'c> {
        Db { client }
    }

    fn run<T>(
        &self,
        command: &'static str,
        args: &[Cow<'_, [u8]>],
        decode_value: impl FnOnce(&Value, u8) -> Result<T>,
    ) -> Result<T> {
        self.client.table_call(command, args, decode_value)
    }

    /// DOC.INSERT: the `_id`s (JSON text), all or nothing.
    pub fn insert<D: AsRef<[u8]>>(
        &self,
        collection: &str,
        documents: &[D],
    ) -> Result<Vec<Vec<u8>>> {
        let mut args = vec![Cow::Borrowed(collection.as_bytes())];
        args.extend(documents.iter().map(|d| Cow::Borrowed(d.as_ref())));
        self.run("doc.insert", &args, list)
    }

    /// DOC.GET: the document with `id` (JSON text: `7`, `"abc"`).
    pub fn get(&self, collection: &str, id: &str) -> Result<Option<Vec<u8>>> {
        let args = [
            Cow::Borrowed(collection.as_bytes()),
            Cow::Borrowed(id.as_bytes()),
        ];
        self.run("doc.get", &args, |v, op| match v {
            Value::Null => Ok(None),
            other => bytes_of(other, op).map(Some),
        })
    }

    /// DOC.FIND.
    pub fn find(
        &self,
        collection: &str,
        filter: &str,
        options: &FindOptions,
    ) -> Result<Vec<Vec<u8>>> {
        let args = find_args(collection, filter, options);
        self.run("doc.find", &args, list)
    }

    pub fn count(&self, collection: &str, filter: &str) -> Result<u64> {
        let args = [
            Cow::Borrowed(collection.as_bytes()),
            Cow::Borrowed(filter.as_bytes()),
        ];
        self.run("doc.count", &args, count)
    }

    /// DOC.UPDATE with an update document of operators.
    pub fn update(
        &self,
        collection: &str,
        filter: &str,
        update: &str,
        upsert: bool,
        multi: bool,
    ) -> Result<UpdateResult> {
        let mut args: Vec<Cow<'_, [u8]>> = [collection, filter, update]
            .iter()
            .map(|a| Cow::Borrowed(a.as_bytes()))
            .collect();
        if upsert {
            args.push(Cow::Borrowed(b"UPSERT"));
        }
        if multi {
            args.push(Cow::Borrowed(b"MULTI"));
        }
        self.run("doc.update", &args, update_result)
    }

    /// DOC.REPLACE: the first match, whole.
    pub fn replace(
        &self,
        collection: &str,
        filter: &str,
        document: &str,
        upsert: bool,
    ) -> Result<UpdateResult> {
        let mut args: Vec<Cow<'_, [u8]>> = [collection, filter, document]
            .iter()
            .map(|a| Cow::Borrowed(a.as_bytes()))
            .collect();
        if upsert {
            args.push(Cow::Borrowed(b"UPSERT"));
        }
        self.run("doc.replace", &args, update_result)
    }

    pub fn delete(&self, collection: &str, filter: &str, multi: bool) -> Result<u64> {
        let mut args = vec![
            Cow::Borrowed(collection.as_bytes()),
            Cow::Borrowed(filter.as_bytes()),
        ];
        if multi {
            args.push(Cow::Borrowed(b"MULTI".as_slice()));
        }
        self.run("doc.delete", &args, count)
    }

    pub fn collections(&self) -> Result<Vec<Vec<u8>>> {
        self.run("doc.collections", &[], list)
    }

    /// DOC.DROP: whether the collection existed.
    pub fn drop_collection(&self, collection: &str) -> Result<bool> {
        self.run(
            "doc.drop",
            &[Cow::Borrowed(collection.as_bytes())],
            |v, op| Ok(count(v, op)? == 1),
        )
    }

    /// DOC.FINDANDMODIFY with its arguments after the collection and filter (`UPDATE u`,
    /// `REMOVE`, `SORT p 1`, `NEW`, `UPSERT`, `PROJECT p`): the document, old or new.
    pub fn find_and_modify<A: AsRef<[u8]>>(
        &self,
        collection: &str,
        filter: &str,
        options: &[A],
    ) -> Result<Option<Vec<u8>>> {
        let mut args = vec![
            Cow::Borrowed(collection.as_bytes()),
            Cow::Borrowed(filter.as_bytes()),
        ];
        args.extend(options.iter().map(|a| Cow::Borrowed(a.as_ref())));
        self.run("doc.findandmodify", &args, |v, op| match v {
            Value::Null => Ok(None),
            other => bytes_of(other, op).map(Some),
        })
    }

    /// DOC.INDEX: `keys` are paths, each optionally `:-1` (descending); the index's name.
    pub fn create_index(
        &self,
        collection: &str,
        keys: &[&str],
        unique: bool,
        sparse: bool,
    ) -> Result<Vec<u8>> {
        let mut args = vec![Cow::Borrowed(collection.as_bytes())];
        args.extend(keys.iter().map(|k| Cow::Borrowed(k.as_bytes())));
        if unique {
            args.push(Cow::Borrowed(b"UNIQUE".as_slice()));
        }
        if sparse {
            args.push(Cow::Borrowed(b"SPARSE".as_slice()));
        }
        self.run("doc.index", &args, bytes_of)
    }

    /// DOC.DROPINDEX: whether it existed.
    pub fn drop_index(&self, collection: &str, name: &str) -> Result<bool> {
        let args = [
            Cow::Borrowed(collection.as_bytes()),
            Cow::Borrowed(name.as_bytes()),
        ];
        self.run("doc.dropindex", &args, |v, op| Ok(count(v, op)? == 1))
    }

    /// DOC.INDEXES: each index's spec (JSON text).
    pub fn indexes(&self, collection: &str) -> Result<Vec<Vec<u8>>> {
        self.run("doc.indexes", &[Cow::Borrowed(collection.as_bytes())], list)
    }

    /// DOC.EXPLAIN: the plan report (JSON text).
    pub fn explain(
        &self,
        collection: &str,
        filter: &str,
        options: &FindOptions,
    ) -> Result<Vec<u8>> {
        let args = find_args(collection, filter, options);
        self.run("doc.explain", &args, bytes_of)
    }

    /// DOC.AGGREGATE: the pipeline's output documents (JSON text).
    pub fn aggregate(&self, collection: &str, pipeline: &str) -> Result<Vec<Vec<u8>>> {
        let args = [
            Cow::Borrowed(collection.as_bytes()),
            Cow::Borrowed(pipeline.as_bytes()),
        ];
        self.run("doc.aggregate", &args, list)
    }

    /// A collection's fluent queries (`super::query`).
    pub fn collection(&self, name: &str) -> super::query::Collection<'c> {
        super::query::Collection::new(*self, name)
    }
}

/// DOC.FIND's (and DOC.EXPLAIN's) arguments.
fn find_args<'a>(
    collection: &'a str,
    filter: &'a str,
    options: &'a FindOptions,
) -> Vec<Cow<'a, [u8]>> {
    let mut args: Vec<Cow<'_, [u8]>> = vec![
        Cow::Borrowed(collection.as_bytes()),
        Cow::Borrowed(filter.as_bytes()),
    ];
    for (path, descending) in &options.sort {
        args.push(Cow::Borrowed(b"SORT"));
        args.push(Cow::Borrowed(path.as_bytes()));
        args.push(Cow::Borrowed(if *descending { b"-1" } else { b"1" }));
    }
    if options.skip > 0 {
        args.push(Cow::Borrowed(b"SKIP"));
        args.push(Cow::Owned(options.skip.to_string().into_bytes()));
    }
    if let Some(limit) = options.limit {
        args.push(Cow::Borrowed(b"LIMIT"));
        args.push(Cow::Owned(limit.to_string().into_bytes()));
    }
    if let Some(project) = &options.project {
        args.push(Cow::Borrowed(b"PROJECT"));
        args.push(Cow::Borrowed(project.as_bytes()));
    }
    args
}
