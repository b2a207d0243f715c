//! Documents (issue 13, MongoDB's model): JSON collections, queries, indexes, transactions.
//!
//! - `order`: MongoDB's comparison order across JSON types (equality, ranges, sorts).
//! - `filter`: the query language, parsed once into a typed tree (every error names the
//!   operator and the path), matched with MongoDB's rules for dotted paths, arrays and missing
//!   fields.
//! - `update`: the update language (`$set` ... `$currentDate`, replacements), applied all or
//!   nothing; `_id` is fixed.
//! - `keys`: the Document namespace's records and the order-preserving key encoding.
//! - `index`: index specs, the entries a document yields, and the catalog (the engine's
//!   observer of the namespace: names, counts, each index's entries in order).
//! - `planner`: index ranges and sorts from a filter, costs, the choice DOC.EXPLAIN shows.
//! - `collection`: the model's operations, reading and writing through a transaction (its
//!   own, or EXEC's), index builds and drops.
//! - `aggregate`: the aggregation pipeline, pure, over an iterator of documents.
//! - `partial`: a stored document parsed for some top-level fields only (what a pipeline reads).
//! - `commands`: the DOC.* command shell.

pub mod aggregate;
pub mod collection;
pub mod commands;
pub mod filter;
pub mod index;
pub mod keys;
pub mod order;
pub mod partial;
pub mod planner;
pub mod update;

#[cfg(test)]
mod tests;
