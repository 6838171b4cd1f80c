//! Pure rules of the engine: no pgrx, no SQL. Everything here is unit-tested with plain
//! `#[test]` functions and called by the API layer before anything is written.

pub mod backoff;
pub mod definition;
pub mod document;
pub mod graph;
pub mod invariants;
pub mod message;
pub mod schema;
pub mod slug;
pub mod suggest;
pub mod version;

/// Shards of a map step's completed-task counter (see `step_task_shards`): task `i` counts on
/// shard `(i / 16) % COUNTER_SHARDS` (the statements write the 16). Blocks of 16 consecutive
/// tasks share a shard, so a `complete_tasks` batch of tasks claimed together locks a few
/// shards, and concurrent batches rarely the same ones; one task per shard in turn (`i % 32`)
/// made every batch of 32 or more lock all of them, and batches waited for each other.
pub const COUNTER_SHARDS: i32 = 32;
