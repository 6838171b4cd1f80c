//! `NOTIFY quantum_flow_events`: every run and step status change sends a small JSON payload
//! (`{"run_id", "workflow_slug", "step_slug", "status"}`; `step_slug` is null for a run's own
//! status) on channel `quantum_flow_events`. NOTIFY is transactional: listeners receive the
//! payloads when, and only if, the transaction that changed the statuses commits, in order.
//!
//! Changes are collected during an API call and queued at its end, in order, with
//! PostgreSQL's own `Async_Notify` (what `pg_notify` calls, minus a statement per call: a step
//! hand-off spent about 20 us planning and running that statement).
//! `quantum_flow.notify_events = off` turns them off.

use crate::error::{QfError, QfResult};
use crate::settings::NOTIFY_EVENTS;
use pgrx::datum::Uuid;
use std::cell::RefCell;
use std::ffi::{c_char, CString};

mod ffi {
    use std::ffi::c_char;

    unsafe extern "C-unwind" {
        /// `commands/async.h`: queues one notification of the current transaction (raising
        /// when the payload is too long), sent when it commits.
        pub fn Async_Notify(channel: *const c_char, payload: *const c_char);
    }
}

thread_local! {
    static PENDING: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// The channel the payloads go to.
const CHANNEL: &std::ffi::CStr = c"quantum_flow_events";

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
    for payload in payloads {
        // A JSON text never holds a NUL byte (serde_json escapes control characters).
        let text = CString::new(payload)
            .map_err(|e| QfError::Internal(format!("event payload holds a NUL byte: {e}")))?;
        let (channel, payload): (*const c_char, *const c_char) = (CHANNEL.as_ptr(), text.as_ptr());
        // The closure holds nothing to drop: an ERROR it raises unwinds through it safely.
        unsafe {
            pgrx::pg_sys::ffi::pg_guard_ffi_boundary(|| ffi::Async_Notify(channel, payload));
        }
    }
    Ok(())
}
