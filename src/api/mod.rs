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

mod flows;
mod ops;
mod runs;
mod tasks;

use crate::error::{QfError, QfResult};
use crate::store::query_opt;
use std::cell::Cell;

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
    /// Set once this backend has seen its library and the database's extension agree.
    static VERSION_CHECKED: Cell<bool> = const { Cell::new(false) };
}

/// Refuses to run when this library is not the version of the SQL objects that called it:
/// after a new version's files are installed, a database keeps its old SQL objects (now
/// served by the new library) until `ALTER EXTENSION quantum_flow UPDATE`. Checked once per
/// backend; after the update the next call passes.
fn check_version() -> Result<(), QfError> {
    if VERSION_CHECKED.get() {
        return Ok(());
    }
    let library = env!("CARGO_PKG_VERSION");
    match installed_version()? {
        Some(v) if v == library => {
            VERSION_CHECKED.set(true);
            Ok(())
        }
        installed => Err(QfError::ExtensionVersionMismatch(format!(
            "the quantum_flow library is version {library} but this database has the extension \
             at version {}; run ALTER EXTENSION quantum_flow UPDATE",
            installed.unwrap_or_else(|| "(none)".into())
        ))),
    }
}
