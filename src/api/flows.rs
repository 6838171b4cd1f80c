//! Workflow definition functions.

use crate::definitions;
use crate::engine::definition::{validate_flow, validate_step};
use crate::engine::slug;
use crate::jsonb::Jsonb;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::search_path;

/// Creates a workflow and its pgmq queue. Calling it again with the same options returns the
/// existing row unchanged; different options raise `workflow_exists`.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn create_flow(
    workflow_slug: Option<&str>,
    max_attempts: default!(Option<i32>, 3),
    timeout: default!(Option<i32>, 30),
    base_delay: default!(Option<i32>, 1),
) -> Result<pgrx::composite_type!('static, "workflows"), ErrorReport> {
    super::check_version()?;
    let (slug, options) = validate_flow(workflow_slug, max_attempts, timeout, base_delay)?;
    Ok(definitions::create_flow(&slug, &options)?)
}

/// Adds a step to a workflow. Dependencies must already be steps of the workflow. Calling it
/// again with an identical definition returns the existing row; a different definition
/// raises `step_exists`.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::too_many_arguments)]
fn add_step(
    workflow_slug: Option<&str>,
    step_slug: Option<&str>,
    depends_on: default!(Option<Vec<Option<String>>>, "'{}'"),
    step_type: default!(Option<&str>, "'single'"),
    initial_tasks: default!(Option<i32>, "NULL"),
    max_attempts: default!(Option<i32>, "NULL"),
    timeout: default!(Option<i32>, "NULL"),
    base_delay: default!(Option<i32>, "NULL"),
) -> Result<pgrx::composite_type!('static, "workflow_steps"), ErrorReport> {
    super::check_version()?;
    let (workflow_slug, step) = validate_step(
        workflow_slug,
        step_slug,
        depends_on,
        step_type,
        initial_tasks,
        max_attempts,
        timeout,
        base_delay,
    )?;
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
