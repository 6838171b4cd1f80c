//! Everything that speaks to pgmq. A workflow's tasks travel through its own queue, named by
//! `engine::slug::queue_name`; one message per task, reused across the task's attempts (a
//! retry moves the message's visibility time instead of sending a new one).
//!
//! Message body: `{"run_id": ..., "step_slug": ..., "task_index": ...}`. A poll finds a
//! message's task by that key and checks that the task's `message_id` is this message; a
//! foreign or malformed message in the queue is archived rather than breaking polls.
//!
//! Timers are messages too, sent to become visible when they are due: `{"run_id", "timer":
//! "run_timeout"}` (the run's deadline) and `{"run_id", "step_slug", "task_index": 0,
//! "timer": "event_timeout"}` (an event step's timeout; it is also that step's task's
//! message). Whoever reads a due timer (a poll, `maintain`) acts on it.
//!
//! A paused run's messages are parked: their visibility time is set to `infinity`, and
//! `resume_run` sets it back. Only a poll that holds a message (it read it) or `pause_run`
//! (skipping messages others hold) parks one; see `park` and `unpark_run` for why that
//! cannot strand a message when a resume races them.
//!
//! Lock order (the one `executor` documents): queue message, task, counter shard, step state,
//! run, dependent step states. Code that needs a message lock while holding a later lock
//! skips locked messages instead of waiting (see `discard_run_messages`).

use crate::engine::message::{parse_task_index, parse_uuid};
use crate::engine::COUNTER_SHARDS;
use crate::error::{QfError, QfResult};
use crate::jsonb::Jsonb;
use crate::settings::{FAN_OUT_CHUNK, JSONB_MAX_BYTES};
use crate::store::{col, execute, query, query_dynamic, query_opt, query_prepared, req};
use pgrx::datum::Uuid;
use pgrx::pg_sys;
use std::cell::Cell;

/// The queue's message table (`q_`) or archive (`a_`), quoted (`pgmq.format_table_name`:
/// prefix plus the lower-cased name; our queue names are lower-case already and come from
/// validated slugs).
fn queue_table(queue: &str) -> String {
    pgrx::spi::quote_qualified_identifier("pgmq", &format!("q_{queue}"))
}

/// Whether the workflow's queue table exists, from the catalog cache (no statement): a
/// backend's memory of which workflow a run belongs to can outlive the workflow.
pub fn table_exists(workflow_slug: &str) -> bool {
    let table = format!("q_{}", crate::engine::slug::queue_name(workflow_slug));
    let Ok(table) = std::ffi::CString::new(table) else {
        return false;
    };
    // SAFETY: both lookups only read the catalog caches; with `missing_ok` neither raises.
    unsafe {
        let namespace = pg_sys::get_namespace_oid(c"pgmq".as_ptr(), true);
        namespace != pg_sys::InvalidOid
            && pg_sys::get_relname_relid(table.as_ptr(), namespace) != pg_sys::InvalidOid
    }
}

/// The queue's message table, quoted, for statements elsewhere that join it.
pub fn table_of(queue: &str) -> String {
    queue_table(queue)
}

fn archive_table(queue: &str) -> String {
    pgrx::spi::quote_qualified_identifier("pgmq", &format!("a_{queue}"))
}

/// Whether pgmq already has a queue of this name (ours or somebody else's).
pub fn exists(queue: &str) -> QfResult<bool> {
    Ok(execute(
        "SELECT 1 FROM pgmq.meta WHERE queue_name = $1",
        &[queue.into()],
    )? == 1)
}

pub fn create(queue: &str) -> QfResult<()> {
    execute("SELECT pgmq.create($1)", &[queue.into()])?;
    Ok(())
}

pub fn drop(queue: &str) -> QfResult<()> {
    if exists(queue)? {
        execute("SELECT pgmq.drop_queue($1)", &[queue.into()])?;
    }
    Ok(())
}

/// Drops the queue of every workflow (for `DROP EXTENSION`); returns how many there were.
pub fn drop_workflow_queues() -> QfResult<i64> {
    Ok(query_opt(
        "SELECT count(pgmq.drop_queue(m.queue_name)) \
         FROM quantum_flow.workflows w JOIN pgmq.meta m ON m.queue_name = 'qf_' || lower(w.workflow_slug)",
        &[],
        |r| req::<i64>(r, 1),
    )?
    .unwrap_or(0))
}

/// When a step's tasks become visible: `start_delay` after the step became ready, and not
/// before the run's `start_at` (`$2` is the run, `$3` the step; a macro so that statements
/// stay `'static` text).
macro_rules! visible_at {
    () => {
        "(SELECT greatest(clock_timestamp(), coalesce(r.start_at, clock_timestamp())) \
                 + make_interval(secs => coalesce(ws.start_delay, 0)) \
          FROM quantum_flow.runs r, quantum_flow.workflow_steps ws \
          WHERE r.run_id = $2 AND ws.workflow_slug = r.workflow_slug AND ws.step_slug = $3)"
    };
}

/// How large a single step's task input will be, in bytes, at most: a jsonb object holds
/// each key and value plus 8 bytes of entries and up to 3 bytes of alignment per pair.
macro_rules! single_input_bytes {
    () => {
        "4 + (SELECT quantum_flow.jsonb_raw_size(r.input) + 3 + 11 FROM quantum_flow.runs r WHERE r.run_id = $2) \
         + coalesce((SELECT sum(quantum_flow.jsonb_raw_size(ds.output) + length(d.dep_slug) + 11) \
                     FROM quantum_flow.workflow_step_dependencies_def d \
                     JOIN quantum_flow.step_states ds ON ds.run_id = $2 AND ds.step_slug = d.dep_slug \
                     WHERE d.workflow_slug = ss.workflow_slug AND d.step_slug = $3 \
                       AND ds.status = 'completed'), 0)::bigint"
    };
}

/// Queues the single task of a single step and marks the step started. Returns how large the
/// task's input will be, in bytes, at most. A task of a run with a concurrency key value
/// (`key`) waits in `waiting_tasks` instead, without a message (see `concurrency`).
pub fn start_single_step(
    queue: &str,
    run_id: Uuid,
    step_slug: &str,
    key: Option<(&str, &str)>,
) -> QfResult<i64> {
    let bytes = match key {
        // The message goes straight into the queue's table, as `pgmq.send` would put it there,
        // by a statement prepared once per queue: `pgmq.send` builds and plans its INSERT on
        // every call, which costs more than the rest of a step hand-off. (`$1`, the queue's
        // name, is named in the text instead.)
        None => query_prepared(
            &format!(
                concat!(
                    "WITH sent AS ( \
                       INSERT INTO {table} (vt, message) \
                       VALUES (",
                    visible_at!(),
                    ", jsonb_build_object('run_id', $2::uuid, 'step_slug', $3::text, 'task_index', 0)) \
                       RETURNING msg_id), \
                     task AS ( \
                       INSERT INTO quantum_flow.step_tasks (run_id, step_slug, task_index, message_id) \
                       SELECT $2, $3, 0, sent.msg_id FROM sent) \
                     UPDATE quantum_flow.step_states ss SET status = 'started', tasks_total = 1, started_at = clock_timestamp() \
                     WHERE ss.run_id = $2 AND ss.step_slug = $3 \
                     RETURNING ",
                    single_input_bytes!()
                ),
                table = queue_table(queue)
            ),
            &[queue.into(), run_id.into(), step_slug.into()],
            |r| req::<i64>(r, 1),
        )?
        .into_iter()
        .next(),
        Some((workflow_slug, value)) => query_opt(
            concat!(
                "WITH waiting AS ( \
                   INSERT INTO quantum_flow.waiting_tasks (workflow_slug, key_value, run_id, step_slug, task_index, not_before) \
                   SELECT $1, $4, $2, $3, 0, ",
                visible_at!(),
                "), \
                 task AS ( \
                   INSERT INTO quantum_flow.step_tasks (run_id, step_slug, task_index) VALUES ($2, $3, 0)) \
                 UPDATE quantum_flow.step_states ss SET status = 'started', tasks_total = 1, started_at = clock_timestamp() \
                 WHERE ss.run_id = $2 AND ss.step_slug = $3 \
                 RETURNING ",
                single_input_bytes!()
            ),
            &[workflow_slug.into(), run_id.into(), step_slug.into(), value.into()],
            |r| req::<i64>(r, 1),
        )?,
    };
    Ok(bytes.unwrap_or(0))
}

/// Starts an event step: its task waits for `send_event`, and its message is the timer that
/// fails the run when no event arrives within the step's timeout, counted from now, or from
/// the run's `start_at` when it is scheduled for later.
pub fn start_event_step(queue: &str, run_id: Uuid, step_slug: &str) -> QfResult<()> {
    execute(
        "WITH timeout AS ( \
           SELECT coalesce(ws.timeout, w.timeout) AS secs, \
                  greatest(clock_timestamp(), r.start_at) AS ready_at \
           FROM quantum_flow.runs r \
           JOIN quantum_flow.workflows w ON w.workflow_slug = r.workflow_slug \
           JOIN quantum_flow.workflow_steps ws ON ws.workflow_slug = r.workflow_slug AND ws.step_slug = $3 \
           WHERE r.run_id = $2), \
         sent AS ( \
           SELECT pgmq.send($1, jsonb_build_object('run_id', $2::uuid, 'step_slug', $3::text, 'task_index', 0, \
                                                   'timer', 'event_timeout'), \
                            timeout.ready_at + make_interval(secs => timeout.secs)) AS msg_id \
           FROM timeout), \
         task AS ( \
           INSERT INTO quantum_flow.step_tasks (run_id, step_slug, task_index, message_id) \
           SELECT $2, $3, 0, sent.msg_id FROM sent) \
         UPDATE quantum_flow.step_states ss SET status = 'started', tasks_total = 1, started_at = clock_timestamp() \
         WHERE ss.run_id = $2 AND ss.step_slug = $3 RETURNING 1",
        &[queue.into(), run_id.into(), step_slug.into()],
    )?;
    Ok(())
}

/// Sends the timer that fails a run with `run_timeout` at its deadline, and records it.
pub fn start_run_timer(queue: &str, run_id: Uuid) -> QfResult<()> {
    execute(
        "UPDATE quantum_flow.runs r \
         SET timer_message_id = (SELECT pgmq.send($1, jsonb_build_object('run_id', $2::uuid, 'timer', 'run_timeout'), \
                                                  r.deadline)) \
         WHERE r.run_id = $2 AND r.deadline IS NOT NULL RETURNING 1",
        &[queue.into(), run_id.into()],
    )?;
    Ok(())
}

/// Fans a map step out: one task and one message per element of the array it maps over (the
/// run input when `source_step` is None, else that step's output), each task keeping its
/// element. Returns the task count and the largest task input in bytes, at most. The caller
/// has checked that the source is a non-empty array. With a concurrency key value (`key`)
/// the tasks wait in `waiting_tasks` instead, without messages.
///
/// Without a key, only the first chunk of tasks is created here (`engine::fan_out_chunk_size`:
/// 1,000, or `quantum_flow.fan_out_chunk` if fewer), so that the first of a big map can be
/// claimed as soon as this transaction commits; the step's `fan_out_next` says where the rest
/// begin, and `continue_fan_out` creates them. The task count, the counter shards and the
/// input size check cover every element from the start.
pub fn start_map_step(
    queue: &str,
    run_id: Uuid,
    step_slug: &str,
    source_step: Option<&str>,
    key: Option<(&str, &str)>,
) -> QfResult<(i32, i64)> {
    // $2 is the run, $3 the step, $4 the source step (NULL: the run input), $5 the shard count;
    // `$tasks` adds the CTEs that create tasks, `$more` columns to the RETURNING list.
    macro_rules! fan_out {
        ($tasks:literal, $more:literal) => {
            concat!(
                "WITH source AS ( \
                   SELECT r.input, CASE WHEN $4::text IS NULL THEN r.input \
                               ELSE (SELECT d.output FROM quantum_flow.step_states d \
                                     WHERE d.run_id = $2 AND d.step_slug = $4) END AS arr \
                   FROM quantum_flow.runs r WHERE r.run_id = $2), \
                 items AS MATERIALIZED ( \
                   SELECT (e.ord - 1)::int AS task_index, e.item \
                   FROM source, jsonb_array_elements(source.arr) WITH ORDINALITY AS e(item, ord)), ",
                $tasks,
                " shards AS ( \
                   INSERT INTO quantum_flow.step_task_shards (run_id, step_slug, shard, tasks_total) \
                   SELECT $2, $3, (i.task_index / 4) % $5, count(*) FROM items i GROUP BY (i.task_index / 4) % $5) \
                 UPDATE quantum_flow.step_states \
                 SET status = 'started', tasks_total = (SELECT count(*) FROM items), started_at = clock_timestamp() \
                 WHERE run_id = $2 AND step_slug = $3 \
                 RETURNING tasks_total, \
                   (4 + 3 * 27 + CASE WHEN $4::text IS NULL THEN 0 \
                                     ELSE (SELECT quantum_flow.jsonb_raw_size(input) FROM source) END \
                      + (SELECT max(quantum_flow.jsonb_raw_size(item)) FROM items))::bigint",
                $more
            )
        };
    }
    let Some((workflow_slug, value)) = key else {
        // The first chunk of tasks is created like every later one, by `chunk`, from the
        // array this statement returns (detoasted). ($1 is unused: the key variant's.)
        let started = query_opt(
            fan_out!("", ", (SELECT arr FROM source)"),
            &[
                queue.into(),
                run_id.into(),
                step_slug.into(),
                source_step.into(),
                COUNTER_SHARDS.into(),
            ],
            |r| {
                Ok((
                    req::<i32>(r, 1)?,
                    col::<i64>(r, 2)?.unwrap_or(0),
                    req::<Jsonb>(r, 3)?,
                ))
            },
        )?;
        let Some((total, bytes, array)) = started else {
            return Ok((0, 0));
        };
        chunk(queue, run_id, step_slug, 0, total, array)?;
        return Ok((total, bytes));
    };
    let started = query_opt(
        fan_out!(
            "waiting AS ( \
               INSERT INTO quantum_flow.waiting_tasks (workflow_slug, key_value, run_id, step_slug, task_index, not_before) \
               SELECT $1, $6, $2, $3, i.task_index, \
                      (SELECT greatest(clock_timestamp(), coalesce(r.start_at, clock_timestamp())) \
                              + make_interval(secs => coalesce(ws.start_delay, 0)) \
                       FROM quantum_flow.runs r, quantum_flow.workflow_steps ws \
                       WHERE r.run_id = $2 AND ws.workflow_slug = r.workflow_slug AND ws.step_slug = $3) \
               FROM items i ORDER BY i.task_index), \
             tasks AS ( \
               INSERT INTO quantum_flow.step_tasks (run_id, step_slug, task_index, item) \
               SELECT $2, $3, i.task_index, i.item FROM items i \
               RETURNING 1), ",
            ""
        ),
        &[
            workflow_slug.into(),
            run_id.into(),
            step_slug.into(),
            source_step.into(),
            COUNTER_SHARDS.into(),
            value.into(),
        ],
        |r| Ok((req::<i32>(r, 1)?, col::<i64>(r, 2)?.unwrap_or(0))),
    )?;
    Ok(started.unwrap_or((0, 0)))
}

/// Creates the next chunk of tasks and messages (`engine::fan_out_chunk_size`) of one map step
/// of `workflow_slug` whose fan-out is unfinished (`fan_out_next` is set; see
/// `start_map_step`), of a started run; returns how many it created (0: no such step, or other
/// sessions hold them). Polls call it after their claim, and `maintain` for every workflow.
///
/// The step's row is locked with SKIP LOCKED, so one session creates each chunk and others
/// go on claiming; a chunk stays where it was when its transaction rolls back. The probe
/// returns the step's source array detoasted, for `chunk`.
///
/// Fairness (see `read_messages`): a chunk's messages are the newest in the queue, so a chunk
/// created while another run's visible message is among the newest messages a poll of `qty`
/// looks at (`tail_window`) would bury that message below the map's. Such a step is passed
/// over (not locked) until that message is claimed, which the poll's fair read does first (a
/// message sent while the chunk is being inserted is newer than the chunk's: see `chunk`).
/// Strictly oldest first, the message is older than the chunk anyway. The map goes on with
/// the tasks it has meanwhile. (A message another transaction holds also counts, until that
/// transaction ends.)
///
/// A paused run's fan-out waits for `resume_run`. A step of a run that ended (or a step that
/// failed) is found here too, and its `fan_out_next` cleared, so that polls stop looking at
/// it; the paths that fail a run leave it alone, as they may hold locks in another order.
/// `retry_run` sets it again from the tasks that exist (`runs::resume_fan_outs`).
///
/// Callers run this last in their transaction's work on the queue: it holds the step's row
/// from here on, and nothing after it may wait for another step's row.
pub fn continue_fan_out(queue: &str, workflow_slug: &str, qty: i32) -> QfResult<FanOut> {
    let table = queue_table(queue);
    let probe = format!(
        "SELECT ss.run_id, ss.step_slug, ss.fan_out_next, ss.tasks_total, \
                r.status = 'started' AND ss.status = 'started', \
                CASE WHEN r.status = 'started' AND ss.status = 'started' THEN \
                  CASE WHEN d.dep_slug IS NULL THEN r.input \
                       ELSE (SELECT ds.output FROM quantum_flow.step_states ds \
                             WHERE ds.run_id = ss.run_id AND ds.step_slug = d.dep_slug) END END \
         FROM quantum_flow.step_states ss \
         JOIN quantum_flow.runs r ON r.run_id = ss.run_id \
         LEFT JOIN quantum_flow.workflow_step_dependencies_def d \
                ON d.workflow_slug = ss.workflow_slug AND d.step_slug = ss.step_slug \
         WHERE ss.workflow_slug = $1 AND ss.fan_out_next IS NOT NULL AND r.status <> 'paused' \
           AND NOT (r.status = 'started' AND ss.status = 'started' AND EXISTS ( \
                 SELECT 1 FROM {table} q \
                 WHERE q.msg_id = ANY({newest}) \
                   AND q.vt <= clock_timestamp() \
                   AND (q.message ->> 'run_id') IS DISTINCT FROM ss.run_id::text)) \
         LIMIT 1 FOR UPDATE OF ss SKIP LOCKED",
        newest = newest_visible(&table, "$2", "", "ss.run_id::text")
    );
    let mut done = FanOut::default();
    // Usually no step of the workflow has a fan-out to continue. Finding that out with the
    // probe itself cost every poll its executor setup: 31 us, against 5 us for this look at
    // the probe's partial index.
    let pending = query(
        "SELECT EXISTS (SELECT FROM quantum_flow.step_states \
                        WHERE workflow_slug = $1 AND fan_out_next IS NOT NULL)",
        &[workflow_slug.into()],
        |r| req::<bool>(r, 1),
    )?;
    if pending.first() != Some(&true) {
        return Ok(done);
    }
    // Each stale row found is cleared and the next one looked for; a bound keeps one poll's
    // share of that work small.
    for _ in 0..16 {
        let found = query_prepared(
            &probe,
            &[workflow_slug.into(), tail_window(qty).into()],
            |r| {
                Ok((
                    req::<Uuid>(r, 1)?,
                    req::<String>(r, 2)?,
                    req::<i32>(r, 3)?,
                    req::<i32>(r, 4)?,
                    req::<bool>(r, 5)?,
                    col::<Jsonb>(r, 6)?,
                ))
            },
        )?
        .into_iter()
        .next();
        let Some((run_id, step_slug, from, total, live, array)) = found else {
            return Ok(done);
        };
        if let (true, Some(array)) = (live, array) {
            done.created = chunk(queue, run_id, &step_slug, from, total, array)?;
            return Ok(done);
        }
        // The run's status is read again here, in this statement's snapshot: the probe's
        // row lock re-read only the step's row, and a retry_run may have committed since.
        done.cleared += execute(
            "UPDATE quantum_flow.step_states ss SET fan_out_next = NULL \
             WHERE ss.run_id = $1 AND ss.step_slug = $2 AND ss.fan_out_next IS NOT NULL \
               AND (ss.status <> 'started' \
                    OR NOT EXISTS (SELECT 1 FROM quantum_flow.runs r \
                                   WHERE r.run_id = $1 AND r.status IN ('started', 'paused'))) \
             RETURNING 1",
            &[run_id.into(), step_slug.as_str().into()],
        )?;
    }
    Ok(done)
}

/// What `continue_fan_out` did.
#[derive(Debug, Default, Clone, Copy)]
pub struct FanOut {
    /// Tasks created (one chunk of one step).
    pub created: i32,
    /// Steps of ended runs whose `fan_out_next` was cleared.
    pub cleared: usize,
}

impl FanOut {
    /// Whether it wrote anything (and so holds a step's row until its transaction ends).
    pub fn wrote(&self) -> bool {
        self.created > 0 || self.cleared > 0
    }
}

/// Creates tasks `from..` of a started map step (`engine::fan_out_chunk_size` of them, none past
/// `total`), each with its element of `array` (the step's source, detoasted) and a message,
/// and moves the step's `fan_out_next` past them (NULL once every task exists). The first
/// chunk (`start_map_step`) and every later one (`continue_fan_out`) are made here. Each
/// element is found by its position (`->`) in the array, passed as a parameter already
/// detoasted, instead of unnesting the whole array for every chunk.
///
/// The messages are inserted in task order, so their msg_ids (from the queue's identity
/// sequence) ascend in task order: the items in task order and the msg_ids in ascending
/// order, unnested side by side, pair each task with its message (positionally: no join,
/// whatever plan the statement gets). They become visible when the step's tasks do
/// (`start_delay` after the step started, not before the run's `start_at`), a time computed
/// once, before the first insert: a message another session sends meanwhile is newer than
/// all of them (fair polling relies on it, see `read_messages`).
fn chunk(
    queue: &str,
    run_id: Uuid,
    step_slug: &str,
    from: i32,
    total: i32,
    array: Jsonb,
) -> QfResult<i32> {
    let size = crate::engine::fan_out_chunk_size(from, FAN_OUT_CHUNK.get());
    let to = from.saturating_add(size).min(total);
    query_prepared(
        &format!(
            "WITH visible AS MATERIALIZED ( \
               SELECT greatest(clock_timestamp(), \
                               greatest(ss.started_at, coalesce(r.start_at, ss.started_at)) \
                                 + make_interval(secs => coalesce(ws.start_delay, 0))) AS vt \
               FROM quantum_flow.step_states ss \
               JOIN quantum_flow.runs r ON r.run_id = ss.run_id \
               JOIN quantum_flow.workflow_steps ws ON ws.workflow_slug = ss.workflow_slug AND ws.step_slug = ss.step_slug \
               WHERE ss.run_id = $1 AND ss.step_slug = $2), \
             items AS MATERIALIZED ( \
               SELECT g.i AS task_index, $3::jsonb -> g.i AS item \
               FROM generate_series($4::int, $5::int - 1) AS g(i)), \
             sent AS MATERIALIZED ( \
               INSERT INTO {table} (vt, message) \
               SELECT (SELECT vt FROM visible), \
                      jsonb_build_object('run_id', $1::uuid, 'step_slug', $2::text, 'task_index', i.task_index) \
               FROM items i ORDER BY i.task_index \
               RETURNING msg_id), \
             tasks AS ( \
               INSERT INTO quantum_flow.step_tasks (run_id, step_slug, task_index, item, message_id) \
               SELECT $1, $2, $4 + (z.ord - 1)::int, z.item, z.msg_id \
               FROM unnest(ARRAY(SELECT i.item FROM items i ORDER BY i.task_index), \
                           ARRAY(SELECT s.msg_id FROM sent s ORDER BY s.msg_id)) \
                    WITH ORDINALITY AS z(item, msg_id, ord)) \
             UPDATE quantum_flow.step_states SET fan_out_next = CASE WHEN $5 < tasks_total THEN $5 END \
             WHERE run_id = $1 AND step_slug = $2 \
             RETURNING 1",
            table = queue_table(queue)
        ),
        &[
            run_id.into(),
            step_slug.into(),
            array.into(),
            from.into(),
            to.into(),
        ],
        |_| Ok(()),
    )?;
    Ok(to - from)
}

/// Whether a value of `bytes` bytes (as the size estimates above give them) fits in a jsonb.
pub fn fits_in_jsonb(bytes: i64) -> bool {
    bytes <= JSONB_MAX_BYTES
}

/// What a poll (or `maintain`) found behind one message it read.
#[derive(Debug)]
pub enum Polled {
    /// Claimed for this poller: hand it to the worker.
    Claimed {
        task: ClaimedTask,
        message_id: i64,
        timeout: i32,
    },
    /// A started task whose claim timed out with attempts left (`maintain` only; a poll
    /// claims such a task as its next attempt).
    TimedOut(TaskKey),
    /// A started task whose claim timed out with no attempts left: fail it.
    Exhausted(Exhausted),
    /// A message with no live task behind it (its run ended, or it is not ours): archive it.
    Stale { message_id: i64 },
    /// A task of a paused run: park its message until `resume_run`.
    Parked { message_id: i64 },
    /// A due timer: act on it.
    Timer(Timer),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TaskKey {
    pub run_id: Uuid,
    pub step_slug: String,
    pub task_index: i32,
}

#[derive(Debug)]
pub struct Exhausted {
    pub task: TaskKey,
    pub attempts: i32,
    pub timeout: i32,
    pub message_id: i64,
}

/// A timer message: a run's deadline (`step_slug` None) or an event step's timeout.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer {
    pub run_id: Uuid,
    pub step_slug: Option<String>,
    pub message_id: i64,
}

#[derive(Debug)]
pub struct ClaimedTask {
    pub run_id: Uuid,
    pub step_slug: String,
    pub task_index: i32,
    pub attempt: i32,
    pub input: Jsonb,
}

/// The task key read from a message body, as text, parsed in Rust (so that a foreign message
/// cannot make a cast fail): message id, run id, step slug, task index, timer.
type MessageRow = (
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Splits read messages into the keys of the tasks they name, timers, and malformed ones.
struct MessageKeys {
    ids: Vec<i64>,
    run_ids: Vec<Uuid>,
    steps: Vec<String>,
    indexes: Vec<i32>,
    /// Timers and malformed messages (`Polled::Timer`, `Polled::Stale`).
    other: Vec<Polled>,
}

impl MessageKeys {
    fn parse(rows: Vec<MessageRow>) -> Self {
        let mut keys = MessageKeys {
            ids: Vec::with_capacity(rows.len()),
            run_ids: Vec::with_capacity(rows.len()),
            steps: Vec::with_capacity(rows.len()),
            indexes: Vec::with_capacity(rows.len()),
            other: Vec::new(),
        };
        for (message_id, run_id, step_slug, task_index, timer) in rows {
            let run_id = run_id.as_deref().and_then(parse_uuid).map(Uuid::from_bytes);
            let task_index = task_index.as_deref().and_then(parse_task_index);
            match (timer.as_deref(), run_id, step_slug, task_index) {
                (Some("run_timeout"), Some(run_id), None, None) => {
                    keys.other.push(Polled::Timer(Timer {
                        run_id,
                        step_slug: None,
                        message_id,
                    }))
                }
                (Some("event_timeout"), Some(run_id), Some(step_slug), Some(0)) => {
                    keys.other.push(Polled::Timer(Timer {
                        run_id,
                        step_slug: Some(step_slug),
                        message_id,
                    }))
                }
                (None, Some(run_id), Some(step_slug), Some(task_index)) => {
                    keys.ids.push(message_id);
                    keys.run_ids.push(run_id);
                    keys.steps.push(step_slug);
                    keys.indexes.push(task_index);
                }
                _ => keys.other.push(Polled::Stale { message_id }),
            }
        }
        keys
    }
}

fn message_row(r: &pgrx::spi::SpiHeapTupleData<'_>) -> QfResult<MessageRow> {
    Ok((req(r, 1)?, col(r, 2)?, col(r, 3)?, col(r, 4)?, col(r, 5)?))
}

/// Maps the rows of the claim and sweep statements: `kind, message_id, run_id, step_slug,
/// task_index, attempts, timeout, input`.
fn polled_row(r: &pgrx::spi::SpiHeapTupleData<'_>) -> QfResult<Polled> {
    let kind: String = req(r, 1)?;
    let message_id: i64 = req(r, 2)?;
    match kind.as_str() {
        "stale" => return Ok(Polled::Stale { message_id }),
        "parked" => return Ok(Polled::Parked { message_id }),
        _ => {}
    }
    let task = TaskKey {
        run_id: req(r, 3)?,
        step_slug: req(r, 4)?,
        task_index: req(r, 5)?,
    };
    Ok(match kind.as_str() {
        "claimed" => Polled::Claimed {
            task: ClaimedTask {
                run_id: task.run_id,
                step_slug: task.step_slug,
                task_index: task.task_index,
                attempt: req(r, 6)?,
                input: req(r, 8)?,
            },
            message_id,
            timeout: req(r, 7)?,
        },
        "timed_out" => Polled::TimedOut(task),
        _ => Polled::Exhausted(Exhausted {
            task,
            attempts: req(r, 6)?,
            timeout: req(r, 7)?,
            message_id,
        }),
    })
}

thread_local! {
    /// Polls of fewer than 4 tasks this backend made: every 4th reads from the tail.
    static SMALL_POLLS: Cell<u32> = const { Cell::new(0) };
}

/// How many of the newest messages a poll of `qty` looks at for other runs' tasks.
fn tail_window(qty: i32) -> i32 {
    qty.saturating_mul(2).saturating_add(16)
}

/// SQL for the ids of the messages of the queue's `table`, among the `limit` (a parameter,
/// `$n`) that became visible last (by `vt`, on pgmq's index of it), that belong to a run
/// other than `other_run` (a text expression): "other runs' messages among the newest" of fair
/// polling (`read_messages`) and of `continue_fan_out`'s check. `guard` is prepended to the
/// condition (`"$3 > 0 AND "`, or empty).
///
/// The run is read in the same index scan that finds the messages (it fetches each from the
/// heap anyway), so that a queue holding one run's tasks costs that scan and nothing more,
/// instead of a lookup by `msg_id` per message (0.45 ms per poll of 50).
///
/// The bound is `(SELECT clock_timestamp())`, computed once per execution, so that it is an
/// index condition: the backward scan starts at the current time. With `clock_timestamp()`
/// itself (volatile, so only a filter) it would first step over every hidden message (claims
/// in flight, retries waiting out a backoff, a paused run's parked tasks at `infinity`),
/// fetching each from the heap: 1.5 ms per poll with 10,000 of them, against 0.06 ms.
fn newest_visible(table: &str, limit: &str, guard: &str, other_run: &str) -> String {
    format!(
        "ARRAY(SELECT n.msg_id FROM ( \
                 SELECT n.msg_id, n.message ->> 'run_id' AS run FROM {table} n \
                 WHERE {guard}n.vt <= (SELECT clock_timestamp()) \
                 ORDER BY n.vt DESC LIMIT {limit}) n \
               WHERE n.run IS DISTINCT FROM {other_run})"
    )
}

/// How many of a poll's `qty` messages come from the newest end of the queue (see
/// `read_messages`): a quarter, and for polls of 1 to 3 tasks one in every fourth poll.
fn tail_share(qty: i32, fair: bool) -> i32 {
    if !fair {
        return 0;
    }
    if qty >= 4 {
        return qty / 4;
    }
    let n = SMALL_POLLS.get().wrapping_add(1);
    SMALL_POLLS.set(n);
    i32::from(n.is_multiple_of(4))
}

/// Reads up to `qty` visible messages and hides them for `vt` seconds (what `pgmq.read`
/// does, on the queue's table directly, prepared once per backend).
///
/// Fairness: most messages come oldest first, as from `pgmq.read`; a share (`tail_share`)
/// comes from the newest messages (the `2 * qty + 16` visible ones that became visible last:
/// by `vt`, on pgmq's index of it), newest first, skipping the run of the oldest visible
/// message. By `vt` rather than `msg_id`, so that a message sent while a big map's chunk
/// was being created (its `msg_id` among the chunk's, its `vt` after theirs: see
/// `continue_fan_out`) still counts as newer than the chunk. So a run started behind another run's 100,000-task map
/// gets its tasks claimed within a few polls instead of after the map drains, while a queue
/// that holds one run's tasks is read strictly oldest first.
fn read_messages(queue: &str, vt: i32, qty: i32, fair: bool) -> QfResult<Vec<MessageRow>> {
    let table = queue_table(queue);
    let sql = format!(
        "WITH oldest AS ( \
           SELECT q.message ->> 'run_id' AS run FROM {table} q \
           WHERE q.vt <= clock_timestamp() AND $3 > 0 ORDER BY q.msg_id LIMIT 1), \
         tail AS ( \
           SELECT q.msg_id FROM {table} q \
           WHERE q.msg_id = ANY({newest}) \
             AND q.vt <= clock_timestamp() \
             AND q.message ->> 'run_id' IS DISTINCT FROM (SELECT run FROM oldest) \
           ORDER BY q.vt DESC, q.msg_id DESC LIMIT $3 FOR UPDATE SKIP LOCKED), \
         head AS ( \
           SELECT q.msg_id FROM {table} q \
           WHERE q.vt <= clock_timestamp() AND q.msg_id <> ALL(ARRAY(SELECT msg_id FROM tail)) \
           ORDER BY q.msg_id LIMIT $2 - (SELECT count(*) FROM tail) FOR UPDATE SKIP LOCKED) \
         UPDATE {table} m \
         SET last_read_at = clock_timestamp(), vt = clock_timestamp() + make_interval(secs => $1), \
             read_ct = m.read_ct + 1 \
         WHERE m.msg_id = ANY(ARRAY(SELECT msg_id FROM head UNION ALL SELECT msg_id FROM tail)) \
         RETURNING m.msg_id, m.message->>'run_id', m.message->>'step_slug', m.message->>'task_index', \
                   m.message->>'timer'",
        newest = newest_visible(&table, "$4", "$3 > 0 AND ", "(SELECT run FROM oldest)")
    );
    let tail = tail_share(qty, fair);
    query_prepared(
        &sql,
        &[vt.into(), qty.into(), tail.into(), tail_window(qty).into()],
        message_row,
    )
}

/// One round of polling: read up to `qty` visible messages (hiding them for `vt` seconds),
/// hand the timers and malformed messages among them to `before_claim`, then lock their
/// tasks (skipping tasks another transaction is completing or failing right now: their
/// messages stay hidden and resurface after `vt` if that transaction aborts, unless the
/// round claims and writes nothing and a waiting poll rolls it back), claim
/// the claimable ones and assemble their input, and report the others (timers, tasks of
/// paused runs, claims whose attempts are exhausted, stale messages).
///
/// The read and the claim are two statements on purpose: the read takes its own, newer
/// snapshot, so a message it returns may belong to a task committed after an enclosing
/// statement's snapshot. The claim statement starts after the read, so it sees the task
/// behind every message read.
///
/// A message visible while its task is `started` means the claim outlived the step's timeout:
/// that claim counts as an attempt, and the task is handed over if attempts remain. Attempts
/// count from `attempts_base` (where `retry_run` restarted the task).
pub fn read_and_claim(
    queue: &str,
    workflow_slug: &str,
    vt: i32,
    qty: i32,
    worker_id: Option<&str>,
    fair: bool,
    mut before_claim: impl FnMut(Vec<Polled>) -> QfResult<()>,
) -> QfResult<Vec<Polled>> {
    let mut keys = MessageKeys::parse(read_messages(queue, vt, qty, fair)?);
    // Timers and malformed messages first: a due run timer fails its run before the claim
    // below could hand out one of its tasks.
    before_claim(std::mem::take(&mut keys.other))?;
    let mut polled = Vec::new();
    if keys.ids.is_empty() {
        return Ok(polled);
    }
    // Each claimed row carries what its input needs through the UPDATE's RETURNING, so that
    // no step joins two sets of the batch's rows: the statement costs O(batch). The run, the
    // workflow and the step are read once per (run, step) of the batch (`ctx`), not once per
    // task: about 80 us less for 50 tasks of one run, with the same rows.
    let claimed = query(
        "WITH msg AS ( \
           SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::int[]) \
                         AS m(msg_id, run_id, step_slug, task_index)), \
         task AS MATERIALIZED ( \
           SELECT t.run_id, t.step_slug, t.task_index, t.status, t.attempts_count, t.attempts_base, t.message_id \
           FROM msg \
           JOIN quantum_flow.step_tasks t ON t.run_id = msg.run_id AND t.step_slug = msg.step_slug \
                                         AND t.task_index = msg.task_index AND t.message_id = msg.msg_id \
           FOR UPDATE OF t SKIP LOCKED), \
         ctx AS MATERIALIZED ( \
           SELECT k.run_id, k.step_slug, r.workflow_slug, r.status AS run_status, ws.step_type, \
                  CASE WHEN ws.step_type = 'map' AND ws.deps_count = 0 THEN NULL ELSE r.input END AS run_input, \
                  coalesce(ws.max_attempts, w.max_attempts) AS max_attempts, \
                  coalesce(ws.timeout, w.timeout) AS timeout \
           FROM (SELECT DISTINCT run_id, step_slug FROM task) k \
           JOIN quantum_flow.runs r ON r.run_id = k.run_id \
           JOIN quantum_flow.workflows w ON w.workflow_slug = r.workflow_slug \
           JOIN quantum_flow.workflow_steps ws ON ws.workflow_slug = r.workflow_slug \
                                              AND ws.step_slug = k.step_slug), \
         info AS MATERIALIZED ( \
           SELECT task.*, c.workflow_slug, c.run_status, c.step_type, c.run_input, c.max_attempts, c.timeout, \
                  c.workflow_slug = $5 AND c.run_status = 'started' AND (task.status = 'queued' OR \
                    (task.status = 'started' AND task.attempts_count - task.attempts_base < c.max_attempts)) \
                    AS claimable \
           FROM task JOIN ctx c ON c.run_id = task.run_id AND c.step_slug = task.step_slug), \
         claimed AS ( \
           UPDATE quantum_flow.step_tasks t \
           SET status = 'started', attempts_count = t.attempts_count + 1, started_at = clock_timestamp(), \
               worker_id = $6, \
               error_message = CASE WHEN i.status = 'started' \
                                    THEN format('attempt %s timed out after %ss', i.attempts_count, i.timeout) \
                                    ELSE t.error_message END, \
               last_error_at = CASE WHEN i.status = 'started' THEN clock_timestamp() ELSE t.last_error_at END \
           FROM info i \
           WHERE i.claimable AND t.run_id = i.run_id AND t.step_slug = i.step_slug AND t.task_index = i.task_index \
           RETURNING t.message_id, t.run_id, t.step_slug, t.task_index, t.attempts_count, i.timeout, \
             CASE WHEN i.step_type = 'map' AND i.run_input IS NULL \
                  THEN jsonb_build_object('item', t.item, 'index', t.task_index) \
                  WHEN i.step_type = 'map' \
                  THEN jsonb_build_object('item', t.item, 'index', t.task_index, 'run', i.run_input) \
                  ELSE jsonb_build_object('run', i.run_input) || coalesce(( \
                         SELECT jsonb_object_agg(d.dep_slug, ds.output) \
                         FROM quantum_flow.workflow_step_dependencies_def d \
                         JOIN quantum_flow.step_states ds ON ds.run_id = t.run_id AND ds.step_slug = d.dep_slug \
                         WHERE d.workflow_slug = $5 AND d.step_slug = t.step_slug \
                           AND ds.status = 'completed'), '{}'::jsonb) END AS input) \
         SELECT 'claimed', c.message_id, c.run_id, c.step_slug, c.task_index, c.attempts_count, c.timeout, c.input \
         FROM claimed c \
         UNION ALL \
         SELECT CASE WHEN i.workflow_slug <> $5 OR i.status NOT IN ('queued', 'started') THEN 'stale' \
                     WHEN i.run_status = 'paused' THEN 'parked' \
                     WHEN i.run_status = 'started' AND i.status = 'started' THEN 'exhausted' \
                     ELSE 'stale' END, \
                i.message_id, i.run_id, i.step_slug, i.task_index, i.attempts_count, i.timeout, NULL \
         FROM info i WHERE NOT i.claimable",
        &[
            keys.ids.clone().into(),
            keys.run_ids.clone().into(),
            keys.steps.clone().into(),
            keys.indexes.clone().into(),
            workflow_slug.into(),
            worker_id.into(),
        ],
        polled_row,
    )?;
    // Every task the statement locked gave one row; a message with none either has no task
    // (stale) or its task is locked by another transaction (skipped, its message stays
    // hidden). Telling them apart takes a statement of its own, run only then: as a branch of
    // the claim it made every poll's executor setup 13 us longer (62 us against 49 us for a
    // poll that claims nothing).
    if claimed.len() < keys.ids.len() {
        polled.extend(messages_without_task(&keys)?);
    }
    polled.extend(claimed);
    Ok(polled)
}

/// The messages among `keys` whose task does not exist (or no longer names the message).
/// Tasks and their messages are created in one transaction, so a task missing here is not
/// about to appear.
fn messages_without_task(keys: &MessageKeys) -> QfResult<Vec<Polled>> {
    query(
        "SELECT msg.msg_id \
         FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::int[]) \
              AS msg(msg_id, run_id, step_slug, task_index) \
         WHERE NOT EXISTS (SELECT 1 FROM quantum_flow.step_tasks t \
                           WHERE t.run_id = msg.run_id AND t.step_slug = msg.step_slug \
                             AND t.task_index = msg.task_index AND t.message_id = msg.msg_id)",
        &[
            keys.ids.clone().into(),
            keys.run_ids.clone().into(),
            keys.steps.clone().into(),
            keys.indexes.clone().into(),
        ],
        |r| {
            Ok(Polled::Stale {
                message_id: req(r, 1)?,
            })
        },
    )
}

/// `maintain`'s sweep of one queue: visible messages that have been read before (their claim
/// timed out, or they wait for a retry) and due timers, up to `limit`, oldest first, locked
/// without changing their visibility (skipping any a poller holds). Reports claims that timed
/// out (with or without attempts left), timers and stale messages; messages of queued tasks
/// are left alone, and so are tasks of paused runs (a poll parks them).
pub fn sweep_overdue(queue: &str, workflow_slug: &str, limit: i32) -> QfResult<Vec<Polled>> {
    let sql = format!(
        "SELECT m.msg_id, m.message->>'run_id', m.message->>'step_slug', m.message->>'task_index', \
                m.message->>'timer' \
         FROM {} m WHERE m.vt <= clock_timestamp() AND (m.read_ct > 0 OR m.message ? 'timer') \
         ORDER BY m.msg_id LIMIT $1 FOR UPDATE SKIP LOCKED",
        queue_table(queue)
    );
    let keys = MessageKeys::parse(query_prepared(&sql, &[limit.into()], message_row)?);
    let mut found = keys.other;
    if keys.ids.is_empty() {
        return Ok(found);
    }
    let classified = query(
        "WITH msg AS ( \
           SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::int[]) \
                         AS m(msg_id, run_id, step_slug, task_index)), \
         task AS MATERIALIZED ( \
           SELECT t.run_id, t.step_slug, t.task_index, t.status, t.attempts_count, t.attempts_base, t.message_id \
           FROM msg \
           JOIN quantum_flow.step_tasks t ON t.run_id = msg.run_id AND t.step_slug = msg.step_slug \
                                         AND t.task_index = msg.task_index AND t.message_id = msg.msg_id \
           FOR UPDATE OF t SKIP LOCKED) \
         SELECT CASE WHEN r.status NOT IN ('started', 'paused') OR r.workflow_slug <> $5 \
                       OR task.status NOT IN ('queued', 'started') THEN 'stale' \
                     WHEN task.attempts_count - task.attempts_base < coalesce(ws.max_attempts, w.max_attempts) \
                       THEN 'timed_out' \
                     ELSE 'exhausted' END, \
                task.message_id, task.run_id, task.step_slug, task.task_index, task.attempts_count, \
                coalesce(ws.timeout, w.timeout), NULL::jsonb \
         FROM task \
         JOIN quantum_flow.runs r ON r.run_id = task.run_id \
         JOIN quantum_flow.workflows w ON w.workflow_slug = r.workflow_slug \
         JOIN quantum_flow.workflow_steps ws ON ws.workflow_slug = r.workflow_slug \
                                            AND ws.step_slug = task.step_slug \
         WHERE task.status = 'started' OR r.status NOT IN ('started', 'paused') OR r.workflow_slug <> $5 \
            OR task.status NOT IN ('queued', 'started') \
         UNION ALL \
         SELECT 'stale', msg.msg_id, NULL, NULL, NULL, NULL, NULL, NULL FROM msg \
         WHERE (SELECT count(*) FROM task) < (SELECT count(*) FROM msg) \
           AND NOT EXISTS (SELECT 1 FROM quantum_flow.step_tasks t \
                           WHERE t.run_id = msg.run_id AND t.step_slug = msg.step_slug \
                             AND t.task_index = msg.task_index AND t.message_id = msg.msg_id)",
        &[
            keys.ids.into(),
            keys.run_ids.into(),
            keys.steps.into(),
            keys.indexes.into(),
            workflow_slug.into(),
        ],
        polled_row,
    )?;
    found.extend(classified);
    Ok(found)
}

/// Parks messages of paused runs that this transaction read (it holds their row locks): their
/// visibility becomes `infinity`, or now again when the run is no longer paused. The run's
/// status is read by this statement, after the claim that found them paused: a `resume_run`
/// that committed meanwhile is seen here, and one that commits later waits for our locks and
/// then unparks what we parked (see `unpark_run`).
pub fn park(queue: &str, message_ids: Vec<i64>) -> QfResult<()> {
    let sql = format!(
        "UPDATE {} m \
         SET vt = CASE WHEN EXISTS (SELECT 1 FROM quantum_flow.runs r \
                                    WHERE r.run_id::text = m.message->>'run_id' AND r.status = 'paused') \
                       THEN 'infinity'::timestamptz ELSE clock_timestamp() END \
         WHERE m.msg_id = ANY($1)",
        queue_table(queue)
    );
    query_prepared(&sql, &[message_ids.into()], |_| Ok(()))?;
    Ok(())
}

/// `pause_run`'s part: parks the run's visible messages that no other transaction holds
/// (a poll holding one parks it itself, or claims it if it saw the run started). Returns how
/// many it parked. Like `discard_run_messages`, it goes from the run's tasks to each message
/// by key (LATERAL), never from the queue to the tasks.
pub fn park_run(queue: &str, run_id: Uuid) -> QfResult<usize> {
    let sql = format!(
        "WITH ids AS ( \
           SELECT t.message_id AS msg_id FROM quantum_flow.step_tasks t \
           JOIN quantum_flow.step_states ss ON ss.run_id = t.run_id AND ss.step_slug = t.step_slug \
           JOIN quantum_flow.workflow_steps ws ON ws.workflow_slug = ss.workflow_slug \
                                              AND ws.step_slug = ss.step_slug \
           WHERE t.run_id = $1 AND t.status IN ('queued', 'started') \
             AND ws.step_type <> 'event' AND t.message_id IS NOT NULL), \
         visible AS ( \
           SELECT l.msg_id FROM ids \
           CROSS JOIN LATERAL ( \
             SELECT q.msg_id FROM {table} q \
             WHERE q.msg_id = ids.msg_id AND q.vt <= clock_timestamp() \
             FOR UPDATE SKIP LOCKED) l) \
         UPDATE {table} q SET vt = 'infinity' \
         WHERE q.msg_id = ANY (ARRAY(SELECT msg_id FROM visible)) RETURNING 1",
        table = queue_table(queue)
    );
    Ok(query_prepared(&sql, &[run_id.into()], |_| Ok(()))?.len())
}

/// `retry_run`'s part, before it lets go of a failed run's message ids: the archived messages
/// of its unfinished and failed tasks, and of its run timer, are deleted. Nothing refers to
/// them after the retry, and `prune_runs` finds a run's messages through those references.
pub fn drop_archived_run_messages(queue: &str, run_id: Uuid) -> QfResult<()> {
    let sql = format!(
        "DELETE FROM {} a WHERE a.msg_id = ANY (ARRAY( \
           SELECT t.message_id FROM quantum_flow.step_tasks t \
           WHERE t.run_id = $1 AND t.status IN ('queued', 'started', 'failed') \
             AND t.message_id IS NOT NULL \
           UNION ALL \
           SELECT r.timer_message_id FROM quantum_flow.runs r \
           WHERE r.run_id = $1 AND r.timer_message_id IS NOT NULL))",
        archive_table(queue)
    );
    query_prepared(&sql, &[run_id.into()], |_| Ok(()))?;
    Ok(())
}

/// `resume_run`'s part, before it marks the run started and once more after: every parked
/// message of the run's unfinished tasks becomes visible now, and so does every one whose
/// visibility time ran out while the run was paused (a backoff or a claim that no poll saw
/// end), so that `workflow_stats` ages a claimable task from the resume, not from before the
/// pause; messages still hidden keep their time. It locks all of the run's
/// messages, waiting for polls that hold one: a poll that parks a message after reading the
/// run as paused has done so by the time we get the lock, and the `CASE` is evaluated on the
/// row as that poll left it.
pub fn unpark_run(queue: &str, run_id: Uuid) -> QfResult<usize> {
    let sql = format!(
        "UPDATE {} q \
         SET vt = CASE WHEN q.vt = 'infinity' OR q.vt < clock_timestamp() THEN clock_timestamp() ELSE q.vt END \
         WHERE q.msg_id = ANY (ARRAY(SELECT t.message_id FROM quantum_flow.step_tasks t \
                                     WHERE t.run_id = $1 AND t.status IN ('queued', 'started') \
                                       AND t.message_id IS NOT NULL)) \
         RETURNING q.vt",
        queue_table(queue)
    );
    Ok(query_prepared(&sql, &[run_id.into()], |_| Ok(()))?.len())
}

/// One answer of a `complete_tasks` batch, all of whose runs belong to one workflow.
pub struct Answer {
    /// Its position in the call's arrays.
    pub ord: usize,
    pub run_id: Uuid,
    pub step_slug: String,
    pub task_index: i32,
    pub output: Jsonb,
    pub attempt: Option<i32>,
}

/// A task a batch completed.
pub struct Done {
    pub ord: usize,
    pub run_id: Uuid,
    pub step_slug: String,
    pub is_map: bool,
    /// The run's concurrency key value.
    pub key_value: Option<String>,
    /// For a single step's task completed alone (`complete_task`, or a batch of one): its
    /// step is counted already, and this says whether the task finished it (`None`: a map
    /// task, or a task of a larger batch, whose step is still to be counted).
    pub step_finished: Option<bool>,
}

/// What `complete_batch` reports: each task it completed, and each map counter shard whose
/// last task it completed (with the shard's task count, to add to the step's).
pub enum Completed {
    Task(Done),
    ShardFull {
        run_id: Uuid,
        step_slug: String,
        tasks: i32,
    },
}

/// Completes a batch of answers for tasks of `workflow_slug`'s runs in one statement: marks
/// each started task completed with its output (when `attempt` is given, only if it is the
/// task's current attempt, and only for a run that is started or paused), deletes its
/// message, and counts map tasks on their counter shards. Tasks of sub-flow steps are
/// completed by their child runs, not here. When a task appears more than once, its first
/// answer that names its current attempt (or no attempt) counts, as successive
/// `complete_task` calls would.
///
/// Deadlock-free against concurrent overlapping batches: the tasks are locked in key order,
/// then the shards in key order (a poll never waits for a task lock: it skips locked ones).
/// The messages are deleted in `msg_id` order (an index scan sorts the array), the order in
/// which `unpark_run` locks a run's messages: in task order, a batch holding one message of a
/// paused run and waiting for another could deadlock with a `resume_run` holding the other.
/// Each shard is locked by a LATERAL lookup by key, so the plan is a nested loop over the
/// sorted counts with index probes whatever the row estimates (with a generic plan the
/// batch's size is unknown, and PostgreSQL 18 otherwise hashes the whole shard table).
/// The message table is the workflow's queue, named in the statement (one prepared statement
/// per queue).
pub fn complete_batch(workflow_slug: &str, answers: &[Answer]) -> QfResult<Vec<Completed>> {
    if let [one] = answers {
        return complete_one(workflow_slug, one);
    }
    let table = queue_table(&crate::engine::slug::queue_name(workflow_slug));
    let sql = format!(
        "WITH k AS ( \
           SELECT DISTINCT ON (a.run_id, a.step_slug, a.task_index) a.* \
           FROM unnest($1::int[], $2::uuid[], $3::text[], $4::int[], $6::int[]) \
                AS a(ord, run_id, step_slug, task_index, attempt) \
           JOIN quantum_flow.step_tasks t ON t.run_id = a.run_id AND t.step_slug = a.step_slug \
                                         AND t.task_index = a.task_index \
           WHERE a.attempt IS NULL OR t.attempts_count = a.attempt \
           ORDER BY a.run_id, a.step_slug, a.task_index, a.ord), \
         locked AS MATERIALIZED ( \
           SELECT t.run_id, t.step_slug, t.task_index, t.message_id, k.ord, \
                  ws.step_type = 'map' AS is_map, r.concurrency_value \
           FROM k \
           JOIN quantum_flow.step_tasks t ON t.run_id = k.run_id AND t.step_slug = k.step_slug \
                                         AND t.task_index = k.task_index \
           JOIN quantum_flow.runs r ON r.run_id = t.run_id \
           JOIN quantum_flow.workflow_steps ws ON ws.workflow_slug = r.workflow_slug AND ws.step_slug = t.step_slug \
           WHERE t.status = 'started' AND (k.attempt IS NULL OR t.attempts_count = k.attempt) \
             AND r.status IN ('started', 'paused') AND r.workflow_slug = $7 AND ws.flow IS NULL \
           ORDER BY t.run_id, t.step_slug, t.task_index \
           FOR UPDATE OF t), \
         done AS ( \
           UPDATE quantum_flow.step_tasks t \
           SET status = 'completed', output = ($5::jsonb[])[l.ord + 1], completed_at = clock_timestamp() \
           FROM locked l \
           WHERE t.run_id = l.run_id AND t.step_slug = l.step_slug AND t.task_index = l.task_index \
           RETURNING l.ord, t.run_id, t.step_slug, t.task_index, l.message_id, l.is_map, l.concurrency_value), \
         gone AS ( \
           DELETE FROM {table} q WHERE q.msg_id = ANY (ARRAY(SELECT d.message_id FROM done d))), \
         counts AS ( \
           SELECT d.run_id, d.step_slug, (d.task_index / 4) % $8 AS shard, count(*)::int AS n \
           FROM done d WHERE d.is_map GROUP BY 1, 2, 3), \
         shards_locked AS MATERIALIZED ( \
           SELECT s.run_id, s.step_slug, s.shard, c.n \
           FROM (SELECT * FROM counts ORDER BY run_id, step_slug, shard) c \
           CROSS JOIN LATERAL ( \
             SELECT s.run_id, s.step_slug, s.shard FROM quantum_flow.step_task_shards s \
             WHERE s.run_id = c.run_id AND s.step_slug = c.step_slug AND s.shard = c.shard \
             FOR UPDATE) s), \
         shards AS ( \
           UPDATE quantum_flow.step_task_shards s SET tasks_completed = s.tasks_completed + l.n \
           FROM shards_locked l \
           WHERE s.run_id = l.run_id AND s.step_slug = l.step_slug AND s.shard = l.shard \
           RETURNING s.run_id, s.step_slug, s.shard, \
                     CASE WHEN s.tasks_completed = s.tasks_total THEN s.tasks_total END AS full) \
         SELECT d.ord, d.run_id, d.step_slug, d.is_map, NULL::int, d.concurrency_value FROM done d \
         UNION ALL \
         SELECT NULL, sh.run_id, sh.step_slug, true, sh.full, NULL FROM shards sh WHERE sh.full IS NOT NULL"
    );
    // `ord` is the answer's position in this batch (outputs are not carried through the
    // statement's sorts: the UPDATE takes each from the array by position).
    let ords: Vec<i32> = (0..answers.len() as i32).collect();
    let run_ids: Vec<Uuid> = answers.iter().map(|a| a.run_id).collect();
    let steps: Vec<String> = answers.iter().map(|a| a.step_slug.clone()).collect();
    let indexes: Vec<i32> = answers.iter().map(|a| a.task_index).collect();
    let outputs: Vec<Jsonb> = answers.iter().map(|a| a.output).collect();
    let attempts: Vec<Option<i32>> = answers.iter().map(|a| a.attempt).collect();
    query_prepared(
        &sql,
        &[
            ords.into(),
            run_ids.into(),
            steps.into(),
            indexes.into(),
            outputs.into(),
            attempts.into(),
            workflow_slug.into(),
            COUNTER_SHARDS.into(),
        ],
        |r| {
            let ord: Option<i32> = col(r, 1)?;
            let run_id: Uuid = req(r, 2)?;
            let step_slug: String = req(r, 3)?;
            Ok(match ord {
                Some(ord) => Completed::Task(Done {
                    ord: answers[ord as usize].ord,
                    run_id,
                    step_slug,
                    is_map: req(r, 4)?,
                    key_value: col(r, 6)?,
                    step_finished: None,
                }),
                None => Completed::ShardFull {
                    run_id,
                    step_slug,
                    tasks: req(r, 5)?,
                },
            })
        },
    )
}

/// `complete_batch` for a batch of one answer (every `complete_task` call): the same effects
/// in a statement whose keys are all parameters, so each row is found by its primary key with
/// no sort, aggregate or join over the batch. Its executor setup is a third of the batch
/// statement's, which is most of what the single-task path spends besides its commit. One
/// row lock is taken on the task, then one on its shard: the batch statement's order.
///
/// The run is looked up by its key alone (`workflow_slug || ''` keeps the planner off the
/// runs' workflow index, which a generic plan made while the table was small may prefer).
///
/// Unlike the batch statement, it reads no `workflow_steps` row (that lookup was 9 of the
/// statement's 41 us for a map task): a started task with a `child_run_id` is a sub-flow's,
/// which only its child run completes (only sub-flow steps set that column, on every start
/// of such a task), and the task is a map task exactly when its counter shard exists (every
/// map step's shards are created when it starts; other steps have none).
///
/// A single step's task is also counted on its step here, as `count_completed_tasks_of_steps`
/// counts it (when it is the step's last, the step is completed with the task's output): one
/// statement fewer on every hand-off. Only task 0 can be a single step's, so the statement
/// for any other task leaves that part out. Rows are locked in this order: the task, then its shard
/// or its step, then its message (`gone` is read by nothing, so its delete runs when the
/// statement ends). The message coming after the task is the one exception to `executor`'s
/// lock order, as it was before the step count moved here. It does not deadlock: a path that
/// holds a message lock either takes the task's with SKIP LOCKED (a poll's read,
/// `sweep_overdue`) or, like `unpark_run`, goes on to lock only the run, which this
/// statement does not hold. (A transaction of several calls can: it may hold a message of a
/// paused run that `resume_run` waits for while it waits for another, see docs/limits.md.)
fn complete_one(workflow_slug: &str, a: &Answer) -> QfResult<Vec<Completed>> {
    let table = queue_table(&crate::engine::slug::queue_name(workflow_slug));
    // A single step has one task, task 0: any other index is a map task's, whose statement
    // leaves the step's count out (its setup was 6 of the statement's 37 us).
    let (step, finished) = if a.task_index == 0 {
        (
            ", \
             step AS ( \
               UPDATE quantum_flow.step_states ss SET tasks_completed = ss.tasks_completed + 1, \
                 status = CASE WHEN ss.tasks_completed + 1 = ss.tasks_total THEN 'completed' ELSE ss.status END, \
                 completed_at = CASE WHEN ss.tasks_completed + 1 = ss.tasks_total THEN clock_timestamp() ELSE ss.completed_at END, \
                 output = CASE WHEN ss.tasks_completed + 1 = ss.tasks_total THEN $5 ELSE ss.output END \
               WHERE ss.run_id = $1 AND ss.step_slug = $2 \
                 AND EXISTS (SELECT FROM done) AND NOT EXISTS (SELECT FROM shard) \
               RETURNING ss.tasks_completed = ss.tasks_total AS finished)",
            "(SELECT st.finished FROM step st)",
        )
    } else {
        ("", "NULL::bool")
    };
    let sql = format!(
        "WITH run AS MATERIALIZED ( \
           SELECT r.concurrency_value FROM quantum_flow.runs r \
           WHERE r.run_id = $1 AND r.status IN ('started', 'paused') AND r.workflow_slug || '' = $6), \
         done AS ( \
           UPDATE quantum_flow.step_tasks t \
           SET status = 'completed', output = $5, completed_at = clock_timestamp() \
           FROM run \
           WHERE t.run_id = $1 AND t.step_slug = $2 AND t.task_index = $3 \
             AND t.status = 'started' AND t.child_run_id IS NULL \
             AND ($4::int IS NULL OR t.attempts_count = $4) \
           RETURNING t.message_id, run.concurrency_value), \
         gone AS ( \
           DELETE FROM {table} q WHERE q.msg_id = (SELECT d.message_id FROM done d)), \
         shard AS ( \
           UPDATE quantum_flow.step_task_shards s SET tasks_completed = s.tasks_completed + 1 \
           WHERE s.run_id = $1 AND s.step_slug = $2 AND s.shard = ($3 / 4) % $7 \
             AND EXISTS (SELECT FROM done) \
           RETURNING CASE WHEN s.tasks_completed = s.tasks_total THEN s.tasks_total END AS full){step} \
         SELECT EXISTS (SELECT FROM shard), d.concurrency_value, (SELECT sh.full FROM shard sh), {finished} \
         FROM done d"
    );
    let rows = query_prepared(
        &sql,
        &[
            a.run_id.into(),
            a.step_slug.as_str().into(),
            a.task_index.into(),
            a.attempt.into(),
            a.output.into(),
            workflow_slug.into(),
            COUNTER_SHARDS.into(),
        ],
        |r| {
            let is_map: bool = req(r, 1)?;
            let key_value: Option<String> = col(r, 2)?;
            let full: Option<i32> = col(r, 3)?;
            let step_finished: Option<bool> = col(r, 4)?;
            Ok((is_map, key_value, full, step_finished))
        },
    )?;
    let mut out = Vec::with_capacity(2);
    for (is_map, key_value, full, step_finished) in rows {
        if !is_map && step_finished.is_none() {
            return Err(QfError::Internal(format!(
                "task {} of step {:?} of run {} found neither its counter shard nor its step's \
                 state row",
                a.task_index, a.step_slug, a.run_id
            )));
        }
        out.push(Completed::Task(Done {
            ord: a.ord,
            run_id: a.run_id,
            step_slug: a.step_slug.clone(),
            is_map,
            key_value,
            step_finished,
        }));
        if let Some(tasks) = full {
            out.push(Completed::ShardFull {
                run_id: a.run_id,
                step_slug: a.step_slug.clone(),
                tasks,
            });
        }
    }
    Ok(out)
}

/// Hides a message for `delay` seconds (a retry's backoff).
pub fn delay_message(queue: &str, message_id: i64, delay: i32) -> QfResult<()> {
    execute(
        "SELECT 1 FROM pgmq.set_vt($1, $2, $3)",
        &[queue.into(), message_id.into(), delay.into()],
    )?;
    Ok(())
}

/// Sets the visibility timeout of claimed messages whose step timeout differs from the one
/// they were read with.
pub fn set_timeout(queue: &str, message_ids: Vec<i64>, timeout: i32) -> QfResult<()> {
    execute(
        "SELECT 1 FROM pgmq.set_vt($1, $2::bigint[], $3)",
        &[queue.into(), message_ids.into(), timeout.into()],
    )?;
    Ok(())
}

/// Moves messages to the queue's archive (kept there for inspection).
pub fn archive(queue: &str, message_ids: Vec<i64>) -> QfResult<()> {
    execute(
        "SELECT pgmq.archive($1, $2::bigint[])",
        &[queue.into(), message_ids.into()],
    )?;
    Ok(())
}

/// Archives the messages of a failed run's unfinished tasks. Messages locked by another
/// transaction are skipped, not waited for (we hold the run's lock, and the lock order puts
/// messages first); each is cleaned up by whoever holds it: the late answer of the worker that
/// claimed it (`archive_task_message`), or the next poll or `maintain` that finds it stale.
pub fn discard_run_messages(queue: &str, run_id: Uuid) -> QfResult<usize> {
    // pgmq offers no "archive unless locked", so lock what we can in the queue table first.
    // The table name comes from a validated slug and is quoted.
    let table = queue_table(queue);
    // Driven from the run's tasks (by primary key) to each message (by primary key) through a
    // LATERAL lookup: a nested loop whatever the estimates. Written as `msg_id IN (...)`, a
    // generic plan could rescan the run's tasks for every queue row (minutes for a
    // 100,000-task run).
    let sql = format!(
        "WITH ids AS ( \
           SELECT t.message_id AS msg_id FROM quantum_flow.step_tasks t \
           WHERE t.run_id = $2 AND t.status IN ('queued', 'started') AND t.message_id IS NOT NULL \
           UNION ALL \
           SELECT r.timer_message_id FROM quantum_flow.runs r \
           WHERE r.run_id = $2 AND r.timer_message_id IS NOT NULL), \
         live AS ( \
           SELECT l.msg_id FROM ids \
           CROSS JOIN LATERAL ( \
             SELECT q.msg_id FROM {table} q WHERE q.msg_id = ids.msg_id \
             FOR UPDATE SKIP LOCKED) l) \
         SELECT count(*) FROM pgmq.archive($1, ARRAY(SELECT msg_id FROM live))"
    );
    let n = query_prepared(&sql, &[queue.into(), run_id.into()], |r| req::<i64>(r, 1))?;
    Ok(n.first().copied().unwrap_or(0) as usize)
}

/// Archives messages, skipping any another transaction holds (whoever holds one finds it
/// stale and archives it). For timers that were not needed: an event that arrived, a run
/// that ended before its deadline.
pub fn archive_unless_held(queue: &str, message_ids: Vec<i64>) -> QfResult<()> {
    let sql = format!(
        "WITH free AS ( \
           SELECT q.msg_id FROM {} q WHERE q.msg_id = ANY($2) FOR UPDATE OF q SKIP LOCKED) \
         SELECT count(*) FROM pgmq.archive($1, ARRAY(SELECT msg_id FROM free))",
        queue_table(queue)
    );
    query_prepared(&sql, &[queue.into(), message_ids.into()], |_| Ok(()))?;
    Ok(())
}

/// Archives the message of one unfinished task of an ended run, if it is still in the queue
/// (what a late answer for that task cleans up: O(1), whatever the size of the run).
pub fn archive_task_message(
    queue: &str,
    run_id: Uuid,
    step_slug: &str,
    task_index: i32,
) -> QfResult<()> {
    execute(
        "SELECT pgmq.archive($1, t.message_id) FROM quantum_flow.step_tasks t \
         WHERE t.run_id = $2 AND t.step_slug = $3 AND t.task_index = $4 \
           AND t.status IN ('queued', 'started')",
        &[
            queue.into(),
            run_id.into(),
            step_slug.into(),
            task_index.into(),
        ],
    )?;
    Ok(())
}

/// Deletes messages from the queue and from its archive (`prune_runs`: the runs they belong to
/// are being deleted). The queue first: a poll holding one of them may archive it meanwhile,
/// and the second statement then sees it in the archive.
pub fn delete_messages(queue: &str, message_ids: &[i64]) -> QfResult<()> {
    for table in [queue_table(queue), archive_table(queue)] {
        let sql = format!("DELETE FROM {table} WHERE msg_id = ANY($1)");
        query_dynamic(&sql, &[message_ids.to_vec().into()], |_| Ok(()))?;
    }
    Ok(())
}

/// Milliseconds until the queue's next hidden message becomes visible (None: no hidden
/// message; parked messages do not count). Messages already visible are not counted: one that is visible but was not read
/// is locked by another transaction (a claim or an answer in progress), and the poller waits
/// for that transaction's commit to wake it rather than spinning. The bound is an index
/// condition (see `newest_visible`), so the scan does not step over the visible messages.
pub fn next_visible_in_ms(queue: &str) -> QfResult<Option<i64>> {
    let table = queue_table(queue);
    let sql = format!(
        "SELECT ceil(extract(epoch FROM (min(vt) - clock_timestamp())) * 1000)::bigint FROM {table} \
         WHERE vt > (SELECT clock_timestamp()) AND vt < 'infinity'"
    );
    let v = query_prepared(&sql, &[], |r| col::<i64>(r, 1))?;
    Ok(v.into_iter().next().flatten())
}
