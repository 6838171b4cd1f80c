//! Maintenance without pollers, when quantum_flow is in `shared_preload_libraries`.
//!
//! One long-lived *launcher* (background worker "quantum_flow launcher", restarted 10 s after
//! a crash) connects to no database and, every `quantum_flow.maintenance_interval`, starts a
//! short-lived *maintenance worker* in each database that allows connections and is not a
//! template. That worker checks that the extension is installed (at this library's version)
//! and does what `maintain()` does once, then exits: the orphaned child runs first, then each
//! workflow, each in a transaction of its own (each checking the extension's version again);
//! a part that fails is rolled back and logged as a WARNING, and the worker goes on.
//! Short-lived workers hold no connection between rounds, so `DROP DATABASE` and `CREATE
//! DATABASE ... TEMPLATE` are not blocked by them, and they need one `max_worker_processes`
//! slot each only while they run.
//!
//! The launcher reads the list of databases every round. A database found without the
//! extension is probed again every `ABSENT_RECHECK` only; the worker reports such databases to
//! the launcher through a small array in shared memory.
//! Without preloading none of this exists: pollers do most of the same work for the workflows
//! they poll, and `maintain()` called by any scheduler does all of it.

use crate::error::QfResult;
use crate::maintenance;
use crate::settings::MAINTENANCE_INTERVAL_MS;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::{pg_guard, pg_shmem_init, pg_sys, PgAtomic, PgMemoryContexts, PgTryBuilder};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How often a database without the extension is probed again.
const ABSENT_RECHECK: Duration = Duration::from_secs(10);
/// Slots for "this database has no quantum_flow" reports (0 = free). When they are all taken
/// a report is dropped, and the launcher simply probes that database at the normal interval.
const ABSENT_SLOTS: usize = 64;

static ABSENT: PgAtomic<[AtomicU32; ABSENT_SLOTS]> =
    unsafe { PgAtomic::new(c"quantum_flow_absent") };

/// Maintenance rounds started (in any database): where a round starts in its workflow list.
static ROUNDS: PgAtomic<AtomicU32> = unsafe { PgAtomic::new(c"quantum_flow_rounds") };

/// Registers the launcher and the shared memory; called from `_PG_init`, and does nothing
/// unless the library is being preloaded.
pub fn init() {
    if unsafe { !pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    pg_shmem_init!(ABSENT = [const { AtomicU32::new(0) }; ABSENT_SLOTS]);
    pg_shmem_init!(ROUNDS = AtomicU32::new(0));
    BackgroundWorkerBuilder::new("quantum_flow launcher")
        .set_type("quantum_flow launcher")
        .set_library("quantum_flow")
        .set_function("quantum_flow_launcher_main")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

/// A maintenance worker the launcher started, and when.
struct Running {
    handle: *mut pg_sys::BackgroundWorkerHandle,
    started: Instant,
}

/// The launcher's view of one database.
#[derive(Default)]
struct Database {
    running: Option<Running>,
    /// Not before this instant is the next worker started.
    next_start: Option<Instant>,
}

#[pgrx::pg_guard]
#[no_mangle]
pub extern "C-unwind" fn quantum_flow_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    pgrx::log!("quantum_flow launcher started");
    let mut databases: HashMap<pg_sys::Oid, Database> = HashMap::new();
    let mut warned_no_slot = false;
    loop {
        let tick = match MAINTENANCE_INTERVAL_MS.get() {
            0 => Duration::from_secs(10),
            ms => Duration::from_millis(ms.clamp(100, 10_000) as u64),
        };
        if !BackgroundWorker::wait_latch(Some(tick)) {
            break;
        }
        // A reload first, so that a new interval (0 included) applies to this round already.
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let interval = MAINTENANCE_INTERVAL_MS.get();
        let now = Instant::now();
        // Reap finished workers first (the postmaster sets our latch when one exits).
        for (oid, db) in databases.iter_mut() {
            let Some(running) = &db.running else { continue };
            if worker_is_running(running.handle) {
                continue;
            }
            let after = if take_absent_report(*oid) {
                ABSENT_RECHECK
            } else {
                Duration::from_millis(interval.max(0) as u64)
            };
            db.next_start = Some(running.started + after);
            unsafe { pg_sys::pfree(running.handle.cast()) };
            db.running = None;
        }
        if interval == 0 {
            continue;
        }
        // The list of databases is read every round (a scan of the small shared catalog), so
        // that a new database is served at once and a dropped one gets no more workers.
        let present = BackgroundWorker::transaction(connectable_databases);
        databases.retain(|oid, db| db.running.is_some() || present.contains(oid));
        for oid in &present {
            databases.entry(*oid).or_default();
        }
        for (oid, db) in databases.iter_mut() {
            let due = db.running.is_none() && db.next_start.is_none_or(|at| now >= at);
            if !due || !present.contains(oid) {
                continue;
            }
            match start_maintenance_worker(*oid) {
                Some(handle) => {
                    db.running = Some(Running {
                        handle,
                        started: now,
                    });
                    warned_no_slot = false;
                }
                None => {
                    if !warned_no_slot {
                        pgrx::warning!(
                            "quantum_flow launcher: no background worker slot is free for \
                             maintenance (raise max_worker_processes); retrying"
                        );
                        warned_no_slot = true;
                    }
                    break;
                }
            }
        }
    }
    pgrx::log!("quantum_flow launcher stopped");
}

fn worker_is_running(handle: *mut pg_sys::BackgroundWorkerHandle) -> bool {
    let mut pid: pg_sys::pid_t = 0;
    let status = unsafe { pg_sys::GetBackgroundWorkerPid(handle, &mut pid) };
    matches!(
        status,
        pg_sys::BgwHandleStatus::BGWH_STARTED | pg_sys::BgwHandleStatus::BGWH_NOT_YET_STARTED
    )
}

/// Registers one maintenance worker for database `oid`; None when no worker slot is free.
fn start_maintenance_worker(oid: pg_sys::Oid) -> Option<*mut pg_sys::BackgroundWorkerHandle> {
    let builder = BackgroundWorkerBuilder::new("quantum_flow maintenance")
        .set_type("quantum_flow maintenance")
        .set_library("quantum_flow")
        .set_function("quantum_flow_maintenance_main")
        .enable_spi_access()
        .set_argument(Some(pg_sys::Datum::from(oid.to_u32())))
        .set_notify_pid(unsafe { pg_sys::MyProcPid });
    let mut worker: pg_sys::BackgroundWorker = (&builder).into();
    let mut handle: *mut pg_sys::BackgroundWorkerHandle = std::ptr::null_mut();
    // The handle is palloc'd in the current memory context: make that one which lives until
    // we pfree the handle.
    let registered = unsafe {
        PgMemoryContexts::TopMemoryContext
            .switch_to(|_| pg_sys::RegisterDynamicBackgroundWorker(&mut worker, &mut handle))
    };
    registered.then_some(handle)
}

/// The databases a maintenance worker may connect to, read from the shared catalog
/// pg_database (the launcher is connected to no database).
fn connectable_databases() -> Vec<pg_sys::Oid> {
    let mut oids = Vec::new();
    unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, lock);
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let db = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
            if (*db).datallowconn && !(*db).datistemplate {
                oids.push((*db).oid);
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, lock);
    }
    oids
}

/// Whether this database has the extension at this library's version (in the current
/// transaction).
fn extension_is_current() -> bool {
    let version = crate::api::installed_version()
        .unwrap_or_else(|e| pgrx::error!("quantum_flow maintenance: {e}"));
    version.as_deref() == Some(env!("CARGO_PKG_VERSION"))
}

/// Runs one part of maintenance in a transaction of its own and commits it; `Ok(None)` when
/// the extension is no longer at this library's version (an ALTER EXTENSION UPDATE or DROP
/// EXTENSION committed meanwhile). An error inside the part (its own, a PostgreSQL error, or
/// one in the commit) rolls the whole transaction back and is returned as its message, so
/// that the worker can go on with the next part, as autovacuum goes on after a table it
/// could not vacuum.
fn maintenance_part<T>(part: impl FnOnce() -> QfResult<T>) -> Result<Option<T>, String> {
    let in_transaction = || {
        if !extension_is_current() {
            return None;
        }
        // raised, not returned: an Err must not commit what the part did before it
        Some(part().unwrap_or_else(|e| pgrx::error!("{e}")))
    };
    let outcome = PgTryBuilder::new(AssertUnwindSafe(|| {
        Ok(BackgroundWorker::transaction(AssertUnwindSafe(
            in_transaction,
        )))
    }))
    .catch_others(|caught| {
        Err(match &caught {
            CaughtError::PostgresError(report)
            | CaughtError::ErrorReport(report)
            | CaughtError::RustPanic {
                ereport: report, ..
            } => report.message().to_string(),
        })
    })
    .execute();
    if outcome.is_err() {
        // the error state is flushed by now; this ends the failed transaction (releasing its
        // locks and snapshot) and leaves none current, as after a commit
        unsafe { pg_sys::AbortCurrentTransaction() };
    }
    outcome
}

fn report_absent(oid: pg_sys::Oid) {
    for slot in ABSENT.get() {
        if slot
            .compare_exchange(0, oid.to_u32(), Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
}

/// Whether the worker of database `oid` reported it has no quantum_flow (and clears that).
fn take_absent_report(oid: pg_sys::Oid) -> bool {
    ABSENT.get().iter().any(|slot| {
        slot.compare_exchange(oid.to_u32(), 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    })
}

#[pgrx::pg_guard]
#[no_mangle]
pub extern "C-unwind" fn quantum_flow_maintenance_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    let oid = pg_sys::Oid::from(arg.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(oid), None);
    // maintain() in parts, a transaction each: the orphans, then one workflow at a time, so
    // that no workflow's locks are held while the others are maintained. A part that fails
    // is rolled back (nothing half-done is committed) and logged as a WARNING, and the worker
    // goes on with the next one: one workflow that cannot be maintained does not keep the
    // others from being maintained. Each part checks the extension's version again (an
    // ALTER EXTENSION UPDATE or DROP EXTENSION may have committed meanwhile); a SIGTERM stops
    // the worker between parts.
    let slugs = BackgroundWorker::transaction(|| {
        if !extension_is_current() {
            return None;
        }
        Some(
            crate::store::flows::all_slugs()
                .unwrap_or_else(|e| pgrx::error!("quantum_flow maintenance failed: {e}")),
        )
    });
    let report = slugs.map(|mut slugs| {
        let mut report = maintenance::Report::default();
        match maintenance_part(maintenance::cancel_orphans) {
            Ok(Some(orphans)) => report.orphans_cancelled = orphans,
            Ok(None) => return report,
            Err(message) => pgrx::warning!(
                "quantum_flow maintenance: cancelling the child runs of ended runs failed: \
                 {message}"
            ),
        }
        // Each round starts one workflow further on (a round counter in shared memory,
        // modulo their number), so that the workflows late in the list are not always the
        // ones a SIGTERM or a crash in the middle of a round leaves out.
        if !slugs.is_empty() {
            let round = ROUNDS.get().fetch_add(1, Ordering::Relaxed);
            let start = round as usize % slugs.len();
            slugs.rotate_left(start);
        }
        for slug in slugs {
            if BackgroundWorker::sigterm_received() {
                break;
            }
            match maintenance_part(|| maintenance::maintain_workflow(&slug)) {
                Ok(Some(part)) => report += part,
                Ok(None) => break,
                Err(message) => pgrx::warning!(
                    "quantum_flow maintenance of workflow {slug:?} failed: {message}; rolled \
                     back, the other workflows are maintained"
                ),
            }
        }
        report
    });
    match report {
        Some(report) if report.did_something() => {
            pgrx::log!("quantum_flow maintenance: {}", report.to_json())
        }
        Some(_) => {}
        None => report_absent(oid),
    }
}
