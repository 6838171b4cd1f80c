//! Pure rules of the engine: no pgrx, no SQL. Everything here is unit-tested with plain
//! `#[test]` functions and called by the API layer before anything is written.

pub mod backoff;
pub mod definition;
pub mod document;
pub mod graph;
pub mod message;
pub mod schema;
pub mod slug;
pub mod suggest;
pub mod version;

/// Shards of a map step's completed-task counter (see `step_task_shards`): task `i` counts on
/// shard `i % COUNTER_SHARDS`.
pub const COUNTER_SHARDS: i32 = 32;
