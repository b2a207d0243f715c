//! Running a pipeline: documents pushed one at a time through the stages' states.

use serde_json::{Map, Number, Value};

use super::expr::{json_bytes, nested, remove_nested, set_nested, take_nested};
use super::group::Groups;
use super::sort::Sorting;
use super::{whole, Limits, Pipeline, PipelineError, Stage, Unwind};

/// Runs `pipeline` over `documents` within `limits`: each document is pushed through the
/// stages; then, in order, each holding stage passes on what it holds.
pub(super) fn run(
    pipeline: &Pipeline,
    documents: impl IntoIterator<Item = Value>,
    limits: &Limits,
) -> Result<Vec<Value>, PipelineError> {
    let mut running = Running::start(pipeline, limits);
    for document in documents {
        if !running.push(document)? {
            break;
        }
    }
    running.finish()
}

/// A run under way, fed one input document at a time ([`Running::push`]) by a caller that
/// produces them as it goes (a scan hands each document in as it reads it, so a `$group`
/// accumulates without the collection being held first), then [`Running::finish`]ed.
pub struct Running<'a> {
    pipeline: &'a Pipeline,
    run: Run<'a>,
    /// Input documents pushed so far.
    pushed: usize,
}

impl<'a> Running<'a> {
    pub(super) fn start(pipeline: &'a Pipeline, limits: &'a Limits) -> Running<'a> {
        let run = Run {
            stages: &pipeline.stages,
            states: pipeline
                .stages
                .iter()
                .enumerate()
                .map(|(i, stage)| State::start(stage, pipeline.stages.get(i + 1)))
                .collect(),
            limits,
            result: Vec::new(),
            result_bytes: 0,
        };
        Running {
            pipeline,
            run,
            pushed: 0,
        }
    }

    /// Pushes the next input document (a JSON object) through the stages; false once the
    /// pipeline wants no more input (a `$limit` behind passing stages is reached), after which
    /// further documents are ignored.
    pub fn push(&mut self, document: Value) -> Result<bool, PipelineError> {
        if !self.wants_more() {
            return Ok(false);
        }
        self.pushed += 1;
        if !document.is_object() {
            return Err(whole(format!(
                "input document {} is not a JSON object",
                self.pushed
            )));
        }
        self.run.push(0, document)?;
        Ok(self.wants_more())
    }

    fn wants_more(&self) -> bool {
        match self.pipeline.input_limit {
            Some(limit) => !matches!(self.run.states[limit], State::Left(0)),
            None => true,
        }
    }

    /// Ends the input: each holding stage, in order, passes on what it holds; the result.
    pub fn finish(mut self) -> Result<Vec<Value>, PipelineError> {
        let limits = self.run.limits;
        let run = &mut self.run;
        for index in 0..self.pipeline.stages.len() {
            let held = std::mem::replace(&mut run.states[index], State::Done);
            let output = held
                .finish(&self.pipeline.stages[index], limits)
                .map_err(|message| run.error(index, message))?;
            for document in output {
                run.push(index + 1, document)?;
            }
        }
        Ok(self.run.result)
    }
}

/// A stage's state during a run.
#[derive(Debug)]
enum State {
    /// `$match`, `$project`, `$unwind`: nothing held.
    Passing,
    /// `$skip` and `$limit`: documents still to skip or to pass.
    Left(usize),
    Groups(Groups),
    Sorting(Sorting),
    Counted(u64),
    /// Finished: its output has been pushed on.
    Done,
}

impl State {
    fn start(stage: &Stage, next: Option<&Stage>) -> State {
        match stage {
            Stage::Skip(n) | Stage::Limit(n) => State::Left(*n),
            Stage::Group(_) => State::Groups(Groups::default()),
            Stage::Sort(_) => State::Sorting(Sorting::new(match next {
                Some(Stage::Limit(n)) => Some(*n),
                _ => None,
            })),
            Stage::Count(_) => State::Counted(0),
            Stage::Match(_) | Stage::Project(_) | Stage::Unwind(_) => State::Passing,
        }
    }

    /// What a holding stage passes on once the input ends.
    fn finish(self, stage: &Stage, limits: &Limits) -> Result<Vec<Value>, String> {
        Ok(match (self, stage) {
            (State::Groups(groups), Stage::Group(group)) => groups.finish(group, limits)?,
            (State::Sorting(sorting), Stage::Sort(keys)) => sorting.finish(keys),
            (State::Counted(0), _) => Vec::new(),
            (State::Counted(n), Stage::Count(name)) => {
                let mut document = Map::new();
                document.insert(name.clone(), Value::Number(Number::from(n)));
                vec![Value::Object(document)]
            }
            _ => Vec::new(),
        })
    }
}

/// One run of a pipeline.
struct Run<'a> {
    stages: &'a [Stage],
    states: Vec<State>,
    limits: &'a Limits,
    result: Vec<Value>,
    result_bytes: usize,
}

/// What a stage did with a document.
enum Step<'a> {
    /// Dropped, or held (a `$group`, `$sort` or `$count`).
    Kept,
    /// Passed on to the next stage.
    Pass(Value),
    /// Unwound: the documents to pass on, made one at a time.
    Unwound(Unwinding<'a>),
}

/// What is still to push: a document entering a stage, or the rest of an `$unwind`.
enum Work<'a> {
    Document(usize, Value),
    Unwinding(Unwinding<'a>),
}

impl<'a> Run<'a> {
    fn error(&self, index: usize, message: String) -> PipelineError {
        PipelineError {
            stage: Some(index + 1),
            operator: Some(self.stages[index].operator().to_string()),
            message,
        }
    }

    /// Pushes `document` into the stage at `index`, and what comes of it on to the result.
    /// Depth first, so the result keeps the order of the input (and of each `$unwind`'s
    /// array), on a work list rather than the call stack: a pipeline of [`STAGES_MAX`] stages
    /// needs no more stack than one of one, and an `$unwind` makes its documents one at a time.
    ///
    /// [`STAGES_MAX`]: super::STAGES_MAX
    fn push(&mut self, index: usize, document: Value) -> Result<(), PipelineError> {
        let mut work = vec![Work::Document(index, document)];
        while let Some(next) = work.pop() {
            let (index, document) = match next {
                Work::Document(index, document) => (index, document),
                Work::Unwinding(mut unwinding) => {
                    let Some(document) = unwinding.next() else {
                        continue;
                    };
                    let index = unwinding.next_stage;
                    work.push(Work::Unwinding(unwinding));
                    (index, document)
                }
            };
            if index == self.stages.len() {
                self.keep(document)?;
                continue;
            }
            match self.step(index, document)? {
                Step::Kept => {}
                Step::Pass(document) => work.push(Work::Document(index + 1, document)),
                Step::Unwound(unwinding) => work.push(Work::Unwinding(unwinding)),
            }
        }
        Ok(())
    }

    /// One stage's work on one document.
    fn step(&mut self, index: usize, document: Value) -> Result<Step<'a>, PipelineError> {
        let stages = self.stages;
        let limits = self.limits;
        let fail = |run: &Run<'_>, message: String| run.error(index, message);
        Ok(match (&stages[index], &mut self.states[index]) {
            (Stage::Match(filter), _) => match filter.matches(&document) {
                true => Step::Pass(document),
                false => Step::Kept,
            },
            (Stage::Project(project), _) => match project.apply(&document, limits) {
                Ok(projected) => Step::Pass(projected),
                Err(message) => return Err(fail(self, message)),
            },
            (Stage::Unwind(unwind), _) => unwound(unwind, index + 1, document),
            (Stage::Skip(_), State::Left(left)) => match left.checked_sub(1) {
                Some(fewer) => {
                    *left = fewer;
                    Step::Kept
                }
                None => Step::Pass(document),
            },
            (Stage::Limit(_), State::Left(left)) => match left.checked_sub(1) {
                Some(fewer) => {
                    *left = fewer;
                    Step::Pass(document)
                }
                None => Step::Kept,
            },
            (Stage::Group(group), State::Groups(groups)) => {
                match groups.add(group, &document, limits) {
                    Ok(()) => Step::Kept,
                    Err(message) => return Err(fail(self, message)),
                }
            }
            (Stage::Sort(keys), State::Sorting(sorting)) => {
                match sorting.add(keys, document, limits) {
                    Ok(()) => Step::Kept,
                    Err(message) => return Err(fail(self, message)),
                }
            }
            (Stage::Count(_), State::Counted(n)) => {
                *n += 1;
                Step::Kept
            }
            (stage, state) => unreachable!("{} with the state {state:?}", stage.operator()),
        })
    }

    fn keep(&mut self, document: Value) -> Result<(), PipelineError> {
        self.result_bytes += json_bytes(&document);
        if self.result_bytes > self.limits.result_bytes_max {
            return Err(whole(format!(
                "the result is over the limit of {} bytes",
                self.limits.result_bytes_max
            )));
        }
        self.result.push(document);
        Ok(())
    }
}

/// What `$unwind` makes of `document`: a document per element of its array (made as each is
/// pushed on), the document as it is, or nothing.
fn unwound(unwind: &Unwind, next_stage: usize, mut document: Value) -> Step<'_> {
    let with_index = |mut document: Value| {
        if let Some(field) = &unwind.index_field {
            set_nested(&mut document, field, Value::Null);
        }
        document
    };
    match nested(&document, &unwind.path) {
        Some(Value::Array(items)) if !items.is_empty() => {
            let Some(Value::Array(items)) = take_nested(&mut document, &unwind.path) else {
                unreachable!("an array was read there")
            };
            Step::Unwound(Unwinding {
                unwind,
                next_stage,
                rest: document,
                items: items.into_iter().enumerate(),
            })
        }
        Some(Value::Array(_)) if unwind.preserve_null_and_empty => {
            remove_nested(&mut document, &unwind.path);
            Step::Pass(with_index(document))
        }
        None | Some(Value::Null) if unwind.preserve_null_and_empty => {
            Step::Pass(with_index(document))
        }
        None | Some(Value::Null) | Some(Value::Array(_)) => Step::Kept,
        // A scalar or object is a one-element array.
        Some(_) => Step::Pass(with_index(document)),
    }
}

/// An `$unwind` under way: the document without its array, and the elements still to go.
struct Unwinding<'a> {
    unwind: &'a Unwind,
    /// The stage its documents enter.
    next_stage: usize,
    rest: Value,
    items: std::iter::Enumerate<std::vec::IntoIter<Value>>,
}

impl Iterator for Unwinding<'_> {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        let (position, item) = self.items.next()?;
        let mut document = self.rest.clone();
        set_nested(&mut document, &self.unwind.path, item);
        if let Some(field) = &self.unwind.index_field {
            set_nested(&mut document, field, Value::Number(Number::from(position)));
        }
        Some(document)
    }
}
