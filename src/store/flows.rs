//! Statements on the definition tables.

use super::{col, execute, query, query_opt, req};
use crate::engine::definition::{FlowOptions, StepDef};
use crate::engine::document::{FlowDocument, StepDocument};
use crate::error::QfResult;
use crate::jsonb::Jsonb;
use pgrx::heap_tuple::PgHeapTuple;
use pgrx::AllocatedByRust;

pub type Row = PgHeapTuple<'static, AllocatedByRust>;

fn flow_options(r: &pgrx::spi::SpiHeapTupleData<'_>, first: usize) -> QfResult<FlowOptions> {
    Ok(FlowOptions {
        max_attempts: req(r, first)?,
        timeout: req(r, first + 1)?,
        base_delay: req(r, first + 2)?,
        run_timeout: col(r, first + 3)?,
        concurrency_key: col(r, first + 4)?,
        max_concurrency: col(r, first + 5)?,
    })
}

/// A workflow's options as stored.
pub fn options(slug: &str) -> QfResult<Option<FlowOptions>> {
    query_opt(
        "SELECT max_attempts, timeout, base_delay, run_timeout, concurrency_key, max_concurrency \
         FROM quantum_flow.workflows WHERE workflow_slug = $1",
        &[slug.into()],
        |r| flow_options(r, 1),
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
        "INSERT INTO quantum_flow.workflows (workflow_slug, max_attempts, timeout, base_delay, \
                run_timeout, concurrency_key, max_concurrency) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING 1",
        &[
            slug.into(),
            o.max_attempts.into(),
            o.timeout.into(),
            o.base_delay.into(),
            o.run_timeout.into(),
            o.concurrency_key.clone().into(),
            o.max_concurrency.into(),
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

/// The workflows `from` starts through its sub-flow steps and theirs, as a path from `from`
/// to `to` (both included), when `to` is among them.
pub fn sub_flow_path(from: &str, to: &str) -> QfResult<Option<Vec<String>>> {
    query_opt(
        "WITH RECURSIVE reach(workflow_slug, path) AS ( \
           SELECT $1::text, ARRAY[$1::text] \
           UNION ALL \
           SELECT s.flow, r.path || s.flow \
           FROM reach r JOIN quantum_flow.workflow_steps s ON s.workflow_slug = r.workflow_slug \
           WHERE s.flow IS NOT NULL AND NOT s.flow = ANY(r.path)) \
         SELECT path FROM reach WHERE workflow_slug = $2 LIMIT 1",
        &[from.into(), to.into()],
        |r| req(r, 1),
    )
}

/// A workflow's step slugs, in step order.
pub fn step_slugs(workflow_slug: &str) -> QfResult<Vec<String>> {
    query(
        "SELECT step_slug FROM quantum_flow.workflow_steps WHERE workflow_slug = $1 ORDER BY step_index",
        &[workflow_slug.into()],
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

/// Runs of the workflow that have not ended (started or paused).
pub fn started_run_count(slug: &str) -> QfResult<i64> {
    query_opt(
        "SELECT count(*) FROM quantum_flow.runs WHERE workflow_slug = $1 AND status IN ('started', 'paused')",
        &[slug.into()],
        |r| req(r, 1),
    )
    .map(|n| n.unwrap_or(0))
}

/// Deletes a workflow with its steps, edges, runs, step states, tasks, counters and
/// concurrency slots (the
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
         waiting AS ( \
           DELETE FROM quantum_flow.waiting_tasks WHERE workflow_slug = $1), \
         slots AS ( \
           DELETE FROM quantum_flow.concurrency_slots WHERE workflow_slug = $1), \
         edges AS ( \
           DELETE FROM quantum_flow.workflow_step_dependencies_def WHERE workflow_slug = $1), \
         steps AS ( \
           DELETE FROM quantum_flow.workflow_steps WHERE workflow_slug = $1) \
         DELETE FROM quantum_flow.workflows WHERE workflow_slug = $1",
        &[slug.into()],
    )?;
    Ok(())
}

/// The columns `step_def_row` reads, with `s` the workflow_steps row (a macro, so that
/// statements built with it stay `'static` text).
macro_rules! step_def_columns {
    () => {
        "s.step_slug, s.step_type, s.initial_tasks, s.max_attempts, s.timeout, s.base_delay, \
         ARRAY(SELECT d.dep_slug FROM quantum_flow.workflow_step_dependencies_def d \
               WHERE d.workflow_slug = s.workflow_slug AND d.step_slug = s.step_slug \
               ORDER BY d.dep_index), \
         s.if_matches, s.if_not_matches, s.when_unmet, s.start_delay, s.flow, s.description"
    };
}

/// A step definition from the columns of `step_def_columns!`, with its description.
fn step_def_row(r: &pgrx::spi::SpiHeapTupleData<'_>) -> QfResult<(StepDef, Option<String>)> {
    let json =
        |i| -> QfResult<Option<serde_json::Value>> { Ok(col::<pgrx::JsonB>(r, i)?.map(|j| j.0)) };
    Ok((
        StepDef {
            step_slug: req(r, 1)?,
            step_type: req(r, 2)?,
            initial_tasks: col(r, 3)?,
            max_attempts: col(r, 4)?,
            timeout: col(r, 5)?,
            base_delay: col(r, 6)?,
            depends_on: req::<Vec<String>>(r, 7)?,
            if_matches: json(8)?,
            if_not_matches: json(9)?,
            when_unmet: req(r, 10)?,
            start_delay: col(r, 11)?,
            flow: col(r, 12)?,
        },
        col(r, 13)?,
    ))
}

/// A stored step, in the shape `add_step` compares against.
pub fn step_def(workflow_slug: &str, step_slug: &str) -> QfResult<Option<StepDef>> {
    Ok(query_opt(
        concat!(
            "SELECT ",
            step_def_columns!(),
            " FROM quantum_flow.workflow_steps s WHERE s.workflow_slug = $1 AND s.step_slug = $2"
        ),
        &[workflow_slug.into(), step_slug.into()],
        step_def_row,
    )?
    .map(|(def, _)| def))
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
                  deps_count, initial_tasks, max_attempts, timeout, base_delay, \
                  if_matches, if_not_matches, when_unmet, start_delay, flow) \
           SELECT $1, $2, $3, (SELECT count(*) FROM quantum_flow.workflow_steps WHERE workflow_slug = $1), \
                  cardinality($4::text[]), $5, $6, $7, $8, $9, $10, $11, $12, $13 \
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
            s.if_matches.clone().map(pgrx::JsonB).into(),
            s.if_not_matches.clone().map(pgrx::JsonB).into(),
            s.when_unmet.as_str().into(),
            s.start_delay.into(),
            s.flow.clone().into(),
        ],
    )?;
    Ok(())
}

/// A workflow as a flow document (`export_flow`), steps in step order, dependencies in the
/// order given; options a step does not set are left out.
pub fn document(slug: &str) -> QfResult<Option<FlowDocument>> {
    let Some((options, description)) = query_opt(
        "SELECT max_attempts, timeout, base_delay, run_timeout, concurrency_key, max_concurrency, \
                description \
         FROM quantum_flow.workflows WHERE workflow_slug = $1",
        &[slug.into()],
        |r| Ok((flow_options(r, 1)?, col::<String>(r, 7)?)),
    )?
    else {
        return Ok(None);
    };
    let steps = query(
        concat!(
            "SELECT ",
            step_def_columns!(),
            " FROM quantum_flow.workflow_steps s WHERE s.workflow_slug = $1 ORDER BY s.step_index"
        ),
        &[slug.into()],
        |r| {
            let (def, description) = step_def_row(r)?;
            Ok(StepDocument::from_step_def(def, description))
        },
    )?;
    Ok(Some(FlowDocument {
        workflow_slug: slug.to_string(),
        max_attempts: options.max_attempts,
        timeout: options.timeout,
        base_delay: options.base_delay,
        run_timeout: options.run_timeout,
        concurrency_key: options.concurrency_key,
        max_concurrency: options.max_concurrency,
        description,
        steps,
    }))
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
                      'if', s.if_matches, 'if_not', s.if_not_matches, 'when_unmet', s.when_unmet, \
                      'start_delay', s.start_delay, 'flow', s.flow, \
                      'description', s.description) ORDER BY s.step_index) \
             FROM quantum_flow.workflow_steps s WHERE s.workflow_slug = w.workflow_slug), '[]'::jsonb)) \
         FROM quantum_flow.workflows w WHERE w.workflow_slug = $1",
        &[slug.into()],
        |r| req(r, 1),
    )
}
