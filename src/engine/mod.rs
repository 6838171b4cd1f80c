//! Pure rules of the engine: no pgrx, no SQL. Everything here is unit-tested with plain
//! `#[test]` functions and called by the API layer before anything is written.

pub mod backoff;
pub mod definition;
pub mod slug;
