//! `NOTIFY quantum_flow_events`: every run and step status change sends a small JSON payload
//! (`{"run_id", "workflow_slug", "step_slug", "status"}`; `step_slug` is null for a run's own
//! status) on channel `quantum_flow_events`. NOTIFY is transactional: listeners receive the
//! payloads when, and only if, the transaction that changed the statuses commits, in order.
//!
//! Changes are collected during an API call and sent with one statement at its end.
//! `quantum_flow.notify_events = off` turns them off.

use crate::error::QfResult;
use crate::settings::NOTIFY_EVENTS;
use crate::store::execute;
use pgrx::datum::Uuid;
use std::cell::RefCell;

thread_local! {
    static PENDING: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// The channel the payloads go to.
pub const CHANNEL: &str = "quantum_flow_events";

/// Records a status change of a run (`step_slug` None) or of one of its steps.
pub fn emit(run_id: Uuid, workflow_slug: &str, step_slug: Option<&str>, status: &str) {
    if !NOTIFY_EVENTS.get() {
        return;
    }
    let payload = serde_json::json!({
        "run_id": run_id.to_string(),
        "workflow_slug": workflow_slug,
        "step_slug": step_slug,
        "status": status,
    })
    .to_string();
    PENDING.with(|p| p.borrow_mut().push(payload));
}

/// Forgets what an earlier call that failed recorded.
pub fn begin() {
    PENDING.with(|p| p.borrow_mut().clear());
}

/// Sends what the call recorded.
pub fn flush() -> QfResult<()> {
    let payloads = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if payloads.is_empty() {
        return Ok(());
    }
    execute(
        "SELECT pg_catalog.pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS e(p, n) ORDER BY n",
        &[CHANNEL.into(), payloads.into()],
    )?;
    Ok(())
}
