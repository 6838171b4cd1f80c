//! A transaction that only claimed tasks commits without waiting for its WAL flush
//! (`quantum_flow.async_claims`).
//!
//! A claim is the one write of the hot path whose loss in a crash costs nothing: the task is
//! claimable again, as it would be once its visibility timeout ran out, and a worker's late
//! answer to a lost claim is judged as any late answer is. Nothing can outlive a lost claim
//! either: WAL is flushed in order, so the durable commit of anything that came after the claim
//! (its `complete_task`, another poll's hand-over) makes the claim durable too. Only commits
//! change: other sessions see the claim at once, as before.
//!
//! The saving is the claim's flush, on the path from a dependency's `complete_task` to its
//! dependent being claimed, and one of every two commits of a worker that answers its batches
//! with `complete_tasks`.
//!
//! The rule is strict, because `synchronous_commit` applies to the whole transaction: the
//! commit goes asynchronous only when the transaction wrote nothing before its polls, the
//! polls wrote nothing but claims and their timeouts (no failed run, no archived or parked
//! message, no fan-out chunk: a lost chunk would take tasks that workers hold with it), and
//! this backend wrote no WAL after the last poll. Anything else WAL-logged in the
//! transaction commits as usual. What writes no WAL here does not count: a NOTIFY, or a
//! write through a foreign server, after a poll in the same transaction.

use crate::settings::ASYNC_CLAIMS;
use pgrx::pg_sys;
use std::cell::Cell;

/// Written by a poll that wrote nothing but claims: its transaction's top xid, and this
/// backend's WAL position when the poll returned.
type Mark = (pg_sys::TransactionId, pg_sys::XLogRecPtr);

thread_local! {
    static CLAIMS_ONLY: Cell<Option<Mark>> = const { Cell::new(None) };
}

/// Registers the commit hook; called once per process from `_PG_init`.
pub fn init() {
    unsafe { pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut()) };
}

fn current() -> Option<Mark> {
    let xid = unsafe { pg_sys::GetTopTransactionIdIfAny() };
    (xid != pg_sys::InvalidTransactionId).then_some((xid, unsafe { pg_sys::XactLastRecEnd }))
}

/// Whether the transaction has written nothing so far, or only what polls that claimed wrote.
/// Asked when a poll starts.
pub fn claims_only_so_far() -> bool {
    match current() {
        None => true,
        mark => CLAIMS_ONLY.get() == mark,
    }
}

/// Called when a poll returns: `claims_only` says whether the transaction, up to now, wrote
/// only claims (see the module doc).
pub fn poll_done(claims_only: bool) {
    CLAIMS_ONLY.set(if claims_only { current() } else { None });
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    // Every event ends what the mark is about: a commit, an abort or a PREPARE.
    let Some(mark) = CLAIMS_ONLY.take() else {
        return;
    };
    if event != pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT || !ASYNC_CLAIMS.get() {
        return;
    }
    if current() != Some(mark) {
        // Something wrote after the last poll.
        return;
    }
    // For this commit only: the setting is restored when the transaction ends, after
    // `RecordTransactionCommit` has read it. Should it fail, a WARNING, and the commit stays
    // durable.
    unsafe {
        pg_sys::set_config_option(
            c"synchronous_commit".as_ptr(),
            c"off".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            pg_sys::WARNING as i32,
            false,
        );
    }
}
