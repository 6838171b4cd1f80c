//! Waiting for work without spinning.
//!
//! A poller with nothing to claim sleeps on its own process latch, and advertises which
//! workflow it waits for. A transaction that makes tasks of a workflow visible (start_flow, a
//! completion that readies dependents, an immediate retry) remembers the workflow, and once it
//! has *committed* (so the tasks are visible to the woken poller's next snapshot) sets the
//! latch of every process advertising that workflow. Nothing needs `shared_preload_libraries`.
//!
//! Where the advertisement lives depends on the server:
//!
//! * PostgreSQL 13 to 16: in the sleeper's own `PGPROC.wait_event_info`: `PG_WAIT_EXTENSION`,
//!   a marker byte, and a 16-bit hash of the workflow slug (pg_stat_activity shows it as wait
//!   event "Extension"). Wakers scan the PGPROC array. No shared memory of our own.
//! * PostgreSQL 17 and later refuse wait events that were not registered by name
//!   (`WaitEventExtensionNew`: pg_stat_activity raises "could not find custom name for wait
//!   event information"), and a name per workflow would exhaust the server's small table of
//!   custom wait events. So every sleeper reports the one registered event "QuantumFlowPoll"
//!   (wait event type "Extension"), and the workflow's key (the same value as above) goes into
//!   a slot of our own, indexed by process number, in a named dynamic shared memory segment
//!   (`GetNamedDSMSegment`, which works without preloading). Wakers scan those slots. A slot
//!   is set from `prepare_to_wait` to `done_waiting` (or the end of the transaction), so a
//!   lock or I/O wait inside the claim query no longer hides the sleeper.
//!
//! A commit wakes as many sleepers as it made tasks visible (all of them for a run's end, which
//! every `wait_run` caller of the run awaits), so an idle pool of many workers does not run a
//! claim query per worker for every task. Only a backend asleep, whose latch nobody has set
//! yet, counts against that number: a poll in its claim round advertises a *checking* value
//! (its round may have read the queue before the commit and return other tasks, or be its last
//! round), and one already woken by an earlier commit may take that commit's task. Both get
//! their latch set as well, uncounted. `wait_run` callers advertise under a marker of their
//! own, so they never take a workflow's wake-ups.
//!
//! A stale slot or an unrelated latch wake-up only costs the sleeper one extra claim attempt.
//! Two workflows whose slugs hash alike (16 bits) share their sleepers: a sleeper of one may
//! take a wake-up meant for the other, whose task then waits for a poll's re-check. Sleeps are
//! also capped (`quantum_flow.poll_recheck_ms`) and end when the queue's next delayed message
//! (a retry after backoff, a claimed task's timeout) becomes visible.

use crate::settings::POLL_RECHECK_MS;
use pgrx::pg_sys;
use std::cell::RefCell;

/// Marks our wait events among other extensions' (bits 16..24 are unused by PostgreSQL's
/// wait-event encoding: class in the top byte, event id in the low 16 bits): the top six of
/// those bits; the lower two say what waits.
const MARKER: u32 = 0x50 << 16;
const MARKER_MASK: u32 = 0xfc << 16;
/// Set while a poll runs its claim round, clear while it sleeps.
const CHECKING: u32 = 0x01 << 16;
/// A `wait_run` caller's key (a run's end), not a workflow's.
const RUN_WAIT: u32 = 0x02 << 16;

/// `notify_on_commit`'s count for a wake-up that every sleeper on the key must see.
pub const EVERY_SLEEPER: u32 = u32::MAX;

thread_local! {
    /// Wait events (workflow keys) to signal when the current transaction commits, each with
    /// how many of its sleepers to wake.
    static PENDING: RefCell<Vec<(u32, u32)>> = const { RefCell::new(Vec::new()) };
}

/// The value that identifies sleepers on `workflow_slug` (FNV-1a folded to 16 bits, in the
/// extension class, marked; never 0). Before PostgreSQL 17 it is the wait event itself; from
/// 17 on it is the key written into the sleeper's slot (see the module documentation).
pub fn wait_event_for(workflow_slug: &str) -> u32 {
    pg_sys::PG_WAIT_EXTENSION | MARKER | hash16(workflow_slug)
}

/// The value that identifies `wait_run` callers waiting on `run_key` (as `wait_event_for`,
/// under its own marker).
pub fn run_wait_event(run_key: &str) -> u32 {
    pg_sys::PG_WAIT_EXTENSION | MARKER | RUN_WAIT | hash16(run_key)
}

/// FNV-1a, folded to 16 bits.
fn hash16(key: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash ^ (hash >> 16)) & 0xffff
}

/// Registers the transaction callback; called once per process from `_PG_init`.
pub fn init() {
    unsafe { pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut()) };
}

/// Wake up to `sleepers` sleepers of `workflow_slug` (the number of tasks the transaction
/// made visible, or `EVERY_SLEEPER`) once the current transaction commits. Counts for the same
/// key add up.
pub fn notify_on_commit(workflow_slug: &str, sleepers: u32) {
    notify_event_on_commit(wait_event_for(workflow_slug), sleepers);
}

/// Wake every `wait_run` caller waiting on `run_key` once the current transaction commits.
pub fn notify_run_waiters_on_commit(run_key: &str) {
    notify_event_on_commit(run_wait_event(run_key), EVERY_SLEEPER);
}

fn notify_event_on_commit(event: u32, sleepers: u32) {
    if sleepers == 0 {
        return;
    }
    // The slots must be mapped now: the commit callback must not allocate or fail.
    imp::prepare_to_notify();
    PENDING.with(|p| add_pending(&mut p.borrow_mut(), event, sleepers));
}

fn add_pending(pending: &mut Vec<(u32, u32)>, event: u32, sleepers: u32) {
    match pending.iter_mut().find(|(e, _)| *e == event) {
        Some((_, n)) => *n = n.saturating_add(sleepers),
        None => pending.push((event, sleepers)),
    }
}

/// Whether the backend advertising `info` is to be woken. A sleeper (`CHECKING` clear) whose
/// latch is not set yet (`latch_set`) counts against its key's remaining wake-ups in
/// `pending`, and is woken only while some remain; a poll in its claim round, or a sleeper
/// already woken, is woken while its key is pending at all, uncounted.
fn take_wake(pending: &mut [(u32, u32)], info: u32, latch_set: bool) -> bool {
    if info & MARKER_MASK != MARKER {
        return false;
    }
    let key = info & !CHECKING;
    let Some((_, n)) = pending.iter_mut().find(|(e, _)| *e == key) else {
        return false;
    };
    if info & CHECKING != 0 || latch_set {
        return true;
    }
    match *n {
        0 => false,
        EVERY_SLEEPER => true,
        _ => {
            *n -= 1;
            true
        }
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT => {
            imp::end_of_transaction();
            let mut events = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
            if !events.is_empty() {
                unsafe { imp::wake(&mut events) };
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_PREPARE => {
            imp::end_of_transaction();
            PENDING.with(|p| p.borrow_mut().clear());
        }
        _ => {}
    }
}

/// Marks this backend as a sleeper on `event` before it checks for work, so that a commit
/// that happens between the check and the sleep still finds it and sets its latch.
pub fn prepare_to_wait(event: u32) {
    unsafe {
        pg_sys::ResetLatch(pg_sys::MyLatch);
        imp::advertise(event | CHECKING);
    }
}

/// Sleeps until woken, `timeout_ms` passes, or an interrupt arrives (a query cancel or
/// statement_timeout raises its error here).
///
/// Before PostgreSQL 17, between `prepare_to_wait` and here, the advertised event may have
/// been reset: by a lock or I/O wait inside the claim query, and by the rollback of an empty
/// waiting round (`AbortSubTransaction` ends any wait event). A wake-up in that window is
/// caught by the re-check (`quantum_flow.poll_recheck_ms`). The window cannot be detected here
/// (the rollback always resets the event), and closing it needs the shared slots of 17.
pub fn wait_for_work(event: u32, timeout_ms: i64) {
    let timeout = timeout_ms.clamp(0, i64::from(POLL_RECHECK_MS.get()));
    unsafe {
        imp::advertise(event);
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            timeout as std::ffi::c_long,
            imp::reported_wait_event(event),
        );
        // WaitLatch clears the reported wait event on return
    }
    pgrx::check_for_interrupts!();
}

/// Whether another backend's latch is set (a plain read, as `SetLatch` itself does first). A
/// stale read costs an extra wake-up, or, if it misses a latch another commit set just now,
/// may leave this commit's task to a poll's re-check.
///
/// # Safety
/// `latch` points at a live PGPROC's `procLatch`.
unsafe fn latch_is_set(latch: *const pg_sys::Latch) -> bool {
    unsafe { std::ptr::read_volatile(std::ptr::addr_of!((*latch).is_set)) != 0 }
}

/// Stop advertising (after the last claim attempt of a poll).
pub fn done_waiting() {
    unsafe { imp::advertise(0) };
}

/// PostgreSQL 13 to 16: the advertisement is the backend's own `wait_event_info`.
#[cfg(not(any(feature = "pg17", feature = "pg18")))]
mod imp {
    use pgrx::pg_sys;

    pub fn prepare_to_notify() {}

    /// Nothing to clear: aborting resets `wait_event_info` (pgstat_report_wait_end).
    pub fn end_of_transaction() {}

    pub fn reported_wait_event(event: u32) -> u32 {
        event
    }

    /// Sets the latch of the backends whose advertised wait event is one of `events`, as many
    /// per event as it counts.
    ///
    /// Reading another backend's `wait_event_info` without a lock is what pg_stat_activity
    /// does too: a 4-byte aligned read, at worst stale, and a stale read only costs a wake-up.
    pub unsafe fn wake(events: &mut [(u32, u32)]) {
        unsafe {
            let global = pg_sys::ProcGlobal;
            if global.is_null() {
                return;
            }
            let procs = (*global).allProcs;
            for i in 0..(*global).allProcCount as usize {
                let proc = procs.add(i);
                let info = std::ptr::read_volatile(std::ptr::addr_of!((*proc).wait_event_info));
                if info == 0 {
                    continue;
                }
                let latch = std::ptr::addr_of_mut!((*proc).procLatch);
                if super::take_wake(events, info, super::latch_is_set(latch)) {
                    pg_sys::SetLatch(latch);
                }
            }
        }
    }

    pub unsafe fn advertise(event: u32) {
        unsafe {
            if !pg_sys::MyProc.is_null() {
                std::ptr::write_volatile(
                    std::ptr::addr_of_mut!((*pg_sys::MyProc).wait_event_info),
                    event,
                );
            }
        }
    }
}

/// PostgreSQL 17 and later: one registered wait event, and the workflow key in a slot per
/// process in a named DSM segment (`GetNamedDSMSegment`, created by the first backend that
/// needs it and kept until the server stops).
#[cfg(any(feature = "pg17", feature = "pg18"))]
mod imp {
    use pgrx::pg_sys;
    use std::cell::Cell;
    use std::ffi::CStr;
    use std::sync::atomic::{fence, AtomicU32, Ordering};

    /// What pg_stat_activity shows as `wait_event` (type "Extension") while a poll sleeps.
    const WAIT_EVENT_NAME: &CStr = c"QuantumFlowPoll";
    /// The DSM registry's name for our slots: `[count, slot 0, .., slot count-1]`, one u32 per
    /// PGPROC (`ProcGlobal->allProcCount`), 0 = not waiting, else the awaited workflow's key.
    const SEGMENT_NAME: &CStr = c"quantum_flow_wakeup";

    thread_local! {
        /// The registered wait event (0: not registered by this backend yet).
        static WAIT_EVENT: Cell<u32> = const { Cell::new(0) };
        /// The slots, mapped for the backend's lifetime (null: not attached yet).
        static SLOTS: Cell<(*const AtomicU32, usize)> =
            const { Cell::new((std::ptr::null(), 0)) };
        /// Whether this backend's slot may be set (so that clearing it costs nothing otherwise).
        static ADVERTISED: Cell<bool> = const { Cell::new(false) };
    }

    /// The slots, attaching (or creating) the segment on first use. May raise an error (out
    /// of shared memory), so it is called in ordinary transaction context only.
    fn slots() -> &'static [AtomicU32] {
        if let Some(slots) = attached() {
            return slots;
        }
        unsafe {
            let global = pg_sys::ProcGlobal;
            assert!(!global.is_null(), "quantum_flow: ProcGlobal is not set up");
            let count = (*global).allProcCount as usize;
            let mut found = false;
            let base = pg_sys::GetNamedDSMSegment(
                SEGMENT_NAME.as_ptr(),
                (count + 1) * std::mem::size_of::<AtomicU32>(),
                Some(init_segment),
                &mut found,
            ) as *const AtomicU32;
            let len = ((*base).load(Ordering::Relaxed) as usize).min(count);
            SLOTS.with(|s| s.set((base.add(1), len)));
        }
        attached().expect("slots attached")
    }

    fn attached() -> Option<&'static [AtomicU32]> {
        let (ptr, len) = SLOTS.with(|s| s.get());
        // SAFETY: the mapping is pinned for the backend's lifetime (the DSM registry pins it).
        (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr, len) })
    }

    /// Initialises a new segment (under the DSM registry's lock): the count, all slots free.
    #[pgrx::pg_guard]
    unsafe extern "C-unwind" fn init_segment(ptr: *mut std::ffi::c_void) {
        unsafe {
            let count = (*pg_sys::ProcGlobal).allProcCount as usize;
            let base = ptr as *mut u32;
            base.write(count as u32);
            std::ptr::write_bytes(base.add(1), 0, count);
        }
    }

    /// This backend's slot index: its PGPROC's position in ProcGlobal->allProcs.
    unsafe fn my_index() -> Option<usize> {
        unsafe {
            let global = pg_sys::ProcGlobal;
            if global.is_null() || pg_sys::MyProc.is_null() {
                return None;
            }
            usize::try_from(pg_sys::MyProc.offset_from((*global).allProcs)).ok()
        }
    }

    pub fn prepare_to_notify() {
        slots();
    }

    /// A poll never outlives its transaction: an error inside it (the claim query, a cancel
    /// while sleeping) leaves the slot set, so it is cleared here.
    pub fn end_of_transaction() {
        if ADVERTISED.with(|a| a.get()) {
            unsafe { advertise(0) };
        }
    }

    /// The registered event, registering it on first use (WaitEventExtensionNew returns the
    /// id already allocated for the name when another backend registered it first).
    pub fn reported_wait_event(_event: u32) -> u32 {
        let id = WAIT_EVENT.with(|w| w.get());
        if id != 0 {
            return id;
        }
        let id = unsafe { pg_sys::WaitEventExtensionNew(WAIT_EVENT_NAME.as_ptr()) };
        WAIT_EVENT.with(|w| w.set(id));
        id
    }

    /// Sets the latch of the backends whose slot holds one of `events`, as many per event as
    /// it counts. Runs in the commit callback: uses the slots mapped by `notify_on_commit`,
    /// allocates nothing.
    pub unsafe fn wake(events: &mut [(u32, u32)]) {
        let Some(slots) = attached() else { return };
        // Pairs with the fence in `advertise`: either the sleeper's next snapshot sees our
        // commit, or we see its slot.
        fence(Ordering::SeqCst);
        unsafe {
            let procs = (*pg_sys::ProcGlobal).allProcs;
            for (i, slot) in slots.iter().enumerate() {
                let key = slot.load(Ordering::Relaxed);
                if key == 0 {
                    continue;
                }
                let latch = std::ptr::addr_of_mut!((*procs.add(i)).procLatch);
                if super::take_wake(events, key, super::latch_is_set(latch)) {
                    pg_sys::SetLatch(latch);
                }
            }
        }
    }

    /// Writes `event` (0: none) into this backend's slot.
    pub unsafe fn advertise(event: u32) {
        let slots = if event == 0 {
            match attached() {
                Some(slots) => slots,
                None => return,
            }
        } else {
            // registered here, not in the middle of WaitLatch's arguments
            reported_wait_event(event);
            slots()
        };
        if let Some(slot) = unsafe { my_index() }.and_then(|i| slots.get(i)) {
            slot.store(event, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            ADVERTISED.with(|a| a.set(event != 0));
        }
    }
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
            let r = run_wait_event(slug);
            assert_eq!(r & 0x00ff_0000, MARKER | RUN_WAIT);
            assert_eq!(r & 0xffff, e & 0xffff);
        }
        assert_ne!(
            wait_event_for("ai_data_pipeline"),
            wait_event_for("claude_etl")
        );
        assert_eq!(wait_event_for("x"), wait_event_for("x"));
    }

    #[test]
    fn a_commit_wakes_as_many_sleepers_as_it_counts() {
        let (a, b) = (wait_event_for("a"), wait_event_for("b"));
        let mut pending = Vec::new();
        add_pending(&mut pending, a, 1);
        add_pending(&mut pending, b, EVERY_SLEEPER);
        add_pending(&mut pending, a, 1);
        add_pending(&mut pending, b, 5);
        assert_eq!(pending, vec![(a, 2), (b, EVERY_SLEEPER)]);
        let woken: Vec<bool> = [a, b, a, a, b, 0, b]
            .iter()
            .map(|&info| take_wake(&mut pending, info, false))
            .collect();
        assert_eq!(woken, vec![true, true, true, false, true, false, true]);
        assert_eq!(pending, vec![(a, 0), (b, EVERY_SLEEPER)]);
    }

    #[test]
    fn a_checking_or_already_woken_poll_is_woken_uncounted() {
        let a = wait_event_for("a");
        let mut pending = vec![(a, 1)];
        // in its claim round, and asleep with its latch already set: woken, not counted
        assert!(take_wake(&mut pending, a | CHECKING, false));
        assert!(take_wake(&mut pending, a, true));
        assert_eq!(pending, vec![(a, 1)]);
        // the first sleeper not woken yet takes the one wake-up, the next one is left asleep
        assert!(take_wake(&mut pending, a, false));
        assert!(!take_wake(&mut pending, a, false));
        assert!(take_wake(&mut pending, a | CHECKING, false));
        // a wait_run caller whose key hashes like the workflow never takes its wake-ups
        assert!(!take_wake(&mut [(a, 1)], run_wait_event("a"), false));
        // another extension's wait event with the same low bits
        assert!(!take_wake(
            &mut pending,
            pg_sys::PG_WAIT_EXTENSION | (a & 0xffff),
            false
        ));
    }
}
