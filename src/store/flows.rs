//! Statements on the definition tables.

use super::{col, execute, query, query_opt, req};
use crate::engine::definition::{FlowOptions, StepDef};
use crate::engine::document::{FlowDocument, StepDocument};
use crate::error::QfResult;
use crate::jsonb::Jsonb;
use pgrx::heap_tuple::PgHeapTuple;
use pgrx::AllocatedByRust;

pub type Row = PgHeapTuple<'static, AllocatedByRust>;

/// A workflow's options as stored.
pub fn options(slug: &str) -> QfResult<Option<FlowOptions>> {
    query_opt(
        "SELECT max_attempts, timeout, base_delay FROM quantum_flow.workflows WHERE workflow_slug = $1",
        &[slug.into()],
        |r| Ok(FlowOptions { max_attempts: req(r, 1)?, timeout: req(r, 2)?, base_delay: req(r, 3)? }),
    )
}

/// Locks the workflow row against concurrent definition changes (`FOR UPDATE`); false when it
/// does not exist. `start_flow` takes the matching `FOR SHARE` lock (see `lock_for_run`), so a
/// step cannot be added between a run's start and its reading of the step list.
pub fn lock_for_change(slug: &str) -> QfResult<bool> {
    Ok(execute(
        "SELECT 1 FROM quantum_flow.workflows WHERE workflow_slug = $1 FOR UPDATE",
        &[slug.into()],
    )? == 1)
}

/// Shares the workflow row's lock for the duration of a run start; false when it does not
/// exist.
pub fn lock_for_run(slug: &str) -> QfResult<bool> {
    Ok(execute(
        "SELECT 1 FROM quantum_flow.workflows WHERE workflow_slug = $1 FOR SHARE",
        &[slug.into()],
    )? == 1)
}

/// Inserts a workflow; false when one with this slug (in any letter case) exists.
pub fn insert(slug: &str, o: &FlowOptions) -> QfResult<bool> {
    Ok(execute(
        "INSERT INTO quantum_flow.workflows (workflow_slug, max_attempts, timeout, base_delay) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1",
        &[
            slug.into(),
            o.max_attempts.into(),
            o.timeout.into(),
            o.base_delay.into(),
        ],
    )? == 1)
}

/// The slug of an existing workflow that equals `slug` ignoring letter case.
pub fn case_insensitive_match(slug: &str) -> QfResult<Option<String>> {
    query_opt(
        "SELECT workflow_slug FROM quantum_flow.workflows WHERE lower(workflow_slug) = lower($1)",
        &[slug.into()],
        |r| req(r, 1),
    )
}

pub fn row(slug: &str) -> QfResult<Option<Row>> {
    query_opt(
        "SELECT w FROM quantum_flow.workflows w WHERE w.workflow_slug = $1",
        &[slug.into()],
        |r| req(r, 1),
    )
}

pub fn all_rows() -> QfResult<Vec<Row>> {
    query(
        "SELECT w FROM quantum_flow.workflows w ORDER BY w.workflow_slug",
        &[],
        |r| req(r, 1),
    )
}

/// Every workflow's slug, in order.
pub fn all_slugs() -> QfResult<Vec<String>> {
    query(
        "SELECT workflow_slug FROM quantum_flow.workflows ORDER BY workflow_slug",
        &[],
        |r| req(r, 1),
    )
}

pub fn started_run_count(slug: &str) -> QfResult<i64> {
    query_opt(
        "SELECT count(*) FROM quantum_flow.runs WHERE workflow_slug = $1 AND status = 'started'",
        &[slug.into()],
        |r| req(r, 1),
    )
    .map(|n| n.unwrap_or(0))
}

/// Deletes a workflow with its steps, edges, runs, step states, tasks and counters (the
/// tables have no foreign keys to cascade: see sql/bootstrap.sql). Each table is reached by
/// key: the runs by workflow, the rest by run.
pub fn delete(slug: &str) -> QfResult<()> {
    execute(
        "WITH doomed AS MATERIALIZED ( \
           SELECT run_id FROM quantum_flow.runs WHERE workflow_slug = $1), \
         shards AS ( \
           DELETE FROM quantum_flow.step_task_shards s USING doomed d WHERE s.run_id = d.run_id), \
         tasks AS ( \
           DELETE FROM quantum_flow.step_tasks t USING doomed d WHERE t.run_id = d.run_id), \
         states AS ( \
           DELETE FROM quantum_flow.step_states ss USING doomed d WHERE ss.run_id = d.run_id), \
         run_rows AS ( \
           DELETE FROM quantum_flow.runs WHERE workflow_slug = $1), \
         edges AS ( \
           DELETE FROM quantum_flow.workflow_step_dependencies_def WHERE workflow_slug = $1), \
         steps AS ( \
           DELETE FROM quantum_flow.workflow_steps WHERE workflow_slug = $1) \
         DELETE FROM quantum_flow.workflows WHERE workflow_slug = $1",
        &[slug.into()],
    )?;
    Ok(())
}

/// A stored step, in the shape `add_step` compares against.
pub fn step_def(workflow_slug: &str, step_slug: &str) -> QfResult<Option<StepDef>> {
    query_opt(
        "SELECT s.step_type, s.initial_tasks, s.max_attempts, s.timeout, s.base_delay, \
                ARRAY(SELECT d.dep_slug FROM quantum_flow.workflow_step_dependencies_def d \
                      WHERE d.workflow_slug = s.workflow_slug AND d.step_slug = s.step_slug \
                      ORDER BY d.dep_index) \
         FROM quantum_flow.workflow_steps s WHERE s.workflow_slug = $1 AND s.step_slug = $2",
        &[workflow_slug.into(), step_slug.into()],
        |r| {
            Ok(StepDef {
                step_slug: step_slug.to_string(),
                step_type: req(r, 1)?,
                initial_tasks: col(r, 2)?,
                max_attempts: col(r, 3)?,
                timeout: col(r, 4)?,
                base_delay: col(r, 5)?,
                depends_on: req::<Vec<String>>(r, 6)?,
            })
        },
    )
}

pub fn step_row(workflow_slug: &str, step_slug: &str) -> QfResult<Option<Row>> {
    query_opt(
        "SELECT s FROM quantum_flow.workflow_steps s WHERE s.workflow_slug = $1 AND s.step_slug = $2",
        &[workflow_slug.into(), step_slug.into()],
        |r| req(r, 1),
    )
}

/// The entries of `deps` that are not steps of the workflow, in the order given.
pub fn missing_steps(workflow_slug: &str, deps: &[String]) -> QfResult<Vec<String>> {
    query(
        "SELECT d.slug FROM unnest($2::text[]) WITH ORDINALITY AS d(slug, ord) \
         WHERE NOT EXISTS (SELECT 1 FROM quantum_flow.workflow_steps s \
                           WHERE s.workflow_slug = $1 AND s.step_slug = d.slug) \
         ORDER BY d.ord",
        &[workflow_slug.into(), deps.to_vec().into()],
        |r| req(r, 1),
    )
}

/// Inserts a step (at the next `step_index`) and its dependency edges in one statement.
pub fn insert_step(workflow_slug: &str, s: &StepDef) -> QfResult<()> {
    execute(
        "WITH step AS ( \
           INSERT INTO quantum_flow.workflow_steps (workflow_slug, step_slug, step_type, step_index, \
                  deps_count, initial_tasks, max_attempts, timeout, base_delay) \
           SELECT $1, $2, $3, (SELECT count(*) FROM quantum_flow.workflow_steps WHERE workflow_slug = $1), \
                  cardinality($4::text[]), $5, $6, $7, $8 \
           RETURNING workflow_slug, step_slug) \
         INSERT INTO quantum_flow.workflow_step_dependencies_def (workflow_slug, dep_slug, step_slug, dep_index) \
         SELECT step.workflow_slug, d.slug, step.step_slug, (d.ord - 1)::int \
         FROM step, unnest($4::text[]) WITH ORDINALITY AS d(slug, ord)",
        &[
            workflow_slug.into(),
            s.step_slug.as_str().into(),
            s.step_type.as_str().into(),
            s.depends_on.clone().into(),
            s.initial_tasks.into(),
            s.max_attempts.into(),
            s.timeout.into(),
            s.base_delay.into(),
        ],
    )?;
    Ok(())
}

/// A workflow as a flow document (`export_flow`), steps in step order, dependencies in the
/// order given; options a step does not set are left out.
pub fn document(slug: &str) -> QfResult<Option<FlowDocument>> {
    let Some(mut doc) = query_opt(
        "SELECT workflow_slug, max_attempts, timeout, base_delay, description \
         FROM quantum_flow.workflows WHERE workflow_slug = $1",
        &[slug.into()],
        |r| {
            Ok(FlowDocument {
                workflow_slug: req(r, 1)?,
                max_attempts: req(r, 2)?,
                timeout: req(r, 3)?,
                base_delay: req(r, 4)?,
                description: col(r, 5)?,
                steps: Vec::new(),
            })
        },
    )?
    else {
        return Ok(None);
    };
    doc.steps = query(
        "SELECT s.step_slug, \
                ARRAY(SELECT d.dep_slug FROM quantum_flow.workflow_step_dependencies_def d \
                      WHERE d.workflow_slug = s.workflow_slug AND d.step_slug = s.step_slug \
                      ORDER BY d.dep_index), \
                s.step_type, s.initial_tasks, s.max_attempts, s.timeout, s.base_delay, s.description \
         FROM quantum_flow.workflow_steps s WHERE s.workflow_slug = $1 ORDER BY s.step_index",
        &[slug.into()],
        |r| {
            Ok(StepDocument {
                slug: req(r, 1)?,
                depends_on: req(r, 2)?,
                step_type: req(r, 3)?,
                initial_tasks: col(r, 4)?,
                max_attempts: col(r, 5)?,
                timeout: col(r, 6)?,
                base_delay: col(r, 7)?,
                description: col(r, 8)?,
            })
        },
    )?;
    Ok(Some(doc))
}

/// Sets the descriptions a flow document gives (define_flow).
pub fn set_descriptions(doc: &FlowDocument) -> QfResult<()> {
    let steps: Vec<String> = doc.steps.iter().map(|s| s.slug.clone()).collect();
    let descriptions: Vec<Option<String>> =
        doc.steps.iter().map(|s| s.description.clone()).collect();
    execute(
        "WITH flow AS ( \
           UPDATE quantum_flow.workflows SET description = $2 WHERE workflow_slug = $1) \
         UPDATE quantum_flow.workflow_steps s SET description = d.description \
         FROM unnest($3::text[], $4::text[]) AS d(step_slug, description) \
         WHERE s.workflow_slug = $1 AND s.step_slug = d.step_slug",
        &[
            doc.workflow_slug.as_str().into(),
            doc.description.clone().into(),
            steps.into(),
            descriptions.into(),
        ],
    )?;
    Ok(())
}

/// `get_flow`'s document, built by PostgreSQL.
pub fn flow_document(slug: &str) -> QfResult<Option<Jsonb>> {
    query_opt(
        "SELECT to_jsonb(w) || jsonb_build_object('steps', coalesce(( \
             SELECT jsonb_agg(jsonb_build_object( \
                      'step_slug', s.step_slug, 'step_type', s.step_type, 'step_index', s.step_index, \
                      'depends_on', coalesce((SELECT jsonb_agg(d.dep_slug ORDER BY d.dep_index) \
                                              FROM quantum_flow.workflow_step_dependencies_def d \
                                              WHERE d.workflow_slug = s.workflow_slug AND d.step_slug = s.step_slug), \
                                             '[]'::jsonb), \
                      'initial_tasks', s.initial_tasks, 'max_attempts', s.max_attempts, \
                      'timeout', s.timeout, 'base_delay', s.base_delay, \
                      'description', s.description) ORDER BY s.step_index) \
             FROM quantum_flow.workflow_steps s WHERE s.workflow_slug = w.workflow_slug), '[]'::jsonb)) \
         FROM quantum_flow.workflows w WHERE w.workflow_slug = $1",
        &[slug.into()],
        |r| req(r, 1),
    )
}
