//! Statements on the runtime tables (runs, step states, tasks).

use super::{col, execute, query, query_opt, req};
use crate::engine::graph::StepState;
use crate::engine::COUNTER_SHARDS;
use crate::error::{QfError, QfResult};
use crate::jsonb::Jsonb;
use crate::queue::{TaskKey, Timer};
use crate::settings::JSONB_MAX_BYTES;
use pgrx::datum::Uuid;

/// A run to create: who started it and when it may start.
pub struct NewRun<'a> {
    pub run_id: Uuid,
    pub workflow_slug: &'a str,
    pub input: Jsonb,
    /// `start_flow(..., start_at)`: its first tasks become visible then.
    pub start_at: Option<pgrx::datum::TimestampWithTimeZone>,
    /// A sub-flow step's task that this run carries out (run, step, task index).
    pub parent: Option<(Uuid, &'a str, i32)>,
}

/// What `insert` created: the run's concurrency key value (None: not limited) and whether it
/// has a deadline.
pub struct Inserted {
    pub key_value: Option<String>,
    pub has_deadline: bool,
}

/// Creates a run with one step state per step; None when `run_id` is taken. Its deadline is
/// the workflow's `run_timeout` after it starts (at `start_at` when that is later); its
/// concurrency key value is the flow input's value at the workflow's `concurrency_key`, as
/// text (a run whose input lacks the key, or has null there, is not limited).
pub fn insert(run: &NewRun<'_>) -> QfResult<Option<Inserted>> {
    let (parent_run, parent_step, parent_task) = match run.parent {
        Some((r, s, t)) => (Some(r), Some(s), Some(t)),
        None => (None, None, None),
    };
    let inserted = query_opt(
        "INSERT INTO quantum_flow.runs (run_id, workflow_slug, input, remaining_steps, start_at, deadline, \
                concurrency_value, parent_run_id, parent_step_slug, parent_task_index) \
         SELECT $1, $2, $3, (SELECT count(*) FROM quantum_flow.workflow_steps WHERE workflow_slug = $2), \
                $4, greatest(clock_timestamp(), coalesce($4, clock_timestamp())) + make_interval(secs => w.run_timeout), \
                CASE WHEN w.concurrency_key IS NOT NULL THEN $3 ->> w.concurrency_key END, $5, $6, $7 \
         FROM quantum_flow.workflows w WHERE w.workflow_slug = $2 \
         ON CONFLICT (run_id) DO NOTHING RETURNING concurrency_value, deadline IS NOT NULL",
        &[
            run.run_id.into(),
            run.workflow_slug.into(),
            run.input.into(),
            run.start_at.into(),
            parent_run.into(),
            parent_step.into(),
            parent_task.into(),
        ],
        |r| {
            Ok(Inserted {
                key_value: col(r, 1)?,
                has_deadline: req(r, 2)?,
            })
        },
    )?;
    if inserted.is_some() {
        execute(
            "INSERT INTO quantum_flow.step_states (run_id, step_slug, workflow_slug, remaining_deps) \
             SELECT $1, step_slug, workflow_slug, deps_count FROM quantum_flow.workflow_steps \
             WHERE workflow_slug = $2",
            &[run.run_id.into(), run.workflow_slug.into()],
        )?;
    }
    Ok(inserted)
}

/// Steps with no dependencies, in definition order.
pub fn root_steps(workflow_slug: &str) -> QfResult<Vec<String>> {
    query(
        "SELECT step_slug FROM quantum_flow.workflow_steps WHERE workflow_slug = $1 AND deps_count = 0 \
         ORDER BY step_index",
        &[workflow_slug.into()],
        |r| req(r, 1),
    )
}

/// How many steps the workflow has, and whether one of its root steps is a map step (maps
/// over the flow input).
pub fn start_shape(workflow_slug: &str) -> QfResult<(i64, bool)> {
    Ok(query_opt(
        "SELECT count(*), coalesce(bool_or(step_type = 'map' AND deps_count = 0), false) \
         FROM quantum_flow.workflow_steps WHERE workflow_slug = $1",
        &[workflow_slug.into()],
        |r| Ok((req(r, 1)?, req(r, 2)?)),
    )?
    .unwrap_or((0, false)))
}

/// The first root map step, if the flow input is not an array (with the input's JSON type).
pub fn root_map_over_non_array(
    workflow_slug: &str,
    input: Jsonb,
) -> QfResult<Option<(String, String)>> {
    query_opt(
        "SELECT s.step_slug, jsonb_typeof($2) FROM quantum_flow.workflow_steps s \
         WHERE s.workflow_slug = $1 AND s.step_type = 'map' AND s.deps_count = 0 \
           AND jsonb_typeof($2) <> 'array' \
         ORDER BY s.step_index LIMIT 1",
        &[workflow_slug.into(), input.into()],
        |r| Ok((req(r, 1)?, req(r, 2)?)),
    )
}

/// How a step that just became ready must start.
pub struct StepSource {
    pub step_type: String,
    /// The dependency a map step maps over (None: the flow input).
    pub source_step: Option<String>,
    /// Whether that dependency was skipped (then so is the map step: it has no array).
    pub source_skipped: bool,
    /// JSON type of the array a map step maps over, and its length when it is an array.
    pub source_type: Option<String>,
    pub source_len: Option<i32>,
    /// Whether the step's input meets its condition (None: the step has none).
    pub condition_met: Option<bool>,
    pub when_unmet: String,
    /// The workflow a sub-flow step starts runs of.
    pub flow: Option<String>,
    /// An event step whose event arrived before it was ready.
    pub has_early_event: bool,
    /// When its tasks (or child runs) may start, when that is not now: `start_delay` from
    /// now, not before the run's `start_at`.
    pub visible_at: Option<pgrx::datum::TimestampWithTimeZone>,
}

/// The object a step's condition is tested against, and a single step's input without the
/// flow input's size: `{"run": <flow input>, "<dep>": <output>, ...}` over its completed
/// dependencies (`$1` the run, `ws` the step; a macro so statements stay `'static`).
macro_rules! step_input {
    () => {
        "(jsonb_build_object('run', (SELECT r.input FROM quantum_flow.runs r WHERE r.run_id = $1)) \
          || coalesce((SELECT jsonb_object_agg(d.dep_slug, ds.output) \
                       FROM quantum_flow.workflow_step_dependencies_def d \
                       JOIN quantum_flow.step_states ds ON ds.run_id = $1 AND ds.step_slug = d.dep_slug \
                       WHERE d.workflow_slug = ws.workflow_slug AND d.step_slug = ws.step_slug \
                         AND ds.status = 'completed'), '{}'::jsonb))"
    };
}

/// Where a step that became ready gets its work from, and whether it may start (see
/// `StepSource`). Each value is computed once: `src` is MATERIALIZED and the condition's
/// input is fenced with `OFFSET 0`, because PostgreSQL copies an inlined expression into each
/// place that uses it, and every copy's subqueries are initialized at every execution (the
/// statement had 22 plan nodes, 9 of them copies, on every step hand-off).
pub fn step_source(
    run_id: Uuid,
    workflow_slug: &str,
    step_slug: &str,
) -> QfResult<Option<StepSource>> {
    query_opt(
        concat!(
            "WITH s AS ( \
               SELECT ws.step_type, ws.when_unmet, ws.flow, \
                      CASE WHEN ws.step_type = 'map' THEN \
                        (SELECT d.dep_slug FROM quantum_flow.workflow_step_dependencies_def d \
                         WHERE d.workflow_slug = ws.workflow_slug AND d.step_slug = ws.step_slug) END AS source_step, \
                      CASE WHEN ws.if_matches IS NOT NULL OR ws.if_not_matches IS NOT NULL THEN \
                        (SELECT (ws.if_matches IS NULL OR i.input @> ws.if_matches) \
                                AND (ws.if_not_matches IS NULL OR NOT i.input @> ws.if_not_matches) \
                         FROM (SELECT ",
            step_input!(),
            " AS input OFFSET 0) i) END AS condition_met, \
                      (SELECT ss.event_payload IS NOT NULL FROM quantum_flow.step_states ss \
                       WHERE ss.run_id = $1 AND ss.step_slug = ws.step_slug) AS has_early_event, \
                      (SELECT greatest(clock_timestamp(), coalesce(r.start_at, clock_timestamp())) \
                              + make_interval(secs => coalesce(ws.start_delay, 0)) \
                       FROM quantum_flow.runs r WHERE r.run_id = $1 \
                         AND (ws.start_delay IS NOT NULL OR r.start_at > clock_timestamp())) AS visible_at \
               FROM quantum_flow.workflow_steps ws WHERE ws.workflow_slug = $2 AND ws.step_slug = $3), \
             src AS MATERIALIZED ( \
               SELECT s.*, \
                      (SELECT ss.status = 'skipped' FROM quantum_flow.step_states ss \
                       WHERE ss.run_id = $1 AND ss.step_slug = s.source_step) AS source_skipped, \
                      CASE WHEN s.step_type <> 'map' THEN NULL \
                           WHEN s.source_step IS NULL THEN (SELECT r.input FROM quantum_flow.runs r WHERE r.run_id = $1) \
                           ELSE (SELECT ss.output FROM quantum_flow.step_states ss \
                                 WHERE ss.run_id = $1 AND ss.step_slug = s.source_step) END AS arr \
               FROM s) \
             SELECT step_type, source_step, coalesce(source_skipped, false), jsonb_typeof(arr), \
                    CASE WHEN jsonb_typeof(arr) = 'array' THEN jsonb_array_length(arr) END, \
                    condition_met, when_unmet, flow, coalesce(has_early_event, false), visible_at \
             FROM src"
        ),
        &[run_id.into(), workflow_slug.into(), step_slug.into()],
        |r| {
            Ok(StepSource {
                step_type: req(r, 1)?,
                source_step: col(r, 2)?,
                source_skipped: req(r, 3)?,
                source_type: col(r, 4)?,
                source_len: col(r, 5)?,
                condition_met: col(r, 6)?,
                when_unmet: req(r, 7)?,
                flow: col(r, 8)?,
                has_early_event: req(r, 9)?,
                visible_at: col(r, 10)?,
            })
        },
    )
}

/// A sub-flow step's input for its child run: the single step's input, or a map step's
/// array elements in order.
pub fn sub_flow_inputs(run_id: Uuid, workflow_slug: &str, step_slug: &str) -> QfResult<Vec<Jsonb>> {
    query(
        concat!(
            "WITH ws AS (SELECT * FROM quantum_flow.workflow_steps WHERE workflow_slug = $2 AND step_slug = $3) \
             SELECT ",
            step_input!(),
            " FROM ws WHERE ws.step_type <> 'map' \
             UNION ALL \
             SELECT e.item FROM ( \
               SELECT e.item, e.ord \
               FROM ws, jsonb_array_elements(CASE WHEN ws.step_type = 'map' THEN \
                      coalesce((SELECT ss.output FROM quantum_flow.step_states ss \
                                JOIN quantum_flow.workflow_step_dependencies_def d \
                                  ON d.workflow_slug = ws.workflow_slug AND d.step_slug = ws.step_slug \
                                WHERE ss.run_id = $1 AND ss.step_slug = d.dep_slug), \
                               (SELECT r.input FROM quantum_flow.runs r WHERE r.run_id = $1)) \
                      ELSE '[]'::jsonb END) WITH ORDINALITY AS e(item, ord) \
               ORDER BY e.ord) e"
        ),
        &[run_id.into(), workflow_slug.into(), step_slug.into()],
        |r| req(r, 1),
    )
}

/// Marks a ready step skipped (its condition was not met, or the array it maps over does not
/// exist). It has no tasks and no output.
pub fn skip_step(run_id: Uuid, step_slug: &str) -> QfResult<()> {
    execute(
        "UPDATE quantum_flow.step_states SET status = 'skipped', tasks_total = 0 \
         WHERE run_id = $1 AND step_slug = $2 AND status = 'created' RETURNING 1",
        &[run_id.into(), step_slug.into()],
    )?;
    Ok(())
}

/// Skips every step that depends on `step_slug`, directly or not, and has not started (a
/// `skip_cascade`). Returns the steps it skipped.
pub fn skip_descendants(
    run_id: Uuid,
    workflow_slug: &str,
    step_slug: &str,
) -> QfResult<Vec<String>> {
    query(
        "WITH RECURSIVE below(step_slug) AS ( \
           SELECT d.step_slug FROM quantum_flow.workflow_step_dependencies_def d \
           WHERE d.workflow_slug = $2 AND d.dep_slug = $3 \
           UNION \
           SELECT d.step_slug FROM below b JOIN quantum_flow.workflow_step_dependencies_def d \
             ON d.workflow_slug = $2 AND d.dep_slug = b.step_slug) \
         UPDATE quantum_flow.step_states ss SET status = 'skipped', tasks_total = 0 \
         FROM below b WHERE ss.run_id = $1 AND ss.step_slug = b.step_slug AND ss.status = 'created' \
         RETURNING ss.step_slug",
        &[run_id.into(), workflow_slug.into(), step_slug.into()],
        |r| req(r, 1),
    )
}

/// A map step over an empty array: no tasks, completed at once with output `[]`.
pub fn complete_empty_map(run_id: Uuid, step_slug: &str) -> QfResult<()> {
    execute(
        "UPDATE quantum_flow.step_states \
         SET status = 'completed', tasks_total = 0, output = '[]'::jsonb, \
             started_at = clock_timestamp(), completed_at = clock_timestamp() \
         WHERE run_id = $1 AND step_slug = $2",
        &[run_id.into(), step_slug.into()],
    )?;
    Ok(())
}

/// Counts one completed task of a map step on its shard; returns the shard's task count when
/// this was the shard's last task (the caller then adds it to the step with
/// `count_completed_tasks_of_steps`).
pub fn count_completed_shard_task(
    run_id: Uuid,
    step_slug: &str,
    task_index: i32,
) -> QfResult<Option<i32>> {
    Ok(query_opt(
        "UPDATE quantum_flow.step_task_shards SET tasks_completed = tasks_completed + 1 \
         WHERE run_id = $1 AND step_slug = $2 AND shard = ($3 / 4) % $4 \
         RETURNING CASE WHEN tasks_completed = tasks_total THEN tasks_total END",
        &[
            run_id.into(),
            step_slug.into(),
            task_index.into(),
            COUNTER_SHARDS.into(),
        ],
        |r| col::<i32>(r, 1),
    )?
    .flatten())
}

/// Completes a map step whose tasks are all counted, with its tasks' outputs as an array in
/// task order, aggregated once here. Returns None when done, or the size in bytes the array
/// would have had when it does not fit in a jsonb (nothing is written then: the caller fails
/// the run). A single step is completed by the statement that counts its task
/// (`count_completed_tasks_of_steps`, or `queue::complete_one` for a task completed alone).
///
/// Runs as its own statement after that count, so its snapshot includes the other
/// completers' task outputs (they committed before our counter updates could proceed).
pub fn finish_map_step(run_id: Uuid, step_slug: &str) -> QfResult<Option<i64>> {
    // A jsonb array holds each element plus a 4-byte entry and up to 3 bytes of alignment,
    // read from the outputs' headers without detoasting them; the aggregate is built only
    // when it fits.
    let too_large = query_opt(
        "SELECT bytes FROM ( \
           SELECT (8 + coalesce(sum(quantum_flow.jsonb_raw_size(t.output) + 7), 0))::bigint AS bytes \
           FROM quantum_flow.step_tasks t WHERE t.run_id = $1 AND t.step_slug = $2) s \
         WHERE bytes > $3",
        &[run_id.into(), step_slug.into(), JSONB_MAX_BYTES.into()],
        |r| req::<i64>(r, 1),
    )?;
    if too_large.is_some() {
        return Ok(too_large);
    }
    execute(
        "UPDATE quantum_flow.step_states ss \
         SET status = 'completed', completed_at = clock_timestamp(), \
             output = (SELECT coalesce(jsonb_agg(t.output ORDER BY t.task_index), '[]'::jsonb) \
                       FROM quantum_flow.step_tasks t \
                       WHERE t.run_id = ss.run_id AND t.step_slug = ss.step_slug) \
         WHERE ss.run_id = $1 AND ss.step_slug = $2",
        &[run_id.into(), step_slug.into()],
    )?;
    Ok(None)
}

/// Counts `n` finished (completed or skipped) steps against their run, which must still be
/// started or paused, and when steps remain, counts `step_slug` as finished against each of
/// its dependents that has not been skipped, in one statement (the run's row first). Returns
/// the steps still to finish and the dependents that have no dependency left, in definition
/// order; or None when the run has ended (it failed meanwhile).
///
/// The dependents' rows are updated in the snapshot taken before any wait for the run's row;
/// should a concurrent completion of another dependency have decremented one of them meanwhile,
/// the UPDATE re-reads that row's newest version (READ COMMITTED), so no count is lost.
pub fn count_finished_steps_and_ready(
    run_id: Uuid,
    workflow_slug: &str,
    step_slug: &str,
    n: i32,
) -> QfResult<Option<(i32, Vec<String>)>> {
    // Each row: the run's remaining steps, and a dependent that became ready, if any.
    let rows: Vec<(i32, Option<(i32, String)>)> = query(
        "WITH run AS ( \
           UPDATE quantum_flow.runs SET remaining_steps = remaining_steps - $4 \
           WHERE run_id = $1 AND status IN ('started', 'paused') RETURNING remaining_steps), \
         deps AS ( \
           UPDATE quantum_flow.step_states ss SET remaining_deps = ss.remaining_deps - 1 \
           FROM quantum_flow.workflow_step_dependencies_def d, quantum_flow.workflow_steps ws \
           WHERE (SELECT r.remaining_steps FROM run r) > 0 \
             AND d.workflow_slug = $2 AND d.dep_slug = $3 AND ss.run_id = $1 AND ss.step_slug = d.step_slug \
             AND ws.workflow_slug = d.workflow_slug AND ws.step_slug = d.step_slug AND ss.status = 'created' \
           RETURNING ss.remaining_deps, ws.step_index, ss.step_slug) \
         SELECT r.remaining_steps, d.remaining_deps, d.step_index, d.step_slug \
         FROM run r LEFT JOIN deps d ON true",
        &[run_id.into(), workflow_slug.into(), step_slug.into(), n.into()],
        |r| {
            let ready = match col::<i32>(r, 2)? {
                Some(0) => Some((req::<i32>(r, 3)?, req::<String>(r, 4)?)),
                _ => None,
            };
            Ok((req::<i32>(r, 1)?, ready))
        },
    )?;
    let Some(remaining) = rows.first().map(|r| r.0) else {
        return Ok(None);
    };
    let mut ready: Vec<(i32, String)> = rows.into_iter().filter_map(|(_, ready)| ready).collect();
    ready.sort();
    Ok(Some((
        remaining,
        ready.into_iter().map(|(_, slug)| slug).collect(),
    )))
}

/// Completes a run; its output holds every completed leaf step's output (skipped leaves
/// have none: a run whose leaves were all skipped has output `{}`). Returns the run's links
/// (for what follows its end), or the size in bytes the output would have had when it does
/// not fit in a jsonb (nothing is written then: the caller fails the run).
///
/// One statement: the size is summed first, and the output is aggregated only when it fits
/// (`jsonb_object_agg` would raise on one that does not). Against a size check, the update
/// and a read of the links, that is two statements fewer at the end of every run.
pub fn complete_run(run_id: Uuid) -> QfResult<RunCompletion> {
    let row = query_opt(
        "WITH leaves AS MATERIALIZED ( \
           SELECT ss.step_slug, ss.output \
           FROM quantum_flow.runs r JOIN quantum_flow.step_states ss ON ss.run_id = r.run_id \
           WHERE r.run_id = $1 AND ss.status = 'completed' \
             AND NOT EXISTS (SELECT 1 FROM quantum_flow.workflow_step_dependencies_def d \
                             WHERE d.workflow_slug = r.workflow_slug AND d.dep_slug = ss.step_slug)), \
         size AS ( \
           SELECT (8 + coalesce(sum(quantum_flow.jsonb_raw_size(l.output) + length(l.step_slug) + 11), 0))::bigint \
                  AS bytes \
           FROM leaves l), \
         done AS ( \
           UPDATE quantum_flow.runs r \
           SET status = 'completed', completed_at = clock_timestamp(), \
               output = (SELECT coalesce(jsonb_object_agg(l.step_slug, l.output), '{}'::jsonb) FROM leaves l) \
           WHERE r.run_id = $1 AND (SELECT bytes FROM size) <= $2 \
           RETURNING true AS completed, r.parent_run_id, r.parent_step_slug, r.parent_task_index, \
                     r.timer_message_id) \
         SELECT s.bytes, d.completed IS NOT NULL, d.parent_run_id, d.parent_step_slug, \
                d.parent_task_index, d.timer_message_id \
         FROM size s LEFT JOIN done d ON true",
        &[run_id.into(), JSONB_MAX_BYTES.into()],
        |r| {
            let bytes: i64 = req(r, 1)?;
            if !req::<bool>(r, 2)? {
                return Ok(RunCompletion::TooLarge(bytes));
            }
            Ok(RunCompletion::Completed(RunLinks {
                parent: task_key_of(col(r, 3)?, col(r, 4)?, col(r, 5)?),
                timer_message_id: col(r, 6)?,
            }))
        },
    )?;
    row.ok_or_else(|| QfError::Internal(format!("completing run {run_id} returned no row")))
}

/// What `complete_run` did.
pub enum RunCompletion {
    Completed(RunLinks),
    /// The output would be this many bytes, more than a jsonb value holds.
    TooLarge(i64),
}

/// What `fail_task` did to a task.
pub struct FailedAttempt {
    /// `queued` (will be retried) or `failed` (attempts exhausted, or not to be retried).
    pub status: String,
    pub attempts: i32,
    /// None for a sub-flow step's task (its child run carries it).
    pub message_id: Option<i64>,
    pub workflow_slug: String,
    pub base_delay: i32,
    /// The run's concurrency key value (None: not limited).
    pub key_value: Option<String>,
}

/// Who reports a failed attempt: a worker (for a task it claimed, optionally naming the
/// attempt) or a sub-flow step's child run (for the task it carries out).
#[derive(Debug, Clone, Copy)]
pub enum FailedBy {
    Worker { attempt: Option<i32> },
    Child(Uuid),
}

/// Records a failed attempt of a started task of a started or paused run. With `retry`
/// false, or no attempts left (counted from `attempts_base`), the task fails for good.
pub fn fail_attempt(
    run_id: Uuid,
    step_slug: &str,
    task_index: i32,
    error_message: &str,
    by: FailedBy,
    retry: bool,
) -> QfResult<Option<FailedAttempt>> {
    let (attempt, child) = match by {
        FailedBy::Worker { attempt } => (attempt, None),
        FailedBy::Child(child) => (None, Some(child)),
    };
    query_opt(
        "WITH r AS MATERIALIZED ( \
           SELECT run_id, workflow_slug, concurrency_value FROM quantum_flow.runs \
           WHERE run_id = $1 AND status IN ('started', 'paused')) \
         UPDATE quantum_flow.step_tasks t \
         SET status = CASE WHEN NOT $7 OR t.attempts_count - t.attempts_base >= coalesce(ws.max_attempts, w.max_attempts) \
                           THEN 'failed' ELSE 'queued' END, \
             error_message = $4, last_error_at = clock_timestamp(), \
             failed_at = CASE WHEN NOT $7 OR t.attempts_count - t.attempts_base >= coalesce(ws.max_attempts, w.max_attempts) \
                              THEN clock_timestamp() END \
         FROM r, quantum_flow.workflows w, quantum_flow.workflow_steps ws \
         WHERE t.run_id = $1 AND t.step_slug = $2 AND t.task_index = $3 AND t.status = 'started' \
           AND ($5::int IS NULL OR t.attempts_count = $5) \
           AND w.workflow_slug = r.workflow_slug \
           AND ws.workflow_slug = r.workflow_slug AND ws.step_slug = t.step_slug \
           AND CASE WHEN $6::uuid IS NULL THEN ws.flow IS NULL \
                    ELSE ws.flow IS NOT NULL AND t.child_run_id = $6 END \
         RETURNING t.status, t.attempts_count, t.message_id, r.workflow_slug, \
                   coalesce(ws.base_delay, w.base_delay), r.concurrency_value",
        &[
            run_id.into(),
            step_slug.into(),
            task_index.into(),
            error_message.into(),
            attempt.into(),
            child.into(),
            retry.into(),
        ],
        |r| {
            Ok(FailedAttempt {
                status: req(r, 1)?,
                attempts: req(r, 2)?,
                message_id: col(r, 3)?,
                workflow_slug: req(r, 4)?,
                base_delay: req(r, 5)?,
                key_value: col(r, 6)?,
            })
        },
    )
}

/// Marks a task failed (attempts exhausted by timeouts).
pub fn fail_timed_out_task(
    run_id: Uuid,
    step_slug: &str,
    task_index: i32,
    error_message: &str,
) -> QfResult<()> {
    execute(
        "UPDATE quantum_flow.step_tasks SET status = 'failed', error_message = $4, failed_at = clock_timestamp(), \
                last_error_at = clock_timestamp() \
         WHERE run_id = $1 AND step_slug = $2 AND task_index = $3",
        &[run_id.into(), step_slug.into(), task_index.into(), error_message.into()],
    )?;
    Ok(())
}

pub fn fail_step(run_id: Uuid, step_slug: &str, error_message: &str) -> QfResult<()> {
    execute(
        "UPDATE quantum_flow.step_states SET status = 'failed', error_message = $3, failed_at = clock_timestamp() \
         WHERE run_id = $1 AND step_slug = $2",
        &[run_id.into(), step_slug.into(), error_message.into()],
    )?;
    Ok(())
}

/// Fails a started or paused run; false when it had ended.
pub fn fail_run(run_id: Uuid, error_message: &str) -> QfResult<bool> {
    Ok(execute(
        "UPDATE quantum_flow.runs SET status = 'failed', error_message = $2, failed_at = clock_timestamp() \
         WHERE run_id = $1 AND status IN ('started', 'paused') RETURNING 1",
        &[run_id.into(), error_message.into()],
    )? == 1)
}

/// A run's status, workflow and concurrency key value.
pub fn status_of(run_id: Uuid) -> QfResult<Option<(String, String, Option<String>)>> {
    query_opt(
        "SELECT status, workflow_slug, concurrency_value FROM quantum_flow.runs WHERE run_id = $1",
        &[run_id.into()],
        |r| Ok((req(r, 1)?, req(r, 2)?, col(r, 3)?)),
    )
}

/// The time `seconds` from now (the database's clock).
pub fn seconds_from_now(seconds: i32) -> QfResult<pgrx::datum::TimestampWithTimeZone> {
    query_opt(
        "SELECT clock_timestamp() + make_interval(secs => $1)",
        &[seconds.into()],
        |r| req(r, 1),
    )?
    .ok_or_else(|| crate::error::QfError::Internal("clock_timestamp() returned no row".into()))
}

/// What a complete/fail call that changed nothing found: the run (None: no such run).
pub struct RunAndTask {
    pub run_status: String,
    pub workflow_slug: String,
    /// The task's status and attempts made (None: the run has no such task).
    pub task: Option<(String, i32)>,
    /// A sub-flow step's task: the child run of its current attempt.
    pub child_run_id: Option<Uuid>,
}

pub fn task_lookup(run_id: Uuid, step_slug: &str, task_index: i32) -> QfResult<Option<RunAndTask>> {
    query_opt(
        "SELECT r.status, r.workflow_slug, t.status, t.attempts_count, t.child_run_id \
         FROM quantum_flow.runs r \
         LEFT JOIN quantum_flow.step_tasks t ON t.run_id = r.run_id AND t.step_slug = $2 AND t.task_index = $3 \
         WHERE r.run_id = $1",
        &[run_id.into(), step_slug.into(), task_index.into()],
        |r| {
            let task_status: Option<String> = col(r, 3)?;
            let attempts: Option<i32> = col(r, 4)?;
            Ok(RunAndTask {
                run_status: req(r, 1)?,
                workflow_slug: req(r, 2)?,
                task: task_status.zip(attempts),
                child_run_id: col(r, 5)?,
            })
        },
    )
}

/// Puts started tasks whose claim timed out back in the queue (their messages are visible
/// already), recording the attempt that timed out; `maintain` does this for workflows that
/// nobody polls. Each task must be locked by the caller's statement before (see
/// `queue::sweep_overdue`).
pub fn requeue_timed_out(tasks: &[TaskKey]) -> QfResult<usize> {
    let run_ids: Vec<Uuid> = tasks.iter().map(|t| t.run_id).collect();
    let steps: Vec<String> = tasks.iter().map(|t| t.step_slug.clone()).collect();
    let indexes: Vec<i32> = tasks.iter().map(|t| t.task_index).collect();
    execute(
        "UPDATE quantum_flow.step_tasks t \
         SET status = 'queued', worker_id = NULL, last_error_at = clock_timestamp(), \
             error_message = format('attempt %s timed out after %ss', t.attempts_count, coalesce(ws.timeout, w.timeout)) \
         FROM unnest($1::uuid[], $2::text[], $3::int[]) AS k(run_id, step_slug, task_index), \
              quantum_flow.runs r, quantum_flow.workflows w, quantum_flow.workflow_steps ws \
         WHERE t.run_id = k.run_id AND t.step_slug = k.step_slug AND t.task_index = k.task_index \
           AND t.status = 'started' AND r.run_id = t.run_id AND w.workflow_slug = r.workflow_slug \
           AND ws.workflow_slug = r.workflow_slug AND ws.step_slug = t.step_slug \
         RETURNING 1",
        &[run_ids.into(), steps.into(), indexes.into()],
    )
}

/// `get_run`'s document, built by PostgreSQL, with each step as the view `step_progress`
/// shows it (see sql/bootstrap.sql: unfinished steps of a failed run are `cancelled`).
///
/// A run's input, output and step outputs may together be larger than one jsonb value holds.
/// Then the step outputs are left out (each shown as null with `"output_omitted": true`), and
/// if that is not enough the run's output too (`"output_omitted": true` on the run), rather
/// than failing. Sizes are read from the values' headers (`jsonb_raw_size`).
pub fn run_document(run_id: Uuid, tasks: Option<Jsonb>) -> QfResult<Option<Jsonb>> {
    query_opt(
        "WITH r AS ( \
           SELECT r.*, \
                  quantum_flow.jsonb_raw_size(r.input) + coalesce(quantum_flow.jsonb_raw_size(r.output), 0) AS run_bytes, \
                  (SELECT coalesce(sum(quantum_flow.jsonb_raw_size(ss.output)), 0) \
                   FROM quantum_flow.step_states ss WHERE ss.run_id = r.run_id) AS step_bytes \
           FROM quantum_flow.runs r WHERE r.run_id = $1), \
         budget AS ( \
           SELECT r.run_bytes + r.step_bytes > $2 AS omit_steps, r.run_bytes > $2 AS omit_output FROM r) \
         SELECT jsonb_build_object( \
           'run_id', r.run_id, 'workflow_slug', r.workflow_slug, 'status', r.status, \
           'input', r.input, 'output', CASE WHEN b.omit_output THEN NULL ELSE r.output END, \
           'error_message', r.error_message, \
           'started_at', r.started_at, 'completed_at', r.completed_at, 'failed_at', r.failed_at, \
           'steps', coalesce(( \
             SELECT jsonb_agg(jsonb_build_object( \
                      'step_slug', p.step_slug, 'status', p.status, \
                      'tasks_total', p.tasks_total, 'tasks_completed', p.tasks_completed, \
                      'output', CASE WHEN b.omit_steps THEN NULL ELSE p.output END, \
                      'error_message', p.error_message) \
                    || CASE WHEN b.omit_steps AND p.output IS NOT NULL \
                            THEN '{\"output_omitted\": true}'::jsonb ELSE '{}'::jsonb END \
                    || CASE WHEN $3::jsonb IS NOT NULL \
                            THEN jsonb_build_object('tasks', coalesce($3::jsonb -> p.step_slug, '[]'::jsonb)) \
                            ELSE '{}'::jsonb END \
                    || CASE WHEN ws.flow IS NOT NULL THEN jsonb_build_object('child_run_ids', coalesce(( \
                              SELECT jsonb_agg(t.child_run_id ORDER BY t.task_index) FROM quantum_flow.step_tasks t \
                              WHERE t.run_id = p.run_id AND t.step_slug = p.step_slug \
                                AND t.child_run_id IS NOT NULL), '[]'::jsonb)) \
                            ELSE '{}'::jsonb END \
                    ORDER BY p.step_index) \
             FROM quantum_flow.step_progress p \
             JOIN quantum_flow.workflow_steps ws ON ws.workflow_slug = r.workflow_slug AND ws.step_slug = p.step_slug \
             WHERE p.run_id = r.run_id), '[]'::jsonb)) \
           || CASE WHEN b.omit_output AND r.output IS NOT NULL \
                   THEN '{\"output_omitted\": true}'::jsonb ELSE '{}'::jsonb END \
           || jsonb_strip_nulls(jsonb_build_object('parent_run_id', r.parent_run_id, \
                                                   'start_at', r.start_at, 'deadline', r.deadline)) \
         FROM r, budget b",
        &[
            run_id.into(),
            (JSONB_MAX_BYTES - DOCUMENT_OVERHEAD).into(),
            tasks.into(),
        ],
        |r| req(r, 1),
    )
}

/// Every task of a run, by step (`{"<step>": [{task}, ...]}`, tasks in index order), for
/// `get_run(..., include_tasks => true)`: status, attempts, the last error, the worker that
/// holds or held it, when its claim runs out (a claimed task: its message's visibility time)
/// and when it is retried (a queued task waiting for its backoff). `queue_table` is the
/// run's workflow's queue, quoted.
pub fn task_list(queue_table: &str, run_id: Uuid) -> QfResult<Jsonb> {
    let sql = format!(
        "SELECT coalesce(jsonb_object_agg(s.step_slug, s.tasks), '{{}}'::jsonb) FROM ( \
           SELECT t.step_slug, jsonb_agg(jsonb_build_object( \
                    'task_index', t.task_index, 'status', t.status, \
                    'attempts', t.attempts_count - t.attempts_base, 'error_message', t.error_message, \
                    'worker_id', t.worker_id, \
                    'claim_deadline', CASE WHEN t.status = 'started' AND q.vt < 'infinity' THEN q.vt END, \
                    'next_retry_at', CASE WHEN t.status = 'queued' AND t.error_message IS NOT NULL \
                                           AND q.vt > clock_timestamp() AND q.vt < 'infinity' THEN q.vt END) \
                  || CASE WHEN t.child_run_id IS NOT NULL \
                          THEN jsonb_build_object('child_run_id', t.child_run_id) ELSE '{{}}'::jsonb END \
                  ORDER BY t.task_index) AS tasks \
           FROM quantum_flow.step_tasks t LEFT JOIN {queue_table} q ON q.msg_id = t.message_id \
           WHERE t.run_id = $1 GROUP BY t.step_slug) s"
    );
    let doc = crate::store::query_prepared(&sql, &[run_id.into()], |r| req::<Jsonb>(r, 1))?;
    doc.into_iter()
        .next()
        .ok_or_else(|| crate::error::QfError::Internal("no task list row".into()))
}

/// The figures of `workflow_stats`, per workflow in slug order, for `metrics()`.
pub struct WorkflowStats {
    pub workflow_slug: String,
    pub runs: [(&'static str, i64); 4],
    pub tasks: [(&'static str, i64); 3],
    pub oldest_queued_seconds: Option<f64>,
    pub completed_last_minute: i64,
}

pub fn workflow_stats() -> QfResult<Vec<WorkflowStats>> {
    query(
        "SELECT workflow_slug, runs_started, runs_paused, runs_completed, runs_failed, \
                tasks_queued, tasks_started, tasks_failed, oldest_queued_seconds, completed_last_minute \
         FROM quantum_flow.workflow_stats ORDER BY workflow_slug",
        &[],
        |r| {
            Ok(WorkflowStats {
                workflow_slug: req(r, 1)?,
                runs: [
                    ("started", req(r, 2)?),
                    ("paused", req(r, 3)?),
                    ("completed", req(r, 4)?),
                    ("failed", req(r, 5)?),
                ],
                tasks: [
                    ("queued", req(r, 6)?),
                    ("started", req(r, 7)?),
                    ("failed", req(r, 8)?),
                ],
                oldest_queued_seconds: col(r, 9)?,
                completed_last_minute: req(r, 10)?,
            })
        },
    )
}

/// Each step of a run in step order, with its state as `flow_graph` shows it: its status,
/// except that the unfinished steps of a paused run show as `paused`, and a started step none
/// of whose tasks can be claimed yet shows as `waiting` (an event step waiting for its event,
/// a step in its `start_delay` or before the run's `start_at`, tasks waiting for a
/// concurrency slot). Empty when the run does not exist.
pub fn step_progress(run_id: Uuid) -> QfResult<Vec<(String, StepState)>> {
    query(
        "SELECT p.step_slug, \
                CASE WHEN r.status = 'paused' AND p.status IN ('created', 'started') THEN 'paused' \
                     WHEN p.status = 'started' AND ( \
                            p.step_type = 'event' \
                            OR clock_timestamp() < greatest(r.start_at, p.started_at + make_interval(secs => coalesce(ws.start_delay, 0))) \
                            OR (EXISTS (SELECT 1 FROM quantum_flow.waiting_tasks w \
                                        WHERE w.run_id = p.run_id AND w.step_slug = p.step_slug) \
                                AND NOT EXISTS (SELECT 1 FROM quantum_flow.step_tasks t \
                                                WHERE t.run_id = p.run_id AND t.step_slug = p.step_slug \
                                                  AND t.message_id IS NOT NULL))) \
                       THEN 'waiting' \
                     ELSE p.status END, \
                p.tasks_completed, p.tasks_total \
         FROM quantum_flow.step_progress p \
         JOIN quantum_flow.runs r ON r.run_id = p.run_id \
         JOIN quantum_flow.workflow_steps ws ON ws.workflow_slug = r.workflow_slug AND ws.step_slug = p.step_slug \
         WHERE p.run_id = $1 ORDER BY p.step_index",
        &[run_id.into()],
        |r| {
            Ok((
                req(r, 1)?,
                StepState {
                    status: req(r, 2)?,
                    tasks_completed: req(r, 3)?,
                    tasks_total: col(r, 4)?,
                },
            ))
        },
    )
}

/// Room left in a `get_run` document for everything but the input and outputs (keys,
/// statuses, counts, timestamps and errors of up to thousands of steps).
const DOCUMENT_OVERHEAD: i64 = 8 * 1024 * 1024;

/// Runs that ended before `now() - older_than`, oldest first, at most `max_runs`, locked
/// (skipping any another transaction holds), with their workflow and their tasks' messages.
pub fn lock_ended_runs(
    older_than: pgrx::datum::Interval,
    keep_failed: bool,
    max_runs: i32,
) -> QfResult<Vec<(Uuid, String, Vec<i64>)>> {
    query(
        "WITH ended AS ( \
           SELECT r.run_id, r.workflow_slug FROM quantum_flow.runs r \
           WHERE r.status IN ('completed', 'failed') AND (r.status = 'completed' OR NOT $2) \
             AND coalesce(r.completed_at, r.failed_at) < now() - $1::interval \
           ORDER BY coalesce(r.completed_at, r.failed_at) \
           LIMIT $3 \
           FOR UPDATE OF r SKIP LOCKED) \
         SELECT e.run_id, e.workflow_slug, \
                ARRAY(SELECT t.message_id FROM quantum_flow.step_tasks t \
                      WHERE t.run_id = e.run_id AND t.message_id IS NOT NULL \
                      UNION ALL \
                      SELECT r.timer_message_id FROM quantum_flow.runs r \
                      WHERE r.run_id = e.run_id AND r.timer_message_id IS NOT NULL) \
         FROM ended e ORDER BY e.workflow_slug, e.run_id",
        &[older_than.into(), keep_failed.into(), max_runs.into()],
        |r| Ok((req(r, 1)?, req(r, 2)?, req(r, 3)?)),
    )
}

/// Deletes ended runs with their step states, tasks and counters (locked by
/// `lock_ended_runs` in this transaction, so they are still ended); returns how many.
pub fn delete_ended(run_ids: Vec<Uuid>) -> QfResult<usize> {
    execute(
        "WITH doomed AS MATERIALIZED ( \
           DELETE FROM quantum_flow.runs WHERE run_id = ANY($1) AND status IN ('completed', 'failed') \
           RETURNING run_id), \
         shards AS ( \
           DELETE FROM quantum_flow.step_task_shards s USING doomed d WHERE s.run_id = d.run_id), \
         tasks AS ( \
           DELETE FROM quantum_flow.step_tasks t USING doomed d WHERE t.run_id = d.run_id), \
         states AS ( \
           DELETE FROM quantum_flow.step_states ss USING doomed d WHERE ss.run_id = d.run_id) \
         SELECT 1 FROM doomed",
        &[run_ids.into()],
    )
}

/// A run's links, read when it ends: the sub-flow step task it carries out and its run timer.
pub struct RunLinks {
    pub parent: Option<TaskKey>,
    pub timer_message_id: Option<i64>,
}

pub fn run_links(run_id: Uuid) -> QfResult<Option<RunLinks>> {
    query_opt(
        "SELECT parent_run_id, parent_step_slug, parent_task_index, timer_message_id \
         FROM quantum_flow.runs WHERE run_id = $1",
        &[run_id.into()],
        |r| {
            Ok(RunLinks {
                parent: task_key_of(col(r, 1)?, col(r, 2)?, col(r, 3)?),
                timer_message_id: col(r, 4)?,
            })
        },
    )
}

/// The parent task named by a run's `parent_*` columns, if all are set.
fn task_key_of(
    run_id: Option<Uuid>,
    step_slug: Option<String>,
    task_index: Option<i32>,
) -> Option<TaskKey> {
    match (run_id, step_slug, task_index) {
        (Some(run_id), Some(step_slug), Some(task_index)) => Some(TaskKey {
            run_id,
            step_slug,
            task_index,
        }),
        _ => None,
    }
}

/// The run's child runs that have not ended, locked, in `run_id` order, skipping any another
/// transaction holds (see `executor::end_children`), with their workflows.
pub fn lock_live_children(run_id: Uuid) -> QfResult<Vec<(Uuid, String)>> {
    query(
        "SELECT run_id, workflow_slug FROM quantum_flow.runs \
         WHERE parent_run_id = $1 AND status IN ('started', 'paused') \
         ORDER BY run_id FOR UPDATE SKIP LOCKED",
        &[run_id.into()],
        |r| Ok((req(r, 1)?, req(r, 2)?)),
    )
}

/// Live runs whose parent run has ended (their parent's failure could not lock them at the
/// time), or is gone (pruned, or deleted with its workflow, before a `maintain` saw the
/// child): at most `limit`, locked, skipping any another transaction holds. The parent's
/// status is `deleted` when it is gone.
pub fn lock_orphans(limit: i32) -> QfResult<Vec<(Uuid, String, Uuid, String)>> {
    query(
        "SELECT c.run_id, c.workflow_slug, c.parent_run_id, coalesce(p.status, 'deleted') \
         FROM quantum_flow.runs c \
         LEFT JOIN quantum_flow.runs p ON p.run_id = c.parent_run_id \
         WHERE c.parent_run_id IS NOT NULL AND c.status IN ('started', 'paused') \
           AND (p.run_id IS NULL OR p.status NOT IN ('started', 'paused')) \
         ORDER BY c.run_id LIMIT $1 FOR UPDATE OF c SKIP LOCKED",
        &[limit.into()],
        |r| Ok((req(r, 1)?, req(r, 2)?, req(r, 3)?, req(r, 4)?)),
    )
}

/// Creates the tasks of a sub-flow step, started, one per child run (each with a new run
/// id), and marks the step started. Returns the child run ids in task order.
pub fn start_flow_tasks(
    run_id: Uuid,
    step_slug: &str,
    n: i32,
    is_map: bool,
) -> QfResult<Vec<Uuid>> {
    let children = query(
        "WITH tasks AS ( \
           INSERT INTO quantum_flow.step_tasks (run_id, step_slug, task_index, status, attempts_count, \
                                                started_at, child_run_id) \
           SELECT $1, $2, i, 'started', 1, clock_timestamp(), gen_random_uuid() \
           FROM generate_series(0, $3 - 1) AS i \
           RETURNING task_index, child_run_id), \
         shards AS ( \
           INSERT INTO quantum_flow.step_task_shards (run_id, step_slug, shard, tasks_total) \
           SELECT $1, $2, (i / 4) % $5, count(*) FROM generate_series(0, $3 - 1) AS i WHERE $4 GROUP BY (i / 4) % $5), \
         state AS ( \
           UPDATE quantum_flow.step_states SET status = 'started', tasks_total = $3, started_at = clock_timestamp() \
           WHERE run_id = $1 AND step_slug = $2) \
         SELECT child_run_id FROM tasks ORDER BY task_index",
        &[
            run_id.into(),
            step_slug.into(),
            n.into(),
            is_map.into(),
            COUNTER_SHARDS.into(),
        ],
        |r| req(r, 1),
    )?;
    Ok(children)
}

/// A sub-flow task's next attempt: a new child run id, one more attempt. Returns the id.
pub fn next_child(task: &TaskKey) -> QfResult<Option<Uuid>> {
    query_opt(
        "UPDATE quantum_flow.step_tasks \
         SET status = 'started', attempts_count = attempts_count + 1, started_at = clock_timestamp(), \
             child_run_id = gen_random_uuid() \
         WHERE run_id = $1 AND step_slug = $2 AND task_index = $3 AND status = 'queued' \
         RETURNING child_run_id",
        &[
            task.run_id.into(),
            task.step_slug.as_str().into(),
            task.task_index.into(),
        ],
        |r| req(r, 1),
    )
}

/// Completes the sub-flow task that child run `child` carries out, with the child's output.
/// Returns whether the step is a map step, or None when the task was not waiting for this
/// child (its parent ended, or it moved on to another child).
pub fn complete_flow_task(task: &TaskKey, child: Uuid, output: Jsonb) -> QfResult<Option<bool>> {
    query_opt(
        "WITH r AS MATERIALIZED ( \
           SELECT run_id, workflow_slug FROM quantum_flow.runs \
           WHERE run_id = $1 AND status IN ('started', 'paused')) \
         UPDATE quantum_flow.step_tasks t \
         SET status = 'completed', output = $5, completed_at = clock_timestamp() \
         FROM r, quantum_flow.workflow_steps ws \
         WHERE t.run_id = $1 AND t.step_slug = $2 AND t.task_index = $3 AND t.status = 'started' \
           AND t.child_run_id = $4 AND ws.workflow_slug = r.workflow_slug AND ws.step_slug = t.step_slug \
         RETURNING ws.step_type = 'map'",
        &[
            task.run_id.into(),
            task.step_slug.as_str().into(),
            task.task_index.into(),
            child.into(),
            output.into(),
        ],
        |r| req(r, 1),
    )
}

/// A run's output (after it completed).
pub fn output_of(run_id: Uuid) -> QfResult<Option<Jsonb>> {
    Ok(query_opt(
        "SELECT output FROM quantum_flow.runs WHERE run_id = $1",
        &[run_id.into()],
        |r| col::<Jsonb>(r, 1),
    )?
    .flatten())
}

/// Frees what an ended run held of its concurrency key: deletes its waiting tasks, then
/// counts its unfinished tasks that have a message (a second statement, so that it sees the
/// messages of an admission that held those waiting rows while we waited for them). Returns
/// the run's workflow, key value and that count, when the run has a key value.
pub fn release_run_slots(run_id: Uuid) -> QfResult<Option<(String, String, i32)>> {
    execute(
        "DELETE FROM quantum_flow.waiting_tasks WHERE run_id = $1 RETURNING 1",
        &[run_id.into()],
    )?;
    query_opt(
        "SELECT r.workflow_slug, r.concurrency_value, \
                (SELECT count(*)::int FROM quantum_flow.step_tasks t \
                 JOIN quantum_flow.workflow_steps ws ON ws.workflow_slug = r.workflow_slug AND ws.step_slug = t.step_slug \
                 WHERE t.run_id = r.run_id AND t.status IN ('queued', 'started') AND t.message_id IS NOT NULL \
                   AND ws.step_type <> 'event') \
         FROM quantum_flow.runs r WHERE r.run_id = $1 AND r.concurrency_value IS NOT NULL",
        &[run_id.into()],
        |r| Ok((req(r, 1)?, req(r, 2)?, req(r, 3)?)),
    )
}

/// What `send_event` found: the run's status and workflow, and the step's type and status
/// (None: the workflow has no such step).
pub struct EventTarget {
    pub run_status: String,
    pub workflow_slug: String,
    pub step: Option<(String, String, bool)>,
}

pub fn event_target(run_id: Uuid, step_slug: &str) -> QfResult<Option<EventTarget>> {
    query_opt(
        "SELECT r.status, r.workflow_slug, ws.step_type, ss.status, ss.event_payload IS NOT NULL \
         FROM quantum_flow.runs r \
         LEFT JOIN quantum_flow.workflow_steps ws ON ws.workflow_slug = r.workflow_slug AND ws.step_slug = $2 \
         LEFT JOIN quantum_flow.step_states ss ON ss.run_id = r.run_id AND ss.step_slug = $2 \
         WHERE r.run_id = $1",
        &[run_id.into(), step_slug.into()],
        |r| {
            let step_type: Option<String> = col(r, 3)?;
            let status: Option<String> = col(r, 4)?;
            Ok(EventTarget {
                run_status: req(r, 1)?,
                workflow_slug: req(r, 2)?,
                step: match (step_type, status) {
                    (Some(t), Some(s)) => Some((t, s, col::<bool>(r, 5)?.unwrap_or(false))),
                    _ => None,
                },
            })
        },
    )
}

/// Completes a waiting event step's task with the event's payload. Returns its timer's
/// message id, or None when the task was not waiting (not ready yet, already completed, or
/// its run ended).
pub fn complete_event_task(run_id: Uuid, step_slug: &str, payload: Jsonb) -> QfResult<Option<i64>> {
    query_opt(
        "WITH r AS MATERIALIZED ( \
           SELECT run_id FROM quantum_flow.runs WHERE run_id = $1 AND status IN ('started', 'paused')) \
         UPDATE quantum_flow.step_tasks t \
         SET status = 'completed', output = $3, attempts_count = 1, started_at = coalesce(t.started_at, clock_timestamp()), \
             completed_at = clock_timestamp() \
         FROM r WHERE t.run_id = r.run_id AND t.step_slug = $2 AND t.task_index = 0 AND t.status = 'queued' \
         RETURNING t.message_id",
        &[run_id.into(), step_slug.into(), payload.into()],
        |r| req(r, 1),
    )
}

/// Keeps an event that arrived before its step was ready; false when the step is not waiting
/// to become ready or already has an event.
pub fn store_early_event(run_id: Uuid, step_slug: &str, payload: Jsonb) -> QfResult<bool> {
    Ok(execute(
        "UPDATE quantum_flow.step_states ss SET event_payload = $3, event_at = clock_timestamp() \
         FROM quantum_flow.runs r \
         WHERE ss.run_id = $1 AND ss.step_slug = $2 AND ss.status = 'created' AND ss.event_payload IS NULL \
           AND r.run_id = ss.run_id AND r.status IN ('started', 'paused') \
         RETURNING 1",
        &[run_id.into(), step_slug.into(), payload.into()],
    )? == 1)
}

/// Starts an event step whose event arrived early: its task is completed at once with it.
pub fn complete_event_step_early(run_id: Uuid, step_slug: &str) -> QfResult<()> {
    execute(
        "WITH task AS ( \
           INSERT INTO quantum_flow.step_tasks (run_id, step_slug, task_index, status, attempts_count, output, \
                                                started_at, completed_at) \
           SELECT ss.run_id, ss.step_slug, 0, 'completed', 1, ss.event_payload, ss.event_at, clock_timestamp() \
           FROM quantum_flow.step_states ss WHERE ss.run_id = $1 AND ss.step_slug = $2) \
         UPDATE quantum_flow.step_states SET status = 'started', tasks_total = 1, started_at = clock_timestamp() \
         WHERE run_id = $1 AND step_slug = $2 RETURNING 1",
        &[run_id.into(), step_slug.into()],
    )?;
    Ok(())
}

/// Fails an event step's task whose timer `message_id` came due without an event. Returns
/// the step's timeout in seconds, or None when the task was no longer waiting.
pub fn fail_event_task(timer: &Timer, step_slug: &str) -> QfResult<Option<i32>> {
    query_opt(
        "WITH r AS MATERIALIZED ( \
           SELECT run_id, workflow_slug FROM quantum_flow.runs WHERE run_id = $1 AND status IN ('started', 'paused')) \
         UPDATE quantum_flow.step_tasks t \
         SET status = 'failed', attempts_count = 1, failed_at = clock_timestamp(), \
             error_message = 'no event arrived', last_error_at = clock_timestamp() \
         FROM r, quantum_flow.workflows w, quantum_flow.workflow_steps ws \
         WHERE t.run_id = r.run_id AND t.step_slug = $2 AND t.task_index = 0 AND t.status = 'queued' \
           AND t.message_id = $3 AND w.workflow_slug = r.workflow_slug \
           AND ws.workflow_slug = r.workflow_slug AND ws.step_slug = t.step_slug \
         RETURNING coalesce(ws.timeout, w.timeout)",
        &[timer.run_id.into(), step_slug.into(), timer.message_id.into()],
        |r| req(r, 1),
    )
}

/// The run timeout in seconds of a live run whose deadline has passed and whose current
/// timer is `timer` (None: the timer is stale).
pub fn run_timer_due(timer: &Timer) -> QfResult<Option<i32>> {
    query_opt(
        "SELECT w.run_timeout FROM quantum_flow.runs r JOIN quantum_flow.workflows w ON w.workflow_slug = r.workflow_slug \
         WHERE r.run_id = $1 AND r.status IN ('started', 'paused') AND r.timer_message_id = $2 \
           AND r.deadline <= clock_timestamp()",
        &[timer.run_id.into(), timer.message_id.into()],
        |r| Ok(col::<i32>(r, 1)?.unwrap_or(0)),
    )
}

/// Sets a run's status from `from` to `to` (pause: started to paused; resume: the reverse);
/// false when it was not `from`.
pub fn set_run_status(run_id: Uuid, from: &str, to: &str) -> QfResult<bool> {
    Ok(execute(
        "UPDATE quantum_flow.runs SET status = $3 WHERE run_id = $1 AND status = $2 RETURNING 1",
        &[run_id.into(), from.into(), to.into()],
    )? == 1)
}

/// `retry_run`: a failed run becomes started again, with a new deadline. Returns its
/// concurrency key value and whether it has a deadline, or None when it was not failed.
pub fn reopen_run(run_id: Uuid) -> QfResult<Option<(Option<String>, bool)>> {
    query_opt(
        "UPDATE quantum_flow.runs r \
         SET status = 'started', error_message = NULL, failed_at = NULL, timer_message_id = NULL, \
             deadline = clock_timestamp() + make_interval(secs => w.run_timeout) \
         FROM quantum_flow.workflows w \
         WHERE r.run_id = $1 AND r.status = 'failed' AND w.workflow_slug = r.workflow_slug \
         RETURNING r.concurrency_value, r.deadline IS NOT NULL",
        &[run_id.into()],
        |r| Ok((col(r, 1)?, req(r, 2)?)),
    )
}

/// `retry_run`: the run's counters recounted from its steps' statuses. A completion that
/// raced the run's failure can have finished its step without counting it (the count found
/// the run failed): without this, its dependents would wait for it forever once the run is
/// retried. Each created step's remaining dependencies and the run's remaining steps are
/// those not completed or skipped.
pub fn recount_run(run_id: Uuid) -> QfResult<()> {
    execute(
        "WITH deps AS ( \
           UPDATE quantum_flow.step_states ss \
           SET remaining_deps = ( \
             SELECT count(*)::int FROM quantum_flow.workflow_step_dependencies_def d \
             JOIN quantum_flow.step_states ds ON ds.run_id = ss.run_id AND ds.step_slug = d.dep_slug \
             WHERE d.workflow_slug = ss.workflow_slug AND d.step_slug = ss.step_slug \
               AND ds.status NOT IN ('completed', 'skipped')) \
           WHERE ss.run_id = $1 AND ss.status = 'created' \
           RETURNING 1) \
         UPDATE quantum_flow.runs r \
         SET remaining_steps = (SELECT count(*)::int FROM quantum_flow.step_states ss \
                                WHERE ss.run_id = $1 AND ss.status NOT IN ('completed', 'skipped')) \
         WHERE r.run_id = $1",
        &[run_id.into()],
    )?;
    Ok(())
}

/// `retry_run`: map steps all of whose tasks had completed but that never finished, because
/// their output did not fit in one `jsonb` (failed), or because their run ended first, in
/// this or an earlier `retry_run` (left started), are started again, to be finished by the
/// caller. Returns them in step order.
pub fn reopen_counted_map_steps(run_id: Uuid) -> QfResult<Vec<String>> {
    steps_in_order(
        "UPDATE quantum_flow.step_states ss \
         SET status = 'started', error_message = NULL, failed_at = NULL \
         FROM quantum_flow.workflow_steps ws \
         WHERE ss.run_id = $1 AND ss.status IN ('failed', 'started') AND ss.fan_out_next IS NULL \
           AND ws.workflow_slug = ss.workflow_slug AND ws.step_slug = ss.step_slug \
           AND ws.step_type = 'map' AND ss.tasks_total > 0 \
           AND ss.tasks_total = (SELECT count(*) FROM quantum_flow.step_tasks t \
                                 WHERE t.run_id = ss.run_id AND t.step_slug = ss.step_slug \
                                   AND t.status = 'completed') \
         RETURNING ws.step_index, ss.step_slug",
        run_id,
    )
}

/// The steps a statement returns as `(step_index, step_slug)` rows, in step order.
fn steps_in_order(sql: &'static str, run_id: Uuid) -> QfResult<Vec<String>> {
    let mut steps: Vec<(i32, String)> =
        query(sql, &[run_id.into()], |r| Ok((req(r, 1)?, req(r, 2)?)))?;
    steps.sort();
    Ok(steps.into_iter().map(|(_, s)| s).collect())
}

/// A started run's steps still to finish (None: the run is not started).
pub fn remaining_steps(run_id: Uuid) -> QfResult<Option<i32>> {
    query_opt(
        "SELECT remaining_steps FROM quantum_flow.runs WHERE run_id = $1 AND status = 'started'",
        &[run_id.into()],
        |r| req::<i32>(r, 1),
    )
}

/// `retry_run`: steps that were ready but have no tasks (they failed before fanning out, or
/// the run failed before they started) are made ready again. Returns them in step order.
pub fn reopen_taskless_steps(run_id: Uuid) -> QfResult<Vec<String>> {
    steps_in_order(
        "UPDATE quantum_flow.step_states ss \
         SET status = 'created', error_message = NULL, failed_at = NULL, tasks_total = NULL, started_at = NULL \
         FROM quantum_flow.workflow_steps ws \
         WHERE ss.run_id = $1 AND ss.remaining_deps = 0 AND ss.status IN ('created', 'failed') \
           AND ws.workflow_slug = ss.workflow_slug AND ws.step_slug = ss.step_slug \
           AND NOT EXISTS (SELECT 1 FROM quantum_flow.step_tasks t WHERE t.run_id = ss.run_id AND t.step_slug = ss.step_slug) \
         RETURNING ws.step_index, ss.step_slug",
        run_id,
    )
}

/// `retry_run`: every unfinished or failed task goes back to `queued` without a message, its
/// attempts counted afresh from here; its step is started again. Returns each such task with
/// its kind (`single`, `map`, `event`, or `flow` for a sub-flow step), in step order.
pub fn reopen_tasks(run_id: Uuid) -> QfResult<Vec<(TaskKey, String)>> {
    let tasks = query(
        "WITH t AS ( \
           UPDATE quantum_flow.step_tasks t \
           SET status = 'queued', attempts_base = t.attempts_count, worker_id = NULL, failed_at = NULL, \
               message_id = NULL, child_run_id = NULL \
           WHERE t.run_id = $1 AND t.status IN ('queued', 'started', 'failed') \
           RETURNING t.step_slug, t.task_index), \
         steps AS ( \
           UPDATE quantum_flow.step_states ss SET status = 'started', error_message = NULL, failed_at = NULL \
           WHERE ss.run_id = $1 AND ss.step_slug IN (SELECT step_slug FROM t)) \
         SELECT t.step_slug, t.task_index, CASE WHEN ws.flow IS NOT NULL THEN 'flow' ELSE ws.step_type END \
         FROM t JOIN quantum_flow.runs r ON r.run_id = $1 \
         JOIN quantum_flow.workflow_steps ws ON ws.workflow_slug = r.workflow_slug AND ws.step_slug = t.step_slug \
         ORDER BY ws.step_index, t.task_index",
        &[run_id.into()],
        |r| {
            Ok((
                TaskKey {
                    run_id,
                    step_slug: req(r, 1)?,
                    task_index: req(r, 2)?,
                },
                req(r, 3)?,
            ))
        },
    )?;
    Ok(tasks)
}

/// `retry_run`: a started map step whose fan-out had not finished when the run failed goes on
/// from its next task (tasks are created in index order, so that is how many it has); polls
/// clear `fan_out_next` of ended runs (see `queue::continue_fan_out`).
pub fn resume_fan_outs(run_id: Uuid) -> QfResult<usize> {
    execute(
        "UPDATE quantum_flow.step_states ss SET fan_out_next = c.n \
         FROM (SELECT t.step_slug, count(*)::int AS n FROM quantum_flow.step_tasks t \
               WHERE t.run_id = $1 GROUP BY t.step_slug) c \
         WHERE ss.run_id = $1 AND ss.step_slug = c.step_slug AND ss.status = 'started' \
           AND c.n < ss.tasks_total \
         RETURNING 1",
        &[run_id.into()],
    )
}

/// `retry_run`: gives the run's queued worker tasks without a message one (visible now), or,
/// for a run with a concurrency key value, puts them in `waiting_tasks`.
pub fn requeue_worker_tasks(
    queue: &str,
    run_id: Uuid,
    key: Option<(&str, &str)>,
) -> QfResult<usize> {
    match key {
        None => execute(
            "WITH t AS ( \
               SELECT t.step_slug, t.task_index FROM quantum_flow.step_tasks t \
               JOIN quantum_flow.runs r ON r.run_id = t.run_id \
               JOIN quantum_flow.workflow_steps ws ON ws.workflow_slug = r.workflow_slug AND ws.step_slug = t.step_slug \
               WHERE t.run_id = $2 AND t.status = 'queued' AND t.message_id IS NULL \
                 AND ws.step_type <> 'event' AND ws.flow IS NULL), \
             sent AS MATERIALIZED ( \
               SELECT t.step_slug, t.task_index, \
                      (SELECT pgmq.send($1, jsonb_build_object('run_id', $2::uuid, 'step_slug', t.step_slug, \
                                                               'task_index', t.task_index))) AS msg_id \
               FROM t) \
             UPDATE quantum_flow.step_tasks t SET message_id = s.msg_id FROM sent s \
             WHERE t.run_id = $2 AND t.step_slug = s.step_slug AND t.task_index = s.task_index RETURNING 1",
            &[queue.into(), run_id.into()],
        ),
        Some((workflow_slug, value)) => execute(
            "INSERT INTO quantum_flow.waiting_tasks (workflow_slug, key_value, run_id, step_slug, task_index) \
             SELECT $1, $3, t.run_id, t.step_slug, t.task_index FROM quantum_flow.step_tasks t \
             JOIN quantum_flow.workflow_steps ws ON ws.workflow_slug = $1 AND ws.step_slug = t.step_slug \
             WHERE t.run_id = $2 AND t.status = 'queued' AND t.message_id IS NULL \
               AND ws.step_type <> 'event' AND ws.flow IS NULL \
             ORDER BY t.step_slug, t.task_index RETURNING 1",
            &[workflow_slug.into(), run_id.into(), value.into()],
        ),
    }
}

/// `retry_run`: an event step's task waits again, with a new timer.
pub fn rearm_event_task(queue: &str, run_id: Uuid, step_slug: &str) -> QfResult<()> {
    execute(
        "UPDATE quantum_flow.step_tasks t \
         SET message_id = (SELECT pgmq.send($1, jsonb_build_object('run_id', $2::uuid, 'step_slug', $3::text, \
                                                                   'task_index', 0, 'timer', 'event_timeout'), \
                                            clock_timestamp() + make_interval(secs => coalesce(ws.timeout, w.timeout)))) \
         FROM quantum_flow.runs r, quantum_flow.workflows w, quantum_flow.workflow_steps ws \
         WHERE t.run_id = $2 AND t.step_slug = $3 AND t.task_index = 0 AND r.run_id = t.run_id \
           AND w.workflow_slug = r.workflow_slug AND ws.workflow_slug = r.workflow_slug AND ws.step_slug = t.step_slug \
         RETURNING 1",
        &[queue.into(), run_id.into(), step_slug.into()],
    )?;
    Ok(())
}

/// The workflow of each of these runs that exists.
pub fn workflows_of(run_ids: &[Uuid]) -> QfResult<Vec<(Uuid, String)>> {
    query(
        "SELECT run_id, workflow_slug FROM quantum_flow.runs WHERE run_id = ANY($1)",
        &[run_ids.to_vec().into()],
        |r| Ok((req(r, 1)?, req(r, 2)?)),
    )
}

/// Counts completed tasks of several steps at once (`(run, step, n, single)`, each step once),
/// locking their rows in key order; returns the steps whose tasks are now all completed, in
/// key order, each with whether it is a map step. Concurrent counts on one step serialize on its row; under READ COMMITTED each
/// re-reads the row after the lock wait and sees the others' increments, so exactly one sees
/// the total.
///
/// A single step (`single`: not a map step) whose task was its last is also marked completed
/// here, with that task's output (written earlier in this transaction, so this statement sees
/// it; it fits, being a task's). A map step is completed by `finish_map_step`. A single step's
/// task completed alone is counted by `queue::complete_one` instead, in the statement that
/// completes it.
pub fn count_completed_tasks_of_steps(
    counts: &[(Uuid, String, i32, bool)],
) -> QfResult<Vec<(Uuid, String, bool)>> {
    let run_ids: Vec<Uuid> = counts.iter().map(|c| c.0).collect();
    let steps: Vec<String> = counts.iter().map(|c| c.1.clone()).collect();
    let ns: Vec<i32> = counts.iter().map(|c| c.2).collect();
    let single: Vec<bool> = counts.iter().map(|c| c.3).collect();
    let mut done: Vec<(Uuid, String, bool)> = query(
        "WITH c AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::bool[]) AS c(run_id, step_slug, n, single)), \
         locked AS MATERIALIZED ( \
           SELECT ss.run_id, ss.step_slug, c.n, c.single, c.single AND ss.tasks_completed + c.n = ss.tasks_total AS finish \
           FROM quantum_flow.step_states ss \
           JOIN c ON ss.run_id = c.run_id AND ss.step_slug = c.step_slug \
           ORDER BY ss.run_id, ss.step_slug FOR UPDATE OF ss) \
         UPDATE quantum_flow.step_states ss SET tasks_completed = ss.tasks_completed + l.n, \
           status = CASE WHEN l.finish THEN 'completed' ELSE ss.status END, \
           completed_at = CASE WHEN l.finish THEN clock_timestamp() ELSE ss.completed_at END, \
           output = CASE WHEN l.finish \
                         THEN (SELECT t.output FROM quantum_flow.step_tasks t \
                               WHERE t.run_id = ss.run_id AND t.step_slug = ss.step_slug AND t.task_index = 0) \
                         ELSE ss.output END \
         FROM locked l WHERE ss.run_id = l.run_id AND ss.step_slug = l.step_slug \
         RETURNING ss.run_id, ss.step_slug, ss.tasks_completed = ss.tasks_total, NOT l.single",
        &[run_ids.into(), steps.into(), ns.into(), single.into()],
        |r| Ok((req(r, 1)?, req(r, 2)?, req::<bool>(r, 3)?, req::<bool>(r, 4)?)),
    )?
    .into_iter()
    .filter(|(_, _, all, _)| *all)
    .map(|(run, step, _, map)| (run, step, map))
    .collect();
    done.sort();
    Ok(done)
}
