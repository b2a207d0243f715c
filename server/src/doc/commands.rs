//! The document model's command shell (first cut of issue 13): DOC.INSERT GET FIND COUNT
//! UPDATE REPLACE DELETE COLLECTIONS DROP. Documents travel as JSON text (bulk strings);
//! refusals read `ERR DOC.<CMD>: <why>`, naming the argument (JSON errors with line and
//! column). Refused inside MULTI for now (cross-model transactions come with the rest of
//! issue 13).

use serde_json::Value;

use super::collection::{parse_json, FindOptions, Projection, UpdateOptions};
use super::filter::Filter;
use super::update::Update;
use crate::cmd::{command, refusal, Command, NO_KEYS, R, W, WF};
use crate::context::{Call, Outcome};
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
];

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

fn insert(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let name = collection(args)?;
    let documents = (2..args.len())
        .map(|i| json(args, i, &format!("document {}", i - 1)))
        .collect::<Result<Vec<_>, _>>()?;
    let shared = call.shared;
    let (ids, seq) = shared
        .docs
        .insert(&shared.store, name, documents, shared.now_ms())
        .map_err(|e| refusal(args, e))?;
    call.session.note_write(seq);
    Ok(Frame::Array(ids.iter().map(text).collect()))
}

fn get(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let name = collection(args)?;
    // An _id as JSON (`5`, `"abc"`), or else the raw text as a string.
    let id = serde_json::from_slice(args[2])
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(args[2]).into_owned()));
    let found = call
        .shared
        .docs
        .get(&call.shared.store.reader(), name, &id)
        .map_err(|e| refusal(args, e))?;
    Ok(found.as_ref().map_or(Frame::Null, text))
}

fn find(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let name = collection(args)?;
    let filter = filter(args, 2)?;
    let mut options = FindOptions::default();
    let mut i = 3;
    while i < args.len() {
        let word = args[i].to_ascii_uppercase();
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
                    Projection::parse(&json(args, i + 1, "projection")?)
                        .map_err(|e| refusal(args, e))?,
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
    let found = call
        .shared
        .docs
        .find(&call.shared.store.reader(), name, &filter, &options)
        .map_err(|e| refusal(args, e))?;
    Ok(Frame::Array(found.iter().map(text).collect()))
}

fn count(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let name = collection(args)?;
    let filter = filter(args, 2)?;
    let n = call
        .shared
        .docs
        .count(&call.shared.store.reader(), name, &filter)
        .map_err(|e| refusal(args, e))?;
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
    let (outcome, seq) = shared
        .docs
        .update(
            &shared.store,
            name,
            &filter,
            &update,
            options,
            shared.now_ms(),
        )
        .map_err(|e| refusal(args, e))?;
    call.session.note_write(seq);
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
    let (n, seq) = shared
        .docs
        .delete(&shared.store, name, &filter, multi)
        .map_err(|e| refusal(args, e))?;
    call.session.note_write(seq);
    Ok(Frame::Integer(n as i64))
}

fn collections(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let names = call
        .shared
        .docs
        .collections(&call.shared.store.reader())
        .map_err(|e| refusal(args, e))?;
    Ok(Frame::Array(names.into_iter().map(Frame::Bulk).collect()))
}

fn drop(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let name = collection(args)?;
    let shared = call.shared;
    let (existed, seq) = shared
        .docs
        .drop_collection(&shared.store, name)
        .map_err(|e| refusal(args, e))?;
    call.session.note_write(seq);
    Ok(Frame::Integer(existed as i64))
}
