//! Starting and inspecting runs.

use crate::error::QfError;
use crate::executor;
use crate::jsonb::Jsonb;
use pgrx::datum::Uuid;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::search_path;

/// Starts a run of a workflow with `input` and queues the tasks of every step with no
/// dependencies. `run_id` lets the caller choose the id (e.g. for idempotent submission);
/// an id that exists raises `run_exists`. Returns the run id.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn start_flow(
    workflow_slug: Option<&str>,
    input: default!(Option<Jsonb>, "'{}'"),
    run_id: default!(Option<Uuid>, "NULL"),
) -> Result<Uuid, ErrorReport> {
    super::check_version()?;
    let slug = super::required("workflow_slug", workflow_slug)?;
    crate::engine::slug::check_workflow_slug(slug)?;
    let input = super::required("input", input)?;
    let run_id = match run_id {
        Some(id) => id,
        None => new_run_id()?,
    };
    Ok(executor::start_flow(slug, input, run_id)?)
}

fn new_run_id() -> Result<Uuid, QfError> {
    Spi::get_one::<Uuid>("SELECT gen_random_uuid()")?
        .ok_or_else(|| QfError::Internal("gen_random_uuid() returned NULL".into()))
}

/// A run's state as one JSON document: status, input, output, error, timestamps, and each
/// step's status, task counts, output and error, in step order.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn get_run(run_id: Option<Uuid>) -> Result<Jsonb, ErrorReport> {
    super::check_version()?;
    let run_id = super::required("run_id", run_id)?;
    Ok(executor::run_document(run_id)?)
}

/// Cancels a started run: it becomes `failed` with the error message `cancelled: <reason>`,
/// and its queued tasks are discarded (late answers for it are ignored). True when this call
/// cancelled it; false when the run had already ended. For runs whose workers are gone, and
/// before `delete_flow` of a workflow with started runs.
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
