"""Python client for quantum_flow, a durable DAG workflow engine inside PostgreSQL.

Functions named after the extension's SQL functions work on a psycopg 3 connection
(:mod:`quantum_flow.api`); :class:`Worker` works a workflow's tasks with Python functions;
:func:`execute_dynamic` runs a workflow to the end (a step function raises
:class:`PermanentError` for an error that no retry can fix); :func:`define_from_json` creates a
workflow from an LLM-style JSON document, which the server checks (:func:`validate_flow`)
and defines (:func:`define_flow`).
"""

from .api import (
    add_step,
    cancel_run,
    complete_task,
    complete_tasks,
    create_flow,
    define_flow,
    delete_flow,
    export_flow,
    fail_task,
    flow_graph,
    flow_schema,
    get_flow,
    get_run,
    is_valid_slug,
    list_flows,
    pause_run,
    poll_tasks,
    resume_run,
    retry_run,
    send_event,
    start_flow,
    start_flows,
    validate_flow,
)
from .errors import (
    ERROR_CODES,
    InvalidFlowDocument,
    MissingStepFunctions,
    PermanentError,
    QuantumFlowError,
    RunFailed,
    RunTimeout,
)
from .execute import execute_dynamic
from .spec import define_from_json
from .types import (
    FlowDefinition,
    FlowProblem,
    FlowStep,
    FlowValidation,
    Run,
    Step,
    StepState,
    Task,
    TaskAnswer,
    WorkerStats,
    Workflow,
)
from .worker import StepFunction, Worker

__version__ = "0.2.0"

__all__ = [
    "ERROR_CODES",
    "FlowDefinition",
    "FlowProblem",
    "FlowStep",
    "FlowValidation",
    "InvalidFlowDocument",
    "MissingStepFunctions",
    "PermanentError",
    "QuantumFlowError",
    "Run",
    "RunFailed",
    "RunTimeout",
    "Step",
    "StepFunction",
    "StepState",
    "Task",
    "TaskAnswer",
    "Worker",
    "WorkerStats",
    "Workflow",
    "add_step",
    "cancel_run",
    "complete_task",
    "complete_tasks",
    "create_flow",
    "define_flow",
    "define_from_json",
    "delete_flow",
    "execute_dynamic",
    "export_flow",
    "fail_task",
    "flow_graph",
    "flow_schema",
    "get_flow",
    "get_run",
    "is_valid_slug",
    "list_flows",
    "pause_run",
    "poll_tasks",
    "resume_run",
    "retry_run",
    "send_event",
    "start_flow",
    "start_flows",
    "validate_flow",
]
