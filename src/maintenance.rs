//! Housekeeping that does not wait for pollers: `maintain()` (what polls do in passing, for
//! every workflow) and `prune_runs()` (retention).

use crate::engine::slug::queue_name;
use crate::error::QfResult;
use crate::executor::Cleanup;
use crate::queue;
use crate::store::{flows, runs};
use pgrx::datum::{Interval, Uuid};
use std::collections::BTreeMap;

/// How many overdue messages one `maintain()` call looks at per workflow (oldest first); the
/// rest wait for the next call.
pub const SWEEP_LIMIT: i32 = 10_000;

/// What one `maintain()` call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub workflows: usize,
    /// Claims that timed out with attempts left, put back in the queue.
    pub timeouts_retried: usize,
    /// Claims that timed out with no attempts left: their task failed.
    pub timeouts_failed: usize,
    /// Runs failed because of those.
    pub runs_failed: usize,
    /// Messages with no live task behind them, archived.
    pub stale_archived: usize,
    /// Runs failed by a due timer (`run_timeout`, `event_timeout`).
    pub timers_fired: usize,
    /// Child runs cancelled because their parent run had ended.
    pub orphans_cancelled: usize,
    /// Tasks created for big map steps, one chunk per workflow (see `queue::continue_fan_out`).
    pub tasks_fanned_out: usize,
}

impl std::ops::AddAssign for Report {
    fn add_assign(&mut self, other: Report) {
        self.workflows += other.workflows;
        self.timeouts_retried += other.timeouts_retried;
        self.timeouts_failed += other.timeouts_failed;
        self.runs_failed += other.runs_failed;
        self.stale_archived += other.stale_archived;
        self.timers_fired += other.timers_fired;
        self.orphans_cancelled += other.orphans_cancelled;
        self.tasks_fanned_out += other.tasks_fanned_out;
    }
}

impl Report {
    pub fn did_something(&self) -> bool {
        self.timeouts_retried
            + self.timeouts_failed
            + self.stale_archived
            + self.timers_fired
            + self.orphans_cancelled
            + self.tasks_fanned_out
            > 0
    }

    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "workflows": self.workflows,
            "timeouts_retried": self.timeouts_retried,
            "timeouts_failed": self.timeouts_failed,
            "runs_failed": self.runs_failed,
            "stale_archived": self.stale_archived,
            "timers_fired": self.timers_fired,
            "orphans_cancelled": self.orphans_cancelled,
            "tasks_fanned_out": self.tasks_fanned_out,
        })
    }
}

/// For every workflow, in slug order: claims that outlived their step's timeout are put back
/// in the queue as the attempt they were (or, with no attempts left, fail their task and run),
/// messages whose run has ended are archived, due timers fail their runs (`run_timeout`,
/// `event_timeout`), child runs whose parent ended are cancelled, and the next chunk of one
/// big map step's tasks is created (`engine::fan_out_chunk_size`). A workflow whose queue
/// is gone is skipped with a WARNING (`workflows` does not count it). Everything is locked
/// with SKIP LOCKED in the engine's lock order, so concurrent `maintain()` calls and pollers
/// never wait for each other or count anything twice.
pub fn maintain() -> QfResult<Report> {
    let mut report = Report {
        orphans_cancelled: cancel_orphans()?,
        ..Report::default()
    };
    for slug in flows::all_slugs()? {
        report += maintain_workflow(&slug)?;
    }
    Ok(report)
}

/// `maintain`'s first part: child runs whose parent ended are cancelled. Returns how many.
pub fn cancel_orphans() -> QfResult<usize> {
    crate::executor::cancel_orphans(SWEEP_LIMIT)
}

/// `maintain`'s part for one workflow, and what it did: the background worker runs each in a
/// transaction of its own, so that one workflow's locks (a big map's step row, held while its
/// next chunk is created) are let go of before the next workflow's turn.
pub fn maintain_workflow(slug: &str) -> QfResult<Report> {
    let mut report = Report::default();
    let queue = queue_name(slug);
    // A workflow whose queue was dropped behind its back (pgmq.drop_queue) would make
    // every round fail, and so stop maintenance of every other workflow: it is skipped.
    if !queue::table_exists(slug) {
        // (or the workflow was deleted since the background worker listed it: nothing to do)
        if flows::options(slug)?.is_none() {
            return Ok(report);
        }
        pgrx::warning!(
            "quantum_flow maintenance: workflow {slug:?} has no queue (pgmq.q_{queue} was \
             dropped); skipped. Delete the workflow with delete_flow('{slug}'), or create \
             its queue again with pgmq.create('{queue}')"
        );
        return Ok(report);
    }
    let mut cleanup = Cleanup::default();
    for found in queue::sweep_overdue(&queue, slug, SWEEP_LIMIT)? {
        cleanup.add(found);
    }
    report.workflows += 1;
    report.timeouts_retried += cleanup.timed_out.len();
    report.timeouts_failed += cleanup.exhausted.len();
    report.stale_archived += cleanup.stale.len();
    let applied = crate::executor::settle(|| cleanup.apply(&queue, slug))?;
    report.runs_failed += applied.runs_failed;
    report.timers_fired += applied.timers_fired;
    // last for this workflow: it holds a step's row until the transaction ends; its fairness
    // check looks as far as a poll of the default batch_size (10) would
    let fanned = crate::executor::settle(|| queue::continue_fan_out(&queue, slug, 10))?;
    if fanned.created > 0 {
        // sleeping pollers of the workflow claim them at once, as after a poll's chunk
        crate::wakeup::notify_on_commit(slug, fanned.created.unsigned_abs());
    }
    report.tasks_fanned_out += fanned.created as usize;
    Ok(report)
}

/// Deletes up to `max_runs` runs that ended (completed, or failed unless `keep_failed`) before
/// `now() - older_than`, oldest first, with their step states, tasks and the messages of
/// their tasks (archived ones, and any a failure left in the queue). Returns how many runs it
/// deleted. Started and paused runs are never touched; runs another transaction holds are skipped.
pub fn prune_runs(older_than: Interval, keep_failed: bool, max_runs: i32) -> QfResult<i64> {
    let ended = runs::lock_ended_runs(older_than, keep_failed, max_runs)?;
    let mut by_workflow: BTreeMap<String, (Vec<Uuid>, Vec<i64>)> = BTreeMap::new();
    for (run_id, workflow_slug, message_ids) in ended {
        let entry = by_workflow.entry(workflow_slug).or_default();
        entry.0.push(run_id);
        entry.1.extend(message_ids);
    }
    let mut deleted = 0;
    for (workflow_slug, (run_ids, message_ids)) in by_workflow {
        queue::delete_messages(&queue_name(&workflow_slug), &message_ids)?;
        deleted += runs::delete_ended(run_ids)?;
    }
    Ok(deleted as i64)
}
