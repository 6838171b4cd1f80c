//! The run engine: what happens, in one transaction, when a run starts, a poller claims tasks,
//! and a worker completes or fails one; and the flow control around it (conditions, delays,
//! events, sub-flows, run timeouts, pause, retry, concurrency keys). Pure rules come from
//! `engine`; statements from `store` and `queue`.
//!
//! Lock order (every path takes locks in this order, so concurrent workers never deadlock):
//! queue message -> task -> counter shard -> step state -> run -> dependent step states ->
//! concurrency slots (taken last, at the end of each call, by `concurrency::flush`). A path
//! that would need an earlier lock while holding a later one skips locked rows instead of
//! waiting. A path that fails several runs fails them in `run_id` order, so that two such
//! paths take the runs' locks in the same order.
//!
//! Across runs, a child run (of a sub-flow step) locks its parent's task, step and run after
//! its own run when it ends; a parent that ends locks its live children with SKIP LOCKED,
//! and `maintain` ends any child it could not lock then.
//!
//! When a run fails, its unfinished steps and tasks keep the rows they had (only the failing
//! step is marked `failed`) and `get_run` shows them as `cancelled`: every path that changes a
//! task or step first checks that its run is started (or paused), so they are inert.
//! Rewriting them would have to wait for locks that a concurrent completer holds while it
//! waits for the run.

use crate::claim_commit;
use crate::concurrency;
use crate::engine::backoff::retry_delay_seconds;
use crate::engine::slug::queue_name;
use crate::error::{QfError, QfResult, CONDITION_UNMET, EVENT_TIMEOUT, RUN_TIMEOUT};
use crate::events;
use crate::jsonb::Jsonb;
use crate::queue::{self, ClaimedTask, Exhausted, Polled, TaskKey, Timer};
use crate::settings::{FAIR_POLLING, JSONB_MAX_BYTES, MAX_MAP_TASKS, MAX_OUTPUT_BYTES};
use crate::store::runs::{FailedBy, NewRun};
use crate::store::{flows, runs};
use crate::wakeup;
use pgrx::datum::{TimestampWithTimeZone, Uuid};
use pgrx::{pg_sys, PgTryBuilder};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

/// The run being worked on, with its workflow's queue and its concurrency key value.
struct Run {
    run_id: Uuid,
    workflow_slug: String,
    queue: String,
    key_value: Option<String>,
}

impl Run {
    fn new(run_id: Uuid, workflow_slug: String, key_value: Option<String>) -> Self {
        let queue = queue_name(&workflow_slug);
        Run {
            run_id,
            workflow_slug,
            queue,
            key_value,
        }
    }

    /// The run and its status; None when it does not exist.
    fn load(run_id: Uuid) -> QfResult<Option<(Run, String)>> {
        Ok(runs::status_of(run_id)?
            .map(|(status, workflow_slug, key)| (Run::new(run_id, workflow_slug, key), status)))
    }

    /// Where new tasks of this run wait for a slot (None: not limited).
    fn key(&self) -> Option<(&str, &str)> {
        self.key_value
            .as_deref()
            .map(|v| (self.workflow_slug.as_str(), v))
    }

    /// Records that `n` of this run's tasks gave up their message (see `concurrency`).
    fn release(&self, n: i32) {
        if let Some(value) = &self.key_value {
            if n > 0 {
                concurrency::released(&self.workflow_slug, value, n);
            }
        }
    }
}

impl Run {
    /// Records a status change of this run's step `step` (`None`: of the run) for
    /// `NOTIFY quantum_flow_events`.
    fn emit(&self, step: Option<&str>, status: &str) {
        events::emit(self.run_id, &self.workflow_slug, step, status);
    }

    /// The run ended (`completed` or `failed`): tell listeners and wake `wait_run` callers
    /// once this transaction commits.
    fn ended(&self, status: &str) {
        self.emit(None, status);
        wakeup::notify_run_waiters_on_commit(&run_wait_key(self.run_id));
        ENDED_IN_CALL.with(|e| e.borrow_mut().push(self.run_id));
    }

    /// Whether this run ended during the current API call (say, a sub-flow child that failed
    /// as it started used up its parent task's attempts): nothing more is started for it.
    fn ended_in_call(&self) -> bool {
        ENDED_IN_CALL.with(|e| e.borrow().contains(&self.run_id))
    }
}

thread_local! {
    /// Runs that ended during the current API call (`call` clears it).
    static ENDED_IN_CALL: std::cell::RefCell<Vec<Uuid>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What `wait_run` callers of `run_id` wait on (`wakeup::run_wait_event`).
fn run_wait_key(run_id: Uuid) -> String {
    format!("run:{run_id}")
}

/// `call` for `maintain`'s sweeps.
pub fn settle<T>(work: impl FnOnce() -> QfResult<T>) -> QfResult<T> {
    call(work)
}

/// Runs one API call's work and then settles its concurrency slots (see `concurrency`).
fn call<T>(work: impl FnOnce() -> QfResult<T>) -> QfResult<T> {
    concurrency::begin();
    events::begin();
    ENDED_IN_CALL.with(|e| e.borrow_mut().clear());
    let result = work()?;
    concurrency::flush()?;
    events::flush()?;
    Ok(result)
}

pub fn start_flow(
    workflow_slug: &str,
    input: Jsonb,
    run_id: Uuid,
    start_at: Option<TimestampWithTimeZone>,
) -> QfResult<Uuid> {
    call(|| {
        start_run(&NewRun {
            run_id,
            workflow_slug,
            input,
            start_at,
            parent: None,
        })
    })
}

/// Starts many runs of one workflow in one call (`start_flows`), in order.
pub fn start_flows(workflow_slug: &str, runs: Vec<(Jsonb, Uuid)>) -> QfResult<Vec<Uuid>> {
    call(|| {
        let starter = Starter::new(workflow_slug)?;
        let mut ids = Vec::with_capacity(runs.len());
        for (input, run_id) in runs {
            ids.push(starter.start(&NewRun {
                run_id,
                workflow_slug,
                input,
                start_at: None,
                parent: None,
            })?);
        }
        Ok(ids)
    })
}

/// Creates a run and starts its root steps: `start_flow`, and a sub-flow step's child runs.
fn start_run(new: &NewRun<'_>) -> QfResult<Uuid> {
    Starter::new(new.workflow_slug)?.start(new)
}

/// What starting runs of a workflow needs to know once: its root steps, and whether one of
/// them maps over the flow input. Made under the workflow's share lock, held until commit,
/// so that no step can be added meanwhile.
struct Starter {
    root_steps: Vec<String>,
    has_root_map: bool,
}

impl Starter {
    fn new(workflow_slug: &str) -> QfResult<Starter> {
        if !flows::lock_for_run(workflow_slug)? {
            return Err(crate::definitions::workflow_not_found(workflow_slug));
        }
        let (steps, has_root_map) = runs::start_shape(workflow_slug)?;
        if steps == 0 {
            return Err(QfError::WorkflowHasNoSteps(format!(
                "workflow {workflow_slug:?} has no steps; add one with add_step before starting it"
            )));
        }
        Ok(Starter {
            root_steps: runs::root_steps(workflow_slug)?,
            has_root_map,
        })
    }

    fn start(&self, new: &NewRun<'_>) -> QfResult<Uuid> {
        let workflow_slug = new.workflow_slug;
        if self.has_root_map {
            if let Some((step, json_type)) =
                runs::root_map_over_non_array(workflow_slug, new.input)?
            {
                return Err(QfError::InvalidMapInput(format!(
                    "map step {step:?} of workflow {workflow_slug:?} maps over the flow input, \
                     which must be a JSON array but is {json_type}"
                )));
            }
        }
        let Some(inserted) = runs::insert(new)? else {
            return Err(QfError::RunExists(format!(
                "a run with run_id {} already exists",
                new.run_id
            )));
        };
        let run = Run::new(new.run_id, workflow_slug.to_string(), inserted.key_value);
        run.emit(None, "started");
        if inserted.has_deadline {
            queue::start_run_timer(&run.queue, run.run_id)?;
            // pollers that sleep until the next visible message must see the deadline
            wakeup::notify_on_commit(&run.workflow_slug, 1);
        }
        start_steps(&run, self.root_steps.clone())?;
        Ok(new.run_id)
    }
}

/// The error of a step whose task input would not fit in a jsonb value.
fn input_too_large(step: &str, bytes: i64) -> QfError {
    QfError::OutputTooLarge(format!(
        "the input of step {step:?} would be {bytes} bytes, more than a jsonb value holds \
         ({JSONB_MAX_BYTES}); pass large data by reference"
    ))
}

/// What starting one ready step led to.
enum Started {
    /// Its tasks are queued (or waiting for an event, a child run, a slot): this many
    /// sleeping pollers are to be woken for them.
    Queued(u32),
    /// It finished at once (skipped, an empty map, an event that had arrived): these steps,
    /// and as many more, finished with it; the dependents that became ready follow.
    Finished(Vec<String>),
    /// The run ended (it failed, or this was its last step).
    RunEnded,
}

/// Starts steps whose dependencies have all finished, in order: tests their condition,
/// queues their tasks, or finishes them at once (which may make further steps ready, or end
/// the run).
fn start_steps(run: &Run, ready: Vec<String>) -> QfResult<()> {
    let mut worklist: VecDeque<String> = ready.into();
    let mut queued: u32 = 0;
    while let Some(step) = worklist.pop_front() {
        // the run may have ended before this call got here (retry_run's children) or while
        // starting the step before
        if run.ended_in_call() {
            break;
        }
        match start_step(run, &step)? {
            Started::Queued(tasks) => queued = queued.saturating_add(tasks),
            Started::Finished(more) => worklist.extend(more),
            Started::RunEnded => break,
        }
    }
    wakeup::notify_on_commit(&run.workflow_slug, queued);
    Ok(())
}

/// `after_step_finished`'s answer as a `Started`.
fn finished(run: &Run, step: &str, steps: i32) -> QfResult<Started> {
    Ok(match after_step_finished(run, step, steps)? {
        Some(more) => Started::Finished(more),
        None => Started::RunEnded,
    })
}

fn start_step(run: &Run, step: &str) -> QfResult<Started> {
    let source = runs::step_source(run.run_id, &run.workflow_slug, step)?
        .ok_or_else(|| QfError::Internal(format!("step {step:?} has no definition")))?;
    if source.condition_met == Some(false) {
        match source.when_unmet.as_str() {
            "fail" => {
                let message = format!(
                    "{CONDITION_UNMET}: the step's input does not meet its condition (if / if_not)"
                );
                fail_run(run, step, &message)?;
                return Ok(Started::RunEnded);
            }
            "skip_cascade" => {
                runs::skip_step(run.run_id, step)?;
                run.emit(Some(step), "skipped");
                let below = runs::skip_descendants(run.run_id, &run.workflow_slug, step)?;
                for skipped in &below {
                    run.emit(Some(skipped), "skipped");
                }
                return finished(run, step, 1 + below.len() as i32);
            }
            _ => {
                runs::skip_step(run.run_id, step)?;
                run.emit(Some(step), "skipped");
                return finished(run, step, 1);
            }
        }
    }
    if source.step_type == "map" && source.source_skipped {
        // the array it maps over does not exist
        runs::skip_step(run.run_id, step)?;
        run.emit(Some(step), "skipped");
        return finished(run, step, 1);
    }
    if source.step_type == "event" {
        if source.has_early_event {
            runs::complete_event_step_early(run.run_id, step)?;
            // Its one task, just created completed, is its last.
            return count_and_follow(run, step, 1, false)?.ok_or_else(|| {
                QfError::Internal(format!(
                    "event step {step:?} not finished by its early event"
                ))
            });
        }
        queue::start_event_step(&run.queue, run.run_id, step)?;
        run.emit(Some(step), "started");
        // its task waits for the event, but a sleeper must see the timeout it may have
        return Ok(Started::Queued(1));
    }
    if source.step_type == "map" {
        let len = match (source.source_type.as_deref(), source.source_len) {
            (Some("array"), Some(len)) => len,
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
                fail_run(run, step, &message)?;
                return Ok(Started::RunEnded);
            }
        };
        if len == 0 {
            runs::complete_empty_map(run.run_id, step)?;
            run.emit(Some(step), "completed");
            return finished(run, step, 1);
        }
        if len > MAX_MAP_TASKS.get() {
            let message = QfError::LimitExceeded(format!(
                "map step {step:?} would fan out to {len} tasks, more than \
                 quantum_flow.max_map_tasks ({})",
                MAX_MAP_TASKS.get()
            ))
            .to_string();
            fail_run(run, step, &message)?;
            return Ok(Started::RunEnded);
        }
    }
    if let Some(flow) = &source.flow {
        return start_sub_flows(
            run,
            step,
            flow,
            source.step_type == "map",
            source.visible_at,
        );
    }
    let mut tasks = 1;
    let input_bytes = if source.step_type == "map" {
        let (created, bytes) = queue::start_map_step(
            &run.queue,
            run.run_id,
            step,
            source.source_step.as_deref(),
            run.key(),
        )?;
        tasks = created.unsigned_abs();
        bytes
    } else {
        queue::start_single_step(&run.queue, run.run_id, step, run.key())?
    };
    if let Some((workflow_slug, value)) = run.key() {
        concurrency::waiting(workflow_slug, value);
    }
    if !queue::fits_in_jsonb(input_bytes) {
        fail_run(run, step, &input_too_large(step, input_bytes).to_string())?;
        return Ok(Started::RunEnded);
    }
    run.emit(Some(step), "started");
    Ok(Started::Queued(tasks))
}

/// Starts a sub-flow step: one child run of `flow` per task (one for a single step, whose
/// input is the step's input; one per element for a map step), visible from `visible_at`.
/// A child that cannot start (its workflow was deleted, has no steps, or refuses the input)
/// fails the run: starting it again would fail the same way.
fn start_sub_flows(
    run: &Run,
    step: &str,
    flow: &str,
    is_map: bool,
    visible_at: Option<TimestampWithTimeZone>,
) -> QfResult<Started> {
    let inputs = runs::sub_flow_inputs(run.run_id, &run.workflow_slug, step)?;
    let children = runs::start_flow_tasks(run.run_id, step, inputs.len() as i32, is_map)?;
    run.emit(Some(step), "started");
    for (index, (child, input)) in children.into_iter().zip(inputs).enumerate() {
        let started = start_run(&NewRun {
            run_id: child,
            workflow_slug: flow,
            input,
            start_at: visible_at,
            parent: Some((run.run_id, step, index as i32)),
        });
        if let Err(e) = started {
            if matches!(e, QfError::Internal(_)) {
                return Err(e);
            }
            let message = format!("sub-flow {flow:?} could not start: {e}");
            fail_run(run, step, &message)?;
            return Ok(Started::RunEnded);
        }
        // A child that failed as it started (its first step's condition) is a failed attempt
        // of this run's task, and the last one fails this run: start no more children.
        if run.ended_in_call() {
            return Ok(Started::RunEnded);
        }
    }
    // The children's own steps wake the pollers of their workflow; one sleeper of this one
    // looks again, as for an event step, in case the step left a timer in its queue.
    Ok(Started::Queued(1))
}

/// Counts `n` completed tasks of one step (`map`: a map step, counted by its shards); when
/// they were its last, finishes the step and moves on (`Some`), else `None`.
fn count_and_follow(run: &Run, step: &str, n: i32, map: bool) -> QfResult<Option<Started>> {
    let done = runs::count_completed_tasks_of_steps(&[(run.run_id, step.to_string(), n, !map)])?;
    if done.is_empty() {
        return Ok(None);
    }
    finish_counted(run, step, map).map(Some)
}

/// A step whose tasks are all counted (`count_completed_tasks_of_steps`): a map step's output
/// is aggregated now (a single step's count completed it), then it moves on.
fn finish_counted(run: &Run, step: &str, map: bool) -> QfResult<Started> {
    if map {
        if let Some(bytes) = runs::finish_map_step(run.run_id, step)? {
            let message = QfError::OutputTooLarge(format!(
                "the step's output (the array of its tasks' outputs) would be {bytes} bytes, \
                 more than a jsonb value holds ({JSONB_MAX_BYTES})"
            ));
            fail_run(run, step, &message.to_string())?;
            return Ok(Started::RunEnded);
        }
    }
    run.emit(Some(step), "completed");
    finished(run, step, 1)
}

/// Counts `steps` finished (completed or skipped) steps against their run, `step_slug`
/// being the one whose dependents may now be ready. Returns those dependents, or None when
/// the run has ended (completed now, or failed meanwhile).
fn after_step_finished(run: &Run, step_slug: &str, steps: i32) -> QfResult<Option<Vec<String>>> {
    match runs::count_finished_steps_and_ready(run.run_id, &run.workflow_slug, step_slug, steps)? {
        None => Ok(None),
        Some((0, _)) => {
            finish_run(run)?;
            Ok(None)
        }
        Some((_, ready)) => Ok(Some(ready)),
    }
}

/// Every step of the run has finished: the run completes with its leaf steps' outputs, or
/// fails when they do not fit in one `jsonb`.
fn finish_run(run: &Run) -> QfResult<()> {
    match runs::complete_run(run.run_id)? {
        runs::RunCompletion::TooLarge(bytes) => {
            // Every step completed: the run fails, no step does.
            let message = QfError::OutputTooLarge(format!(
                "the run's output (its leaf steps' outputs) would be {bytes} bytes, \
                 more than a jsonb value holds ({JSONB_MAX_BYTES})"
            ));
            fail_run_only(run, &format!("run output: {message}"))?;
        }
        runs::RunCompletion::Completed(links) => {
            run.ended("completed");
            run_completed(run, links)?;
        }
    }
    Ok(())
}

/// After a run completed: its timer goes, and a child run completes its parent's task.
fn run_completed(run: &Run, links: runs::RunLinks) -> QfResult<()> {
    if let Some(timer) = links.timer_message_id {
        queue::archive_unless_held(&run.queue, vec![timer])?;
    }
    let Some(parent_task) = links.parent else {
        return Ok(());
    };
    let output = runs::output_of(run.run_id)?
        .ok_or_else(|| QfError::Internal(format!("completed run {} has no output", run.run_id)))?;
    let Some(is_map) = runs::complete_flow_task(&parent_task, run.run_id, output)? else {
        return Ok(()); // the parent ended, or moved on to another child
    };
    let Some((parent, _)) = Run::load(parent_task.run_id)? else {
        return Ok(());
    };
    task_completed(
        &parent,
        &parent_task.step_slug,
        parent_task.task_index,
        is_map,
    )
}

/// Fails `step_slug` and its run. `error` is what went wrong; the step and the run record it
/// after the step's name (`step <slug>: <error>`). True when this call failed the run (false:
/// it had ended already).
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
    run.emit(Some(step_slug), "failed");
    fail_run_only(run, message)
}

/// Fails a run (no step in particular) and does what follows: see `run_failed`.
fn fail_run_only(run: &Run, message: &str) -> QfResult<bool> {
    let failed = runs::fail_run(run.run_id, message)?;
    if failed {
        run.ended("failed");
        run_failed(run, message, true)?;
    }
    Ok(failed)
}

/// After a run failed (or was cancelled): its queued messages are archived, its concurrency
/// slots freed, its live children cancelled, and (with `tell_parent`) a child run's failure
/// is a failed attempt of its parent's task.
fn run_failed(run: &Run, message: &str, tell_parent: bool) -> QfResult<()> {
    if let Some((_, _, held)) = runs::release_run_slots(run.run_id)? {
        run.release(held);
    }
    queue::discard_run_messages(&run.queue, run.run_id)?;
    end_children(run.run_id)?;
    if !tell_parent {
        return Ok(());
    }
    let Some(parent_task) = runs::run_links(run.run_id)?.and_then(|l| l.parent) else {
        return Ok(());
    };
    child_failed(&parent_task, run.run_id, message)
}

/// Cancels a run's live children (and theirs). Children another transaction holds are left
/// to `maintain`, which cancels live runs whose parent has ended.
fn end_children(run_id: Uuid) -> QfResult<()> {
    for (child_id, workflow_slug) in runs::lock_live_children(run_id)? {
        let message = format!("cancelled: parent run {run_id} ended");
        if runs::fail_run(child_id, &message)? {
            let (child, _) = Run::load(child_id)?
                .ok_or_else(|| QfError::Internal(format!("child run {child_id} vanished")))?;
            debug_assert_eq!(child.workflow_slug, workflow_slug);
            child.ended("failed");
            run_failed(&child, &message, false)?;
        }
    }
    Ok(())
}

/// A child run failed: a failed attempt of the parent's sub-flow task. With attempts left, a
/// new child run starts after the step's backoff; otherwise the parent run fails.
fn child_failed(parent_task: &TaskKey, child: Uuid, message: &str) -> QfResult<()> {
    let error = format!("child run {child} failed: {message}");
    let Some(failed) = runs::fail_attempt(
        parent_task.run_id,
        &parent_task.step_slug,
        parent_task.task_index,
        &error,
        FailedBy::Child(child),
        true,
    )?
    else {
        return Ok(()); // the parent ended, or this child was not its current one
    };
    let parent = Run::new(parent_task.run_id, failed.workflow_slug, failed.key_value);
    if failed.status == "queued" {
        let delay = retry_delay_seconds(failed.base_delay, failed.attempts);
        return start_next_child(&parent, parent_task, delay);
    }
    fail_run_by_task(&parent, parent_task, failed.attempts, &error)?;
    Ok(())
}

/// Starts the next child run of a queued sub-flow task, `delay` seconds from now.
fn start_next_child(parent: &Run, task: &TaskKey, delay: i32) -> QfResult<()> {
    let step = flows::step_def(&parent.workflow_slug, &task.step_slug)?
        .ok_or_else(|| QfError::Internal(format!("step {:?} has no definition", task.step_slug)))?;
    let flow = step
        .flow
        .ok_or_else(|| QfError::Internal(format!("step {:?} is not a sub-flow", task.step_slug)))?;
    let input = runs::sub_flow_inputs(parent.run_id, &parent.workflow_slug, &task.step_slug)?
        .into_iter()
        .nth(task.task_index as usize)
        .ok_or_else(|| QfError::Internal(format!("no input for task {}", task.task_index)))?;
    let Some(child) = runs::next_child(task)? else {
        return Ok(());
    };
    let start_at = runs::seconds_from_now(delay)?;
    let started = start_run(&NewRun {
        run_id: child,
        workflow_slug: &flow,
        input,
        start_at: Some(start_at),
        parent: Some((parent.run_id, &task.step_slug, task.task_index)),
    });
    if let Err(e) = started {
        if matches!(e, QfError::Internal(_)) {
            return Err(e);
        }
        fail_run(
            parent,
            &task.step_slug,
            &format!("sub-flow {flow:?} could not start: {e}"),
        )?;
    }
    Ok(())
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
    /// The task's run has ended (completed, failed or cancelled).
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
        // a completed task was answered before, whatever became of its run since
        if task_status == "completed" {
            return Unchanged::Duplicate;
        }
        if run_status != "started" && run_status != "paused" {
            return Unchanged::RunEnded;
        }
        match (task_status, attempt) {
            ("failed", _) => Unchanged::Duplicate,
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
    // A started task with a child run is a sub-flow step's: no worker claims it, whatever
    // attempt the caller named.
    let sub_flow =
        found.child_run_id.is_some() && task_status == "started" && reason != Unchanged::RunEnded;
    let reason = if sub_flow {
        Unchanged::NotClaimed
    } else {
        reason
    };
    let why = match (reason, sub_flow) {
        (_, true) => {
            "the task is a sub-flow step's: its child run completes it, no worker claims it"
                .to_string()
        }
        (Unchanged::RunEnded, false) => format!("run {run_id} is {}", found.run_status),
        (Unchanged::Duplicate, false) => format!("the task is already {task_status}"),
        (Unchanged::StaleAttempt, false) => format!(
            "attempt {} is not the task's current claim (attempts made: {attempts}, task is {task_status})",
            attempt.map_or("NULL".to_string(), |a| a.to_string())
        ),
        (Unchanged::NotClaimed, false) => {
            "the task is queued, no worker holds a claim on it".to_string()
        }
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

/// One answer of `complete_tasks`.
pub struct Answer {
    pub run_id: Uuid,
    pub step_slug: String,
    pub task_index: i32,
    pub output: Jsonb,
    pub attempt: Option<i32>,
}

/// Completes a batch of claimed tasks in one call, each exactly as `complete_task` would
/// (true when this call completed it; false, with a NOTICE saying why, for a late or
/// duplicate answer, or a repeat of an earlier element). An element that names no run or no
/// task raises, and then nothing is completed. `call` names the SQL function in NOTICEs.
pub fn complete_tasks(call_name: &str, answers: Vec<Answer>) -> QfResult<Vec<bool>> {
    for a in &answers {
        check_output_size(a.run_id, &a.step_slug, a.task_index, a.output)?;
    }
    call(|| {
        let mut completed = vec![false; answers.len()];
        // Each workflow's answers are completed in one statement (it names the workflow's
        // queue), all workflows in one pass. Which workflow a run belongs to is remembered per
        // backend (unless the workflow's queue is gone: deleted with its runs); the runs this
        // backend does not remember are looked up first, in one query that locks nothing.
        // This call's workflows are kept here: remembering a run can start the backend's
        // memory over (`REMEMBERED_RUNS`), forgetting runs of this very batch.
        let all: Vec<usize> = (0..answers.len()).collect();
        let mut workflows: HashMap<Uuid, String> = HashMap::new();
        let mut unknown: Vec<Uuid> = Vec::new();
        // whether each remembered workflow's queue still exists, checked once per call
        let mut live: HashMap<String, bool> = HashMap::new();
        for run_id in run_ids_of(&answers, &all) {
            match remembered_workflow(run_id) {
                Some(w)
                    if *live
                        .entry(w.clone())
                        .or_insert_with(|| queue::table_exists(&w)) =>
                {
                    workflows.insert(run_id, w);
                }
                Some(_) => {
                    forget_workflow(run_id);
                    unknown.push(run_id);
                }
                None => unknown.push(run_id),
            }
        }
        let remembered: HashSet<Uuid> = workflows.keys().copied().collect();
        if !unknown.is_empty() {
            for (run_id, workflow_slug) in runs::workflows_of(&unknown)? {
                remember_workflow(run_id, workflow_slug.clone());
                workflows.insert(run_id, workflow_slug);
            }
        }
        complete_answers(
            &answers,
            &all,
            &|id| workflows.get(&id).cloned(),
            &mut completed,
        )?;
        // An answer that completed nothing although its run's workflow was remembered: a
        // remembered workflow is wrong only when a run was deleted and its id reused, so look
        // the runs up again, and try again only those whose workflow was not the remembered
        // one (a late or duplicate answer is answered by `explain_unchanged` below).
        let retry: Vec<usize> = all
            .into_iter()
            .filter(|&i| !completed[i] && remembered.contains(&answers[i].run_id))
            .collect();
        if !retry.is_empty() {
            let run_ids = run_ids_of(&answers, &retry);
            for id in &run_ids {
                forget_workflow(*id);
            }
            let mut moved: HashMap<Uuid, String> = HashMap::new();
            for (id, w) in runs::workflows_of(&run_ids)? {
                remember_workflow(id, w.clone());
                if workflows.get(&id) != Some(&w) {
                    moved.insert(id, w);
                }
            }
            let retry: Vec<usize> = retry
                .into_iter()
                .filter(|&i| moved.contains_key(&answers[i].run_id))
                .collect();
            if !retry.is_empty() {
                complete_answers(
                    &answers,
                    &retry,
                    &|id| moved.get(&id).cloned(),
                    &mut completed,
                )?;
            }
        }
        for (a, done) in answers.iter().zip(&completed) {
            if !done {
                explain_unchanged(call_name, a.run_id, &a.step_slug, a.task_index, a.attempt)?;
            }
        }
        Ok(completed)
    })
}

/// The distinct run ids, sorted, of the answers at positions `which`.
fn run_ids_of(answers: &[Answer], which: &[usize]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = which.iter().map(|&i| answers[i].run_id).collect();
    ids.sort();
    ids.dedup();
    ids
}

thread_local! {
    /// Run id -> workflow, for the runs this backend claimed or completed tasks of (a run
    /// never changes workflow; `complete_answers` checks it anyway).
    static RUN_WORKFLOWS: std::cell::RefCell<std::collections::HashMap<Uuid, String>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Runs remembered at most; past it the map starts over.
const REMEMBERED_RUNS: usize = 10_000;

fn remembered_workflow(run_id: Uuid) -> Option<String> {
    RUN_WORKFLOWS.with(|m| m.borrow().get(&run_id).cloned())
}

fn remember_workflow(run_id: Uuid, workflow_slug: String) {
    RUN_WORKFLOWS.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= REMEMBERED_RUNS {
            m.clear();
        }
        m.insert(run_id, workflow_slug);
    });
}

/// `remember_workflow`, without allocating when the run is remembered already.
fn remember_workflow_of(run_id: Uuid, workflow_slug: &str) {
    let known = RUN_WORKFLOWS.with(|m| m.borrow().get(&run_id).is_some_and(|w| w == workflow_slug));
    if !known {
        remember_workflow(run_id, workflow_slug.to_string());
    }
}

fn forget_workflow(run_id: Uuid) {
    RUN_WORKFLOWS.with(|m| m.borrow_mut().remove(&run_id));
}

/// Completes the answers at positions `which` whose run's workflow `workflow_of` knows, one
/// statement per workflow, and what follows (counts, finished steps, slots).
fn complete_answers(
    answers: &[Answer],
    which: &[usize],
    workflow_of: &dyn Fn(Uuid) -> Option<String>,
    completed: &mut [bool],
) -> QfResult<()> {
    let mut by_workflow: BTreeMap<String, Vec<queue::Answer>> = BTreeMap::new();
    for &ord in which {
        let a = &answers[ord];
        if let Some(workflow_slug) = workflow_of(a.run_id) {
            by_workflow
                .entry(workflow_slug)
                .or_default()
                .push(queue::Answer {
                    ord,
                    run_id: a.run_id,
                    step_slug: a.step_slug.clone(),
                    task_index: a.task_index,
                    output: a.output,
                    attempt: a.attempt,
                });
        }
    }
    for (workflow_slug, batch) in by_workflow {
        // Per step: tasks newly counted, and whether it is a map step (a map task counts on
        // its shard first: a step gets its shards' counts when they fill).
        let mut step_counts: BTreeMap<(Uuid, String), (i32, bool)> = BTreeMap::new();
        // Steps the completing statement counted itself (a single step's last task).
        let mut finished: Vec<(Uuid, String, bool)> = Vec::new();
        let mut keys: BTreeMap<Uuid, Option<String>> = BTreeMap::new();
        for c in queue::complete_batch(&workflow_slug, &batch)? {
            match c {
                queue::Completed::Task(d) => {
                    completed[d.ord] = true;
                    if let Some(value) = &d.key_value {
                        concurrency::released(&workflow_slug, value, 1);
                    }
                    keys.insert(d.run_id, d.key_value);
                    if let Some(done) = d.step_finished {
                        if done {
                            finished.push((d.run_id, d.step_slug, false));
                        }
                    } else if !d.is_map {
                        step_counts
                            .entry((d.run_id, d.step_slug))
                            .or_insert((0, false))
                            .0 += 1;
                    }
                }
                queue::Completed::ShardFull {
                    run_id,
                    step_slug,
                    tasks,
                } => {
                    step_counts
                        .entry((run_id, step_slug))
                        .or_insert((0, true))
                        .0 += tasks
                }
            }
        }
        if !step_counts.is_empty() {
            let counts: Vec<(Uuid, String, i32, bool)> = step_counts
                .into_iter()
                .map(|((run, step), (n, map))| (run, step, n, !map))
                .collect();
            finished.extend(runs::count_completed_tasks_of_steps(&counts)?);
            finished.sort();
        }
        for (run_id, step_slug, map) in finished {
            let key_value = keys.get(&run_id).cloned().flatten();
            let run = Run::new(run_id, workflow_slug.clone(), key_value);
            if let Started::Finished(ready) = finish_counted(&run, &step_slug, map)? {
                start_steps(&run, ready)?;
            }
        }
    }
    Ok(())
}

/// Counts a completed task; when it was its step's last, finishes the step and starts what
/// became ready.
fn task_completed(run: &Run, step_slug: &str, task_index: i32, is_map: bool) -> QfResult<()> {
    // A map task counts on its shard first; only a shard's last task touches the step row.
    let newly_counted = if is_map {
        runs::count_completed_shard_task(run.run_id, step_slug, task_index)?
    } else {
        Some(1)
    };
    let Some(n) = newly_counted else {
        return Ok(());
    };
    if let Some(Started::Finished(ready)) = count_and_follow(run, step_slug, n, is_map)? {
        start_steps(run, ready)?;
    }
    Ok(())
}

pub fn fail_task(
    run_id: Uuid,
    step_slug: &str,
    task_index: i32,
    error_message: &str,
    attempt: Option<i32>,
    retry: bool,
) -> QfResult<&'static str> {
    call(|| {
        let Some(failed) = runs::fail_attempt(
            run_id,
            step_slug,
            task_index,
            error_message,
            FailedBy::Worker { attempt },
            retry,
        )?
        else {
            explain_unchanged("fail_task", run_id, step_slug, task_index, attempt)?;
            return Ok("ignored");
        };
        let run = Run::new(run_id, failed.workflow_slug, failed.key_value);
        let message_id = failed.message_id.ok_or_else(|| {
            QfError::Internal(format!(
                "task {task_index} of step {step_slug:?} has no message"
            ))
        })?;
        if failed.status == "queued" {
            let delay = retry_delay_seconds(failed.base_delay, failed.attempts);
            queue::delay_message(&run.queue, message_id, delay)?;
            if delay == 0 {
                wakeup::notify_on_commit(&run.workflow_slug, 1);
            }
            return Ok("queued");
        }
        queue::archive(&run.queue, vec![message_id])?;
        run.release(1);
        let task = TaskKey {
            run_id,
            step_slug: step_slug.to_string(),
            task_index,
        };
        let error = if retry {
            error_message.to_string()
        } else {
            format!("{error_message} (not retried: the worker said the error is permanent)")
        };
        fail_run_by_task(&run, &task, failed.attempts, &error)?;
        Ok("failed")
    })
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
    // Whether the transaction held nothing but claims before this poll: see `claim_commit`.
    let claims_before = claim_commit::claims_only_so_far();
    loop {
        let round = || {
            call(|| {
                claim_once(
                    &queue,
                    workflow_slug,
                    options.timeout,
                    batch_size,
                    worker_id,
                )
            })
        };
        // A poll that may sleep runs each round in a subtransaction, and rolls back a round
        // that claimed and wrote nothing before it sleeps: see `in_subtransaction`.
        let round = if max_wait_ms > 0 {
            wakeup::prepare_to_wait(event);
            in_subtransaction(round, Round::did_something)?
        } else {
            round()?
        };
        let now = Instant::now();
        // A round that cleaned up (failed a run whose task timed out for the last time,
        // archived stale messages, parked a paused run's tasks, acted on a timer) returns at
        // once, so that its writes commit instead of waiting, uncommitted, with the poll.
        if round.did_something() || now >= deadline {
            if max_wait_ms > 0 {
                wakeup::done_waiting();
            }
            // Only this last round may have written: an earlier one did nothing (a waiting
            // poll rolled it back).
            claim_commit::poll_done(claims_before && !round.wrote);
            // The worker usually completes them on this connection: it then needs no lookup
            // of their runs' workflow.
            for task in &round.claimed {
                remember_workflow_of(task.run_id, workflow_slug);
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

/// Runs `work` in a subtransaction, kept when `keep` says so, rolled back otherwise and on
/// any error (which then propagates). A kept subtransaction that wrote takes an xid of its
/// own besides its parent's (a claiming round of a waiting poll: two per poll).
///
/// Why a waiting poll needs it: a round can hold row locks on messages it did not take. When
/// another poller's claim of a message commits between a round's snapshot and its `FOR UPDATE
/// SKIP LOCKED`, PostgreSQL locks the message's new version before re-checking it (it is no
/// longer visible, so the round skips it) and keeps that lock until the transaction ends. A
/// round that read a message whose task another transaction holds has hidden that message
/// too. Before the rollback, the poll slept up to `max_wait_ms` holding both: the claimant's
/// `complete_task` or `fail_task`, which deletes or moves that message, waited for the sleeper
/// (in a steady mixed load, task latency p95 55 ms and max 1 s with `max_wait_ms` 100 and
/// 1000). Rolling the empty round back releases those locks and shows the message again.
fn in_subtransaction<T>(
    work: impl FnOnce() -> QfResult<T>,
    keep: impl FnOnce(&T) -> bool,
) -> QfResult<T> {
    // As PL/pgSQL's exception blocks do: the caller's memory context and resource owner stay
    // current, so what `work` returns outlives the subtransaction.
    let (context, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    let restore = move || unsafe {
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    };
    unsafe { pg_sys::BeginInternalSubTransaction(std::ptr::null()) };
    restore();
    let result = PgTryBuilder::new(AssertUnwindSafe(work))
        .catch_others(|error| {
            // A PostgreSQL error or a panic inside the round: undo the subtransaction before
            // the error goes on, so that a caller's own subtransaction (a PL/pgSQL exception
            // block around the poll) finds itself current when it rolls back.
            unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
            restore();
            error.rethrow()
        })
        .execute();
    match &result {
        Ok(value) if keep(value) => unsafe { pg_sys::ReleaseCurrentSubTransaction() },
        _ => unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() },
    }
    restore();
    result
}

/// What one claim round did.
struct Round {
    claimed: Vec<ClaimedTask>,
    /// Whether it wrote anything besides claims (failed runs, archived or parked messages,
    /// a big map's next chunk of tasks): then the poll's commit waits for its WAL flush (see
    /// `claim_commit`).
    wrote: bool,
}

impl Round {
    /// Whether the round claimed or wrote anything: then the poll returns, and a waiting
    /// poll keeps the round's subtransaction.
    fn did_something(&self) -> bool {
        !self.claimed.is_empty() || self.wrote
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
) -> QfResult<Round> {
    let mut wrote = false;
    let polled = queue::read_and_claim(
        queue,
        workflow_slug,
        workflow_timeout,
        batch_size,
        worker_id,
        FAIR_POLLING.get(),
        |others| {
            let mut first = Cleanup::default();
            for p in others {
                first.add(p);
            }
            wrote |= !first.is_empty();
            first.apply(queue, workflow_slug).map(|_| ())
        },
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
    wrote |= !cleanup.is_empty();
    cleanup.apply(queue, workflow_slug)?;
    // Last, a big map's next chunk of tasks (usually there is none: one index probe): it
    // locks the step's row, and nothing above may wait for a step row while we hold it. A
    // round that wrote one returns even if it claimed nothing, so that the chunk commits
    // (and the row is released) instead of waiting with the poll.
    let fanned = queue::continue_fan_out(queue, workflow_slug, batch_size)?;
    if fanned.created > 0 {
        wakeup::notify_on_commit(workflow_slug, fanned.created.unsigned_abs());
    }
    wrote |= fanned.wrote();
    Ok(Round { claimed, wrote })
}

/// What a poll or `maintain` found besides claimable tasks, to be dealt with in one place.
#[derive(Default)]
pub struct Cleanup {
    pub timed_out: Vec<TaskKey>,
    pub exhausted: Vec<Exhausted>,
    pub stale: Vec<i64>,
    pub parked: Vec<i64>,
    pub timers: Vec<Timer>,
}

/// What `Cleanup::apply` ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Runs failed because a task's last attempt timed out.
    pub runs_failed: usize,
    /// Runs failed by a due timer (`run_timeout`, `event_timeout`).
    pub timers_fired: usize,
}

impl Cleanup {
    pub fn add(&mut self, polled: Polled) {
        match polled {
            Polled::TimedOut(task) => self.timed_out.push(task),
            Polled::Exhausted(e) => self.exhausted.push(e),
            Polled::Stale { message_id } => self.stale.push(message_id),
            Polled::Parked { message_id } => self.parked.push(message_id),
            Polled::Timer(t) => self.timers.push(t),
            Polled::Claimed { .. } => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.timed_out.is_empty()
            && self.exhausted.is_empty()
            && self.stale.is_empty()
            && self.parked.is_empty()
            && self.timers.is_empty()
    }

    /// Requeues timed-out claims, fails the runs of exhausted tasks and of due timers (in
    /// `run_id` order: see the lock order above), parks paused runs' messages, archives stale
    /// messages.
    pub fn apply(mut self, queue: &str, workflow_slug: &str) -> QfResult<Applied> {
        let mut applied = Applied::default();
        if !self.timed_out.is_empty() {
            runs::requeue_timed_out(&self.timed_out)?;
            wakeup::notify_on_commit(
                workflow_slug,
                u32::try_from(self.timed_out.len()).unwrap_or(u32::MAX),
            );
        }
        if !self.parked.is_empty() {
            queue::park(queue, std::mem::take(&mut self.parked))?;
        }
        self.exhausted.sort_by(|a, b| a.task.cmp(&b.task));
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
            let Some((run, _)) = Run::load(e.task.run_id)? else {
                continue;
            };
            run.release(1);
            if fail_run_by_task(&run, &e.task, e.attempts, &message)? {
                applied.runs_failed += 1;
            }
        }
        self.timers.sort();
        for timer in &self.timers {
            if fire_timer(timer)? {
                applied.timers_fired += 1;
            }
            queue::archive(queue, vec![timer.message_id])?;
        }
        if !self.stale.is_empty() {
            queue::archive(queue, self.stale)?;
        }
        Ok(applied)
    }
}

/// Acts on a due timer: fails its run when the run's deadline passed, or when its event step
/// is still waiting for its event. True when it failed the run; false for a timer that is no
/// longer needed (the event arrived, the run ended or was retried with a new deadline).
fn fire_timer(timer: &Timer) -> QfResult<bool> {
    let Some((run, _)) = Run::load(timer.run_id)? else {
        return Ok(false);
    };
    match &timer.step_slug {
        None => {
            let Some(secs) = runs::run_timer_due(timer)? else {
                return Ok(false);
            };
            let message =
                format!("{RUN_TIMEOUT}: the run did not finish within its {secs}s run_timeout");
            fail_run_only(&run, &message)
        }
        Some(step) => {
            let Some(secs) = runs::fail_event_task(timer, step)? else {
                return Ok(false);
            };
            let message =
                format!("{EVENT_TIMEOUT}: no event arrived within the step's {secs}s timeout");
            fail_run(&run, step, &message)
        }
    }
}

/// Fails a started or paused run on request: its status becomes `failed` with the error
/// message `cancelled: <reason>`, its queued messages are archived and its child runs
/// cancelled. False when the run had ended already.
pub fn cancel_run(run_id: Uuid, reason: &str) -> QfResult<bool> {
    call(|| {
        let Some((run, _)) = Run::load(run_id)? else {
            return Err(QfError::run_not_found(run_id));
        };
        fail_run_only(&run, &format!("cancelled: {reason}"))
    })
}

/// Maintenance: cancels live runs whose parent ended (a parent that ends cancels its
/// children, except those another transaction held at that moment). Returns how many.
pub fn cancel_orphans(limit: i32) -> QfResult<usize> {
    call(|| {
        let mut cancelled = 0;
        for (child_id, workflow_slug, parent_id, parent_status) in runs::lock_orphans(limit)? {
            let message = format!("cancelled: parent run {parent_id} is {parent_status}");
            if runs::fail_run(child_id, &message)? {
                let child = Run::load(child_id)?
                    .map(|(r, _)| r)
                    .unwrap_or_else(|| Run::new(child_id, workflow_slug, None));
                child.ended("failed");
                run_failed(&child, &message, false)?;
                cancelled += 1;
            }
        }
        Ok(cancelled)
    })
}

/// Delivers an event to an event step: completes it when it is waiting (true), keeps it for
/// when the step becomes ready (true), or changes nothing for a duplicate or an ended run
/// (false, with a NOTICE saying which).
pub fn send_event(run_id: Uuid, step_slug: &str, payload: Jsonb) -> QfResult<bool> {
    call(|| {
        let Some(target) = runs::event_target(run_id, step_slug)? else {
            return Err(QfError::run_not_found(run_id));
        };
        let Some((step_type, _, _)) = &target.step else {
            let slugs = flows::step_slugs(&target.workflow_slug)?;
            let hint =
                crate::engine::suggest::did_you_mean(step_slug, slugs.iter().map(String::as_str));
            return Err(QfError::StepNotFound(format!(
                "workflow {:?} has no step {step_slug:?}",
                target.workflow_slug
            ))
            .with_hint(hint));
        };
        if step_type != "event" {
            return Err(QfError::NotAnEventStep(format!(
                "step {step_slug:?} of workflow {:?} is a {step_type} step; only event steps \
                 take events",
                target.workflow_slug
            )));
        }
        let run = Run::new(run_id, target.workflow_slug.clone(), None);
        let completed = |payload: Jsonb| -> QfResult<bool> {
            let Some(timer) = runs::complete_event_task(run_id, step_slug, payload)? else {
                return Ok(false);
            };
            queue::archive_unless_held(&run.queue, vec![timer])?;
            let Some((run, _)) = Run::load(run_id)? else {
                return Ok(true);
            };
            task_completed(&run, step_slug, 0, false)?;
            Ok(true)
        };
        // The step waits for the event, or is not ready yet (then the event is kept), or
        // became ready between those two statements (then it waits now).
        if completed(payload)? || runs::store_early_event(run_id, step_slug, payload)? {
            return Ok(true);
        }
        if completed(payload)? {
            return Ok(true);
        }
        let why = match runs::event_target(run_id, step_slug)? {
            Some(t) if t.run_status != "started" && t.run_status != "paused" => {
                format!("run_ended: run {run_id} is {}", t.run_status)
            }
            Some(runs::EventTarget {
                step: Some((_, status, _)),
                ..
            }) if status == "skipped" => "skipped: the step was skipped".to_string(),
            Some(runs::EventTarget {
                step: Some((_, status, _)),
                ..
            }) if status == "completed" => {
                "duplicate: the step has completed with an earlier event".to_string()
            }
            _ => "duplicate: the step is not ready yet and already has an event".to_string(),
        };
        pgrx::notice!("{why}; send_event for step {step_slug:?} of run {run_id} changed nothing");
        Ok(false)
    })
}

/// Pauses a started run: its tasks are not handed out until `resume_run` (claims in flight
/// may still answer). True when this call paused it.
pub fn pause_run(run_id: Uuid) -> QfResult<bool> {
    call(|| {
        let Some((run, _)) = Run::load(run_id)? else {
            return Err(QfError::run_not_found(run_id));
        };
        if !runs::set_run_status(run_id, "started", "paused")? {
            return Ok(false);
        }
        queue::park_run(&run.queue, run_id)?;
        run.emit(None, "paused");
        Ok(true)
    })
}

/// Resumes a paused run: its parked tasks are visible again. True when this call resumed it.
pub fn resume_run(run_id: Uuid) -> QfResult<bool> {
    call(|| {
        let Some((run, status)) = Run::load(run_id)? else {
            return Err(QfError::run_not_found(run_id));
        };
        if status != "paused" {
            return Ok(false);
        }
        // messages first (lock order), then the run
        queue::unpark_run(&run.queue, run_id)?;
        if !runs::set_run_status(run_id, "paused", "started")? {
            return Ok(false);
        }
        // Once more, in a new snapshot: a message given to one of the run's tasks meanwhile
        // (by a call that does not wait for the run's row, such as another run's completion
        // admitting a task of this run's concurrency key) may have been parked by a poll that
        // read the run as paused. Polls that read it now wait for this commit.
        queue::unpark_run(&run.queue, run_id)?;
        run.emit(None, "started");
        wakeup::notify_on_commit(&run.workflow_slug, wakeup::EVERY_SLEEPER);
        Ok(true)
    })
}

/// Starts a failed (or cancelled) run again from its failed and unfinished steps, keeping
/// every completed step and task output: each unfinished task gets a fresh set of attempts,
/// steps that were ready but had no tasks start again, and the run gets a new deadline.
/// False when the run was not failed.
pub fn retry_run(run_id: Uuid) -> QfResult<bool> {
    call(|| {
        let Some((run, status)) = Run::load(run_id)? else {
            return Err(QfError::run_not_found(run_id));
        };
        if status == "failed" {
            queue::drop_archived_run_messages(&run.queue, run_id)?;
        }
        let Some((key_value, has_deadline)) = runs::reopen_run(run_id)? else {
            return Ok(false);
        };
        let run = Run::new(run_id, run.workflow_slug, key_value);
        run.emit(None, "started");
        if has_deadline {
            queue::start_run_timer(&run.queue, run_id)?;
        }
        let mut workers = false;
        for (task, kind) in runs::reopen_tasks(run_id)? {
            match kind.as_str() {
                "event" => runs::rearm_event_task(&run.queue, run_id, &task.step_slug)?,
                "flow" => start_next_child(&run, &task, 0)?,
                _ => workers = true,
            }
        }
        if workers {
            runs::requeue_worker_tasks(&run.queue, run_id, run.key())?;
            if let Some((workflow_slug, value)) = run.key() {
                concurrency::waiting(workflow_slug, value);
            }
        }
        runs::resume_fan_outs(run_id)?;
        let counted = runs::reopen_counted_map_steps(run_id)?;
        runs::recount_run(run_id)?;
        start_steps(&run, runs::reopen_taskless_steps(run_id)?)?;
        // Work that failed after every task had answered has nothing to queue: it is done
        // again now (a map step's output, then the run's), and ends as it will.
        for step in counted {
            if run.ended_in_call() {
                break;
            }
            if let Started::Finished(ready) = finish_counted(&run, &step, true)? {
                start_steps(&run, ready)?;
            }
        }
        if !run.ended_in_call() && runs::remaining_steps(run_id)? == Some(0) {
            finish_run(&run)?;
        }
        wakeup::notify_on_commit(&run.workflow_slug, wakeup::EVERY_SLEEPER);
        Ok(true)
    })
}

/// `get_run`'s document; with `include_tasks`, each step lists its tasks.
pub fn run_document(run_id: Uuid, include_tasks: bool) -> QfResult<Jsonb> {
    let tasks = if include_tasks {
        let Some((run, _)) = Run::load(run_id)? else {
            return Err(QfError::run_not_found(run_id));
        };
        Some(runs::task_list(&queue::table_of(&run.queue), run_id)?)
    } else {
        None
    };
    runs::run_document(run_id, tasks)?.ok_or_else(|| QfError::run_not_found(run_id))
}

/// Waits until the run has ended (completed or failed), woken by the commit that ended it,
/// or until `max_wait_ms` has passed, and returns `get_run`'s document either way.
pub fn wait_run(run_id: Uuid, max_wait_ms: i32) -> QfResult<Jsonb> {
    let event = wakeup::run_wait_event(&run_wait_key(run_id));
    let deadline = Instant::now() + Duration::from_millis(max_wait_ms.max(0) as u64);
    loop {
        if max_wait_ms > 0 {
            wakeup::prepare_to_wait(event);
        }
        let status = runs::status_of(run_id)?.map(|(status, _, _)| status);
        let now = Instant::now();
        match status {
            None => {
                wakeup::done_waiting();
                return Err(QfError::run_not_found(run_id));
            }
            Some(s) if s == "completed" || s == "failed" || now >= deadline => {
                wakeup::done_waiting();
                return run_document(run_id, false);
            }
            Some(_) => wakeup::wait_for_work(event, (deadline - now).as_millis() as i64),
        }
    }
}

/// `metrics()`: `workflow_stats` in the Prometheus text exposition format.
pub fn metrics() -> QfResult<String> {
    use std::fmt::Write;
    let stats = runs::workflow_stats()?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP quantum_flow_runs Runs kept, by workflow and status."
    );
    let _ = writeln!(out, "# TYPE quantum_flow_runs gauge");
    for w in &stats {
        for (status, n) in w.runs {
            let _ = writeln!(
                out,
                "quantum_flow_runs{{workflow=\"{}\",status=\"{status}\"}} {n}",
                w.workflow_slug
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP quantum_flow_tasks Tasks by workflow and status: queued and started of live runs, failed of runs kept."
    );
    let _ = writeln!(out, "# TYPE quantum_flow_tasks gauge");
    for w in &stats {
        for (status, n) in w.tasks {
            let _ = writeln!(
                out,
                "quantum_flow_tasks{{workflow=\"{}\",status=\"{status}\"}} {n}",
                w.workflow_slug
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP quantum_flow_oldest_queued_task_age_seconds How long the oldest claimable task has been claimable (0: none)."
    );
    let _ = writeln!(
        out,
        "# TYPE quantum_flow_oldest_queued_task_age_seconds gauge"
    );
    for w in &stats {
        let age = w.oldest_queued_seconds.unwrap_or(0.0).max(0.0);
        let _ = writeln!(
            out,
            "quantum_flow_oldest_queued_task_age_seconds{{workflow=\"{}\"}} {age:.3}",
            w.workflow_slug
        );
    }
    let _ = writeln!(
        out,
        "# HELP quantum_flow_tasks_completed_last_minute Tasks completed in the last minute."
    );
    let _ = writeln!(out, "# TYPE quantum_flow_tasks_completed_last_minute gauge");
    for w in &stats {
        let _ = writeln!(
            out,
            "quantum_flow_tasks_completed_last_minute{{workflow=\"{}\"}} {}",
            w.workflow_slug, w.completed_last_minute
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Unchanged::{self, *};

    #[test]
    fn reasons_for_answers_that_change_nothing() {
        let c = Unchanged::classify;
        assert_eq!(c("failed", "started", 1, Some(1)), RunEnded);
        assert_eq!(c("completed", "completed", 1, None), Duplicate);
        assert_eq!(c("failed", "queued", 1, None), RunEnded);
        assert_eq!(c("failed", "failed", 2, Some(2)), RunEnded);
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
