//! Starting and inspecting runs.

use crate::error::QfError;
use crate::executor;
use crate::jsonb::Jsonb;
use pgrx::datum::{TimestampWithTimeZone, Uuid};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::search_path;

/// Starts a run of a workflow with `input` and queues the tasks of every step with no
/// dependencies. `run_id` lets the caller choose the id (e.g. for idempotent submission);
/// an id that exists raises `run_exists`. `start_at` schedules the run: its first tasks
/// become visible then (the run is `started` meanwhile). Returns the run id.
#[pg_extern(security_definer, name = "start_flow")]
#[search_path(pg_catalog, pg_temp)]
fn start_flow_v2(
    workflow_slug: Option<&str>,
    input: default!(Option<Jsonb>, "'{}'"),
    run_id: default!(Option<Uuid>, "NULL"),
    start_at: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> Result<Uuid, ErrorReport> {
    super::check_version()?;
    let slug = super::required("workflow_slug", workflow_slug)?;
    crate::engine::slug::check_workflow_slug(slug)?;
    let input = super::required("input", input)?;
    let run_id = match run_id {
        Some(id) => id,
        None => new_run_id()?,
    };
    Ok(executor::start_flow(slug, input, run_id, start_at)?)
}

/// Starts many runs of a workflow in one call and one commit, in order: run `i` has input
/// `inputs[i]` and, when `run_ids` is given, id `run_ids[i]` (a NULL element: a new id).
/// Returns the run ids. Any error (`run_exists`, `invalid_map_input`, ...) starts none.
/// `run_ids` of another length than `inputs` raises `invalid_option`.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn start_flows(
    workflow_slug: Option<&str>,
    inputs: Option<pgrx::Array<'_, Jsonb>>,
    run_ids: default!(Option<Vec<Option<Uuid>>>, "NULL"),
) -> Result<Vec<Uuid>, ErrorReport> {
    super::check_version()?;
    let slug = super::required("workflow_slug", workflow_slug)?;
    crate::engine::slug::check_workflow_slug(slug)?;
    let inputs = super::required("inputs", inputs)?;
    let n = inputs.len();
    if let Some(ids) = &run_ids {
        if ids.len() != n {
            return Err(QfError::InvalidOption(format!(
                "inputs has {n} elements but run_ids has {}; the arrays must be as long as each other",
                ids.len()
            ))
            .into());
        }
    }
    let limit = crate::settings::MAX_BATCH_SIZE.get() as usize;
    if n > limit {
        return Err(QfError::InvalidOption(format!(
            "{n} runs in one call is more than quantum_flow.max_batch_size ({limit})"
        ))
        .into());
    }
    let mut runs = Vec::with_capacity(n);
    for (i, input) in inputs.iter().enumerate() {
        let input = input
            .ok_or_else(|| QfError::NullArgument(format!("inputs[{}] must not be NULL", i + 1)))?;
        let run_id = match run_ids.as_ref().and_then(|ids| ids[i]) {
            Some(id) => id,
            None => new_run_id()?,
        };
        runs.push((input, run_id));
    }
    Ok(executor::start_flows(slug, runs)?)
}

/// A random (version 4) UUID, made as `gen_random_uuid()` makes it, without the statement a
/// call to it would cost (it was planned on every `start_flow` without a `run_id`).
fn new_run_id() -> Result<Uuid, QfError> {
    let mut bytes = [0u8; 16];
    if !unsafe { pgrx::pg_sys::pg_strong_random(bytes.as_mut_ptr().cast(), bytes.len()) } {
        return Err(QfError::Internal("could not generate random values".into()));
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    Ok(Uuid::from_bytes(bytes))
}

/// A run's state as one JSON document: status, input, output, error, timestamps, and each
/// step's status, task counts, output and error, in step order. With `include_tasks`, each
/// step also lists its tasks: status, attempts, last error, worker id, claim deadline and
/// next retry time.
#[pg_extern(security_definer, name = "get_run")]
#[search_path(pg_catalog, pg_temp)]
fn get_run_v2(
    run_id: Option<Uuid>,
    include_tasks: default!(Option<bool>, false),
) -> Result<Jsonb, ErrorReport> {
    super::check_version()?;
    let run_id = super::required("run_id", run_id)?;
    let include_tasks = super::required("include_tasks", include_tasks)?;
    Ok(executor::run_document(run_id, include_tasks)?)
}

/// Waits until the run has ended (completed or failed) and returns `get_run`'s document: at
/// once if it has, else as soon as the commit that ends it happens, or after `max_wait_ms`
/// (at most `quantum_flow.max_wait_ms`) with the run as it is then. The wait keeps its
/// transaction open: call it in autocommit mode.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn wait_run(
    run_id: Option<Uuid>,
    max_wait_ms: default!(Option<i32>, 60000),
) -> Result<Jsonb, ErrorReport> {
    super::check_version()?;
    let run_id = super::required("run_id", run_id)?;
    let max_wait_ms = super::required("max_wait_ms", max_wait_ms)?;
    let limit = crate::settings::MAX_WAIT_MS.get();
    if !(0..=limit).contains(&max_wait_ms) {
        return Err(QfError::InvalidOption(format!(
            "max_wait_ms must be between 0 and {limit} (quantum_flow.max_wait_ms), got {max_wait_ms}"
        ))
        .into());
    }
    Ok(executor::wait_run(run_id, max_wait_ms)?)
}

/// Every workflow's runs and tasks (`workflow_stats`) in the Prometheus text exposition
/// format, for a scraper or an exporter to serve.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn metrics() -> Result<String, ErrorReport> {
    super::check_version()?;
    Ok(executor::metrics()?)
}

/// Cancels a started or paused run: it becomes `failed` with the error message
/// `cancelled: <reason>`, its queued tasks are discarded (late answers for it are ignored)
/// and its child runs are cancelled. True when this call cancelled it; false when the run had
/// already ended. For runs whose workers are gone, and before `delete_flow` of a workflow
/// with started runs. `retry_run` can start it again.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn cancel_run(
    run_id: Option<Uuid>,
    reason: default!(Option<&str>, "'cancelled by request'"),
) -> Result<bool, ErrorReport> {
    super::check_version()?;
    let run_id = super::required("run_id", run_id)?;
    let reason = super::required("reason", reason)?;
    Ok(executor::cancel_run(run_id, reason)?)
}

/// Pauses a started run: no task of it is handed out until `resume_run` (tasks claimed
/// before may still be completed or failed; its timers keep running). True when this call
/// paused it, false when it was not started.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn pause_run(run_id: Option<Uuid>) -> Result<bool, ErrorReport> {
    super::check_version()?;
    let run_id = super::required("run_id", run_id)?;
    Ok(executor::pause_run(run_id)?)
}

/// Resumes a paused run: its tasks are handed out again. True when this call resumed it,
/// false when it was not paused.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn resume_run(run_id: Option<Uuid>) -> Result<bool, ErrorReport> {
    super::check_version()?;
    let run_id = super::required("run_id", run_id)?;
    Ok(executor::resume_run(run_id)?)
}

/// Starts a failed (or cancelled) run again from its failed and unfinished steps, with the
/// same run id, keeping every completed step's output. Each unfinished task gets its full
/// `max_attempts` again. True when this call restarted it, false when it was not failed.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn retry_run(run_id: Option<Uuid>) -> Result<bool, ErrorReport> {
    super::check_version()?;
    let run_id = super::required("run_id", run_id)?;
    Ok(executor::retry_run(run_id)?)
}

/// Delivers an event to an event step of a run: the step completes with `payload` as its
/// output (true), or, when it is not ready yet, the event is kept and completes it when it
/// becomes ready (true). False, with a NOTICE, for a duplicate event or an ended run.
/// `step_not_found` / `not_an_event_step` for a step that is not an event step of the run's
/// workflow.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn send_event(
    run_id: Option<Uuid>,
    step_slug: Option<&str>,
    payload: default!(Option<Jsonb>, "'{}'"),
) -> Result<bool, ErrorReport> {
    super::check_version()?;
    let run_id = super::required("run_id", run_id)?;
    let step_slug = super::required("step_slug", step_slug)?;
    crate::engine::slug::check_step_slug(step_slug)?;
    let payload = super::required("payload", payload)?;
    Ok(executor::send_event(run_id, step_slug, payload)?)
}
