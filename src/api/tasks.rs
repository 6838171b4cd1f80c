//! The worker protocol: claim tasks, report their outcome.

use crate::error::QfError;
use crate::executor;
use crate::jsonb::Jsonb;
use crate::settings::{MAX_BATCH_SIZE, MAX_WAIT_MS};
use pgrx::datum::Uuid;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::search_path;

/// Claims up to `batch_size` ready tasks of a workflow, hidden from other pollers for their
/// step's timeout, and returns them with their full input. With `max_wait_ms > 0` it waits up
/// to that long for work when none is ready, returning as soon as some arrives (the wait keeps
/// this transaction open: use it in autocommit mode or a short transaction, at READ COMMITTED).
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)]
fn poll_tasks(
    workflow_slug: Option<&str>,
    batch_size: default!(Option<i32>, 10),
    max_wait_ms: default!(Option<i32>, 0),
    worker_id: default!(Option<&str>, "NULL"),
) -> Result<
    TableIterator<
        'static,
        (
            name!(run_id, Uuid),
            name!(step_slug, String),
            name!(task_index, i32),
            name!(attempt, i32),
            name!(input, Jsonb),
        ),
    >,
    ErrorReport,
> {
    super::check_version()?;
    let slug = super::required("workflow_slug", workflow_slug)?;
    crate::engine::slug::check_workflow_slug(slug)?;
    let batch_size = super::required("batch_size", batch_size)?;
    let max_wait_ms = super::required("max_wait_ms", max_wait_ms)?;
    within(
        "batch_size",
        batch_size,
        1,
        MAX_BATCH_SIZE.get(),
        "quantum_flow.max_batch_size",
    )?;
    within(
        "max_wait_ms",
        max_wait_ms,
        0,
        MAX_WAIT_MS.get(),
        "quantum_flow.max_wait_ms",
    )?;
    let tasks = executor::poll_tasks(slug, batch_size, max_wait_ms, worker_id)?;
    Ok(TableIterator::new(tasks.into_iter().map(|t| {
        (t.run_id, t.step_slug, t.task_index, t.attempt, t.input)
    })))
}

/// `value` must be in `min..=max`, `max` being the setting `setting`.
fn within(name: &str, value: i32, min: i32, max: i32, setting: &str) -> Result<(), QfError> {
    if value < min {
        return Err(QfError::InvalidOption(format!(
            "{name} must be >= {min}, got {value}"
        )));
    }
    if value > max {
        return Err(QfError::InvalidOption(format!(
            "{name} must be <= {max} ({setting}), got {value}"
        )));
    }
    Ok(())
}

fn task_key(
    run_id: Option<Uuid>,
    step_slug: Option<&str>,
    task_index: Option<i32>,
) -> Result<(Uuid, &str, i32), QfError> {
    let run_id = super::required("run_id", run_id)?;
    let step_slug = super::required("step_slug", step_slug)?;
    crate::engine::slug::check_step_slug(step_slug)?;
    let task_index = super::required("task_index", task_index)?;
    Ok((run_id, step_slug, task_index))
}

/// Completes a started task with `output` (SQL NULL is stored as JSON null). True when this
/// call completed it; false for a late or duplicate call, with a NOTICE whose first word says
/// why: `duplicate` (already completed), `stale_attempt` (`attempt` is not the task's current
/// claim), `not_claimed` (the task is queued) or `run_ended`. Completing a step's last task
/// completes the step, starts the steps that depended on it, and completes the run when every
/// step is done. An output larger than `quantum_flow.max_output_bytes` raises
/// `output_too_large` and changes nothing.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn complete_task(
    run_id: Option<Uuid>,
    step_slug: Option<&str>,
    task_index: Option<i32>,
    output: Option<Jsonb>,
    attempt: default!(Option<i32>, "NULL"),
) -> Result<bool, ErrorReport> {
    super::check_version()?;
    let (run_id, step_slug, task_index) = task_key(run_id, step_slug, task_index)?;
    let output = match output {
        Some(o) => o,
        None => json_null()?,
    };
    let answer = executor::Answer {
        run_id,
        step_slug: step_slug.to_string(),
        task_index,
        output,
        attempt,
    };
    Ok(executor::complete_tasks("complete_task", vec![answer])?[0])
}

/// Completes a batch of claimed tasks in one call and one commit: element `i` of each array
/// is one `complete_task(run_ids[i], step_slugs[i], task_indexes[i], outputs[i], attempts[i])`
/// (`attempts` NULL, or a NULL element: no attempt check), with exactly its semantics. Returns
/// what each `complete_task` would have returned; a repeat of an earlier element returns
/// false. An element naming no run or no task raises (`run_not_found`, `task_not_found`) and
/// nothing is completed. Arrays of different lengths raise `invalid_option`.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn complete_tasks(
    run_ids: Option<Vec<Option<Uuid>>>,
    step_slugs: Option<Vec<Option<String>>>,
    task_indexes: Option<Vec<Option<i32>>>,
    outputs: Option<pgrx::Array<'_, Jsonb>>,
    attempts: default!(Option<Vec<Option<i32>>>, "NULL"),
) -> Result<Vec<bool>, ErrorReport> {
    super::check_version()?;
    let run_ids = super::required("run_ids", run_ids)?;
    let step_slugs = super::required("step_slugs", step_slugs)?;
    let task_indexes = super::required("task_indexes", task_indexes)?;
    let outputs = super::required("outputs", outputs)?;
    let n = run_ids.len();
    let lengths = [
        ("step_slugs", step_slugs.len()),
        ("task_indexes", task_indexes.len()),
        ("outputs", outputs.len()),
        ("attempts", attempts.as_ref().map_or(n, Vec::len)),
    ];
    if let Some((name, len)) = lengths.iter().find(|(_, len)| *len != n) {
        return Err(QfError::InvalidOption(format!(
            "run_ids has {n} elements but {name} has {len}; the arrays must be as long as each other"
        ))
        .into());
    }
    if n > MAX_BATCH_SIZE.get() as usize {
        return Err(QfError::InvalidOption(format!(
            "a batch of {n} answers is more than quantum_flow.max_batch_size ({})",
            MAX_BATCH_SIZE.get()
        ))
        .into());
    }
    let null = json_null()?;
    let mut answers = Vec::with_capacity(n);
    for i in 0..n {
        let element =
            |name: &str| QfError::NullArgument(format!("{name}[{}] must not be NULL", i + 1));
        let run_id = run_ids[i].ok_or_else(|| element("run_ids"))?;
        let step_slug = step_slugs[i].clone().ok_or_else(|| element("step_slugs"))?;
        crate::engine::slug::check_step_slug(&step_slug)?;
        let task_index = task_indexes[i].ok_or_else(|| element("task_indexes"))?;
        answers.push(executor::Answer {
            run_id,
            step_slug,
            task_index,
            output: outputs.get(i).flatten().unwrap_or(null),
            attempt: attempts.as_ref().and_then(|a| a[i]),
        });
    }
    Ok(executor::complete_tasks("complete_tasks", answers)?)
}

/// JSON null, from a kept plan (planning the statement was most of what it cost).
fn json_null() -> Result<Jsonb, QfError> {
    crate::store::query_opt("SELECT 'null'::jsonb", &[], |r| crate::store::req(r, 1))?
        .ok_or_else(|| QfError::Internal("'null'::jsonb returned no row".into()))
}

/// Reports a failed attempt of a started task. Returns the task's status after the call:
/// `queued` (retried after `base_delay * 2^(attempt-1)` seconds), `failed` (attempts
/// exhausted, or `retry => false`: the step and the run fail with this message and the run's
/// remaining queued tasks are discarded), or `ignored` (a late or duplicate call, with a
/// NOTICE naming why, as for `complete_task`). `retry => false` is for errors that another
/// attempt cannot fix (invalid input, a bug).
#[pg_extern(security_definer, name = "fail_task")]
#[search_path(pg_catalog, pg_temp)]
fn fail_task_v2(
    run_id: Option<Uuid>,
    step_slug: Option<&str>,
    task_index: Option<i32>,
    error_message: Option<&str>,
    attempt: default!(Option<i32>, "NULL"),
    retry: default!(Option<bool>, true),
) -> Result<String, ErrorReport> {
    super::check_version()?;
    let (run_id, step_slug, task_index) = task_key(run_id, step_slug, task_index)?;
    let error_message = super::required("error_message", error_message)?;
    let retry = super::required("retry", retry)?;
    Ok(
        executor::fail_task(run_id, step_slug, task_index, error_message, attempt, retry)?
            .to_string(),
    )
}
