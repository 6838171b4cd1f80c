//! Waiting for work without spinning.
//!
//! A poller with nothing to claim sleeps on its own process latch, advertising in its
//! `PGPROC.wait_event_info` which workflow it waits for: `PG_WAIT_EXTENSION`, a marker byte,
//! and a 16-bit hash of the workflow slug (pg_stat_activity shows it as wait event
//! "Extension"). A transaction that makes tasks of a workflow visible (start_flow, a
//! completion that readies dependents, an immediate retry) remembers the workflow, and once it
//! has *committed* (so the tasks are visible to the woken poller's next snapshot) sets the
//! latch of every process advertising that workflow. No shared memory is needed, so the
//! extension works without `shared_preload_libraries`.
//!
//! A hash collision or an unrelated latch wake-up only costs the sleeper one extra claim
//! attempt. Sleeps are also capped (`quantum_flow.poll_recheck_ms`) and end when the queue's
//! next delayed message (a retry after backoff, a claimed task's timeout) becomes visible.

use crate::settings::POLL_RECHECK_MS;
use pgrx::pg_sys;
use std::cell::RefCell;

/// Marks our wait events among other extensions' (bits 16..24 are unused by PostgreSQL's
/// wait-event encoding: class in the top byte, event id in the low 16 bits).
const MARKER: u32 = 0x51 << 16;

thread_local! {
    /// Wait events to signal when the current transaction commits.
    static PENDING: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// The wait event that identifies sleepers on `workflow_slug` (FNV-1a folded to 16 bits).
pub fn wait_event_for(workflow_slug: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in workflow_slug.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    pg_sys::PG_WAIT_EXTENSION | MARKER | ((hash ^ (hash >> 16)) & 0xffff)
}

/// Registers the transaction callback; called once per process from `_PG_init`.
pub fn init() {
    unsafe { pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut()) };
}

/// Wake the sleepers of `workflow_slug` once the current transaction commits.
pub fn notify_on_commit(workflow_slug: &str) {
    let event = wait_event_for(workflow_slug);
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if !p.contains(&event) {
            p.push(event);
        }
    });
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT => {
            let events = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
            if !events.is_empty() {
                unsafe { wake(&events) };
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_PREPARE => {
            PENDING.with(|p| p.borrow_mut().clear());
        }
        _ => {}
    }
}

/// Sets the latch of every backend whose advertised wait event is one of `events`.
///
/// Reading another backend's `wait_event_info` without a lock is what pg_stat_activity does
/// too: a 4-byte aligned read, at worst stale, and a stale read only costs a wake-up.
unsafe fn wake(events: &[u32]) {
    unsafe {
        let global = pg_sys::ProcGlobal;
        if global.is_null() {
            return;
        }
        let procs = (*global).allProcs;
        for i in 0..(*global).allProcCount as usize {
            let proc = procs.add(i);
            let info = std::ptr::read_volatile(std::ptr::addr_of!((*proc).wait_event_info));
            if events.contains(&info) {
                pg_sys::SetLatch(std::ptr::addr_of_mut!((*proc).procLatch));
            }
        }
    }
}

/// Marks this backend as a sleeper on `event` before it checks for work, so that a commit
/// that happens between the check and the sleep still finds it and sets its latch.
pub fn prepare_to_wait(event: u32) {
    unsafe {
        pg_sys::ResetLatch(pg_sys::MyLatch);
        advertise(event);
    }
}

unsafe fn advertise(event: u32) {
    unsafe {
        if !pg_sys::MyProc.is_null() {
            std::ptr::write_volatile(
                std::ptr::addr_of_mut!((*pg_sys::MyProc).wait_event_info),
                event,
            );
        }
    }
}

/// Sleeps until woken, `timeout_ms` passes, or an interrupt arrives (a query cancel or
/// statement_timeout raises its error here).
///
/// Between `prepare_to_wait` and here, a lock or I/O wait inside the claim query may have
/// reset the advertised event; a wake-up in exactly that window is caught by the re-check
/// (`quantum_flow.poll_recheck_ms`).
pub fn wait_for_work(event: u32, timeout_ms: i64) {
    let timeout = timeout_ms.clamp(0, i64::from(POLL_RECHECK_MS.get()));
    unsafe {
        advertise(event);
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            timeout as std::ffi::c_long,
            event,
        );
        // WaitLatch clears the advertised event on return
    }
    pgrx::check_for_interrupts!();
}

/// Stop advertising (after the last claim attempt of a poll).
pub fn done_waiting() {
    unsafe { advertise(0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_in_the_extension_class_and_marked() {
        for slug in ["a", "ai_data_pipeline", "claude_etl"] {
            let e = wait_event_for(slug);
            assert_eq!(e & 0xff00_0000, pg_sys::PG_WAIT_EXTENSION);
            assert_eq!(e & 0x00ff_0000, MARKER);
        }
        assert_ne!(
            wait_event_for("ai_data_pipeline"),
            wait_event_for("claude_etl")
        );
        assert_eq!(wait_event_for("x"), wait_event_for("x"));
    }
}
