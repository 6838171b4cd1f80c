//! The `quantum_flow.*` settings (GUCs), registered once per process from `_PG_init`.
//!
//! Limits a DBA sets for everybody are `SUSET`: only a superuser (or `ALTER ROLE ... SET` /
//! `ALTER DATABASE ... SET` by one) can change them, so a worker cannot raise its own limit.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};

/// The largest `jsonb` value PostgreSQL can build: the offsets inside a jsonb container are
/// 28 bits wide (`JENTRY_OFFLENMASK`).
pub const JSONB_MAX_BYTES: i64 = 0x0FFF_FFFF;

/// `quantum_flow.poll_recheck_ms`: the longest an idle poller sleeps before it checks the
/// queue again, a safety net for wake-ups that cannot be seen (work that another client put
/// into the queue by hand, or the tiny window described in `wakeup::wait_for_work`).
pub static POLL_RECHECK_MS: GucSetting<i32> = GucSetting::<i32>::new(500);

/// `quantum_flow.max_batch_size`: the largest `batch_size` a `poll_tasks` may ask for.
pub static MAX_BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// `quantum_flow.max_wait_ms`: the longest `max_wait_ms` a `poll_tasks` may ask for (a
/// waiting poll keeps its transaction, and so its snapshot, open).
pub static MAX_WAIT_MS: GucSetting<i32> = GucSetting::<i32>::new(60_000);

/// `quantum_flow.max_output_bytes`: the largest task output `complete_task` accepts.
pub static MAX_OUTPUT_BYTES: GucSetting<i32> = GucSetting::<i32>::new(64 * 1024 * 1024);

/// `quantum_flow.maintenance_interval`: how often the background worker runs `maintain()` in
/// each database with the extension (0: never). Only read when the library is preloaded.
pub static MAINTENANCE_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// `quantum_flow.max_steps`: the most steps one workflow may have.
pub static MAX_STEPS: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// `quantum_flow.max_map_tasks`: the most tasks one map step may fan out to.
pub static MAX_MAP_TASKS: GucSetting<i32> = GucSetting::<i32>::new(1_000_000);

/// `quantum_flow.fan_out_chunk`: the most tasks of a map step created at once. A map step
/// with more tasks than its first chunk creates that chunk when it starts; polls (and
/// `maintain`) create the rest, one chunk at a time (see `engine::fan_out_chunk_size` and
/// `queue::continue_fan_out`).
pub static FAN_OUT_CHUNK: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// `quantum_flow.fair_polling`: whether `poll_tasks` takes part of each batch from the newest
/// messages of other runs (see `queue::read_messages`); off, it reads strictly oldest first.
pub static FAIR_POLLING: GucSetting<bool> = GucSetting::<bool>::new(true);

/// `quantum_flow.notify_events`: whether run and step status changes send
/// `NOTIFY quantum_flow_events` (see `events`).
pub static NOTIFY_EVENTS: GucSetting<bool> = GucSetting::<bool>::new(true);

/// `quantum_flow.async_claims`: whether a transaction that only claimed tasks commits
/// without waiting for its WAL flush (see `claim_commit`).
pub static ASYNC_CLAIMS: GucSetting<bool> = GucSetting::<bool>::new(true);

pub fn init() {
    GucRegistry::define_bool_guc(
        c"quantum_flow.notify_events",
        c"Whether run and step status changes send NOTIFY quantum_flow_events.",
        c"Each change sends {\"run_id\", \"workflow_slug\", \"step_slug\", \"status\"} after commit.",
        &NOTIFY_EVENTS,
        GucContext::Userset,
        GucFlags::empty(),
    );
    GucRegistry::define_bool_guc(
        c"quantum_flow.async_claims",
        c"Whether a poll_tasks transaction that only claimed tasks commits without waiting for its WAL flush.",
        c"A claim lost in a crash makes its task claimable again, as an expired claim is; \
          off, claims commit as synchronous_commit says.",
        &ASYNC_CLAIMS,
        GucContext::Userset,
        GucFlags::empty(),
    );
    GucRegistry::define_bool_guc(
        c"quantum_flow.fair_polling",
        c"Whether poll_tasks shares each batch between the oldest work and other, newer runs.",
        c"On, a run queued behind another run's big map gets its tasks claimed within a few \
          polls; off, tasks are claimed strictly oldest first.",
        &FAIR_POLLING,
        GucContext::Userset,
        GucFlags::empty(),
    );
    GucRegistry::define_int_guc(
        c"quantum_flow.poll_recheck_ms",
        c"Longest sleep of an idle poll_tasks(max_wait_ms => ...) before it re-checks its queue.",
        c"Waiting pollers are woken when work is committed; this re-check only catches work \
          that arrived by other means.",
        &POLL_RECHECK_MS,
        10,
        3_600_000,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"quantum_flow.max_batch_size",
        c"Largest batch_size a poll_tasks call may ask for.",
        c"Larger requests raise invalid_option, so that one poller cannot hoard a big map.",
        &MAX_BATCH_SIZE,
        1,
        1_000_000,
        GucContext::Suset,
        GucFlags::empty(),
    );
    GucRegistry::define_int_guc(
        c"quantum_flow.max_wait_ms",
        c"Longest max_wait_ms a poll_tasks call may ask for.",
        c"A waiting poll keeps its transaction open, which holds back vacuum; larger \
          requests raise invalid_option.",
        &MAX_WAIT_MS,
        0,
        3_600_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"quantum_flow.max_output_bytes",
        c"Largest task output complete_task accepts.",
        c"A larger output raises output_too_large and changes nothing.",
        &MAX_OUTPUT_BYTES,
        1,
        JSONB_MAX_BYTES as i32,
        GucContext::Suset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"quantum_flow.max_steps",
        c"Most steps one workflow may have.",
        c"add_step and define_flow raise limit_exceeded beyond it; a guardrail for definitions \
          written by programs.",
        &MAX_STEPS,
        1,
        1_000_000,
        GucContext::Suset,
        GucFlags::empty(),
    );
    GucRegistry::define_int_guc(
        c"quantum_flow.max_map_tasks",
        c"Most tasks one map step may fan out to.",
        c"A map step over a longer array fails its run with limit_exceeded.",
        &MAX_MAP_TASKS,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::empty(),
    );
    GucRegistry::define_int_guc(
        c"quantum_flow.fan_out_chunk",
        c"The most tasks of a map step created at once.",
        c"A bigger map step queues its first 1000 tasks (or this many, if fewer) when it \
          starts, so its first task can be claimed at once; polls and maintain() create the \
          rest, each chunk as many tasks as exist already, up to this.",
        &FAN_OUT_CHUNK,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::empty(),
    );
    GucRegistry::define_int_guc(
        c"quantum_flow.maintenance_interval",
        c"How often the background worker runs quantum_flow.maintain() in each database.",
        c"Only used when quantum_flow is in shared_preload_libraries; 0 turns it off.",
        &MAINTENANCE_INTERVAL_MS,
        0,
        86_400_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
}
