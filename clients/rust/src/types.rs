//! Typed values of the SQL API: definitions, runs, tasks and their statuses.

use crate::error::ErrorCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use uuid::Uuid;

/// A row of `quantum_flow.workflows` (what `create_flow` and `list_flows` return).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    pub workflow_slug: String,
    pub max_attempts: i32,
    /// Seconds.
    pub timeout: i32,
    /// Seconds.
    pub base_delay: i32,
    pub created_at: DateTime<Utc>,
    /// Free text kept with the definition (`define_flow`'s `description`).
    #[serde(default)]
    pub description: Option<String>,
    /// Seconds a run may take before it fails with `run_timeout`.
    #[serde(default)]
    pub run_timeout: Option<i32>,
    /// The top-level key of the flow input whose value groups runs for `max_concurrency`.
    #[serde(default)]
    pub concurrency_key: Option<String>,
    /// At most this many tasks of runs with the same `concurrency_key` value at once.
    #[serde(default)]
    pub max_concurrency: Option<i32>,
}

/// `single` (one task), `map` (one task per array element) or `event` (no task: completed
/// by `send_event`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepType {
    #[default]
    Single,
    Map,
    Event,
}

impl StepType {
    pub fn as_str(self) -> &'static str {
        match self {
            StepType::Single => "single",
            StepType::Map => "map",
            StepType::Event => "event",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<StepType> {
        match s {
            "single" => Some(StepType::Single),
            "map" => Some(StepType::Map),
            "event" => Some(StepType::Event),
            _ => None,
        }
    }
}

/// What happens to a step whose condition (`if_matches` / `if_not_matches`) is not met.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenUnmet {
    /// The step is skipped (status `skipped`); its dependents run without its key.
    #[default]
    Skip,
    /// The step and every step that depends on it are skipped.
    SkipCascade,
    /// The run fails with `condition_unmet`.
    Fail,
}

impl WhenUnmet {
    pub fn as_str(self) -> &'static str {
        match self {
            WhenUnmet::Skip => "skip",
            WhenUnmet::SkipCascade => "skip_cascade",
            WhenUnmet::Fail => "fail",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<WhenUnmet> {
        match s {
            "skip" => Some(WhenUnmet::Skip),
            "skip_cascade" => Some(WhenUnmet::SkipCascade),
            "fail" => Some(WhenUnmet::Fail),
            _ => None,
        }
    }
}

impl fmt::Display for StepType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row of `quantum_flow.workflow_steps` (what `add_step` returns). `None` options inherit
/// the workflow's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub workflow_slug: String,
    pub step_slug: String,
    pub step_type: StepType,
    pub step_index: i32,
    pub deps_count: i32,
    pub initial_tasks: Option<i32>,
    pub max_attempts: Option<i32>,
    pub timeout: Option<i32>,
    pub base_delay: Option<i32>,
    #[serde(default)]
    pub description: Option<String>,
    /// JSON the step's input must contain (`@>`) when it becomes ready ...
    #[serde(default)]
    pub if_matches: Option<Value>,
    /// ... and must not contain.
    #[serde(default)]
    pub if_not_matches: Option<Value>,
    #[serde(default)]
    pub when_unmet: WhenUnmet,
    /// Seconds between the step becoming ready and its tasks becoming visible.
    #[serde(default)]
    pub start_delay: Option<i32>,
    /// The workflow a sub-flow step starts one run of per task.
    #[serde(default)]
    pub flow: Option<String>,
}

/// A step as `get_flow` describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDefinition {
    pub step_slug: String,
    pub step_type: StepType,
    pub step_index: i32,
    /// In the order given to `add_step`.
    pub depends_on: Vec<String>,
    pub initial_tasks: Option<i32>,
    pub max_attempts: Option<i32>,
    pub timeout: Option<i32>,
    pub base_delay: Option<i32>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, rename = "if")]
    pub if_matches: Option<Value>,
    #[serde(default, rename = "if_not")]
    pub if_not_matches: Option<Value>,
    #[serde(default)]
    pub when_unmet: WhenUnmet,
    #[serde(default)]
    pub start_delay: Option<i32>,
    #[serde(default)]
    pub flow: Option<String>,
}

/// A workflow with its steps (`get_flow`, `define_flow`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowDefinition {
    pub workflow_slug: String,
    pub max_attempts: i32,
    pub timeout: i32,
    pub base_delay: i32,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub run_timeout: Option<i32>,
    #[serde(default)]
    pub concurrency_key: Option<String>,
    #[serde(default)]
    pub max_concurrency: Option<i32>,
    /// In `step_index` order.
    pub steps: Vec<StepDefinition>,
}

/// One problem of a flow document, as `validate_flow` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowProblem {
    /// Where: a JSONPath such as `$.steps[2].depends_on[0]`.
    pub path: String,
    /// What kind of problem (a code of the error table; `Unknown` for a newer server's).
    pub code: ErrorCode,
    /// What is wrong, naming the values.
    pub message: String,
    /// How to fix it, where the server has an idea (`did you mean "depends_on"?`).
    #[serde(default)]
    pub hint: Option<String>,
}

impl fmt::Display for FlowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.code, self.path, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// `validate_flow`'s answer: every problem of a document at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowValidation {
    /// True when `define_flow` would accept the document.
    pub valid: bool,
    /// Every problem, in document order (empty when valid).
    pub errors: Vec<FlowProblem>,
    /// Remarks that do not stop `define_flow` (e.g. `workflow_exists`: the same definition
    /// exists and `define_flow` will return it unchanged).
    #[serde(default)]
    pub warnings: Vec<FlowProblem>,
}

/// A run's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Started,
    /// `pause_run`: no task of it is handed out until `resume_run`.
    Paused,
    Completed,
    Failed,
}

/// A step's status within a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Created,
    Started,
    Completed,
    Failed,
    /// Not finished when its run failed or was cancelled (its tasks are never handed out).
    Cancelled,
    /// Its condition was not met (or the array it maps over does not exist): no tasks, no
    /// output, and its key is absent from its dependents' input.
    Skipped,
}

/// One step of a run (`get_run`'s `steps`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub step_slug: String,
    pub status: StepStatus,
    /// Before a map step starts: its declared `initial_tasks` (None if not declared).
    pub tasks_total: Option<i32>,
    pub tasks_completed: i32,
    pub output: Option<Value>,
    pub error_message: Option<String>,
    /// A sub-flow step's child runs, in task order (the current one of each task).
    #[serde(default)]
    pub child_run_ids: Option<Vec<Uuid>>,
    /// The output was left out of the document (which would not fit in one `jsonb`):
    /// `output` is None although the step has one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub output_omitted: bool,
}

/// A run as `get_run` describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub run_id: Uuid,
    pub workflow_slug: String,
    pub status: RunStatus,
    pub input: Value,
    /// `{"<leaf step>": <output>, ...}` once completed.
    pub output: Option<Value>,
    pub error_message: Option<String>,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    /// In step order.
    pub steps: Vec<StepState>,
    /// A child run: the run whose sub-flow step started it.
    #[serde(default)]
    pub parent_run_id: Option<Uuid>,
    /// A scheduled run: when its first tasks become visible.
    #[serde(default)]
    pub start_at: Option<DateTime<Utc>>,
    /// When it fails with `run_timeout`, if its workflow has one.
    #[serde(default)]
    pub deadline: Option<DateTime<Utc>>,
    /// The run's output was left out of the document too (see `StepState::output_omitted`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub output_omitted: bool,
}

impl Run {
    /// The state of step `step_slug`, if the run has it.
    pub fn step(&self, step_slug: &str) -> Option<&StepState> {
        self.steps.iter().find(|s| s.step_slug == step_slug)
    }
}

/// A task claimed by `poll_tasks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub run_id: Uuid,
    pub step_slug: String,
    pub task_index: i32,
    /// 1 for the first attempt; pass it back to `complete_task` / `fail_task`.
    pub attempt: i32,
    /// `{"run": ..., "<dep>": ...}` for single steps, `{"item", "index", "run"}` for map tasks.
    pub input: Value,
}

/// The task's status after `fail_task`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailOutcome {
    /// It will be retried after its backoff.
    Queued,
    /// Attempts exhausted (or `retry` was false): the task, its step and its run failed.
    Failed,
    /// A late or duplicate call: nothing changed.
    Ignored,
}

impl FailOutcome {
    pub(crate) fn parse(s: &str) -> Option<FailOutcome> {
        match s {
            "queued" => Some(FailOutcome::Queued),
            "failed" => Some(FailOutcome::Failed),
            "ignored" => Some(FailOutcome::Ignored),
            _ => None,
        }
    }
}

/// What a [`Worker`](crate::Worker) did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Tasks claimed with `poll_tasks`.
    pub claimed: u64,
    /// Tasks this worker completed (`complete_task` returned true).
    pub completed: u64,
    /// Failed attempts reported (`fail_task` returned `queued` or `failed`): handler errors
    /// and panics.
    pub failed: u64,
    /// Answers the server did not count (a late answer for an attempt that timed out).
    pub ignored: u64,
    /// Handlers still running at the shutdown deadline, dropped unanswered: their tasks
    /// become visible again after their step's timeout.
    pub abandoned: u64,
    /// `complete_task` / `fail_task` calls that raised an error (the task times out).
    pub answer_errors: u64,
    pub last_answer_error: Option<String>,
}
