//! Documents (issue 13, MongoDB's model): JSON collections, queries, indexes.
//!
//! Groundwork so far, no command yet: the parts every later piece stands on, pure and tested.
//! - `order`: MongoDB's comparison order across JSON types (what equality, ranges and sorts
//!   use), documented in docs/commands.md when the commands land.
//! - `filter`: the query language's filters, parsed from JSON into a typed tree (every error
//!   names the operator and the path) and matched against a document with MongoDB's rules for
//!   dotted paths, arrays and missing fields.
//! - `update`: the update language (`$set` ... `$currentDate`, replacement documents), parsed
//!   with refusals that name the operator and path, applied all or nothing; `_id` is fixed.
//!
//! Still to come with issue 13: the collection model in the Document namespace, DOC.*
//! commands, projection, aggregation, indexes and the planner, `client.db()`.

pub mod aggregate;
pub mod collection;
pub mod commands;
pub mod filter;
pub mod order;
pub mod update;

#[cfg(test)]
mod tests;
