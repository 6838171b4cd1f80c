//! Creating, changing and removing workflow definitions, transactionally: every check runs
//! before the first write, and a failed call leaves nothing behind (its statement's writes are
//! rolled back with the error).

use crate::engine::definition::{FlowOptions, StepDef};
use crate::engine::document::{self, first_difference, FlowDocument, Limits, Problem, Validation};
use crate::engine::graph::{self, GraphStep};
use crate::engine::schema;
use crate::engine::slug::queue_name;
use crate::engine::suggest::did_you_mean;
use crate::error::{QfError, QfResult};
use crate::jsonb::Jsonb;
use crate::queue;
use crate::settings::MAX_STEPS;
use crate::store::flows::{self, Row};
use crate::store::runs;
use pgrx::datum::Uuid;
use serde_json::{json, Value};

/// `workflow_not_found`, naming the closest existing workflow when there is a likely one.
pub fn workflow_not_found(slug: &str) -> QfError {
    let known = flows::all_slugs().unwrap_or_default();
    QfError::workflow_not_found(slug)
        .with_hint(did_you_mean(slug, known.iter().map(String::as_str)))
}

fn limits() -> Limits {
    Limits {
        max_steps: MAX_STEPS.get().max(1) as usize,
    }
}

/// Inserts the workflow and creates its queue; false (and nothing done) when a workflow of
/// this slug, in any letter case, exists.
fn insert_flow(slug: &str, options: &FlowOptions) -> QfResult<bool> {
    if !flows::insert(slug, options)? {
        return Ok(false);
    }
    let queue = queue_name(slug);
    if queue::exists(&queue)? {
        return Err(QfError::WorkflowExists(format!(
            "workflow {slug:?} needs the pgmq queue {queue:?}, which already exists and \
             does not belong to quantum_flow"
        )));
    }
    queue::create(&queue)?;
    Ok(true)
}

pub fn create_flow(slug: &str, options: &FlowOptions) -> QfResult<Row> {
    if !insert_flow(slug, options)? {
        match flows::options(slug)? {
            Some(existing) if existing == *options => {}
            Some(e) => {
                let mut extra = String::new();
                if let Some(t) = e.run_timeout {
                    extra.push_str(&format!(", run_timeout={t}"));
                }
                if let (Some(k), Some(m)) = (&e.concurrency_key, e.max_concurrency) {
                    extra.push_str(&format!(", concurrency_key={k}, max_concurrency={m}"));
                }
                return Err(QfError::WorkflowExists(format!(
                    "workflow {slug:?} already exists with max_attempts={}, timeout={}, \
                     base_delay={}{extra}",
                    e.max_attempts, e.timeout, e.base_delay
                )));
            }
            None => {
                let other = flows::case_insensitive_match(slug)?.unwrap_or_default();
                return Err(QfError::WorkflowExists(format!(
                    "workflow {slug:?} differs only in letter case from existing workflow \
                     {other:?} (their queue names would collide)"
                )));
            }
        }
    }
    flows::row(slug)?.ok_or_else(|| workflow_not_found(slug))
}

/// A step definition for `step_exists`: the options every step has, then those it sets of
/// the ones added in 0.2.0 (conditions, delay, sub-flow).
fn describe(s: &StepDef) -> String {
    let opt = |v: Option<i32>| v.map_or("NULL".to_string(), |n| n.to_string());
    let mut text = format!(
        "depends_on=[{}], step_type={}, initial_tasks={}, max_attempts={}, timeout={}, \
         base_delay={}",
        s.depends_on.join(", "),
        s.step_type,
        opt(s.initial_tasks),
        opt(s.max_attempts),
        opt(s.timeout),
        opt(s.base_delay),
    );
    if let Some(v) = &s.if_matches {
        text.push_str(&format!(", if_matches={v}"));
    }
    if let Some(v) = &s.if_not_matches {
        text.push_str(&format!(", if_not_matches={v}"));
    }
    if s.when_unmet != "skip" {
        text.push_str(&format!(", when_unmet={}", s.when_unmet));
    }
    if let Some(d) = s.start_delay {
        text.push_str(&format!(", start_delay={d}"));
    }
    if let Some(f) = &s.flow {
        text.push_str(&format!(", flow={f}"));
    }
    text
}

/// Why step `step_slug` of `workflow_slug` may not start runs of workflow `flow`: it does not
/// exist, or it starts `workflow_slug` again (itself, or through sub-flows of its own).
fn sub_flow_problem(workflow_slug: &str, step_slug: &str, flow: &str) -> QfResult<Option<QfError>> {
    if flow == workflow_slug {
        return Ok(Some(QfError::Cycle(format!(
            "step {step_slug:?} of workflow {workflow_slug:?} would start a run of its own \
             workflow: {workflow_slug} -> {workflow_slug}"
        ))));
    }
    if flows::options(flow)?.is_none() {
        return Ok(Some(workflow_not_found(flow).map_message(|m| {
            format!("step {step_slug:?} starts runs of a workflow that does not exist: {m}")
        })));
    }
    if let Some(path) = flows::sub_flow_path(flow, workflow_slug)? {
        return Ok(Some(QfError::Cycle(format!(
            "step {step_slug:?} of workflow {workflow_slug:?} would start workflow {flow:?}, \
             which starts {workflow_slug:?} again: {workflow_slug} -> {}",
            path.join(" -> ")
        ))));
    }
    Ok(None)
}

pub fn add_step(workflow_slug: &str, step: &StepDef) -> QfResult<Row> {
    if !flows::lock_for_change(workflow_slug)? {
        return Err(workflow_not_found(workflow_slug));
    }
    let slug = &step.step_slug;
    if let Some(existing) = flows::step_def(workflow_slug, slug)? {
        if existing != *step {
            return Err(QfError::StepExists(format!(
                "step {slug:?} of workflow {workflow_slug:?} already exists with a different \
                 definition ({})",
                describe(&existing)
            )));
        }
    } else {
        let active = flows::started_run_count(workflow_slug)?;
        if active > 0 {
            return Err(QfError::WorkflowHasActiveRuns(format!(
                "cannot add step {slug:?}: workflow {workflow_slug:?} has {active} started run(s)"
            )));
        }
        if let Some(missing) = flows::missing_steps(workflow_slug, &step.depends_on)?.first() {
            let steps = flows::document(workflow_slug)?
                .map(|d| d.steps)
                .unwrap_or_default();
            let hint = did_you_mean(missing, steps.iter().map(|s| s.slug.as_str()))
                .unwrap_or_else(|| "add a step's dependencies before the step".into());
            return Err(QfError::DependencyNotFound(format!(
                "step {slug:?} depends on {missing:?}, which is not a step of workflow \
                 {workflow_slug:?}"
            ))
            .with_hint(Some(hint)));
        }
        if let Some(flow) = &step.flow {
            if let Some(e) = sub_flow_problem(workflow_slug, slug, flow)? {
                return Err(e);
            }
        }
        let count = runs::start_shape(workflow_slug)?.0;
        let max = i64::from(MAX_STEPS.get());
        if count >= max {
            return Err(QfError::LimitExceeded(format!(
                "cannot add step {slug:?}: workflow {workflow_slug:?} has {count} steps, and \
                 quantum_flow.max_steps is {max}"
            )));
        }
        flows::insert_step(workflow_slug, step)?;
    }
    flows::step_row(workflow_slug, slug)?
        .ok_or_else(|| QfError::Internal(format!("step {slug:?} vanished after insert")))
}

pub fn delete_flow(slug: &str) -> QfResult<()> {
    if !flows::lock_for_change(slug)? {
        return Err(workflow_not_found(slug));
    }
    let active = flows::started_run_count(slug)?;
    if active > 0 {
        return Err(QfError::WorkflowHasActiveRuns(format!(
            "cannot delete workflow {slug:?}: it has {active} started run(s)"
        )));
    }
    queue::drop(&queue_name(slug))?;
    flows::delete(slug)
}

pub fn flow_document(slug: &str) -> QfResult<crate::jsonb::Jsonb> {
    flows::flow_document(slug)?.ok_or_else(|| workflow_not_found(slug))
}

pub fn all_flows() -> QfResult<Vec<Row>> {
    flows::all_rows()
}

/// Whether a validated document may be defined: the problem when its slug is taken by a
/// workflow with a different definition (or one that differs only in letter case), else
/// whether the same definition exists already.
fn against_existing(doc: &FlowDocument) -> QfResult<Result<bool, Problem>> {
    let slug = &doc.workflow_slug;
    if let Some(existing) = flows::document(slug)? {
        return Ok(match first_difference(&existing, doc) {
            None => Ok(true),
            Some((path, difference)) => Err(Problem::new(
                path,
                QfError::WorkflowExists(format!(
                    "workflow {slug:?} already exists with a different definition: {difference}"
                )),
            )
            .hint(Some(
                "choose another workflow_slug, or delete_flow the existing workflow first".into(),
            ))),
        });
    }
    if let Some(other) = flows::case_insensitive_match(slug)? {
        return Ok(Err(Problem::new(
            "$.workflow_slug",
            QfError::WorkflowExists(format!(
                "workflow {slug:?} differs only in letter case from existing workflow {other:?} \
                 (their queue names would collide)"
            )),
        )));
    }
    let queue = queue_name(slug);
    if queue::exists(&queue)? {
        return Ok(Err(Problem::new(
            "$.workflow_slug",
            QfError::WorkflowExists(format!(
                "workflow {slug:?} needs the pgmq queue {queue:?}, which already exists and \
                 does not belong to quantum_flow"
            )),
        )
        .hint(Some(
            "choose another workflow_slug, or drop that queue with pgmq.drop_queue if nothing uses it"
                .into(),
        ))));
    }
    Ok(Ok(false))
}

/// Everything wrong with a flow document, against the rules and the existing workflows.
fn check_document(definition: &Value) -> QfResult<(Validation, bool)> {
    let mut v = document::validate(definition, limits());
    let mut exists = false;
    if let Some(doc) = v.document.as_ref().filter(|d| d.steps.is_empty()) {
        // The walk refused the empty "steps" (its only problem) and still read the document:
        // it is accepted as the existing workflow of no steps it is identical to.
        if matches!(against_existing(doc)?, Ok(true)) {
            v.problems.clear();
        } else {
            v.document = None;
        }
    }
    if let Some(doc) = &v.document {
        // A well-formed document is compared with the existing workflow of its slug. When it
        // is that workflow exactly, its sub-flows are not checked again: the workflow a
        // sub-flow step names may have been deleted since (allowed), and the same document
        // still defines nothing new. Otherwise both checks are made, so that one answer lists
        // both kinds of problem.
        let existing = against_existing(doc)?;
        let same = matches!(existing, Ok(true));
        if !same {
            for (i, step) in doc.steps.iter().enumerate() {
                if let Some(flow) = &step.flow {
                    if let Some(e) = sub_flow_problem(&doc.workflow_slug, &step.slug, flow)? {
                        v.problems
                            .push(Problem::new(format!("$.steps[{i}].flow"), e));
                    }
                }
            }
        }
        match existing {
            Ok(same) => exists = same && v.problems.is_empty(),
            Err(problem) => v.problems.push(problem),
        }
    }
    if !v.problems.is_empty() {
        v.document = None;
    }
    if exists {
        v.warnings.push(Problem::new(
            "$.workflow_slug",
            QfError::WorkflowExists(format!(
                "workflow {:?} is already defined exactly so: define_flow returns it unchanged",
                definition["workflow_slug"].as_str().unwrap_or_default()
            )),
        ));
    }
    Ok((v, exists))
}

/// `validate_flow`: every problem of a document, without writing anything.
pub fn validate_flow(definition: Option<Result<Value, QfError>>) -> QfResult<Value> {
    let unreadable = |error: QfError| {
        (
            Validation {
                problems: vec![Problem::new("$", error)],
                warnings: Vec::new(),
                document: None,
            },
            false,
        )
    };
    let (v, _) = match definition {
        Some(Ok(d)) => check_document(&d)?,
        Some(Err(e)) => unreadable(e),
        None => unreadable(QfError::InvalidDocument("the document is SQL NULL".into())),
    };
    Ok(json!({
        "valid": v.problems.is_empty(),
        "errors": v.problems.iter().map(Problem::to_json).collect::<Vec<_>>(),
        "warnings": v.warnings.iter().map(Problem::to_json).collect::<Vec<_>>(),
    }))
}

/// A document that cannot be defined: its first problem as the error, all of them (as
/// `validate_flow` reports them) for the error's DETAIL.
pub struct Rejected {
    pub error: QfError,
    pub detail: String,
}

/// `define_flow`: creates the workflow and its steps (each after its dependencies) through
/// the same code as `create_flow` / `add_step`, or returns the existing identical workflow.
/// The caller's transaction makes it all or nothing.
pub fn define_flow(definition: &Value) -> QfResult<Result<Jsonb, Rejected>> {
    let (v, exists) = check_document(definition)?;
    let Some(doc) = v.document.filter(|_| v.problems.is_empty()) else {
        return Ok(Err(rejected(&v.problems)));
    };
    if !exists {
        if !insert_flow(&doc.workflow_slug, &doc.options())? {
            // Another transaction created the workflow since the check (it waited for that
            // one to commit): the document is judged against what it committed, as if this
            // call had come after it, so that two documents are never merged into one
            // workflow. The same document again returns the workflow unchanged.
            let (v, _) = check_document(definition)?;
            if !v.problems.is_empty() {
                return Ok(Err(rejected(&v.problems)));
            }
            return Ok(Ok(flow_document(&doc.workflow_slug)?));
        }
        for step in doc.steps_in_dependency_order() {
            add_step(&doc.workflow_slug, &step.to_step_def())?;
        }
        flows::set_descriptions(&doc)?;
    }
    Ok(Ok(flow_document(&doc.workflow_slug)?))
}

/// A `jsonb` document read for `validate_flow` / `define_flow`: `invalid_document` for a value
/// that `jsonb` holds and the document reader cannot (see `Jsonb::to_value`).
pub fn read_document(definition: Jsonb) -> Result<Value, QfError> {
    definition
        .to_value()
        .map_err(|why| QfError::InvalidDocument(format!("the document cannot be read: {why}")))
}

/// A rejected document: its first problem as the error, all of them for the DETAIL.
fn rejected(problems: &[Problem]) -> Rejected {
    let detail = Value::Array(problems.iter().map(Problem::to_json).collect());
    let first = problems
        .first()
        .map(Problem::to_error)
        .unwrap_or_else(|| QfError::Internal("a rejected document without problems".into()));
    Rejected {
        error: first,
        detail: format!("every problem of the document: {detail}"),
    }
}

/// `export_flow`: the workflow as a document that `define_flow` accepts (and finds identical).
pub fn export_flow(slug: &str) -> QfResult<Value> {
    let doc = flows::document(slug)?.ok_or_else(|| workflow_not_found(slug))?;
    serde_json::to_value(&doc).map_err(|e| QfError::Internal(format!("export_flow: {e}")))
}

/// `flow_schema`: the JSON Schema of a flow document, with this server's limits.
pub fn flow_schema() -> Value {
    schema::flow_schema(limits().max_steps)
}

/// `flow_graph`: the workflow's graph as text of `format`, with the state of `run_id` (a run
/// of this workflow) when given.
pub fn flow_graph(slug: &str, format: &str, run_id: Option<Uuid>) -> QfResult<String> {
    let format = graph::Format::parse(format).ok_or_else(|| {
        QfError::InvalidOption(format!(
            "format {format:?} must be one of {}",
            graph::Format::NAMES.join(", ")
        ))
        .with_hint(did_you_mean(format, graph::Format::NAMES.iter().copied()))
    })?;
    let doc = flows::document(slug)?.ok_or_else(|| workflow_not_found(slug))?;
    let mut states = std::collections::HashMap::new();
    if let Some(run_id) = run_id {
        match runs::status_of(run_id)? {
            None => return Err(QfError::run_not_found(run_id)),
            Some((_, workflow, _)) if workflow != slug => {
                return Err(QfError::InvalidOption(format!(
                    "run {run_id} is a run of workflow {workflow:?}, not of {slug:?}"
                )))
            }
            Some(_) => {}
        }
        states.extend(runs::step_progress(run_id)?);
    }
    let steps: Vec<GraphStep> = doc
        .steps
        .into_iter()
        .map(|s| GraphStep {
            state: states.remove(&s.slug),
            slug: s.slug,
            step_type: s.step_type,
            depends_on: s.depends_on,
            flow: s.flow,
        })
        .collect();
    Ok(graph::render(slug, &steps, format))
}
