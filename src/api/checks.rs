//! (Internal, granted to no role.) The functions the CHECK constraints of the hot tables call
//! (sql/finalize.sql); the rules are `engine::invariants`.

use crate::engine::invariants;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

/// `runs_valid`: see `invariants::run_row_valid`.
#[pg_extern(immutable, parallel_safe)]
fn run_row_valid(
    status: Option<&str>,
    remaining_steps: Option<i32>,
    completed_at: Option<TimestampWithTimeZone>,
    failed_at: Option<TimestampWithTimeZone>,
) -> bool {
    invariants::run_row_valid(
        status,
        remaining_steps,
        completed_at.is_some(),
        failed_at.is_some(),
    )
}

/// `step_states_valid`: see `invariants::step_state_row_valid`.
#[pg_extern(immutable, parallel_safe)]
fn step_state_row_valid(
    status: Option<&str>,
    remaining_deps: Option<i32>,
    tasks_total: Option<i32>,
    tasks_completed: Option<i32>,
    fan_out_next: Option<i32>,
) -> bool {
    invariants::step_state_row_valid(
        status,
        remaining_deps,
        tasks_total,
        tasks_completed,
        fan_out_next,
    )
}

/// `step_tasks_valid`: see `invariants::step_task_row_valid`.
#[pg_extern(immutable, parallel_safe)]
fn step_task_row_valid(
    task_index: Option<i32>,
    status: Option<&str>,
    attempts_count: Option<i32>,
    attempts_base: Option<i32>,
) -> bool {
    invariants::step_task_row_valid(task_index, status, attempts_count, attempts_base)
}

/// `step_task_shards_valid`: see `invariants::task_shard_row_valid`.
#[pg_extern(immutable, parallel_safe)]
fn task_shard_row_valid(
    shard: Option<i32>,
    tasks_total: Option<i32>,
    tasks_completed: Option<i32>,
) -> bool {
    invariants::task_shard_row_valid(shard, tasks_total, tasks_completed)
}
