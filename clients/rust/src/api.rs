//! One async function per SQL function of the API. Each works on any
//! [`tokio_postgres::GenericClient`] the caller owns (a `Client` or a `Transaction`), binds
//! every value as a parameter, and decodes the result into the crate's types.

use crate::error::{Error, Result};
use crate::types::{
    FailOutcome, FlowDefinition, FlowValidation, Run, Step, StepType, Task, WhenUnmet, Workflow,
};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

/// Options of `create_flow`. `None` leaves the server default (3 attempts, 30 s timeout,
/// 1 s base delay, no run timeout, no concurrency limit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowOptions {
    pub max_attempts: Option<i32>,
    /// Seconds a claimed task may run before it is handed to another worker.
    pub timeout: Option<i32>,
    /// Seconds; attempt `n` is retried after `base_delay * 2^(n-1)`.
    pub base_delay: Option<i32>,
    /// Seconds a run may take; past it the run fails with `run_timeout`.
    pub run_timeout: Option<i32>,
    /// A top-level key of the flow input (e.g. `tenant_id`) and how many tasks of runs with
    /// the same value of it may be claimed (have a queue message) at once.
    pub concurrency: Option<(String, i32)>,
}

impl FlowOptions {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = Some(n);
        self
    }
    pub fn timeout(mut self, seconds: i32) -> Self {
        self.timeout = Some(seconds);
        self
    }
    pub fn base_delay(mut self, seconds: i32) -> Self {
        self.base_delay = Some(seconds);
        self
    }
    pub fn run_timeout(mut self, seconds: i32) -> Self {
        self.run_timeout = Some(seconds);
        self
    }
    /// At most `max_concurrency` tasks of runs whose input has the same value at `key`.
    pub fn concurrency(mut self, key: impl Into<String>, max_concurrency: i32) -> Self {
        self.concurrency = Some((key.into(), max_concurrency));
        self
    }
}

/// Options of `add_step`. The retry options left `None` inherit the workflow's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepOptions {
    pub depends_on: Vec<String>,
    pub step_type: StepType,
    /// Map steps only: the expected task count, shown by progress before it is known.
    pub initial_tasks: Option<i32>,
    pub max_attempts: Option<i32>,
    pub timeout: Option<i32>,
    pub base_delay: Option<i32>,
    /// The step runs only if its input contains this JSON (`@>`) when it becomes ready ...
    pub if_matches: Option<Value>,
    /// ... and does not contain this.
    pub if_not_matches: Option<Value>,
    /// What happens when the condition is not met.
    pub when_unmet: WhenUnmet,
    /// Seconds between the step becoming ready and its tasks becoming visible.
    pub start_delay: Option<i32>,
    /// A sub-flow step: each task is a run of this workflow (its output is the child's).
    pub flow: Option<String>,
}

impl StepOptions {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn depends_on<I, S>(mut self, deps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.depends_on = deps.into_iter().map(Into::into).collect();
        self
    }
    pub fn step_type(mut self, step_type: StepType) -> Self {
        self.step_type = step_type;
        self
    }
    /// Shorthand for `step_type(StepType::Map)`.
    pub fn map(self) -> Self {
        self.step_type(StepType::Map)
    }
    pub fn initial_tasks(mut self, n: i32) -> Self {
        self.initial_tasks = Some(n);
        self
    }
    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = Some(n);
        self
    }
    pub fn timeout(mut self, seconds: i32) -> Self {
        self.timeout = Some(seconds);
        self
    }
    pub fn base_delay(mut self, seconds: i32) -> Self {
        self.base_delay = Some(seconds);
        self
    }
    /// Shorthand for `step_type(StepType::Event)`: completed by `send_event`.
    pub fn event(self) -> Self {
        self.step_type(StepType::Event)
    }
    pub fn if_matches(mut self, pattern: Value) -> Self {
        self.if_matches = Some(pattern);
        self
    }
    pub fn if_not_matches(mut self, pattern: Value) -> Self {
        self.if_not_matches = Some(pattern);
        self
    }
    pub fn when_unmet(mut self, when_unmet: WhenUnmet) -> Self {
        self.when_unmet = when_unmet;
        self
    }
    pub fn start_delay(mut self, seconds: i32) -> Self {
        self.start_delay = Some(seconds);
        self
    }
    pub fn flow(mut self, workflow_slug: impl Into<String>) -> Self {
        self.flow = Some(workflow_slug.into());
        self
    }
}

/// Options of `poll_tasks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollOptions {
    /// At most this many tasks are claimed (>= 1).
    pub batch_size: i32,
    /// How long to wait for work when none is ready (0: return at once).
    pub max_wait_ms: i32,
    /// Recorded with the claimed tasks.
    pub worker_id: Option<String>,
}

impl Default for PollOptions {
    fn default() -> Self {
        PollOptions {
            batch_size: 10,
            max_wait_ms: 0,
            worker_id: None,
        }
    }
}

const WORKFLOW_COLUMNS: &str = "workflow_slug, max_attempts, timeout, base_delay, created_at, \
                                description, run_timeout, concurrency_key, max_concurrency";
const STEP_COLUMNS: &str = "workflow_slug, step_slug, step_type, step_index, deps_count, \
                            initial_tasks, max_attempts, timeout, base_delay, description, \
                            if_matches, if_not_matches, when_unmet, start_delay, flow";

fn workflow_from_row(row: &Row) -> Result<Workflow> {
    Ok(Workflow {
        workflow_slug: row.try_get("workflow_slug")?,
        max_attempts: row.try_get("max_attempts")?,
        timeout: row.try_get("timeout")?,
        base_delay: row.try_get("base_delay")?,
        created_at: row.try_get("created_at")?,
        description: row.try_get("description")?,
        run_timeout: row.try_get("run_timeout")?,
        concurrency_key: row.try_get("concurrency_key")?,
        max_concurrency: row.try_get("max_concurrency")?,
    })
}

fn step_from_row(row: &Row) -> Result<Step> {
    let step_type: String = row.try_get("step_type")?;
    let when_unmet: String = row.try_get("when_unmet")?;
    Ok(Step {
        workflow_slug: row.try_get("workflow_slug")?,
        step_slug: row.try_get("step_slug")?,
        step_type: StepType::parse(&step_type)
            .ok_or_else(|| Error::Decode(format!("unknown step_type {step_type:?}")))?,
        step_index: row.try_get("step_index")?,
        deps_count: row.try_get("deps_count")?,
        initial_tasks: row.try_get("initial_tasks")?,
        max_attempts: row.try_get("max_attempts")?,
        timeout: row.try_get("timeout")?,
        base_delay: row.try_get("base_delay")?,
        description: row.try_get("description")?,
        if_matches: row.try_get("if_matches")?,
        if_not_matches: row.try_get("if_not_matches")?,
        when_unmet: WhenUnmet::parse(&when_unmet)
            .ok_or_else(|| Error::Decode(format!("unknown when_unmet {when_unmet:?}")))?,
        start_delay: row.try_get("start_delay")?,
        flow: row.try_get("flow")?,
    })
}

/// Creates a workflow and its queue. Again with the same options it returns the existing row;
/// other options raise `workflow_exists`.
pub async fn create_flow<C: GenericClient>(
    client: &C,
    workflow_slug: &str,
    options: &FlowOptions,
) -> Result<Workflow> {
    // Only the options that are set are passed (by name, with fixed names), so the server's
    // defaults apply to the others.
    let mut args = vec!["$1".to_string()];
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&workflow_slug];
    for (name, value) in [
        ("max_attempts", &options.max_attempts),
        ("timeout", &options.timeout),
        ("base_delay", &options.base_delay),
        ("run_timeout", &options.run_timeout),
    ] {
        if let Some(v) = value {
            params.push(v);
            args.push(format!("{name} => ${}", params.len()));
        }
    }
    if let Some((key, max)) = &options.concurrency {
        params.push(key);
        args.push(format!("concurrency_key => ${}", params.len()));
        params.push(max);
        args.push(format!("max_concurrency => ${}", params.len()));
    }
    let sql = format!(
        "SELECT {WORKFLOW_COLUMNS} FROM quantum_flow.create_flow({})",
        args.join(", ")
    );
    let row = client.query_one(&sql, &params).await?;
    workflow_from_row(&row)
}

/// Adds a step to a workflow. Again with an identical definition it returns the existing
/// row; a different one raises `step_exists`.
pub async fn add_step<C: GenericClient>(
    client: &C,
    workflow_slug: &str,
    step_slug: &str,
    options: &StepOptions,
) -> Result<Step> {
    let sql = format!(
        "SELECT {STEP_COLUMNS} FROM quantum_flow.add_step($1, $2, $3::text[], $4, $5, $6, $7, $8, \
                $9::jsonb, $10::jsonb, $11, $12, $13)"
    );
    let row = client
        .query_one(
            &sql,
            &[
                &workflow_slug,
                &step_slug,
                &options.depends_on,
                &options.step_type.as_str(),
                &options.initial_tasks,
                &options.max_attempts,
                &options.timeout,
                &options.base_delay,
                &options.if_matches,
                &options.if_not_matches,
                &options.when_unmet.as_str(),
                &options.start_delay,
                &options.flow,
            ],
        )
        .await?;
    step_from_row(&row)
}

/// Every workflow, ordered by slug.
pub async fn list_flows<C: GenericClient>(client: &C) -> Result<Vec<Workflow>> {
    let sql = format!("SELECT {WORKFLOW_COLUMNS} FROM quantum_flow.list_flows()");
    client
        .query(&sql, &[])
        .await?
        .iter()
        .map(workflow_from_row)
        .collect()
}

/// A workflow and its steps, as the server's JSON document.
pub async fn get_flow_document<C: GenericClient>(client: &C, workflow_slug: &str) -> Result<Value> {
    let row = client
        .query_one("SELECT quantum_flow.get_flow($1)", &[&workflow_slug])
        .await?;
    Ok(row.try_get(0)?)
}

/// A workflow and its steps (`workflow_not_found` if there is no such workflow).
pub async fn get_flow<C: GenericClient>(client: &C, workflow_slug: &str) -> Result<FlowDefinition> {
    Ok(serde_json::from_value(
        get_flow_document(client, workflow_slug).await?,
    )?)
}

/// Removes a workflow, its runs, tasks and queue (`workflow_has_active_runs` while a run of
/// it is started).
pub async fn delete_flow<C: GenericClient>(client: &C, workflow_slug: &str) -> Result<()> {
    client
        .execute("SELECT quantum_flow.delete_flow($1)", &[&workflow_slug])
        .await?;
    Ok(())
}

/// Every problem of a workflow document at once (`validate_flow`): each with its JSONPath,
/// code, message and hint. Writes nothing; a bad document is an answer, not an error.
pub async fn validate_flow<C: GenericClient>(
    client: &C,
    document: &Value,
) -> Result<FlowValidation> {
    let row = client
        .query_one("SELECT quantum_flow.validate_flow($1::jsonb)", &[document])
        .await?;
    Ok(serde_json::from_value(row.try_get(0)?)?)
}

/// [`validate_flow`] of JSON text, sent to the server as it is (text that is not JSON at all
/// is `Error::Db` with SQLSTATE 22P02, from PostgreSQL's `jsonb` input).
pub async fn validate_flow_json<C: GenericClient>(
    client: &C,
    json: &str,
) -> Result<FlowValidation> {
    let row = client
        .query_one(
            "SELECT quantum_flow.validate_flow($1::text::jsonb)",
            &[&json],
        )
        .await?;
    Ok(serde_json::from_value(row.try_get(0)?)?)
}

/// Creates a workflow and all its steps from one document (`define_flow`), in one statement:
/// all or nothing. The same document again returns the existing workflow unchanged. A bad
/// document is `Error::Api` with its first problem's code (and path, at the start of the
/// message's explanation); [`Error::problems`](crate::Error::problems) gives all of them.
pub async fn define_flow<C: GenericClient>(client: &C, document: &Value) -> Result<FlowDefinition> {
    let row = client
        .query_one("SELECT quantum_flow.define_flow($1::jsonb)", &[document])
        .await?;
    Ok(serde_json::from_value(row.try_get(0)?)?)
}

/// [`define_flow`] of JSON text (what an LLM wrote), sent to the server as it is: the
/// client reads nothing of it, so its verdict is the server's (text that is not JSON at all
/// is `Error::Db` with SQLSTATE 22P02, from PostgreSQL's `jsonb` input).
pub async fn define_from_json<C: GenericClient>(client: &C, json: &str) -> Result<FlowDefinition> {
    let row = client
        .query_one("SELECT quantum_flow.define_flow($1::text::jsonb)", &[&json])
        .await?;
    Ok(serde_json::from_value(row.try_get(0)?)?)
}

/// A workflow as a document (`export_flow`): `define_flow` of it is a no-op.
pub async fn export_flow<C: GenericClient>(client: &C, workflow_slug: &str) -> Result<Value> {
    let row = client
        .query_one("SELECT quantum_flow.export_flow($1)", &[&workflow_slug])
        .await?;
    Ok(row.try_get(0)?)
}

/// How [`flow_graph`] draws a workflow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum GraphFormat {
    /// A Mermaid `flowchart`.
    #[default]
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

impl GraphFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            GraphFormat::Mermaid => "mermaid",
            GraphFormat::Dot => "dot",
        }
    }
}

/// The workflow's graph as text (`flow_graph`); with `run_id`, each step shows that run's
/// status and completed/total tasks.
pub async fn flow_graph<C: GenericClient>(
    client: &C,
    workflow_slug: &str,
    format: GraphFormat,
    run_id: Option<Uuid>,
) -> Result<String> {
    let row = client
        .query_one(
            "SELECT quantum_flow.flow_graph($1, $2, $3::uuid)",
            &[&workflow_slug, &format.as_str(), &run_id],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// The JSON Schema (draft 2020-12) of a workflow document (`flow_schema`), to give an LLM
/// as a structured-output schema.
pub async fn flow_schema<C: GenericClient>(client: &C) -> Result<Value> {
    let row = client
        .query_one("SELECT quantum_flow.flow_schema()", &[])
        .await?;
    Ok(row.try_get(0)?)
}

/// Whether the server accepts `slug` as a workflow slug (no side effects).
pub async fn is_valid_slug<C: GenericClient>(client: &C, slug: &str) -> Result<bool> {
    let row = client
        .query_one("SELECT quantum_flow.is_valid_slug($1)", &[&slug])
        .await?;
    Ok(row.try_get(0)?)
}

/// Starts a run; `run_id` lets the caller choose its id (`run_exists` if taken).
pub async fn start_flow<C: GenericClient>(
    client: &C,
    workflow_slug: &str,
    input: &Value,
    run_id: Option<Uuid>,
) -> Result<Uuid> {
    let row = client
        .query_one(
            "SELECT quantum_flow.start_flow($1, $2::jsonb, $3::uuid)",
            &[&workflow_slug, input, &run_id],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Starts a run whose first tasks become visible at `start_at` (a scheduled run; it is
/// `started` meanwhile). `run_id` as for [`start_flow`].
pub async fn start_flow_at<C: GenericClient>(
    client: &C,
    workflow_slug: &str,
    input: &Value,
    run_id: Option<Uuid>,
    start_at: DateTime<Utc>,
) -> Result<Uuid> {
    let row = client
        .query_one(
            "SELECT quantum_flow.start_flow($1, $2::jsonb, $3::uuid, $4::timestamptz)",
            &[&workflow_slug, input, &run_id, &start_at],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Claims up to `batch_size` ready tasks of a workflow (see [`PollOptions`]). With
/// `max_wait_ms > 0` the call waits server-side: run it outside an explicit transaction.
pub async fn poll_tasks<C: GenericClient>(
    client: &C,
    workflow_slug: &str,
    options: &PollOptions,
) -> Result<Vec<Task>> {
    let rows = client
        .query(
            "SELECT run_id, step_slug, task_index, attempt, input \
             FROM quantum_flow.poll_tasks($1, $2, $3, $4)",
            &[
                &workflow_slug,
                &options.batch_size,
                &options.max_wait_ms,
                &options.worker_id,
            ],
        )
        .await?;
    rows.iter().map(task_from_row).collect()
}

pub(crate) fn task_from_row(row: &Row) -> Result<Task> {
    Ok(Task {
        run_id: row.try_get("run_id")?,
        step_slug: row.try_get("step_slug")?,
        task_index: row.try_get("task_index")?,
        attempt: row.try_get("attempt")?,
        input: row.try_get("input")?,
    })
}

/// Completes a claimed task. True when this call completed it; false for a late or duplicate
/// call. Pass the `attempt` that `poll_tasks` returned so that an answer for an attempt that
/// timed out and was handed on does not count.
pub async fn complete_task<C: GenericClient>(
    client: &C,
    run_id: Uuid,
    step_slug: &str,
    task_index: i32,
    output: &Value,
    attempt: Option<i32>,
) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT quantum_flow.complete_task($1, $2, $3, $4::jsonb, $5)",
            &[&run_id, &step_slug, &task_index, output, &attempt],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// One answer of [`complete_tasks`].
#[derive(Debug, Clone, PartialEq)]
pub struct TaskAnswer {
    pub run_id: Uuid,
    pub step_slug: String,
    pub task_index: i32,
    pub output: Value,
    /// The attempt `poll_tasks` returned (None: no check).
    pub attempt: Option<i32>,
}

impl TaskAnswer {
    /// The answer for `task`'s attempt.
    pub fn new(task: &Task, output: Value) -> Self {
        TaskAnswer {
            run_id: task.run_id,
            step_slug: task.step_slug.clone(),
            task_index: task.task_index,
            output,
            attempt: Some(task.attempt),
        }
    }
}

/// Completes a batch of claimed tasks in one call and one commit; element `i` of the result is
/// what `complete_task` would have returned for `answers[i]` (a repeat of an earlier element:
/// false). An answer naming no run or task is an error, and then none is completed.
pub async fn complete_tasks<C: GenericClient>(
    client: &C,
    answers: &[TaskAnswer],
) -> Result<Vec<bool>> {
    let run_ids: Vec<Uuid> = answers.iter().map(|a| a.run_id).collect();
    let steps: Vec<&str> = answers.iter().map(|a| a.step_slug.as_str()).collect();
    let indexes: Vec<i32> = answers.iter().map(|a| a.task_index).collect();
    let outputs: Vec<&Value> = answers.iter().map(|a| &a.output).collect();
    let attempts: Vec<Option<i32>> = answers.iter().map(|a| a.attempt).collect();
    let row = client
        .query_one(
            "SELECT quantum_flow.complete_tasks($1::uuid[], $2::text[], $3::int[], $4::jsonb[], $5::int[])",
            &[&run_ids, &steps, &indexes, &outputs, &attempts],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Starts one run per input in one call and one commit, in order; `run_ids` (as long as
/// `inputs`; a `None` element gets a new id) lets the caller choose the ids. Any error starts
/// none.
pub async fn start_flows<C: GenericClient>(
    client: &C,
    workflow_slug: &str,
    inputs: &[Value],
    run_ids: Option<&[Option<Uuid>]>,
) -> Result<Vec<Uuid>> {
    let inputs: Vec<&Value> = inputs.iter().collect();
    let row = client
        .query_one(
            "SELECT quantum_flow.start_flows($1, $2::jsonb[], $3::uuid[])",
            &[&workflow_slug, &inputs, &run_ids],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Reports a failed attempt of a claimed task, to be retried while attempts are left; see
/// [`FailOutcome`].
pub async fn fail_task<C: GenericClient>(
    client: &C,
    run_id: Uuid,
    step_slug: &str,
    task_index: i32,
    error_message: &str,
    attempt: Option<i32>,
) -> Result<FailOutcome> {
    fail_task_with(
        client,
        run_id,
        step_slug,
        task_index,
        error_message,
        attempt,
        true,
    )
    .await
}

/// [`fail_task`] with `retry`: false fails the task at once, whatever attempts are left (for
/// errors another attempt cannot fix: invalid input, a bug), and so its step and its run.
pub async fn fail_task_with<C: GenericClient>(
    client: &C,
    run_id: Uuid,
    step_slug: &str,
    task_index: i32,
    error_message: &str,
    attempt: Option<i32>,
    retry: bool,
) -> Result<FailOutcome> {
    let row = client
        .query_one(
            "SELECT quantum_flow.fail_task($1, $2, $3, $4, $5, $6)",
            &[
                &run_id,
                &step_slug,
                &task_index,
                &error_message,
                &attempt,
                &retry,
            ],
        )
        .await?;
    let status: String = row.try_get(0)?;
    FailOutcome::parse(&status)
        .ok_or_else(|| Error::Decode(format!("fail_task returned {status:?}")))
}

/// Cancels a started run: it fails with the error message `cancelled: <reason>` (the server's
/// default reason when `None`) and its queued tasks are discarded. True when this call
/// cancelled it; false when the run had already ended.
pub async fn cancel_run<C: GenericClient>(
    client: &C,
    run_id: Uuid,
    reason: Option<&str>,
) -> Result<bool> {
    let row = match reason {
        Some(reason) => {
            client
                .query_one(
                    "SELECT quantum_flow.cancel_run($1, $2)",
                    &[&run_id, &reason],
                )
                .await?
        }
        None => {
            client
                .query_one("SELECT quantum_flow.cancel_run($1)", &[&run_id])
                .await?
        }
    };
    Ok(row.try_get(0)?)
}

async fn run_call<C: GenericClient>(client: &C, sql: &str, run_id: Uuid) -> Result<bool> {
    let row = client.query_one(sql, &[&run_id]).await?;
    Ok(row.try_get(0)?)
}

/// Pauses a started run: no task of it is handed out until [`resume_run`] (tasks claimed
/// before may still be answered). True when this call paused it.
pub async fn pause_run<C: GenericClient>(client: &C, run_id: Uuid) -> Result<bool> {
    run_call(client, "SELECT quantum_flow.pause_run($1)", run_id).await
}

/// Resumes a paused run. True when this call resumed it.
pub async fn resume_run<C: GenericClient>(client: &C, run_id: Uuid) -> Result<bool> {
    run_call(client, "SELECT quantum_flow.resume_run($1)", run_id).await
}

/// Starts a failed (or cancelled) run again from its failed and unfinished steps, keeping
/// its completed outputs and its id. True when this call restarted it; false when the run
/// was not failed.
pub async fn retry_run<C: GenericClient>(client: &C, run_id: Uuid) -> Result<bool> {
    run_call(client, "SELECT quantum_flow.retry_run($1)", run_id).await
}

/// Delivers an event to event step `step_slug` of a run: the step completes with `payload`
/// as its output (or will, when it becomes ready). True when this call's event is the
/// step's; false for a duplicate or an ended run. `step_not_found` / `not_an_event_step`
/// for a step that is not an event step of the run's workflow.
pub async fn send_event<C: GenericClient>(
    client: &C,
    run_id: Uuid,
    step_slug: &str,
    payload: &Value,
) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT quantum_flow.send_event($1, $2, $3::jsonb)",
            &[&run_id, &step_slug, payload],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// A run's state as the server's JSON document.
pub async fn get_run_document<C: GenericClient>(client: &C, run_id: Uuid) -> Result<Value> {
    let row = client
        .query_one("SELECT quantum_flow.get_run($1)", &[&run_id])
        .await?;
    Ok(row.try_get(0)?)
}

/// Waits until the run has ended (completed or failed) and returns it: at once if it has,
/// else as soon as the commit that ends it happens, or after `max_wait_ms` (at most the
/// server's `quantum_flow.max_wait_ms`, 60 s by default) with the run as it is then. The wait
/// runs server-side: call it outside an explicit transaction.
pub async fn wait_run<C: GenericClient>(client: &C, run_id: Uuid, max_wait_ms: i32) -> Result<Run> {
    let row = client
        .query_one(
            "SELECT quantum_flow.wait_run($1, $2)",
            &[&run_id, &max_wait_ms],
        )
        .await?;
    Ok(serde_json::from_value(row.try_get(0)?)?)
}

/// A task of [`get_run_with_tasks`]: its status, attempts (counted since the last
/// `retry_run`), last error, worker, claim deadline and next retry time.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct TaskState {
    pub task_index: i32,
    pub status: String,
    pub attempts: i32,
    pub error_message: Option<String>,
    pub worker_id: Option<String>,
    pub claim_deadline: Option<DateTime<Utc>>,
    pub next_retry_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub child_run_id: Option<Uuid>,
}

/// `get_run(run_id, include_tasks => true)`: the run, and each step's tasks by step slug.
pub async fn get_run_with_tasks<C: GenericClient>(
    client: &C,
    run_id: Uuid,
) -> Result<(Run, std::collections::BTreeMap<String, Vec<TaskState>>)> {
    let row = client
        .query_one(
            "SELECT quantum_flow.get_run($1, include_tasks => true)",
            &[&run_id],
        )
        .await?;
    let doc: Value = row.try_get(0)?;
    let mut tasks = std::collections::BTreeMap::new();
    for step in doc["steps"].as_array().into_iter().flatten() {
        let slug = step["step_slug"].as_str().unwrap_or_default().to_string();
        tasks.insert(slug, serde_json::from_value(step["tasks"].clone())?);
    }
    Ok((serde_json::from_value(doc)?, tasks))
}

/// A run's state (`run_not_found` if there is no such run).
pub async fn get_run<C: GenericClient>(client: &C, run_id: Uuid) -> Result<Run> {
    Ok(serde_json::from_value(
        get_run_document(client, run_id).await?,
    )?)
}
