//! The worker protocol: claim tasks, report their outcome.

use crate::error::QfError;
use crate::executor;
use crate::jsonb::Jsonb;
use pgrx::datum::Uuid;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

/// Claims up to `batch_size` ready tasks of a workflow, hidden from other pollers for their
/// step's timeout, and returns them with their full input. With `max_wait_ms > 0` it waits up
/// to that long for work when none is ready, returning as soon as some arrives (the wait keeps
/// this transaction open: use it in autocommit mode or a short transaction, at READ COMMITTED).
#[pg_extern]
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
    let slug = super::required("workflow_slug", workflow_slug)?;
    crate::engine::slug::check_workflow_slug(slug)?;
    let batch_size = super::required("batch_size", batch_size)?;
    let max_wait_ms = super::required("max_wait_ms", max_wait_ms)?;
    if batch_size < 1 {
        return Err(
            QfError::InvalidOption(format!("batch_size must be >= 1, got {batch_size}")).into(),
        );
    }
    if max_wait_ms < 0 {
        return Err(
            QfError::InvalidOption(format!("max_wait_ms must be >= 0, got {max_wait_ms}")).into(),
        );
    }
    let tasks = executor::poll_tasks(slug, batch_size, max_wait_ms, worker_id)?;
    Ok(TableIterator::new(tasks.into_iter().map(|t| {
        (t.run_id, t.step_slug, t.task_index, t.attempt, t.input)
    })))
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
/// call completed it; false for a late or duplicate call (the task is no longer started, its
/// run is no longer started, or `attempt` is given and is not the task's current attempt).
/// Completing a step's last task completes the step, starts the steps that depended on it, and
/// completes the run when every step is done.
#[pg_extern]
fn complete_task(
    run_id: Option<Uuid>,
    step_slug: Option<&str>,
    task_index: Option<i32>,
    output: Option<Jsonb>,
    attempt: default!(Option<i32>, "NULL"),
) -> Result<bool, ErrorReport> {
    let (run_id, step_slug, task_index) = task_key(run_id, step_slug, task_index)?;
    let output = match output {
        Some(o) => o,
        None => json_null()?,
    };
    Ok(executor::complete_task(
        run_id, step_slug, task_index, output, attempt,
    )?)
}

fn json_null() -> Result<Jsonb, QfError> {
    Spi::get_one::<Jsonb>("SELECT 'null'::jsonb")?
        .ok_or_else(|| QfError::Internal("'null'::jsonb was NULL".into()))
}

/// Reports a failed attempt of a started task. Returns the task's status after the call:
/// `queued` (retried after `base_delay * 2^(attempt-1)` seconds), `failed` (attempts
/// exhausted: the step and the run fail with this message and the run's remaining queued
/// tasks are discarded), or `ignored` (a late or duplicate call).
#[pg_extern]
fn fail_task(
    run_id: Option<Uuid>,
    step_slug: Option<&str>,
    task_index: Option<i32>,
    error_message: Option<&str>,
    attempt: default!(Option<i32>, "NULL"),
) -> Result<String, ErrorReport> {
    let (run_id, step_slug, task_index) = task_key(run_id, step_slug, task_index)?;
    let error_message = super::required("error_message", error_message)?;
    Ok(executor::fail_task(run_id, step_slug, task_index, error_message, attempt)?.to_string())
}
