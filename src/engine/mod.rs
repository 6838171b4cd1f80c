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
/// shard `(i / 4) % COUNTER_SHARDS` (the statements write the 4). A completion holds its
/// shard's row lock until it commits, so completions that share a shard wait for each other.
/// A worker's pool of threads works the consecutive tasks of one poll at once: with blocks of
/// 4, at most 4 of them share a shard. With blocks of 16, a Python worker of 8 threads
/// completing per task had 62% of its completions' samples waiting for a shard lock (44% with
/// blocks of 4). A `complete_tasks` batch of 50 tasks claimed together locks 13 shards of 64,
/// and four workers' concurrent batches (200 consecutive tasks) rarely share one. One task per
/// shard in turn (`i % 32`) made every batch of 32 or more lock all of them, and batches waited
/// for each other.
pub const COUNTER_SHARDS: i32 = 64;

/// The first chunk of a map step's tasks (see `fan_out_chunk_size`).
pub const FIRST_FAN_OUT_CHUNK: i32 = 1_000;

/// How many tasks a map step creates in its chunk that starts at task `from`, given the
/// setting `quantum_flow.fan_out_chunk`: at most `FIRST_FAN_OUT_CHUNK` in the first chunk, so
/// that the first task is claimable soon after the step starts, then as many as exist
/// already (each chunk doubles them), up to the setting. Workers claim the first tasks while
/// polls create the next chunks, instead of waiting for all of them; a big map still fans out
/// in chunks of the setting.
pub fn fan_out_chunk_size(from: i32, fan_out_chunk: i32) -> i32 {
    FIRST_FAN_OUT_CHUNK.max(from).min(fan_out_chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_big_map_starts_with_a_small_chunk_and_doubles_up_to_the_setting() {
        let mut from = 0;
        let mut sizes = Vec::new();
        while from < 40_000 {
            let n = fan_out_chunk_size(from, 10_000);
            sizes.push(n);
            from += n;
        }
        assert_eq!(
            sizes,
            [1_000, 1_000, 2_000, 4_000, 8_000, 10_000, 10_000, 10_000]
        );
    }

    #[test]
    fn a_setting_below_the_first_chunk_is_every_chunk() {
        assert_eq!(fan_out_chunk_size(0, 2), 2);
        assert_eq!(fan_out_chunk_size(2, 2), 2);
        assert_eq!(fan_out_chunk_size(4_000, 500), 500);
        assert_eq!(fan_out_chunk_size(0, i32::MAX), FIRST_FAN_OUT_CHUNK);
        assert_eq!(fan_out_chunk_size(i32::MAX - 1, i32::MAX), i32::MAX - 1);
    }
}
