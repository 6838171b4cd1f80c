//! Housekeeping functions for operators (`quantum_flow_admin`), and an internal helper the
//! engine's statements use.

use crate::jsonb::Jsonb;
use crate::maintenance;
use pgrx::datum::Interval;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::search_path;

/// Does for every workflow what pollers do in passing: claims that outlived their step's
/// timeout are put back in the queue (or, with no attempts left, fail their task and run), and
/// messages whose run has ended are archived, due timers fail their runs (`run_timeout`,
/// `event_timeout`), child runs whose parent ended are cancelled, and the next chunk of a big
/// map step's tasks is created. Returns what it did: `{"workflows", "timeouts_retried",
/// "timeouts_failed", "runs_failed", "stale_archived", "timers_fired", "orphans_cancelled",
/// "tasks_fanned_out"}`.
/// Safe to call concurrently and from pg_cron; the background worker calls it every
/// `quantum_flow.maintenance_interval` when the library is preloaded.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn maintain() -> Result<pgrx::JsonB, ErrorReport> {
    super::check_version()?;
    Ok(pgrx::JsonB(maintenance::maintain()?.to_json()))
}

/// Deletes runs that ended (completed, or failed unless `keep_failed`) before
/// `now() - older_than`, oldest first and at most `max_runs` per call, with their step states,
/// tasks and queue messages (archived ones included). Never touches a started or paused run. Returns
/// how many runs it deleted.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn prune_runs(
    older_than: default!(Option<Interval>, "'7 days'"),
    keep_failed: default!(Option<bool>, false),
    max_runs: default!(Option<i32>, 10000),
) -> Result<i64, ErrorReport> {
    super::check_version()?;
    let older_than = super::required("older_than", older_than)?;
    let keep_failed = super::required("keep_failed", keep_failed)?;
    let max_runs = super::required("max_runs", max_runs)?;
    if max_runs < 1 {
        return Err(crate::error::QfError::InvalidOption(format!(
            "max_runs must be >= 1, got {max_runs}"
        ))
        .into());
    }
    Ok(maintenance::prune_runs(older_than, keep_failed, max_runs)?)
}

/// (Internal, granted to no role.) The uncompressed size in bytes of a jsonb value, read
/// from its header without decompressing or fetching it: what the engine's size limits
/// compare.
#[pg_extern(immutable, strict, parallel_safe)]
fn jsonb_raw_size(value: Jsonb) -> i64 {
    value.raw_size()
}
