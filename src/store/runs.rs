//! Statements on the runtime tables (runs, step states, tasks).

use super::{col, execute, query, query_opt, req};
use crate::engine::graph::StepState;
use crate::engine::COUNTER_SHARDS;
use crate::error::QfResult;
use crate::jsonb::Jsonb;
use crate::queue::TaskKey;
use crate::settings::JSONB_MAX_BYTES;
use pgrx::datum::Uuid;

/// Creates a run with one step state per step; false when `run_id` is taken.
pub fn insert(run_id: Uuid, workflow_slug: &str, input: Jsonb) -> QfResult<bool> {
    let inserted = execute(
        "INSERT INTO quantum_flow.runs (run_id, workflow_slug, input, remaining_steps) \
         SELECT $1, $2, $3, count(*) FROM quantum_flow.workflow_steps WHERE workflow_slug = $2 \
         ON CONFLICT (run_id) DO NOTHING RETURNING 1",
        &[run_id.into(), workflow_slug.into(), input.into()],
    )? == 1;
    if inserted {
        execute(
            "INSERT INTO quantum_flow.step_states (run_id, step_slug, workflow_slug, remaining_deps) \
             SELECT $1, step_slug, workflow_slug, deps_count FROM quantum_flow.workflow_steps \
             WHERE workflow_slug = $2",
            &[run_id.into(), workflow_slug.into()],
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

pub fn step_count(workflow_slug: &str) -> QfResult<i64> {
    Ok(query_opt(
        "SELECT count(*) FROM quantum_flow.workflow_steps WHERE workflow_slug = $1",
        &[workflow_slug.into()],
        |r| req(r, 1),
    )?
    .unwrap_or(0))
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
    /// JSON type of the array a map step maps over, and its length when it is an array.
    pub source_type: Option<String>,
    pub source_len: Option<i32>,
}

pub fn step_source(
    run_id: Uuid,
    workflow_slug: &str,
    step_slug: &str,
) -> QfResult<Option<StepSource>> {
    query_opt(
        "WITH s AS ( \
           SELECT ws.step_type, \
                  CASE WHEN ws.step_type = 'map' THEN \
                    (SELECT d.dep_slug FROM quantum_flow.workflow_step_dependencies_def d \
                     WHERE d.workflow_slug = ws.workflow_slug AND d.step_slug = ws.step_slug) END AS source_step \
           FROM quantum_flow.workflow_steps ws WHERE ws.workflow_slug = $2 AND ws.step_slug = $3), \
         src AS ( \
           SELECT s.*, CASE WHEN s.step_type <> 'map' THEN NULL \
                            WHEN s.source_step IS NULL THEN (SELECT r.input FROM quantum_flow.runs r WHERE r.run_id = $1) \
                            ELSE (SELECT ss.output FROM quantum_flow.step_states ss \
                                  WHERE ss.run_id = $1 AND ss.step_slug = s.source_step) END AS arr \
           FROM s) \
         SELECT step_type, source_step, jsonb_typeof(arr), \
                CASE WHEN jsonb_typeof(arr) = 'array' THEN jsonb_array_length(arr) END \
         FROM src",
        &[run_id.into(), workflow_slug.into(), step_slug.into()],
        |r| {
            Ok(StepSource {
                step_type: req(r, 1)?,
                source_step: col(r, 2)?,
                source_type: col(r, 3)?,
                source_len: col(r, 4)?,
            })
        },
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
/// `count_completed_tasks`).
pub fn count_completed_shard_task(
    run_id: Uuid,
    step_slug: &str,
    task_index: i32,
) -> QfResult<Option<i32>> {
    Ok(query_opt(
        "UPDATE quantum_flow.step_task_shards SET tasks_completed = tasks_completed + 1 \
         WHERE run_id = $1 AND step_slug = $2 AND shard = $3 % $4 \
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

/// Counts `n` completed tasks of a step; true when they were the step's last.
///
/// Concurrent counts on one step serialize on this row; under READ COMMITTED each sees the
/// others' increments (the row is re-read after the lock wait), so exactly one sees the total.
pub fn count_completed_tasks(run_id: Uuid, step_slug: &str, n: i32) -> QfResult<bool> {
    Ok(query_opt(
        "UPDATE quantum_flow.step_states SET tasks_completed = tasks_completed + $3 \
         WHERE run_id = $1 AND step_slug = $2 RETURNING tasks_completed = tasks_total",
        &[run_id.into(), step_slug.into(), n.into()],
        |r| req::<bool>(r, 1),
    )?
    .unwrap_or(false))
}

/// Marks a step completed, with its output: the single task's output, or the map tasks'
/// outputs as an array in task order, aggregated once here. Returns None when done, or the
/// size in bytes the array would have had when it does not fit in a jsonb (nothing is
/// written then: the caller fails the run).
///
/// Runs as its own statement after `count_completed_tasks`, so its snapshot includes the
/// other completers' task outputs (they committed before our counter updates could proceed).
pub fn finish_step(run_id: Uuid, step_slug: &str) -> QfResult<Option<i64>> {
    // A jsonb array holds each element plus a 4-byte entry and up to 3 bytes of alignment.
    // CASE evaluates the aggregate only when the sizes, read from the outputs' headers
    // without detoasting them, say that it fits.
    let fan_in = query_opt(
        "WITH step AS ( \
           SELECT ws.step_type = 'map' AS is_map, \
                  CASE WHEN ws.step_type = 'map' \
                       THEN (SELECT 8 + coalesce(sum(quantum_flow.jsonb_raw_size(t.output) + 7), 0) \
                             FROM quantum_flow.step_tasks t \
                             WHERE t.run_id = $1 AND t.step_slug = $2) \
                       ELSE 0 END::bigint AS bytes \
           FROM quantum_flow.workflow_steps ws JOIN quantum_flow.step_states ss \
             ON ws.workflow_slug = ss.workflow_slug AND ws.step_slug = ss.step_slug \
           WHERE ss.run_id = $1 AND ss.step_slug = $2) \
         SELECT bytes FROM step WHERE is_map AND bytes > $3",
        &[run_id.into(), step_slug.into(), JSONB_MAX_BYTES.into()],
        |r| req::<i64>(r, 1),
    )?;
    if fan_in.is_some() {
        return Ok(fan_in);
    }
    execute(
        "UPDATE quantum_flow.step_states ss \
         SET status = 'completed', completed_at = clock_timestamp(), \
             output = CASE WHEN ws.step_type = 'map' \
                           THEN (SELECT coalesce(jsonb_agg(t.output ORDER BY t.task_index), '[]'::jsonb) \
                                 FROM quantum_flow.step_tasks t \
                                 WHERE t.run_id = ss.run_id AND t.step_slug = ss.step_slug) \
                           ELSE (SELECT t.output FROM quantum_flow.step_tasks t \
                                 WHERE t.run_id = ss.run_id AND t.step_slug = ss.step_slug AND t.task_index = 0) END \
         FROM quantum_flow.workflow_steps ws \
         WHERE ss.run_id = $1 AND ss.step_slug = $2 \
           AND ws.workflow_slug = ss.workflow_slug AND ws.step_slug = ss.step_slug",
        &[run_id.into(), step_slug.into()],
    )?;
    Ok(None)
}

/// Counts a completed step against its run, which must still be started. Returns the steps
/// still to complete, or None when the run is no longer started (it failed meanwhile).
pub fn count_completed_step(run_id: Uuid) -> QfResult<Option<i32>> {
    query_opt(
        "UPDATE quantum_flow.runs SET remaining_steps = remaining_steps - 1 \
         WHERE run_id = $1 AND status = 'started' RETURNING remaining_steps",
        &[run_id.into()],
        |r| req(r, 1),
    )
}

/// Completes a run; its output holds every leaf step's output. Returns None when done, or the
/// size in bytes the output would have had when it does not fit in a jsonb (nothing is
/// written then: the caller fails the run).
pub fn complete_run(run_id: Uuid) -> QfResult<Option<i64>> {
    let too_large = query_opt(
        "SELECT bytes FROM ( \
           SELECT (8 + coalesce(sum(quantum_flow.jsonb_raw_size(ss.output) + length(ss.step_slug) + 11), 0))::bigint AS bytes \
           FROM quantum_flow.runs r JOIN quantum_flow.step_states ss ON ss.run_id = r.run_id \
           WHERE r.run_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM quantum_flow.workflow_step_dependencies_def d \
                             WHERE d.workflow_slug = r.workflow_slug AND d.dep_slug = ss.step_slug)) leaves \
         WHERE bytes > $2",
        &[run_id.into(), JSONB_MAX_BYTES.into()],
        |r| req::<i64>(r, 1),
    )?;
    if too_large.is_some() {
        return Ok(too_large);
    }
    execute(
        "UPDATE quantum_flow.runs r \
         SET status = 'completed', completed_at = clock_timestamp(), \
             output = (SELECT coalesce(jsonb_object_agg(ss.step_slug, ss.output), '{}'::jsonb) \
                       FROM quantum_flow.step_states ss \
                       WHERE ss.run_id = r.run_id \
                         AND NOT EXISTS (SELECT 1 FROM quantum_flow.workflow_step_dependencies_def d \
                                         WHERE d.workflow_slug = r.workflow_slug AND d.dep_slug = ss.step_slug)) \
         WHERE r.run_id = $1",
        &[run_id.into()],
    )?;
    Ok(None)
}

/// Counts a completed step against each of its dependents; returns the dependents that have
/// no dependency left, in definition order.
pub fn ready_dependents(
    run_id: Uuid,
    workflow_slug: &str,
    step_slug: &str,
) -> QfResult<Vec<String>> {
    let mut ready: Vec<(i32, String)> = query(
        "UPDATE quantum_flow.step_states ss SET remaining_deps = ss.remaining_deps - 1 \
         FROM quantum_flow.workflow_step_dependencies_def d, quantum_flow.workflow_steps ws \
         WHERE d.workflow_slug = $2 AND d.dep_slug = $3 AND ss.run_id = $1 AND ss.step_slug = d.step_slug \
           AND ws.workflow_slug = d.workflow_slug AND ws.step_slug = d.step_slug \
         RETURNING ss.remaining_deps, ws.step_index, ss.step_slug",
        &[run_id.into(), workflow_slug.into(), step_slug.into()],
        |r| Ok((req::<i32>(r, 1)?, req::<i32>(r, 2)?, req::<String>(r, 3)?)),
    )?
    .into_iter()
    .filter(|(remaining, _, _)| *remaining == 0)
    .map(|(_, index, slug)| (index, slug))
    .collect();
    ready.sort();
    Ok(ready.into_iter().map(|(_, slug)| slug).collect())
}

/// What `fail_task` did to a task.
pub struct FailedAttempt {
    /// `queued` (will be retried) or `failed` (attempts exhausted).
    pub status: String,
    pub attempts: i32,
    pub message_id: i64,
    pub workflow_slug: String,
    pub base_delay: i32,
}

/// Records a failed attempt of a started task of a started run.
pub fn fail_attempt(
    run_id: Uuid,
    step_slug: &str,
    task_index: i32,
    error_message: &str,
    attempt: Option<i32>,
) -> QfResult<Option<FailedAttempt>> {
    query_opt(
        "WITH r AS MATERIALIZED ( \
           SELECT run_id, workflow_slug FROM quantum_flow.runs WHERE run_id = $1 AND status = 'started') \
         UPDATE quantum_flow.step_tasks t \
         SET status = CASE WHEN t.attempts_count >= coalesce(ws.max_attempts, w.max_attempts) \
                           THEN 'failed' ELSE 'queued' END, \
             error_message = $4, \
             failed_at = CASE WHEN t.attempts_count >= coalesce(ws.max_attempts, w.max_attempts) \
                              THEN clock_timestamp() END \
         FROM r, quantum_flow.workflows w, quantum_flow.workflow_steps ws \
         WHERE t.run_id = $1 AND t.step_slug = $2 AND t.task_index = $3 AND t.status = 'started' \
           AND ($5::int IS NULL OR t.attempts_count = $5) \
           AND w.workflow_slug = r.workflow_slug \
           AND ws.workflow_slug = r.workflow_slug AND ws.step_slug = t.step_slug \
         RETURNING t.status, t.attempts_count, t.message_id, r.workflow_slug, \
                   coalesce(ws.base_delay, w.base_delay)",
        &[
            run_id.into(),
            step_slug.into(),
            task_index.into(),
            error_message.into(),
            attempt.into(),
        ],
        |r| {
            Ok(FailedAttempt {
                status: req(r, 1)?,
                attempts: req(r, 2)?,
                message_id: req(r, 3)?,
                workflow_slug: req(r, 4)?,
                base_delay: req(r, 5)?,
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
        "UPDATE quantum_flow.step_tasks SET status = 'failed', error_message = $4, failed_at = clock_timestamp() \
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

/// Fails a started run; false when it was no longer started.
pub fn fail_run(run_id: Uuid, error_message: &str) -> QfResult<bool> {
    Ok(execute(
        "UPDATE quantum_flow.runs SET status = 'failed', error_message = $2, failed_at = clock_timestamp() \
         WHERE run_id = $1 AND status = 'started' RETURNING 1",
        &[run_id.into(), error_message.into()],
    )? == 1)
}

/// A run's status and workflow.
pub fn status_of(run_id: Uuid) -> QfResult<Option<(String, String)>> {
    query_opt(
        "SELECT status, workflow_slug FROM quantum_flow.runs WHERE run_id = $1",
        &[run_id.into()],
        |r| Ok((req(r, 1)?, req(r, 2)?)),
    )
}

/// What a complete/fail call that changed nothing found: the run (None: no such run).
pub struct RunAndTask {
    pub run_status: String,
    pub workflow_slug: String,
    /// The task's status and attempts made (None: the run has no such task).
    pub task: Option<(String, i32)>,
}

pub fn task_lookup(run_id: Uuid, step_slug: &str, task_index: i32) -> QfResult<Option<RunAndTask>> {
    query_opt(
        "SELECT r.status, r.workflow_slug, t.status, t.attempts_count \
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
         SET status = 'queued', worker_id = NULL, \
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
pub fn run_document(run_id: Uuid) -> QfResult<Option<Jsonb>> {
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
                    ORDER BY p.step_index) \
             FROM quantum_flow.step_progress p WHERE p.run_id = r.run_id), '[]'::jsonb)) \
           || CASE WHEN b.omit_output AND r.output IS NOT NULL \
                   THEN '{\"output_omitted\": true}'::jsonb ELSE '{}'::jsonb END \
         FROM r, budget b",
        &[run_id.into(), (JSONB_MAX_BYTES - DOCUMENT_OVERHEAD).into()],
        |r| req(r, 1),
    )
}

/// Each step of a run in step order, with its state as `flow_graph` shows it. Empty when the
/// run does not exist.
pub fn step_progress(run_id: Uuid) -> QfResult<Vec<(String, StepState)>> {
    query(
        "SELECT step_slug, status, tasks_completed, tasks_total FROM quantum_flow.step_progress \
         WHERE run_id = $1 ORDER BY step_index",
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
           WHERE r.status <> 'started' AND (r.status = 'completed' OR NOT $2) \
             AND coalesce(r.completed_at, r.failed_at) < now() - $1::interval \
           ORDER BY coalesce(r.completed_at, r.failed_at) \
           LIMIT $3 \
           FOR UPDATE OF r SKIP LOCKED) \
         SELECT e.run_id, e.workflow_slug, \
                ARRAY(SELECT t.message_id FROM quantum_flow.step_tasks t WHERE t.run_id = e.run_id) \
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
           DELETE FROM quantum_flow.runs WHERE run_id = ANY($1) AND status <> 'started' \
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
