//! The SQL API: thin `#[pg_extern]` functions. They check arguments (NULLs included), call
//! `definitions` / `executor`, and turn errors into reports that keep their SQLSTATE.
//!
//! Every argument is an `Option` so that the functions are not STRICT: a NULL gets a clear
//! `null_argument` error instead of a silent NULL result.

mod flows;
mod runs;
mod tasks;

use crate::error::QfError;

fn required<T>(name: &str, value: Option<T>) -> Result<T, QfError> {
    value.ok_or_else(|| QfError::NullArgument(format!("{name} must not be NULL")))
}
