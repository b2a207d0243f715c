//! MongoDB's aggregation pipeline, first cut: a JSON array of stages, each an object with one
//! field, its operator. Parsed once into a [`Pipeline`] (every refusal names the stage's number,
//! counting from 1, and its operator), then run over an iterator of documents. Pure: no storage;
//! the caller scans (or, for a [`Pipeline::leading_match`], looks up through an index) and hands
//! the documents in.
//!
//! # Layout
//! - this file: [`Pipeline`] (parse, [`Pipeline::leading_match`], run), the limits, the error,
//!   and the small stages' parsing (`$skip`, `$limit`, `$unwind`, `$count`).
//! - `expr`: expressions, the path helpers the stages share, and the size estimate.
//! - `project`, `group`, `sort`: those stages, parsed and applied.
//! - `run`: a run: each stage's state, documents pushed through them, the result.
//!
//! # Stages
//! - `$match`: a [`Filter`], as a find's.
//! - `$project`: inclusion (`{a: 1, "b.c": 1}`, `{b: {c: 1}}`), exclusion (`{a: 0}`), and
//!   computed fields (`{x: "$a.b"}`, `{y: "text"}`, `{z: {$literal: 1}}`) which count as
//!   inclusions; exclusion never mixes with the others, except `_id: 0`. `_id` is kept unless
//!   `_id: 0`, and may be computed. Included fields keep the document's order, computed ones
//!   follow in the specification's order; `_id` comes first.
//! - `$group`: `_id` an expression (`null`, `"$path"`, an object of expressions for a compound
//!   key); accumulators `$sum`, `$avg`, `$min`, `$max`, `$count` (`{$count: {}}`), `$push`,
//!   `$addToSet`, `$first`, `$last`. Keys are equal as the order's equality (`1` and `1.0` are
//!   one group). Groups come out in the order of their first document, where MongoDB leaves the
//!   order unspecified.
//! - `$sort`: `{path: 1 | -1, ...}` in MongoDB's order across types (an array sorts by its
//!   smallest element ascending, its largest descending); stable, so ties keep their input
//!   order. Followed by `$limit n`, it keeps only the best `n` as it goes.
//! - `$skip n`, `$limit n` (n > 0).
//! - `$unwind`: `"$path"` or `{path, includeArrayIndex, preserveNullAndEmptyArrays}`: a document
//!   per element of the array at the path; a non-array value passes as a one-element array; a
//!   missing, null or empty one drops the document, or, with preserve, passes it (an empty array
//!   is removed from it), its index null.
//! - `$count`: `{$count: "name"}`: one document `{name: n}`, none when no document came in.
//!
//! Expressions are field paths (`"$a.b"`, which over an array of objects yields the array of
//! their `b`s), `"$$ROOT"`/`"$$CURRENT"`, literals, `{$literal: v}`, and objects and arrays of
//! expressions; no operators (`$multiply`, `$concat` ...) yet. A path that reaches nothing is
//! missing: an object expression leaves the field out, an array expression holds null.
//!
//! Accumulators, as MongoDB's: `$sum` adds numbers and ignores anything else (0 when none), an
//! integer result while it fits in i64 and no float was added, else a float (MongoDB promotes the
//! same way; summing integers exactly as i128 first, we differ only where MongoDB's running sum
//! overflowed and came back); `$avg` is a float, null when no number came; `$min`/`$max` ignore
//! null and missing values and compare in the order across types; `$push`/`$addToSet` skip
//! missing values (`$addToSet` keeps the first of equal values, in first-appearance order);
//! `$first`/`$last` take null for a missing value. A float sum that overflows is null (JSON has
//! no infinity).
//!
//! # Limits
//! Each is a named constant, checked as the data grows, and tested (with small [`Limits`]):
//! - [`STAGES_MAX`] stages (MongoDB's limit), whose `$match`es hold at most [`REGEXES_MAX`]
//!   `$regex` patterns between them (a filter's limit, for the pipeline as a whole).
//! - The values one stage computes from one document (a `$project`'s computed fields, a
//!   `$group`'s key and accumulator arguments) are at most [`DOCUMENT_BYTES_MAX`], so an
//!   expression naming one big field many times cannot multiply it.
//! - A `$group` holds at most [`GROUPS_MAX`] groups, a `$push`/`$addToSet` array at most
//!   [`DOCUMENT_BYTES_MAX`], and a group's document at most that too.
//! - A blocking stage (`$group`: keys and accumulated values; `$sort`: the documents it holds)
//!   holds at most [`BLOCKING_STAGE_BYTES_MAX`], MongoDB's limit for a stage without
//!   `allowDiskUse`; there is no spilling to disk.
//! - The result is at most [`RESULT_BYTES_MAX`] (it is returned whole, not through a cursor), so
//!   an `$unwind` of a large array cannot grow without bound.
//!
//! Sizes are JSON text's, estimated without printing (numbers count 8 bytes).
//!
//! # Running
//! Documents are pushed one at a time through the stages: `$match`, `$project`, `$unwind`,
//! `$skip` and `$limit` pass each on at once; `$group`, `$sort` and `$count` hold what they need
//! and pass their output on once the input ends. When a `$limit` has only passing stages before
//! it, the input stops being read once it is reached.

mod expr;
mod group;
mod project;
mod run;
mod sort;

use std::fmt;

use serde_json::Value;

use super::collection::DOCUMENT_BYTES_MAX;
use super::filter::{Filter, REGEXES_MAX};
use group::Group;
use project::Project;
pub use run::Running;
use sort::{parse_sort, SortKey};

/// The most stages a pipeline may have (MongoDB's limit).
pub const STAGES_MAX: usize = 1000;
/// The most groups one `$group` may hold.
pub const GROUPS_MAX: usize = 1_000_000;
/// The most a blocking stage (`$group`, `$sort`) may hold, in bytes of JSON.
pub const BLOCKING_STAGE_BYTES_MAX: usize = 100 << 20;
/// The most a pipeline's result may hold, in bytes of JSON.
pub const RESULT_BYTES_MAX: usize = 256 << 20;

/// The limits a run checks; [`Limits::DEFAULT`] is the named constants, and tests use small ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub groups_max: usize,
    pub blocking_stage_bytes_max: usize,
    pub result_bytes_max: usize,
    /// What one stage computes from one document, and an accumulator's array.
    pub computed_bytes_max: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        groups_max: GROUPS_MAX,
        blocking_stage_bytes_max: BLOCKING_STAGE_BYTES_MAX,
        result_bytes_max: RESULT_BYTES_MAX,
        computed_bytes_max: DOCUMENT_BYTES_MAX,
    };
}

/// Why a pipeline was refused, or failed as it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineError {
    /// The stage's number, counting from 1; none for the pipeline as a whole.
    pub stage: Option<usize>,
    /// The stage's operator (`$group`), when it has one.
    pub operator: Option<String>,
    pub message: String,
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.stage, &self.operator) {
            (Some(stage), Some(operator)) => {
                write!(f, "stage {stage} ({operator}): {}", self.message)
            }
            (Some(stage), None) => write!(f, "stage {stage}: {}", self.message),
            (None, _) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for PipelineError {}

/// A parsed pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    stages: Vec<Stage>,
    /// The first `$limit` with only passing stages before it: once it is reached, no further
    /// input can change the result.
    input_limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum Stage {
    Match(Filter),
    Project(Project),
    Group(Group),
    Sort(Vec<SortKey>),
    Skip(usize),
    Limit(usize),
    Unwind(Unwind),
    Count(String),
}

impl Stage {
    fn operator(&self) -> &'static str {
        match self {
            Stage::Match(_) => "$match",
            Stage::Project(_) => "$project",
            Stage::Group(_) => "$group",
            Stage::Sort(_) => "$sort",
            Stage::Skip(_) => "$skip",
            Stage::Limit(_) => "$limit",
            Stage::Unwind(_) => "$unwind",
            Stage::Count(_) => "$count",
        }
    }

    /// Whether the stage passes each document on at once (or drops it), holding nothing.
    fn passes(&self) -> bool {
        !matches!(self, Stage::Group(_) | Stage::Sort(_) | Stage::Count(_))
    }
}

impl Pipeline {
    /// Parses a pipeline: a JSON array of stages.
    pub fn parse(pipeline: &Value) -> Result<Pipeline, PipelineError> {
        let Value::Array(specs) = pipeline else {
            return Err(whole("a pipeline must be a JSON array of stages"));
        };
        if specs.len() > STAGES_MAX {
            return Err(whole(format!(
                "a pipeline of {} stages is over the limit of {STAGES_MAX}",
                specs.len()
            )));
        }
        let mut stages = Vec::with_capacity(specs.len());
        let mut patterns = 0;
        for (index, spec) in specs.iter().enumerate() {
            let number = index + 1;
            let (operator, argument) = match spec {
                Value::Object(fields) if fields.len() == 1 => fields.iter().next().expect("one"),
                _ => {
                    return Err(PipelineError {
                        stage: Some(number),
                        operator: None,
                        message: "a stage must be an object with one field, its operator".into(),
                    })
                }
            };
            let at = |message: String| PipelineError {
                stage: Some(number),
                operator: Some(operator.clone()),
                message,
            };
            let stage = parse_stage(operator, argument).map_err(at)?;
            if let Stage::Match(filter) = &stage {
                patterns += filter.regex_count();
                if patterns > REGEXES_MAX {
                    return Err(at(format!(
                        "the pipeline holds {patterns} $regex patterns, over the limit of \
                         {REGEXES_MAX}"
                    )));
                }
            }
            stages.push(stage);
        }
        let input_limit = stages
            .iter()
            .position(|s| matches!(s, Stage::Limit(_)) || !s.passes())
            .filter(|&i| matches!(stages[i], Stage::Limit(_)));
        Ok(Pipeline {
            stages,
            input_limit,
        })
    }

    /// The first stage's filter when it is a `$match`, so the caller can find its documents
    /// through an index. [`Pipeline::run`] still applies it.
    pub fn leading_match(&self) -> Option<&Filter> {
        match self.stages.first() {
            Some(Stage::Match(filter)) => Some(filter),
            _ => None,
        }
    }

    /// The top-level fields of its input documents the pipeline reads, when it reads only
    /// some: its stages up to the first `$group` (after which documents are the group's) are
    /// `$match`, `$sort`, `$skip` and `$limit`, and nothing reads `$$ROOT`. Documents holding
    /// only these fields give the same result as the whole documents, so the caller may parse
    /// just them (`doc::partial`). `None`: the whole documents.
    pub fn input_fields(&self) -> Option<Vec<String>> {
        let mut fields = Vec::new();
        for stage in &self.stages {
            match stage {
                Stage::Match(filter) => filter.top_level_fields(&mut fields),
                Stage::Sort(keys) => keys.iter().for_each(|k| k.top_level_field(&mut fields)),
                Stage::Skip(_) | Stage::Limit(_) => {}
                Stage::Group(group) => {
                    return group.top_level_fields(&mut fields).then_some(fields)
                }
                Stage::Project(_) | Stage::Unwind(_) | Stage::Count(_) => return None,
            }
        }
        None
    }

    /// Runs the pipeline over `documents` (JSON objects) within [`Limits::DEFAULT`].
    pub fn run(
        &self,
        documents: impl IntoIterator<Item = Value>,
    ) -> Result<Vec<Value>, PipelineError> {
        self.run_within(documents, &Limits::DEFAULT)
    }

    /// Runs the pipeline within `limits` (tests use small ones).
    pub fn run_within(
        &self,
        documents: impl IntoIterator<Item = Value>,
        limits: &Limits,
    ) -> Result<Vec<Value>, PipelineError> {
        run::run(self, documents, limits)
    }

    /// Starts a run within [`Limits::DEFAULT`] that the caller feeds one document at a time
    /// as it reads them ([`Running::push`]), then finishes: what [`Pipeline::run`] does over
    /// an iterator, for a caller that cannot hand one out (a scan that visits documents
    /// under a lock).
    pub fn start(&self) -> Running<'_> {
        Running::start(self, &Limits::DEFAULT)
    }

    /// [`Pipeline::start`] within `limits` (tests use small ones).
    pub fn start_within<'a>(&'a self, limits: &'a Limits) -> Running<'a> {
        Running::start(self, limits)
    }
}

fn whole(message: impl Into<String>) -> PipelineError {
    PipelineError {
        stage: None,
        operator: None,
        message: message.into(),
    }
}

fn parse_stage(operator: &str, argument: &Value) -> Result<Stage, String> {
    Ok(match operator {
        "$match" => Stage::Match(Filter::parse(argument).map_err(|e| e.to_string())?),
        "$project" => Stage::Project(Project::parse(argument)?),
        "$group" => Stage::Group(Group::parse(argument)?),
        "$sort" => Stage::Sort(parse_sort(argument)?),
        "$skip" => {
            Stage::Skip(count_argument(argument).ok_or("needs a non-negative integer".to_string())?)
        }
        "$limit" => match count_argument(argument) {
            Some(n) if n > 0 => Stage::Limit(n),
            _ => return Err("needs a positive integer".into()),
        },
        "$unwind" => Stage::Unwind(Unwind::parse(argument)?),
        "$count" => Stage::Count(parse_count(argument)?),
        _ => {
            return Err(
                "unknown stage (supported: $match $project $group $sort $skip $limit $unwind \
                 $count)"
                    .into(),
            )
        }
    })
}

/// A non-negative integer argument (`5` or `5.0`, as MongoDB takes any integral number).
fn count_argument(argument: &Value) -> Option<usize> {
    let Value::Number(n) = argument else {
        return None;
    };
    let whole = match n.as_u64() {
        Some(n) => n,
        None => {
            let f = n.as_f64()?;
            if f < 0.0 || f.fract() != 0.0 || f >= u64::MAX as f64 {
                return None;
            }
            f as u64
        }
    };
    usize::try_from(whole).ok()
}

/// A dotted path's parts; refuses an empty one or an empty part.
fn path_parts(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(format!("'{path}' is not a valid field path"));
    }
    Ok(path.split('.').map(str::to_string).collect())
}

/// A field name that is a plain name: not empty, no `$` first, no `.`.
fn plain_name(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} must be a non-empty string"));
    }
    if name.starts_with('$') {
        return Err(format!("{what} '{name}' cannot start with '$'"));
    }
    if name.contains('.') {
        return Err(format!("{what} '{name}' cannot contain '.'"));
    }
    Ok(())
}

/// `$unwind`'s arguments.
#[derive(Debug, Clone, PartialEq)]
struct Unwind {
    /// The array's path, through objects only (as MongoDB's `$unwind` reads it).
    path: Vec<String>,
    /// `includeArrayIndex`: where to put the element's index (null for a non-array).
    index_field: Option<Vec<String>>,
    /// `preserveNullAndEmptyArrays`: pass documents whose array is missing, null or empty.
    preserve_null_and_empty: bool,
}

impl Unwind {
    fn parse(spec: &Value) -> Result<Unwind, String> {
        let field_path = |value: &Value| match value {
            Value::String(path) if path.starts_with('$') => path_parts(&path[1..]),
            _ => Err("the path must be a string starting with '$', as \"$sizes\"".to_string()),
        };
        let Value::Object(options) = spec else {
            return Ok(Unwind {
                path: field_path(spec)?,
                index_field: None,
                preserve_null_and_empty: false,
            });
        };
        let mut unwind = Unwind {
            path: field_path(options.get("path").unwrap_or(&Value::Null))?,
            index_field: None,
            preserve_null_and_empty: false,
        };
        for (option, value) in options {
            match (option.as_str(), value) {
                ("path", _) => {}
                ("includeArrayIndex", Value::String(name)) if !name.starts_with('$') => {
                    unwind.index_field = Some(path_parts(name)?)
                }
                ("includeArrayIndex", _) => {
                    return Err(
                        "includeArrayIndex must be a field name not starting with '$'".into(),
                    )
                }
                ("preserveNullAndEmptyArrays", Value::Bool(on)) => {
                    unwind.preserve_null_and_empty = *on
                }
                ("preserveNullAndEmptyArrays", _) => {
                    return Err("preserveNullAndEmptyArrays must be true or false".into())
                }
                (other, _) => return Err(format!("unknown option {other}")),
            }
        }
        Ok(unwind)
    }
}

fn parse_count(spec: &Value) -> Result<String, String> {
    let Value::String(name) = spec else {
        return Err("needs the output field's name, a string".into());
    };
    plain_name(name, "the count field")?;
    Ok(name.clone())
}

#[cfg(test)]
mod tests;
