//! The run engine: what happens, in one transaction, when a run starts, a poller claims tasks,
//! and a worker completes or fails one. Pure rules come from `engine`; statements from `store`
//! and `queue`.
//!
//! Lock order (every path takes locks in this order, so concurrent workers never deadlock):
//! queue message -> task -> counter shard -> step state -> run -> dependent step states. A
//! path that would need an earlier lock while holding a later one skips locked rows instead
//! of waiting.

use crate::engine::backoff::retry_delay_seconds;
use crate::engine::slug::queue_name;
use crate::error::{QfError, QfResult};
use crate::jsonb::Jsonb;
use crate::queue::{self, ClaimedTask, Polled};
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
        return Err(QfError::workflow_not_found(workflow_slug));
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

/// Starts steps whose dependencies are all complete: queues their tasks, or completes at once
/// a map step over an empty array (which may make further steps ready, or end the run).
fn start_steps(run: &Run, ready: Vec<String>) -> QfResult<()> {
    let mut worklist: VecDeque<String> = ready.into();
    let mut queued_any = false;
    while let Some(step) = worklist.pop_front() {
        let source = runs::step_source(run.run_id, &run.workflow_slug, &step)?
            .ok_or_else(|| QfError::Internal(format!("step {step:?} has no definition")))?;
        if source.step_type != "map" {
            queue::start_single_step(&run.queue, run.run_id, &step)?;
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
            (Some("array"), Some(_)) => {
                queue::start_map_step(
                    &run.queue,
                    run.run_id,
                    &step,
                    source.source_step.as_deref(),
                )?;
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
            runs::complete_run(run.run_id)?;
            Ok(None)
        }
        Some(_) => Ok(Some(runs::ready_dependents(
            run.run_id,
            &run.workflow_slug,
            step_slug,
        )?)),
    }
}

/// Fails `step_slug` and its run with `error_message`, and archives the run's other messages.
fn fail_run(run: &Run, step_slug: &str, error_message: &str) -> QfResult<()> {
    runs::fail_step(run.run_id, step_slug, error_message)?;
    if runs::fail_run(run.run_id, error_message)? {
        queue::discard_run_messages(&run.queue, run.run_id)?;
    }
    Ok(())
}

/// Raises run_not_found / task_not_found when a complete/fail call that changed nothing named
/// something that does not exist; otherwise it was a late or duplicate call.
///
/// A late answer for a failed run also sweeps the run's leftover messages: the failure skips
/// messages that a concurrent poll holds (waiting for them could deadlock), so a claim that
/// committed just after the failure leaves its message behind until its worker answers here
/// (or, if the worker is gone, until a poll finds it stale after the timeout).
fn explain_unchanged(run_id: Uuid, step_slug: &str, task_index: i32) -> QfResult<()> {
    match runs::task_lookup(run_id, step_slug, task_index)? {
        None => Err(QfError::run_not_found(run_id)),
        Some((_, _, false)) => Err(QfError::TaskNotFound(format!(
            "run {run_id} has no task {task_index} of step {step_slug:?}"
        ))),
        Some((status, workflow_slug, true)) => {
            if status == "failed" {
                queue::discard_run_messages(&queue_name(&workflow_slug), run_id)?;
            }
            Ok(())
        }
    }
}

pub fn complete_task(
    run_id: Uuid,
    step_slug: &str,
    task_index: i32,
    output: Jsonb,
    attempt: Option<i32>,
) -> QfResult<bool> {
    let Some((workflow_slug, is_map)) =
        queue::complete_task(run_id, step_slug, task_index, output, attempt)?
    else {
        explain_unchanged(run_id, step_slug, task_index)?;
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
    runs::finish_step(run_id, step_slug)?;
    let run = Run::new(run_id, workflow_slug);
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
        explain_unchanged(run_id, step_slug, task_index)?;
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
    fail_run(&run, step_slug, error_message)?;
    Ok("failed")
}

pub fn poll_tasks(
    workflow_slug: &str,
    batch_size: i32,
    max_wait_ms: i32,
    worker_id: Option<&str>,
) -> QfResult<Vec<ClaimedTask>> {
    let options =
        flows::options(workflow_slug)?.ok_or_else(|| QfError::workflow_not_found(workflow_slug))?;
    let queue = queue_name(workflow_slug);
    let event = wakeup::wait_event_for(workflow_slug);
    let deadline = Instant::now() + Duration::from_millis(max_wait_ms as u64);
    loop {
        if max_wait_ms > 0 {
            wakeup::prepare_to_wait(event);
        }
        let claimed = claim_once(
            &queue,
            workflow_slug,
            options.timeout,
            batch_size,
            worker_id,
        )?;
        let now = Instant::now();
        if !claimed.is_empty() || now >= deadline {
            if max_wait_ms > 0 {
                wakeup::done_waiting();
            }
            return Ok(claimed);
        }
        let mut sleep_ms = (deadline - now).as_millis() as i64;
        if let Some(next) = queue::next_visible_in_ms(&queue)? {
            sleep_ms = sleep_ms.min(next.max(0));
        }
        if sleep_ms > 0 {
            wakeup::wait_for_work(event, sleep_ms);
        }
    }
}

/// One claim round; see `queue::read_and_claim`. Messages are read with the workflow's
/// timeout as visibility timeout and then moved to their step's own timeout where it differs.
fn claim_once(
    queue: &str,
    workflow_slug: &str,
    workflow_timeout: i32,
    batch_size: i32,
    worker_id: Option<&str>,
) -> QfResult<Vec<ClaimedTask>> {
    let polled = queue::read_and_claim(
        queue,
        workflow_slug,
        workflow_timeout,
        batch_size,
        worker_id,
    )?;
    let mut claimed = Vec::with_capacity(polled.len());
    let mut stale = Vec::new();
    let mut retimed: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
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
            Polled::Exhausted {
                run_id,
                step_slug,
                task_index,
                attempts,
                timeout,
                message_id,
            } => {
                let message = format!(
                    "timed out: attempt {attempts} of {attempts} was not completed within the \
                     step's {timeout}s timeout"
                );
                runs::fail_timed_out_task(run_id, &step_slug, task_index, &message)?;
                queue::archive(queue, vec![message_id])?;
                fail_run(
                    &Run::new(run_id, workflow_slug.to_string()),
                    &step_slug,
                    &message,
                )?;
            }
            Polled::Stale { message_id } => stale.push(message_id),
        }
    }
    for (timeout, ids) in retimed {
        queue::set_timeout(queue, ids, timeout)?;
    }
    if !stale.is_empty() {
        queue::archive(queue, stale)?;
    }
    Ok(claimed)
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
