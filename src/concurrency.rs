//! Concurrency keys: at most `max_concurrency` tasks of runs with the same value of a
//! workflow's `concurrency_key` have a queue message (queued, claimed, or waiting for a retry)
//! at once, so at most that many are ever claimed.
//!
//! A keyed run's ready tasks do not get a message at once: they wait in `waiting_tasks`,
//! oldest first. `concurrency_slots.in_use` counts the key value's tasks that have one. A
//! call that ends such a task (completes it, fails it for good, ends its run) records a
//! release here; a call that adds waiting tasks records the key. At the end of the call,
//! `flush` takes each key's slot row lock (keys in order, after every other lock the call
//! took, so the engine's lock order holds), subtracts the releases and hands messages to as
//! many waiting tasks as there are free slots. Every transaction that adds waiting tasks or
//! frees slots runs that admission itself, under the slot's lock, so when it commits either
//! the key has no waiting task or all its slots are in use.

use crate::error::QfResult;
use crate::store::{execute, query_opt, req};
use crate::wakeup;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// A key value of a workflow: the slot's primary key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub workflow_slug: String,
    pub value: String,
}

thread_local! {
    /// Slots released per key during the current call (0: only tasks were added).
    static PENDING: RefCell<BTreeMap<Key, i32>> = const { RefCell::new(BTreeMap::new()) };
}

/// Forgets what an earlier call that failed recorded (its changes were rolled back).
pub fn begin() {
    PENDING.with(|p| p.borrow_mut().clear());
}

/// `n` tasks of this key value no longer hold a message.
pub fn released(workflow_slug: &str, value: &str, n: i32) {
    record(workflow_slug, value, n);
}

/// Tasks of this key value were added to `waiting_tasks`.
pub fn waiting(workflow_slug: &str, value: &str) {
    record(workflow_slug, value, 0);
}

fn record(workflow_slug: &str, value: &str, n: i32) {
    PENDING.with(|p| {
        *p.borrow_mut()
            .entry(Key {
                workflow_slug: workflow_slug.to_string(),
                value: value.to_string(),
            })
            .or_insert(0) += n;
    });
}

/// Applies what the call recorded: per key, in key order, frees the released slots and
/// admits waiting tasks into the free ones. Admission can record nothing new, so one pass
/// empties the list.
pub fn flush() -> QfResult<()> {
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    for (key, released) in pending {
        let Some(free) = free_slots(&key, released)? else {
            continue;
        };
        if free > 0 {
            let admitted = admit(&key, free)?;
            wakeup::notify_on_commit(&key.workflow_slug, u32::try_from(admitted).unwrap_or(0));
            if admitted == 0 {
                forget_if_idle(&key)?;
            }
        }
    }
    Ok(())
}

/// Locks the key's slot row (creating it), subtracts `released`, and returns how many slots
/// are free (None: the workflow has no concurrency limit any more). One upsert: a row that a
/// concurrent `forget_if_idle` deletes is created again, never missed.
fn free_slots(key: &Key, released: i32) -> QfResult<Option<i32>> {
    query_opt(
        "WITH slot AS ( \
           INSERT INTO quantum_flow.concurrency_slots AS s (workflow_slug, key_value) VALUES ($1, $2) \
           ON CONFLICT (workflow_slug, key_value) DO UPDATE SET in_use = greatest(s.in_use - $3, 0) \
           RETURNING s.in_use) \
         SELECT w.max_concurrency - slot.in_use FROM slot, quantum_flow.workflows w \
         WHERE w.workflow_slug = $1 AND w.max_concurrency IS NOT NULL",
        &[
            key.workflow_slug.as_str().into(),
            key.value.as_str().into(),
            released.into(),
        ],
        |r| req::<i32>(r, 1),
    )
}

/// Deletes the key's slot row (this transaction holds its lock) when no task of the key
/// value holds a slot or waits for one, so that a key with one value per run (an order id, a
/// document) does not leave a row behind per value. A transaction that queues a task of the
/// key value meanwhile waits for the lock and creates the row again (`free_slots`).
fn forget_if_idle(key: &Key) -> QfResult<()> {
    execute(
        "DELETE FROM quantum_flow.concurrency_slots s \
         WHERE s.workflow_slug = $1 AND s.key_value = $2 AND s.in_use = 0 \
           AND NOT EXISTS (SELECT 1 FROM quantum_flow.waiting_tasks w \
                           WHERE w.workflow_slug = $1 AND w.key_value = $2) \
         RETURNING 1",
        &[key.workflow_slug.as_str().into(), key.value.as_str().into()],
    )?;
    Ok(())
}

/// Gives up to `free` of the key's oldest waiting tasks their message (visible from their
/// `not_before`, or never while their run is paused: the poll that finds them parks them)
/// and counts them in the slot. Returns how many it admitted.
fn admit(key: &Key, free: i32) -> QfResult<i32> {
    Ok(query_opt(
        "WITH picked AS MATERIALIZED ( \
           SELECT w.run_id, w.step_slug, w.task_index, w.not_before, w.queued_at \
           FROM quantum_flow.waiting_tasks w \
           WHERE w.workflow_slug = $1 AND w.key_value = $2 \
           ORDER BY w.queued_at, w.run_id, w.step_slug, w.task_index \
           LIMIT $3 FOR UPDATE), \
         gone AS ( \
           DELETE FROM quantum_flow.waiting_tasks w USING picked p \
           WHERE w.workflow_slug = $1 AND w.key_value = $2 AND w.queued_at = p.queued_at \
             AND w.run_id = p.run_id AND w.step_slug = p.step_slug AND w.task_index = p.task_index), \
         sent AS MATERIALIZED ( \
           SELECT p.run_id, p.step_slug, p.task_index, \
                  (SELECT pgmq.send('qf_' || lower($1), \
                                    jsonb_build_object('run_id', p.run_id, 'step_slug', p.step_slug, \
                                                       'task_index', p.task_index), \
                                    greatest(clock_timestamp(), p.not_before))) AS msg_id \
           FROM picked p), \
         tasks AS ( \
           UPDATE quantum_flow.step_tasks t SET message_id = s.msg_id FROM sent s \
           WHERE t.run_id = s.run_id AND t.step_slug = s.step_slug AND t.task_index = s.task_index \
           RETURNING 1), \
         counted AS (SELECT count(*)::int AS n FROM tasks), \
         slot AS ( \
           UPDATE quantum_flow.concurrency_slots s SET in_use = s.in_use + c.n FROM counted c \
           WHERE s.workflow_slug = $1 AND s.key_value = $2) \
         SELECT n FROM counted",
        &[
            key.workflow_slug.as_str().into(),
            key.value.as_str().into(),
            free.into(),
        ],
        |r| req::<i32>(r, 1),
    )?
    .unwrap_or(0))
}
