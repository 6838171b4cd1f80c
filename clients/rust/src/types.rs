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
}

/// `single` (one task) or `map` (one task per array element).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepType {
    #[default]
    Single,
    Map,
}

impl StepType {
    pub fn as_str(self) -> &'static str {
        match self {
            StepType::Single => "single",
            StepType::Map => "map",
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// A step as `get_flow` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// A workflow with its steps (`get_flow`, `define_flow`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowDefinition {
    pub workflow_slug: String,
    pub max_attempts: i32,
    pub timeout: i32,
    pub base_delay: i32,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub description: Option<String>,
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
    /// Attempts exhausted: the task, its step and its run failed.
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
