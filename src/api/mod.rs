//! The SQL API: thin `#[pg_extern]` functions. They check arguments (NULLs included), call
//! `definitions` / `executor`, and turn errors into reports that keep their SQLSTATE.
//!
//! Every argument is an `Option` so that the functions are not STRICT: a NULL gets a clear
//! `null_argument` error instead of a silent NULL result.

// pgrx's ErrorReport is large, but it is raised the moment a function returns it: returning
// it by value is how pgrx keeps the SQLSTATE, and boxing it would not be recognised.
#![allow(clippy::result_large_err)]

mod flows;
mod runs;
mod tasks;

use crate::error::QfError;

fn required<T>(name: &str, value: Option<T>) -> Result<T, QfError> {
    value.ok_or_else(|| QfError::NullArgument(format!("{name} must not be NULL")))
}
