//! The SQL API: thin `#[pg_extern]` functions. They check arguments (NULLs included), call
//! `definitions` / `executor` / `maintenance`, and turn errors into reports that keep their
//! SQLSTATE.
//!
//! Every argument is an `Option` so that the functions are not STRICT: a NULL gets a clear
//! `null_argument` error instead of a silent NULL result. Every function that touches the
//! tables is `SECURITY DEFINER` with `search_path` pinned to `pg_catalog, pg_temp` (every
//! statement names its schema), so the roles of sql/finalize.sql need no table privileges.

// pgrx's ErrorReport is large, but it is raised the moment a function returns it: returning
// it by value is how pgrx keeps the SQLSTATE, and boxing it would not be recognised.
#![allow(clippy::result_large_err)]

mod checks;
mod compat;
mod flows;
mod ops;
mod runs;
mod tasks;

use crate::error::{QfError, QfResult};
use crate::store::query_opt;
use std::cell::Cell;
use std::time::{Duration, Instant};

fn required<T>(name: &str, value: Option<T>) -> Result<T, QfError> {
    value.ok_or_else(|| QfError::NullArgument(format!("{name} must not be NULL")))
}

/// The version of the quantum_flow extension installed in this database (None: not installed).
pub fn installed_version() -> QfResult<Option<String>> {
    query_opt(
        "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'quantum_flow'",
        &[],
        |r| crate::store::req::<String>(r, 1),
    )
}

thread_local! {
    /// When this backend last saw its library and the database's extension agree.
    static VERSION_CHECKED_AT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// How long a passed version check is trusted before it is made again.
const VERSION_RECHECK: Duration = Duration::from_secs(1);

/// Refuses to run when this library is not the version of the SQL objects that called it.
/// After a new version's files are installed, a database keeps its old SQL objects (now
/// served by the new library) until `ALTER EXTENSION quantum_flow UPDATE`; and a session that
/// loaded the old library keeps it after another session has updated the database. The
/// check is repeated at most once a second per backend, so it costs the hot path nothing.
fn check_version() -> Result<(), QfError> {
    let now = Instant::now();
    if VERSION_CHECKED_AT
        .get()
        .is_some_and(|at| now.duration_since(at) < VERSION_RECHECK)
    {
        return Ok(());
    }
    let library = env!("CARGO_PKG_VERSION");
    match installed_version()? {
        Some(v) if v == library => {
            VERSION_CHECKED_AT.set(Some(now));
            Ok(())
        }
        installed => Err(QfError::ExtensionVersionMismatch(
            crate::engine::version::mismatch(library, installed.as_deref()),
        )),
    }
}
