//! Thin Rust client for [quantum_flow](../../README.md), a durable DAG workflow engine inside
//! PostgreSQL.
//!
//! * [`api`]: one async function per SQL function (`create_flow`, `add_step`, `start_flow`,
//!   `poll_tasks`, ...), on any `tokio_postgres::GenericClient` you own, with typed results
//!   and a typed [`Error`] that keeps the server's error code and SQLSTATE;
//! * [`Worker`]: claims a workflow's tasks and runs async handlers for them, concurrently,
//!   with graceful shutdown;
//! * [`execute_dynamic`]: start a run and work it to the end in-process;
//! * workflows as one JSON document (what an LLM emits): [`define_from_json`] /
//!   [`validate_flow_json`] hand the text to the server's `define_flow` / `validate_flow`
//!   unread, and [`FlowSpec`] builds such a document with types.

pub mod api;
mod error;
mod events;
mod execute;
mod spec;
mod types;
mod worker;

pub use api::{
    add_step, cancel_run, complete_task, complete_tasks, create_flow, define_flow,
    define_from_json, delete_flow, export_flow, fail_task, fail_task_with, flow_graph, flow_schema,
    get_flow, get_flow_document, get_run, get_run_document, get_run_with_tasks, is_valid_slug,
    list_flows, pause_run, poll_tasks, resume_run, retry_run, send_event, start_flow,
    start_flow_at, start_flows, validate_flow, validate_flow_json, wait_run, FlowOptions,
    GraphFormat, PollOptions, StepOptions, TaskAnswer, TaskState,
};
pub use error::{Error, ErrorCode, Result};
pub use events::{events, RunEvent};
pub use execute::{execute_dynamic, ExecuteOptions};
pub use spec::{FlowSpec, StepSpec};
pub use types::{
    FailOutcome, FlowDefinition, FlowProblem, FlowValidation, Run, RunStatus, Step, StepDefinition,
    StepState, StepStatus, StepType, Task, WhenUnmet, WorkerStats, Workflow,
};
pub use worker::{
    connect, shutdown_channel, HandlerError, HandlerResult, Permanent, StepFunctions, Worker,
    WorkerConfig,
};

/// Re-exported so callers use the same versions.
pub use serde_json;
pub use tokio_postgres;
pub use uuid;
