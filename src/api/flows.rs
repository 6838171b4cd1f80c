//! Workflow definition functions.

use crate::definitions;
use crate::engine::definition;
use crate::engine::slug;
use crate::jsonb::Jsonb;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::search_path;

/// Creates a workflow and its pgmq queue. Calling it again with the same options returns the
/// existing row unchanged; different options raise `workflow_exists`. `run_timeout`
/// (seconds): a run not finished in time fails with `run_timeout`. `concurrency_key` (a
/// top-level key of the flow input) with `max_concurrency`: at most that many tasks of runs
/// with the same value of the key are in the queue or claimed at once.
#[pg_extern(security_definer, name = "create_flow")]
#[search_path(pg_catalog, pg_temp)]
fn create_flow_v2(
    workflow_slug: Option<&str>,
    max_attempts: default!(Option<i32>, 3),
    timeout: default!(Option<i32>, 30),
    base_delay: default!(Option<i32>, 1),
    run_timeout: default!(Option<i32>, "NULL"),
    concurrency_key: default!(Option<&str>, "NULL"),
    max_concurrency: default!(Option<i32>, "NULL"),
) -> Result<pgrx::composite_type!('static, "workflows"), ErrorReport> {
    super::check_version()?;
    let (slug, options) = definition::validate_flow(definition::FlowArgs {
        workflow_slug,
        max_attempts,
        timeout,
        base_delay,
        run_timeout,
        concurrency_key,
        max_concurrency,
    })?;
    Ok(definitions::create_flow(&slug, &options)?)
}

/// Adds a step to a workflow. Dependencies must already be steps of the workflow. Calling it
/// again with an identical definition returns the existing row; a different definition
/// raises `step_exists`. `step_type` is `single`, `map` or `event` (completed by
/// `send_event`). `if_matches` / `if_not_matches`: JSON the step's input must / must not
/// contain (`@>`) when the step becomes ready; when it does not, `when_unmet` decides:
/// `skip` (the step is skipped), `skip_cascade` (its dependents too) or `fail` (the run fails
/// with `condition_unmet`). `start_delay` (seconds): the step's tasks become visible that
/// long after it becomes ready. `flow`: each task of the step is a run of that workflow.
#[pg_extern(security_definer, name = "add_step")]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::too_many_arguments)]
fn add_step_v2(
    workflow_slug: Option<&str>,
    step_slug: Option<&str>,
    depends_on: default!(Option<Vec<Option<String>>>, "'{}'"),
    step_type: default!(Option<&str>, "'single'"),
    initial_tasks: default!(Option<i32>, "NULL"),
    max_attempts: default!(Option<i32>, "NULL"),
    timeout: default!(Option<i32>, "NULL"),
    base_delay: default!(Option<i32>, "NULL"),
    if_matches: default!(Option<pgrx::JsonB>, "NULL"),
    if_not_matches: default!(Option<pgrx::JsonB>, "NULL"),
    when_unmet: default!(Option<&str>, "'skip'"),
    start_delay: default!(Option<i32>, "NULL"),
    flow: default!(Option<&str>, "NULL"),
) -> Result<pgrx::composite_type!('static, "workflow_steps"), ErrorReport> {
    super::check_version()?;
    let (workflow_slug, step) = definition::validate_step(definition::StepArgs {
        workflow_slug,
        step_slug,
        depends_on,
        step_type,
        initial_tasks,
        max_attempts,
        timeout,
        base_delay,
        if_matches: if_matches.map(|j| j.0),
        if_not_matches: if_not_matches.map(|j| j.0),
        when_unmet,
        start_delay,
        flow,
    })?;
    Ok(definitions::add_step(&workflow_slug, &step)?)
}

/// Every workflow, ordered by `workflow_slug`.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn list_flows(
) -> Result<SetOfIterator<'static, pgrx::composite_type!('static, "workflows")>, ErrorReport> {
    super::check_version()?;
    Ok(SetOfIterator::new(definitions::all_flows()?))
}

/// A workflow and its steps as one JSON document: the workflow's columns plus `steps`, in
/// `step_index` order, each with its `depends_on` in the order given to `add_step`.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn get_flow(workflow_slug: Option<&str>) -> Result<Jsonb, ErrorReport> {
    super::check_version()?;
    let slug = super::required("workflow_slug", workflow_slug)?;
    slug::check_workflow_slug(slug)?;
    Ok(definitions::flow_document(slug)?)
}

/// Removes a workflow: its definition, all its runs and tasks, and its queue. Refused while a
/// run of it is `started`.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn delete_flow(workflow_slug: Option<&str>) -> Result<(), ErrorReport> {
    super::check_version()?;
    let slug = super::required("workflow_slug", workflow_slug)?;
    slug::check_workflow_slug(slug)?;
    Ok(definitions::delete_flow(slug)?)
}

/// Whether `slug` is a valid slug: `^[a-zA-Z_][a-zA-Z0-9_]*$`, 1 to 44 characters. No side
/// effects; NULL is not a valid slug. (`run` passes, but is reserved as a step slug.)
#[pg_extern(immutable, parallel_safe)]
fn is_valid_slug(slug: Option<&str>) -> bool {
    slug.is_some_and(slug::is_valid_slug)
}

/// Checks a workflow document (the shape `define_flow` takes) and reports every problem at
/// once: `{"valid": bool, "errors": [{"path", "code", "message", "hint"}], "warnings": [...]}`,
/// each error at its JSONPath (such as `$.steps[2].depends_on[0]`) with a code from the error
/// table. Writes nothing, and never raises for a bad document (SQL NULL included). A slug
/// taken by a workflow with a different definition is an error; the same definition is valid
/// (with a warning: `define_flow` would return the existing workflow).
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn validate_flow(definition: Option<Jsonb>) -> Result<pgrx::JsonB, ErrorReport> {
    super::check_version()?;
    Ok(pgrx::JsonB(definitions::validate_flow(
        definition.map(definitions::read_document),
    )?))
}

/// Creates a workflow and all its steps from one document, in one transaction: the steps may
/// be listed in any order. A document with problems raises its first problem (code, SQLSTATE,
/// and its JSONPath in the message) with every problem in the error's DETAIL, and writes
/// nothing. The same document again returns the existing workflow unchanged; a different one
/// for an existing slug raises `workflow_exists` naming the first difference. Returns the
/// workflow as `get_flow` does.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn define_flow(definition: Option<Jsonb>) -> Result<Jsonb, ErrorReport> {
    super::check_version()?;
    let definition = definitions::read_document(super::required("definition", definition)?)?;
    match definitions::define_flow(&definition)? {
        Ok(flow) => Ok(flow),
        Err(rejected) => Err(ErrorReport::from(rejected.error).set_detail(rejected.detail)),
    }
}

/// A workflow as the document `define_flow` takes: `define_flow(export_flow(s))` is a no-op,
/// and `validate_flow` finds it valid. Options a step does not set are left out.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn export_flow(workflow_slug: Option<&str>) -> Result<pgrx::JsonB, ErrorReport> {
    super::check_version()?;
    let slug = super::required("workflow_slug", workflow_slug)?;
    slug::check_workflow_slug(slug)?;
    Ok(pgrx::JsonB(definitions::export_flow(slug)?))
}

/// A workflow's graph as text: a Mermaid `flowchart` (`format => 'mermaid'`, the default) or
/// a Graphviz digraph (`'dot'`). Map steps are drawn differently from single ones. With
/// `run_id` (a run of this workflow), each step shows its status and completed/total tasks,
/// coloured by status.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn flow_graph(
    workflow_slug: Option<&str>,
    format: default!(Option<&str>, "'mermaid'"),
    run_id: default!(Option<pgrx::datum::Uuid>, "NULL"),
) -> Result<String, ErrorReport> {
    super::check_version()?;
    let slug = super::required("workflow_slug", workflow_slug)?;
    slug::check_workflow_slug(slug)?;
    let format = super::required("format", format)?;
    Ok(definitions::flow_graph(slug, format, run_id)?)
}

/// The JSON Schema (draft 2020-12) of the document `define_flow` takes, to give an LLM as a
/// structured-output schema. What a schema cannot check (dependencies that name no step,
/// cycles, duplicate slugs) `validate_flow` reports.
#[pg_extern(stable, parallel_safe)]
fn flow_schema() -> pgrx::JsonB {
    pgrx::JsonB(definitions::flow_schema())
}
