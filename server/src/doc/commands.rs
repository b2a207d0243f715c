//! The document model's command shell: DOC.INSERT GET FIND COUNT UPDATE REPLACE DELETE
//! FINDANDMODIFY COLLECTIONS DROP INDEX DROPINDEX INDEXES EXPLAIN WATCH AGGREGATE. Documents travel as
//! JSON text (bulk strings); refusals read `ERR DOC.<CMD>: <why>`, naming the argument (JSON
//! errors with line and column). Inside MULTI, the reads and writes join EXEC's transaction
//! with every other model's (DOC.INDEX, DROPINDEX, DROP and WATCH are refused there).

use serde_json::{json, Value};

use super::collection::{
    id_key, parse_json, DocError, FindOptions, Modify, Projection, UpdateOptions, View,
};
use super::filter::Filter;
use super::index::IndexSpec;
use super::update::Update;
use crate::cmd::{command, refusal, Command, NO_KEYS, R, W, WF};
use crate::context::{Call, Outcome, Watched};
use crate::frame::Frame;
use crate::number::parse_i64;

#[rustfmt::skip]
pub static TABLE: &[Command] = &[
    command!("doc.insert", -3, WF, NO_KEYS, "document", "Inserts JSON documents; returns their _ids.", insert),
    command!("doc.get", 3, R, NO_KEYS, "document", "Returns the document with an _id.", get),
    command!("doc.find", -3, R, NO_KEYS, "document", "Returns the documents a filter matches.", find),
    command!("doc.count", 3, R, NO_KEYS, "document", "Counts the documents a filter matches.", count),
    command!("doc.update", -4, W, NO_KEYS, "document", "Updates the first (or every) matching document.", update),
    command!("doc.replace", -4, W, NO_KEYS, "document", "Replaces the first matching document.", replace),
    command!("doc.delete", -3, W, NO_KEYS, "document", "Deletes the first (or every) matching document.", delete),
    command!("doc.collections", 1, R, NO_KEYS, "document", "Lists the collections.", collections),
    command!("doc.drop", 2, W, NO_KEYS, "document", "Drops a collection and its documents.", drop),
    command!("doc.findandmodify", -4, W, NO_KEYS, "document", "Updates or removes one document and returns it.", find_and_modify),
    command!("doc.index", -3, W, NO_KEYS, "document", "Creates a secondary index (single-field or compound).", index),
    command!("doc.dropindex", 3, W, NO_KEYS, "document", "Drops a secondary index by name.", drop_index),
    command!("doc.indexes", 2, R, NO_KEYS, "document", "Lists a collection's indexes.", indexes),
    command!("doc.explain", -3, R, NO_KEYS, "document", "Shows the plan a find uses and what it examined.", explain),
    command!("doc.watch", -3, R, NO_KEYS, "document", "Watches documents: EXEC aborts if one changed.", watch),
    command!("doc.aggregate", 3, R, NO_KEYS, "document", "Runs an aggregation pipeline over a collection.", aggregate),
];

/// The commands refused inside MULTI (long, chunked work, or WATCH's own rule).
pub const NOT_IN_MULTI: &[&str] = &["doc.index", "doc.dropindex", "doc.drop", "doc.watch"];

const NAME_BYTES_MAX: usize = 120;

fn collection<'a>(args: &[&'a [u8]]) -> Result<&'a [u8], Frame> {
    let name = args[1];
    if name.is_empty() || name.len() > NAME_BYTES_MAX || name.starts_with(b"$") {
        return Err(refusal(
            args,
            format!("collection name must be 1 to {NAME_BYTES_MAX} bytes, not starting with $"),
        ));
    }
    Ok(name)
}

fn json(args: &[&[u8]], at: usize, what: &str) -> Result<Value, Frame> {
    parse_json(args[at], what).map_err(|e| refusal(args, e))
}

fn filter(args: &[&[u8]], at: usize) -> Result<Filter, Frame> {
    Filter::parse(&json(args, at, "filter")?).map_err(|e| refusal(args, format!("filter: {e}")))
}

fn text(value: &Value) -> Frame {
    Frame::Bulk(serde_json::to_vec(value).expect("JSON"))
}

fn refused<'a>(args: &'a [&'a [u8]]) -> impl Fn(DocError) -> Frame + 'a {
    move |e| refusal(args, e)
}

/// Parses `_id` text: JSON (`5`, `"abc"`), or else the raw text as a string.
fn id_arg(arg: &[u8]) -> Value {
    serde_json::from_slice(arg)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(arg).into_owned()))
}

fn insert(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let name = collection(args)?;
    let shared = call.shared;
    let prepared = shared
        .docs
        .prepare_insert(name, &args[2..], shared.now_ms())
        .map_err(refused(args))?;
    let ids = call.model_write(|txn| {
        shared
            .docs
            .insert_prepared(shared.store.reader(), txn, name, prepared)
            .map_err(refused(args))
    })?;
    Ok(Frame::Array(ids.iter().map(text).collect()))
}

fn get(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let name = collection(args)?;
    let view = View::in_transaction(call.read(), call.transaction());
    let found = call
        .shared
        .docs
        .get(&view, name, &id_arg(args[2]))
        .map_err(refused(args))?;
    Ok(found.map_or(Frame::Null, Frame::Bulk))
}

/// FIND's options (and EXPLAIN's, FINDANDMODIFY's SORT and PROJECT), from `from` on;
/// `extra` handles words of the caller's own (returns how many arguments it took).
fn find_options(
    args: &[&[u8]],
    from: usize,
    mut extra: impl FnMut(&[u8], usize) -> Result<Option<usize>, Frame>,
) -> Result<FindOptions, Frame> {
    let mut options = FindOptions::default();
    let mut i = from;
    while i < args.len() {
        let word = args[i].to_ascii_uppercase();
        if let Some(taken) = extra(&word, i)? {
            i += taken;
            continue;
        }
        let value = args.get(i + 1).ok_or_else(|| {
            refusal(
                args,
                format!("{} needs a value", String::from_utf8_lossy(&word)),
            )
        })?;
        match word.as_slice() {
            b"SORT" => {
                let direction = args.get(i + 2).and_then(|d| parse_i64(d));
                let descending = match direction {
                    Some(1) => false,
                    Some(-1) => true,
                    _ => return Err(refusal(args, "SORT needs a path and 1 or -1")),
                };
                options
                    .sort
                    .push((String::from_utf8_lossy(value).into_owned(), descending));
                i += 3;
                continue;
            }
            b"SKIP" | b"LIMIT" => {
                let n = parse_i64(value).filter(|n| *n >= 0).ok_or_else(|| {
                    refusal(
                        args,
                        format!(
                            "{} must be a non-negative integer",
                            String::from_utf8_lossy(&word)
                        ),
                    )
                })? as usize;
                if word == b"SKIP" {
                    options.skip = n;
                } else {
                    options.limit = Some(n);
                }
            }
            b"PROJECT" => {
                options.projection = Some(
                    Projection::parse(&json(args, i + 1, "projection")?).map_err(refused(args))?,
                );
            }
            _ => {
                return Err(refusal(
                    args,
                    format!("unknown option '{}'", String::from_utf8_lossy(args[i])),
                ))
            }
        }
        i += 2;
    }
    Ok(options)
}

fn find(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let name = collection(args)?;
    let filter = filter(args, 2)?;
    let options = find_options(args, 3, |_, _| Ok(None))?;
    let view = View::in_transaction(call.read(), call.transaction());
    let (found, _) = call
        .shared
        .docs
        .find(&view, name, &filter, &options)
        .map_err(refused(args))?;
    Ok(Frame::Array(found.into_iter().map(Frame::Bulk).collect()))
}

fn explain(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let name = collection(args)?;
    let filter = filter(args, 2)?;
    let options = find_options(args, 3, |_, _| Ok(None))?;
    let view = View::in_transaction(call.read(), call.transaction());
    let (found, examined) = call
        .shared
        .docs
        .find(&view, name, &filter, &options)
        .map_err(refused(args))?;
    let mut plans = examined.plans.iter().map(|plan| plan.describe());
    let winning = match examined.id_lookup {
        Some(keys) => json!({"stage": "IDHACK", "keys": keys}),
        None => plans.next().unwrap_or(json!({"stage": "EOF"})),
    };
    let report = json!({
        "queryPlanner": {
            "winningPlan": winning,
            "rejectedPlans": plans.collect::<Vec<_>>(),
        },
        "executionStats": {
            "nReturned": found.len(),
            "totalKeysExamined": examined.keys,
            "totalDocsExamined": examined.documents,
        },
    });
    Ok(text(&report))
}

fn count(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let name = collection(args)?;
    let filter = filter(args, 2)?;
    let view = View::in_transaction(call.read(), call.transaction());
    let n = call
        .shared
        .docs
        .count(&view, name, &filter)
        .map_err(refused(args))?;
    Ok(Frame::Integer(n as i64))
}

fn flags(args: &[&[u8]], from: usize, allowed: &[&str]) -> Result<UpdateOptions, Frame> {
    let mut options = UpdateOptions::default();
    for arg in &args[from..] {
        let word = String::from_utf8_lossy(arg).to_ascii_uppercase();
        match word.as_str() {
            "UPSERT" if allowed.contains(&"UPSERT") => options.upsert = true,
            "MULTI" if allowed.contains(&"MULTI") => options.multi = true,
            _ => return Err(refusal(args, format!("unknown option '{word}'"))),
        }
    }
    Ok(options)
}

fn run_update(
    call: &mut Call<'_, '_>,
    args: &[&[u8]],
    update: Update,
    options: UpdateOptions,
) -> Outcome {
    let name = collection(args)?;
    let filter = filter(args, 2)?;
    let shared = call.shared;
    let now_ms = shared.now_ms();
    let outcome = call.model_write(|txn| {
        shared
            .docs
            .update(
                shared.store.reader(),
                txn,
                name,
                &filter,
                &update,
                options,
                now_ms,
            )
            .map_err(refused(args))
    })?;
    Ok(Frame::Array(vec![
        Frame::Integer(outcome.matched as i64),
        Frame::Integer(outcome.modified as i64),
        outcome.upserted.as_ref().map_or(Frame::Null, text),
    ]))
}

fn update(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let update = Update::parse(&json(args, 3, "update")?).map_err(|e| refusal(args, e))?;
    if matches!(update, Update::Replace(_)) {
        return Err(refusal(
            args,
            "the update has no operator: use DOC.REPLACE to replace a document",
        ));
    }
    let options = flags(args, 4, &["UPSERT", "MULTI"])?;
    run_update(call, args, update, options)
}

fn replace(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let document = json(args, 3, "replacement")?;
    let update = Update::parse(&document).map_err(|e| refusal(args, e))?;
    if !matches!(update, Update::Replace(_)) {
        return Err(refusal(args, "a replacement may not hold update operators"));
    }
    let options = flags(args, 4, &["UPSERT"])?;
    run_update(call, args, update, options)
}

fn delete(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let name = collection(args)?;
    let filter = filter(args, 2)?;
    let multi = flags(args, 3, &["MULTI"])?.multi;
    let shared = call.shared;
    let n = call.model_write(|txn| {
        shared
            .docs
            .delete(shared.store.reader(), txn, name, &filter, multi)
            .map_err(refused(args))
    })?;
    Ok(Frame::Integer(n as i64))
}

/// `DOC.FINDANDMODIFY coll filter (UPDATE update | REMOVE) [SORT path 1|-1 ...] [NEW]
/// [UPSERT] [PROJECT projection]`.
fn find_and_modify(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let name = collection(args)?;
    let filter = filter(args, 2)?;
    let (mut update, mut remove, mut new, mut upsert) = (None, false, false, false);
    let options = find_options(args, 3, |word, at| {
        Ok(match word {
            b"UPDATE" => {
                let parsed =
                    Update::parse(&json(args, at + 1, "update")?).map_err(|e| refusal(args, e))?;
                update = Some(parsed);
                Some(2)
            }
            b"REMOVE" => {
                remove = true;
                Some(1)
            }
            b"NEW" => {
                new = true;
                Some(1)
            }
            b"UPSERT" => {
                upsert = true;
                Some(1)
            }
            _ => None,
        })
    })?;
    if options.skip > 0 || options.limit.is_some() {
        return Err(refusal(
            args,
            "SKIP and LIMIT do not apply: one document is modified",
        ));
    }
    let modify = match (update, remove) {
        (Some(update), false) => Modify::Update { update, upsert },
        (None, true) if !upsert && !new => Modify::Remove,
        (None, true) => return Err(refusal(args, "REMOVE takes neither NEW nor UPSERT")),
        _ => {
            return Err(refusal(
                args,
                "needs exactly one of UPDATE update and REMOVE",
            ))
        }
    };
    let shared = call.shared;
    let now_ms = shared.now_ms();
    let found = call.model_write(|txn| {
        shared
            .docs
            .find_and_modify(
                shared.store.reader(),
                txn,
                name,
                &filter,
                options.sort.clone(),
                &modify,
                new,
                options.projection.as_ref(),
                now_ms,
            )
            .map_err(refused(args))
    })?;
    Ok(found.as_ref().map_or(Frame::Null, text))
}

fn collections(call: &mut Call<'_, '_>, _args: &[&[u8]]) -> Outcome {
    let names = call.shared.docs.collections();
    Ok(Frame::Array(names.into_iter().map(Frame::Bulk).collect()))
}

fn drop(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let name = collection(args)?;
    let shared = call.shared;
    let (existed, seq) = shared
        .docs
        .drop_collection(&shared.store, name)
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::Integer(existed as i64))
}

/// `DOC.INDEX coll key [key ...] [UNIQUE] [SPARSE] [NAME name]`: each key a dotted path,
/// optionally `:1` or `:-1` (descending), or one JSON key document (`{"a": 1, "b": -1}`).
fn index(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let name = collection(args)?;
    let mut fields: Vec<(String, bool)> = Vec::new();
    let (mut unique, mut sparse, mut index_name) = (false, false, None);
    let mut i = 2;
    while i < args.len() {
        let arg = args[i];
        match arg.to_ascii_uppercase().as_slice() {
            b"UNIQUE" => unique = true,
            b"SPARSE" => sparse = true,
            b"NAME" => {
                let value = args
                    .get(i + 1)
                    .ok_or_else(|| refusal(args, "NAME needs a value"))?;
                index_name = Some(String::from_utf8_lossy(value).into_owned());
                i += 1;
            }
            _ if arg.starts_with(b"{") => {
                let Value::Object(keys) = json(args, i, "index key")? else {
                    unreachable!("starts with {{")
                };
                for (path, direction) in keys {
                    match direction.as_i64() {
                        Some(1) => fields.push((path, false)),
                        Some(-1) => fields.push((path, true)),
                        _ => {
                            return Err(refusal(
                                args,
                                format!("index key '{path}' must be 1 or -1, not {direction}"),
                            ))
                        }
                    }
                }
            }
            _ => {
                let text = String::from_utf8_lossy(arg).into_owned();
                let (path, descending) = match text.rsplit_once(':') {
                    Some((path, "1")) => (path.to_string(), false),
                    Some((path, "-1")) => (path.to_string(), true),
                    _ => (text, false),
                };
                if path.is_empty() || path.starts_with('$') || path.split('.').any(str::is_empty) {
                    return Err(refusal(args, format!("'{path}' is not a field path")));
                }
                fields.push((path, descending));
            }
        }
        i += 1;
    }
    if fields.is_empty() {
        return Err(refusal(args, "an index needs at least one field"));
    }
    if fields.len() > 32 {
        return Err(refusal(args, "an index has at most 32 fields"));
    }
    if fields.iter().any(|(p, _)| p == "_id") && fields.len() == 1 {
        return Err(refusal(args, "_id is indexed already (the _id_ index)"));
    }
    let spec = IndexSpec {
        name: index_name.unwrap_or_else(|| IndexSpec::default_name(&fields)),
        fields,
        unique,
        sparse,
        ready: false,
        dropping: false,
    };
    let shared = call.shared;
    let (index_name, _, seq) = shared
        .docs
        .create_index(&shared.store, name, spec)
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::Bulk(index_name.into_bytes()))
}

fn drop_index(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let name = collection(args)?;
    let shared = call.shared;
    let (existed, seq) = shared
        .docs
        .drop_index(&shared.store, name, &String::from_utf8_lossy(args[2]))
        .map_err(refused(args))?;
    call.session.note_write(seq);
    Ok(Frame::Integer(existed as i64))
}

fn indexes(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let name = collection(args)?;
    let specs = call.shared.docs.index_specs(name);
    Ok(Frame::Array(specs.iter().map(text).collect()))
}

/// `DOC.WATCH coll id [id ...]`: EXEC aborts if one of these documents changed (or appeared,
/// or went) since.
fn watch(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let name = collection(args)?;
    for arg in &args[2..] {
        let key = id_key(&id_arg(arg));
        let view = View::committed(call.read());
        let version = call
            .shared
            .docs
            .version(&view, name, &key)
            .map_err(refused(args))?;
        call.session.watched.push(Watched {
            key,
            version,
            touches: 0,
            document: Some(name.to_vec()),
        });
    }
    Ok(Frame::ok())
}

/// `DOC.AGGREGATE coll pipeline`: the pipeline's output documents.
fn aggregate(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let name = collection(args)?;
    let pipeline = super::aggregate::Pipeline::parse(&json(args, 2, "pipeline")?)
        .map_err(|e| refusal(args, format!("pipeline: {e}")))?;
    let view = View::in_transaction(call.read(), call.transaction());
    let out = call
        .shared
        .docs
        .aggregate(&view, name, &pipeline)
        .map_err(refused(args))?;
    Ok(Frame::Array(out.iter().map(text).collect()))
}
