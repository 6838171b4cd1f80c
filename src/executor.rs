//! The run engine: what happens, in one transaction, when a run starts, a poller claims tasks,
//! and a worker completes or fails one. Pure rules come from `engine`; statements from `store`
//! and `queue`.
//!
//! Lock order (every path takes locks in this order, so concurrent workers never deadlock):
//! queue message -> task -> counter shard -> step state -> run -> dependent step states. A
//! path that would need an earlier lock while holding a later one skips locked rows instead
//! of waiting. A path that fails several runs fails them in `run_id` order, so that two
//! such paths take the runs' locks in the same order.
//!
//! When a run fails, its unfinished steps and tasks keep the rows they had (only the failing
//! step is marked `failed`) and `get_run` shows them as `cancelled`: every path that changes a
//! task or step first checks that its run is `started`, so they are inert. Rewriting them
//! would have to wait for locks that a concurrent completer holds while it waits for the run.

use crate::engine::backoff::retry_delay_seconds;
use crate::engine::slug::queue_name;
use crate::error::{QfError, QfResult};
use crate::jsonb::Jsonb;
use crate::queue::{self, ClaimedTask, Exhausted, Polled, TaskKey};
use crate::settings::{JSONB_MAX_BYTES, MAX_MAP_TASKS, MAX_OUTPUT_BYTES};
use crate::store::{flows, runs};
use crate::wakeup;
use pgrx::datum::Uuid;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// The run being worked on, with its workflow's queue.
struct Run {
    run_id: Uuid,
    workflow_slug: String,
    queue: String,
}

impl Run {
    fn new(run_id: Uuid, workflow_slug: String) -> Self {
        let queue = queue_name(&workflow_slug);
        Run {
            run_id,
            workflow_slug,
            queue,
        }
    }
}

pub fn start_flow(workflow_slug: &str, input: Jsonb, run_id: Uuid) -> QfResult<Uuid> {
    if !flows::lock_for_run(workflow_slug)? {
        return Err(crate::definitions::workflow_not_found(workflow_slug));
    }
    if runs::step_count(workflow_slug)? == 0 {
        return Err(QfError::WorkflowHasNoSteps(format!(
            "workflow {workflow_slug:?} has no steps; add one with add_step before starting it"
        )));
    }
    if let Some((step, json_type)) = runs::root_map_over_non_array(workflow_slug, input)? {
        return Err(QfError::InvalidMapInput(format!(
            "map step {step:?} of workflow {workflow_slug:?} maps over the flow input, which must \
             be a JSON array but is {json_type}"
        )));
    }
    if !runs::insert(run_id, workflow_slug, input)? {
        return Err(QfError::RunExists(format!(
            "a run with run_id {run_id} already exists"
        )));
    }
    let run = Run::new(run_id, workflow_slug.to_string());
    start_steps(&run, runs::root_steps(workflow_slug)?)?;
    Ok(run_id)
}

/// The error of a step whose task input would not fit in a jsonb value.
fn input_too_large(step: &str, bytes: i64) -> QfError {
    QfError::OutputTooLarge(format!(
        "the input of step {step:?} would be {bytes} bytes, more than a jsonb value holds \
         ({JSONB_MAX_BYTES}); pass large data by reference"
    ))
}

/// Starts steps whose dependencies are all complete: queues their tasks, or completes at once
/// a map step over an empty array (which may make further steps ready, or end the run).
fn start_steps(run: &Run, ready: Vec<String>) -> QfResult<()> {
    let mut worklist: VecDeque<String> = ready.into();
    let mut queued_any = false;
    while let Some(step) = worklist.pop_front() {
        let source = runs::step_source(run.run_id, &run.workflow_slug, &step)?
            .ok_or_else(|| QfError::Internal(format!("step {step:?} has no definition")))?;
        if source.step_type != "map" {
            let input_bytes = queue::start_single_step(&run.queue, run.run_id, &step)?;
            if !queue::fits_in_jsonb(input_bytes) {
                fail_run(run, &step, &input_too_large(&step, input_bytes).to_string())?;
                return Ok(());
            }
            queued_any = true;
            continue;
        }
        match (source.source_type.as_deref(), source.source_len) {
            (Some("array"), Some(0)) => {
                runs::complete_empty_map(run.run_id, &step)?;
                match after_step_completed(run, &step)? {
                    Some(more) => worklist.extend(more),
                    None => break,
                }
            }
            (Some("array"), Some(len)) if len > MAX_MAP_TASKS.get() => {
                let message = QfError::LimitExceeded(format!(
                    "map step {step:?} would fan out to {len} tasks, more than \
                     quantum_flow.max_map_tasks ({})",
                    MAX_MAP_TASKS.get()
                ))
                .to_string();
                fail_run(run, &step, &message)?;
                return Ok(());
            }
            (Some("array"), Some(_)) => {
                let (_, input_bytes) = queue::start_map_step(
                    &run.queue,
                    run.run_id,
                    &step,
                    source.source_step.as_deref(),
                )?;
                if !queue::fits_in_jsonb(input_bytes) {
                    fail_run(run, &step, &input_too_large(&step, input_bytes).to_string())?;
                    return Ok(());
                }
                queued_any = true;
            }
            (json_type, _) => {
                let over = match &source.source_step {
                    Some(dep) => format!("the output of step {dep:?}"),
                    None => "the flow input".to_string(),
                };
                let message = QfError::InvalidMapInput(format!(
                    "map step {step:?} maps over {over}, which must be a JSON array but is {}",
                    json_type.unwrap_or("null")
                ))
                .to_string();
                fail_run(run, &step, &message)?;
                return Ok(());
            }
        }
    }
    if queued_any {
        wakeup::notify_on_commit(&run.workflow_slug);
    }
    Ok(())
}

/// Counts a completed step against its run. Returns the dependents that became ready, or
/// None when the run has ended (completed now, or failed meanwhile).
fn after_step_completed(run: &Run, step_slug: &str) -> QfResult<Option<Vec<String>>> {
    match runs::count_completed_step(run.run_id)? {
        None => Ok(None),
        Some(0) => {
            if let Some(bytes) = runs::complete_run(run.run_id)? {
                // Every step completed: the run fails, no step does.
                let message = QfError::OutputTooLarge(format!(
                    "the run's output (its leaf steps' outputs) would be {bytes} bytes, more \
                     than a jsonb value holds ({JSONB_MAX_BYTES})"
                ));
                runs::fail_run(run.run_id, &format!("run output: {message}"))?;
            }
            Ok(None)
        }
        Some(_) => Ok(Some(runs::ready_dependents(
            run.run_id,
            &run.workflow_slug,
            step_slug,
        )?)),
    }
}

/// Fails `step_slug` and its run, and archives the run's other messages. `error` is what went
/// wrong; the step and the run record it after the step's name (`step <slug>: <error>`).
/// True when this call failed the run (false: it had ended already).
fn fail_run(run: &Run, step_slug: &str, error: &str) -> QfResult<bool> {
    fail_run_located(run, step_slug, &format!("step {step_slug}: {error}"))
}

/// `fail_run` for a task's failure: the message names the step, task and attempt
/// (`step <slug>, task <i>, attempt <n>: <error>`).
fn fail_run_by_task(run: &Run, task: &TaskKey, attempt: i32, error: &str) -> QfResult<bool> {
    fail_run_located(
        run,
        &task.step_slug,
        &format!(
            "step {}, task {}, attempt {attempt}: {error}",
            task.step_slug, task.task_index
        ),
    )
}

fn fail_run_located(run: &Run, step_slug: &str, message: &str) -> QfResult<bool> {
    runs::fail_step(run.run_id, step_slug, message)?;
    let failed = runs::fail_run(run.run_id, message)?;
    if failed {
        queue::discard_run_messages(&run.queue, run.run_id)?;
    }
    Ok(failed)
}

/// Why a `complete_task` or `fail_task` changed nothing; the stable word starts the NOTICE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unchanged {
    /// The task was already completed (or failed) by an earlier answer.
    Duplicate,
    /// `attempt` names an attempt that is not the task's current claim (it timed out and was
    /// handed on, or returned to the queue).
    StaleAttempt,
    /// The task is queued: no worker holds a claim on it.
    NotClaimed,
    /// The task's run is no longer started (completed, failed or cancelled).
    RunEnded,
}

impl Unchanged {
    pub fn word(self) -> &'static str {
        match self {
            Unchanged::Duplicate => "duplicate",
            Unchanged::StaleAttempt => "stale_attempt",
            Unchanged::NotClaimed => "not_claimed",
            Unchanged::RunEnded => "run_ended",
        }
    }

    /// The reason, from the run's status, the task's status and attempts made, and the
    /// attempt the caller named.
    pub fn classify(
        run_status: &str,
        task_status: &str,
        attempts: i32,
        attempt: Option<i32>,
    ) -> Self {
        if run_status != "started" {
            return Unchanged::RunEnded;
        }
        match (task_status, attempt) {
            ("completed" | "failed", _) => Unchanged::Duplicate,
            (_, Some(a)) if a != attempts => Unchanged::StaleAttempt,
            // the named attempt was the current one, but its claim timed out and it was
            // returned to the queue
            ("queued", Some(_)) if attempts > 0 => Unchanged::StaleAttempt,
            ("queued", _) => Unchanged::NotClaimed,
            // started with this attempt: another answer won meanwhile and its status is not
            // visible yet (it committed after our statement began)
            _ => Unchanged::Duplicate,
        }
    }
}

/// Explains a complete/fail call that changed nothing: raises run_not_found / task_not_found
/// when it named something that does not exist; otherwise sends a NOTICE naming the reason
/// (`duplicate`, `stale_attempt`, `not_claimed`, `run_ended`).
///
/// A late answer for an ended run also archives this task's message if it is still queued:
/// a run's failure skips messages that a concurrent poll holds (waiting for them could
/// deadlock), so a claim that committed just after the failure leaves its message behind
/// until its worker answers here (or, if the worker is gone, until a poll or `maintain`
/// finds it stale after the timeout). Only this task's message is touched: O(1) per answer.
fn explain_unchanged(
    call: &str,
    run_id: Uuid,
    step_slug: &str,
    task_index: i32,
    attempt: Option<i32>,
) -> QfResult<()> {
    let Some(found) = runs::task_lookup(run_id, step_slug, task_index)? else {
        return Err(QfError::run_not_found(run_id));
    };
    let Some((task_status, attempts)) = found.task else {
        return Err(QfError::TaskNotFound(format!(
            "run {run_id} has no task {task_index} of step {step_slug:?}"
        )));
    };
    let reason = Unchanged::classify(&found.run_status, &task_status, attempts, attempt);
    let why = match reason {
        Unchanged::RunEnded => format!("run {run_id} is {}", found.run_status),
        Unchanged::Duplicate => format!("the task is already {task_status}"),
        Unchanged::StaleAttempt => format!(
            "attempt {} is not the task's current claim (attempts made: {attempts}, task is {task_status})",
            attempt.map_or("NULL".to_string(), |a| a.to_string())
        ),
        Unchanged::NotClaimed => "the task is queued, no worker holds a claim on it".to_string(),
    };
    pgrx::notice!(
        "{}: {call} of task {task_index} of step {step_slug:?} in run {run_id} changed nothing: {why}",
        reason.word()
    );
    if reason == Unchanged::RunEnded {
        queue::archive_task_message(
            &queue_name(&found.workflow_slug),
            run_id,
            step_slug,
            task_index,
        )?;
    }
    Ok(())
}

/// Refuses an output larger than `quantum_flow.max_output_bytes`, before anything is written.
fn check_output_size(
    run_id: Uuid,
    step_slug: &str,
    task_index: i32,
    output: Jsonb,
) -> QfResult<()> {
    let bytes = output.raw_size();
    let limit = i64::from(MAX_OUTPUT_BYTES.get());
    if bytes > limit {
        return Err(QfError::OutputTooLarge(format!(
            "the output of task {task_index} of step {step_slug:?} in run {run_id} is {bytes} \
             bytes, more than quantum_flow.max_output_bytes ({limit}); nothing was changed"
        )));
    }
    Ok(())
}

pub fn complete_task(
    run_id: Uuid,
    step_slug: &str,
    task_index: i32,
    output: Jsonb,
    attempt: Option<i32>,
) -> QfResult<bool> {
    check_output_size(run_id, step_slug, task_index, output)?;
    let Some((workflow_slug, is_map)) =
        queue::complete_task(run_id, step_slug, task_index, output, attempt)?
    else {
        explain_unchanged("complete_task", run_id, step_slug, task_index, attempt)?;
        return Ok(false);
    };
    // A map task counts on its shard first; only a shard's last task touches the step row.
    let newly_counted = if is_map {
        runs::count_completed_shard_task(run_id, step_slug, task_index)?
    } else {
        Some(1)
    };
    let step_done = match newly_counted {
        Some(n) => runs::count_completed_tasks(run_id, step_slug, n)?,
        None => false,
    };
    if !step_done {
        return Ok(true);
    }
    let run = Run::new(run_id, workflow_slug);
    if let Some(bytes) = runs::finish_step(run_id, step_slug)? {
        let message = QfError::OutputTooLarge(format!(
            "the step's output (the array of its tasks' outputs) would be {bytes} bytes, more \
             than a jsonb value holds ({JSONB_MAX_BYTES})"
        ));
        fail_run(&run, step_slug, &message.to_string())?;
        return Ok(true);
    }
    if let Some(ready) = after_step_completed(&run, step_slug)? {
        start_steps(&run, ready)?;
    }
    Ok(true)
}

pub fn fail_task(
    run_id: Uuid,
    step_slug: &str,
    task_index: i32,
    error_message: &str,
    attempt: Option<i32>,
) -> QfResult<&'static str> {
    let Some(failed) = runs::fail_attempt(run_id, step_slug, task_index, error_message, attempt)?
    else {
        explain_unchanged("fail_task", run_id, step_slug, task_index, attempt)?;
        return Ok("ignored");
    };
    let run = Run::new(run_id, failed.workflow_slug);
    if failed.status == "queued" {
        let delay = retry_delay_seconds(failed.base_delay, failed.attempts);
        queue::delay_message(&run.queue, failed.message_id, delay)?;
        if delay == 0 {
            wakeup::notify_on_commit(&run.workflow_slug);
        }
        return Ok("queued");
    }
    queue::archive(&run.queue, vec![failed.message_id])?;
    let task = TaskKey {
        run_id,
        step_slug: step_slug.to_string(),
        task_index,
    };
    fail_run_by_task(&run, &task, failed.attempts, error_message)?;
    Ok("failed")
}

pub fn poll_tasks(
    workflow_slug: &str,
    batch_size: i32,
    max_wait_ms: i32,
    worker_id: Option<&str>,
) -> QfResult<Vec<ClaimedTask>> {
    let options = flows::options(workflow_slug)?
        .ok_or_else(|| crate::definitions::workflow_not_found(workflow_slug))?;
    let queue = queue_name(workflow_slug);
    let event = wakeup::wait_event_for(workflow_slug);
    let deadline = Instant::now() + Duration::from_millis(max_wait_ms as u64);
    loop {
        if max_wait_ms > 0 {
            wakeup::prepare_to_wait(event);
        }
        let round = claim_once(
            &queue,
            workflow_slug,
            options.timeout,
            batch_size,
            worker_id,
        )?;
        let now = Instant::now();
        // A round that cleaned up (failed a run whose task timed out for the last time,
        // archived stale messages) returns at once, so that its writes commit instead of
        // waiting, uncommitted, with the poll.
        if !round.claimed.is_empty() || round.wrote || now >= deadline {
            if max_wait_ms > 0 {
                wakeup::done_waiting();
            }
            return Ok(round.claimed);
        }
        let mut sleep_ms = (deadline - now).as_millis() as i64;
        if let Some(next) = queue::next_visible_in_ms(&queue)? {
            sleep_ms = sleep_ms.min(next.max(1));
        }
        wakeup::wait_for_work(event, sleep_ms);
    }
}

/// What one claim round did.
struct Round {
    claimed: Vec<ClaimedTask>,
    /// Whether it wrote anything besides claims (failed runs, archived messages).
    wrote: bool,
}

/// One claim round; see `queue::read_and_claim`. Messages are read with the workflow's
/// timeout as visibility timeout and then moved to their step's own timeout where it differs.
fn claim_once(
    queue: &str,
    workflow_slug: &str,
    workflow_timeout: i32,
    batch_size: i32,
    worker_id: Option<&str>,
) -> QfResult<Round> {
    let polled = queue::read_and_claim(
        queue,
        workflow_slug,
        workflow_timeout,
        batch_size,
        worker_id,
    )?;
    let mut claimed = Vec::with_capacity(polled.len());
    let mut retimed: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut cleanup = Cleanup::default();
    for p in polled {
        match p {
            Polled::Claimed {
                task,
                message_id,
                timeout,
            } => {
                if timeout != workflow_timeout {
                    retimed.entry(timeout).or_default().push(message_id);
                }
                claimed.push(task);
            }
            other => cleanup.add(other),
        }
    }
    for (timeout, ids) in retimed {
        queue::set_timeout(queue, ids, timeout)?;
    }
    let wrote = !cleanup.is_empty();
    cleanup.apply(queue, workflow_slug)?;
    Ok(Round { claimed, wrote })
}

/// What a poll or `maintain` found besides claimable tasks, to be dealt with in one place.
#[derive(Default)]
pub struct Cleanup {
    pub timed_out: Vec<TaskKey>,
    pub exhausted: Vec<Exhausted>,
    pub stale: Vec<i64>,
}

impl Cleanup {
    pub fn add(&mut self, polled: Polled) {
        match polled {
            Polled::TimedOut(task) => self.timed_out.push(task),
            Polled::Exhausted(e) => self.exhausted.push(e),
            Polled::Stale { message_id } => self.stale.push(message_id),
            Polled::Claimed { .. } => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.timed_out.is_empty() && self.exhausted.is_empty() && self.stale.is_empty()
    }

    /// Requeues timed-out claims, fails the runs of exhausted tasks (in `run_id` order: see
    /// the lock order above), archives stale messages. Returns how many runs it failed.
    pub fn apply(mut self, queue: &str, workflow_slug: &str) -> QfResult<usize> {
        if !self.timed_out.is_empty() {
            runs::requeue_timed_out(&self.timed_out)?;
            wakeup::notify_on_commit(workflow_slug);
        }
        self.exhausted.sort_by(|a, b| a.task.cmp(&b.task));
        let mut failed_runs = 0;
        for e in &self.exhausted {
            let message = format!(
                "timed out: attempt {0} of {0} was not completed within the step's {1}s timeout",
                e.attempts, e.timeout
            );
            runs::fail_timed_out_task(
                e.task.run_id,
                &e.task.step_slug,
                e.task.task_index,
                &message,
            )?;
            queue::archive(queue, vec![e.message_id])?;
            let run = Run::new(e.task.run_id, workflow_slug.to_string());
            if fail_run_by_task(&run, &e.task, e.attempts, &message)? {
                failed_runs += 1;
            }
        }
        if !self.stale.is_empty() {
            queue::archive(queue, self.stale)?;
        }
        Ok(failed_runs)
    }
}

/// Fails a started run on request: its status becomes `failed` with the error message
/// `cancelled: <reason>`, and its queued messages are archived. False when the run was not
/// `started` (already completed, failed or cancelled).
pub fn cancel_run(run_id: Uuid, reason: &str) -> QfResult<bool> {
    let Some((_, workflow_slug)) = runs::status_of(run_id)? else {
        return Err(QfError::run_not_found(run_id));
    };
    if !runs::fail_run(run_id, &format!("cancelled: {reason}"))? {
        return Ok(false);
    }
    queue::discard_run_messages(&queue_name(&workflow_slug), run_id)?;
    Ok(true)
}

pub fn run_document(run_id: Uuid) -> QfResult<Jsonb> {
    runs::run_document(run_id)?.ok_or_else(|| QfError::run_not_found(run_id))
}

#[cfg(test)]
mod tests {
    use super::Unchanged::{self, *};

    #[test]
    fn reasons_for_answers_that_change_nothing() {
        let c = Unchanged::classify;
        assert_eq!(c("failed", "started", 1, Some(1)), RunEnded);
        assert_eq!(c("completed", "completed", 1, None), RunEnded);
        assert_eq!(c("started", "completed", 1, None), Duplicate);
        assert_eq!(c("started", "completed", 1, Some(1)), Duplicate);
        assert_eq!(c("started", "started", 2, Some(1)), StaleAttempt);
        assert_eq!(c("started", "queued", 1, Some(1)), StaleAttempt);
        assert_eq!(c("started", "queued", 0, None), NotClaimed);
        assert_eq!(c("started", "queued", 2, None), NotClaimed);
        assert_eq!(c("started", "queued", 0, Some(1)), StaleAttempt);
        for (r, w) in [
            (Duplicate, "duplicate"),
            (StaleAttempt, "stale_attempt"),
            (NotClaimed, "not_claimed"),
            (RunEnded, "run_ended"),
        ] {
            assert_eq!(r.word(), w);
        }
    }
}
